"""The WebSocket handshake (RFC 6455 §4.2) on ``/connection/websocket`` (JSON, or Protobuf with
the ``centrifuge-protobuf`` subprotocol) and ``/connection/uni_websocket``: checks, the 101
answer, then the HTTP connection hands its bytes to a WebSocket transport."""

from __future__ import annotations

import base64
import binascii
import logging
from typing import TYPE_CHECKING

from tidings.protocol import pbcodec, wsframe
from tidings.transports.httpbase import Answer, Request, door, origin_allowed, origin_refused
from tidings.transports.websocket import (
    ProtobufWebSocketTransport,
    UniWebSocketTransport,
    WebSocketTransport,
)

if TYPE_CHECKING:
    from tidings.transports.http import HttpProtocol

__all__ = ["upgrade"]

log = logging.getLogger("tidings.http")

_SUBPROTOCOLS = ("centrifuge-json",)


def upgrade(conn: HttpProtocol, req: Request, rest: bytes) -> None:
    """``Upgrade: websocket``; ``rest``: bytes that came after the request."""
    try:
        uni, key = _check(conn, req)
        protobuf, chosen = _subprotocol(req, uni)
    except Answer as answer:
        conn.respond(answer.status, answer.body, keep_alive=False, extra=answer.extra)
        return
    lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Accept: {wsframe.accept_key(key)}"]
    if chosen:
        lines.append(f"Sec-WebSocket-Protocol: {chosen}")
    transport = conn.transport
    assert transport is not None
    transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    # The HTTP parser and request state are dead weight on a long-lived WebSocket: drop them
    # (measured: ~1 KiB per idle connection, docs/design.md).
    conn.take_over()
    cls = (UniWebSocketTransport if uni else ProtobufWebSocketTransport if protobuf
           else WebSocketTransport)
    ws = conn.ws = cls(conn.node, transport, req.headers)
    connect = req.query().get("cf_connect") if uni else None
    if connect:
        ws.client.feed(connect[0].encode())
    if rest:
        ws.data_received(rest)


def _check(conn: HttpProtocol, req: Request) -> tuple[bool, str]:
    """Whether it is the unidirectional endpoint, and the client's key; Answer if refused."""
    config = conn.node.config
    path = req.path
    uni = path == "/connection/uni_websocket"
    enabled = (config.uni_websocket.enabled if uni
               else path == "/connection/websocket" and not config.websocket.disabled)
    if not enabled:
        raise Answer(404, b"Not Found\n")
    door(conn)
    headers = req.headers
    key = headers.get("sec-websocket-key", "")
    if headers.get("upgrade", "").lower() != "websocket" or not _valid_key(key):
        raise Answer(400, b"Bad WebSocket handshake\n")
    if not origin_allowed(headers.get("origin"), config.client.allowed_origins,
                          headers.get("host")):
        origin_refused(headers.get("origin"), path)
        raise Answer(403, b"Origin not allowed\n")
    return uni, key


def _valid_key(key: str) -> bool:
    """``Sec-WebSocket-Key``: base64 of 16 bytes (RFC 6455 §4.1)."""
    try:
        return len(base64.b64decode(key.encode("ascii"), validate=True)) == 16
    except (UnicodeEncodeError, binascii.Error, ValueError):
        return False


def _subprotocol(req: Request, uni: bool) -> tuple[bool, str | None]:
    """Whether the connection speaks Protobuf, and the subprotocol to echo."""
    offered = [p.strip() for p in req.headers.get("sec-websocket-protocol", "").split(",")
               if p.strip()]
    query = req.query()
    protobuf = not uni and ("centrifuge-protobuf" in offered or any(
        v == ["protobuf"] for k, v in query.items() if k in ("format", "cf_protocol")
    ))
    if not protobuf:
        return False, next((p for p in offered if p in _SUBPROTOCOLS), None)
    if not pbcodec.available():
        raise Answer(501, b"Protobuf needs the protobuf extra: pip install "
                          b"'tidings[protobuf]'\n")
    return True, "centrifuge-protobuf" if "centrifuge-protobuf" in offered else None
