"""Centrifugo's proxy (backend hook) messages: the JSON the node POSTs to a backend and the
answers it reads back (PROXY.md §3, §8). Sans-I/O: types and pure conversions only.

The same types are what in-process Python hooks receive and return (``tidings.hooks``), so a
hook written once answers over HTTP or in process. Payload fields (``data``, ``info``,
``meta``) hold JSON *values* (dicts, lists, strings, ...), not encoded text: on the wire they
are written verbatim, as Centrifugo's ``Raw`` is. In a request an absent payload is None; in
a result ``UNSET`` means absent (omitted on the wire) and ``None`` is JSON ``null`` (for
publish: "replace the payload with null").

``headers`` on a request is a Tidings addition and is never sent: in process it holds the
connection's forwarded headers (the ``http_headers`` allow-lists); on the backend side the
adapters fill it from the request the node made, so ``request.headers["cookie"]`` reads the
same either way.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, UnsetType

__all__ = [
    "UNSET",
    "BoolValue",
    "ConnectRequest",
    "ConnectResponse",
    "ConnectResult",
    "Disconnect",
    "Error",
    "HookDisconnect",
    "HookError",
    "PublishRequest",
    "PublishResponse",
    "PublishResult",
    "RPCRequest",
    "RPCResponse",
    "RPCResult",
    "RefreshRequest",
    "RefreshResponse",
    "RefreshResult",
    "SubRefreshRequest",
    "SubRefreshResponse",
    "SubRefreshResult",
    "SubscribeOptionOverride",
    "SubscribeOptions",
    "SubscribeRequest",
    "SubscribeResponse",
    "SubscribeResult",
    "UnsetType",
    "b64_or_json",
    "overrides",
]


class _Wire(msgspec.Struct, kw_only=True, omit_defaults=True):
    pass


Code = Annotated[int, msgspec.Meta(ge=0, le=0xFFFFFFFF)]  # uint32, as in proxy.proto


class Error(_Wire):
    code: Code
    message: str = ""
    temporary: bool = False


class Disconnect(_Wire):
    code: Code
    reason: str = ""


class BoolValue(_Wire):
    value: bool = False


class SubscribeOptionOverride(_Wire):
    presence: BoolValue | None = None
    join_leave: BoolValue | None = None
    force_recovery: BoolValue | None = None
    force_positioning: BoolValue | None = None
    force_push_join_leave: BoolValue | None = None


# ---------------------------------------------------------------- requests


class _Request(_Wire):
    client: str = ""
    transport: str = ""
    protocol: str = ""
    encoding: str = ""
    headers: dict[str, str] = {}  # Tidings: the forwarded headers; never on the wire


class _UserRequest(_Request, kw_only=True):
    user: str  # required, so always on the wire ("" included), as Centrifugo sends it
    meta: Any = None


class ConnectRequest(_Request):
    data: Any = None
    b64data: str = ""
    name: str = ""
    version: str = ""
    channels: list[str] = []


class RefreshRequest(_UserRequest):
    pass


class SubscribeRequest(_UserRequest):
    channel: str = ""
    token: str = ""
    data: Any = None
    b64data: str = ""


class PublishRequest(_UserRequest):
    channel: str = ""
    data: Any = None
    b64data: str = ""


class SubRefreshRequest(_UserRequest):
    channel: str = ""


class RPCRequest(_UserRequest):
    method: str = ""
    data: Any = None
    b64data: str = ""


# ---------------------------------------------------------------- results


class SubscribeOptions(_Wire):
    """Options of one server-side subscription given by a connect result (``subs``)."""

    info: Any = UNSET
    b64info: str = ""
    data: Any = UNSET
    b64data: str = ""
    override: SubscribeOptionOverride | None = None
    expire_at: int = 0  # in the schema; ignored for connect subs, as Centrifugo does
    cache_recover: bool = False


class ConnectResult(_Wire):
    user: str = ""
    expire_at: int = 0
    info: Any = UNSET
    b64info: str = ""
    data: Any = UNSET
    b64data: str = ""
    channels: list[str] = []
    subs: dict[str, SubscribeOptions] = {}
    meta: Any = UNSET


class RefreshResult(_Wire):
    expired: bool = False
    expire_at: int = 0
    info: Any = UNSET
    b64info: str = ""
    meta: Any = UNSET


class SubscribeResult(_Wire):
    expire_at: int = 0
    info: Any = UNSET
    b64info: str = ""
    data: Any = UNSET
    b64data: str = ""
    override: SubscribeOptionOverride | None = None


class PublishResult(_Wire):
    data: Any = UNSET
    b64data: str = ""
    skip_history: bool = False
    tags: dict[str, str] = {}
    idempotency_key: str = ""
    delta: bool = False
    version: int = 0
    version_epoch: str = ""


class SubRefreshResult(_Wire):
    expired: bool = False
    expire_at: int = 0
    info: Any = UNSET
    b64info: str = ""


class RPCResult(_Wire):
    data: Any = UNSET
    b64data: str = ""


# ---------------------------------------------------------------- responses


class ConnectResponse(_Wire):
    result: ConnectResult | None = None
    error: Error | None = None
    disconnect: Disconnect | None = None


class RefreshResponse(_Wire):
    result: RefreshResult | None = None
    error: Error | None = None
    disconnect: Disconnect | None = None


class SubscribeResponse(_Wire):
    result: SubscribeResult | None = None
    error: Error | None = None
    disconnect: Disconnect | None = None


class PublishResponse(_Wire):
    result: PublishResult | None = None
    error: Error | None = None
    disconnect: Disconnect | None = None


class SubRefreshResponse(_Wire):
    result: SubRefreshResult | None = None
    error: Error | None = None
    disconnect: Disconnect | None = None


class RPCResponse(_Wire):
    result: RPCResult | None = None
    error: Error | None = None
    disconnect: Disconnect | None = None


_encode = msgspec.json.Encoder().encode


class BadPayload(ValueError):
    """A ``b64*`` field that is not base64, or a value that cannot be JSON."""


def b64_or_json(value: Any, b64: str) -> bytes | None:
    """A payload as the bytes the node keeps: ``b64`` decoded when non-empty (it wins, as in
    Centrifugo), else the JSON value encoded; None when both are absent."""
    if b64:
        try:
            return base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BadPayload(f"invalid base64: {exc}") from None
    if value is UNSET:
        return None
    try:
        return _encode(value)
    except (TypeError, msgspec.EncodeError) as exc:
        raise BadPayload(str(exc)) from None


_OVERRIDE_FIELDS = ("presence", "join_leave", "force_recovery", "force_positioning",
                    "force_push_join_leave")


def overrides(override: SubscribeOptionOverride | None) -> dict[str, bool]:
    """A result's ``override`` as the ``{option: bool}`` map grants take."""
    if override is None:
        return {}
    out: dict[str, bool] = {}
    for name in _OVERRIDE_FIELDS:
        box: BoolValue | None = getattr(override, name)
        if box is not None:
            out[name] = box.value
    return out


