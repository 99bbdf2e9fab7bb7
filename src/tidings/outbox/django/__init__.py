"""The outbox for Django apps (docs/outbox.md): ``INSTALLED_APPS += ["tidings.outbox.django"]``,
``manage.py migrate``, then, inside your transaction::

    from django.db import transaction
    from tidings.outbox.django import publish

    with transaction.atomic():
        comment = Comment.objects.create(...)
        publish(f"comments:{comment.post_id}", {"id": comment.id, "text": comment.text},
                idempotency_key=f"comment_{comment.id}")
    # committed: Tidings publishes it; rolled back: nothing is published

The migration creates Centrifugo's table ``centrifugo_outbox`` and, on PostgreSQL, the trigger
that NOTIFYs ``centrifugo_partition_change`` (the consumer's
``partition_notification_channel``). Optional settings: ``TIDINGS_OUTBOX = {"num_partitions":
N}`` (as the consumer's ``num_partitions``). Importing this module has no side effects: the
model is imported when a function is called.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tidings.outbox import OutboxRow, broadcast_row, publish_row

__all__ = ["broadcast", "publish", "write"]


def _num_partitions(num_partitions: int | None) -> int:
    if num_partitions is not None:
        return num_partitions
    from django.conf import settings

    options: Mapping[str, Any] = getattr(settings, "TIDINGS_OUTBOX", None) or {}
    return int(options.get("num_partitions", 1))


def write(row: OutboxRow, *, using: str | None = None) -> OutboxRow:
    """INSERT ``row`` with the connection ``using`` (default: ``default``), in the current
    transaction (``transaction.atomic``), or committed at once in autocommit mode."""
    from tidings.outbox.django.models import Outbox

    Outbox.objects.using(using).create(method=row.method, payload=row.payload,
                                       partition=row.partition)
    return row


def publish(channel: str, data: Any, *, idempotency_key: str | None = None,
            partition: int | None = None, num_partitions: int | None = None,
            using: str | None = None, tags: Mapping[str, str] | None = None,
            skip_history: bool = False, delta: bool = False) -> OutboxRow:
    """Publish ``data`` (JSON-serializable with Django's encoder: dates, decimals and UUIDs
    too) to ``channel`` when, and only if, the transaction commits."""
    row = publish_row(channel, data, idempotency_key=idempotency_key, partition=partition,
                      num_partitions=_num_partitions(num_partitions), tags=tags,
                      skip_history=skip_history, delta=delta)
    return write(row, using=using)


def broadcast(channels: Sequence[str], data: Any, *, idempotency_key: str | None = None,
              partition: int | None = None, num_partitions: int | None = None,
              using: str | None = None, tags: Mapping[str, str] | None = None,
              skip_history: bool = False, delta: bool = False) -> OutboxRow:
    """Broadcast ``data`` to ``channels`` when, and only if, the transaction commits."""
    row = broadcast_row(channels, data, idempotency_key=idempotency_key, partition=partition,
                        num_partitions=_num_partitions(num_partitions), tags=tags,
                        skip_history=skip_history, delta=delta)
    return write(row, using=using)
