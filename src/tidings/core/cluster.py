"""The cluster seen from one node: which nodes exist, and messages between them.

Every node publishes its info through the engine's control channel every
``NODE_INFO_INTERVAL`` seconds (``info`` lists every node heard from within ``NODE_INFO_TTL``).
Server-side API actions are applied on the receiving node and published for the others
(:meth:`Cluster.control`); questions to every node (``channels``) are surveys. With the memory
engine the node is its own cluster: the same code runs, with no one else to answer.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import msgspec

from tidings.engine.base import EngineError

if TYPE_CHECKING:
    from tidings.core.node import Node

__all__ = ["Cluster", "ControlHandler", "SurveyHandler"]

log = logging.getLogger("tidings.cluster")

# The cluster: every node publishes its info every NODE_INFO_INTERVAL seconds; a node not heard
# from for NODE_INFO_TTL is gone. Surveys wait SURVEY_TIMEOUT for the other nodes' answers.
NODE_INFO_INTERVAL = 3.0
NODE_INFO_TTL = 10.0
SURVEY_TIMEOUT = 3.0

ControlHandler = Callable[[dict[str, Any]], Coroutine[Any, Any, None]]
SurveyHandler = Callable[[dict[str, Any]], Coroutine[Any, Any, Any]]
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
    def __init__(self, node: Node) -> None:
        self.node = node
        # Other nodes' latest info (from their heartbeats) with its expiry time.
        self.nodes: dict[str, tuple[float, dict[str, Any]]] = {}
        # Server-side actions and survey answers, registered by the API (see ApiHandler).
        self.control_handlers: dict[str, ControlHandler] = {}
        self.survey_handlers: dict[str, SurveyHandler] = {}
        self._surveys: dict[str, _Survey] = {}

    async def control(self, op: str, params: dict[str, Any]) -> None:
        """A server-side action (disconnect, unsubscribe, ...): applied here, and published
        for every other node to apply to its own clients."""
        await self.control_handlers[op](params)
        await self.node.engine.publish_control(
            _control.encode({"op": op, "from": self.node.id, "params": params})
        )

    async def send(self, node_id: str, op: str, params: dict[str, Any]) -> None:
        """A control message for one other node only."""
        await self.node.engine.publish_control(
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
                self.nodes[msg.from_] = (time.monotonic() + NODE_INFO_TTL, msg.params)
        elif msg.op == "bye":
            self.nodes.pop(msg.from_, None)
        elif msg.from_ == self.node.id:
            return  # applied locally already
        elif msg.op == "survey":
            self.node.spawn(self._answer_survey(msg))
        elif msg.op == "emulation":
            params = msg.params if isinstance(msg.params, dict) else {}
            session, commands = params.get("session"), params.get("b64data")
            if isinstance(session, str) and isinstance(commands, str):
                with contextlib.suppress(ValueError):
                    self.node.emulation(session, base64.b64decode(commands, validate=True))
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

    async def survey(self, kind: str, params: dict[str, Any]) -> list[Any]:
        """Ask every node (this one included) and collect the answers; nodes that do not
        answer within ``SURVEY_TIMEOUT`` are left out (logged)."""
        answers: list[Any] = [await self.survey_handlers[kind](params)]
        others = set(self.other_nodes())  # no need to build this node's info
        if not others:
            return answers
        survey = _Survey(others, self.node.loop.create_future())
        sid = uuid.uuid4().hex
        self._surveys[sid] = survey
        try:
            await self.node.engine.publish_control(_control.encode(
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
        await self.node.engine.publish_control(
            _control.encode({"op": "survey_reply", "from": self.node.id, "id": msg.id,
                             "params": answer}),
            node_id=msg.from_,
        )

    async def heartbeat_forever(self) -> None:
        while True:
            try:
                info = self.node.info()
                await self.node.engine.publish_control(
                    _control.encode({"op": "node", "from": self.node.id, "params": info})
                )
            except EngineError as exc:
                log.debug("node info not published: %s", exc)
            await asyncio.sleep(NODE_INFO_INTERVAL)

    async def _refresh_user_connections(self) -> None:
        """Re-add the counted connections (``client.user_connection_limit``) likewise."""
        counted = [c for c in list(self.node.clients.values()) if c.counted and not c.closed]
        engine = self.node.engine
        for i in range(0, len(counted), 100):
            results = await asyncio.gather(
                *(engine.add_user_connection(c.user, c.client_id, 0) for c in counted[i:i + 100]),
                return_exceptions=True,
            )
            failed = [r for r in results if isinstance(r, Exception)]
            if failed:
                log.warning("user connection refresh: %d of %d failed: %s", len(failed),
                            len(results), failed[0])
                return

    async def refresh_presence_forever(self) -> None:
        """Re-add this node's presence entries well before they expire in the engine (a node
        that dies stops refreshing, so its clients vanish within ``presence_ttl``)."""
        interval = min(max(self.node.engine.presence_ttl / 3, 0.2), 25.0)
        while True:
            await asyncio.sleep(interval)
            await self._refresh_user_connections()
            entries = [
                (sub.channel, client)
                for client in list(self.node.clients.values())
                for sub in client.session.subs.values()
                if sub.presence
            ]
            for i in range(0, len(entries), 100):
                batch = entries[i : i + 100]
                results = await asyncio.gather(
                    *(
                        self.node.engine.add_presence(
                            channel, client.client_id,
                            client.session.client_info(client.session.subs[channel].chan_info),
                        )
                        for channel, client in batch
                        if channel in client.session.subs
                    ),
                    return_exceptions=True,
                )
                failed = [r for r in results if isinstance(r, Exception)]
                if failed:
                    log.warning("presence refresh: %d of %d failed: %s", len(failed),
                                len(results), failed[0])
                    break

    async def leave(self) -> None:
        """Tell the other nodes this one is gone (shutdown), so ``info`` drops it at once."""
        with contextlib.suppress(EngineError):
            await self.node.engine.publish_control(
                _control.encode({"op": "bye", "from": self.node.id})
            )
