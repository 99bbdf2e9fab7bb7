"""python-socketio peer: socketio.AsyncServer(async_mode="asgi") on uvicorn
(uvloop + httptools, websockets-sansio WS impl), one worker.

    python benchmarks/peers/python-socketio/server.py --port 8001

WS:      ws://127.0.0.1:P/socket.io/?EIO=4&transport=websocket
         server -> 0{"sid":...}
         either (one frame, may be sent right after the WS opens)
           client -> 40{"room":"bench<K>"}  server -> 40{"sid":...}, 42["ready","bench<K>"]
         or (two steps; wait for 40{ before sending the join)
           client -> 40   server -> 40{"sid":...}
           client -> 42["join","bench<K>"]   server -> 42["ready","bench<K>"]
         server -> 42["msg",{"ts":...}] per publish;  server 2 -> client 3
Publish: POST /publish?ch=<K>  body = JSON text, emitted as event "msg".
"""

from __future__ import annotations

import json
import os
import sys
from urllib.parse import parse_qs

import socketio

# the shared uvicorn set-up lives one folder up (benchmarks/peers/uvicorn_runner.py)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from uvicorn_runner import serve

sio = socketio.AsyncServer(
    async_mode="asgi",
    # The load generator is not a browser; accept any Origin header.
    cors_allowed_origins="*",
    # Library defaults, spelled out: server sends "2" every 25 s, client must
    # answer "3" within 20 s or it is dropped.
    ping_interval=25,
    ping_timeout=20,
    # Send the CONNECT ack (40{"sid":..}) before running the connect handler,
    # so the "ready" event emitted there follows it (same order as Node).
    always_connect=True,
    logger=False,
    engineio_logger=False,
)


async def _join(sid: str, room: str) -> None:
    await sio.enter_room(sid, room)
    await sio.emit("ready", room, to=sid)


@sio.event
async def connect(sid: str, environ: dict, auth: dict | None = None) -> None:
    # Single-frame subscribe: the client's CONNECT packet carries the room,
    # 40{"room":"bench<K>"} (socket.io v4 auth payload).
    if isinstance(auth, dict) and auth.get("room") is not None:
        await _join(sid, str(auth["room"]))


@sio.on("join")
async def join(sid: str, room: str) -> None:
    # Two-step subscribe: 40, wait for 40{"sid":..}, then 42["join","bench<K>"].
    await _join(sid, str(room))


async def _read_body(receive) -> bytes:
    body = b""
    while True:
        msg = await receive()
        if msg["type"] != "http.request":
            return body
        body += msg.get("body", b"")
        if not msg.get("more_body", False):
            return body


async def _respond(send, status: int, text: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(text)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": text})


async def publish_app(scope, receive, send) -> None:
    """Plain ASGI app mounted next to socket.io (other_asgi_app)."""
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["path"] != "/publish" or scope["method"] != "POST":
        await _respond(send, 404, b"not found")
        return
    qs = parse_qs(scope.get("query_string", b"").decode())
    ch = qs.get("ch", ["0"])[0]
    body = await _read_body(receive)
    try:
        data = json.loads(body)
    except ValueError:
        await _respond(send, 400, b"body must be JSON")
        return
    # socket.io serialises event args itself (compact separators), so
    # {"ts":123} arrives as 42["msg",{"ts":123}].
    await sio.emit("msg", data, room=f"bench{ch}")
    await _respond(send, 200, b"ok")


app = socketio.ASGIApp(sio, other_asgi_app=publish_app, socketio_path="socket.io")


def main() -> None:
    serve(app, "python-socketio", 8001)


if __name__ == "__main__":
    main()
