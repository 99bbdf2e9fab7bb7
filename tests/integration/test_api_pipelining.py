"""The API on one keep-alive connection with pipelined requests: answered in order, those that
need not wait served without a task and their answers written together
(transports/eager.py), the others between them as before."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable

from tests.support.raw import JsonWebSocket
from tests.support.server import API_KEY, ServerProcess, make_token, unique
from tests.support.timing import T


def _post(path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nX-API-Key: {API_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


async def _answers(srv: ServerProcess, raw: bytes, count: int) -> list[tuple[int, bytes]]:
    """Send ``raw`` in one write; the first ``count`` answers (status, body)."""
    reader, writer = await asyncio.open_connection(srv.host, srv.port)
    answers: list[tuple[int, bytes]] = []
    try:
        writer.write(raw)
        async with asyncio.timeout(T):
            while len(answers) < count:
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                m = re.search(rb"Content-Length: (\d+)", head)
                answers.append((status, await reader.readexactly(int(m.group(1)) if m else 0)))
    finally:
        writer.close()
        await writer.wait_closed()
    return answers


async def test_pipelined_publishes_are_answered_in_order(
    server: ServerProcess, json_ws: Callable[..., Awaitable[JsonWebSocket]]
) -> None:
    channel = unique("pipe")
    ws = await json_ws(server.ws_url)
    await ws.connect(make_token("p"))
    await ws.command(subscribe={"channel": channel})
    n = 60
    raw = b"".join(_post("/api/publish", json.dumps({"channel": channel, "data": {"i": i}})
                         .encode()) for i in range(n))
    answers = await _answers(server, raw, n)
    assert [status for status, _ in answers] == [200] * n
    assert [json.loads(body)["result"]["offset"] for _, body in answers] == list(range(1, n + 1))
    for i in range(n):
        push = await ws.push("pub", channel)
        assert push["pub"]["data"] == {"i": i}


async def test_eager_and_other_requests_mixed_keep_their_order(server: ServerProcess) -> None:
    channel = unique("mix")
    raw = b"".join([
        _post("/api/publish", json.dumps({"channel": channel, "data": 1}).encode()),
        _post("/api/info", b"{}"),  # served by a task
        _post("/api/publish", b"{not json"),  # refused in order
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        _post("/api/broadcast", json.dumps({"channels": [channel], "data": 2}).encode()),
        _post("/api/history", json.dumps({"channel": channel, "limit": -1}).encode()),
    ])
    answers = await _answers(server, raw, 6)
    assert [status for status, _ in answers] == [200, 200, 400, 200, 200, 200]
    assert json.loads(answers[0][1]) == {"result": {"offset": 1, "epoch": json.loads(
        answers[5][1])["result"]["epoch"]}}
    assert "nodes" in json.loads(answers[1][1])["result"]
    assert answers[3][1] == b"{}"
    assert json.loads(answers[4][1])["result"]["responses"][0]["result"]["offset"] == 2
    history = json.loads(answers[5][1])["result"]["publications"]
    assert [p["data"] for p in history] == [1, 2]
