"""A FastAPI app on uvicorn with Tidings mounted inside it (``tidings.asgi``): the node has no
listener of its own; its endpoints answer under ``/rt`` beside the app's routes. The config is
the JSON file named by ``ASGI_MOUNT_CONFIG``.

- ``GET /health``: ``ok`` once the app (and the node, started in its lifespan) is up;
- ``POST /say/{channel}``: publishes the request's JSON body in process (``server.publish``);
- ``GET /position/{channel}``: the channel's stream position (render-then-subscribe).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse

import tidings

with open(os.environ["ASGI_MOUNT_CONFIG"]) as f:
    server = tidings.Server(json.load(f), listen=False)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with server:
        yield


app = FastAPI(lifespan=lifespan)
app.mount("/rt", server.asgi())


@app.get("/health", response_class=PlainTextResponse)
async def health() -> str:
    return "ok"


@app.post("/say/{channel}")
async def say(channel: str, request: Request) -> dict[str, Any]:
    result = await server.publish(channel, await request.json())
    return {"offset": result.offset, "epoch": result.epoch}


@app.get("/position/{channel}")
async def position(channel: str) -> dict[str, Any]:
    pos = await server.position(channel)
    return {"offset": pos.offset, "epoch": pos.epoch}
