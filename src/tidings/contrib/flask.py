"""Flask: the ``Tidings`` extension (docs/flask.md).

::

    app.config["TIDINGS"] = {"API_URL": "http://127.0.0.1:8000/api", "API_KEY": "...",
                             "TOKEN_HMAC_SECRET_KEY": "..."}
    tidings = Tidings(app)                 # or Tidings() + tidings.init_app(app)

    @tidings.user_loader                   # who is logged in (None: nobody)
    def current_user_id():
        return session.get("user_id")

    with Session.begin() as db:            # SQLAlchemy
        db.add(comment)
        tidings.publish_on_commit("comments", {"text": comment.text}, session=db)

It registers the ``tidings`` blueprint (``/tidings/token``, ``/tidings/subscription-token``,
``/tidings/connect``: the connect hook, logging a WebSocket in with the Flask session cookie)
and the Jinja global ``tidings_subscribe(channel)``: what the page's script needs to subscribe
without a gap (call it before the page's data is read; docs/flask.md).

Flask has no transaction of its own: ``publish_on_commit`` follows a SQLAlchemy session (the
publication goes out after its commit, never after a rollback); with another database layer,
call ``publish`` after your commit.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from tidings.contrib.common import Realtime
from tidings.embed import BackgroundServer
from tidings.hooks import ConnectRequest, ConnectResult, HookDisconnect
from tidings.hooks.flask import view
from tidings.results import ApiError, PublishResult, StreamPosition

__all__ = ["Tidings"]

log = logging.getLogger("tidings.contrib.flask")
UserLoader = Callable[[], Any]
Check = Callable[[Any, str], bool]
PENDING = "tidings.pending"  # the publications a SQLAlchemy session holds until its commit


class Tidings:
    """The extension (module docstring). ``user_loader``: returns the logged-in user's ID
    (None: nobody); ``can_subscribe(user_id, channel)``: the subscription token view's
    permission check (unset: every channel refused); ``user_info(user_id)``: the ``info`` of
    connection tokens; ``server``: a ``tidings.BackgroundServer`` the app runs itself."""

    def __init__(self, app: Flask | None = None, *, user_loader: UserLoader | None = None,
                 can_subscribe: Check | None = None,
                 user_info: Callable[[Any], Any] | None = None,
                 server: BackgroundServer | None = None, url_prefix: str = "/tidings") -> None:
        self._user_loader = user_loader
        self._can_subscribe = can_subscribe
        self._user_info = user_info
        self.server = server
        self.url_prefix = url_prefix
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Read ``app.config["TIDINGS"]``; register the blueprint and the Jinja global."""
        app.extensions["tidings"] = Realtime(app.config.get("TIDINGS", {}), server=self.server,
                                             where='app.config["TIDINGS"]')
        app.register_blueprint(self._blueprint(), url_prefix=self.url_prefix)
        app.jinja_env.globals["tidings_subscribe"] = self.subscribe_context

    def user_loader(self, fn: UserLoader) -> UserLoader:
        """Decorator: the function returning the logged-in user's ID, or None."""
        self._user_loader = fn
        return fn

    def subscription_check(self, fn: Check) -> Check:
        """Decorator: ``fn(user_id, channel) -> bool`` allows subscription tokens."""
        self._can_subscribe = fn
        return fn

    @property
    def realtime(self) -> Realtime:
        """The current app's :class:`~tidings.contrib.common.Realtime`."""
        realtime: Realtime = current_app.extensions["tidings"]
        return realtime

    # ------------------------------------------------------------------ publishing

    def publish(self, channel: str, data: Any, **options: Any) -> PublishResult:
        """Publish now; raises :class:`tidings.ApiError` (code 100: unreachable)."""
        return self.realtime.publish(channel, data, **options)

    def publish_on_commit(self, channel: str, data: Any, *, session: Any,
                          **options: Any) -> None:
        """Publish when the SQLAlchemy ``session`` commits its transaction, never if it
        rolls back or closes without a commit. The idempotency key is chosen now; a
        failure after the commit is logged (for a publication that cannot be lost, use the
        outbox: ``tidings.outbox.sqlalchemy``)."""
        from sqlalchemy import event
        from sqlalchemy.orm import scoped_session

        real = session() if isinstance(session, scoped_session) else session
        options.setdefault("idempotency_key", uuid.uuid4().hex)
        if PENDING not in real.info:
            real.info[PENDING] = []
            event.listen(real, "after_commit", _after_commit)
            event.listen(real, "after_transaction_end", _after_transaction_end)
        real.info[PENDING].append((self.realtime, channel, data, options))

    def position(self, channel: str) -> StreamPosition | None:
        return self.realtime.position(channel)

    def subscribe_context(self, channel: str, *,
                          subscription_token: bool = False) -> dict[str, Any]:
        """What the page's script needs to subscribe to ``channel`` from now (the stream
        position is read when this is called: before the page's data)."""
        from flask import url_for

        rt = self.realtime
        sub_url = url_for("tidings.subscription_token") if subscription_token else ""
        return rt.page(channel, rt.position(channel), token_url=url_for("tidings.token"),
                       subscription_token_url=sub_url)

    # ------------------------------------------------------------------ views

    def _user(self) -> Any:
        if self._user_loader is None:
            raise RuntimeError("Tidings: set a user_loader (the logged-in user's ID)")
        return self._user_loader()

    def _blueprint(self) -> Blueprint:
        bp = Blueprint("tidings", __name__)
        bp.add_url_rule("/token", "token", self._token_view, methods=["GET", "POST"])
        bp.add_url_rule("/subscription-token", "subscription_token",
                        self._subscription_token_view, methods=["GET", "POST"])
        bp.add_url_rule("/connect", "connect", view(self.connect_hook), methods=["POST"])
        return bp

    def _token_view(self) -> tuple[Response, int]:
        user = self._user()
        if user is None:
            return _json(*self.realtime.token_answer(None))
        info = self._user_info(user) if self._user_info is not None else None
        return _json(200, {"token": self.realtime.tokens.connection(str(user), info=info)})

    def _subscription_token_view(self) -> tuple[Response, int]:
        body = request.get_json(silent=True) if request.is_json else None
        channel = body.get("channel", "") if isinstance(body, dict) else ""
        channel = channel if isinstance(channel, str) else ""
        channel = channel or request.values.get("channel", "")
        user = self._user()
        check = self._can_subscribe
        allowed = bool(channel) and check is not None and bool(check(user, channel))
        return _json(*self.realtime.subscription_token_answer(
            None if user is None else str(user), channel, allowed))

    def connect_hook(self, req: ConnectRequest) -> ConnectResult:
        """Tidings' connect hook: the user of the Flask session in the forwarded cookie
        (``http_headers: ["Cookie"]``), or disconnect 4501."""
        cookie = req.headers.get("cookie", "")
        with current_app.test_request_context(headers={"Cookie": cookie}):
            user = self._user()
        if user is None:
            raise HookDisconnect(4501, "unauthorized")
        info = self._user_info(user) if self._user_info is not None else None
        return ConnectResult(user=str(user), info=info)


def _json(status: int, body: dict[str, Any]) -> tuple[Response, int]:
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response, status


def _after_commit(session: Any) -> None:
    pending, session.info[PENDING] = session.info[PENDING], []
    for realtime, channel, data, options in pending:
        try:
            realtime.publish(channel, data, **options)
        except ApiError:
            log.exception("publication to %r after commit failed", channel)


def _after_transaction_end(session: Any, transaction: Any) -> None:
    if transaction.parent is None:  # the outermost one: committed (sent) or not (dropped)
        session.info[PENDING] = []
