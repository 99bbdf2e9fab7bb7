"""Server-side actions, cluster-wide: subscribe, unsubscribe, disconnect and refresh a user's
(or one client's) connections wherever they are, and route ``/emulation`` commands to the node
that holds the session.

An action is applied to this node's clients at once, then published through the engine for
every other node to apply to its own (``Cluster.control``); with the memory engine the node is
its own cluster. The HTTP API and, later, other callers (an embedding application, the admin UI)
use this module; none of them touches clients directly.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any, Protocol, TypeVar

import msgspec

from tidings.core.cluster import Cluster
from tidings.core.peer import Peer
from tidings.core.registry import Registry
from tidings.core.timers import Timers
from tidings.engine.base import EngineError
from tidings.errors import Disconnect, ErrorCode, ReplyError, Unsubscribe
from tidings.protocol.channels import ChannelRules
from tidings.protocol.messages import EMPTY_RAW, Raw, StreamPosition, SubscribeRequest
from tidings.protocol.session import SubscribeDecision

__all__ = [
    "Actions",
    "ActionsHost",
    "DisconnectAction",
    "RefreshAction",
    "SubscribeAction",
    "UnsubscribeAction",
    "b64decode",
]

log = logging.getLogger("tidings.actions")


class _Action(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Whose connections: every one of ``user``'s, or the one with ``client``."""

    user: str = ""
    client: str = ""
    session: str = ""

    def check(self) -> None:
        if not self.user and not self.client:
            raise ErrorCode.BAD_REQUEST


class SubscribeAction(_Action):
    channel: str = ""
    info: Raw = EMPTY_RAW
    b64info: str = ""
    data: Raw = EMPTY_RAW
    b64data: str = ""
    recover_since: StreamPosition | None = None
    expire_at: int = 0

    def check(self) -> None:
        super().check()
        if not self.channel:
            raise ErrorCode.BAD_REQUEST
        b64decode(self.b64info)
        b64decode(self.b64data)


class UnsubscribeAction(_Action):
    channel: str = ""

    def check(self) -> None:
        super().check()
        if not self.channel:
            raise ErrorCode.BAD_REQUEST


class DisconnectObj(msgspec.Struct, kw_only=True):
    code: int = 0
    reason: str = ""


class DisconnectAction(_Action):
    whitelist: list[str] = msgspec.field(default_factory=list)
    disconnect: DisconnectObj | None = None


class RefreshAction(_Action):
    expired: bool = False
    expire_at: int = 0


_json = msgspec.json.Encoder()
A = TypeVar("A", bound="_Action")


def _decode(params: dict[str, Any], kind: type[A]) -> A:
    return msgspec.json.decode(_json.encode(params), type=kind)


def b64decode(text: str) -> bytes:
    """Base64 from an API request (``b64data``, ``b64info``); b"" for none, 107 if invalid."""
    if not text:
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ErrorCode.BAD_REQUEST from None


class ActionsHost(Protocol):
    """What the actions need from their node."""

    id: str
    rules: ChannelRules
    registry: Registry
    timers: Timers
    cluster: Cluster


