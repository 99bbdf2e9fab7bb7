"""The framework-free core of the Django, Flask and FastAPI integrations: :class:`Realtime`.

It holds the settings (:mod:`tidings.contrib.settings`), mints tokens, publishes (over HTTP
to a Tidings beside the app, or in process), and says what a page needs to connect and to
subscribe without a gap (render-then-subscribe):

1. in the request that renders the page, read the channel's stream position **first**
   (:meth:`Realtime.position`), then the page's data from the database;
2. render both; the page subscribes with ``since`` that position, so every publication made
   after the read is delivered to it (some may repeat what the data already shows: dedupe by
   id), none is lost in between;
3. if the server can no longer recover from there (history expired, the epoch changed), the
   subscription says ``recovered: false`` and the page refetches its data.

The channel needs history and recovery (``history_size``, ``history_ttl``,
``force_recovery`` or the client's ``since``). The framework modules turn each piece into
their idiom (views, blueprint, router, template tags, Jinja globals, dependencies).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tidings.contrib.publishers import (
    AsyncEmbeddedPublisher,
    AsyncHttpPublisher,
    AsyncPublisher,
    EmbeddedPublisher,
    HttpPublisher,
    Publisher,
)
from tidings.contrib.settings import Settings, SettingsError, Tokens
from tidings.embed import BackgroundServer, Server
from tidings.results import ApiError, PublishResult, StreamPosition

__all__ = ["Answer", "Realtime", "Settings", "SettingsError", "ws_url_for"]

log = logging.getLogger("tidings.contrib")

Answer = tuple[int, dict[str, Any]]
"""An HTTP status and the JSON object to answer with."""


def ws_url_for(api_url: str) -> str:
    """The WebSocket endpoint of the Tidings whose API is at ``api_url``."""
    parts = urlsplit(api_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, "/connection/websocket", "", ""))


class Realtime:
    """The app's side of Tidings (module docstring). ``server``: a Tidings started by the
    app itself (a :class:`tidings.Server` serves async code, a
    :class:`tidings.BackgroundServer` both)."""

    def __init__(self, settings: Settings | Mapping[str, Any], *,
                 server: Server | BackgroundServer | None = None,
                 extra: Sequence[str] = (), where: str = "TIDINGS") -> None:
        if not isinstance(settings, Settings):
            settings = Settings.from_mapping(settings, extra=extra, where=where)
        self.settings = settings
        self.server = server
        base = None if server is None else _config_of(server)
        self.config = settings.server_config(base)
        self.tokens = Tokens(settings, self.config)
        self._lock = threading.Lock()
        self._publisher: Publisher | None = None
        self._owned: BackgroundServer | None = None
        self._async: tuple[asyncio.AbstractEventLoop, AsyncPublisher] | None = None

    # ------------------------------------------------------------------ publishing

    @property
    def publisher(self) -> Publisher:
        """The synchronous publisher (made on first use; with ``embedded`` this starts the
        in-process server)."""
        with self._lock:
            if self._publisher is None:
                self._publisher = self._make_publisher()
            return self._publisher

    def _make_publisher(self) -> Publisher:
        s = self.settings
        if isinstance(self.server, BackgroundServer):
            return EmbeddedPublisher(self.server)
        if isinstance(self.server, Server):
            raise SettingsError("a tidings.Server runs on an event loop: publish from async "
                                "code (async_publisher), or give a tidings.BackgroundServer")
        if s.embedded:
            self._owned = BackgroundServer(self.config)
            self._owned.start()
            return EmbeddedPublisher(self._owned)
        if not s.api_url:
            raise SettingsError("TIDINGS: set api_url (and api_key) of the Tidings beside "
                                "the app, or embedded")
        return HttpPublisher(s.api_url, self.config.http_api.key, timeout=s.timeout,
                             retries=s.retries)

    @property
    def async_publisher(self) -> AsyncPublisher:
        """The async publisher of the running event loop (an HTTP client's session belongs
        to one loop: a new loop, as in a test, gets a new one)."""
        loop = asyncio.get_running_loop()
        if self._async is not None and self._async[0] is loop:
            return self._async[1]
        s = self.settings
        publisher: AsyncPublisher
        if self.server is not None:
            publisher = AsyncEmbeddedPublisher(self.server)
        elif s.embedded:
            raise SettingsError("TIDINGS embedded in async code: start a tidings.Server in "
                                "the app's lifespan and give it as server=")
        elif not s.api_url:
            raise SettingsError("TIDINGS: set api_url (and api_key), or give a server")
        else:
            publisher = AsyncHttpPublisher(s.api_url, self.config.http_api.key,
                                           timeout=s.timeout, retries=s.retries)
        self._async = (loop, publisher)
        return publisher

    def publish(self, channel: str, data: Any, **options: Any) -> PublishResult:
        """Publish now (``idempotency_key``, ``skip_history``, ``tags``); raises
        :class:`~tidings.results.ApiError`."""
        return self.publisher.publish(channel, data, **options)

    async def apublish(self, channel: str, data: Any, **options: Any) -> PublishResult:
        return await self.async_publisher.publish(channel, data, **options)

    def position(self, channel: str) -> StreamPosition | None:
        """The channel's stream position, or None when Tidings cannot say (unreachable, or
        no history in that channel: logged); the page then subscribes without ``since``."""
        try:
            return self.publisher.position(channel)
        except ApiError as exc:
            log.warning("no stream position for channel %r: %s", channel, exc)
            return None

    async def aposition(self, channel: str) -> StreamPosition | None:
        try:
            return await self.async_publisher.position(channel)
        except ApiError as exc:
            log.warning("no stream position for channel %r: %s", channel, exc)
            return None

    def close(self) -> None:
        """Close the HTTP client; stop the server this object started (``embedded``)."""
        with self._lock:
            publisher, self._publisher = self._publisher, None
            owned, self._owned = self._owned, None
        if publisher is not None:
            publisher.close()
        if owned is not None:
            owned.stop()

    async def aclose(self) -> None:
        current, self._async = self._async, None
        if current is not None:
            await current[1].close()

    # ------------------------------------------------------------------ the page

    @property
    def connection_url(self) -> str:
        """Where the page's client connects (``connection_url``, else the embedded server's
        WebSocket URL, else derived from ``api_url``)."""
        if self.settings.connection_url:
            return self.settings.connection_url
        if self.server is None and self.settings.embedded:
            _ = self.publisher  # starts the in-process server
        server = self.server or self._owned
        if server is not None:
            return server.ws_url
        return ws_url_for(self.settings.api_url) if self.settings.api_url else ""

    def token_answer(self, user: str | None) -> Answer:
        """The token view's answer: 200 ``{"token": ...}`` (what centrifuge-js' ``getToken``
        returns), 401 for a visitor who is not logged in unless ``allow_anonymous``."""
        if user is None and not self.settings.allow_anonymous:
            return 401, {"error": "not logged in"}
        return 200, {"token": self.tokens.connection(user or "")}

    def subscription_token_answer(self, user: str | None, channel: str,
                                  allowed: bool) -> Answer:
        """The subscription token view's answer: 200 ``{"token": ...}``, 400 without a
        channel, 401 not logged in, 403 when the app's permission check said no."""
        if not channel:
            return 400, {"error": "channel missing"}
        if user is None and not self.settings.allow_anonymous:
            return 401, {"error": "not logged in"}
        if not allowed:
            return 403, {"error": "permission denied"}
        return 200, {"token": self.tokens.subscription(user or "", channel)}

    def page(self, channel: str, since: StreamPosition | None, *, token_url: str = "",
             subscription_token_url: str = "") -> dict[str, Any]:
        """What the page's script needs (JSON, read by ``live.js`` in the docs): the
        connection URL, the token endpoint, the subscription token endpoint when the channel
        needs one (else ""), the channel and the position it was rendered at."""
        return {
            "url": self.connection_url,
            "tokenUrl": token_url,
            "subscriptionTokenUrl": subscription_token_url,
            "channel": channel,
            "since": None if since is None else {"offset": since.offset,
                                                 "epoch": since.epoch},
        }


def _config_of(server: Server | BackgroundServer) -> Any:
    return server.config if isinstance(server, Server) else server.server.config
