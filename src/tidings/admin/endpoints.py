"""The admin web interface's HTTP endpoints (ADMIN.md §3), under ``admin.handler_prefix``
(``<p>``) and only with ``admin.enabled`` (404 otherwise, ``transports/routes.py``):

- ``<p>/admin/init`` (any method): ``{"authenticated", "edition", "insecure"}``;
- ``POST <p>/admin/auth``: the form field ``password`` (urlencoded, multipart or a JSON
  object) for ``{"token": ...}``; 400 for a wrong one, 429 (``Retry-After``) while the
  address is throttled (``auth.Throttle``);
- ``POST <p>/admin/api``: the server API in the legacy one-command-per-line format, plus
  ``connections`` (the inspector: every node's connections of a user);
- ``GET <p>/admin/tail?channel=``: the live tail (``tail.py``);
- ``GET <p>/...``: the UI's files (``assets.py``), without a token.

Every endpoint but init, auth and the files needs ``Authorization: token <TOKEN>`` (401,
empty, otherwise; ``admin.insecure`` lifts that). The server API key is not accepted here, and
an admin token is not accepted by the server API (``ApiHandler.authorized`` reads only its
key).
"""

from __future__ import annotations

import email
import email.policy
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import msgspec

from tidings.admin.assets import CSP, SECURITY_HEADERS, Assets
from tidings.admin.auth import Throttle, make_token, password_matches, token_valid
from tidings.admin.tail import Tail, serve_tail
from tidings.config import Config
from tidings.config.adminschema import AdminConfig, prefix_of
from tidings.core import conninfo
from tidings.engine.base import EngineError
from tidings.transports.httpbase import Answer, Request

if TYPE_CHECKING:
    from tidings.api.handlers import ApiHandler
    from tidings.core.node import Node
    from tidings.transports.http import HttpProtocol

__all__ = ["AdminState", "api", "auth", "auth_body", "auth_check", "init", "static",
           "static_check", "subpath", "tail", "token_check"]

log = logging.getLogger("tidings.admin")

AUTH_BODY = 64 * 1024
_json = msgspec.json.Encoder()
_NO_STORE = [("Cache-Control", "no-store"), *SECURITY_HEADERS]


class AdminState:
    """What the admin endpoints of one server share: the login throttle, the open tails,
    the UI's files."""

    def __init__(self, node: Node, api: ApiHandler) -> None:
        self.node = node
        self.api = api
        self.config: AdminConfig = node.config.admin
        self.throttle = Throttle()
        self.tails: set[Tail] = set()
        self.assets = Assets(self.config.web_path)


def subpath(config: AdminConfig, path: str) -> str | None:
    """``path`` under the handler prefix (``/admin/api``, ``/app.js``; ``""`` for the prefix
    itself), or None when it is not under it."""
    prefix = prefix_of(config)
    if not prefix:
        return path
    if path == prefix:
        return ""
    return path[len(prefix):] if path.startswith(prefix + "/") else None


def _admin(conn: HttpProtocol) -> AdminState:
    state: AdminState = conn.state.admin
    return state


def _authorized(config: AdminConfig, req: Request) -> bool:
    if config.insecure:
        return True
    parts = req.headers.get("authorization", "").split()
    return (len(parts) == 2 and parts[0].lower() == "token"
            and token_valid(parts[1], config.secret))


def _address(conn: HttpProtocol) -> str:
    peer = conn.transport.get_extra_info("peername") if conn.transport is not None else None
    return str(peer[0]) if isinstance(peer, tuple) and peer else ""


def _respond_json(conn: HttpProtocol, req: Request, body: Any, status: int = 200) -> None:
    conn.respond(status, _json.encode(body), content_type="application/json",
                 keep_alive=req.keep_alive, extra=_NO_STORE)


# ---------------------------------------------------------------- checks (before the body)


def token_check(method: str) -> Callable[[HttpProtocol, Request], None]:
    """A route check: the admin token (401 without a valid one), then the method (405)."""

    def check(conn: HttpProtocol, req: Request) -> None:
        if not _authorized(conn.node.config.admin, req):
            raise Answer(401, extra=_NO_STORE)
        if req.method != method:
            raise Answer(405, b"Method Not Allowed\n")

    return check


def auth_check(conn: HttpProtocol, req: Request) -> None:
    if req.method != "POST":
        raise Answer(405, b"Method Not Allowed\n")


def static_check(conn: HttpProtocol, req: Request) -> None:
    if req.method != "GET":
        raise Answer(405, b"Method Not Allowed\n")


def auth_body(config: Config) -> int:
    return AUTH_BODY


# ---------------------------------------------------------------- endpoints


async def init(conn: HttpProtocol, req: Request) -> None:
    config = conn.node.config.admin
    _respond_json(conn, req, {"authenticated": _authorized(config, req), "edition": "oss",
                              "insecure": config.insecure})


