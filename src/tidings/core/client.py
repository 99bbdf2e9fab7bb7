"""One connected client: its queue of outgoing messages, its inbox of commands, its lifecycle.

The transport feeds frames in (``feed``) and gets framed bytes out (``Transport.write``).
Commands of one connection run strictly in order on one short-lived task, created when a frame
arrives and gone when the inbox is empty (no idle task per connection); what each command does
lives in ``commands``, ``connecting`` and ``subscribing``. Everything a client sends goes
through ``_pending``, written by the node's flush rounds (:mod:`tidings.core.writer`).

Input is bounded: while more than ``INBOX_PAUSE`` frames wait, the transport stops reading
(the peer's TCP window fills, not our memory), and the command task gives the loop a turn every
``COMMANDS_PER_TURN`` commands, so one busy connection cannot hold the others up.

A client knows its node only as a :class:`tidings.core.host.ClientHost`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

from tidings.core import commands, connecting, subscribing
from tidings.core.host import ClientHost
from tidings.core.peer import Transport
from tidings.core.shared import Shared
from tidings.engine.base import EngineError
from tidings.errors import Disconnect, ErrorCode, ProtocolError, ReplyError, Unsubscribe
from tidings.logs import client_fields
from tidings.protocol.kinds import KINDS
from tidings.protocol.messages import Command, Error, Reply
from tidings.protocol.ratelimit import RateState
from tidings.protocol.session import State, SubscribeDecision, command_method
from tidings.proxy import HookState

__all__ = ["Client", "Transport"]

log = logging.getLogger("tidings.client")

INBOX_PAUSE = 16  # frames waiting before the transport stops reading
INBOX_MAX_BYTES = 1 << 20  # pushed input (emulation POSTs) refused past this many waiting bytes
COMMANDS_PER_TURN = 32  # commands run before the command task yields to the loop


def _drop(data: bytes) -> None:
    pass


class _Detached:
    """What a closed client keeps in place of its transport: the transport holds the client,
    so keeping it would make a reference cycle per connection, freed only by the garbage
    collector's full passes (which stalled the loop ~130 ms under churn)."""

    __slots__ = ("bidirectional", "codec", "emulation", "kind", "name", "separator", "write")

    def __init__(self, transport: Transport) -> None:
        self.write: Callable[[bytes], None] = _drop
        self.kind = transport.kind
        self.name = transport.name
        self.bidirectional = transport.bidirectional
        self.separator = transport.separator
        self.emulation = transport.emulation
        self.codec = transport.codec

    def frame(self, payload: bytes) -> bytes:
        return payload

    def buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self, disconnect: Disconnect) -> None:
        pass


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
        "_reading_held",
        "_shared",
        "_stats",
        "_task",
        "_turn",
        "_writer",
        "counted",
        "emulation_session",
        "hook_state",
        "node",
        "protobuf",
        "rates",
        "session",
        "transport",
    )

    def __init__(self, node: ClientHost, transport: Transport) -> None:
        self.node = node
        self.transport = transport
        self.protobuf = transport.codec.PROTOBUF
        self.session = node.new_session()
        self.hook_state: HookState | None = None  # forwarded headers, meta (backend hooks)
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._shared: Shared | None = None
        self._dirty = False
        self._paused = False
        self._closed = False
        # Held directly: the fan-out path reaches them without going through the node.
        self._writer = node.writer
        self._stats = node.transport_stats[transport.kind]
        self._inbox: deque[bytes] = deque()
        self._inbox_bytes = 0
        self._reading_held = False
        self._turn = COMMANDS_PER_TURN
        self._task: asyncio.Task[None] | None = None
        self.rates: RateState | None = None  # rate limit buckets, made on first use
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
        # No size check while queueing: the slow-consumer check (which may close the client
        # and so change the hub) belongs to flush(), outside any fan-out loop.
        self._pending_bytes += len(payload)
        if not self._dirty:
            self._dirty = True
            self._writer.schedule(self)

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
            self._writer.schedule(self)

    def flush(self) -> None:
        """Write everything pending as one transport frame (called by the node's flush
        round). A client whose unsent bytes pass ``client.queue_max_size`` while the socket is
        backed up is disconnected with 3008."""
        self._dirty = False
        if not self._pending or self._closed:
            return
        if self._paused:
            limit = self.node.config.client.queue_max_size
            if self._pending_bytes + self.transport.buffer_size() > limit:
                self._slow()
            return
        pending = self._pending
        stats = self._stats
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
                 self.client_id, self._pending_bytes + self.transport.buffer_size(),
                 extra=client_fields(self))
        self.close(Disconnect.SLOW, flush=False)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._pending and not self._dirty:
            self._dirty = True
            self._writer.schedule(self)

    def reply(self, reply: Reply) -> None:
        self.enqueue(self.transport.codec.encode_reply(reply))

    def reply_error(self, cmd_id: int, err: ReplyError) -> None:
        self.reply(Reply(id=cmd_id, error=Error(code=err.code, message=err.message,
                                                temporary=err.temporary)))

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
        if log.isEnabledFor(level):  # no fields dict per close when not shown (shutdown: many)
            log.log(level, "disconnect client %s (user %r, %s): %d %s", self.client_id,
                    self.user, self.transport.name, disconnect.code, disconnect.reason,
                    extra=client_fields(self, code=disconnect.code, reason=disconnect.reason))
        try:
            self.transport.close(disconnect)
        finally:
            self.node.client_closed(self, disconnect.code, disconnect.reason)
            self.transport = _Detached(self.transport)

    def connection_lost(self) -> None:
        """The peer went away (transport closed under us)."""
        if self._closed:
            return
        self._closed = True
        self._pending = []
        log.debug("client %s connection lost", self.client_id, extra=client_fields(self))
        self.node.client_closed(self, 0, "connection lost")
        self.transport = _Detached(self.transport)

    # ---------------------------------------------------------------- incoming

    def feed(self, frame: bytes) -> bool:
        """A frame arrived. Commands run in order on one task per busy connection. False:
        refused, too much input is waiting already (only pushed input, such as emulation
        POSTs, can get there: a socket transport stops reading first)."""
        if self._closed:
            return True
        if self._inbox_bytes > INBOX_MAX_BYTES:
            return False
        stats = self._stats
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
            log.exception("internal error while handling client %s", self.client_id,
                          extra=client_fields(self))
            self.close(Disconnect.INTERNAL)
        finally:
            self._task = None
            if self._reading_held and not self._closed:
                self._reading_held = False
                self.transport.resume_reading()

    async def handle_frame(self, frame: bytes) -> None:
        if not self.transport.bidirectional:
            if self.session.state == State.CONNECTING:
                try:
                    await connecting.uni_connect(self, frame)
                except EngineError as exc:
                    log.warning("client %s: connect failed, engine unavailable: %s",
                                self.client_id, exc,
                                extra=client_fields(self, method="connect", error=str(exc)))
                    self.close(Disconnect.INTERNAL)
            return  # a unidirectional client has nothing more to say
        try:
            cmds = self.transport.codec.decode_commands(frame)
        except ProtocolError as exc:
            log.info("client %s sent a malformed frame: %s", self.client_id, exc,
                     extra=client_fields(self))
            self.close(exc.disconnect)
            return
        for cmd in cmds:
            if self._closed or not await self._run(cmd):
                return
            self._turn -= 1
            if self._turn <= 0:  # let the loop run other work every COMMANDS_PER_TURN
                self._turn = COMMANDS_PER_TURN
                await asyncio.sleep(0)

    async def _run(self, cmd: Command) -> bool:
        """One command and its error reply; False when the client was closed. Counted for
        /metrics: its duration by method, its error code."""
        started = time.perf_counter()
        method = ""
        try:
            method = await commands.dispatch(self, cmd)
        except Disconnect as d:
            self.close(d)
            return False
        except ReplyError as err:
            method = command_method(cmd)
            self.node.counts.reply_error(method, err.code)
            if log.isEnabledFor(logging.DEBUG):
                self._log_refused(cmd, method, err)
            if cmd.id:
                self.reply_error(cmd.id, err)
            if err.code != 100 and self._too_many_errors():
                return False
        except EngineError as exc:
            log.warning("client %s: command failed, engine unavailable: %s", self.client_id,
                        exc, extra=client_fields(self, method=command_method(cmd),
                                                 error=str(exc)))
            if cmd.connect is not None:
                self.close(Disconnect.INTERNAL)  # connect failed: the client reconnects
                return False
            if cmd.id:
                self.reply_error(cmd.id, ErrorCode.INTERNAL)
        finally:
            self.node.counts.command(KINDS[self.transport.kind].transport,
                                     method or command_method(cmd),
                                     time.perf_counter() - started)
        return True

    def _log_refused(self, cmd: Command, method: str, err: ReplyError) -> None:
        """A command answered with an error (debug: its method, channel and code)."""
        channel = getattr(getattr(cmd, method, None), "channel", None) or None
        log.debug("command refused", extra=client_fields(
            self, method=method, channel=channel, code=err.code, error=err.message))

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
        log.info("client %s (user %r) caused too many errors", self.client_id, self.user,
                 extra=client_fields(self))
        self.close(Disconnect.TOO_MANY_ERRORS)
        return True

    # ---------------------------------------------------------------- for the node's parts

    async def server_subscribe(self, decision: SubscribeDecision) -> None:
        await subscribing.server_subscribe(self, decision)

    async def unsubscribe(self, channel: str, push: Unsubscribe | None = None) -> None:
        await subscribing.unsubscribe(self, channel, push)

    def drop_subscription(self, channel: str, reason: Unsubscribe) -> None:
        subscribing.drop(self, channel, reason)


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
            self._writer.schedule(self)
