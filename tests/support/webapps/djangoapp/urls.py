from __future__ import annotations

from django.urls import path

from tests.support.webapps.djangoapp import views
from tidings.hooks.django import view

urlpatterns = [
    path("health", views.health),
    path("login", views.login),
    path("centrifugo/connect", view(views.connect)),
    path("centrifugo/subscribe", view(views.subscribe)),
]
