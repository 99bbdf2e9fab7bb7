"""The cluster seen from one node: which nodes exist, and messages between them.

Every node publishes its info through the engine's control channel every
``NODE_INFO_INTERVAL`` seconds (``info`` lists every node heard from within ``NODE_INFO_TTL``).
Server-side API actions are applied on the receiving node and published for the others
(:meth:`Cluster.control`); questions to every node (``channels``) are surveys. With the memory
engine the node is its own cluster: the same code runs, with no one else to answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import msgspec

from tidings.engine.base import Engine, EngineError
from tidings.metrics.counts import Counts

__all__ = ["Cluster", "ClusterHost", "ControlHandler", "DirectHandler", "SurveyHandler"]

log = logging.getLogger("tidings.cluster")

# The cluster: every node publishes its info every NODE_INFO_INTERVAL seconds; a node not heard
# from for NODE_INFO_TTL is gone. Surveys wait SURVEY_TIMEOUT for the other nodes' answers.
NODE_INFO_INTERVAL = 3.0
NODE_INFO_TTL = 10.0
SURVEY_TIMEOUT = 3.0

ControlHandler = Callable[[dict[str, Any]], Coroutine[Any, Any, None]]
SurveyHandler = Callable[[dict[str, Any]], Coroutine[Any, Any, Any]]
DirectHandler = Callable[[dict[str, Any]], None]


class ClusterHost(Protocol):
    """What the cluster needs from its node."""

    id: str
    engine: Engine
    counts: Counts

    def info(self) -> dict[str, Any]: ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...
_control = msgspec.json.Encoder()


class _ControlMessage(msgspec.Struct):
    op: str
    from_: str = msgspec.field(default="", name="from")
    id: str = ""
    kind: str = ""
    params: Any = None


class _Survey:
    def __init__(self, waiting: set[str], done: asyncio.Future[None]) -> None:
        self.waiting = waiting
        self.done = done
        self.answers: list[Any] = []

    def answer(self, node: str, data: Any) -> None:
        if node in self.waiting:
            self.waiting.discard(node)
            self.answers.append(data)
            if not self.waiting and not self.done.done():
                self.done.set_result(None)


class Cluster:
    def __init__(self, node: ClusterHost) -> None:
        self.node = node
        # Other nodes' latest info (from their heartbeats) with its expiry time.
        self.nodes: dict[str, tuple[float, dict[str, Any]]] = {}
        # Server-side actions (applied on every node), messages for this node only, and
        # survey answers, registered by their owners (core.actions).
        self.control_handlers: dict[str, ControlHandler] = {}
        self.direct_handlers: dict[str, DirectHandler] = {}
        self.survey_handlers: dict[str, SurveyHandler] = {}
        self._surveys: dict[str, _Survey] = {}
        self._introducing = False  # a heartbeat out of turn is on its way
        # The engine as the last heartbeat found it: "" (it took the heartbeat) or the error.
        self.engine_error = ""

    async def control(self, op: str, params: dict[str, Any]) -> None:
        """A server-side action (disconnect, unsubscribe, ...): applied here, and published
        for every other node to apply to its own clients."""
        await self.control_handlers[op](params)
        await self._publish_control(
            _control.encode({"op": op, "from": self.node.id, "params": params})
        )

    async def send(self, node_id: str, op: str, params: dict[str, Any]) -> None:
        """A control message for one other node only."""
        await self._publish_control(
            _control.encode({"op": op, "from": self.node.id, "params": params}),
            node_id=node_id,
        )

    def handle_control(self, data: bytes) -> None:
        try:
            msg = msgspec.json.decode(data, type=_ControlMessage)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
            log.error("dropped a malformed control message: %s", exc)
            return
        if msg.op == "node":
            if msg.from_ != self.node.id:
                new = not self.is_live(msg.from_)
                self.nodes[msg.from_] = (time.monotonic() + NODE_INFO_TTL, msg.params)
                if new and not self._introducing:
                    # A node just started (its first heartbeat comes once it listens to the
                    # control channel): it learns of this one now, not a heartbeat later.
                    self._introducing = True
                    self.node.spawn(self._introduce())
        elif msg.op == "bye":
            self.nodes.pop(msg.from_, None)
        elif msg.from_ == self.node.id:
            return  # applied locally already
        elif msg.op == "survey":
            self.node.spawn(self._answer_survey(msg))
        elif msg.op in self.direct_handlers:
            self.direct_handlers[msg.op](msg.params if isinstance(msg.params, dict) else {})
        elif msg.op == "survey_reply":
            survey = self._surveys.get(msg.id)
            if survey is not None:
                survey.answer(msg.from_, msg.params)
        else:
            handler = self.control_handlers.get(msg.op)
            if handler is not None:
                self.node.spawn(handler(msg.params))
            else:
                log.warning("unknown control operation %r from node %s", msg.op, msg.from_)

    def other_nodes(self) -> dict[str, dict[str, Any]]:
        """The other nodes heard from within NODE_INFO_TTL, with their latest info."""
        now = time.monotonic()
        for uid, (expires, _) in list(self.nodes.items()):
            if expires < now:
                del self.nodes[uid]
        return {uid: info for uid, (_, info) in self.nodes.items()}

    def live_nodes(self) -> dict[str, dict[str, Any]]:
        """Every node's latest info, this one's fresh."""
        return {**self.other_nodes(), self.node.id: self.node.info()}

    def is_live(self, node_id: str) -> bool:
        """Another node heard from within NODE_INFO_TTL (cheap: no info is built)."""
        entry = self.nodes.get(node_id)
        return entry is not None and entry[0] >= time.monotonic()

    async def _publish_control(self, data: bytes, node_id: str = "") -> None:
        self.node.counts.broker_sent["control"] += 1
        await self.node.engine.publish_control(data, node_id=node_id)

    async def survey(self, kind: str, params: dict[str, Any]) -> list[Any]:
        """Ask every node (this one included) and collect the answers; nodes that do not
        answer within ``SURVEY_TIMEOUT`` are left out (logged)."""
        started = time.perf_counter()
        try:
            return await self._survey(kind, params)
        finally:
            self.node.counts.actions["survey"] += 1
            self.node.counts.survey(kind, time.perf_counter() - started)

    async def _survey(self, kind: str, params: dict[str, Any]) -> list[Any]:
        answers: list[Any] = [await self.survey_handlers[kind](params)]
        others = set(self.other_nodes())  # no need to build this node's info
        if not others:
            return answers
        survey = _Survey(others, asyncio.get_running_loop().create_future())
        sid = uuid.uuid4().hex
        self._surveys[sid] = survey
        try:
            await self._publish_control(_control.encode(
                {"op": "survey", "from": self.node.id, "id": sid, "kind": kind, "params": params}
            ))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(survey.done), SURVEY_TIMEOUT)
        finally:
            del self._surveys[sid]
        if survey.waiting:
            log.warning("survey %s: no answer from nodes %s", kind, sorted(survey.waiting))
        return answers + survey.answers

    async def _answer_survey(self, msg: _ControlMessage) -> None:
        handler = self.survey_handlers.get(msg.kind)
        if handler is None:
            return
        answer = await handler(msg.params)
        await self._publish_control(
            _control.encode({"op": "survey_reply", "from": self.node.id, "id": msg.id,
                             "params": answer}),
            node_id=msg.from_,
        )

    async def heartbeat_forever(self) -> None:
        while True:
            try:
                info = self.node.info()
                await self._publish_control(
                    _control.encode({"op": "node", "from": self.node.id, "params": info})
                )
                self.engine_error = ""
            except EngineError as exc:
                log.debug("node info not published: %s", exc)
                self.engine_error = str(exc) or type(exc).__name__
            await asyncio.sleep(NODE_INFO_INTERVAL)

    async def _introduce(self) -> None:
        try:
            await self._publish_control(
                _control.encode({"op": "node", "from": self.node.id, "params": self.node.info()})
            )
        except EngineError as exc:
            log.debug("node info not published: %s", exc)
        finally:
            self._introducing = False

    async def leave(self) -> None:
        """Tell the other nodes this one is gone (shutdown), so ``info`` drops it at once."""
        with contextlib.suppress(EngineError):
            await self._publish_control(
                _control.encode({"op": "bye", "from": self.node.id})
            )
