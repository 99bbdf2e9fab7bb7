"""Tidings inside a Python program: ``tidings.Server`` (async) and ``tidings.BackgroundServer``
(a server on its own thread, for synchronous code such as a WSGI app or a test).

::

    async with tidings.Server({"http_server": {"port": 0}}) as server:
        print(server.url)                       # the bound port, also with port 0
        await server.publish("news", {"text": "hello"})

The methods are the server API's (PROTOCOL.md §7) called in process, without HTTP: the same
checks, the same answers, typed (``tidings.results``); an error answer raises
:class:`~tidings.results.ApiError`. The listeners serve clients and the HTTP API as
``tidings serve`` does with the same config.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

from tidings.config import Config, load_config
from tidings.config.load import config_from_dict
from tidings.results import (
    BroadcastResult,
    ChannelInfo,
    ChannelsResult,
    ClientInfo,
    EmptyResult,
    HistoryResult,
    PresenceResult,
    PresenceStats,
    PublishResult,
    StreamPosition,
    decode_result,
)
from tidings.server import Server as _Listening

if TYPE_CHECKING:
    from tidings.asgi import TidingsASGI
    from tidings.core.hooks import Hooks

__all__ = ["BackgroundServer", "ConfigSource", "Server"]

T = TypeVar("T")
ConfigSource = Config | Mapping[str, Any] | str | os.PathLike[str] | None
"""A config: the config file's keys as a dict, a path to a config file (JSON, YAML, TOML), a
built :class:`Config`, or None for the defaults."""


def build_config(source: ConfigSource) -> Config:
    """The :class:`Config` a source describes (checked as ``tidings serve`` checks a file)."""
    if isinstance(source, Config):
        return source
    if source is None or isinstance(source, Mapping):
        raw = dict(source or {})
        listen = dict(raw.get("http_server") or {})
        any_port = listen.get("port") in (0, "0")  # a free port: the embedding's usual ask
        if any_port:
            raw["http_server"] = {k: v for k, v in listen.items() if k != "port"}
        config = config_from_dict(raw)[0]
        if any_port:
            config.http_server.port = 0
        return config
    return load_config(source, env={})[0]


class Server:
    """A Tidings node in this process and event loop, with its listeners.

    ``await start()`` / ``await stop()``, or ``async with``. ``hooks.set(...)`` before start
    answers backend hooks with Python functions (docs/hooks.md)."""

    def __init__(self, config: ConfigSource = None, *, listen: bool = True) -> None:
        self.config = build_config(config)
        self._server = _Listening(self.config)
        self._listen = listen
        self._started = False

    # ------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start the node (engine connections, timers) and, unless ``listen=False``, bind the
        listeners. Raises ``OSError`` when a port cannot be bound."""
        if self._started:
            return
        await self._server.start(listen=self._listen)
        self._started = True

    async def stop(self) -> None:
        """Graceful stop, as on SIGTERM: clients are disconnected with 3001 (reconnect)."""
        if not self._started:
            return
        self._started = False
        await self._server.shutdown()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    # ------------------------------------------------------------------- where it is

    @property
    def port(self) -> int:
        """The bound port of the main listener (the real one when the config says 0)."""
        return self._server.port

    @property
    def host(self) -> str:
        return self.config.http_server.address or "127.0.0.1"

    @property
    def url(self) -> str:
        """``http://host:port`` of the main listener (0.0.0.0 is given as 127.0.0.1)."""
        host = self.host if self.host not in ("0.0.0.0", "::") else "127.0.0.1"
        return f"http://{host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """The WebSocket endpoint for centrifuge-js / centrifuge-python."""
        return "ws" + self.url.removeprefix("http") + "/connection/websocket"

    @property
    def api_url(self) -> str:
        """The HTTP API's base (for ``cent.Client(server.api_url, key)``)."""
        internal = self._server.internal_port
        if internal is not None and not self.config.http_api.external:
            host = self.config.http_server.internal_address or self.host
            return f"http://{host}:{internal}/api"
        return self.url + "/api"

    @property
    def hooks(self) -> Hooks:
        """The node's backend hooks: ``server.hooks.set("connect", fn)``."""
        return self._server.node.hooks

    def asgi(self) -> TidingsASGI:
        """An ASGI application serving this node's endpoints (WebSocket, HTTP-streaming, SSE,
        the API, ...) inside another ASGI server; mount it in Starlette/FastAPI/Django."""
        from tidings.asgi import TidingsASGI

        return TidingsASGI(self)

    # ------------------------------------------------------------------- the server API

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Any API method by name; the answer as the HTTP API's JSON object
        (``{"result": ...}`` or ``{"error": ...}``), never raising for an error answer."""
        return await self._server.api.call(method, params or {})

    async def _typed(self, method: str, params: dict[str, Any], tp: type[T]) -> T:
        return decode_result(await self.call(method, params), tp)

    async def publish(self, channel: str, data: Any, *, skip_history: bool = False,
                      tags: Mapping[str, str] | None = None, idempotency_key: str = "",
                      delta: bool = False) -> PublishResult:
        """Publish ``data`` (any JSON-serialisable value) to ``channel``."""
        params = _publish_params(data, skip_history, tags, idempotency_key, delta)
        return await self._typed("publish", {"channel": channel, **params}, PublishResult)

    async def broadcast(self, channels: Sequence[str], data: Any, *, skip_history: bool = False,
                        tags: Mapping[str, str] | None = None, idempotency_key: str = "",
                        delta: bool = False) -> BroadcastResult:
        """Publish the same ``data`` to many channels (one reply per channel)."""
        params = _publish_params(data, skip_history, tags, idempotency_key, delta)
        return await self._typed("broadcast", {"channels": list(channels), **params},
                                 BroadcastResult)

    async def presence(self, channel: str) -> dict[str, ClientInfo]:
        """Who is in ``channel``: client ID -> its info (the channel needs ``presence``)."""
        result = await self._typed("presence", {"channel": channel}, PresenceResult)
        return result.presence

    async def presence_stats(self, channel: str) -> PresenceStats:
        return await self._typed("presence_stats", {"channel": channel}, PresenceStats)

    async def history(self, channel: str, *, limit: int = 0, since: StreamPosition | None = None,
                      reverse: bool = False) -> HistoryResult:
        """Publications kept for ``channel`` (``limit`` 0: none, only the stream position;
        -1: all)."""
        params: dict[str, Any] = {"channel": channel, "limit": limit, "reverse": reverse}
        if since is not None:
            params["since"] = {"offset": since.offset, "epoch": since.epoch}
        return await self._typed("history", params, HistoryResult)

    async def position(self, channel: str) -> StreamPosition:
        """The channel's stream position now. Read it in the same request that reads the page's
        data, render it into the page, and subscribe with ``since`` it: the client then gets
        every publication after the render, none lost in between (docs/python.md)."""
        return (await self.history(channel, limit=0)).position

    async def history_remove(self, channel: str) -> None:
        await self._typed("history_remove", {"channel": channel}, EmptyResult)

    async def channels(self, pattern: str = "") -> dict[str, ChannelInfo]:
        """Active channels of the cluster (with at least one subscriber), filtered by a
        glob-like ``pattern`` when given."""
        return (await self._typed("channels", {"pattern": pattern}, ChannelsResult)).channels

    async def subscribe(self, user: str, channel: str, **options: Any) -> None:
        """Subscribe a user's connections to ``channel`` server-side (options as the API's:
        ``client``, ``session``, ``info``, ``recover_since``, ...)."""
        await self._typed("subscribe", {"user": user, "channel": channel, **options}, EmptyResult)

    async def unsubscribe(self, user: str, channel: str, *, client: str = "",
                          session: str = "") -> None:
        await self._typed("unsubscribe", _drop_empty(user=user, channel=channel, client=client,
                                                     session=session), EmptyResult)

    async def disconnect(self, user: str, *, code: int = 0, reason: str = "",
                         client: str = "", session: str = "",
                         whitelist: Sequence[str] = ()) -> None:
        """Disconnect a user's connections (or one ``client``) cluster-wide. ``code`` 0: the
        API's default (3000 range "disconnect", no reconnect advice of its own)."""
        params = _drop_empty(user=user, client=client, session=session,
                             whitelist=list(whitelist))
        if code:
            params["disconnect"] = {"code": code, "reason": reason}
        await self._typed("disconnect", params, EmptyResult)

    async def refresh(self, user: str, **options: Any) -> None:
        """Refresh a user's connections (``client``, ``session``, ``expired``, ``expire_at``,
        ``info``), as the API's ``refresh``."""
        await self._typed("refresh", {"user": user, **options}, EmptyResult)

    async def info(self) -> dict[str, Any]:
        """Every node of the cluster, as the API's ``info``."""
        return await self._typed("info", {}, dict[str, Any])


