"""The HTTP/1.1 layer itself: pipelined requests and unparseable URLs."""

from __future__ import annotations

import asyncio
import re

from tests.support.server import ServerProcess
from tests.support.timing import T


async def exchange(srv: ServerProcess, raw: bytes, responses: int) -> bytes:
    reader, writer = await asyncio.open_connection(srv.host, srv.port)
    try:
        writer.write(raw)
        data = b""
        async with asyncio.timeout(T):
            while data.count(b"HTTP/1.1 ") < responses:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                data += chunk
        return data
    finally:
        writer.close()
        await writer.wait_closed()


async def test_pipelined_requests_are_answered_in_order(server: ServerProcess) -> None:
    raw = (b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
           b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
           b"POST /api/info HTTP/1.1\r\nHost: x\r\nX-API-Key: api_key\r\nContent-Length: 2\r\n"
           b"\r\n{}")
    data = await exchange(server, raw, 3)
    statuses = re.findall(rb"HTTP/1\.1 (\d{3})", data)  # bodies have no length delimiters here
    assert statuses == [b"404", b"200", b"200"]
    assert b'"nodes"' in data


async def test_unparseable_url_is_400_not_a_hang(server: ServerProcess) -> None:
    data = await exchange(server, b"GET http://[x/health HTTP/1.1\r\nHost: x\r\n\r\n", 1)
    assert data.startswith(b"HTTP/1.1 400 Bad Request")
    assert (await exchange(server, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", 1)).startswith(
        b"HTTP/1.1 200 OK")
