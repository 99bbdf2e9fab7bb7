"""Starlette + broadcaster peer: broadcaster's memory:// backend, Starlette
WebSocket route on uvicorn (uvloop + httptools, websockets-sansio WS impl).

    python benchmarks/peers/starlette-broadcaster/server.py --port 8003

WS:      ws://127.0.0.1:P/ws/<K>     server -> {"ready":true} once subscribed to bench<K>
Publish: POST /publish?ch=<K>        body relayed as-is as a text frame.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import asynccontextmanager

import anyio
import uvicorn
from broadcaster import Broadcast
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

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


class _Server(uvicorn.Server):
    async def startup(self, sockets=None) -> None:
        await super().startup(sockets=sockets)
        if not self.should_exit:
            c = self.config
            print(f"starlette-broadcaster peer listening on {c.host}:{c.port}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8003)
    args = ap.parse_args()
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        workers=1,
        access_log=False,
        log_level="warning",
        lifespan="on",
        backlog=4096,
        timeout_keep_alive=75,
    )
    _Server(config).run()


if __name__ == "__main__":
    sys.exit(main())
