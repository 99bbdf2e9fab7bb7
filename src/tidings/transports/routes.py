"""The HTTP endpoints, as a table: ``path -> Route(serve, body_limit, check)``.

``admit`` runs when a request's headers are in (before its body is read): it picks the route,
its body limit, and runs the route's ``check`` (the API key, for one), so nothing is buffered
for a request that will be refused. ``serve`` runs the endpoint once the body is in;
``upgrade`` handles ``Upgrade: websocket``. Adding an endpoint is one line in ``EXACT`` or
``PREFIXES`` plus its ``serve`` function.

Connection endpoints (WebSocket, HTTP-streaming, SSE, SockJS) pass ``door`` first:
``client.connection_limit`` and ``client.connection_rate_limit`` answer an empty 503, as
Centrifugo does, before any origin or token check.

Two listeners, as in Centrifugo: with ``http_server.internal_port``/``internal_address`` set,
the routes marked ``internal`` (metrics, health, readiness, and the API unless
``http_api.external``) are served by the internal listener only, every other route by the
public one only; elsewhere they answer 404. Without it, one listener serves every route.

The admin web interface's routes (``ADMIN``, admin/endpoints.py) exist only with
``admin.enabled``, under ``admin.handler_prefix``, looked up after every other route; any
other path under the prefix is a file of its UI.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

from tidings.admin import endpoints as admin
from tidings.api.handlers import METHODS
from tidings.config import Config
from tidings.engine.base import Engine, EngineError
from tidings.engine.memory import MemoryEngine
from tidings.errors import ProtocolError
from tidings.metrics import render as render_metrics
from tidings.protocol import pbcodec
from tidings.transports import sockjs
from tidings.transports.httpbase import NO_CACHE, Answer, Request, door, preflight
from tidings.transports.stream import StreamTransport, chunk
from tidings.transports.upgrade import upgrade as websocket_upgrade

if TYPE_CHECKING:
    from tidings.transports.http import HttpProtocol

__all__ = ["EVERY", "EXACT", "INTERNAL", "PREFIXES", "PUBLIC", "Readiness", "Route", "admit",
           "serve", "upgrade"]

log = logging.getLogger("tidings.http")

# What a listener serves (``HttpProtocol.listener``): the public routes, the internal ones, or
# both when there is one listener.
PUBLIC = 1
INTERNAL = 2
EVERY = PUBLIC | INTERNAL
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"



class EmulationRequest(msgspec.Struct):
    """``POST /emulation``: commands for the connection ``session`` of node ``node``."""

    session: str
    node: str
    data: str


@dataclass(frozen=True, slots=True)
class Route:
    serve: Callable[[HttpProtocol, Request], Awaitable[None]]
    body_limit: Callable[[Config], int] = lambda config: 0
    check: Callable[[HttpProtocol, Request], None] | None = None  # raises Answer to refuse
    internal: Callable[[Config], bool] = lambda config: False  # on the internal listener
    # Whether a request may be served without a task (transports/eager.py): never waits, or
    # enters no timeout before it does.
    eager: Callable[[HttpProtocol, str], bool] | None = None


def _internal(config: Config) -> bool:
    return True


# ---------------------------------------------------------------- entry points


def find(conn: HttpProtocol, path: str) -> Route | None:
    """The route of ``path``, if the listener ``conn`` came through serves it."""
    config = conn.node.config
    route = EXACT.get(path)
    if route is None:
        route = next((r for prefix, r in PREFIXES if path.startswith(prefix)), None)
        if (route is None and config.prometheus.enabled
                and path == config.prometheus.handler_prefix.rstrip("/")):
            route = _METRICS
        if route is None and config.admin.enabled:
            route = _admin_route(config, path)
    if route is None or (conn.listener != EVERY and not conn.listener & (
            INTERNAL if route.internal(config) else PUBLIC)):
        return None
    return route


def admit(conn: HttpProtocol, req: Request, path: str) -> int:
    """At the end of the headers: the body limit; raises Answer to refuse the request."""
    route = find(conn, path)
    if route is None:
        if req.headers.get("content-length", "0") not in ("", "0"):
            raise Answer(404, b"Not Found\n")
        return 0
    if route.check is not None:
        route.check(conn, req)
    req.eager = route.eager is not None and route.eager(conn, path)
    return route.body_limit(conn.node.config)


async def serve(conn: HttpProtocol, req: Request) -> None:
    conn.status = 0
    try:
        await _serve(conn, req)
    finally:
        if conn.node.config.prometheus.instrument_http_handlers:
            # A streaming answer writes its own head (200): status 0 here means that.
            conn.node.counts.http_requests[
                _pattern(req), req.method, conn.status or 200] += 1


def _pattern(req: Request) -> str:
    """The route a request matched, as a label of bounded cardinality ("other": none)."""
    try:
        path = req.path
    except ValueError:
        return "other"
    if path in EXACT:
        return path
    if path.startswith("/api/") and path[5:] in METHODS:
        return path
    return next((prefix for prefix, _ in PREFIXES if path.startswith(prefix)), "other")


async def _serve(conn: HttpProtocol, req: Request) -> None:
    path = ""
    try:
        path = req.path
        route = find(conn, path)
        if route is None:
            raise Answer(404, b"Not Found\n")
        await route.serve(conn, req)
    except Answer as answer:
        conn.respond(answer.status, answer.body, keep_alive=req.keep_alive and answer.keep_alive,
                     extra=answer.extra)
    except asyncio.CancelledError:
        raise
    except ValueError as exc:  # e.g. a URL urlsplit refuses
        log.info("bad request %s %r: %s", req.method, req.url[:200], exc)
        conn.respond(400, b"Bad Request\n", keep_alive=False)
    except Exception:
        log.exception("error while handling %s %s", req.method, path)
        conn.respond(500, b"Internal Server Error\n", keep_alive=False)


def upgrade(conn: HttpProtocol, req: Request, rest: bytes) -> None:
    """``Upgrade: websocket``, on the listener that serves the path (404 on the other)."""
    if find(conn, req.path) is None:
        conn.respond(404, b"Not Found\n", keep_alive=False)
        return
    websocket_upgrade(conn, req, rest)


# ---------------------------------------------------------------- endpoints


async def health(conn: HttpProtocol, req: Request) -> None:
    """Liveness: the process answers HTTP."""
    if not conn.node.config.health.enabled:
        raise Answer(404, b"Not Found\n")
    conn.respond(200, b"{}", content_type="application/json", keep_alive=req.keep_alive)


class Readiness:
    """Whether the node can serve (its engine answers), for ``GET /ready``. The engine is
    asked at most once per ``ttl`` seconds, so a load balancer polling often does not reach
    Redis each time; probes that come while it is asked share that one check (a task owned
    by ``spawn``: the node's)."""

    def __init__(self, engine: Engine,
                 spawn: Callable[[Coroutine[None, None, str]], asyncio.Task[str]], *,
                 timeout: float = 1.0, ttl: float = 1.0) -> None:
        self.engine = engine
        self.spawn = spawn
        self.timeout = timeout
        self.ttl = ttl
        self._reason = ""
        self._until = 0.0  # time.monotonic() until which _reason holds
        self._asking: asyncio.Task[str] | None = None

    async def reason(self) -> str:
        """The empty string when ready, else why not."""
        if time.monotonic() < self._until:
            return self._reason
        if self._asking is None:
            self._asking = self.spawn(self._ask())
        return await asyncio.shield(self._asking)

    async def _ask(self) -> str:
        reason = ""
        try:
            async with asyncio.timeout(self.timeout):
                await self.engine.ready()
        except EngineError as exc:
            reason = str(exc) or "engine not ready"
        except TimeoutError:
            reason = f"engine did not answer within {self.timeout:g}s"
        finally:
            self._asking = None
        self._reason, self._until = reason, time.monotonic() + self.ttl
        return reason


_ready_json = msgspec.json.Encoder()


async def ready(conn: HttpProtocol, req: Request) -> None:
    """Readiness (a Tidings addition; Centrifugo has /health only): 200 when the engine
    answers, 503 with the reason when it does not or the server is shutting down."""
    if not conn.node.config.health.enabled:
        raise Answer(404, b"Not Found\n")
    reason = await conn.state.readiness.reason() if conn.state.accepting else "shutting down"
    status, body = ((503, {"ready": False, "reason": reason}) if reason
                    else (200, {"ready": True}))
    conn.respond(status, _ready_json.encode(body), content_type="application/json",
                 keep_alive=req.keep_alive)


async def metrics(conn: HttpProtocol, req: Request) -> None:
    """``prometheus.handler_prefix`` (``/metrics``) with ``prometheus.enabled``."""
    conn.respond(200, render_metrics(conn.node), content_type=METRICS_TYPE,
                 keep_alive=req.keep_alive)


def api_check(conn: HttpProtocol, req: Request) -> None:
    """Before the body is read: the API must be on, the method POST, the key right."""
    cfg = conn.node.config.http_api
    if cfg.disabled:
        raise Answer(404, b"Not Found\n")
    if req.method != "POST":
        raise Answer(405, b"Method Not Allowed\n")
    # The query is parsed only when no header names a key (a given X-API-Key decides).
    query = _NO_QUERY if "x-api-key" in req.headers else req.query()
    if not cfg.insecure and not conn.state.api.authorized(req.headers, query):
        raise Answer(401)


_NO_QUERY: dict[str, list[str]] = {}
_EAGER_API = frozenset({"/api/publish", "/api/broadcast"})


def api_eager(conn: HttpProtocol, path: str) -> bool:
    """A publish or broadcast on the memory engine never waits: served without a task."""
    return path in _EAGER_API and isinstance(conn.node.engine, MemoryEngine)


async def api(conn: HttpProtocol, req: Request) -> None:
    path = req.path
    name = path[len("/api/"):] if path.startswith("/api/") else ""
    transport_mode = (
        conn.node.config.http_api.error_mode == "transport"
        or req.headers.get("x-centrifugo-error-mode", "").lower() == "transport"
    )
    status, payload = await conn.state.api.handle_http(name, req.body,
                                                       transport_errors=transport_mode)
    conn.respond(status, payload, content_type="application/json", keep_alive=req.keep_alive)


def stream(name: str) -> Callable[[HttpProtocol, Request], Awaitable[None]]:
    async def serve_stream(conn: HttpProtocol, req: Request) -> None:
        open_stream(conn, req, name)
    return serve_stream


def open_stream(conn: HttpProtocol, req: Request, name: str) -> None:
    """Open an HTTP-streaming or SSE connection (bidirectional emulation or uni)."""
    cfg = getattr(conn.node.config, name)
    if not cfg.enabled:
        raise Answer(404, b"Not Found\n")
    door(conn)
    sse = name.endswith("sse")
    cors = preflight(conn, req, ("GET", "POST") if sse else ("POST",))
    body = _connect_request(req, name, cfg.max_request_body_size)
    if req.headers.get("content-type", "").startswith("application/octet-stream"):
        if name != "http_stream" or not pbcodec.available():
            raise Answer(501, b"Protobuf is served on websocket and http_stream (with the "
                              b"protobuf extra)\n")
        name = "http_stream_protobuf"
    transport = conn.transport
    assert transport is not None
    content_type = (
        "text/event-stream; charset=utf-8" if sse
        else "application/octet-stream" if name.endswith("_protobuf")
        else "application/json"
    )
    lines = ["HTTP/1.1 200 OK", f"Content-Type: {content_type}",
             "Transfer-Encoding: chunked", "Connection: close"]  # never reused after it
    lines += [f"{k}: {v}" for k, v in (*NO_CACHE, *cors)]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    transport.write(head + (chunk(b"\r\n") if sse else b""))
    conn.take_over()
    conn.stream = StreamTransport(conn.node, transport, name, req.headers)
    if body.strip() or name.startswith("uni"):
        conn.stream.client.feed(body)


def _connect_request(req: Request, name: str, limit: int) -> bytes:
    """The stream's opening message: the POST body, or ``cf_connect`` of a GET (SSE)."""
    if req.method != "GET":
        return req.body
    values = req.query().get("cf_connect")
    if not values and not name.startswith("uni"):
        raise Answer(400, b"cf_connect query parameter expected\n")
    body = values[0].encode() if values else b""
    if len(body) > limit:
        raise Answer(413, b"Payload Too Large\n", keep_alive=False)
    return body


def _emulation_body(config: Config) -> int:
    return config.emulation.max_request_body_size


async def emulation(conn: HttpProtocol, req: Request) -> None:
    """``POST /emulation``: commands for an HTTP-streaming/SSE connection, on this node or
    (through the engine) on the node that holds it."""
    config = conn.node.config
    if not (config.http_stream.enabled or config.sse.enabled):
        raise Answer(404, b"Not Found\n")
    cors = preflight(conn, req, ("POST",))
    try:
        session, node_id, commands = _emulation_request(req)
    except (msgspec.DecodeError, msgspec.ValidationError, ProtocolError, RecursionError) as exc:
        log.info("malformed emulation request: %r", exc)
        raise Answer(400, f"malformed emulation request: {exc!r}\n".encode(),
                     extra=cors) from None
    status = await conn.node.actions.emulate(session, node_id, commands)
    bodies = {404: b"unknown session or node\n", 429: b"too many commands waiting\n",
              503: b"engine unavailable\n"}
    conn.respond(status, bodies.get(status, b""), keep_alive=req.keep_alive, extra=cors)


def _emulation_request(req: Request) -> tuple[str, str, bytes]:
    if not req.headers.get("content-type", "").startswith("application/octet-stream"):
        decoded = msgspec.json.decode(req.body, type=EmulationRequest)
        return decoded.session, decoded.node, decoded.data.encode()
    if not pbcodec.available():
        raise Answer(501, b"Protobuf needs the protobuf extra\n")
    return pbcodec.decode_emulation_request(req.body)


async def upgrade_required(conn: HttpProtocol, req: Request) -> None:
    raise Answer(426, b"WebSocket upgrade expected\n", extra=[("Upgrade", "websocket")])


# ---------------------------------------------------------------- the table


def _api_body(config: Config) -> int:
    return config.http_api.max_body_size


def _stream_body(name: str) -> Callable[[Config], int]:
    return lambda config: int(getattr(config, name).max_request_body_size)


def _api_internal(config: Config) -> bool:
    return not config.http_api.external


_API = Route(api, _api_body, api_check, internal=_api_internal, eager=api_eager)
_METRICS = Route(metrics, internal=_internal)  # at prometheus.handler_prefix (``find``)

EXACT: dict[str, Route] = {
    "/health": Route(health, internal=_internal),
    "/ready": Route(ready, internal=_internal),
    "/api": _API,
    "/emulation": Route(emulation, _emulation_body),
    "/connection/websocket": Route(upgrade_required),
    "/connection/uni_websocket": Route(upgrade_required),
    **{f"/connection/{name}": Route(stream(name), _stream_body(name))
       for name in ("http_stream", "sse", "uni_http_stream", "uni_sse")},
}
PREFIXES: tuple[tuple[str, Route], ...] = (
    ("/api/", _API),
    ("/connection/sockjs/", Route(sockjs.endpoint, _stream_body("sockjs"))),
)


def _admin_internal(config: Config) -> bool:
    return not config.admin.external


# The admin web interface (admin.enabled), under admin.handler_prefix; every other path under
# it is a file of the UI (admin/endpoints.py). Found after the routes above: they win.
ADMIN: dict[str, Route] = {
    "/admin/init": Route(admin.init, internal=_admin_internal),
    "/admin/auth": Route(admin.auth, admin.auth_body, admin.auth_check,
                         internal=_admin_internal),
    "/admin/api": Route(admin.api, _api_body, admin.token_check("POST"),
                        internal=_admin_internal),
    "/admin/tail": Route(admin.tail, check=admin.token_check("GET"), internal=_admin_internal),
}
_ADMIN_FILES = Route(admin.static, check=admin.static_check, internal=_admin_internal)


def _admin_route(config: Config, path: str) -> Route | None:
    rest = admin.subpath(config.admin, path)
    return None if rest is None else ADMIN.get(rest, _ADMIN_FILES)
