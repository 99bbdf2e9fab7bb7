"""Starlette + broadcaster peer: broadcaster's memory:// backend, Starlette
WebSocket route on uvicorn (uvloop + httptools, websockets-sansio WS impl).

    python benchmarks/peers/starlette-broadcaster/server.py --port 8003

WS:      ws://127.0.0.1:P/ws/<K>     server -> {"ready":true} once subscribed to bench<K>
Publish: POST /publish?ch=<K>        body relayed as-is as a text frame.
"""

from __future__ import annotations

import os
import sys
from contextlib import asynccontextmanager

import anyio
from broadcaster import Broadcast
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

# the shared uvicorn set-up lives one folder up (benchmarks/peers/uvicorn_runner.py)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from uvicorn_runner import serve

READY = '{"ready":true}'

broadcast = Broadcast("memory://")


async def ws_endpoint(websocket: WebSocket) -> None:
    channel = f"bench{websocket.path_params['k']}"
    await websocket.accept()
    async with broadcast.subscribe(channel=channel) as subscriber:
        await websocket.send_text(READY)
        # The pattern from broadcaster's README: one task drains the client
        # (and notices the disconnect), the other forwards channel events.
        async with anyio.create_task_group() as tg:

            async def receiver() -> None:
                try:
                    async for _ in websocket.iter_text():
                        pass
                finally:
                    tg.cancel_scope.cancel()

            tg.start_soon(receiver)
            try:
                async for event in subscriber:
                    await websocket.send_text(event.message)
            except (WebSocketDisconnect, RuntimeError, OSError):
                tg.cancel_scope.cancel()


async def publish(request: Request) -> PlainTextResponse:
    ch = request.query_params.get("ch", "0")
    body = await request.body()
    await broadcast.publish(channel=f"bench{ch}", message=body.decode())
    return PlainTextResponse("ok")


@asynccontextmanager
async def lifespan(app: Starlette):
    async with broadcast:
        yield


app = Starlette(
    routes=[
        Route("/publish", publish, methods=["POST"]),
        WebSocketRoute("/ws/{k}", ws_endpoint),
    ],
    lifespan=lifespan,
)


def main() -> None:
    serve(app, "starlette-broadcaster", 8003)


if __name__ == "__main__":
    main()
