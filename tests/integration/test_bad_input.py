"""Bad-input matrix: malformed frames, bad tokens, refused subscriptions, bad HTTP API calls.

Every case checks the exact close code or error reply (PROTOCOL.md §1.2, §1.5, §1.7, §2.2, §4,
§7.1) and then that an unrelated client, connected and subscribed before the case ran, still
receives publications, and that the server process is still alive.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import TIMEOUT_FACTOR, ServerProcess, make_token

T = 5.0 * TIMEOUT_FACTOR
# The client answers the server's close frame at once, so a server that closes the TCP connection
# when that answer arrives finishes the handshake in milliseconds. The server's own fallback
# (§1.2: "waits up to 5 s for the closing handshake") must not be what ends it.
CLOSE_HANDSHAKE_WAIT = 3.0 * TIMEOUT_FACTOR
Json = dict[str, Any]
Frame = str | bytes


@pytest.fixture
def srv(server: ServerProcess) -> ServerProcess:
    return server


@pytest.fixture
def make_server(tidings_server: Callable[..., ServerProcess]) -> Callable[..., ServerProcess]:
    def factory(overrides: dict[str, Any]) -> ServerProcess:
        return tidings_server(overrides=overrides)

    return factory


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class RawClient:
    """A bare WebSocket client speaking JSON protocol v2 (no SDK in between)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.inbox: deque[Json] = deque()
        self.pushes: list[Json] = []
        self.next_id = 1

    async def send(self, frame: Frame) -> None:
        await self.ws.send(frame)

    async def command(self, **cmd: Any) -> Json:
        """Send one command with the next id and return its reply (pushes are kept aside)."""
        cmd_id = self.next_id
        self.next_id += 1
        await self.send(json.dumps({"id": cmd_id, **cmd}))
        return await self.reply(cmd_id)

    async def next_message(self) -> Json:
        while not self.inbox:
            frame = await asyncio.wait_for(self.ws.recv(), T)
            text = frame.decode() if isinstance(frame, bytes) else frame
            for line in text.strip().split("\n"):
                if not line.strip():
                    continue
                msg = json.loads(line)
                assert isinstance(msg, dict), line
                if msg == {}:  # server ping: answer with a pong
                    await self.ws.send("{}")
                    continue
                self.inbox.append(msg)
        return self.inbox.popleft()

    async def reply(self, cmd_id: int) -> Json:
        while True:
            msg = await self.next_message()
            if "push" in msg:
                self.pushes.append(msg["push"])
                continue
            assert msg.get("id") == cmd_id, f"unexpected message {msg} while waiting for {cmd_id}"
            return msg

    async def expect_close(self, within: float = T) -> tuple[int, str]:
        """Read until the connection is gone (websockets' ``recv`` raises only after the whole
        closing handshake); return the close code and reason the server sent. Other messages that
        arrive first are kept in ``self.inbox``."""

        async def drain() -> tuple[int, str]:
            try:
                while True:
                    self.inbox.append(await self.next_message())
            except ConnectionClosed as exc:
                assert exc.rcvd is not None, f"server closed without a close frame: {exc!r}"
                return exc.rcvd.code, exc.rcvd.reason

        return await asyncio.wait_for(drain(), within)


@asynccontextmanager
async def raw_client(srv: ServerProcess) -> AsyncIterator[RawClient]:
    ws = await connect(srv.ws_url, compression=None, open_timeout=T, max_size=None)
    try:
        yield RawClient(ws)
    finally:
        await ws.close()


async def connect_ok(client: RawClient, user: str = "42") -> None:
    reply = await client.command(connect={"token": make_token(user)})
    assert "connect" in reply and reply["connect"]["client"], reply


async def api_call(srv: ServerProcess, method: str, body: Json) -> Json:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=T)) as session,
        session.post(
            f"{srv.api_url}/{method}", json=body, headers={"X-API-Key": srv.api_key}
        ) as resp,
    ):
        assert resp.status == 200, await resp.text()
        data: Json = await resp.json(content_type=None)
        return data


async def wait_pub(client: RawClient, channel: str, data: Any) -> Json:
    """Wait for a publication push with ``data`` in ``channel`` (other pushes are kept)."""

    async def scan() -> Json:
        seen = 0
        while True:
            for push in client.pushes[seen:]:
                if push.get("channel") == channel and push.get("pub", {}).get("data") == data:
                    return push
            seen = len(client.pushes)
            msg = await client.next_message()
            assert "push" in msg, f"unexpected non-push message {msg}"
            client.pushes.append(msg["push"])

    return await asyncio.wait_for(scan(), T)


class Witness:
    """A well-behaved client subscribed to its own channel, used to check the server still works."""

    def __init__(self, srv: ServerProcess, client: RawClient, channel: str) -> None:
        self.srv = srv
        self.client = client
        self.channel = channel
        self.seq = 0

    async def assert_receives(self) -> None:
        self.seq += 1
        data = {"witness": self.seq}
        res = await api_call(self.srv, "publish", {"channel": self.channel, "data": data})
        assert "result" in res, res
        push = await wait_pub(self.client, self.channel, data)
        assert push["pub"]["offset"] == res["result"]["offset"]


