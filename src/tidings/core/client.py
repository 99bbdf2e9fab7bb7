"""One connected client: runs the protocol session's decisions against the engine.

The transport feeds frames in (``feed``) and gets framed bytes out (``Transport.write``).
Commands of one connection run strictly in order on one short-lived task, created when a frame
arrives and gone when the inbox is empty (no idle task per connection). Everything a client sends
goes through ``_pending``, written by the node's flush rounds (``Node.schedule_flush``).

Input is bounded: while more than ``INBOX_PAUSE`` frames wait, the transport stops reading
(the peer's TCP window fills, not our memory), and the command task gives the loop a turn every
``COMMANDS_PER_TURN`` commands, so one busy connection cannot hold the others up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from tidings import __version__
from tidings.engine.base import EngineError
from tidings.errors import Disconnect, ErrorCode, ProtocolError, ReplyError, Unsubscribe
from tidings.protocol import codec
from tidings.protocol.codecs import Codec
from tidings.protocol.kinds import Kind
from tidings.protocol.messages import (
    Command,
    ConnectRequest,
    ConnectResult,
    EmptyResult,
    Error,
    HistoryRequest,
    PresenceRequest,
    PresenceResult,
    PresenceStatsResult,
    Publication,
    PublishRequest,
    Push,
    Raw,
    RefreshRequest,
    RefreshResult,
    Reply,
    StreamPosition,
    SubRefreshRequest,
    SubRefreshResult,
    SubscribePush,
    SubscribeRequest,
    SubscribeResult,
    UnsubscribePush,
    UnsubscribeRequest,
)
from tidings.protocol.ratelimit import RateState
from tidings.protocol.session import (
    ConnectDecision,
    State,
    Sub,
    SubscribeDecision,
    as_full_string,
)

if TYPE_CHECKING:
    from tidings.core.hub import Shared
    from tidings.core.node import Node

__all__ = ["Client", "Transport"]

# Unidirectional connect errors become disconnects (PROTOCOL.md §8.1).
_UNI_CONNECT_ERRORS = {
    109: Disconnect.EXPIRED, 110: Disconnect.EXPIRED, 103: Disconnect.PERMISSION_DENIED,
    111: Disconnect.TOO_MANY_REQUESTS,
}

log = logging.getLogger("tidings.client")

INBOX_PAUSE = 16  # frames waiting before the transport stops reading
INBOX_MAX_BYTES = 1 << 20  # pushed input (emulation POSTs) refused past this many waiting bytes
COMMANDS_PER_TURN = 32  # commands run before the command task yields to the loop

# Commands the operation rate limits apply to (client.rate_limit), with their request field.
_LIMITED = frozenset(("subscribe", "unsubscribe", "publish", "history", "presence",
                      "presence_stats", "refresh", "sub_refresh", "rpc"))


class Transport(Protocol):
    """What a client needs from its connection."""

    kind: Kind  # index into Shared.frames: one framing per kind
    name: str
    bidirectional: bool
    separator: bytes  # between messages in one frame: b"\n" (JSON) or b"" (Protobuf)
    emulation: bool  # commands arrive via POST /emulation (HTTP-streaming, SSE)

    @property
    def codec(self) -> Codec:
        """``protocol.codec`` (JSON) or ``protocol.pbcodec`` (Protobuf)."""
        ...

    def frame(self, payload: bytes) -> bytes:
        """Frame one payload (several messages already joined with ``\\n``)."""
        ...

    write: Callable[[bytes], None]

    def buffer_size(self) -> int: ...

    def pause_reading(self) -> None:
        """Stop reading from the peer (a no-op where commands do not come from a socket)."""
        ...

    def resume_reading(self) -> None: ...

    def close(self, disconnect: Disconnect) -> None:
        """Tell the peer why (close frame or disconnect push) and close."""
        ...


class Client:
    __slots__ = (
        "__weakref__",
        "_closed",
        "_dirty",
        "_errors",
        "_inbox",
        "_inbox_bytes",
        "_paused",
        "_pending",
        "_pending_bytes",
        "_rates",
        "_reading_held",
        "_shared",
        "_task",
        "_turn",
        "counted",
        "emulation_session",
        "node",
        "session",
        "transport",
    )

    def __init__(self, node: Node, transport: Transport) -> None:
        self.node = node
        self.transport = transport
        self.session = node.new_session()
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._shared: Shared | None = None
        self._dirty = False
        self._paused = False
        self._closed = False
        self._inbox: deque[bytes] = deque()
        self._inbox_bytes = 0
        self._reading_held = False
        self._turn = COMMANDS_PER_TURN
        self._task: asyncio.Task[None] | None = None
        self._rates: RateState | None = None  # rate limit buckets, made on first use
        self._errors: RateState | None = None
        self.counted = False  # in the engine's count of its user's connections
        self.emulation_session = ""  # the secret /emulation names this connection by
        node.client_opened(self)

    def __repr__(self) -> str:
        return f"<Client {self.session.client_id} user={self.session.user!r}>"

    @property
    def client_id(self) -> str:
        return self.session.client_id

    @property
    def user(self) -> str:
        return self.session.user

    @property
    def closed(self) -> bool:
        return self._closed

    # ---------------------------------------------------------------- outgoing

    def enqueue(self, payload: bytes) -> None:
        if self._closed:
            return
        self._pending.append(payload)
        self._shared = None
        self._after_enqueue(len(payload))

    def enqueue_shared(self, shared: Shared) -> None:
        """The fan-out hot path: called once per subscriber per publication. Kept flat (no
        nested calls) on purpose; see docs/design.md."""
        if self._closed:
            return
        pending = self._pending
        self._shared = None if pending else shared
        pending.append(shared.payload)
        self._pending_bytes += len(shared.payload)
        if not self._dirty:
            self._dirty = True
            self.node.schedule_flush(self)

    def _after_enqueue(self, size: int) -> None:
        # No size check while queueing: the slow-consumer check (which may close the client
        # and so change the hub) belongs to flush(), outside any fan-out loop.
        self._pending_bytes += size
        if not self._dirty:
            self._dirty = True
            self.node.schedule_flush(self)

    def flush(self) -> None:
        """Write everything pending as one transport frame (called by the node's flush round,
        see ``Node.schedule_flush``). A client whose unsent bytes pass
        ``client.queue_max_size`` while the socket is backed up is disconnected with 3008."""
        self._dirty = False
        if not self._pending or self._closed:
            return
        if self._paused:
            limit = self.node.config.client.queue_max_size
            if self._pending_bytes + self.transport.buffer_size() > limit:
                self._slow()
            return
        pending = self._pending
        stats = self.node.transport_stats[self.transport.kind]
        stats[0] += len(pending)
        if len(pending) == 1:
            shared = self._shared
            data = (
                shared.framed(self.transport.kind, self.transport.frame)
                if shared is not None
                else self.transport.frame(pending[0])
            )
        else:
            data = self.transport.frame(self.transport.separator.join(pending))
        pending.clear()  # reuse the list: no new GC-tracked object per flush
        self._pending_bytes = 0
        self._shared = None
        stats[1] += len(data)
        self.transport.write(data)  # the socket transport's own bound write, no wrapper

    def _slow(self) -> None:
        log.info("client %s is too slow (%d bytes queued): disconnecting",
                 self.client_id, self._pending_bytes + self.transport.buffer_size())
        self.close(Disconnect.SLOW, flush=False)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._pending and not self._dirty:
            self._dirty = True
            self.node.schedule_flush(self)

    def _reply(self, reply: Reply) -> None:
        self.enqueue(self.transport.codec.encode_reply(reply))

    def _reply_error(self, cmd_id: int, err: ReplyError) -> None:
        self._reply(
            Reply(id=cmd_id, error=Error(code=err.code, message=err.message,
                                         temporary=err.temporary))
        )

    def check_queue(self) -> None:
        """Bytes the transport wrote on its own (WebSocket pongs) count against
        ``client.queue_max_size`` too: past it the client is slow (3008)."""
        limit = self.node.config.client.queue_max_size
        if not self._closed and self._pending_bytes + self.transport.buffer_size() > limit:
            self._slow()

    def send_ping(self) -> None:
        self.enqueue(self.transport.codec.PING)
        if self.transport.bidirectional and self.node.config.client.pong_timeout > 0:
            self.session.awaiting_pong = True

    # ---------------------------------------------------------------- closing

    def close(self, disconnect: Disconnect, *, flush: bool = True) -> None:
        """Disconnect the client: flush replies, tell it why, release everything."""
        if self._closed:
            return
        if flush and self._pending:
            self._paused = False
            self.flush()
        self._closed = True
        self._pending = []
        level = logging.INFO if disconnect.code not in (3000, 3001) else logging.DEBUG
        log.log(level, "disconnect client %s (user %r, %s): %d %s", self.client_id,
                self.user, self.transport.name, disconnect.code, disconnect.reason)
        try:
            self.transport.close(disconnect)
        finally:
            self.node.client_closed(self)

    def connection_lost(self) -> None:
        """The peer went away (transport closed under us)."""
        if self._closed:
            return
        self._closed = True
        self._pending = []
        log.debug("client %s connection lost", self.client_id)
        self.node.client_closed(self)

    # ---------------------------------------------------------------- incoming

    def feed(self, frame: bytes) -> bool:
        """A frame arrived. Commands run in order on one task per busy connection. False:
        refused, too much input is waiting already (only pushed input, such as emulation
        POSTs, can get there: a socket transport stops reading first)."""
        if self._closed:
            return True
        if self._inbox_bytes > INBOX_MAX_BYTES:
            return False
        stats = self.node.transport_stats[self.transport.kind]
        stats[2] += 1
        stats[3] += len(frame)
        inbox = self._inbox
        inbox.append(frame)
        self._inbox_bytes += len(frame)
        if len(inbox) > INBOX_PAUSE and not self._reading_held:
            self._reading_held = True
            self.transport.pause_reading()
        if self._task is None:
            self._task = self.node.loop.create_task(self._drain())
        return True

    async def _drain(self) -> None:
        inbox = self._inbox
        try:
            while inbox and not self._closed:
                frame = inbox.popleft()
                self._inbox_bytes -= len(frame)
                if self._reading_held and len(inbox) <= INBOX_PAUSE // 2:
                    self._reading_held = False
                    self.transport.resume_reading()
                await self.handle_frame(frame)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("internal error while handling client %s", self.client_id)
            self.close(Disconnect.INTERNAL)
        finally:
            self._task = None
            if self._reading_held and not self._closed:
                self._reading_held = False
                self.transport.resume_reading()

    async def _take_turn(self) -> None:
        """Count one command; every COMMANDS_PER_TURN, let the loop run other work."""
        self._turn -= 1
        if self._turn <= 0:
            self._turn = COMMANDS_PER_TURN
            await asyncio.sleep(0)

    async def handle_frame(self, frame: bytes) -> None:
        if not self.transport.bidirectional:
            if self.session.state == State.CONNECTING:
                try:
                    await self._uni_connect(frame)
                except EngineError as exc:
                    log.warning("client %s: connect failed, engine unavailable: %s",
                                self.client_id, exc)
                    self.close(Disconnect.INTERNAL)
            return  # a unidirectional client has nothing more to say
        try:
            commands = self.transport.codec.decode_commands(frame)
        except ProtocolError as exc:
            log.info("client %s sent a malformed frame: %s", self.client_id, exc)
            self.close(exc.disconnect)
            return
        for cmd in commands:
            if self._closed:
                return
            try:
                await self.handle_command(cmd)
            except Disconnect as d:
                self.close(d)
                return
            except ReplyError as err:
                if cmd.id:
                    self._reply_error(cmd.id, err)
                if err.code != 100 and self._too_many_errors():
                    return
            except EngineError as exc:
                log.warning("client %s: command failed, engine unavailable: %s",
                            self.client_id, exc)
                if cmd.connect is not None:
                    self.close(Disconnect.INTERNAL)  # connect failed: the client reconnects
                    return
                if cmd.id:
                    self._reply_error(cmd.id, ErrorCode.INTERNAL)
            await self._take_turn()

    def _too_many_errors(self) -> bool:
        """``client.rate_limit.client_error``: count an error reply; past the limit the client
        is disconnected with 3509 (terminal)."""
        limits = self.node.limits
        if not limits.errors.enabled:
            return False
        if self._errors is None:
            self._errors = {}
        if limits.allow_error(self._errors, time.monotonic()):
            return False
        log.info("client %s (user %r) caused too many errors", self.client_id, self.user)
        self.close(Disconnect.TOO_MANY_ERRORS)
        return True

    def _check_rate(self, method: str, cmd: Command) -> None:
        """``client.rate_limit``: raise 111 when this command is over its rate."""
        request = getattr(cmd, method)
        channel: str = getattr(request, "channel", "")
        namespace = self.node.rules.namespace_of(channel)[0] if channel else ""
        rpc_method: str = getattr(request, "method", "") if method == "rpc" else ""
        if self._rates is None:
            self._rates = {}
        if not self.node.limits.allow_command(self._rates, self.user, method, time.monotonic(),
                                              namespace=namespace, rpc_method=rpc_method):
            raise ErrorCode.TOO_MANY_REQUESTS

    async def handle_command(self, cmd: Command) -> None:
        method = self.session.check_command(cmd)
        if method == "pong":
            return
        if self.node.limits.commands and method in _LIMITED:
            self._check_rate(method, cmd)
        now = time.time()
        if method == "connect":
            assert cmd.connect is not None
            await self._connect(cmd.id, cmd.connect, now)
        elif method == "subscribe":
            assert cmd.subscribe is not None
            await self._subscribe(cmd.id, cmd.subscribe, now)
        elif method == "unsubscribe":
            assert cmd.unsubscribe is not None
            await self._unsubscribe(cmd.id, cmd.unsubscribe)
        elif method == "publish":
            assert cmd.publish is not None
            await self._publish(cmd.id, cmd.publish)
        elif method == "presence":
            assert cmd.presence is not None
            await self._presence(cmd.id, cmd.presence)
        elif method == "presence_stats":
            assert cmd.presence_stats is not None
            await self._presence_stats(cmd.id, cmd.presence_stats)
        elif method == "history":
            assert cmd.history is not None
            await self._history(cmd.id, cmd.history)
        elif method == "refresh":
            assert cmd.refresh is not None
            self._refresh(cmd.id, cmd.refresh, now)
        elif method == "sub_refresh":
            assert cmd.sub_refresh is not None
            self._sub_refresh(cmd.id, cmd.sub_refresh, now)
        elif method == "send":
            raise Disconnect.NOT_AVAILABLE  # no message handler (Centrifugo OSS behaviour)
        else:  # rpc and ping: no handlers until backend hooks exist
            raise ErrorCode.NOT_AVAILABLE

    # ---------------------------------------------------------------- connect

    async def _connect(self, cmd_id: int, req: ConnectRequest, now: float) -> None:
        result, finish = await self._establish(req, now)
        self._reply(Reply(id=cmd_id, connect=result))
        for sub_decision, top in finish:
            await self._finish_subscription(sub_decision, top)

    async def _establish(
        self, req: ConnectRequest, now: float
    ) -> tuple[ConnectResult, list[tuple[SubscribeDecision, StreamPosition | None]]]:
        """Authenticate and prepare the token's subscriptions; the caller sends the result,
        then finishes the subscriptions."""
        node = self.node
        decision: ConnectDecision = self.session.decide_connect(req, now)
        user = decision.user
        if not node.limits.allow_connect(user, time.monotonic()):
            self.session.state = State.FAILED
            raise ErrorCode.TOO_MANY_REQUESTS
        user_limit = node.limits.user_connection_limit
        if user_limit and user:
            # Cluster-wide with a distributed engine (Centrifugo counts per node).
            if not await node.engine.add_user_connection(user, self.client_id, user_limit):
                log.info("connection limit of user %r reached (%d)", user, user_limit)
                raise Disconnect.CONNECTION_LIMIT
            self.counted = True
        self.session.connected(decision)
        node.client_connected(self)
        cfg = node.config.client
        result = ConnectResult(client=self.client_id, version=__version__)
        if decision.expires_at:
            result.expires = True
            result.ttl = max(int(decision.expires_at - now), 0)
        if cfg.ping_interval > 0:
            result.ping = int(cfg.ping_interval)
            result.pong = self.transport.bidirectional and cfg.pong_timeout > 0
        if cfg.connect_include_server_time:
            result.time = int(now * 1000)
        if self.transport.emulation:
            # Emulation: the client posts its commands to /emulation naming these two.
            self.emulation_session = node.open_emulation_session(self)
            result.session = self.emulation_session
            result.node = node.id
        subs: dict[str, SubscribeResult] = {}
        finish: list[tuple[SubscribeDecision, StreamPosition | None]] = []
        try:
            for sub_decision in decision.subs:
                sub_result, top = await self._prepare_subscription(sub_decision, now)
                subs[sub_decision.sub.channel] = sub_result
                finish.append((sub_decision, top))
        except BaseException:
            # The connect fails: presence already added for the prepared channels goes too.
            for prepared, _ in finish:
                if prepared.sub.presence:
                    node.spawn(node.leave_channel(self, prepared.sub, announce=False))
            raise
        if subs:
            result.subs = subs
        return result, finish

    async def _uni_connect(self, frame: bytes) -> None:
        """Unidirectional transports: the first message is a ConnectRequest (not a command);
        the answer is a ``connect`` push, errors become a disconnect (PROTOCOL.md §8.1)."""
        try:
            req = self.transport.codec.decode_connect_request(frame)
        except ProtocolError as exc:
            log.info("client %s sent a malformed connect request: %s", self.client_id, exc)
            self.close(Disconnect.BAD_REQUEST)
            return
        try:
            result, finish = await self._establish(req, time.time())
        except Disconnect as d:
            self.close(d)
            return
        except ReplyError as err:
            log.info("uni connect of %s refused: %d %s", self.client_id, err.code, err.message)
            self.close(_UNI_CONNECT_ERRORS.get(err.code, Disconnect.INTERNAL))
            return
        self.enqueue(self.transport.codec.encode_push(Push(connect=result)))
        for sub_decision, top in finish:
            await self._finish_subscription(sub_decision, top)

    # ---------------------------------------------------------------- subscribe

    async def _prepare_subscription(
        self, decision: SubscribeDecision, now: float
    ) -> tuple[SubscribeResult, StreamPosition | None]:
        """Register as syncing and read the stream; the caller sends the result, then calls
        ``_finish_subscription`` with the stream top it read (None: not positioned). On error
        the registration is undone."""
        node = self.node
        sub = decision.sub
        channel = sub.channel
        self.session.inflight.add(channel)
        try:
            await node.add_subscriber(channel, self)
            pubs: list[Publication] = []
            top = StreamPosition()
            if sub.positioned:
                options = node.history_options(sub.opts)
                pubs, top = await node.engine.history(
                    channel,
                    options=options,
                    limit=node.config.client.recovery_max_publication_limit
                    if decision.recover
                    else 0,
                    since=StreamPosition(offset=decision.offset) if decision.recover else None,
                )
            result, _ = self.session.subscribe_result(decision, pubs, top, now)
            if sub.delta and result.publications and not self.transport.codec.PROTOBUF:
                # JSON: every publication of a delta subscription has data as a string
                result.publications = [as_full_string(p) for p in result.publications]
            if sub.presence:
                # Before the reply (as Centrifugo does): a client told it is subscribed is
                # already in presence, wherever presence is asked.
                await self._add_presence(sub)
            return result, top if sub.positioned else None
        except BaseException:
            self.session.inflight.discard(channel)
            await node.remove_subscriber(channel, self)
            raise

    async def _finish_subscription(
        self, decision: SubscribeDecision, top: StreamPosition | None
    ) -> None:
        sub = decision.sub
        channel = sub.channel
        self.session.inflight.discard(channel)
        if self._closed:
            if sub.presence:  # closed mid-subscribe: no leave will remove this entry
                self.node.spawn(self.node.leave_channel(self, sub, announce=False))
            return
        self.session.subs[channel] = sub
        buffered = self.node.hub.finish_sync(
            channel, self, push_join_leave=sub.push_join_leave,
            live_from=top.offset if top is not None else -1,
            epoch=top.epoch if top is not None else "",
            delta=sub.delta,
        )
        for _, shared in buffered:
            if sub.delta:
                self.enqueue(shared.full_for(self))
            else:
                self.enqueue_shared(shared)
        if sub.expires_at:
            self.node.schedule_sub_expiry(self, channel, sub.expires_at)
        if sub.join_leave:
            try:
                info = self.session.client_info(sub.chan_info)
                await self.node.engine.publish_join(channel, info)
            except EngineError as exc:
                log.warning("client %s: join to %s not published: %s", self.client_id, channel,
                            exc)

    async def _add_presence(self, sub: Sub) -> None:
        info = self.session.client_info(sub.chan_info)
        try:
            await self.node.engine.add_presence(sub.channel, self.client_id, info)
        except EngineError as exc:
            # The subscription stands; presence is re-added by the node's refresh round.
            log.warning("client %s: presence in %s not added: %s", self.client_id, sub.channel,
                        exc)

    async def _subscribe(self, cmd_id: int, req: SubscribeRequest, now: float) -> None:
        decision = self.session.decide_subscribe(req, now)
        result, top = await self._prepare_subscription(decision, now)
        self._reply(Reply(id=cmd_id, subscribe=result))
        await self._finish_subscription(decision, top)

    async def server_subscribe(self, decision: SubscribeDecision) -> None:
        """Subscribe server-side (HTTP API ``subscribe``): a ``subscribe`` push, no reply."""
        if self._closed or decision.sub.channel in self.session.subs:
            return
        now = time.time()
        result, top = await self._prepare_subscription(decision, now)
        push = SubscribePush(
            recoverable=result.recoverable,
            epoch=result.epoch,
            offset=result.offset,
            positioned=result.positioned,
            data=result.data,
        )
        self.enqueue(self.transport.codec.encode_push(
            Push(channel=decision.sub.channel, subscribe=push)
        ))
        await self._finish_subscription(decision, top)

    async def _unsubscribe(self, cmd_id: int, req: UnsubscribeRequest) -> None:
        if not req.channel:
            raise Disconnect.BAD_REQUEST
        await self.unsubscribe(req.channel)
        self._reply(Reply(id=cmd_id, unsubscribe=EmptyResult()))

    def drop_subscription(self, channel: str, reason: Unsubscribe) -> None:
        """The node cannot keep this subscription consistent (a gap in the stream): tell the
        client to resubscribe (it recovers from its last offset), or disconnect with 3010 when
        the subscription is server-side. Synchronous; the engine cleanup runs in background."""
        sub = self.session.subs.get(channel)
        if sub is None or self._closed:
            return
        if sub.server_side:
            self.close(Disconnect.INSUFFICIENT_STATE)
            return
        log.info("client %s: unsubscribing from %s: %s", self.client_id, channel, reason.reason)
        del self.session.subs[channel]
        self.enqueue(self.transport.codec.encode_push(Push(
            channel=channel, unsubscribe=UnsubscribePush(code=reason.code, reason=reason.reason)
        )))
        self.node.hub_remove(channel, self)  # no further delivery from this moment
        self.node.spawn(self.node.leave_channel(self, sub))

    async def unsubscribe(self, channel: str, push: Unsubscribe | None = None) -> None:
        """Remove a subscription; with ``push``, tell the client (server-side unsubscribe)."""
        sub = self.session.subs.pop(channel, None)
        if sub is None:
            return
        if push is not None:
            self.enqueue(self.transport.codec.encode_push(Push(
                channel=channel, unsubscribe=UnsubscribePush(code=push.code, reason=push.reason)
            )))
        await self.node.remove_subscriber(channel, self)
        await self.node.leave_channel(self, sub)

    # ---------------------------------------------------------------- other commands

    async def _publish(self, cmd_id: int, req: PublishRequest) -> None:
        channel = req.channel
        data = bytes(req.data)
        opts = self.session.need_publish_access(channel, data)
        if opts.publication_data_format == "binary":
            payload = Raw(data)
        else:
            if self.transport.codec.PROTOBUF and not codec.is_json(data):
                # From a Protobuf client: JSON subscribers could not read it.
                raise ReplyError(107, "bad request: data must be JSON outside binary channels")
            payload = codec.raw(data)
        sub = self.session.subs.get(channel)
        info = self.session.client_info(sub.chan_info if sub is not None else None)
        pub = Publication(data=payload, info=info)
        await self.node.publish(channel, pub, opts)
        self._reply(Reply(id=cmd_id, publish=EmptyResult()))

    async def _presence(self, cmd_id: int, req: PresenceRequest) -> None:
        self.session.need_presence_access(req.channel)
        presence = await self.node.engine.presence(req.channel)
        self._reply(Reply(id=cmd_id, presence=PresenceResult(presence=presence)))

    async def _presence_stats(self, cmd_id: int, req: PresenceRequest) -> None:
        self.session.need_presence_access(req.channel)
        stats = await self.node.engine.presence_stats(req.channel)
        self._reply(Reply(id=cmd_id, presence_stats=PresenceStatsResult(
            num_clients=stats.num_clients, num_users=stats.num_users)))

    async def _history(self, cmd_id: int, req: HistoryRequest) -> None:
        opts = self.session.need_history_access(req.channel)
        result = await self.node.history(
            req.channel, opts, limit=req.limit, since=req.since, reverse=req.reverse
        )
        self._reply(Reply(id=cmd_id, history=result))

    def _refresh(self, cmd_id: int, req: RefreshRequest, now: float) -> None:
        expires_at = self.session.refresh(req.token, now)
        result = RefreshResult(client=self.client_id, version=__version__)
        if expires_at:
            result.expires = True
            result.ttl = max(int(expires_at - now), 0)
            self.node.schedule_expiry(self, expires_at)
        self._reply(Reply(id=cmd_id, refresh=result))

    def _sub_refresh(self, cmd_id: int, req: SubRefreshRequest, now: float) -> None:
        expires_at = self.session.sub_refresh(req.channel, req.token, now)
        result = SubRefreshResult()
        if expires_at:
            result.expires = True
            result.ttl = max(int(expires_at - now), 0)
            self.node.schedule_sub_expiry(self, req.channel, expires_at)
        self._reply(Reply(id=cmd_id, sub_refresh=result))


class ProtobufClient(Client):
    """A client on the Protobuf protocol: publications go out as their Protobuf encoding
    (made once per publication, ``Shared.pb_payload``)."""

    __slots__ = ()

    def enqueue_shared(self, shared: Shared) -> None:
        if self._closed:
            return
        pending = self._pending
        payload = shared.pb_payload()
        self._shared = None if pending else shared
        pending.append(payload)
        self._pending_bytes += len(payload)
        if not self._dirty:
            self._dirty = True
            self.node.schedule_flush(self)

