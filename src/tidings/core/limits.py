"""Admission and rate limits of one node (docs/security.md lists every limit).

- ``client.connection_limit`` / ``client.connection_rate_limit``: checked at the door, before
  a connection endpoint upgrades or starts streaming (Centrifugo answers HTTP 503 there too);
- ``client.rate_limit.client_command``: per connection; ``user_command``: per user on this node
  (its state lives while the user has a connection here); ``client_error``: error replies per
  connection before disconnect 3509. Per-user states are dropped once idle long enough to be
  full again (``sweep``, from the node's clock).

The buckets themselves are sans-I/O (``tidings.protocol.ratelimit``); this module owns where
their state lives.
"""

from __future__ import annotations

import logging
import time

from tidings.config import Config, RateBucket
from tidings.protocol.ratelimit import CommandLimiter, ErrorLimiter, RateState, TokenBuckets

__all__ = ["Limits"]

log = logging.getLogger("tidings.limits")

WARNING_INTERVAL = 3.0  # at most one "limit reached" warning per kind this often


class Limits:
    def __init__(self, config: Config) -> None:
        client = config.client
        self.connection_limit = client.connection_limit
        self.user_connection_limit = client.user_connection_limit
        rate = client.connection_rate_limit
        self._connections = TokenBuckets([RateBucket(interval=1.0, rate=rate)]) if rate else None
        self._connection_state: RateState = {}
        self.client_commands = CommandLimiter(client.rate_limit.client_command, per_user=False)
        self.user_commands = CommandLimiter(client.rate_limit.user_command, per_user=True)
        self.errors = ErrorLimiter(client.rate_limit.client_error)
        # Whether any command limit applies (one attribute read per command when none does).
        self.commands = self.client_commands.enabled or self.user_commands.enabled
        self._user_states: dict[str, RateState] = {}
        self._warned: dict[str, float] = {}
        self.refused_connections = 0  # both kinds of door refusals, for info/metrics
        self.limited_commands = 0
        self.error_disconnects = 0

    # ---------------------------------------------------------------- the door

    def admit(self, open_clients: int) -> bool:
        """May one more connection start? False means HTTP 503 (the SDKs back off and retry)."""
        now = time.monotonic()
        if self.connection_limit and open_clients >= self.connection_limit:
            self._refuse("node connection limit reached (client.connection_limit = %d)",
                         self.connection_limit, now)
            return False
        if self._connections is not None and not self._connections.take(
            self._connection_state, "", now
        ):
            self._refuse("connection rate limit reached (client.connection_rate_limit = %d/s)",
                         int(self._connections.capacity[0]), now)
            return False
        return True

    def _refuse(self, message: str, value: int, now: float) -> None:
        self.refused_connections += 1
        if now - self._warned.get(message, -WARNING_INTERVAL) >= WARNING_INTERVAL:
            self._warned[message] = now
            log.warning(message, value)

    # ---------------------------------------------------------------- commands

    def allow_command(self, state: RateState, user: str, method: str, now: float, *,
                      namespace: str = "", rpc_method: str = "") -> bool:
        """One command of a connection (``state``) of ``user``: within both rates?"""
        allowed = self.client_commands.allow(
            state, method, now, namespace=namespace, rpc_method=rpc_method
        ) and (not user or self.user_commands.allow(
            self._user_states.setdefault(user, {}), method, now, namespace=namespace,
            rpc_method=rpc_method,
        ))
        if not allowed:
            self.limited_commands += 1
        return allowed

    def allow_connect(self, user: str, now: float) -> bool:
        """``user_command.connect``: may this user connect once more now?"""
        if not user or not self.user_commands.enabled:
            return True
        allowed = self.user_commands.allow(self._user_states.setdefault(user, {}), "connect",
                                           now)
        if not allowed:
            self.limited_commands += 1
        return allowed

    def sweep(self, now: float) -> None:
        """Forget per-user states idle long enough to have refilled completely (the same as
        no state): users who left stop costing memory, users who come back find full
        buckets, exactly as if the state had been kept."""
        idle = self.user_commands.refill_time
        stale = [user for user, state in self._user_states.items()
                 if all(now - tokens[-1] > idle for tokens in state.values())]
        for user in stale:
            del self._user_states[user]

    def allow_error(self, state: RateState, now: float) -> bool:
        allowed = self.errors.allow(state, now)
        if not allowed:
            self.error_disconnects += 1
        return allowed
