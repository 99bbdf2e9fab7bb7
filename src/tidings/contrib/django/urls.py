"""``path("tidings/", include("tidings.contrib.django.urls"))``: ``tidings:token``,
``tidings:subscription-token`` and ``tidings:connect`` (the connect hook's endpoint; keep it
reachable by Tidings only)."""

from __future__ import annotations

from django.urls import path

from tidings.contrib.django.views import connect_view, subscription_token_view, token_view

app_name = "tidings"

urlpatterns = [
    path("token", token_view, name="token"),
    path("subscription-token", subscription_token_view, name="subscription-token"),
    path("connect", connect_view, name="connect"),
]
