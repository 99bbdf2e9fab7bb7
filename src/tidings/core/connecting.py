"""A connect, in two halves: obtain the credentials, then decide what the connection gets.

1. **Credentials**: from the connection JWT (``Session.credentials``); without a token, from
   the connect hook (``client.proxy.connect``: a backend or a Python function, PROXY.md
   §4.1); else the anonymous rules (``Session.anonymous``).
2. **Decide** (``Session.decide``): identity, expiry, server-side subscriptions; then the node's
   limits (the user's connect rate, ``client.user_connection_limit``), and the subscriptions
   are prepared before the reply and finished after it.

Bidirectional transports answer the ``connect`` command with a reply; unidirectional ones
(PROTOCOL.md §8.1) read a bare ConnectRequest and answer with a ``connect`` push, their errors
becoming disconnects.
"""

from __future__ import annotations

import logging
import time

from tidings import __version__
from tidings.core import proxied, subscribing
from tidings.core.hooks import ClientEvent
from tidings.core.host import Connection
from tidings.errors import Disconnect, ErrorCode, ProtocolError, ReplyError
from tidings.logs import client_fields
from tidings.protocol.grants import raw_or_none
from tidings.protocol.messages import (
    ConnectRequest,
    ConnectResult,
    Push,
    Reply,
    StreamPosition,
    SubscribeResult,
)
from tidings.protocol.session import ConnectDecision, Credentials, State, SubscribeDecision
from tidings.proxy import HookState

__all__ = ["connect", "establish", "uni_connect"]

log = logging.getLogger("tidings.client")

Prepared = list[tuple[SubscribeDecision, StreamPosition | None]]


async def connect(client: Connection, cmd_id: int, req: ConnectRequest, now: float) -> None:
    result, prepared = await establish(client, req, now)
    client.reply(Reply(id=cmd_id, connect=result))
    for decision, top in prepared:
        await subscribing.finish(client, decision, top)


async def uni_connect(client: Connection, frame: bytes) -> None:
    """Unidirectional transports: the first message is a ConnectRequest (not a command)."""
    try:
        req = client.transport.codec.decode_connect_request(frame)
    except ProtocolError as exc:
        log.info("client %s sent a malformed connect request: %s", client.client_id, exc,
                 extra=client_fields(client))
        client.close(Disconnect.BAD_REQUEST)
        return
    try:
        result, prepared = await establish(client, req, time.time())
    except Disconnect as d:
        client.close(d)
        return
    except ReplyError as err:
        log.info("uni connect of %s refused: %d %s", client.client_id, err.code, err.message,
                 extra=client_fields(client, method="connect", code=err.code,
                                     error=err.message))
        client.close(_uni_disconnect(err.code, client))
        return
    client.enqueue(client.transport.codec.encode_push(Push(connect=result)))
    for decision, top in prepared:
        await subscribing.finish(client, decision, top)


def _uni_disconnect(code: int, client: Connection) -> Disconnect:
    """Unidirectional connect errors become disconnects (PROTOCOL.md §8.1): the configured
    ``client.connect_code_to_unidirectional_disconnect`` transforms first."""
    transforms = client.node.config.client.connect_code_to_unidirectional_disconnect
    if transforms.enabled:
        for transform in transforms.transforms:
            if transform.code == code:
                return Disconnect(transform.to.code, transform.to.reason)
    if code in (109, 110):
        return Disconnect.EXPIRED
    if code == 103:
        return Disconnect.PERMISSION_DENIED
    if code == 111:
        return Disconnect.TOO_MANY_REQUESTS
    return Disconnect.INTERNAL


async def credentials(client: Connection, req: ConnectRequest, now: float) -> Credentials:
    """The first half: who this connection is."""
    session = client.session
    creds = session.credentials(req, now)
    hooks = client.node.hooks
    if req.headers and hooks.emulated_names:  # the client's emulated headers (PROXY.md §3.2)
        state = client.hook_state = client.hook_state or HookState()
        state.emulated_headers = {k.lower(): v for k, v in req.headers.items()
                                  if k.lower() in hooks.emulated_names}
    if creds is None and hooks.connect is not None:
        creds = await proxied.connect(client, hooks.connect, req, now)
    if creds is not None and creds.meta is not None:  # a token's or a connect hook's
        state = client.hook_state = client.hook_state or HookState()
        state.meta = creds.meta
    return creds if creds is not None else session.anonymous()


async def establish(client: Connection, req: ConnectRequest, now: float
                    ) -> tuple[ConnectResult, Prepared]:
    """Authenticate and prepare the server-side subscriptions; the caller sends the result,
    then finishes them."""
    node = client.node
    session = client.session
    try:
        decision = session.decide(await credentials(client, req, now), req, now)
        await _admit(client, decision)
    except ReplyError:
        session.state = State.FAILED
        raise
    if client.closed:  # it went while the connect awaited (a hook, the engine): undo, stop
        if client.counted:
            node.spawn(node.engine.remove_user_connection(decision.user, client.client_id))
            client.counted = False
        raise Disconnect.CONNECTION_CLOSED
    session.connected(decision)
    node.client_connected(client)
    if log.isEnabledFor(logging.DEBUG):  # names the SDK sends, cut short: peer-controlled
        log.debug("client connected", extra=client_fields(
            client, client_name=req.name[:100], client_version=req.version[:100]))
    node.hooks.notify_connected(ClientEvent(client.client_id, client.user,
                                            client.transport.name))
    result = _result(client, decision, now)
    subs: dict[str, SubscribeResult] = {}
    prepared: Prepared = []
    try:
        for sub_decision in decision.subs:
            sub_result, top = await subscribing.prepare(client, sub_decision, now)
            subs[sub_decision.sub.channel] = sub_result
            prepared.append((sub_decision, top))
    except BaseException:
        # The connect fails: presence already added for the prepared channels goes too.
        for done, _ in prepared:
            if done.sub.presence:
                node.spawn(node.channels.leave_channel(client, done.sub, announce=False))
        raise
    if subs:
        result.subs = subs
    return result, prepared


async def _admit(client: Connection, decision: ConnectDecision) -> None:
    """The node's limits for a new connection of ``decision.user``."""
    limits = client.node.limits
    user = decision.user
    if not limits.allow_connect(user, time.monotonic()):
        raise ErrorCode.TOO_MANY_REQUESTS
    if limits.user_connection_limit and user:
        # Cluster-wide with a distributed engine (Centrifugo counts per node).
        engine = client.node.engine
        if not await engine.add_user_connection(user, client.client_id,
                                                limits.user_connection_limit):
            log.info("connection limit of user %r reached (%d)", user,
                     limits.user_connection_limit, extra=client_fields(client, user=user))
            raise Disconnect.CONNECTION_LIMIT
        client.counted = True


def _result(client: Connection, decision: ConnectDecision, now: float) -> ConnectResult:
    node = client.node
    cfg = node.config.client
    result = ConnectResult(client=client.client_id, version=__version__,
                           data=raw_or_none(decision.data))
    if decision.expires_at and node.hooks.refresh is None:  # else the server refreshes
        result.expires = True
        result.ttl = max(int(decision.expires_at - now), 0)
    if cfg.ping_interval > 0:
        result.ping = int(cfg.ping_interval)
        result.pong = client.transport.bidirectional and cfg.pong_timeout > 0
    if cfg.connect_include_server_time:
        result.time = int(now * 1000)
    if client.transport.emulation:
        # Emulation: the client posts its commands to /emulation naming these two.
        client.emulation_session = node.registry.open_emulation_session(client)
        result.session = client.emulation_session
        result.node = node.id
    return result
