"""What one subscription gets (sans-I/O): the options it is granted from its channel's
namespace, the client's request and a token's overrides (``grant``); the decision to carry out
(``SubscribeDecision``); the result built from the stream read (``subscribe_result``, with the
recovery verdict)."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from tidings.config import ChannelOptions
from tidings.errors import ErrorCode
from tidings.protocol.channels import ChannelRules
from tidings.protocol.messages import (
    Publication,
    Raw,
    StreamPosition,
    SubscribeRequest,
    SubscribeResult,
)
from tidings.protocol.recovery import is_recovered

__all__ = [
    "FLAG_REJECT_UNRECOVERED",
    "Sub",
    "SubscribeDecision",
    "as_full_string",
    "as_proxied",
    "grant",
    "raw_or_none",
    "subscribe_result",
]

FLAG_REJECT_UNRECOVERED = 2
_string = msgspec.json.Encoder()


class Sub:
    """What the server remembers about one subscription of one connection."""

    __slots__ = (
        "chan_info",
        "channel",
        "delta",
        "expires_at",
        "join_leave",
        "opts",
        "positioned",
        "presence",
        "push_join_leave",
        "recoverable",
        "server_side",
    )

    def __init__(self, channel: str, opts: ChannelOptions) -> None:
        self.channel = channel
        self.opts = opts
        self.presence = opts.presence
        self.join_leave = opts.join_leave
        self.push_join_leave = opts.join_leave and opts.force_push_join_leave
        self.positioned = False
        self.recoverable = False
        self.chan_info: bytes | None = None
        self.expires_at = 0
        self.server_side = False
        self.delta = False  # fossil delta negotiated (PROTOCOL.md §6.6)


def as_full_string(pub: Publication) -> Publication:
    """A publication for a delta subscription, in full: ``data`` as a JSON string of the
    payload text (PROTOCOL.md §6.6)."""
    return Publication(data=Raw(_string.encode(bytes(pub.data).decode("utf-8", "replace"))),
                       info=pub.info, offset=pub.offset, tags=pub.tags)


@dataclass(slots=True)
class SubscribeDecision:
    sub: Sub
    recover: bool = False
    offset: int = 0
    epoch: str = ""
    reject_unrecovered: bool = False
    data: bytes | None = None
    token_expires: bool = False  # the reply says when it expires (the client refreshes)
    proxied: bool = False  # the subscribe hook decides


def as_proxied(req: SubscribeRequest) -> SubscribeRequest:
    """A client subscribe as the subscribe hook path grants it: without the client's own
    positioned, recoverable and join_leave flags (the namespace and the hook decide)."""
    return msgspec.structs.replace(req, positioned=False, recoverable=False, join_leave=False)


def raw_or_none(data: bytes | None) -> Raw | None:
    return Raw(data) if data else None



def grant(
    rules: ChannelRules,
    user: str,
    channel: str,
    opts: ChannelOptions,
    req: SubscribeRequest,
    override: dict[str, bool],
    *,
    server_side: bool,
) -> Sub:
    sub = Sub(channel, opts)
    sub.server_side = server_side
    presence = override.get("presence", opts.presence)
    join_leave = override.get("join_leave", opts.join_leave)
    force_push = override.get("force_push_join_leave", opts.force_push_join_leave)
    force_recovery = override.get("force_recovery", opts.force_recovery)
    force_positioning = override.get("force_positioning", opts.force_positioning)
    history_access = rules.can_history(opts, user, True)
    presence_access = rules.can_presence(opts, user, True)
    sub.presence = presence
    sub.join_leave = join_leave
    sub.delta = bool(req.delta) and req.delta in opts.allowed_delta_types
    sub.push_join_leave = join_leave and (
        force_push or (req.join_leave and presence_access)
    )
    if opts.history_enabled:
        sub.recoverable = force_recovery or (
            req.recoverable and (opts.allow_recovery or history_access)
        )
        sub.positioned = (
            sub.recoverable
            or force_positioning
            or (req.positioned and (opts.allow_positioning or history_access))
        )
    return sub



def subscribe_result(
    decision: SubscribeDecision,
    pubs: list[Publication],
    top: StreamPosition,
    now: float,
) -> tuple[SubscribeResult, int]:
    """Build the SubscribeResult from the stream read; returns it with the offset from which
    live publications continue. Raises 112 when recovery fails and the client asked to be
    told (flag 2)."""
    sub = decision.sub
    result = SubscribeResult(data=raw_or_none(decision.data))
    if sub.expires_at and decision.token_expires:  # else the server refreshes (sub_refresh hook)
        result.expires = True
        result.ttl = max(int(sub.expires_at - now), 0)
    result.delta = sub.delta
    if not sub.positioned:
        return result, 0
    result.positioned = True
    result.recoverable = sub.recoverable
    result.epoch = top.epoch
    result.offset = top.offset
    if decision.recover:
        result.was_recovering = True
        recovered = is_recovered(decision.offset, decision.epoch, pubs, top)
        if recovered:
            result.recovered = True
            result.offset = decision.offset
            result.publications = pubs or None
        elif decision.reject_unrecovered:
            raise ErrorCode.UNRECOVERABLE_POSITION
    return result, top.offset
