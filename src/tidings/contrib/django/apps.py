"""The Django app of ``tidings.contrib.django`` (for its template tags)."""

from __future__ import annotations

from django.apps import AppConfig


class TidingsConfig(AppConfig):  # type: ignore[misc]  # Django has no type hints
    name = "tidings.contrib.django"
    label = "tidings"
    verbose_name = "Tidings"
