"""On PostgreSQL: the trigger that NOTIFYs ``centrifugo_partition_change`` with each new row's
partition at COMMIT, so the consumer (``partition_notification_channel``) picks rows up at once
instead of at its next poll. Other databases: nothing (Tidings consumes PostgreSQL only)."""

from __future__ import annotations

from typing import Any

from django.db import migrations

from tidings.outbox import DEFAULT_NOTIFY_CHANNEL, DEFAULT_TABLE, notify_sql


def _create(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for statement in notify_sql(DEFAULT_TABLE, DEFAULT_NOTIFY_CHANNEL):
            schema_editor.execute(statement, params=None)


def _drop(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {DEFAULT_TABLE}_notify_trigger "
                              f"ON {DEFAULT_TABLE}", params=None)
        schema_editor.execute(f"DROP FUNCTION IF EXISTS {DEFAULT_TABLE}_notify()", params=None)


class Migration(migrations.Migration):  # type: ignore[misc]  # Django ships no type hints
    dependencies = [("tidings_outbox", "0001_initial")]

    operations: list[Any] = [migrations.RunPython(_create, _drop)]
