"""A Tidings server in the test's own process, with what a test needs around it: tokens,
connected clients (closed at the end), and assertions that a block of code published something
(or nothing) to a channel.

:class:`LiveServer` runs the server on a thread of its own (``tidings.BackgroundServer``), for
synchronous tests (Django's test client, Flask's, Starlette's ``TestClient``);
:class:`AsyncLiveServer` runs it on the test's event loop (``tidings.Server``). The pytest
fixtures ``tidings`` and ``async_tidings`` (``tidings.testing.plugin``) give one per test.

``expect_publication`` subscribes **before** the block runs and waits after it, so a
publication made inside the block cannot be missed, however fast it is.
"""

from __future__ import annotations

import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from types import TracebackType
from typing import Any, Self

from tidings.embed import BackgroundServer, Server
from tidings.results import PublishResult, StreamPosition
from tidings.testing.client import (
    ANY,
    DEFAULT_TIMEOUT,
    AsyncLiveClient,
    AsyncSubscription,
    LiveClient,
    NoPublication,
    Subscription,
)
from tidings.tokentool import TokenToolError, sign_token

__all__ = ["AsyncLiveServer", "LiveServer", "test_config"]

OBSERVER = "tidings-testing"  # the user of the clients the assertions subscribe with
MARKER = "tidings.testing.marker"


def test_config(**sections: Any) -> dict[str, Any]:
    """The kit's default config: a free port on 127.0.0.1, random token and API keys, and
    channels without namespace that keep history (100, 5 min) with recovery, presence, and
    let any connected client subscribe. Sections given replace the defaults' ones."""
    config: dict[str, Any] = {
        "http_server": {"address": "127.0.0.1", "port": 0},
        "client": {"token": {"hmac_secret_key": secrets.token_hex(32)},
                   "allowed_origins": ["*"]},
        "http_api": {"key": secrets.token_hex(16)},
        "channel": {"without_namespace": {
            "history_size": 100, "history_ttl": "300s", "force_recovery": True,
            "presence": True, "allow_subscribe_for_client": True,
            "allow_history_for_subscriber": True, "allow_presence_for_subscriber": True,
        }},
    }
    config.update(sections)
    return config


test_config.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def _marker() -> dict[str, str]:
    return {MARKER: uuid.uuid4().hex}


def _unexpected(channel: str, seen: list[Any]) -> NoPublication:
    got = ", ".join(repr(p.data) for p in seen)
    return NoPublication(f"expected no publication on channel {channel!r}; received: {got}")


class _Base:
    timeout: float

    def _config(self) -> Any:
        raise NotImplementedError

    @property
    def api_key(self) -> str:
        return str(self._config().http_api.key)

    @property
    def token_key(self) -> str:
        return str(self._config().client.token.hmac_secret_key)

    def token(self, user: str = "", **claims: Any) -> str:
        """A connection token (HS256) for ``user``, with extra ``claims`` (info, channels,
        exp...), signed with the server's key."""
        return sign_token(self._config(), user, ttl=0, subscription=False, extra=claims)

    def subscription_token(self, user: str, channel: str, **claims: Any) -> str:
        return sign_token(self._config(), user, ttl=0, subscription=True,
                          extra={"channel": channel, **claims})

    def _observer_token(self, channel: str) -> str:
        """A subscription token, so the assertions subscribe in any namespace; "" when the
        server has no HMAC key (then the namespace's rules decide)."""
        try:
            return self.subscription_token(OBSERVER, channel)
        except TokenToolError:
            return ""

    def settings(self) -> dict[str, Any]:
        """Settings for ``tidings.contrib`` that point an app at this server over its HTTP
        API, upper-cased as Django's and Flask's are (Django:
        ``override_settings(TIDINGS={**settings.TIDINGS, **tidings.settings()})``)."""
        return {"API_URL": self.api_url, "API_KEY": self.api_key,
                "TOKEN_HMAC_SECRET_KEY": self.token_key, "CONNECTION_URL": self.ws_url,
                "TIMEOUT": self.timeout, "RETRIES": 0}

    @property
    def api_url(self) -> str:
        raise NotImplementedError

    @property
    def ws_url(self) -> str:
        raise NotImplementedError