def _publish_params(data: Any, skip_history: bool, tags: Mapping[str, str] | None,
                    idempotency_key: str, delta: bool) -> dict[str, Any]:
    params: dict[str, Any] = {"data": data}
    if skip_history:
        params["skip_history"] = True
    if tags:
        params["tags"] = dict(tags)
    if idempotency_key:
        params["idempotency_key"] = idempotency_key
    if delta:
        params["delta"] = True
    return params


def _drop_empty(**params: Any) -> dict[str, Any]:
    return {key: value for key, value in params.items() if value}


class BackgroundServer:
    """A :class:`Server` on a thread of its own with its own event loop, for synchronous
    code: a WSGI app in development, a test, a script. Every method blocks until the server
    answers (``timeout`` seconds at most)::

        with tidings.BackgroundServer({"http_server": {"port": 0}}) as server:
            server.publish("news", {"text": "hello"})
    """

    def __init__(self, config: ConfigSource = None, *, timeout: float = 10.0) -> None:
        self.server = Server(config)
        self.timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread and the server; raises what the server's start raised."""
        if self._thread is not None:
            return
        ready = threading.Event()
        self._thread = threading.Thread(target=self._main, args=(ready,), name="tidings",
                                        daemon=True)
        self._thread.start()
        ready.wait()
        try:
            self.run(self.server.start())
        except BaseException:
            self.stop()
            raise

    def _main(self, ready: threading.Event) -> None:
        try:
            import uvloop

            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        except ImportError:  # pragma: no cover - uvloop is a dependency
            loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    def stop(self) -> None:
        """Stop the server (gracefully) and its thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            self.run(self.server.stop())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(self.timeout)
            self._loop = self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine of the server's (``server.publish(...)``, ...) on its loop."""
        if self._loop is None:
            coro.close()
            raise RuntimeError("the server is not started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self.timeout)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def ws_url(self) -> str:
        return self.server.ws_url

    @property
    def api_url(self) -> str:
        return self.server.api_url

    def publish(self, channel: str, data: Any, **options: Any) -> PublishResult:
        """As :meth:`Server.publish`."""
        return self.run(self.server.publish(channel, data, **options))

    def broadcast(self, channels: Sequence[str], data: Any, **options: Any) -> BroadcastResult:
        return self.run(self.server.broadcast(channels, data, **options))

    def presence(self, channel: str) -> dict[str, ClientInfo]:
        return self.run(self.server.presence(channel))

    def presence_stats(self, channel: str) -> PresenceStats:
        return self.run(self.server.presence_stats(channel))

    def history(self, channel: str, **options: Any) -> HistoryResult:
        return self.run(self.server.history(channel, **options))

    def position(self, channel: str) -> StreamPosition:
        return self.run(self.server.position(channel))

    def disconnect(self, user: str, **options: Any) -> None:
        self.run(self.server.disconnect(user, **options))

    def unsubscribe(self, user: str, channel: str, **options: Any) -> None:
        self.run(self.server.unsubscribe(user, channel, **options))

    def call(self, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return self.run(self.server.call(method, params))
