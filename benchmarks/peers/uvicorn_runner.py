"""The one uvicorn set-up the Python ASGI peers share: their recommended production options
(uvloop, httptools, one worker, no access log) and a ``listening`` line once bound."""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn


def serve(app: Any, name: str, default_port: int) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=default_port)
    args = ap.parse_args()

    class _Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if not self.should_exit:
                print(f"{name} peer listening on {args.host}:{args.port}", flush=True)

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