def _password(req: Request) -> str:
    """The ``password`` form field: urlencoded, multipart (what Centrifugo's UI sends) or a
    JSON object."""
    ctype = req.headers.get("content-type", "")
    body = req.body
    try:
        if ctype.startswith("multipart/form-data"):
            msg = email.message_from_bytes(b"Content-Type: " + ctype.encode("latin-1")
                                           + b"\r\n\r\n" + body, policy=email.policy.HTTP)
            for part in msg.iter_parts():
                if part.get_param("name", header="content-disposition") == "password":
                    return str(part.get_content())
            return ""
        if ctype.startswith("application/json"):
            value = json.loads(body).get("password", "")
            return value if isinstance(value, str) else ""
    except (ValueError, AttributeError, LookupError, RecursionError):
        return ""
    values = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).get("password")
    return values[0] if values else ""


async def auth(conn: HttpProtocol, req: Request) -> None:
    """The password for a token (ADMIN.md §3.2); wrong ones counted by the throttle."""
    config = conn.node.config.admin
    address = _address(conn)
    wait = _admin(conn).throttle.wait(address)
    if wait > 0:  # (not in auth_check: an answer refused there has no headers of its own)
        seconds = str(int(wait) + 1)
        raise Answer(429, f"too many wrong passwords: retry in {seconds} s\n".encode(),
                     extra=[("Retry-After", seconds), *_NO_STORE])
    if not config.password or not config.secret:
        raise Answer(400, b"admin.password and admin.secret are not set\n")
    if not password_matches(_password(req), config.password):
        _admin(conn).throttle.failed(address)
        log.warning("admin login refused: wrong password from %s", address,
                    extra={"address": address})
        raise Answer(400, b"wrong password\n", extra=_NO_STORE)
    _admin(conn).throttle.succeeded(address)
    log.info("admin login from %s", address, extra={"address": address})
    _respond_json(conn, req, {"token": make_token(config.secret)})


class _Command(msgspec.Struct):
    method: str | int = ""
    params: msgspec.Raw = msgspec.Raw(b"{}")
    id: int | str | None = None


class ConnectionsRequest(msgspec.Struct, forbid_unknown_fields=True):
    user: str = ""
    client: str = ""
    limit: int = conninfo.DEFAULT_LIMIT


async def api(conn: HttpProtocol, req: Request) -> None:
    """The server API, legacy format (one command a line, one reply a line), plus
    ``connections``."""
    admin = _admin(conn)
    lines = [line for line in req.body.split(b"\n") if line.strip()]
    if not lines:
        raise Answer(400, b"Bad Request: no command\n")
    replies: list[bytes] = []
    for line in lines:
        try:
            cmd = msgspec.json.decode(line, type=_Command)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
            raise Answer(400, f"Bad Request: {exc}\n".encode()) from None
        if cmd.method in ("connections", 14):
            reply = await connections(admin.node, bytes(cmd.params))
            replies.append(_json.encode(reply if cmd.id is None else {"id": cmd.id, **reply}))
            continue
        status, payload = await admin.api.handle_http("", line)
        if status != 200:
            raise Answer(status, payload)
        replies.append(payload)
    conn.respond(200, b"\n".join(replies), content_type="application/json",
                 keep_alive=req.keep_alive, extra=_NO_STORE)


async def connections(node: Node, params: bytes) -> dict[str, Any]:
    """Every node's connections of ``user`` (or one ``client``; all when neither), newest
    first, at most ``limit``; ``total`` counts every match."""
    try:
        req = msgspec.json.decode(params or b"{}", type=ConnectionsRequest)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        return {"error": {"code": 107, "message": f"bad request: {exc}"}}
    limit = conninfo.limit_of({"limit": req.limit})
    try:
        answers = await node.cluster.survey(
            "connections", {"user": req.user, "client": req.client, "limit": limit})
    except EngineError:
        return {"error": {"code": 100, "message": "internal server error (engine unavailable)"}}
    found = [c for answer in answers if isinstance(answer, dict)
             for c in answer.get("connections", ())]
    found.sort(key=lambda c: -float(c.get("connected_at", 0)))
    total = sum(int(a.get("total", 0)) for a in answers if isinstance(a, dict))
    return {"result": {"connections": found[:limit], "total": total}}


async def tail(conn: HttpProtocol, req: Request) -> None:
    await serve_tail(conn, req, _admin(conn).tails)


async def static(conn: HttpProtocol, req: Request) -> None:
    """The UI's files; ``<p>`` itself redirects to ``<p>/`` (the UI finds its API relative to
    its own address)."""
    config = conn.node.config.admin
    rest = subpath(config, req.path)
    if rest == "":
        raise Answer(301, extra=[("Location", prefix_of(config) + "/")])
    admin = _admin(conn)
    asset = admin.assets.find(rest or "/")
    if asset is None:
        raise Answer(404, b"Not Found\n")
    extra = [("Cache-Control", "no-cache"), *SECURITY_HEADERS]
    if admin.assets.builtin and asset.content_type.startswith("text/html"):
        extra.append(("Content-Security-Policy", CSP))
    conn.respond(200, asset.body, content_type=asset.content_type, keep_alive=req.keep_alive,
                 extra=extra)

