"""Token buckets of the operation rate limits (time passed in, no loop)."""

from __future__ import annotations

from typing import Any

import msgspec

from tidings.config import CommandRateLimit, RateBucket
from tidings.config.schema import ErrorRateLimit
from tidings.protocol.ratelimit import CommandLimiter, ErrorLimiter, RateState, TokenBuckets


def limiter(per_user: bool = False, **rules: Any) -> CommandLimiter:
    cfg = msgspec.convert({"enabled": True, **rules}, CommandRateLimit)
    return CommandLimiter(cfg, per_user=per_user)


def rule(rate: int, interval: float = 1.0, **more: Any) -> dict[str, Any]:
    return {"enabled": True, "buckets": [{"interval": interval, "rate": rate}], **more}


def test_bucket_allows_its_rate_then_refills() -> None:
    buckets = TokenBuckets([RateBucket(interval=1.0, rate=3)])
    state: RateState = {}
    assert [buckets.take(state, "k", 0.0) for _ in range(4)] == [True, True, True, False]
    assert not buckets.take(state, "k", 0.2)  # 0.6 of a token back
    assert buckets.take(state, "k", 0.4)  # 1.2 tokens back
    assert not buckets.take(state, "k", 0.4)
    assert [buckets.take(state, "k", 100.0) for _ in range(4)] == [True, True, True, False]


def test_every_bucket_must_have_a_token_and_a_refusal_takes_none() -> None:
    buckets = TokenBuckets([RateBucket(interval=1.0, rate=5), RateBucket(interval=60, rate=2)])
    state: RateState = {}
    assert [buckets.take(state, "k", 0.0) for _ in range(3)] == [True, True, False]
    assert state["k"][0] == 3.0  # the first bucket gave nothing for the refused one


def test_command_rule_default_and_total() -> None:
    lim = limiter(default=rule(2), publish=rule(1), total=rule(3))
    state: RateState = {}
    assert lim.allow(state, "publish", 0.0)
    assert not lim.allow(state, "publish", 0.0)  # its own rule
    assert lim.allow(state, "history", 0.0)  # the default
    assert lim.allow(state, "presence", 0.0)  # the default, a bucket per command
    assert not lim.allow(state, "presence_stats", 0.0)  # total: 3 allowed so far


def test_connect_is_only_limited_per_user() -> None:
    state: RateState = {}
    assert all(limiter(connect=rule(1)).allow(state, "connect", 0.0) for _ in range(5))
    per_user = limiter(per_user=True, connect=rule(1), total=rule(1))
    assert per_user.allow(state, "connect", 0.0)
    assert not per_user.allow(state, "connect", 0.0)
    assert per_user.allow(state, "publish", 0.0)  # connect took no token from total


def test_namespace_and_method_overrides() -> None:
    lim = limiter(
        publish=rule(1, namespace_overrides=[{"namespace_name": "chat", **rule(3)}]),
        rpc=rule(1, method_overrides=[{"method": "ping", **rule(2)}]),
    )
    state: RateState = {}
    assert [lim.allow(state, "publish", 0.0, namespace="chat") for _ in range(4)] == [
        True, True, True, False]
    assert lim.allow(state, "publish", 0.0)
    assert not lim.allow(state, "publish", 0.0)
    assert [lim.allow(state, "rpc", 0.0, rpc_method="ping") for _ in range(3)] == [
        True, True, False]
    assert lim.allow(state, "rpc", 0.0, rpc_method="other")
    assert not lim.allow(state, "rpc", 0.0, rpc_method="other")


def test_disabled_limits_allow_everything() -> None:
    lim = CommandLimiter(msgspec.convert({"publish": rule(1)}, CommandRateLimit),
                         per_user=False)
    assert all(lim.allow({}, "publish", 0.0) for _ in range(10))
    assert not ErrorLimiter(ErrorRateLimit()).enabled


def test_error_limiter() -> None:
    errors = ErrorLimiter(msgspec.convert({"enabled": True, "total": rule(2, 10.0)},
                                          ErrorRateLimit))
    state: RateState = {}
    assert [errors.allow(state, 0.0) for _ in range(3)] == [True, True, False]
    assert errors.allow(state, 5.0)  # one token back after 5 s
