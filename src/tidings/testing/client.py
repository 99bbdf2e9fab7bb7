"""A small WebSocket client for tests (JSON protocol v2, on ``websockets``): connect,
subscribe, await publications with a timeout. :class:`LiveClient` is synchronous (a reader
thread), :class:`AsyncLiveClient` async (a reader task); both answer the server's pings.

::

    with LiveClient(server.ws_url, token=token) as client:
        sub = client.subscribe("news")
        ...                                   # something publishes
        assert sub.next().data == {"text": "hi"}

Every wait is bounded by ``timeout`` (seconds); a wait that runs out raises
:class:`NoPublication` (an ``AssertionError``) listing what did arrive.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self

from tidings.testing.wire import Closed, Publication, ReplyError, Router, since_params

__all__ = [
    "ANY",
    "AsyncLiveClient",
    "AsyncSubscription",
    "Closed",
    "LiveClient",
    "NoPublication",
    "Publication",
    "ReplyError",
    "Subscription",
]

DEFAULT_TIMEOUT = 5.0


class _Any:
    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _Any()
"""Matches any publication's data."""


class NoPublication(AssertionError):
    """No (matching) publication arrived in time."""


def matches(pub: Publication, data: Any, match: Callable[[Any], bool] | None) -> bool:
    if match is not None and not match(pub.data):
        return False
    return data is ANY or pub.data == data


def _missing(channel: str, data: Any, timeout: float, seen: list[Publication]) -> NoPublication:
    want = "a publication" if data is ANY else f"publication {data!r}"
    got = ", ".join(repr(p.data) for p in seen) or "nothing"
    return NoPublication(f"{want} on channel {channel!r} did not arrive within {timeout:g} s; "
                         f"received: {got}")


class _SubscriptionBase:
    def __init__(self, channel: str, timeout: float) -> None:
        self.channel = channel
        self.timeout = timeout
        self.result: dict[str, Any] = {}
        self.received: list[Publication] = []  # every publication, in order

    @property
    def recovered(self) -> bool:
        return bool(self.result.get("recovered"))

    @property
    def was_recovering(self) -> bool:
        return bool(self.result.get("was_recovering"))

    @property
    def offset(self) -> int:
        return int(self.result.get("offset", 0))

    @property
    def epoch(self) -> str:
        return str(self.result.get("epoch", ""))


class Subscription(_SubscriptionBase):
    """A channel subscribed by a :class:`LiveClient`."""

    def __init__(self, client: LiveClient, channel: str, timeout: float) -> None:
        super().__init__(channel, timeout)
        self._client = client
        self._queue: queue.SimpleQueue[Publication] = queue.SimpleQueue()

    def _put(self, pub: Publication) -> None:
        self.received.append(pub)
        self._queue.put(pub)

    def next(self, timeout: float | None = None) -> Publication:
        """The next publication (recovered ones first)."""
        return self.expect(ANY, timeout=timeout)

    def expect(self, data: Any = ANY, *, match: Callable[[Any], bool] | None = None,
               timeout: float | None = None) -> Publication:
        """The next publication whose data equals ``data`` (and passes ``match``); the ones
        before it are skipped (they stay in ``received``)."""
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while (left := deadline - time.monotonic()) > 0:
            try:
                pub = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if matches(pub, data, match):
                return pub
        raise _missing(self.channel, data, limit, self.received)

    def unsubscribe(self) -> None:
        self._client.call("unsubscribe", {"channel": self.channel})
        self._client.router.sinks.pop(self.channel, None)


class AsyncSubscription(_SubscriptionBase):
    """A channel subscribed by an :class:`AsyncLiveClient`."""

    def __init__(self, client: AsyncLiveClient, channel: str, timeout: float) -> None:
        super().__init__(channel, timeout)
        self._client = client
        self._queue: asyncio.Queue[Publication] = asyncio.Queue()

    def _put(self, pub: Publication) -> None:
        self.received.append(pub)
        self._queue.put_nowait(pub)

    async def next(self, timeout: float | None = None) -> Publication:  # noqa: ASYNC109
        return await self.expect(ANY, timeout=timeout)

    async def expect(self, data: Any = ANY, *, match: Callable[[Any], bool] | None = None,
                     timeout: float | None = None,  # noqa: ASYNC109 (as the sync twin's)
                     ) -> Publication:
        limit = self.timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(limit):
                while True:
                    pub = await self._queue.get()
                    if matches(pub, data, match):
                        return pub
        except TimeoutError:
            raise _missing(self.channel, data, limit, self.received) from None

    async def unsubscribe(self) -> None:
        await self._client.call("unsubscribe", {"channel": self.channel})
        self._client.router.sinks.pop(self.channel, None)


