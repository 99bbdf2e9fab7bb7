"""A client's subscriptions: made (client-side command, server-side from a connect or the
API), and ended (by the client, by the server, or dropped after a gap in the stream).

A subscribe is two steps around its reply: ``prepare`` registers the client as syncing in the
hub (publications buffered), reads the stream when positioned, and adds presence; the caller
sends the result; ``finish`` makes it live (buffered publications delivered after the reply,
nothing lost or duplicated in between) and announces the join.
"""

from __future__ import annotations

import logging
import time

from tidings.core import proxied
from tidings.core.host import Connection
from tidings.engine.base import EngineError
from tidings.errors import Disconnect, Unsubscribe
from tidings.logs import client_fields
from tidings.protocol.grants import Sub, SubscribeDecision, as_full_string
from tidings.protocol.messages import (
    EmptyResult,
    Publication,
    Push,
    Reply,
    StreamPosition,
    SubscribePush,
    SubscribeRequest,
    SubscribeResult,
    UnsubscribePush,
    UnsubscribeRequest,
)

__all__ = ["drop", "finish", "prepare", "server_subscribe", "subscribe", "unsubscribe"]

log = logging.getLogger("tidings.client")


async def subscribe(client: Connection, cmd_id: int, req: SubscribeRequest, now: float) -> None:
    """The ``subscribe`` command."""
    decision = client.session.decide_subscribe(req, now)
    if decision.proxied:
        await _ask_hook(client, decision, req, now)
    result, top = await prepare(client, decision, now)
    client.reply(Reply(id=cmd_id, subscribe=result))
    await finish(client, decision, top)


async def _ask_hook(client: Connection, decision: SubscribeDecision, req: SubscribeRequest,
                    now: float) -> None:
    """The namespace's subscribe hook decides (PROXY.md §4.3)."""
    opts = decision.sub.opts
    hooks = client.node.hooks
    caller = hooks.needed("subscribe", opts.subscribe_proxy_name)
    server_refresh = hooks.for_channel("sub_refresh", opts.sub_refresh_proxy_enabled,
                                       opts.sub_refresh_proxy_name) is not None
    await proxied.subscribe(client, caller, decision, req, server_refresh, now)


async def server_subscribe(client: Connection, decision: SubscribeDecision) -> None:
    """Subscribe server-side (HTTP API ``subscribe``): a ``subscribe`` push, no reply."""
    if client.closed or decision.sub.channel in client.session.subs:
        return
    result, top = await prepare(client, decision, time.time())
    push = SubscribePush(recoverable=result.recoverable, epoch=result.epoch,
                         offset=result.offset, positioned=result.positioned, data=result.data)
    client.enqueue(client.transport.codec.encode_push(
        Push(channel=decision.sub.channel, subscribe=push)
    ))
    await finish(client, decision, top)


async def prepare(client: Connection, decision: SubscribeDecision, now: float
                  ) -> tuple[SubscribeResult, StreamPosition | None]:
    """Register as syncing and read the stream; the caller sends the result, then calls
    ``finish`` with the stream top it read (None: not positioned). On error the registration
    is undone."""
    channels = client.node.channels
    sub = decision.sub
    channel = sub.channel
    client.session.inflight.add(channel)
    try:
        await channels.add_subscriber(channel, client)
        pubs: list[Publication] = []
        top = StreamPosition()
        if sub.positioned:
            client.node.counts.actions[
                "history_recover" if decision.recover else "history_stream_top"] += 1
            limit = client.node.config.client.recovery_max_publication_limit
            pubs, top = await client.node.engine.history(
                channel,
                options=channels.history_options(sub.opts),
                limit=limit if decision.recover else 0,
                since=StreamPosition(offset=decision.offset) if decision.recover else None,
            )
        result, _ = client.session.subscribe_result(decision, pubs, top, now)
        if decision.recover:
            counts = client.node.counts
            counts.recovers[result.recovered, bool(result.publications)] += 1
            counts.recovered.observe(len(result.publications or ()))
        if sub.delta and result.publications and not client.protobuf:
            # JSON: every publication of a delta subscription has data as a string
            result.publications = [as_full_string(p) for p in result.publications]
        if sub.presence:
            # Before the reply (as Centrifugo does): a client told it is subscribed is
            # already in presence, wherever presence is asked.
            await _add_presence(client, sub)
        return result, top if sub.positioned else None
    except BaseException:
        client.session.inflight.discard(channel)
        await channels.remove_subscriber(channel, client)
        raise


