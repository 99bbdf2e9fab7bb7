"""Issue 9's findings, each reproduced against a real server process: hostile input must leave
memory flat, the event loop responsive (a concurrent ``/health`` probe, never over 1 s) and the
protocol's answer exact. Each test failed on the release before the fix (see the issue)."""

from __future__ import annotations

import asyncio
import json
import re
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from tests.support.probe import HealthProbe, rss_mib
from tests.support.raw import (
    OP_CONT,
    OP_PING,
    OP_TEXT,
    RawWebSocket,
    client_frame,
    http_exchange,
    raw_websocket,
    read_response,
)
from tests.support.server import ServerFactory, ServerProcess, make_token
from tests.support.timing import TIMEOUT_FACTOR, T

STALL = 1.0  # the slowest /health answer a test tolerates (seconds)



def connected(srv: ServerProcess, user: str = "42") -> AbstractAsyncContextManager[RawWebSocket]:
    return raw_websocket(srv.host, srv.port, token=make_token(user))


async def count_errors(ws: RawWebSocket, n: int) -> int:
    """Read frames until ``n`` error replies arrived; returns how many."""
    seen = 0
    while seen < n:
        opcode, payload = await ws.frame(T)
        assert opcode == OP_TEXT, payload[:200]
        seen += payload.count(b'"error"')
    return seen


async def refused_subscribes(ws: RawWebSocket, n: int, first_id: int) -> None:
    """``n`` subscribes to a private channel without a token (103 each), 1,000 per frame."""
    for start in range(0, n, 1000):
        lines = [json.dumps({"id": first_id + start + i, "subscribe": {"channel": "$secret"}})
                 for i in range(min(1000, n - start))]
        await ws.send(client_frame("\n".join(lines).encode()))
    assert await count_errors(ws, n) == n


# ---------------------------------------------------------------- 1. error paths leak


async def test_refused_commands_leave_memory_flat(server: ServerProcess) -> None:
    """200,000 refused subscribes grew the old server by 300 MB; every error object was one
    shared instance whose traceback kept each raising frame alive."""
    async with connected(server) as ws:
        await refused_subscribes(ws, 5000, 10)  # warm-up: caches, buffers
        before = rss_mib(server.proc.pid)
        async with HealthProbe(server.host, server.port) as probe:
            await refused_subscribes(ws, 60000, 10_000)
        grown = rss_mib(server.proc.pid) - before
    assert grown < 12, f"RSS grew {grown:.1f} MiB over 60,000 refused commands"
    assert probe.worst < STALL, f"/health took {probe.worst:.2f}s meanwhile"


