"""The comments example on FastAPI (docs/fastapi.md): Tidings embedded in the app (its
endpoints mounted at /rt, publishing in process), or beside it (``create_app(settings)``)."""

import json
import os
import secrets
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import FileResponse, PlainTextResponse
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

import tidings
from tidings.contrib.fastapi import Tidings

HERE = Path(__file__).resolve().parent
USERS = {"alice": "alice-password", "bob": "bob-password"}  # your user store
security = HTTPBasic(auto_error=False)


def current_user(credentials: Annotated[HTTPBasicCredentials | None, Depends(security)]
                 ) -> str | None:
    """The logged-in user's ID, or None."""
    if credentials is None:
        return None
    password = USERS.get(credentials.username)
    if password is None or not secrets.compare_digest(credentials.password, password):
        return None
    return credentials.username


def logged_in(user: Annotated[str | None, Depends(current_user)]) -> str:
    if user is None:
        raise HTTPException(401, headers={"WWW-Authenticate": "Basic"})
    return user


def can_subscribe(user: str | None, channel: str) -> bool:
    """Everyone logged in reads ``comments``; ``notes:<name>`` is that user's alone."""
    return user is not None and channel in ("comments", f"notes:{user}")


class NewComment(BaseModel):
    text: str


class Comments:
    """The app's data (a database in a real app: commit, then publish)."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, author: str, text: str) -> dict[str, Any]:
        comment = {"id": len(self.items) + 1, "author": author, "text": text}
        self.items.append(comment)
        return comment


def create_app(settings: dict[str, Any] | None = None) -> FastAPI:
    """``settings``: a Tidings beside the app (tidings.contrib settings, e.g. the test kit's);
    None: Tidings embedded in the app with the config file's channels and keys."""
    if settings is None:
        path = os.environ.get("COMMENTS_TIDINGS_CONFIG", str(HERE / "tidings.json"))
        server = tidings.Server(json.loads(Path(path).read_text()), listen=False)
        rt = Tidings(server=server, user=current_user, can_subscribe=can_subscribe)
    else:
        rt = Tidings(settings, user=current_user, can_subscribe=can_subscribe)
    app = FastAPI(lifespan=rt.lifespan)
    if settings is None:
        rt.mount(app, "/rt")  # WebSocket at /rt/connection/websocket, served by the app
    app.include_router(rt.router, prefix="/tidings")  # /tidings/token, ...
    app.mount("/static", StaticFiles(directory=HERE.parent / "static"))  # live.js
    store = Comments()

    @app.get("/")
    async def index() -> FileResponse:
        return FileResponse(HERE / "index.html")

    @app.get("/health", response_class=PlainTextResponse)
    async def health() -> str:
        return "ok"

    @app.get("/comments")
    async def comments(user: Annotated[str, Depends(logged_in)],
                       live: Annotated[dict[str, Any], Depends(rt.live("comments"))]
                       ) -> dict[str, Any]:
        # `live` (the stream position) is resolved before this body reads the data
        return {"comments": store.items, "live": live}

    @app.post("/comments", status_code=201)
    async def add_comment(comment: NewComment,
                          user: Annotated[str, Depends(logged_in)]) -> dict[str, Any]:
        saved = store.add(user, comment.text)  # saved (committed)...
        await rt.publish("comments", saved)  # ...then published
        return saved

    return app


app = create_app()