class LiveServer(_Base):
    """A server on its own thread, for synchronous tests (module docstring)."""

    __test__ = False

    def __init__(self, config: Mapping[str, Any] | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.server = BackgroundServer(test_config() if config is None else config,
                                       timeout=timeout)
        self.timeout = timeout
        self._clients: list[LiveClient] = []

    def _config(self) -> Any:
        return self.server.server.config

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        clients, self._clients = self._clients, []
        for client in clients:
            client.close()
        self.server.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def ws_url(self) -> str:
        return self.server.ws_url

    @property
    def api_url(self) -> str:
        return self.server.api_url

    def client(self, user: str = "tester", *, token: str | None = None,
               headers: Mapping[str, str] | None = None, connect: bool = True) -> LiveClient:
        """A client, connected (unless ``connect=False``) with a token for ``user`` (or the
        ``token`` given; "" connects without one); closed when the server stops."""
        client = LiveClient(self.ws_url, token=self.token(user) if token is None else token,
                            headers=headers, timeout=self.timeout)
        self._clients.append(client)
        if connect:
            client.connect()
        return client

    def publish(self, channel: str, data: Any, **options: Any) -> PublishResult:
        return self.server.publish(channel, data, **options)

    def position(self, channel: str) -> StreamPosition:
        return self.server.position(channel)

    @contextlib.contextmanager
    def subscribed(self, channel: str) -> Iterator[Subscription]:
        """A fresh observer subscribed to ``channel`` for the block."""
        with LiveClient(self.ws_url, token=self.token(OBSERVER), timeout=self.timeout) as obs:
            yield obs.subscribe(channel, token=self._observer_token(channel))

    @contextlib.contextmanager
    def expect_publication(self, channel: str, data: Any = ANY, *,
                           match: Callable[[Any], bool] | None = None,
                           timeout: float | None = None) -> Iterator[Subscription]:
        """Assert the block publishes ``data`` (any data by default; ``match``: a predicate
        on it) to ``channel``: subscribed before, awaited after (``timeout`` s)."""
        with self.subscribed(channel) as sub:
            yield sub
            sub.expect(data, match=match, timeout=timeout)

    @contextlib.contextmanager
    def expect_no_publication(self, channel: str) -> Iterator[Subscription]:
        """Assert the block publishes nothing to ``channel``: after it, a marker is
        published (without history) and everything before the marker is a failure."""
        with self.subscribed(channel) as sub:
            yield sub
            marker = _marker()
            self.publish(channel, marker, skip_history=True)
            sub.expect(marker)
            if len(sub.received) > 1:
                raise _unexpected(channel, sub.received[:-1])


class AsyncLiveServer(_Base):
    """A server on the test's event loop: ``async with AsyncLiveServer() as live``."""

    __test__ = False

    def __init__(self, config: Mapping[str, Any] | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.server = Server(test_config() if config is None else config)
        self.timeout = timeout
        self._clients: list[AsyncLiveClient] = []

    def _config(self) -> Any:
        return self.server.config

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        clients, self._clients = self._clients, []
        for client in clients:
            await client.close()
        await self.server.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def ws_url(self) -> str:
        return self.server.ws_url

    @property
    def api_url(self) -> str:
        return self.server.api_url

    async def client(self, user: str = "tester", *, token: str | None = None,
                     headers: Mapping[str, str] | None = None,
                     connect: bool = True) -> AsyncLiveClient:
        client = AsyncLiveClient(self.ws_url,
                                 token=self.token(user) if token is None else token,
                                 headers=headers, timeout=self.timeout)
        self._clients.append(client)
        if connect:
            await client.connect()
        return client

    async def publish(self, channel: str, data: Any, **options: Any) -> PublishResult:
        return await self.server.publish(channel, data, **options)

    async def position(self, channel: str) -> StreamPosition:
        return await self.server.position(channel)

    @contextlib.asynccontextmanager
    async def subscribed(self, channel: str) -> AsyncIterator[AsyncSubscription]:
        async with AsyncLiveClient(self.ws_url, token=self.token(OBSERVER),
                                   timeout=self.timeout) as obs:
            yield await obs.subscribe(channel, token=self._observer_token(channel))

    @contextlib.asynccontextmanager
    async def expect_publication(self, channel: str, data: Any = ANY, *,
                                 match: Callable[[Any], bool] | None = None,
                                 timeout: float | None = None,  # noqa: ASYNC109
                                 ) -> AsyncIterator[AsyncSubscription]:
        async with self.subscribed(channel) as sub:
            yield sub
            await sub.expect(data, match=match, timeout=timeout)

    @contextlib.asynccontextmanager
    async def expect_no_publication(self, channel: str) -> AsyncIterator[AsyncSubscription]:
        async with self.subscribed(channel) as sub:
            yield sub
            marker = _marker()
            await self.publish(channel, marker, skip_history=True)
            await sub.expect(marker)
            if len(sub.received) > 1:
                raise _unexpected(channel, sub.received[:-1])
