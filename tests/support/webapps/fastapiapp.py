"""The FastAPI backend (on uvicorn): two publish hooks, one ``async def`` (run on the loop) and
one plain function (run in Starlette's thread pool). Each rewrites what a client publishes, says
which thread it ran in, and refuses some publications."""

from __future__ import annotations

import threading
from typing import Any

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from tidings.hooks import HookError, PublishRequest, PublishResult
from tidings.hooks.fastapi import endpoint

app = FastAPI()


@app.get("/health", response_class=PlainTextResponse)
async def health() -> str:
    return "ok"


def _text(data: Any) -> str:
    text = data.get("text", "") if isinstance(data, dict) else ""
    return text if isinstance(text, str) else ""


def _thread() -> str:
    return "main" if threading.current_thread() is threading.main_thread() else "worker"


async def publish(req: PublishRequest) -> PublishResult:
    """Chat: shouted, signed; no spam."""
    text = _text(req.data)
    if "spam" in text:
        raise HookError(1000, "spam is not allowed")
    return PublishResult(data={"text": text.upper(), "by": req.user, "thread": _thread()})


def publish_note(req: PublishRequest) -> PublishResult:
    """Notes: trimmed, words counted; no empty notes."""
    text = _text(req.data).strip()
    if not text:
        raise HookError(1001, "empty note")
    return PublishResult(data={"note": text, "words": len(text.split()), "by": req.user,
                               "thread": _thread()})


app.post("/centrifugo/publish")(endpoint(publish))
app.post("/centrifugo/notes")(endpoint(publish_note))
