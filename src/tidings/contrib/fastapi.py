"""FastAPI: the ``Tidings`` integration (docs/fastapi.md): a router with the token endpoints,
dependencies, ``publish``, and Tidings embedded in the app (its ASGI app mounted).

::

    rt = Tidings({"API_URL": "http://127.0.0.1:8000/api", "API_KEY": "...",
                  "TOKEN_HMAC_SECRET_KEY": "..."}, user=current_user_id)
    app = FastAPI(lifespan=rt.lifespan)
    app.include_router(rt.router, prefix="/tidings")

    @app.get("/comments")
    async def comments(live: dict = Depends(rt.live("comments"))):   # position read first
        return {"comments": await load_comments(), "live": live}

    @app.post("/comments")
    async def add(comment: NewComment, user: str = Depends(current_user_id)):
        saved = await save(comment)                                  # committed...
        await rt.publish("comments", saved)                          # ...then published

``user`` is the app's own dependency returning the logged-in user's ID, or None. Embedded:
``Tidings(server=tidings.Server(config, listen=False))`` and ``rt.mount(app, "/rt")``: the
clients connect to the app itself (``/rt/connection/websocket``), publishing is in process,
and ``rt.lifespan`` starts and stops the server.
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations, which
# name the app's own ``user`` dependency (a closure variable, not a module global).
import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from tidings.contrib.common import Realtime
from tidings.contrib.publishers import AsyncPublisher
from tidings.embed import Server
from tidings.hooks import ConnectRequest, ConnectResult, HookDisconnect
from tidings.hooks.fastapi import endpoint
from tidings.results import PublishResult, StreamPosition

__all__ = ["Tidings"]

Check = Callable[[Any, str], bool | Awaitable[bool]]


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _json(status: int, body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


class Tidings:
    """The integration (module docstring). ``settings``: the shared keys
    (:mod:`tidings.contrib.settings`), also as keywords; ``user``: a dependency returning
    the logged-in user's ID or None; ``can_subscribe(user_id, channel)`` (sync or async):
    the subscription token endpoint's check (unset: every channel refused);
    ``user_info(user_id)``: the ``info`` of connection tokens; ``server``: an embedded
    :class:`tidings.Server`."""

    def __init__(self, settings: Mapping[str, Any] | None = None, *,
                 user: Callable[..., Any], can_subscribe: Check | None = None,
                 user_info: Callable[[Any], Any] | None = None, server: Server | None = None,
                 **keys: Any) -> None:
        self.realtime = Realtime({**(settings or {}), **keys}, server=server)
        self.server = server
        self.user = user
        self.can_subscribe = can_subscribe
        self.user_info = user_info
        self.router = self._router()
        self.connection_token = self._token_dependency()
        """A dependency: a connection token for the logged-in user (401 for nobody)."""

    # ------------------------------------------------------------------ lifecycle

    @contextlib.asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        """The app's lifespan (or call it from yours): starts the embedded server, closes
        the HTTP client at the end."""
        if self.server is not None:
            await self.server.start()
        try:
            yield
        finally:
            await self.realtime.aclose()
            if self.server is not None:
                await self.server.stop()

    def mount(self, app: FastAPI, path: str = "/rt") -> None:
        """Serve the embedded server's endpoints (WebSocket, HTTP-streaming, SSE, the API)
        under ``path`` of the app; the page's clients then connect to
        ``{path}/connection/websocket`` (unless ``connection_url`` says otherwise)."""
        if self.server is None:
            raise RuntimeError("Tidings.mount needs an embedded server: Tidings(server=...)")
        app.mount(path, self.server.asgi())
        if not self.realtime.settings.connection_url:
            self._mounted_url = f"{path.rstrip('/')}/connection/websocket"

    _mounted_url = ""

    # ------------------------------------------------------------------ publishing

    async def publisher(self) -> AsyncPublisher:
        """A dependency: the publisher (``Depends(rt.publisher)``)."""
        return self.realtime.async_publisher

    async def publish(self, channel: str, data: Any, **options: Any) -> PublishResult:
        """Publish now; raises :class:`tidings.ApiError` (code 100: unreachable)."""
        return await self.realtime.apublish(channel, data, **options)

    async def position(self, channel: str) -> StreamPosition | None:
        return await self.realtime.aposition(channel)

    def live(self, channel: str, *, subscription_token: bool = False
             ) -> Callable[[Request], Awaitable[dict[str, Any]]]:
        """A dependency: what the page's script needs to subscribe to ``channel`` without a
        gap. FastAPI resolves it before the endpoint runs, so the stream position is read
        before the endpoint reads its data."""

        async def live_page(request: Request) -> dict[str, Any]:
            rt = self.realtime
            sub_url = (request.app.url_path_for("tidings_subscription_token")
                       if subscription_token else "")
            page = rt.page(channel, await rt.aposition(channel),
                           token_url=str(request.app.url_path_for("tidings_token")),
                           subscription_token_url=str(sub_url))
            if self._mounted_url:
                page["url"] = self._mounted_url
            return page

        return live_page

    # ------------------------------------------------------------------ endpoints

    def _info(self, user: Any) -> Any:
        return self.user_info(user) if self.user_info is not None else None

    def _token_dependency(self) -> Callable[..., Awaitable[str]]:
        User = Annotated[Any, Depends(self.user)]

        async def connection_token(user: User) -> str:
            if user is None and not self.realtime.settings.allow_anonymous:
                raise HTTPException(401, "not logged in")
            uid = "" if user is None else str(user)
            return self.realtime.tokens.connection(uid, info=self._info(user))

        return connection_token

    def _router(self) -> APIRouter:
        router = APIRouter()
        rt = self.realtime
        User = Annotated[Any, Depends(self.user)]

        async def token(user: User) -> JSONResponse:
            if user is None:
                return _json(*rt.token_answer(None))
            return _json(200, {"token": rt.tokens.connection(str(user),
                                                             info=self._info(user))})

        async def subscription_token(request: Request, user: User) -> JSONResponse:
            channel = await _channel(request)
            check = self.can_subscribe
            allowed = bool(channel) and check is not None and bool(
                await _maybe_await(check(user, channel)))
            return _json(*rt.subscription_token_answer(
                None if user is None else str(user), channel, allowed))

        for path, fn, name in (("/token", token, "tidings_token"),
                               ("/subscription-token", subscription_token,
                                "tidings_subscription_token")):
            router.add_api_route(path, fn, methods=["GET", "POST"], name=name,
                                 include_in_schema=False)
        return router

    def connect_endpoint(self, user_from_cookie: Callable[[str], Any]
                         ) -> Callable[[Request], Awaitable[Any]]:
        """Tidings' connect hook as an endpoint (``app.post("/tidings/connect")(...)``):
        ``user_from_cookie(cookie_header)`` (sync or async) returns the user ID of the
        session the forwarded cookie carries, or None (disconnect 4501)."""

        async def connect(req: ConnectRequest) -> ConnectResult:
            user = await _maybe_await(user_from_cookie(req.headers.get("cookie", "")))
            if user is None:
                raise HookDisconnect(4501, "unauthorized")
            return ConnectResult(user=str(user), info=self._info(user))

        return endpoint(connect)


async def _channel(request: Request) -> str:
    channel: Any = request.query_params.get("channel", "")
    if not channel and request.method == "POST":
        try:
            body = await request.json()
        except ValueError:
            body = None
        channel = body.get("channel", "") if isinstance(body, dict) else ""
    return channel if isinstance(channel, str) else ""
