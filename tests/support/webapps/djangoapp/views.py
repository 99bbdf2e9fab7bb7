"""The Django backend: a login form that puts the user in the session, and hooks that
authenticate a WebSocket from that session's cookie and authorize each ``docs:<id>`` channel by
who owns the document."""

from __future__ import annotations

from django.conf import settings
from django.contrib.sessions.backends.signed_cookies import SessionStore
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseNotAllowed,
    parse_cookie,
)

from tidings.hooks import (
    ConnectRequest,
    ConnectResult,
    HookDisconnect,
    HookError,
    SubscribeRequest,
    SubscribeResult,
)

# Which user owns which document (channel ``docs:<id>``).
DOC_OWNERS = {"1": "alice", "2": "bob"}


def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"ok", content_type="text/plain")


def login(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    username = request.POST.get("username", "")
    if not username:
        return HttpResponseBadRequest(b"username missing")
    request.session["user"] = username
    return HttpResponse(b"ok", content_type="text/plain")


def session_user(cookie_header: str) -> str:
    """The user of the Django session in a Cookie header; "" without a valid session (a
    signed cookie that does not verify loads as an empty session)."""
    key = parse_cookie(cookie_header).get(settings.SESSION_COOKIE_NAME, "")
    if not key:
        return ""
    user = SessionStore(session_key=key).get("user", "")
    return user if isinstance(user, str) else ""


def connect(req: ConnectRequest) -> ConnectResult:
    user = session_user(req.headers.get("cookie", ""))
    if not user:
        raise HookDisconnect(4501, "unauthorized")
    return ConnectResult(user=user, info={"name": user.title()})


def subscribe(req: SubscribeRequest) -> SubscribeResult:
    doc = req.channel.removeprefix("docs:")
    if not req.user or DOC_OWNERS.get(doc) != req.user:
        raise HookError(403, "permission denied")
    return SubscribeResult(info={"doc": doc})
