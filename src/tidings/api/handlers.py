"""The server HTTP API (PROTOCOL.md §7): ``POST /api/<method>``, ``/api`` (legacy) and batch.

Also usable in-process: ``await api.call("publish", {"channel": ..., "data": ...})`` returns
the same ``{"result": ...}`` / ``{"error": ...}`` object the HTTP endpoint would.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import msgspec

from tidings.core.actions import (
    DisconnectAction,
    RefreshAction,
    SubscribeAction,
    UnsubscribeAction,
    b64decode,
)
from tidings.core.node import Node
from tidings.engine.base import EngineError
from tidings.errors import ErrorCode, ReplyError
from tidings.protocol import codec
from tidings.protocol.channels import check_data_format
from tidings.protocol.messages import (
    EMPTY_RAW,
    ClientInfo,
    Publication,
    Raw,
    StreamPosition,
)

__all__ = ["ApiHandler"]

log = logging.getLogger("tidings.api")

_json = msgspec.json.Encoder()

T = TypeVar("T")


class _Req(msgspec.Struct, kw_only=True):
    pass


class PublishReq(_Req):
    channel: str = ""
    data: Raw = EMPTY_RAW
    b64data: str = ""
    skip_history: bool = False
    tags: dict[str, str] | None = None
    idempotency_key: str = ""
    delta: bool = False


class BroadcastReq(_Req):
    channels: list[str] = msgspec.field(default_factory=list)
    data: Raw = EMPTY_RAW
    b64data: str = ""
    skip_history: bool = False
    tags: dict[str, str] | None = None
    idempotency_key: str = ""
    delta: bool = False












class ChannelReq(_Req):
    channel: str = ""


class HistoryReq(_Req):
    channel: str = ""
    limit: int = 0
    since: StreamPosition | None = None
    reverse: bool = False


class ChannelsReq(_Req):
    pattern: str = ""


class RpcReq(_Req):
    method: str = ""
    params: Raw = EMPTY_RAW


class BatchReq(_Req):
    commands: list[dict[str, Raw]] = msgspec.field(default_factory=list)
    parallel: bool = False


class LegacyCommand(_Req):
    method: str | int = ""
    params: Raw = EMPTY_RAW
    id: int | str | None = None


_LEGACY_METHODS = (
    "publish", "broadcast", "unsubscribe", "disconnect", "presence", "presence_stats",
    "history", "history_remove", "channels", "info", "rpc", "subscribe", "refresh",
)
_TRANSPORT_STATUS = {100: 500, 102: 404, 104: 404, 107: 400, 108: 400, 112: 416, 113: 409}


def _payload(data: Raw, b64data: str) -> tuple[bytes, bool]:
    """The publication payload and whether it is binary: raw JSON, or base64 (binary when it
    does not hold JSON)."""
    raw = bytes(data)
    if not raw and b64data:
        raw = b64decode(b64data)
        if not codec.is_json(raw):
            return raw, True
    return codec.strip_newlines(raw), False


Handler = Callable[[bytes], Awaitable[Any]]


def _bad_request(exc: Exception) -> tuple[int, bytes]:
    problem = "JSON nested too deeply" if isinstance(exc, RecursionError) else str(exc)
    return 400, f"Bad Request: {problem}\n".encode()


# The server API's methods (the last path part of /api/<method>), batch included.
METHODS = frozenset({"publish", "broadcast", "subscribe", "unsubscribe", "disconnect", "refresh",
                     "presence", "presence_stats", "history", "history_remove", "channels",
                     "info", "rpc", "batch"})


class ApiHandler:
    def __init__(self, node: Node) -> None:
        self.node = node
        # One handler per method, named as the method (``batch`` is served apart).
        self._methods: dict[str, Handler] = {
            name: getattr(self, name) for name in sorted(METHODS - {"batch"})}

    # ---------------------------------------------------------------- HTTP entry points

    def authorized(self, headers: Mapping[str, str], query: Mapping[str, list[str]]) -> bool:
        key = self.node.config.http_api.key
        if not key:
            return False
        given = headers.get("x-api-key")
        if given is None:
            auth = headers.get("authorization", "")
            scheme, _, value = auth.partition(" ")
            if scheme.lower() == "apikey":
                given = value.strip()
        if given is None:
            values = query.get("api_key")
            given = values[0] if values else None
        return given is not None and hmac.compare_digest(given.encode(), key.encode())

    async def handle_http(
        self, method: str, body: bytes, *, transport_errors: bool = False
    ) -> tuple[int, bytes]:
        """Returns (HTTP status, JSON body)."""
        if not method:
            return await self._legacy(body)
        if method == "batch":
            try:
                batch = msgspec.json.decode(body or b"{}", type=BatchReq)
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
                return _bad_request(exc)
            return 200, _json.encode(await self._batch(batch))
        problem = codec.json_error(body) if body.strip() else ""
        if problem:
            return 400, f"Bad Request: {problem}\n".encode()
        handler = self._methods.get(method)
        if handler is None:
            err: ReplyError = ErrorCode.METHOD_NOT_FOUND
            self.node.counts.api_errors["http", "unknown", str(err.code)] += 1
            return self._error_response(err, transport_errors)
        try:
            result = await self._call_handler(method, handler, body or b"{}")
        except ReplyError as exc:
            return self._error_response(exc, transport_errors)
        return 200, _json.encode({"result": result})

    async def _call_handler(self, method: str, handler: Handler, body: bytes,
                            protocol: str = "http") -> Any:
        """Run one API method, timed and its errors counted (/metrics, by ``protocol``)."""
        counts = self.node.counts
        started = time.perf_counter()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("API call", extra={"method": method})
        try:
            return await handler(body)
        except EngineError as exc:
            log.warning("API call failed, engine unavailable: %s", exc,
                        extra={"method": method, "code": 100, "error": str(exc)})
            counts.api_errors[protocol, method, "100"] += 1
            raise ReplyError(100, "internal server error (engine unavailable)") from None
        except ReplyError as exc:
            log.info("API call failed", extra={"method": method, "code": exc.code,
                                               "error": exc.message})
            counts.api_errors[protocol, method, str(exc.code)] += 1
            raise
        finally:
            counts.api_call(method, time.perf_counter() - started, protocol)

    @staticmethod
    def _error_response(err: ReplyError, transport_errors: bool) -> tuple[int, bytes]:
        error = {"code": err.code, "message": err.message}
        if transport_errors:
            return _TRANSPORT_STATUS.get(err.code, 400), _json.encode(error)
        return 200, _json.encode({"error": error})

    async def call(self, method: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """In-process API call; returns ``{"result": ...}`` or ``{"error": ...}``."""
        return await self._run(method, _json.encode(params))

    async def call_json(self, method: str, params: bytes, *,
                        protocol: str = "http") -> dict[str, Any]:
        """In-process API call with the request as JSON bytes, passed on as they are (a
        publication's ``data`` keeps its exact bytes); ``protocol`` labels the metrics
        (``consuming`` for the async consumers). Returns ``{"result": ...}`` or
        ``{"error": ...}``."""
        return await self._run(method, params, protocol)

    async def _run(self, method: str, params: bytes, protocol: str = "http") -> dict[str, Any]:
        handler = self._methods.get(method)
        if handler is None:
            return {"error": {"code": 104, "message": "method not found"}}
        try:
            return {"result": await self._call_handler(method, handler, params or b"{}",
                                                       protocol)}
        except ReplyError as exc:
            return {"error": {"code": exc.code, "message": exc.message}}

    async def _batch(self, batch: BatchReq) -> dict[str, Any]:
        replies: list[dict[str, Any]] = []
        for command in batch.commands:
            if len(command) != 1:
                replies.append({"error": {"code": 107, "message": "bad request"}})
                continue
            ((method, params),) = command.items()
            out = await self._run(method, bytes(params))
            replies.append({method: out["result"]} if "result" in out else out)
        return {"replies": replies}

    async def _legacy(self, body: bytes) -> tuple[int, bytes]:
        lines = [line for line in body.split(b"\n") if line.strip()]
        try:
            commands = [msgspec.json.decode(line, type=LegacyCommand) for line in lines]
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
            return _bad_request(exc)
        out: list[bytes] = []
        for cmd in commands:
            if isinstance(cmd.method, int):
                name = _LEGACY_METHODS[cmd.method] if 0 <= cmd.method < 13 else ""
            else:
                name = cmd.method.lower()
            reply = await self._run(name, bytes(cmd.params))
            if cmd.id is not None:
                reply = {"id": cmd.id, **reply}
            out.append(_json.encode(reply))
        return 200, b"\n".join(out)

    # ---------------------------------------------------------------- methods

    @staticmethod
    def _decode(body: bytes, tp: type[T]) -> T:
        try:
            return msgspec.json.decode(body, type=tp)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ReplyError(107, f"bad request: {exc}") from None
        except RecursionError:
            raise ReplyError(107, "bad request: JSON nested too deeply") from None

    async def _publish_one(
        self, channel: str, payload: tuple[bytes, bool], req: PublishReq | BroadcastReq
    ) -> dict[str, Any]:
        data, binary = payload
        opts = self.node.rules.options(channel)
        if binary and opts.publication_data_format != "binary":
            # JSON subscribers could not read it: binary data is for binary channels.
            raise ReplyError(107, "bad request: b64data that is not JSON needs a channel with "
                                  "publication_data_format binary")
        check_data_format(opts, data)
        pub = Publication(data=Raw(data), tags=req.tags or None)
        position = await self.node.channels.publish(
            channel, pub, opts, skip_history=req.skip_history,
            idempotency_key=req.idempotency_key, delta=req.delta,
        )
        result: dict[str, Any] = {}
        if position.offset:
            result["offset"] = position.offset
        if position.epoch:
            result["epoch"] = position.epoch
        return result

    async def publish(self, body: bytes) -> dict[str, Any]:
        req = self._decode(body, PublishReq)
        if not req.channel:
            raise ErrorCode.BAD_REQUEST
        return await self._publish_one(req.channel, _payload(req.data, req.b64data), req)

    async def broadcast(self, body: bytes) -> dict[str, Any]:
        req = self._decode(body, BroadcastReq)
        if not req.channels:
            raise ErrorCode.BAD_REQUEST
        data = _payload(req.data, req.b64data)
        responses: list[dict[str, Any]] = []
        for channel in req.channels:
            try:
                responses.append({"result": await self._publish_one(channel, data, req)})
            except ReplyError as exc:
                responses.append({"error": {"code": exc.code, "message": exc.message}})
        return {"responses": responses}

    # Server-side actions reach the user's connections on every node (core.actions).

    async def subscribe(self, body: bytes) -> dict[str, Any]:
        await self.node.actions.subscribe(self._decode(body, SubscribeAction))
        return {}

    async def unsubscribe(self, body: bytes) -> dict[str, Any]:
        await self.node.actions.unsubscribe(self._decode(body, UnsubscribeAction))
        return {}

    async def disconnect(self, body: bytes) -> dict[str, Any]:
        await self.node.actions.disconnect(self._decode(body, DisconnectAction))
        return {}

    async def refresh(self, body: bytes) -> dict[str, Any]:
        await self.node.actions.refresh(self._decode(body, RefreshAction))
        return {}

    def _presence_opts(self, channel: str) -> None:
        if not channel:
            raise ErrorCode.BAD_REQUEST
        if not self.node.rules.options(channel).presence:
            raise ErrorCode.NOT_AVAILABLE

    async def presence(self, body: bytes) -> dict[str, Any]:
        req = self._decode(body, ChannelReq)
        self._presence_opts(req.channel)
        self.node.counts.actions["presence"] += 1
        presence: dict[str, ClientInfo] = await self.node.engine.presence(req.channel)
        return {"presence": presence}

    async def presence_stats(self, body: bytes) -> dict[str, Any]:
        req = self._decode(body, ChannelReq)
        self._presence_opts(req.channel)
        self.node.counts.actions["presence_stats"] += 1
        stats = await self.node.engine.presence_stats(req.channel)
        return {"num_clients": stats.num_clients, "num_users": stats.num_users}

    async def history(self, body: bytes) -> Any:
        req = self._decode(body, HistoryReq)
        if not req.channel:
            raise ErrorCode.BAD_REQUEST
        opts = self.node.rules.options(req.channel)
        if not opts.history_enabled:
            raise ErrorCode.NOT_AVAILABLE
        return await self.node.channels.history(
            req.channel, opts, limit=req.limit, since=req.since, reverse=req.reverse
        )

    async def history_remove(self, body: bytes) -> dict[str, Any]:
        req = self._decode(body, ChannelReq)
        if not req.channel:
            raise ErrorCode.BAD_REQUEST
        opts = self.node.rules.options(req.channel)
        if not opts.history_enabled:
            raise ErrorCode.NOT_AVAILABLE
        self.node.counts.actions["history_remove"] += 1
        await self.node.engine.remove_history(req.channel)
        return {}

    async def channels(self, body: bytes) -> dict[str, Any]:
        req = self._decode(body, ChannelsReq)
        result: dict[str, Any] = {}
        for answer in await self.node.cluster.survey("channels", {"pattern": req.pattern}):
            for channel, count in answer.items():
                entry = result.setdefault(channel, {"num_clients": 0})
                entry["num_clients"] += count
        return {"channels": result}

    async def info(self, body: bytes) -> dict[str, Any]:
        nodes = self.node.cluster.live_nodes()
        return {"nodes": [nodes[uid] for uid in sorted(nodes)]}

    async def rpc(self, body: bytes) -> dict[str, Any]:
        self._decode(body, RpcReq)
        raise ErrorCode.METHOD_NOT_FOUND
