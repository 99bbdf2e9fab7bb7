"""The Django app of the outbox: ``INSTALLED_APPS += ["tidings.outbox.django"]``."""

from __future__ import annotations

from django.apps import AppConfig

__all__ = ["OutboxConfig"]


class OutboxConfig(AppConfig):  # type: ignore[misc]  # Django ships no type hints
    name = "tidings.outbox.django"
    label = "tidings_outbox"
    verbose_name = "Tidings outbox"
    default_auto_field = "django.db.models.BigAutoField"
