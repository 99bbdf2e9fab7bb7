"""Centrifugo's outbox table, ``centrifugo_outbox`` (docs/outbox.md)."""

from __future__ import annotations

from typing import Any

import django.core.serializers.json
import django.db.models.functions.datetime
from django.db import migrations, models


class Migration(migrations.Migration):  # type: ignore[misc]  # Django ships no type hints
    initial = True

    dependencies: list[tuple[str, str]] = []

    operations: list[Any] = [
        migrations.CreateModel(
            name="Outbox",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("method", models.TextField(default="publish")),
                ("payload", models.JSONField(
                    encoder=django.core.serializers.json.DjangoJSONEncoder)),
                ("partition", models.IntegerField(db_default=0, default=0)),
                ("created_at", models.DateTimeField(
                    db_default=django.db.models.functions.datetime.Now())),
            ],
            options={
                "db_table": "centrifugo_outbox",
                "indexes": [models.Index(fields=["partition", "id"],
                                         name="centrifugo_outbox_part_id_idx")],
            },
        ),
    ]
