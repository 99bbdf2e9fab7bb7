"""Django: ``TIDINGS = {...}`` in settings, token views, publish and publish-on-commit, the
page's connection data (docs/django.md).

::

    # settings.py
    INSTALLED_APPS = [..., "tidings.contrib.django"]     # the {% load tidings %} tags
    TIDINGS = {"API_URL": "http://127.0.0.1:8000/api", "API_KEY": "...",
               "TOKEN_HMAC_SECRET_KEY": "...", "CAN_SUBSCRIBE": "myapp.realtime.can_subscribe"}

    # urls.py
    path("tidings/", include("tidings.contrib.django.urls")),

    # views.py
    from tidings.contrib.django import publish_on_commit
    with transaction.atomic():
        comment = Comment.objects.create(text=text)
        publish_on_commit("comments", {"id": comment.pk, "text": text})

The keys are :mod:`tidings.contrib.settings`' plus Django's own: ``CAN_SUBSCRIBE`` (dotted
path of ``can_subscribe(user, channel) -> bool``, asked by the subscription token view; unset:
every channel refused) and ``USER_INFO`` (dotted path of ``user_info(user) -> dict``, put in
connection tokens as ``info``: what other clients see in presence and joins).
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.db import transaction

from tidings.contrib.common import Realtime
from tidings.results import ApiError, PublishResult, StreamPosition

__all__ = ["apublish", "position", "publish", "publish_on_commit", "realtime"]

EXTRA_KEYS = ("can_subscribe", "user_info")
log = logging.getLogger("tidings.contrib.django")

_lock = threading.Lock()
_realtime: Realtime | None = None


def realtime() -> Realtime:
    """The integration built from ``settings.TIDINGS`` (once; again after the setting
    changes, as under ``override_settings``)."""
    global _realtime
    with _lock:
        if _realtime is None:
            _realtime = Realtime(getattr(settings, "TIDINGS", {}), extra=EXTRA_KEYS)
        return _realtime


def _reset(*, setting: str, **_: Any) -> None:
    global _realtime
    if setting != "TIDINGS":
        return
    with _lock:
        old, _realtime = _realtime, None
    if old is not None:
        old.close()


setting_changed.connect(_reset)


def publish(channel: str, data: Any, **options: Any) -> PublishResult:
    """Publish now; raises :class:`tidings.ApiError` (code 100: Tidings unreachable)."""
    return realtime().publish(channel, data, **options)


async def apublish(channel: str, data: Any, **options: Any) -> PublishResult:
    """Publish from an async view."""
    return await realtime().apublish(channel, data, **options)


def publish_on_commit(channel: str, data: Any, *, using: str | None = None,
                      **options: Any) -> None:
    """Publish when the current transaction of ``using`` commits (at once outside one);
    never if it rolls back. The publication gets an idempotency key now, so the client's
    retries cannot deliver it twice. A failure after the commit is logged, not raised: the
    data is saved either way (for a publication that must not be lost, use the outbox,
    ``tidings.outbox.django``)."""
    options.setdefault("idempotency_key", uuid.uuid4().hex)

    def send() -> None:
        try:
            publish(channel, data, **options)
        except ApiError:
            log.exception("publication to %r after commit failed", channel)

    transaction.on_commit(send, using=using)


def position(channel: str) -> StreamPosition | None:
    """The channel's stream position (read it before the page's data; None when Tidings
    cannot say)."""
    return realtime().position(channel)