@asynccontextmanager
async def witness(srv: ServerProcess) -> AsyncIterator[Witness]:
    async with raw_client(srv) as client:
        await connect_ok(client, user="witness")
        channel = uid("witness")
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
            await connect_ok(bad)
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
        await connect_ok(client)
        reply = await client.command(subscribe={"channel": channel})
        assert reply == {"id": 2, "error": {"code": code, "message": message}}
        # A reply error is not a disconnect: the same connection can still subscribe.
        ok = await client.command(subscribe={"channel": uid("fine")})
        assert "subscribe" in ok, ok
        await w.assert_receives()
    assert srv.proc.poll() is None


def _mask(data: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


async def test_oversized_frame_close_handshake_with_raw_socket(srv: ServerProcess) -> None:
    """1009 at the exact limit (65537 bytes), checked byte by byte on a raw TCP socket.

    The client finishes sending the oversized frame and answers the server's close frame in the
    same write, as a real client may. The server must end the TCP connection promptly (either
    at once, or on seeing the close reply), not parse the rest of the payload as frames.
    """
    reader, writer = await asyncio.open_connection(srv.host, srv.port)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET /connection/websocket HTTP/1.1\r\nHost: {srv.host}:{srv.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), T)
        assert head.startswith(b"HTTP/1.1 101"), head

        size = 65_536 + 1
        mask = os.urandom(4)
        prefix, suffix = b'{"id":1,"connect":{"data":"', b'"}}'
        body = _mask(prefix + b"z" * (size - len(prefix) - len(suffix)) + suffix, mask)
        assert len(body) == size
        header = bytes([0x81, 0x80 | 127]) + size.to_bytes(8, "big") + mask
        writer.write(header + body[:1000])
        await writer.drain()

        first = await asyncio.wait_for(reader.readexactly(2), T)
        assert first[0] == 0x88, f"expected an unmasked FIN close frame, got {first!r}"
        assert first[1] < 126
        close_payload = await asyncio.wait_for(reader.readexactly(first[1]), T)
        assert int.from_bytes(close_payload[:2], "big") == 1009

        close_mask = os.urandom(4)
        close_reply = bytes([0x88, 0x82]) + close_mask + _mask(close_payload[:2], close_mask)
        try:
            writer.write(body[1000:] + close_reply)
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
        await connect_ok(client)
        channel = uid("big")
        base = json.dumps({"id": 2, "publish": {"channel": channel, "data": {"pad": ""}}})
        frame = base.replace('"pad": ""', '"pad": "' + "p" * (65_536 - len(base)) + '"')
        assert len(frame.encode()) == 65_536
        await client.send(frame)
        assert await client.reply(2) == {"id": 2, "publish": {}}


async def test_channel_max_length_boundary(srv: ServerProcess) -> None:
    async with raw_client(srv) as client:
        await connect_ok(client)
        ok = await client.command(subscribe={"channel": "d" * 255})
        assert "subscribe" in ok, ok
        too_long = await client.command(subscribe={"channel": "d" * 256})
        assert too_long == {"id": 3, "error": {"code": 107, "message": "bad request"}}


async def test_subscribe_twice_gets_105(srv: ServerProcess) -> None:
    async with witness(srv) as w, raw_client(srv) as client:
        await connect_ok(client)
        channel = uid("twice")
        first = await client.command(subscribe={"channel": channel})
        assert "subscribe" in first, first
        again = await client.command(subscribe={"channel": channel})
        assert again == {"id": 3, "error": {"code": 105, "message": "already subscribed"}}
        # The first subscription is still in place and delivers.
        res = await api_call(srv, "publish", {"channel": channel, "data": {"still": "here"}})
        assert "result" in res, res
        push = await wait_pub(client, channel, {"still": "here"})
        assert push["pub"]["offset"] == res["result"]["offset"]
        await w.assert_receives()
    assert srv.proc.poll() is None


async def test_too_many_subscriptions_gets_106(
    make_server: Callable[..., ServerProcess],
) -> None:
    srv = make_server({"client": {"channel_limit": 3}})
    async with witness(srv) as w, raw_client(srv) as client:
        await connect_ok(client)
        channels = [uid("lim") for _ in range(3)]
        for channel in channels:
            ok = await client.command(subscribe={"channel": channel})
            assert "subscribe" in ok, ok
        fourth = await client.command(subscribe={"channel": uid("lim")})
        assert fourth == {"id": 5, "error": {"code": 106, "message": "limit exceeded"}}
        # The refusal is a reply, not a disconnect: freeing a slot makes room again.
        unsub = await client.command(unsubscribe={"channel": channels[0]})
        assert unsub == {"id": 6, "unsubscribe": {}}
        again = await client.command(subscribe={"channel": uid("lim")})
        assert "subscribe" in again, again
        await w.assert_receives()
    assert srv.proc.poll() is None


async def test_http_api_bad_input(make_server: Callable[..., ServerProcess]) -> None:
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