class HookError(Exception):
    """Raised by a hook: the client gets this error (as a backend's ``{"error": ...}``)."""

    def __init__(self, code: int, message: str = "", temporary: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.temporary = code, message, temporary

    def wire(self) -> Error:
        return Error(code=self.code, message=self.message, temporary=self.temporary)


class HookDisconnect(Exception):
    """Raised by a hook: the connection is closed with this code (``{"disconnect": ...}``)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"{code}: {reason}")
        self.code, self.reason = code, reason

    def wire(self) -> Disconnect:
        return Disconnect(code=self.code, reason=self.reason)


RESPONSES: dict[type[msgspec.Struct], type[msgspec.Struct]] = {
    ConnectRequest: ConnectResponse,
    RefreshRequest: RefreshResponse,
    SubscribeRequest: SubscribeResponse,
    PublishRequest: PublishResponse,
    SubRefreshRequest: SubRefreshResponse,
    RPCRequest: RPCResponse,
}
RESULTS: dict[type[msgspec.Struct], type[msgspec.Struct]] = {
    ConnectResponse: ConnectResult,
    RefreshResponse: RefreshResult,
    SubscribeResponse: SubscribeResult,
    PublishResponse: PublishResult,
    SubRefreshResponse: SubRefreshResult,
    RPCResponse: RPCResult,
}
