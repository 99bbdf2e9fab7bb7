"""``"tidings.contrib.django.context_processors.tidings"`` in the template options gives every
template ``tidings``: ``url`` (where clients connect), ``tokenUrl``, ``subscriptionTokenUrl``."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from tidings.contrib.django import realtime
from tidings.contrib.django.views import named_url

__all__ = ["tidings"]


def tidings(request: HttpRequest) -> dict[str, Any]:
    return {"tidings": {"url": realtime().connection_url,
                        "tokenUrl": named_url("tidings:token"),
                        "subscriptionTokenUrl": named_url("tidings:subscription-token")}}
