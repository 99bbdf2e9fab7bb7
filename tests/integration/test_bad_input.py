"""Bad-input matrix: malformed frames, bad tokens, refused subscriptions, bad HTTP API calls.

Every case checks the exact close code or error reply (PROTOCOL.md §1.2, §1.5, §1.7, §2.2, §4,
§7.1) and then that an unrelated client, connected and subscribed before the case ran, still
receives publications, and that the server process is still alive.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import aiohttp
import pytest
from websockets.exceptions import ConnectionClosed

from tests.support.api import api
from tests.support.raw import OP_CLOSE, JsonWebSocket, RawWebSocket, client_frame, json_websocket
from tests.support.server import ServerFactory, ServerProcess, make_token, unique
from tests.support.timing import TIMEOUT_FACTOR, T

# The client answers the server's close frame at once, so a server that closes the TCP connection
# when that answer arrives finishes the handshake in milliseconds. The server's own fallback
# (§1.2: "waits up to 5 s for the closing handshake") must not be what ends it.
CLOSE_HANDSHAKE_WAIT = 3.0 * TIMEOUT_FACTOR
Frame = str | bytes


@pytest.fixture
def srv(server: ServerProcess) -> ServerProcess:
    return server


@pytest.fixture
def make_server(tidings_server: ServerFactory) -> ServerFactory:
    def factory(overrides: dict[str, Any]) -> ServerProcess:
        return tidings_server(overrides=overrides)

    return factory


def raw_client(srv: ServerProcess) -> AbstractAsyncContextManager[JsonWebSocket]:
    """A bare JSON client that accepts any frame size and never compresses."""
    return json_websocket(srv.ws_url, compression=None, max_size=None)


class Witness:
    """A well-behaved client subscribed to its own channel, used to check the server still works."""

    def __init__(self, srv: ServerProcess, client: JsonWebSocket, channel: str) -> None:
        self.srv = srv
        self.client = client
        self.channel = channel
        self.seq = 0

    async def assert_receives(self) -> None:
        self.seq += 1
        data = {"witness": self.seq}
        res = await api(self.srv, "publish", {"channel": self.channel, "data": data})
        assert "result" in res, res
        push = await self.client.push("pub", self.channel, data=data)
        assert push["pub"]["offset"] == res["result"]["offset"]


@asynccontextmanager
async def witness(srv: ServerProcess) -> AsyncIterator[Witness]:
    async with raw_client(srv) as client:
        await client.connect(make_token("witness"))
        channel = unique("witness")
        reply = await client.command(subscribe={"channel": channel})
        assert "subscribe" in reply, reply
        w = Witness(srv, client, channel)
        await w.assert_receives()
        yield w


async def assert_log_mentions(srv: ServerProcess, *needles: str) -> None:
    """The server logged something naming the disconnect (waits for the log reader)."""
    if await asyncio.to_thread(srv.wait_log, *needles, timeout=T):
        return
    raise AssertionError(f"server log mentions none of {needles}:\n{srv.log_text()[-3000:]}")


def connect_frame(token: str, cmd_id: int = 1) -> str:
    return json.dumps({"id": cmd_id, "connect": {"token": token}})


# (case id, do a valid connect first, frames to send, expected close code, expected reason)
CLOSE_CASES: list[tuple[str, bool, list[Frame], int, str | None]] = [
    (
        "oversized_frame",
        True,
        [json.dumps({"id": 2, "publish": {"channel": "news", "data": {"pad": "x" * 70_000}}})],
        1009,
        None,
    ),
    ("garbage_text_first", False, ["\x00\x01 garbage {{{ not json"], 3501, "bad request"),
    ("invalid_json_after_connect", True, ['{"id":2,"subscribe":{"channel":'], 3501, "bad request"),
    ("binary_garbage", False, [bytes([0xFF, 0x00, 0xFE, 0x13, 0x37]) * 20], 3501, "bad request"),
    ("unknown_command", True, ['{"id":2,"foo":{}}'], 3501, "bad request"),
    ("first_not_connect", False, ['{"id":1,"subscribe":{"channel":"news"}}'], 3501, "bad request"),
    ("second_connect", True, [connect_frame(make_token("42"), 2)], 3501, "bad request"),
    ("empty_channel", True, ['{"id":2,"subscribe":{"channel":""}}'], 3501, "bad request"),
    ("invalid_token", False, [connect_frame("invalid_token")], 3500, "invalid token"),
]


@pytest.mark.parametrize(
    ("connect_first", "frames", "code", "reason"),
    [pytest.param(*case[1:], id=case[0]) for case in CLOSE_CASES],
)
async def test_bad_frame_closes_connection(
    srv: ServerProcess,
    connect_first: bool,
    frames: list[Frame],
    code: int,
    reason: str | None,
) -> None:
    async with witness(srv) as w, raw_client(srv) as bad:
        if connect_first:
            await bad.connect(make_token("42"))
        try:
            for frame in frames:
                await bad.send(frame)
        except ConnectionClosed:
            pass  # the server may close while a big frame is still being written
        try:
            got_code, got_reason = await bad.expect_close(CLOSE_HANDSHAKE_WAIT)
        except TimeoutError:
            raise AssertionError(
                f"closing handshake not finished within {CLOSE_HANDSHAKE_WAIT}s (the server"
                f" did not close TCP after our close reply); log:\n{srv.log_text()[-3000:]}"
            ) from None
        assert got_code == code, (got_code, got_reason)
        if reason is not None:
            assert got_reason == reason
        assert list(bad.inbox) == [], "nothing but the close frame was expected"
        await w.assert_receives()
    if code >= 3000:
        await assert_log_mentions(srv, str(code), reason or str(code))
    assert srv.proc.poll() is None


async def test_expired_token_gets_109_and_connection_becomes_unusable(
    srv: ServerProcess,
) -> None:
    async with witness(srv) as w, raw_client(srv) as bad:
        expired = make_token("42", exp=int(time.time()) - 10)
        reply = await bad.command(connect={"token": expired})
        assert reply == {"id": 1, "error": {"code": 109, "message": "token expired"}}
        # §1.5: after a failed connect any later command is a bad request.
        await bad.send(json.dumps({"id": 2, "subscribe": {"channel": "news"}}))
        assert await bad.expect_close() == (3501, "bad request")
        await w.assert_receives()
    assert srv.proc.poll() is None


# (case id, channel to subscribe after a valid connect, expected error code and message)
SUBSCRIBE_ERROR_CASES: list[tuple[str, str, int, str]] = [
    ("forbidden_private_ns", "private:x", 103, "permission denied"),
    ("channel_too_long", "c" * 256, 107, "bad request"),
    ("unknown_namespace", "nope:x", 102, "unknown channel"),
    ("non_ascii_channel", "caf\u00e9", 107, "bad request"),
]


@pytest.mark.parametrize(
    ("channel", "code", "message"),
    [pytest.param(*case[1:], id=case[0]) for case in SUBSCRIBE_ERROR_CASES],
)
async def test_subscribe_error_reply_keeps_connection(
    srv: ServerProcess, channel: str, code: int, message: str
) -> None:
    async with witness(srv) as w, raw_client(srv) as client:
        await client.connect(make_token("42"))
        reply = await client.command(subscribe={"channel": channel})
        assert reply == {"id": 2, "error": {"code": code, "message": message}}
        # A reply error is not a disconnect: the same connection can still subscribe.
        ok = await client.command(subscribe={"channel": unique("fine")})
        assert "subscribe" in ok, ok
        await w.assert_receives()
    assert srv.proc.poll() is None


async def test_oversized_frame_close_handshake_with_raw_socket(srv: ServerProcess) -> None:
    """1009 at the exact limit (65537 bytes), checked byte by byte on a raw TCP socket.

    The client finishes sending the oversized frame and answers the server's close frame in the
    same write, as a real client may. The server must end the TCP connection promptly (either
    at once, or on seeing the close reply), not parse the rest of the payload as frames.
    """
    ws = await RawWebSocket.open(srv.host, srv.port)
    reader, writer = ws.reader, ws.writer
    try:
        size = 65_536 + 1
        prefix, suffix = b'{"id":1,"connect":{"data":"', b'"}}'
        payload = prefix + b"z" * (size - len(prefix) - len(suffix)) + suffix
        assert len(payload) == size
        frame = client_frame(payload)
        head = 2 + 8 + 4  # 64-bit length, mask
        writer.write(frame[:head + 1000])
        await writer.drain()

        first = await asyncio.wait_for(reader.readexactly(2), T)
        assert first[0] == 0x88, f"expected an unmasked FIN close frame, got {first!r}"
        assert first[1] < 126
        close_payload = await asyncio.wait_for(reader.readexactly(first[1]), T)
        assert int.from_bytes(close_payload[:2], "big") == 1009

        close_reply = client_frame(close_payload[:2], OP_CLOSE)
        try:
            writer.write(frame[head + 1000:] + close_reply)
            await writer.drain()
        except ConnectionError:
            pass  # the server already dropped the connection: fine

        async def until_eof() -> bytes:
            try:
                return await reader.read()
            except ConnectionError:
                return b""

        try:
            rest = await asyncio.wait_for(until_eof(), CLOSE_HANDSHAKE_WAIT)
        except TimeoutError:
            raise AssertionError(
                f"TCP still open {CLOSE_HANDSHAKE_WAIT}s after the 1009 close frame and our "
                f"close reply; log:\n{srv.log_text()[-3000:]}"
            ) from None
        assert rest == b"", f"nothing may follow the close frame, got {rest[:100]!r}"
    finally:
        writer.close()
    assert srv.proc.poll() is None


async def test_message_at_size_limit_is_accepted(srv: ServerProcess) -> None:
    async with raw_client(srv) as client:
        await client.connect(make_token("42"))
        channel = unique("big")
        base = json.dumps({"id": 2, "publish": {"channel": channel, "data": {"pad": ""}}})
        frame = base.replace('"pad": ""', '"pad": "' + "p" * (65_536 - len(base)) + '"')
        assert len(frame.encode()) == 65_536
        await client.send(frame)
        assert await client.reply(2) == {"id": 2, "publish": {}}


async def test_channel_max_length_boundary(srv: ServerProcess) -> None:
    async with raw_client(srv) as client:
        await client.connect(make_token("42"))
        ok = await client.command(subscribe={"channel": "d" * 255})
        assert "subscribe" in ok, ok
        too_long = await client.command(subscribe={"channel": "d" * 256})
        assert too_long == {"id": 3, "error": {"code": 107, "message": "bad request"}}


async def test_subscribe_twice_gets_105(srv: ServerProcess) -> None:
    async with witness(srv) as w, raw_client(srv) as client:
        await client.connect(make_token("42"))
        channel = unique("twice")
        first = await client.command(subscribe={"channel": channel})
        assert "subscribe" in first, first
        again = await client.command(subscribe={"channel": channel})
        assert again == {"id": 3, "error": {"code": 105, "message": "already subscribed"}}
        # The first subscription is still in place and delivers.
        res = await api(srv, "publish", {"channel": channel, "data": {"still": "here"}})
        assert "result" in res, res
        push = await client.push("pub", channel, data={"still": "here"})
        assert push["pub"]["offset"] == res["result"]["offset"]
        await w.assert_receives()
    assert srv.proc.poll() is None


async def test_too_many_subscriptions_gets_106(
    make_server: ServerFactory,
) -> None:
    srv = make_server({"client": {"channel_limit": 3}})
    async with witness(srv) as w, raw_client(srv) as client:
        await client.connect(make_token("42"))
        channels = [unique("lim") for _ in range(3)]
        for channel in channels:
            ok = await client.command(subscribe={"channel": channel})
            assert "subscribe" in ok, ok
        fourth = await client.command(subscribe={"channel": unique("lim")})
        assert fourth == {"id": 5, "error": {"code": 106, "message": "limit exceeded"}}
        # The refusal is a reply, not a disconnect: freeing a slot makes room again.
        unsub = await client.command(unsubscribe={"channel": channels[0]})
        assert unsub == {"id": 6, "unsubscribe": {}}
        again = await client.command(subscribe={"channel": unique("lim")})
        assert "subscribe" in again, again
        await w.assert_receives()
    assert srv.proc.poll() is None


async def test_http_api_bad_input(make_server: ServerFactory) -> None:
    srv = make_server({"health": {"enabled": True}})
    async with (
        witness(srv) as w,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=T)) as session,
    ):
        publish_url = f"{srv.api_url}/publish"
        good = {"X-API-Key": srv.api_key, "Content-Type": "application/json"}

        async with session.post(publish_url, data=b'{"channel": "x", "data":', headers=good) as r:
            assert r.status == 400

        body = json.dumps({"channel": w.channel, "data": {"nope": 1}})
        bad_key = {"X-API-Key": "wrong", "Content-Type": "application/json"}
        async with session.post(publish_url, data=body, headers=bad_key) as r:
            assert r.status == 401
        async with session.post(
            publish_url, data=body, headers={"Content-Type": "application/json"}
        ) as r:
            assert r.status == 401

        async with session.get(publish_url, headers=good) as r:
            assert r.status == 405

        undefined = json.dumps({"channel": "undefined:channel", "data": {}})
        async with session.post(publish_url, data=undefined, headers=good) as r:
            assert r.status == 200
            assert await r.json(content_type=None) == {
                "error": {"code": 102, "message": "unknown channel"}
            }

        async with session.get(f"{srv.http_url}/health") as r:
            assert r.status == 200
            assert await r.json(content_type=None) == {}

        # None of the rejected publishes reached the channel; the next real one does.
        await w.assert_receives()
        assert all(p["pub"]["data"] != {"nope": 1} for p in w.client.pushes if "pub" in p)
    assert srv.proc.poll() is None
