"""What each client command does: a table from the command's name to its handler.

``dispatch`` checks the command's place in the protocol (``Session.check_command``: connect
first, pongs only when a ping is pending) and the operation rate limits, then runs the
handler. Handlers raise ``ReplyError`` (an error reply), ``Disconnect`` (the connection
closes) or ``EngineError`` (error 100); the client turns those into what the peer sees.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from tidings import __version__
from tidings.core import connecting, proxied, subscribing
from tidings.core.host import Connection
from tidings.errors import Disconnect, ErrorCode, ReplyError
from tidings.protocol import codec
from tidings.protocol.kinds import KINDS
from tidings.protocol.messages import (
    Command,
    EmptyResult,
    HistoryRequest,
    PresenceRequest,
    PresenceResult,
    PresenceStatsResult,
    Publication,
    PublishRequest,
    Raw,
    RefreshRequest,
    RefreshResult,
    Reply,
    RpcRequest,
    RpcResult,
    SubRefreshRequest,
    SubRefreshResult,
)
from tidings.protocol.ratelimit import COMMANDS

__all__ = ["HANDLERS", "dispatch"]

Handler = Callable[[Connection, int, Any, float], Awaitable[None]]


async def dispatch(client: Connection, cmd: Command) -> str:
    """Run one command; returns its method name ("pong" for a pong)."""
    method = client.session.check_command(cmd)
    if method == "pong":
        sent = client.node.timers.pinged_at(client)
        if sent:
            transport = KINDS[client.transport.kind].transport
            client.node.counts.ping_pong[transport].observe(max(time.time() - sent, 0.0))
        return method
    handler = HANDLERS.get(method)
    if handler is None:  # send: no message handler (Centrifugo OSS behaviour)
        raise Disconnect.NOT_AVAILABLE
    request = getattr(cmd, method)
    if method in LIMITED and client.node.limits.commands:
        _check_rate(client, method, request)
    await handler(client, cmd.id, request, time.time())
    return method


def _check_rate(client: Connection, method: str, request: Any) -> None:
    """``client.rate_limit``: raise 111 when this command is over its rate."""
    channel: str = getattr(request, "channel", "")
    namespace = client.node.rules.namespace_of(channel)[0] if channel else ""
    rpc_method: str = getattr(request, "method", "") if method == "rpc" else ""
    if client.rates is None:
        client.rates = {}
    if not client.node.limits.allow_command(client.rates, client.user, method,
                                            time.monotonic(), namespace=namespace,
                                            rpc_method=rpc_method):
        raise ErrorCode.TOO_MANY_REQUESTS


async def publish(client: Connection, cmd_id: int, req: PublishRequest, now: float) -> None:
    channel = req.channel
    data = bytes(req.data)
    session = client.session
    opts = session.need_publish_access(channel, data)
    published = proxied.Published(data)
    if opts.publish_proxy_enabled:
        caller = client.node.hooks.needed("publish", opts.publish_proxy_name)
        published = await proxied.publish(client, caller, channel, data)
        data = published.data
        if opts.publication_data_format != "binary" and not codec.is_json(data):
            raise ErrorCode.INTERNAL  # the hook gave b64data that is not JSON here
    if opts.publication_data_format == "binary":
        payload = Raw(data)
    else:
        if client.protobuf and not codec.is_json(data):
            # From a Protobuf client: JSON subscribers could not read it.
            raise ReplyError(107, "bad request: data must be JSON outside binary channels")
        payload = codec.raw(data)
    sub = session.subs.get(channel)
    info = session.client_info(sub.chan_info if sub is not None else None)
    pub = Publication(data=payload, info=info, tags=published.tags or None)
    await client.node.channels.publish(channel, pub, opts,
                                       skip_history=published.skip_history,
                                       idempotency_key=published.idempotency_key,
                                       delta=published.delta)
    client.reply(Reply(id=cmd_id, publish=EmptyResult()))


async def presence(client: Connection, cmd_id: int, req: PresenceRequest, now: float) -> None:
    client.session.need_presence_access(req.channel)
    client.node.counts.actions["presence"] += 1
    result = await client.node.engine.presence(req.channel)
    client.reply(Reply(id=cmd_id, presence=PresenceResult(presence=result)))


async def presence_stats(client: Connection, cmd_id: int, req: PresenceRequest,
                         now: float) -> None:
    client.session.need_presence_access(req.channel)
    client.node.counts.actions["presence_stats"] += 1
    stats = await client.node.engine.presence_stats(req.channel)
    client.reply(Reply(id=cmd_id, presence_stats=PresenceStatsResult(
        num_clients=stats.num_clients, num_users=stats.num_users)))


async def history(client: Connection, cmd_id: int, req: HistoryRequest, now: float) -> None:
    opts = client.session.need_history_access(req.channel)
    result = await client.node.channels.history(
        req.channel, opts, limit=req.limit, since=req.since, reverse=req.reverse
    )
    client.reply(Reply(id=cmd_id, history=result))


async def refresh(client: Connection, cmd_id: int, req: RefreshRequest, now: float) -> None:
    if client.node.hooks.refresh is not None:
        raise Disconnect.BAD_REQUEST  # server-side refresh expected (the refresh hook)
    expires_at = client.session.refresh(req.token, now)
    result = RefreshResult(client=client.client_id, version=__version__)
    if expires_at:
        result.expires = True
        result.ttl = max(int(expires_at - now), 0)
        client.node.timers.schedule_expiry(client, expires_at)
    client.reply(Reply(id=cmd_id, refresh=result))


async def sub_refresh(client: Connection, cmd_id: int, req: SubRefreshRequest,
                      now: float) -> None:
    expires_at = client.session.sub_refresh(req.channel, req.token, now)
    result = SubRefreshResult()
    if expires_at:
        result.expires = True
        result.ttl = max(int(expires_at - now), 0)
        client.node.timers.schedule_sub_expiry(client, req.channel, expires_at)
    client.reply(Reply(id=cmd_id, sub_refresh=result))


async def rpc(client: Connection, cmd_id: int, req: RpcRequest, now: float) -> None:
    caller = client.node.hooks.for_rpc(req.method)  # 108 without an RPC hook, 104 ...
    data = None
    if caller is not None:  # None: the ping method, answered here
        data = await proxied.rpc(client, caller, req.method, bytes(req.data))
    client.reply(Reply(id=cmd_id, rpc=RpcResult(data=Raw(data) if data else None)))


async def ping(client: Connection, cmd_id: int, req: Any, now: float) -> None:
    raise ErrorCode.NOT_AVAILABLE  # the ping command is not served (PROTOCOL.md §4)


async def connect(client: Connection, cmd_id: int, req: Any, now: float) -> None:
    await connecting.connect(client, cmd_id, req, now)


async def subscribe(client: Connection, cmd_id: int, req: Any, now: float) -> None:
    await subscribing.subscribe(client, cmd_id, req, now)


async def unsubscribe(client: Connection, cmd_id: int, req: Any, now: float) -> None:
    await subscribing.unsubscribe_command(client, cmd_id, req)


HANDLERS: dict[str, Handler] = {
    "connect": connect,
    "subscribe": subscribe,
    "unsubscribe": unsubscribe,
    "publish": publish,
    "presence": presence,
    "presence_stats": presence_stats,
    "history": history,
    "refresh": refresh,
    "sub_refresh": sub_refresh,
    "rpc": rpc,
    "ping": ping,
}
# Commands the operation rate limits apply to (client.rate_limit; connect is limited apart).
LIMITED = frozenset(COMMANDS) - {"connect"}
