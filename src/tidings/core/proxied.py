"""Asking the backend: each hook's request built from a connection, and its answer applied
(PROXY.md §4). The callers (``tidings.proxy``) carry requests over HTTP or to a Python
function; this module decides what the client then sees.

Answers: ``disconnect`` closes the connection with that code, ``error`` is the command's
error reply, a ``result`` is applied. Refresh and sub_refresh read only ``result``. An
unexpected failure is error 100 (temporary), except for refresh and sub_refresh, which keep
the connection or subscription and ask again in ``RETRY`` seconds.
"""

from __future__ import annotations

import base64
import logging
import time
from typing import Any, TypeVar

import msgspec

from tidings.core.peer import Peer
from tidings.core.timers import Timers
from tidings.errors import Disconnect, ErrorCode, ReplyError, Unsubscribe
from tidings.logs import client_fields
from tidings.protocol import codec
from tidings.protocol import proxyproto as pp
from tidings.protocol.grants import SubscribeDecision
from tidings.protocol.hookanswers import (
    Published,
    credentials,
    info_bytes,
    publish_answer,
    subscribe_answer,
)
from tidings.protocol.kinds import KINDS
from tidings.protocol.messages import ConnectRequest, SubscribeRequest
from tidings.protocol.session import Credentials
from tidings.proxy import Caller, HookFailure, HookState

__all__ = ["RETRY", "Published", "connect", "publish", "refresh", "rpc", "sub_refresh",
           "subscribe"]

log = logging.getLogger("tidings.client")

RETRY = 60.0  # seconds before a refresh or sub_refresh that failed is tried again
R = TypeVar("R", bound=msgspec.Struct)


def _payload(caller: Caller, data: bytes) -> dict[str, Any]:
    """A client payload in a request: ``data`` verbatim (JSON), or ``b64data`` with the
    proxy's ``binary_encoding``; a non-JSON payload without it cannot be sent (100)."""
    if not data:
        return {}
    if caller.config.binary_encoding:
        return {"b64data": base64.b64encode(data).decode("ascii")}
    if not codec.is_json(data):
        log.warning("%s proxy %r: the payload is not JSON (set binary_encoding)",
                    caller.name, caller.config.endpoint)
        raise ErrorCode.INTERNAL
    return {"data": msgspec.Raw(data)}


def _common(client: Peer, caller: Caller, with_user: bool = True) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "client": client.client_id,
        "transport": KINDS[client.transport.kind].transport,
        "protocol": "protobuf" if client.protobuf else "json",
        "encoding": "binary" if caller.config.binary_encoding else "json",
    }
    if with_user:
        fields["user"] = client.user
        state = client.hook_state
        if caller.config.include_connection_meta and state is not None and state.meta:
            fields["meta"] = msgspec.Raw(state.meta)
    return fields


async def _ask(client: Peer, caller: Caller, hook: str, request: msgspec.Struct,
               response: type[R]) -> R:
    """Call; a failure is error 100 (temporary, so SDKs retry). A client that went away
    meanwhile ends the command here: nothing is applied for it."""
    try:
        answer = await caller.call(hook, request, response, client.hook_state)
    except HookFailure:
        if client.closed:
            raise Disconnect.CONNECTION_CLOSED from None
        raise ReplyError(100, "internal server error", temporary=True) from None
    if client.closed:
        raise Disconnect.CONNECTION_CLOSED
    return answer


def _refused(answer: Any) -> None:
    """Raise what a ``disconnect`` or ``error`` answer means (checked in that order). A
    disconnect code outside 3000-4999 cannot be a WebSocket close code: 3004 instead."""
    if answer.disconnect is not None:
        code, reason = answer.disconnect.code, answer.disconnect.reason
        if not 3000 <= code <= 4999:
            log.warning("a hook answered disconnect code %d (not 3000-4999): closing with "
                        "3004", code)
            raise Disconnect.INTERNAL
        raise Disconnect(code, reason)
    if answer.error is not None:
        err = answer.error
        raise ReplyError(err.code, err.message, err.temporary)


async def connect(client: Peer, caller: Caller, req: ConnectRequest,
                  now: float) -> Credentials | None:
    """The connect hook for a connect without a token; None: no result (anonymous rules)."""
    request = pp.ConnectRequest(
        **_common(client, caller, with_user=False), **_payload(caller, bytes(req.data)),
        name=req.name, version=req.version, channels=list(req.subs or ()),
    )
    answer = await _ask(client, caller, "connect", request, pp.ConnectResponse)
    _refused(answer)
    if answer.result is None:
        return None
    creds = credentials(answer.result, now)
    creds.data = _for_client(client, creds.data)
    return creds


