"""Token buckets for operation rate limits (Centrifugo PRO's ``client.rate_limit`` schema).
Sans-I/O: time is passed in, state lives in plain dicts owned by the caller.

A bucket ``{interval, rate}`` holds up to ``rate`` tokens and refills at ``rate / interval``
tokens per second; a command takes one token from each bucket that applies, and is allowed only
when every one of them has a token. Which buckets apply to a command:

1. its own rule (``publish``, ``subscribe``, ...) when enabled, else ``default`` when enabled;
   for a channel command a ``namespace_overrides`` entry of the channel's namespace replaces
   them, for ``rpc`` a ``method_overrides`` entry of the method;
2. then ``total`` (when enabled), for every command that passed step 1.

A state maps a rule key to ``[tokens, updated_at, tokens, updated_at, ...]`` (one pair per
bucket), created on first use: an idle connection costs nothing.
"""

from __future__ import annotations

from tidings.config.schema import CommandRateLimit, ErrorRateLimit, RateBucket, RateRule

__all__ = ["CommandLimiter", "ErrorLimiter", "RateState", "TokenBuckets"]

RateState = dict[str, list[float]]

# Commands a rule may be named after (``connect`` only counts for users: see CommandLimiter).
COMMANDS = ("connect", "subscribe", "unsubscribe", "publish", "history", "presence",
            "presence_stats", "refresh", "sub_refresh", "rpc")


class TokenBuckets:
    """One or more buckets checked together."""

    __slots__ = ("capacity", "refill")

    def __init__(self, buckets: list[RateBucket]) -> None:
        self.capacity = tuple(float(b.rate) for b in buckets)
        self.refill = tuple(b.rate / b.interval for b in buckets)

    def take(self, state: RateState, key: str, now: float) -> bool:
        """Take a token from every bucket if each has one; False (nothing taken) otherwise."""
        tokens = state.get(key)
        if tokens is None:
            tokens = state[key] = [x for cap in self.capacity for x in (cap, now)]
        allowed = True
        for i, (cap, refill) in enumerate(zip(self.capacity, self.refill, strict=True)):
            level = min(cap, tokens[2 * i] + (now - tokens[2 * i + 1]) * refill)
            tokens[2 * i], tokens[2 * i + 1] = level, now
            if level < 1.0:
                allowed = False
        if allowed:
            for i in range(len(self.capacity)):
                tokens[2 * i] -= 1.0
        return allowed


def _buckets(rule: RateRule) -> TokenBuckets | None:
    return TokenBuckets(rule.buckets) if rule.enabled and rule.buckets else None


def _rules(cfg: CommandRateLimit) -> list[RateRule]:
    return [cfg.total, cfg.default, *(getattr(cfg, name) for name in COMMANDS)]


def _all_buckets(rule: RateRule) -> list[RateBucket]:
    return [*rule.buckets, *(b for o in rule.namespace_overrides for b in o.buckets),
            *(b for o in rule.method_overrides for b in o.buckets)]


class CommandLimiter:
    """The compiled ``client_command`` (per connection) or ``user_command`` (per user) rules."""

    def __init__(self, cfg: CommandRateLimit, *, per_user: bool) -> None:
        self.enabled = cfg.enabled
        self._total = _buckets(cfg.total)
        default = _buckets(cfg.default)
        # Seconds after which an untouched state is full again (every bucket refilled).
        self.refill_time = max(
            (b.interval for rule in _rules(cfg) for b in _all_buckets(rule)), default=0.0
        )
        self._rules: dict[str, TokenBuckets | None] = {}
        self._namespaces: dict[str, dict[str, TokenBuckets | None]] = {}
        self._methods: dict[str, TokenBuckets | None] = {}
        for name in COMMANDS:
            if name == "connect" and not per_user:
                continue  # connections are limited by client.connection_rate_limit
            rule: RateRule = getattr(cfg, name)
            own = _buckets(rule)
            self._rules[name] = own if own is not None else default
            if rule.namespace_overrides:
                self._namespaces[name] = {
                    o.namespace_name: TokenBuckets(o.buckets) if o.enabled and o.buckets
                    else default
                    for o in rule.namespace_overrides
                }
            if name == "rpc":
                self._methods = {
                    o.method: TokenBuckets(o.buckets) if o.enabled and o.buckets else default
                    for o in rule.method_overrides
                }

    def allow(self, state: RateState, method: str, now: float, *, namespace: str = "",
              rpc_method: str = "") -> bool:
        """Take this command's tokens; False when it is over its rate."""
        if not self.enabled:
            return True
        key = method
        buckets = self._rules.get(method)
        overrides = self._namespaces.get(method)
        if overrides is not None and namespace in overrides:
            key, buckets = f"{method}@{namespace}", overrides[namespace]
        elif method == "rpc" and rpc_method in self._methods:
            key, buckets = f"rpc#{rpc_method}", self._methods[rpc_method]
        if buckets is not None and not buckets.take(state, key, now):
            return False
        total = self._total
        return total is None or method == "connect" or total.take(state, "", now)


class ErrorLimiter:
    """``client_error``: how many error replies one connection may cause."""

    def __init__(self, cfg: ErrorRateLimit) -> None:
        self._total = _buckets(cfg.total) if cfg.enabled else None
        self.enabled = self._total is not None

    def allow(self, state: RateState, now: float) -> bool:
        """Count one error; False once the connection has caused too many."""
        return self._total is None or self._total.take(state, "", now)