class Actions:
    def __init__(self, node: ActionsHost) -> None:
        self.node = node
        cluster = node.cluster
        cluster.control_handlers.update({
            "subscribe": self._apply_subscribe,
            "unsubscribe": self._apply_unsubscribe,
            "disconnect": self._apply_disconnect,
            "refresh": self._apply_refresh,
        })
        cluster.direct_handlers["emulation"] = self._apply_emulation

    # ---------------------------------------------------------------- cluster-wide

    async def subscribe(self, action: SubscribeAction) -> None:
        """Subscribe the connections server-side (a ``subscribe`` push, no reply)."""
        action.check()
        self.node.rules.options(action.channel)  # 102/107 before anything is sent
        await self._everywhere("subscribe", action)

    async def unsubscribe(self, action: UnsubscribeAction) -> None:
        action.check()
        await self._everywhere("unsubscribe", action)

    async def disconnect(self, action: DisconnectAction) -> None:
        action.check()
        await self._everywhere("disconnect", action)

    async def refresh(self, action: RefreshAction) -> None:
        action.check()
        await self._everywhere("refresh", action)

    async def _everywhere(self, op: str, action: _Action) -> None:
        # Through JSON: the params travel in a control message, and Raw values stay JSON.
        params: dict[str, Any] = msgspec.json.decode(_json.encode(action))
        await self.node.cluster.control(op, params)

    # ---------------------------------------------------------------- on this node

    def _find(self, action: _Action) -> list[Peer]:
        return self.node.registry.find(action.user, action.client)

    async def _apply_subscribe(self, params: dict[str, Any]) -> None:
        action = _decode(params, SubscribeAction)
        opts = self.node.rules.options(action.channel)
        info = bytes(action.info) or b64decode(action.b64info)
        data = bytes(action.data) or b64decode(action.b64data)
        since = action.recover_since
        request = SubscribeRequest(channel=action.channel)
        if since is not None:
            request = SubscribeRequest(channel=action.channel, recover=True,
                                       offset=since.offset, epoch=since.epoch)
        for client in self._find(action):
            sub = client.session.grant(action.channel, opts, request, {}, server_side=True)
            sub.chan_info = info or None
            sub.expires_at = action.expire_at
            decision = SubscribeDecision(
                sub=sub, recover=request.recover and sub.recoverable,
                offset=request.offset, epoch=request.epoch, data=data or None,
            )
            try:
                await client.server_subscribe(decision)
            except (ReplyError, EngineError) as exc:
                log.info("API subscribe of client %s to %s failed: %s", client.client_id,
                         action.channel, exc)

    async def _apply_unsubscribe(self, params: dict[str, Any]) -> None:
        action = _decode(params, UnsubscribeAction)
        for client in self._find(action):
            await client.unsubscribe(action.channel, Unsubscribe.SERVER)

    async def _apply_disconnect(self, params: dict[str, Any]) -> None:
        action = _decode(params, DisconnectAction)
        disconnect = Disconnect.FORCE_DISCONNECT
        if action.disconnect is not None and action.disconnect.code:
            disconnect = Disconnect(action.disconnect.code, action.disconnect.reason)
        keep = set(action.whitelist)
        for client in self._find(action):
            if client.client_id not in keep:
                client.close(disconnect)

    async def _apply_refresh(self, params: dict[str, Any]) -> None:
        action = _decode(params, RefreshAction)
        for client in self._find(action):
            if action.expired:
                client.close(Disconnect.EXPIRED)
            elif action.expire_at:
                client.session.expires_at = action.expire_at
                self.node.timers.schedule_expiry(client, action.expire_at)
            else:
                client.session.expires_at = 0

    # ---------------------------------------------------------------- emulation routing

    async def emulate(self, session: str, node_id: str, commands: bytes) -> int:
        """Commands for the HTTP-streaming/SSE connection ``session`` of node ``node_id``:
        fed here, or forwarded to that node through the engine. Returns the HTTP status for
        the poster (204; 404 unknown session or node; 429 too much waiting; 503 no engine)."""
        node = self.node
        if node_id == node.id:
            return node.registry.emulation(session, commands)
        if not node.cluster.is_live(node_id):
            return 404
        try:
            await node.cluster.send(node_id, "emulation", {
                "session": session, "b64data": base64.b64encode(commands).decode(),
            })
        except EngineError as exc:
            log.warning("emulation request for node %s not forwarded: %s", node_id, exc)
            return 503
        return 204

    def _apply_emulation(self, params: dict[str, Any]) -> None:
        session, commands = params.get("session"), params.get("b64data")
        if not isinstance(session, str) or not isinstance(commands, str):
            return
        try:
            data = base64.b64decode(commands, validate=True)
        except (binascii.Error, ValueError):
            return
        status = self.node.registry.emulation(session, data)
        if status != 204:  # the poster got 204 from the node that forwarded it
            log.info("forwarded emulation request for session %s: %d", session[:8], status)
