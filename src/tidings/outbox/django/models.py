"""``Outbox``: Centrifugo's outbox table (``centrifugo_outbox``), so Tidings' consumer (or
Centrifugo's) reads it with ``"outbox_table_name": "centrifugo_outbox"``."""

from __future__ import annotations

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models.functions import Now

__all__ = ["Outbox"]


class Outbox(models.Model):  # type: ignore[misc]  # Django ships no type hints
    """One server API command to run after COMMIT: ``method`` and its request ``payload``,
    published in ``id`` order within its ``partition``. The defaults are the database's too,
    so rows inserted with plain SQL get them."""

    id = models.BigAutoField(primary_key=True)
    method = models.TextField(default="publish")
    payload = models.JSONField(encoder=DjangoJSONEncoder)
    partition = models.IntegerField(default=0, db_default=0)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        db_table = "centrifugo_outbox"
        indexes = [models.Index(fields=["partition", "id"],
                                name="centrifugo_outbox_part_id_idx")]

    def __str__(self) -> str:
        return f"{self.method} #{self.id} (partition {self.partition})"