def _for_client(client: Peer, data: bytes | None) -> bytes | None:
    """Data a hook gave for this client alone: a JSON client can only be sent JSON (a
    ``b64data`` that is not JSON is an error 100), without CR/LF (they frame messages)."""
    if data is None or client.protobuf:
        return data
    if not codec.is_json(data):
        log.warning("a hook gave data that is not JSON for a JSON client")
        raise ErrorCode.INTERNAL
    return codec.strip_newlines(data)


async def subscribe(client: Peer, caller: Caller, decision: SubscribeDecision,
                    req: SubscribeRequest, server_refresh: bool, now: float) -> None:
    request = pp.SubscribeRequest(**_common(client, caller), channel=req.channel,
                                  **_payload(caller, bytes(req.data)))
    answer = await _ask(client, caller, "subscribe", request, pp.SubscribeResponse)
    _refused(answer)
    if answer.result is not None:
        subscribe_answer(client.session, decision, req, answer.result, server_refresh, now)
        decision.data = _for_client(client, decision.data)


async def publish(client: Peer, caller: Caller, channel: str, data: bytes) -> Published:
    request = pp.PublishRequest(**_common(client, caller), channel=channel,
                                **_payload(caller, data))
    answer = await _ask(client, caller, "publish", request, pp.PublishResponse)
    _refused(answer)
    return publish_answer(answer.result, data)


async def rpc(client: Peer, caller: Caller, method: str, data: bytes) -> bytes | None:
    request = pp.RPCRequest(**_common(client, caller), method=method, **_payload(caller, data))
    answer = await _ask(client, caller, "rpc", request, pp.RPCResponse)
    _refused(answer)
    if answer.result is None:
        return None
    try:
        return _for_client(client, pp.b64_or_json(answer.result.data, answer.result.b64data))
    except pp.BadPayload as exc:
        log.warning("rpc proxy %r answered a bad payload: %s", caller.name, exc,
                    extra=client_fields(client, hook="rpc", proxy=caller.name,
                                        endpoint=caller.config.endpoint, error=str(exc)))
        raise ErrorCode.INTERNAL from None


async def refresh(client: Peer, caller: Caller, timers: Timers) -> None:
    """The connection's expiry came (server-side refresh, PROXY.md §4.2)."""
    request = pp.RefreshRequest(**_common(client, caller))
    try:
        answer = await caller.call("refresh", request, pp.RefreshResponse, client.hook_state)
    except Exception as exc:  # a failure (or a bug): the connection stays, asked again later
        if not isinstance(exc, HookFailure):
            log.exception("refresh hook %r failed", caller.name)
        timers.schedule_expiry(client, time.time() + RETRY)
        return
    if client.closed:
        return
    result = answer.result
    now = time.time()
    if result is None or result.expired or result.expire_at <= now:
        client.close(Disconnect.EXPIRED)
        return
    session = client.session
    try:
        info = info_bytes(result.info, result.b64info)  # to every subscriber: JSON only
        meta = pp.b64_or_json(result.meta, "")
    except (pp.BadPayload, ReplyError) as exc:
        log.warning("refresh proxy %r answered a bad payload: %s", caller.name, exc,
                    extra=client_fields(client, hook="refresh", proxy=caller.name,
                                        endpoint=caller.config.endpoint, error=str(exc)))
        client.close(Disconnect.INTERNAL)
        return
    if info is not None:
        session.info = info
    if meta is not None:
        state = client.hook_state = client.hook_state or HookState()
        state.meta = meta
    session.expires_at = result.expire_at
    timers.schedule_expiry(client, result.expire_at)


async def sub_refresh(client: Peer, caller: Caller, timers: Timers, channel: str) -> None:
    """A proxied subscription's expiry came (PROXY.md §4.5)."""
    sub = client.session.subs.get(channel)
    if sub is None:
        return
    request = pp.SubRefreshRequest(**_common(client, caller), channel=channel)
    try:
        answer = await caller.call("sub_refresh", request, pp.SubRefreshResponse,
                                   client.hook_state)
    except Exception as exc:  # a failure (or a bug): the subscription stays, asked again
        if not isinstance(exc, HookFailure):
            log.exception("sub_refresh hook %r failed", caller.name)
        timers.schedule_sub_expiry(client, channel, time.time() + RETRY, delay=0.0)
        return
    if client.closed or client.session.subs.get(channel) is not sub:
        return
    result = answer.result
    now = time.time()
    try:
        info = None if result is None else info_bytes(result.info, result.b64info)
    except ReplyError:  # bad base64, or not JSON: as Centrifugo, the subscription expires
        result = None
    if result is None or result.expired or (result.expire_at and result.expire_at <= now):
        if sub.server_side:
            client.close(Disconnect.SUB_EXPIRED)
        else:
            await client.unsubscribe(channel, Unsubscribe.EXPIRED)
        return
    if info is not None:
        sub.chan_info = info
    sub.expires_at = result.expire_at
    if result.expire_at:
        timers.schedule_sub_expiry(client, channel, result.expire_at)
