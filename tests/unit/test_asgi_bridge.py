"""The pieces of the ASGI byte bridge (``tidings.asgi``) without a server: the request head
written from a scope, client frames the server's parser reads, the server's frames and HTTP
responses read back into ASGI messages, and the ASGI lifespan starting and stopping the node.
End to end through uvicorn:
tests/integration/test_asgi.py and tests/e2e/test_node_client.py."""

from __future__ import annotations

import asyncio
from typing import Any

import tidings
from tidings.asgi import request_head
from tidings.asgiwire import ResponseReader, WebSocketReader, client_frame, merged
from tidings.protocol import wsframe


def test_request_head_below_the_mount_point() -> None:
    headers = [(b"host", b"example.org"), (b"x-api-key", b"k"), (b"content-length", b"2"),
               (b"connection", b"keep-alive")]
    scope: dict[str, Any] = {"type": "http", "method": "POST", "path": "/rt/api/publish",
                             "root_path": "/rt", "raw_path": b"/rt/api/publish",
                             "query_string": b"a=1", "headers": headers}
    head, chunked = request_head(scope)
    assert not chunked
    assert head == (b"POST /api/publish?a=1 HTTP/1.1\r\nhost: example.org\r\nx-api-key: k\r\n"
                    b"content-length: 2\r\nconnection: close\r\n\r\n")
    # No length in the scope (HTTP/2, chunked upload): the body goes on chunked.
    del headers[2]
    head, chunked = request_head(scope)
    assert chunked and b"transfer-encoding: chunked\r\n" in head


def test_websocket_head_and_percent_encoded_paths() -> None:
    scope = {"type": "websocket", "path": "/rt/connection/websocket", "root_path": "/rt",
             "headers": [(b"origin", b"http://a"), (b"sec-websocket-key", b"theirs"),
                         (b"sec-websocket-protocol", b"centrifuge-protobuf")]}
    head, _ = request_head(scope, "bXlrZXk=")
    lines = head.split(b"\r\n")
    assert lines[0] == b"GET /connection/websocket HTTP/1.1"
    assert b"sec-websocket-key: bXlrZXk=" in lines and b"sec-websocket-key: theirs" not in lines
    assert b"sec-websocket-protocol: centrifuge-protobuf" in lines
    spaced = {"type": "http", "path": "/a b", "root_path": "", "raw_path": b"/a%20b"}
    assert request_head(spaced)[0].startswith(b"GET /a%20b HTTP/1.1")


def test_client_frames_are_read_by_the_servers_parser() -> None:
    parser = wsframe.FrameParser(1 << 20)
    big = b"x" * 70000
    data = client_frame(b'{"id":1}', 0x1) + client_frame(big, 0x2) + client_frame(b"y" * 300, 1)
    assert parser.feed(data) == [(0x1, b'{"id":1}'), (0x2, big), (0x1, b"y" * 300)]


async def test_server_frames_become_messages_merged_or_not() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(dict(message))

    reader = WebSocketReader(send)
    wire = (b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Protocol: centrifuge-json\r\n\r\n"
            + wsframe.build_frame(b'{"a":1}') + wsframe.build_frame(b'{"b":2}'))
    await reader.feed(wire[:-3])  # the second frame not complete yet
    await reader.feed(wire[-3:] + wsframe.build_close(3001, "shutdown"))
    assert sent == [{"type": "websocket.accept", "subprotocol": "centrifuge-json"},
                    {"type": "websocket.send", "text": '{"a":1}'},
                    {"type": "websocket.send", "text": '{"b":2}'},
                    {"type": "websocket.close", "code": 3001, "reason": "shutdown"}]
    assert merged([(1, b"a"), (1, b"b"), (2, b"c"), (2, b"d"), (8, b"")]) == [
        (1, b"a\nb"), (2, b"cd"), (8, b"")]
    refused: list[dict[str, Any]] = []

    async def keep(message: Any) -> None:
        refused.append(dict(message))

    await WebSocketReader(keep).feed(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    assert refused == [{"type": "websocket.close", "code": 1008}]


async def test_http_responses_stream_and_lose_their_framing() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(dict(message))

    reader = ResponseReader(send)
    await reader.feed(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                      b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n")
    await reader.feed(b"1\r\n!\r\n0\r\n\r\n")
    await reader.finish()
    assert sent[0] == {"type": "http.response.start", "status": 200,
                       "headers": [(b"content-type", b"text/event-stream")]}
    assert b"".join(m["body"] for m in sent[1:]) == b"hello!"
    assert sent[-1]["more_body"] is False and all(m["more_body"] for m in sent[1:-1])


async def test_lifespan_starts_and_stops_the_server() -> None:
    """As the top-level ASGI app, the lifespan messages start and stop the node."""
    server = tidings.Server({"channel": {"without_namespace": {"history_size": 5,
                                                                "history_ttl": "60s"}}},
                            listen=False)
    app = server.asgi()
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: list[str] = []
    answered = asyncio.Event()

    async def receive() -> dict[str, Any]:
        return await inbox.get()

    async def send(message: Any) -> None:
        sent.append(message["type"])
        answered.set()

    running = asyncio.get_running_loop().create_task(app({"type": "lifespan"}, receive, send))
    await inbox.put({"type": "lifespan.startup"})
    await asyncio.wait_for(answered.wait(), 10)
    assert sent == ["lifespan.startup.complete"]
    assert (await server.publish("news", {"n": 1})).offset == 1
    await inbox.put({"type": "lifespan.shutdown"})
    await asyncio.wait_for(running, 10)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
