"""What every HTTP endpoint works with: the parsed request, response heads, origins and CORS.

Origin matching (``client.allowed_origins``) follows Centrifugo: each pattern is a glob matched
against the whole ``Origin`` value (scheme and port included), case-insensitively; ``*``
matches any characters, dots and slashes included, ``?`` one character, ``[...]`` a class.
So ``https://*.example.com`` admits ``https://a.example.com`` (and ``https://a.b.example.com``)
but not ``https://example.com``; ``https://*example.com`` would also admit
``https://evilexample.com`` (a start-up warning says so). ``["*"]`` admits every origin. A
request without ``Origin`` (not from a browser) is always admitted; with an empty list, any
request that has one is refused (403). docs/security.md has the examples.
"""

from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from tidings.transports.http import HttpProtocol

__all__ = [
    "NO_CACHE",
    "Answer",
    "Request",
    "cors_headers",
    "door",
    "origin_allowed",
    "origin_refused",
    "preflight",
    "response_head",
]

log = logging.getLogger("tidings.http")

REASONS = {
    100: "Continue", 101: "Switching Protocols", 200: "OK", 204: "No Content",
    301: "Moved Permanently",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict",
    413: "Payload Too Large", 414: "URI Too Long", 416: "Range Not Satisfiable",
    426: "Upgrade Required", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
}

NO_CACHE = [
    ("Cache-Control", "private, no-cache, no-store, must-revalidate, max-age=0"),
    ("Pragma", "no-cache"),
    ("Expires", "0"),
    ("X-Accel-Buffering", "no"),
]


@dataclass(slots=True)
class Request:
    """One parsed HTTP/1.1 request (headers lower-cased, repeated ones joined with ", ")."""

    method: str
    url: bytes
    headers: dict[str, str]
    body: bytes = b""
    keep_alive: bool = True
    # Set when the request was refused while it was read (a limit, the API key): the answer.
    refused: tuple[int, bytes] | None = None
    eager: bool = False  # served without a task when it need not wait (routes.admit decides)
    _split: tuple[str, str] | None = field(default=None, repr=False)

    def _parts(self) -> tuple[str, str]:
        if self._split is None:
            parts = urlsplit(self.url.decode("latin-1"))  # ValueError: a URL it refuses
            self._split = (parts.path, parts.query)
        return self._split

    @property
    def path(self) -> str:
        return self._parts()[0]

    def query(self) -> dict[str, list[str]]:
        return parse_qs(self._parts()[1])


def response_head(status: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def origin_refused(origin: str | None, path: str) -> None:
    """Log a request refused (403) for its Origin. WARN, where Centrifugo says INFO: a browser
    refused for its origin is nearly always a ``client.allowed_origins`` mistake, and the page
    sees only a failed connection with no reason, so the line must show at the default level
    and above; the origin is the one header value logged (cut short: the peer chose it)."""
    shown = (origin or "")[:200]
    log.warning("origin %r not allowed (client.allowed_origins): %s refused", shown,
                path[:200], extra={"origin": shown, "path": path[:200]})


def origin_allowed(origin: str | None, allowed: list[str], host: str | None = None) -> bool:
    """Whether a request with this ``Origin`` may connect: no Origin (not a browser), an
    origin matching a ``client.allowed_origins`` pattern, or, when that list is empty, an
    origin on the request's own host (``Host``): a page served from the same host and port,
    as behind a proxy that passes the Host header on (Flask-SocketIO's default)."""
    if origin is None:
        return True
    if not allowed:
        return host is not None and _same_host(origin, host)
    origin = origin.lower()
    return any(fnmatch.fnmatchcase(origin, pattern.lower()) for pattern in allowed)


_DEFAULT_PORTS = {"http": "80", "https": "443"}


def _same_host(origin: str, host: str) -> bool:
    try:
        parts = urlsplit(origin.strip().lower())
        netloc = parts.netloc
    except ValueError:
        return False
    if not netloc or parts.scheme not in _DEFAULT_PORTS:
        return False
    default = f":{_DEFAULT_PORTS[parts.scheme]}"
    host = host.strip().lower()
    return netloc.removesuffix(default) == host.removesuffix(":80").removesuffix(":443")


def cors_headers(req: Request, allowed: list[str]) -> list[tuple[str, str]] | None:
    """CORS headers for a request with an allowed Origin; None if the origin is refused."""
    origin = req.headers.get("origin")
    if origin is None:
        return []
    if not origin_allowed(origin, allowed, req.headers.get("host")):
        return None
    headers = [
        ("Access-Control-Allow-Origin", origin),
        ("Access-Control-Allow-Credentials", "true"),
        ("Vary", "Origin"),
    ]
    wanted = req.headers.get("access-control-request-headers")
    if wanted:
        headers.append(("Access-Control-Allow-Headers", wanted))
    return headers


class Answer(Exception):
    """Raised by an endpoint (or a check it calls) to answer at once: ``routes.serve``
    responds with it. ``keep_alive=False`` closes the connection after it."""

    def __init__(self, status: int, body: bytes = b"", *, keep_alive: bool = True,
                 extra: list[tuple[str, str]] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.keep_alive = keep_alive
        self.extra = extra


def door(conn: HttpProtocol) -> None:
    """May a new client connection start here? If not, Answer 503: shutting down, or
    ``client.connection_limit`` / ``client.connection_rate_limit`` reached (an empty 503, as
    Centrifugo answers; the SDKs back off and reconnect)."""
    if not conn.state.accepting:
        raise Answer(503, b"Shutting down\n", keep_alive=False)
    node = conn.node
    if not node.limits.admit(len(node.registry.opened)):
        raise Answer(503)


def preflight(conn: HttpProtocol, req: Request, allowed: tuple[str, ...]
              ) -> list[tuple[str, str]]:
    """The CORS headers for an allowed origin; Answer for OPTIONS (the preflight), a refused
    origin (403) or a method not in ``allowed`` (405)."""
    cors = cors_headers(req, conn.node.config.client.allowed_origins)
    if cors is None:
        origin_refused(req.headers.get("origin"), req.path)
        raise Answer(403, b"Origin not allowed\n")
    if req.method == "OPTIONS":
        raise Answer(204, extra=[
            *cors,
            ("Access-Control-Allow-Methods", ", ".join((*allowed, "OPTIONS"))),
            ("Access-Control-Max-Age", "300"),
        ])
    if req.method not in allowed:
        raise Answer(405, b"Method Not Allowed\n")
    return cors
