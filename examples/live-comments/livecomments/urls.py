"""URLs: the site's pages, Django's auth views, and the two hook endpoints Tidings calls (which
nginx serves on its internal listener only: ``/tidings/connect`` and ``/hooks/``)."""

from django.contrib import admin
from django.urls import include, path

from articles import realtime, views
from tidings.hooks.django import view as hook_view

urlpatterns = [
    path("", views.index, name="index"),
    path("articles/<slug:slug>/", views.article, name="article"),
    path("articles/<slug:slug>/comments", views.post_comment, name="post-comment"),
    path("search", views.search, name="search"),
    path("signup", views.signup, name="signup"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("health", views.health),
    # Tidings -> Django. The connect hook: the Django session cookie logs the WebSocket in
    # (tidings.contrib.django's connect_view); the publish hook of the typing: namespace.
    path("tidings/", include("tidings.contrib.django.urls")),
    path("hooks/typing", hook_view(realtime.typing)),
]
