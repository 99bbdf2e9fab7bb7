"""Django views: the connection and subscription token endpoints centrifuge-js' ``getToken``
calls, and the connect hook that logs a WebSocket in with the Django session cookie.

Token views read ``request.user`` (``AuthenticationMiddleware``); they change nothing, so
they answer GET and, CSRF-exempt, POST (a cross-site page cannot read the answer).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user
from django.http import HttpRequest, HttpResponseNotAllowed, JsonResponse, parse_cookie
from django.urls import NoReverseMatch, reverse
from django.utils.module_loading import import_string
from django.views.decorators.csrf import csrf_exempt

from tidings.contrib.django import position, realtime
from tidings.hooks import ConnectRequest, ConnectResult, HookDisconnect
from tidings.hooks.django import view

__all__ = [
    "connect_hook",
    "connect_view",
    "named_url",
    "page_context",
    "session_user",
    "subscription_token_view",
    "token_view",
    "user_id",
]

UNAUTHORIZED = (4501, "unauthorized")  # a disconnect without reconnect (4500-4999)


def user_id(user: Any) -> str | None:
    """The user as Tidings knows it: the primary key, None for an anonymous visitor."""
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return str(user.pk)


def _setting(name: str) -> Callable[..., Any] | None:
    path = realtime().settings.extra.get(name)
    if not path:
        return None
    fn: Callable[..., Any] = import_string(path) if isinstance(path, str) else path
    return fn


def _answer(status: int, body: dict[str, Any]) -> JsonResponse:
    response = JsonResponse(body, status=status)
    response["Cache-Control"] = "no-store"
    return response


def _token_view(request: HttpRequest) -> JsonResponse | HttpResponseNotAllowed:
    """``{"token": ...}``, a connection token for ``request.user``; 401 when not logged in
    (unless ``ALLOW_ANONYMOUS``)."""
    if request.method not in ("GET", "POST"):
        return HttpResponseNotAllowed(["GET", "POST"])
    rt = realtime()
    user = user_id(request.user)
    if user is None:
        return _answer(*rt.token_answer(None))
    info_of = _setting("user_info")
    info = info_of(request.user) if info_of is not None else None
    return _answer(200, {"token": rt.tokens.connection(user, info=info)})


def _channel(request: HttpRequest) -> str:
    if request.method == "POST" and request.content_type == "application/json":
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return ""
        channel = body.get("channel", "") if isinstance(body, dict) else ""
        return channel if isinstance(channel, str) else ""
    return str(request.POST.get("channel", "") or request.GET.get("channel", ""))


def _subscription_token_view(request: HttpRequest) -> JsonResponse | HttpResponseNotAllowed:
    """``{"token": ...}``, a subscription token for the ``channel`` (query, form or JSON
    body) when ``CAN_SUBSCRIBE(user, channel)`` says yes; 403 otherwise."""
    if request.method not in ("GET", "POST"):
        return HttpResponseNotAllowed(["GET", "POST"])
    channel = _channel(request)
    user = user_id(request.user)
    can_subscribe = _setting("can_subscribe")
    allowed = bool(channel) and can_subscribe is not None and bool(
        can_subscribe(request.user, channel))
    return _answer(*realtime().subscription_token_answer(user, channel, allowed))


View = Callable[[HttpRequest], Any]
token_view: View = csrf_exempt(_token_view)
subscription_token_view: View = csrf_exempt(_subscription_token_view)


def session_user(cookie_header: str) -> Any:
    """The logged-in user of the Django session a Cookie header carries (the session's auth
    hash checked, as for a request), or None."""
    cookies = parse_cookie(cookie_header)
    key = cookies.get(settings.SESSION_COOKIE_NAME)
    if not key:
        return None
    request = HttpRequest()
    request.COOKIES = cookies
    request.session = import_module(settings.SESSION_ENGINE).SessionStore(session_key=key)
    user = get_user(request)
    return user if user_id(user) is not None else None


def connect_hook(req: ConnectRequest) -> ConnectResult:
    """Tidings' connect hook: the user of the session cookie Tidings forwarded
    (``http_headers: ["Cookie"]``), or disconnect 4501."""
    user = session_user(req.headers.get("cookie", ""))
    if user is None:
        raise HookDisconnect(*UNAUTHORIZED)
    info_of = _setting("user_info")
    return ConnectResult(user=str(user.pk),
                         info=info_of(user) if info_of is not None else None)


connect_view = view(connect_hook)
"""The connect hook as a view: the endpoint of ``client.proxy.connect``."""


def named_url(name: str) -> str:
    """The path of a named URL, "" when the URLconf does not have it."""
    try:
        return str(reverse(name))
    except NoReverseMatch:
        return ""


def page_context(channel: str, *, subscription_token: bool = False) -> dict[str, Any]:
    """What the page's script needs to subscribe to ``channel`` without a gap: the
    connection URL, the token endpoint (and, with ``subscription_token``, the subscription
    token endpoint the script then subscribes with), and the stream position **read now**
    (call it before reading the page's data)."""
    sub_url = named_url("tidings:subscription-token") if subscription_token else ""
    return realtime().page(channel, position(channel), token_url=named_url("tidings:token"),
                           subscription_token_url=sub_url)