class LiveClient:
    """A synchronous test client (module docstring)."""

    __test__ = False  # not a test class, whatever module imports it

    def __init__(self, url: str, *, token: str = "", headers: Mapping[str, str] | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url = url
        self.token = token
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.router = Router()
        self.connect_result: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._ws: Any = None
        self._reader: threading.Thread | None = None

    @property
    def client_id(self) -> str:
        return str(self.connect_result.get("client", ""))

    def connect(self) -> dict[str, Any]:
        """Open the WebSocket and send ``connect``; the connect result."""
        from websockets.sync.client import connect

        ws = connect(self.url, additional_headers=self.headers, open_timeout=self.timeout,
                     close_timeout=self.timeout)
        self._ws = ws.__enter__()  # websockets >= 17.1 wants it entered; close() ends it
        self._reader = threading.Thread(target=self._read, name="tidings-test-client",
                                        daemon=True)
        self._reader.start()
        self.connect_result = self.call("connect", {"token": self.token,
                                                    "name": "tidings-testing"})
        return self.connect_result

    def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        ws = self._ws
        try:
            for frame in ws:
                with self._lock:
                    answers = self.router.receive(frame)
                for answer in answers:
                    ws.send(answer)
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                self.router.close(ws.close_code, ws.close_reason or "")

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Send one command; its result (raises :class:`ReplyError` or :class:`Closed`)."""
        done: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()

        def waiter(result: dict[str, Any] | None, error: Exception | None) -> None:
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(result or {})

        with self._lock:
            frame = self.router.command(method, params, waiter)
        self._ws.send(frame)
        try:
            return done.result(self.timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"no reply to {method} within {self.timeout:g} s") from None

    def subscribe(self, channel: str, *, since: Any = None, token: str = "",
                  **options: Any) -> Subscription:
        """Subscribe; ``since`` (a stream position) recovers what was published after it."""
        sub = Subscription(self, channel, self.timeout)
        self.router.sinks[channel] = sub._put
        params = {"channel": channel, **since_params(since), **options}
        if token:
            params["token"] = token
        try:
            sub.result = self.call("subscribe", params)
        except BaseException:
            self.router.sinks.pop(channel, None)
            raise
        return sub

    def publish(self, channel: str, data: Any) -> dict[str, Any]:
        return self.call("publish", {"channel": channel, "data": data})

    def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            ws.close()
        if self._reader is not None:
            self._reader.join(self.timeout)

    def __enter__(self) -> Self:
        if self._ws is None:
            self.connect()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class AsyncLiveClient:
    """An async test client (module docstring): ``await client.connect()``, ``await
    client.subscribe(...)``, ``await sub.next()``."""

    __test__ = False

    def __init__(self, url: str, *, token: str = "", headers: Mapping[str, str] | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url = url
        self.token = token
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.router = Router()
        self.connect_result: dict[str, Any] = {}
        self._ws: Any = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def client_id(self) -> str:
        return str(self.connect_result.get("client", ""))

    async def connect(self) -> dict[str, Any]:
        from websockets.asyncio.client import connect

        self._ws = await connect(self.url, additional_headers=self.headers,
                                 open_timeout=self.timeout, close_timeout=self.timeout)
        self._reader = asyncio.create_task(self._read(), name="tidings-test-client")
        self.connect_result = await self.call("connect", {"token": self.token,
                                                          "name": "tidings-testing"})
        return self.connect_result

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        ws = self._ws
        try:
            async for frame in ws:
                for answer in self.router.receive(frame):
                    await ws.send(answer)
        except ConnectionClosed:
            pass
        finally:
            self.router.close(ws.close_code, ws.close_reason or "")

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        def waiter(result: dict[str, Any] | None, error: Exception | None) -> None:
            if done.done():
                return
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(result or {})

        await self._ws.send(self.router.command(method, params, waiter))
        try:
            async with asyncio.timeout(self.timeout):
                return await done
        except TimeoutError:
            raise TimeoutError(f"no reply to {method} within {self.timeout:g} s") from None

    async def subscribe(self, channel: str, *, since: Any = None, token: str = "",
                        **options: Any) -> AsyncSubscription:
        sub = AsyncSubscription(self, channel, self.timeout)
        self.router.sinks[channel] = sub._put
        params = {"channel": channel, **since_params(since), **options}
        if token:
            params["token"] = token
        try:
            sub.result = await self.call("subscribe", params)
        except BaseException:
            self.router.sinks.pop(channel, None)
            raise
        return sub

    async def publish(self, channel: str, data: Any) -> dict[str, Any]:
        return await self.call("publish", {"channel": channel, "data": data})

    async def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def __aenter__(self) -> Self:
        if self._ws is None:
            await self.connect()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()
