"""The node's timers: pings, pong deadlines, expiry, stale connections.

Coarse and shared: the node's clock calls ``tick`` once a second. Pings go out per bucket
(clients are spread over ``ping_interval`` one-second buckets, so each tick pings 1/N of them);
pong deadlines, connection/subscription expiry and stale (never-authenticated) connections sit
in one heap. No timer object per connection. Each tick judges due deadlines before it sends its
pings: a pong deadline falling on the client's next ping tick must judge the previous ping.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Coroutine
from typing import Any

from tidings.config import ClientConfig
from tidings.core.peer import Peer
from tidings.errors import Disconnect, Unsubscribe
from tidings.protocol.session import State

__all__ = ["Timers"]

_STALE, _EXPIRE, _SUB_EXPIRE, _PONG = range(4)

Spawn = Callable[[Coroutine[Any, Any, Any]], object]


class Timers:
    def __init__(self, config: ClientConfig, spawn: Spawn,
                 expired: Callable[[Peer], None] | None = None,
                 sub_expired: Callable[[Peer, str], bool] | None = None) -> None:
        self.config = config
        self._spawn = spawn
        # What happens when a connection's expiry comes (default: disconnect 3005), and when
        # a subscription's does (True: handled, e.g. by a sub_refresh hook; False: it ends).
        self._expired = expired or (lambda client: client.close(Disconnect.EXPIRED))
        self._sub_expired = sub_expired or (lambda client, channel: False)
        # Grace after a connection's expiry (the node says 0 while a refresh hook is set).
        self.expire_delay: Callable[[], float] = lambda: config.expired_close_delay
        n_buckets = max(int(config.ping_interval), 1)
        self._ping_buckets: list[dict[Peer, None]] = [{} for _ in range(n_buckets)]
        self._ping_bucket_of: dict[Peer, int] = {}
        self._pinged_at = [0.0] * n_buckets  # when each bucket last sent its pings
        self._heap: list[tuple[float, int, int, Peer, str]] = []
        self._seq = itertools.count()
        self._tick = 0

    # ---------------------------------------------------------------- a client's life

    def opened(self, client: Peer, now: float) -> None:
        """A connection opened: it must authenticate within ``stale_close_delay``."""
        if self.config.stale_close_delay > 0:
            self._add(now + self.config.stale_close_delay, _STALE, client)

    def connected(self, client: Peer) -> None:
        """Authenticated: pinged from now on (first ping between ping/2 and ping seconds)."""
        if self.config.ping_interval > 0:
            n = len(self._ping_buckets)
            bucket = (self._tick + random.randint((n + 1) // 2, n)) % n
            self._ping_buckets[bucket][client] = None
            self._ping_bucket_of[client] = bucket
        if client.session.expires_at:
            self.schedule_expiry(client, client.session.expires_at)

    def pinged_at(self, client: Peer) -> float:
        """When the client's last ping went out (wall clock; 0: none yet)."""
        bucket = self._ping_bucket_of.get(client)
        return self._pinged_at[bucket] if bucket is not None else 0.0

    def closed(self, client: Peer) -> None:
        bucket = self._ping_bucket_of.pop(client, None)
        if bucket is not None:
            self._ping_buckets[bucket].pop(client, None)
        # Heap entries of a closed client are skipped when they come due.

    def schedule_expiry(self, client: Peer, expires_at: float) -> None:
        """Judge the connection's expiry at ``expires_at`` + ``expire_delay``."""
        self._add(expires_at + self.expire_delay(), _EXPIRE, client)

    def schedule_sub_expiry(self, client: Peer, channel: str, expires_at: float,
                            delay: float | None = None) -> None:
        when = expires_at + (self.config.expired_sub_close_delay if delay is None else delay)
        self._add(when, _SUB_EXPIRE, client, channel)

    def _add(self, when: float, kind: int, client: Peer, channel: str = "") -> None:
        heapq.heappush(self._heap, (when, next(self._seq), kind, client, channel))

    def __len__(self) -> int:
        return len(self._heap)

    # ---------------------------------------------------------------- the clock

    def tick(self, tick: int, now: float) -> None:
        """Called once a second with the tick number and the wall-clock time."""
        self._tick = tick
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, kind, client, channel = heapq.heappop(heap)
            if not client.closed:
                self._fire(kind, client, channel, now)
        index = tick % len(self._ping_buckets)
        bucket = self._ping_buckets[index]
        self._pinged_at[index] = now
        pong_timeout = self.config.pong_timeout
        for client in list(bucket):
            if client.session.awaiting_pong:
                continue  # the pong deadline timer handles it
            client.send_ping()
            if client.session.awaiting_pong:
                self._add(now + pong_timeout, _PONG, client)

    def _fire(self, kind: int, client: Peer, channel: str, now: float) -> None:
        session = client.session
        if kind == _STALE:
            if session.state is not State.CONNECTED:  # never authenticated
                client.close(Disconnect.STALE)
        elif kind == _PONG:
            if session.awaiting_pong:
                client.close(Disconnect.NO_PONG)
        elif kind == _EXPIRE:
            exp = session.expires_at
            if exp and exp + self.expire_delay() <= now:
                self._expired(client)
        elif kind == _SUB_EXPIRE:
            sub = session.subs.get(channel)
            delay = self.config.expired_sub_close_delay
            if sub is not None and sub.expires_at and sub.expires_at + delay <= now:
                if self._sub_expired(client, channel):
                    return
                if sub.server_side:
                    client.close(Disconnect.SUB_EXPIRED)
                else:
                    self._spawn(client.unsubscribe(channel, Unsubscribe.EXPIRED))