async def test_bad_tokens_on_uni_stream_leave_memory_flat(
    tidings_server: ServerFactory,
) -> None:
    srv = tidings_server({"uni_http_stream": {"enabled": True}})
    body = b'{"token":"bad.%s"}' % (b"x" * 30000)  # each leaked request kept its body
    request = (b"POST /connection/uni_http_stream HTTP/1.1\r\nHost: t\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    async def bad_logins(n: int) -> None:
        sem = asyncio.Semaphore(16)

        async def one() -> None:
            async with sem:
                reader, writer = await asyncio.open_connection(srv.host, srv.port)
                writer.write(request)
                data = await asyncio.wait_for(reader.read(), T)  # until the server closes
                writer.close()
                assert b'"code":3500' in data, data[-300:]

        await asyncio.gather(*(one() for _ in range(n)))

    await bad_logins(200)
    before = rss_mib(srv.proc.pid)
    await bad_logins(2500)
    grown = rss_mib(srv.proc.pid) - before
    assert grown < 12, f"RSS grew {grown:.1f} MiB over 2,500 refused logins"


# ---------------------------------------------------------------- 2. quadratic work


async def test_fragment_storm_is_refused_without_stalling(server: ServerProcess) -> None:
    """A text frame then 60,000 empty continuation frames blocked the old loop for 33 s."""
    storm = client_frame(b"{", OP_TEXT, fin=False) + client_frame(b"", OP_CONT, fin=False) * 60000
    async with connected(server) as ws, HealthProbe(server.host, server.port) as probe:
        await ws.send(storm)
        assert await ws.close_code() == 1008  # too many fragments
    assert probe.worst < STALL, f"/health took {probe.worst:.2f}s during the storm"


async def test_one_byte_fragments_are_refused_without_stalling(server: ServerProcess) -> None:
    frames = [client_frame(b"[", OP_TEXT, fin=False)]
    frames += [client_frame(b" ", OP_CONT, fin=False) for _ in range(60000)]
    async with connected(server) as ws, HealthProbe(server.host, server.port) as probe:
        await ws.send(b"".join(frames))
        assert await ws.close_code() == 1008
    assert probe.worst < STALL, f"/health took {probe.worst:.2f}s"


async def test_repeated_header_is_refused_without_stalling(server: ServerProcess) -> None:
    """One header name repeated 200,000 times (1.2 MB) blocked the old loop for 13 s."""
    request = b"GET /health HTTP/1.1\r\nHost: t\r\n" + b"X-A: 1\r\n" * 200_000 + b"\r\n"
    async with HealthProbe(server.host, server.port) as probe:
        status, _, _ = await http_exchange(server.host, server.port, request)
    assert status == 431
    assert probe.worst < STALL, f"/health took {probe.worst:.2f}s"


# ---------------------------------------------------------------- 3. HTTP limits, timeouts


async def send_until_answered(srv: ServerProcess, head: bytes, filler: bytes,
                              total: int) -> int:
    """Send ``head`` then up to ``total`` bytes of ``filler`` (never finishing the request)
    while reading; return the status of the answer that comes meanwhile."""
    reader, writer = await asyncio.open_connection(srv.host, srv.port)
    answer = asyncio.ensure_future(asyncio.wait_for(read_response(reader), T))
    try:
        writer.write(head)
        sent = 0
        while sent < total and not answer.done():
            writer.write(filler)
            sent += len(filler)
            try:
                await writer.drain()
            except ConnectionError:
                break
        status, _, _ = await answer
        return status
    finally:
        answer.cancel()
        writer.close()


async def test_huge_url_and_header_are_refused_without_buffering(server: ServerProcess) -> None:
    """A 200 MiB URL or header value was buffered whole (RSS +300 MB, /health unanswered)."""
    before = rss_mib(server.proc.pid)
    chunk = b"a" * 65536
    async with HealthProbe(server.host, server.port) as probe:
        assert await send_until_answered(server, b"GET /", chunk, 32 << 20) == 414
        assert await send_until_answered(
            server, b"GET /health HTTP/1.1\r\nX-Big: ", chunk, 32 << 20) == 431
    assert rss_mib(server.proc.pid) - before < 20
    assert probe.worst < STALL


async def test_api_key_is_checked_before_the_body(server: ServerProcess) -> None:
    """A wrong key is answered at the headers: the 10 MiB body is never awaited."""
    head = (b"POST /api/publish HTTP/1.1\r\nHost: t\r\nX-API-Key: wrong\r\n"
            b"Content-Length: 10485760\r\n\r\n")
    assert await send_until_answered(server, head, b"", 0) == 401


async def test_body_limit_is_enforced_while_reading(tidings_server: ServerFactory) -> None:
    srv = tidings_server({"http_api": {"max_body_size": 100_000}})
    declared = (f"POST /api/publish HTTP/1.1\r\nHost: t\r\nX-API-Key: {srv.api_key}\r\n"
                f"Content-Length: 200000\r\n\r\n").encode()
    assert await send_until_answered(srv, declared, b"", 0) == 413  # refused from the header
    chunked = (f"POST /api/publish HTTP/1.1\r\nHost: t\r\nX-API-Key: {srv.api_key}\r\n"
               f"Transfer-Encoding: chunked\r\n\r\n").encode()
    piece = b"4000\r\n" + b" " * 0x4000 + b"\r\n"  # the body never ends
    assert await send_until_answered(srv, chunked, piece, 4 << 20) == 413


@pytest.fixture
def quick_timeouts(tidings_server: ServerFactory) -> ServerProcess:
    return tidings_server({"http_server": {"read_header_timeout": "1s", "read_timeout": "1s",
                                           "idle_timeout": "1s"}})


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """Everything the server sends until it closes the connection (within ``seconds``)."""
    return await asyncio.wait_for(reader.read(), seconds * TIMEOUT_FACTOR)


async def test_connection_without_a_request_is_closed(quick_timeouts: ServerProcess) -> None:
    srv = quick_timeouts
    reader, writer = await asyncio.open_connection(srv.host, srv.port)
    assert await closed_within(reader, 4) == b""  # closed silently
    writer.close()


async def test_slowloris_gets_408(quick_timeouts: ServerProcess) -> None:
    srv = quick_timeouts
    reader, writer = await asyncio.open_connection(srv.host, srv.port)
    writer.write(b"GET /health HTTP/1.1\r\n")

    async def trickle() -> None:
        for _ in range(40):  # bounded: 40 bytes, one every 0.2 s
            writer.write(b"X")
            await writer.drain()
            await asyncio.sleep(0.2)

    dripping = asyncio.create_task(trickle())
    try:
        data = await closed_within(reader, 6)
    finally:
        dripping.cancel()
        writer.close()
    assert data.startswith(b"HTTP/1.1 408 "), data


async def test_idle_keep_alive_connection_is_closed(quick_timeouts: ServerProcess) -> None:
    srv = quick_timeouts
    reader, writer = await asyncio.open_connection(srv.host, srv.port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
    status, _, _ = await read_response(reader)
    assert status == 200
    assert await closed_within(reader, 4) == b""
    writer.close()


def proc_limits(pid: int) -> str:
    return Path(f"/proc/{pid}/limits").read_text()


async def test_soft_descriptor_limit_is_raised(tidings_server: ServerFactory) -> None:
    srv = tidings_server(soft_nofile=1024)
    limits = proc_limits(srv.proc.pid)
    match = re.search(r"Max open files\s+(\d+)\s+(\d+)", limits)
    assert match is not None, limits
    soft, hard = int(match[1]), int(match[2])
    assert soft == hard and hard > 1024, limits
    assert srv.wait_log(f"open files limit raised from 1024 to {hard}")


# ---------------------------------------------------------------- 4. pongs and the queue


async def test_ping_flood_without_reading_stays_bounded(server: ServerProcess) -> None:
    """Pings from a client that never reads drove the old server to 950 MB of pongs."""
    before = rss_mib(server.proc.pid)
    burst = client_frame(b"x" * 125, OP_PING) * 2000  # 262 KB of pings per write
    async with connected(server) as ws, HealthProbe(server.host, server.port) as probe:
        try:
            for _ in range(200):  # 52 MB in all, never reading
                ws.writer.write(burst)
                await asyncio.wait_for(ws.writer.drain(), 2 * T)
        except (ConnectionError, TimeoutError):
            pass  # the server stopped reading or closed: both are fine
        grown = rss_mib(server.proc.pid) - before
    assert grown < 30, f"RSS grew {grown:.1f} MiB"
    assert probe.worst < STALL


# ---------------------------------------------------------------- 5. connect.subs


async def test_connect_subs_obey_the_channel_limit(server: ServerProcess) -> None:
    subs: dict[str, dict[str, str]] = {f"ch{i}": {} for i in range(3000)}
    async with raw_websocket(server.host, server.port) as ws:
        await ws.send_json({"id": 1, "connect": {"token": make_token("42"), "subs": subs}})
        assert await ws.close_code() == 3505


async def test_token_channels_obey_the_channel_limit(server: ServerProcess) -> None:
    token = make_token("42", channels=[f"ch{i}" for i in range(129)])
    async with raw_websocket(server.host, server.port) as ws:
        await ws.send_json({"id": 1, "connect": {"token": token}})
        assert await ws.close_code() == 3505


# ---------------------------------------------------------------- 6. small ones


async def test_non_ascii_websocket_key_gets_400(server: ServerProcess) -> None:
    request = ("GET /connection/websocket HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: ééééééééééééééééééééé==\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode("latin-1")
    status, _, _ = await http_exchange(server.host, server.port, request)
    assert status == 400
    assert "Traceback" not in server.log_text()


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


async def test_deep_json_over_websocket(server: ServerProcess) -> None:
    async with connected(server) as ws:
        await ws.send(client_frame(
            b'{"id":2,"publish":{"channel":"news","data":%s}}' % nested(300).encode()))
        reply = await ws.reply(2)
        assert reply["error"]["code"] == 107, reply  # deeper than 256 levels
        await ws.send(client_frame(
            b'{"id":3,"publish":{"channel":"news","data":%s}}' % nested(5000).encode()))
        assert await ws.close_code() == 3501
    assert "Traceback" not in server.log_text()


async def test_deep_json_over_the_api(server: ServerProcess) -> None:
    for depth in (300, 5000):
        body = f'{{"channel":"news","data":{nested(depth)}}}'.encode()
        request = (f"POST /api/publish HTTP/1.1\r\nHost: t\r\nX-API-Key: {server.api_key}\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        status, _, answer = await http_exchange(server.host, server.port, request)
        assert status == 400, (depth, status, answer)
        assert b"nested too deeply" in answer, answer
    assert "Traceback" not in server.log_text()


async def test_loose_origin_pattern_is_warned_about(tidings_server: ServerFactory) -> None:
    srv = tidings_server({"client": {"allowed_origins": ["https://*example.com"]}})
    assert srv.wait_log("https://evilexample.com")
