"""A backend hook's result, applied (sans-I/O): what a connect, subscribe or publish gets from
the answer of its hook (PROXY.md §4.1, §4.3, §4.4). Payloads in a bad ``b64*`` field are an
internal error (100), as in Centrifugo."""

from __future__ import annotations

from dataclasses import dataclass, field

from tidings.errors import ErrorCode
from tidings.protocol import codec
from tidings.protocol import proxyproto as pp
from tidings.protocol.grants import SubscribeDecision, as_proxied
from tidings.protocol.messages import SubscribeRequest
from tidings.protocol.session import Credentials, Session
from tidings.protocol.tokens import SubscribeOptions

__all__ = ["Published", "credentials", "info_bytes", "publish_answer", "subscribe_answer"]


def _bytes(value: object, b64: str) -> bytes | None:
    try:
        return pp.b64_or_json(value, b64)
    except pp.BadPayload:
        raise ErrorCode.INTERNAL from None


def info_bytes(value: object, b64: str) -> bytes | None:
    """Client or channel info, from any hook's result: sent to every subscriber (presence,
    join/leave, publications), JSON ones included, so it must be JSON whatever field it came
    in (no CR/LF: they frame messages)."""
    data = _bytes(value, b64)
    if data is None:
        return None
    if not codec.is_json(data):
        raise ErrorCode.INTERNAL
    return codec.strip_newlines(data)


def credentials(result: pp.ConnectResult, now: float) -> Credentials:
    """A connect hook's result as the connection's credentials."""
    subs = {
        channel: SubscribeOptions(info=info_bytes(opts.info, opts.b64info),
                                  data=_bytes(opts.data, opts.b64data),
                                  override=pp.overrides(opts.override))
        for channel, opts in result.subs.items()
    }
    if subs:  # both given: every channel, `subs` options winning (Centrifugo merges them)
        for channel in result.channels:
            subs.setdefault(channel, SubscribeOptions())
    return Credentials(
        user=result.user, info=info_bytes(result.info, result.b64info),
        expires_at=result.expire_at, channels=list(result.channels), subs=subs,
        data=_bytes(result.data, result.b64data), meta=_bytes(result.meta, ""),
    )


def subscribe_answer(session: Session, decision: SubscribeDecision, req: SubscribeRequest,
                     result: pp.SubscribeResult, server_refresh: bool, now: float) -> None:
    """Apply a subscribe hook's result to ``decision`` (``req``: the client's request, as the
    proxy path grants it: without its own flags). ``server_refresh``: the namespace has a
    sub_refresh hook (the server refreshes; the reply carries no expiry)."""
    sub = decision.sub
    override = pp.overrides(result.override)
    if override:
        regranted = session.grant(sub.channel, sub.opts, as_proxied(req), override,
                                  server_side=False)
        decision.sub = sub = regranted
        decision.recover = req.recover and sub.recoverable
    sub.chan_info = info_bytes(result.info, result.b64info)
    data = _bytes(result.data, result.b64data)
    if data is not None:
        decision.data = data
    if result.expire_at:
        if result.expire_at <= now:
            raise ErrorCode.EXPIRED
        sub.expires_at = result.expire_at
        decision.token_expires = not server_refresh


@dataclass(slots=True)
class Published:
    """What to publish after the publish hook: the data and the hook's options."""

    data: bytes
    skip_history: bool = False
    tags: dict[str, str] = field(default_factory=dict)
    idempotency_key: str = ""
    delta: bool = False


def publish_answer(result: pp.PublishResult | None, data: bytes) -> Published:
    """The publication after the publish hook: ``data`` replaced when the result has one
    (``data`` wins, JSON null included; else a non-empty ``b64data``)."""
    if result is None:
        return Published(data)
    replaced = _bytes(result.data, "") if result.data is not pp.UNSET else (
        _bytes(pp.UNSET, result.b64data))
    return Published(
        data=replaced if replaced is not None else data, skip_history=result.skip_history,
        tags=dict(result.tags), idempotency_key=result.idempotency_key, delta=result.delta,
    )
