"""Transactional publish for applications: an outbox row written in the app's own database
transaction, which Tidings' PostgreSQL consumer (``consumers[]``, docs/outbox.md) publishes
after COMMIT, and never when the transaction rolls back.

This module is framework-free (no imports beyond the standard library): it builds the row
(``publish_row``, ``broadcast_row``, ``command_row``) and the table's SQL (``create_sql``).
``tidings.outbox.sqlalchemy`` and the Django app ``tidings.outbox.django`` write it.

- The table is Centrifugo's (``centrifugo_outbox``: ``id``, ``method``, ``payload`` jsonb,
  ``partition``, ``created_at``), so a Centrifugo outbox works as is.
- ``partition``: rows of one partition are published in ``id`` order. By default a row's
  partition is a stable hash (CRC-32) of its channel modulo ``num_partitions``, so one
  channel's messages keep their order (never Python's ``hash()`` of a string: it changes
  between processes).
- ``idempotency_key``: delivery is at-least-once (a row may be published again when Tidings
  stops between publishing and deleting it); the key makes the repeat a no-op. By default each
  row gets a random one; pass your own (e.g. ``f"message_{message.id}"``), or ``""`` for none.
"""

from __future__ import annotations

import re
import uuid
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_NOTIFY_CHANNEL",
    "DEFAULT_TABLE",
    "OutboxRow",
    "broadcast_row",
    "command_row",
    "create_sql",
    "notify_sql",
    "partition_for",
    "publish_row",
]

DEFAULT_TABLE = "centrifugo_outbox"
DEFAULT_NOTIFY_CHANNEL = "centrifugo_partition_change"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_CHANNEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One outbox row: ``method`` (a server API method), ``payload`` (its request, a JSON
    object), ``partition``."""

    method: str
    payload: dict[str, Any]
    partition: int


def partition_for(key: str, num_partitions: int) -> int:
    """A stable partition for ``key`` in ``0 .. num_partitions-1`` (CRC-32)."""
    if num_partitions < 1:
        raise ValueError(f"num_partitions must be >= 1, got {num_partitions}")
    return zlib.crc32(key.encode()) % num_partitions


def _key(idempotency_key: str | None) -> str:
    return uuid.uuid4().hex if idempotency_key is None else idempotency_key


def _options(payload: dict[str, Any], *, idempotency_key: str | None,
             tags: Mapping[str, str] | None, skip_history: bool, delta: bool) -> dict[str, Any]:
    key = _key(idempotency_key)
    if key:
        payload["idempotency_key"] = key
    if tags:
        payload["tags"] = dict(tags)
    if skip_history:
        payload["skip_history"] = True
    if delta:
        payload["delta"] = True
    return payload


def _partition(partition: int | None, key: str, num_partitions: int) -> int:
    if partition is None:
        return partition_for(key, num_partitions)
    if not 0 <= partition < num_partitions:
        raise ValueError(f"partition {partition} is outside 0..{num_partitions - 1}: a row "
                         "there would never be read")
    return partition


def publish_row(channel: str, data: Any, *, idempotency_key: str | None = None,
                partition: int | None = None, num_partitions: int = 1,
                tags: Mapping[str, str] | None = None, skip_history: bool = False,
                delta: bool = False) -> OutboxRow:
    """The row of a ``publish`` of ``data`` (any JSON value) to ``channel``."""
    if not channel:
        raise ValueError("channel must not be empty")
    payload = _options({"channel": channel, "data": data}, idempotency_key=idempotency_key,
                       tags=tags, skip_history=skip_history, delta=delta)
    return OutboxRow("publish", payload, _partition(partition, channel, num_partitions))


def broadcast_row(channels: Sequence[str], data: Any, *, idempotency_key: str | None = None,
                  partition: int | None = None, num_partitions: int = 1,
                  tags: Mapping[str, str] | None = None, skip_history: bool = False,
                  delta: bool = False) -> OutboxRow:
    """The row of a ``broadcast`` of ``data`` to ``channels`` (partition by the first)."""
    if isinstance(channels, str) or not channels or not all(channels):
        raise ValueError("channels must be a non-empty list of channel names")
    payload = _options({"channels": list(channels), "data": data},
                       idempotency_key=idempotency_key, tags=tags, skip_history=skip_history,
                       delta=delta)
    return OutboxRow("broadcast", payload, _partition(partition, channels[0], num_partitions))


def command_row(method: str, request: Mapping[str, Any], *, partition: int = 0,
                num_partitions: int = 1) -> OutboxRow:
    """Any other consumable command (``subscribe``, ``unsubscribe``, ``disconnect``,
    ``history_remove``, ``refresh``) with its API request."""
    if not method:
        raise ValueError("method must not be empty")
    return OutboxRow(method, dict(request), _partition(partition, "", num_partitions))


def notify_sql(table: str = DEFAULT_TABLE,
               channel: str = DEFAULT_NOTIFY_CHANNEL) -> list[str]:
    """The trigger that NOTIFYs ``channel`` with the partition of every row inserted
    (delivered at COMMIT; the consumer's ``partition_notification_channel``)."""
    if not _IDENT.fullmatch(table) or not _CHANNEL.fullmatch(channel):
        raise ValueError("table must be an identifier (or schema.table) and channel "
                         "letters, digits and underscores")
    function, trigger = f"{table}_notify", f"{table.rsplit('.', 1)[-1]}_notify_trigger"
    return [
        f"CREATE OR REPLACE FUNCTION {function}() RETURNS TRIGGER AS $$ BEGIN "
        f"PERFORM pg_notify('{channel}', NEW.partition::text); RETURN NEW; END; "
        "$$ LANGUAGE plpgsql",
        f"CREATE OR REPLACE TRIGGER {trigger} AFTER INSERT ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {function}()",
    ]


def create_sql(table: str = DEFAULT_TABLE, *,
               notify_channel: str | None = DEFAULT_NOTIFY_CHANNEL) -> list[str]:
    """Centrifugo's outbox table (PostgreSQL), an index for the consumer's query, and the
    NOTIFY trigger (``notify_channel=None``: none)."""
    if not _IDENT.fullmatch(table):
        raise ValueError(f"table must be an identifier or schema.table, got {table!r}")
    index = f"{table.rsplit('.', 1)[-1]}_partition_id_idx"
    statements = [
        f"CREATE TABLE IF NOT EXISTS {table} (id BIGSERIAL PRIMARY KEY, method text NOT NULL, "
        "payload JSONB NOT NULL, partition INTEGER NOT NULL default 0, "
        "created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL)",
        f"CREATE INDEX IF NOT EXISTS {index} ON {table} (partition, id)",
    ]
    if notify_channel:
        statements += notify_sql(table, notify_channel)
    return statements