async def finish(client: Connection, decision: SubscribeDecision,
                 top: StreamPosition | None) -> None:
    node = client.node
    sub = decision.sub
    channel = sub.channel
    client.session.inflight.discard(channel)
    if client.closed:
        if sub.presence:  # closed mid-subscribe: no leave will remove this entry
            node.spawn(node.channels.leave_channel(client, sub, announce=False))
        return
    client.session.subs[channel] = sub
    buffered = node.channels.hub.finish_sync(
        channel, client, push_join_leave=sub.push_join_leave,
        live_from=top.offset if top is not None else -1,
        epoch=top.epoch if top is not None else "",
        delta=sub.delta,
    )
    for _, shared in buffered:
        if sub.delta:
            client.enqueue(shared.full_for(client.protobuf))
        else:
            client.enqueue_shared(shared)
    if sub.expires_at:
        node.timers.schedule_sub_expiry(client, channel, sub.expires_at)
    if log.isEnabledFor(logging.DEBUG):
        log.debug("client subscribed", extra=client_fields(client, channel=channel))
    if sub.join_leave:
        node.counts.broker_sent["join"] += 1
        try:
            await node.engine.publish_join(channel, client.session.client_info(sub.chan_info))
        except EngineError as exc:
            log.warning("client %s: join to %s not published: %s", client.client_id, channel,
                        exc, extra=client_fields(client, channel=channel, error=str(exc)))


async def _add_presence(client: Connection, sub: Sub) -> None:
    info = client.session.client_info(sub.chan_info)
    client.node.counts.actions["add_presence"] += 1
    try:
        await client.node.engine.add_presence(sub.channel, client.client_id, info)
    except EngineError as exc:
        # The subscription stands; presence is re-added by the node's refresh round.
        log.warning("client %s: presence in %s not added: %s", client.client_id, sub.channel,
                    exc, extra=client_fields(client, channel=sub.channel, error=str(exc)))


async def unsubscribe_command(client: Connection, cmd_id: int, req: UnsubscribeRequest) -> None:
    if not req.channel:
        raise Disconnect.BAD_REQUEST
    await unsubscribe(client, req.channel)
    client.reply(Reply(id=cmd_id, unsubscribe=EmptyResult()))


def _unsubscribe_push(channel: str, reason: Unsubscribe) -> Push:
    return Push(channel=channel,
                unsubscribe=UnsubscribePush(code=reason.code, reason=reason.reason))


def drop(client: Connection, channel: str, reason: Unsubscribe) -> None:
    """The node cannot keep this subscription consistent (a gap in the stream): tell the
    client to resubscribe (it recovers from its last offset), or disconnect with 3010 when
    the subscription is server-side. Synchronous; the engine cleanup runs in background."""
    sub = client.session.subs.get(channel)
    if sub is None or client.closed:
        return
    if sub.server_side:
        client.close(Disconnect.INSUFFICIENT_STATE)
        return
    log.info("client %s: unsubscribing from %s: %s", client.client_id, channel, reason.reason,
             extra=client_fields(client, channel=channel, code=reason.code,
                                 reason=reason.reason))
    del client.session.subs[channel]
    client.enqueue(client.transport.codec.encode_push(_unsubscribe_push(channel, reason)))
    client.node.counts.unsubscribes[reason.code] += 1
    node = client.node
    node.channels.hub_remove(channel, client)  # no further delivery from this moment
    node.spawn(node.channels.leave_channel(client, sub))


async def unsubscribe(client: Connection, channel: str, push: Unsubscribe | None = None) -> None:
    """Remove a subscription; with ``push``, tell the client (server-side unsubscribe)."""
    sub = client.session.subs.pop(channel, None)
    if sub is None:
        return
    if push is not None:
        client.enqueue(client.transport.codec.encode_push(_unsubscribe_push(channel, push)))
        client.node.counts.unsubscribes[push.code] += 1
    channels = client.node.channels
    await channels.remove_subscriber(channel, client)
    await channels.leave_channel(client, sub)
