"""The outbox for SQLAlchemy (2.x) apps: Centrifugo's table on your ``MetaData``, and
``publish``/``broadcast`` that INSERT into it on your connection or session, in the
transaction you are in (docs/outbox.md)::

    from tidings.outbox.sqlalchemy import outbox_table, publish

    outbox = outbox_table(metadata)                # "centrifugo_outbox" + NOTIFY trigger
    with Session(engine) as session, session.begin():
        session.add(Comment(...))
        publish(session, "comments:42", {"text": "hi"}, table=outbox)
    # committed: Tidings publishes it; rolled back: nothing is published
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import (
    DDL,
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    event,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from tidings.outbox import (
    DEFAULT_NOTIFY_CHANNEL,
    DEFAULT_TABLE,
    OutboxRow,
    broadcast_row,
    notify_sql,
    publish_row,
)

__all__ = ["broadcast", "outbox_table", "publish", "write"]

_default: Table | None = None


def outbox_table(metadata: MetaData, name: str = DEFAULT_TABLE, *,
                 notify_channel: str | None = DEFAULT_NOTIFY_CHANNEL,
                 schema: str | None = None) -> Table:
    """Centrifugo's outbox layout (``payload`` is ``jsonb`` on PostgreSQL, JSON elsewhere),
    with an index on ``(partition, id)``; ``metadata.create_all`` on PostgreSQL also creates
    the trigger that NOTIFYs ``notify_channel`` (``None``: no trigger)."""
    table = Table(
        name, metadata,
        Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
               autoincrement=True),
        Column("method", Text(), nullable=False),
        Column("payload", JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        Column("partition", Integer(), nullable=False, server_default=text("0")),
        Column("created_at", DateTime(timezone=True), nullable=False,
               server_default=func.now()),
        Index(f"{name}_partition_id_idx", "partition", "id"),
        schema=schema,
    )
    if notify_channel:
        full = f"{schema}.{name}" if schema else name
        for statement in notify_sql(full, notify_channel):
            ddl = DDL(statement.replace("%", "%%"))  # type: ignore[no-untyped-call]  # SQLAlchemy
            event.listen(table, "after_create", ddl.execute_if(dialect="postgresql"))
    return table


def _default_table() -> Table:
    global _default
    if _default is None:
        _default = outbox_table(MetaData())
    return _default


def write(conn: Connection | Session, row: OutboxRow, *, table: Table | None = None,
          notify_channel: str | None = None) -> OutboxRow:
    """INSERT ``row`` in ``conn``'s transaction. ``notify_channel``: also ``pg_notify`` it
    (delivered at COMMIT), for a table without the trigger."""
    target = table if table is not None else _default_table()
    conn.execute(insert(target).values(method=row.method, payload=row.payload,
                                       partition=row.partition))
    if notify_channel:
        conn.execute(select(func.pg_notify(notify_channel, str(row.partition))))
    return row


def publish(conn: Connection | Session, channel: str, data: Any, *,
            table: Table | None = None, idempotency_key: str | None = None,
            partition: int | None = None, num_partitions: int = 1,
            tags: Mapping[str, str] | None = None, skip_history: bool = False,
            delta: bool = False, notify_channel: str | None = None) -> OutboxRow:
    """Publish ``data`` to ``channel`` when (and only if) the transaction commits."""
    row = publish_row(channel, data, idempotency_key=idempotency_key, partition=partition,
                      num_partitions=num_partitions, tags=tags, skip_history=skip_history,
                      delta=delta)
    return write(conn, row, table=table, notify_channel=notify_channel)


def broadcast(conn: Connection | Session, channels: Sequence[str], data: Any, *,
              table: Table | None = None, idempotency_key: str | None = None,
              partition: int | None = None, num_partitions: int = 1,
              tags: Mapping[str, str] | None = None, skip_history: bool = False,
              delta: bool = False, notify_channel: str | None = None) -> OutboxRow:
    """Broadcast ``data`` to ``channels`` when (and only if) the transaction commits."""
    row = broadcast_row(channels, data, idempotency_key=idempotency_key, partition=partition,
                        num_partitions=num_partitions, tags=tags, skip_history=skip_history,
                        delta=delta)
    return write(conn, row, table=table, notify_channel=notify_channel)
