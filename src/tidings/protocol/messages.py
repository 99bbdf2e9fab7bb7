"""Client protocol v2 messages (JSON flavour) as msgspec structs.

Field names and omission rules follow ``client.proto`` and PROTOCOL.md §1.3:
- every field with a default is omitted when equal to it (Go ``omitempty``);
- fields that must always be present are declared without a default;
- ``bytes`` fields (``data``, ``conn_info``, ``chan_info``) are embedded raw JSON
  (:class:`msgspec.Raw`), never re-encoded.

Requests ignore unknown fields, so newer optional SDK fields (``flag`` bits we do not use,
``dict``, ``profile``...) are accepted and ignored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec
from msgspec import Raw

__all__ = [
    "ClientInfo",
    "Command",
    "ConnectRequest",
    "ConnectResult",
    "DisconnectPush",
    "EmptyResult",
    "Error",
    "HistoryRequest",
    "HistoryResult",
    "JoinLeave",
    "PingRequest",
    "PresenceRequest",
    "PresenceResult",
    "PresenceStatsResult",
    "Publication",
    "PublishRequest",
    "Push",
    "Raw",
    "RefreshRequest",
    "RefreshResult",
    "Reply",
    "RpcRequest",
    "RpcResult",
    "SendRequest",
    "StreamPosition",
    "SubRefreshRequest",
    "SubRefreshResult",
    "SubscribePush",
    "SubscribeRequest",
    "SubscribeResult",
    "UnsubscribePush",
    "UnsubscribeRequest",
]

EMPTY_RAW = Raw(b"")

if TYPE_CHECKING:
    OptionalRaw = Raw | None
else:
    # msgspec decodes ``Raw | None`` only from ``null`` (msgspec#659): a ClientInfo read back
    # from Redis with connection info failed. Declared ``Raw`` with a None default, it decodes
    # a value as Raw and an absent field as None (omitted again when encoded).
    OptionalRaw = Raw


class _Msg(msgspec.Struct, omit_defaults=True, kw_only=True):
    pass


# ---------------------------------------------------------------- shared value types


class StreamPosition(_Msg):
    offset: int = 0
    epoch: str = ""


class ClientInfo(_Msg):
    user: str  # always present, even when empty
    client: str
    conn_info: OptionalRaw = None
    chan_info: OptionalRaw = None


class Publication(_Msg):
    data: Raw
    info: ClientInfo | None = None
    offset: int = 0
    tags: dict[str, str] | None = None
    delta: bool = False


class Error(_Msg):
    code: int
    message: str
    temporary: bool = False


# ---------------------------------------------------------------- requests


class SubscribeRequest(_Msg):
    channel: str = ""
    token: str = ""
    recover: bool = False
    epoch: str = ""
    offset: int = 0
    data: Raw = EMPTY_RAW
    positioned: bool = False
    recoverable: bool = False
    join_leave: bool = False
    delta: str = ""
    flag: int = 0
    type: int = 0


class ConnectRequest(_Msg):
    token: str = ""
    data: Raw = EMPTY_RAW
    subs: dict[str, SubscribeRequest] | None = None
    name: str = ""
    version: str = ""
    headers: dict[str, str] | None = None  # emulated headers, for backend hooks


class UnsubscribeRequest(_Msg):
    channel: str = ""


class PublishRequest(_Msg):
    channel: str = ""
    data: Raw = EMPTY_RAW


class PresenceRequest(_Msg):
    channel: str = ""


class HistoryRequest(_Msg):
    channel: str = ""
    limit: int = 0
    since: StreamPosition | None = None
    reverse: bool = False


class RpcRequest(_Msg):
    data: Raw = EMPTY_RAW
    method: str = ""


class RefreshRequest(_Msg):
    token: str = ""


class SubRefreshRequest(_Msg):
    channel: str = ""
    token: str = ""


class SendRequest(_Msg):
    data: Raw = EMPTY_RAW


class PingRequest(_Msg):
    pass


class Command(_Msg):
    id: int = 0
    connect: ConnectRequest | None = None
    subscribe: SubscribeRequest | None = None
    unsubscribe: UnsubscribeRequest | None = None
    publish: PublishRequest | None = None
    presence: PresenceRequest | None = None
    presence_stats: PresenceRequest | None = None
    history: HistoryRequest | None = None
    ping: PingRequest | None = None
    send: SendRequest | None = None
    rpc: RpcRequest | None = None
    refresh: RefreshRequest | None = None
    sub_refresh: SubRefreshRequest | None = None


# ---------------------------------------------------------------- results


class SubscribeResult(_Msg):
    expires: bool = False
    ttl: int = 0
    recoverable: bool = False
    epoch: str = ""
    publications: list[Publication] | None = None
    recovered: bool = False
    offset: int = 0
    positioned: bool = False
    data: Raw | None = None
    was_recovering: bool = False
    delta: bool = False


class ConnectResult(_Msg):
    client: str
    version: str
    expires: bool = False
    ttl: int = 0
    data: Raw | None = None
    subs: dict[str, SubscribeResult] | None = None
    ping: int = 0
    pong: bool = False
    session: str = ""
    node: str = ""
    time: int = 0


class EmptyResult(_Msg):
    pass


class PresenceResult(_Msg):
    presence: dict[str, ClientInfo]  # always present, {} when empty


class PresenceStatsResult(_Msg):
    num_clients: int
    num_users: int


class HistoryResult(_Msg):
    publications: list[Publication]
    epoch: str
    offset: int


class RpcResult(_Msg):
    data: Raw | None = None


class RefreshResult(_Msg):
    client: str = ""
    version: str = ""
    expires: bool = False
    ttl: int = 0


class SubRefreshResult(_Msg):
    expires: bool = False
    ttl: int = 0


# ---------------------------------------------------------------- pushes


class JoinLeave(_Msg):
    info: ClientInfo


class UnsubscribePush(_Msg):
    code: int
    reason: str


class SubscribePush(_Msg):
    recoverable: bool = False
    epoch: str = ""
    offset: int = 0
    positioned: bool = False
    data: Raw | None = None


class DisconnectPush(_Msg):
    code: int
    reason: str


class Push(_Msg):
    channel: str = ""
    pub: Publication | None = None
    join: JoinLeave | None = None
    leave: JoinLeave | None = None
    unsubscribe: UnsubscribePush | None = None
    subscribe: SubscribePush | None = None
    disconnect: DisconnectPush | None = None
    connect: ConnectResult | None = None
    refresh: RefreshResult | None = None


class Reply(_Msg):
    id: int = 0
    error: Error | None = None
    push: Push | None = None
    connect: ConnectResult | None = None
    subscribe: SubscribeResult | None = None
    unsubscribe: EmptyResult | None = None
    publish: EmptyResult | None = None
    presence: PresenceResult | None = None
    presence_stats: PresenceStatsResult | None = None
    history: HistoryResult | None = None
    ping: EmptyResult | None = None
    rpc: RpcResult | None = None
    refresh: RefreshResult | None = None
    sub_refresh: SubRefreshResult | None = None
