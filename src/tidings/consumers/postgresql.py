"""The PostgreSQL outbox consumer (``type: "postgresql"``), byte-compatible with Centrifugo's
(CONSUMERS.md §2): same SQL, same advisory-lock key, same loop and defaults, LISTEN with the
same payload rules. So a Centrifugo outbox table works as is, and Tidings and Centrifugo nodes
can even share one.

Rules of this module:

- one task per partition ``0 .. num_partitions-1``; each round is one READ COMMITTED
  transaction: take the partition's advisory lock (``hashtext('centrifugo_partition_lock_' +
  name + partition)``, held until COMMIT, so nodes sharing the table take turns), select up to
  ``partition_select_limit`` rows in ``id`` order, dispatch them one by one, stop at the first
  that asks for a retry, DELETE the ones done, COMMIT. No row locks: the advisory lock alone;
- a row is deleted only after its command ran, in the transaction that read it: a crash before
  COMMIT replays it (at-least-once; ``idempotency_key`` makes a replayed publish a no-op);
- a full batch selects again at once; a short one waits ``partition_poll_interval``, cut short
  by a NOTIFY for that partition when ``partition_notification_channel`` is set;
- any failure (PostgreSQL gone, a dispatch to retry) counts an error, backs off (20 ms doubling
  to 5 s) and tries again; rows are never skipped. The pool reconnects by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Sequence
from typing import Any

import asyncpg

from tidings.config.consumerschema import ConsumerConfig
from tidings.consumers.dispatch import Backoff, ConsumerStartError, Dispatcher, Outcome
from tidings.consumers.pgconnect import connect_kwargs, pool_options
from tidings.metrics.counts import Counts

__all__ = ["PostgresConsumer", "lock_key"]

log = logging.getLogger("tidings.consumers")

START_TIMEOUT = 10.0  # as Centrifugo's ping at start-up
LISTEN_RETRY = 1.0  # after a listener error
LISTEN_CHECK = 5.0  # the LISTEN connection is pinged when this long quiet
CLOSE_TIMEOUT = 5.0

_PARTITION_RE = re.compile(r"[+-]?\d+")  # Go's strconv.Atoi


class RetryLater(Exception):
    """A dispatched command asked for a retry (an internal error)."""


def lock_key(name: str, partition: int) -> str:
    """The advisory lock's text key, as Centrifugo builds it (no separator)."""
    return f"centrifugo_partition_lock_{name}{partition}"


def _payload_bytes(value: str | bytes | None) -> bytes:
    """``payload`` as PostgreSQL returned it: jsonb/json/text arrive as str, bytea as bytes."""
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode()
    return bytes(value)


class PostgresConsumer:
    def __init__(self, config: ConsumerConfig, dispatcher: Dispatcher, counts: Counts) -> None:
        pg = config.postgresql
        self.name = config.name
        self.pg = pg
        self.dispatcher = dispatcher
        self.counts = counts
        self.partitions = pg.effective_partitions
        self.limit = pg.effective_select_limit
        self.poll_interval = pg.effective_poll_interval
        table = pg.outbox_table_name  # checked by config.validate: an identifier
        self._select = (f"SELECT id, method, payload, partition FROM {table} "
                        "WHERE partition=$1 ORDER BY id ASC LIMIT $2")
        self._delete = f"DELETE FROM {table} WHERE id = ANY($1)"
        self._lock = ("SELECT pg_try_advisory_xact_lock(hashtext($1))" if pg.use_try_lock
                      else "SELECT pg_advisory_xact_lock(hashtext($1))")
        self._wake = [asyncio.Event() for _ in range(self.partitions)]
        self._pool: asyncpg.Pool | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._extra: dict[str, Any] = {"consumer": self.name}

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Connect (fatal after 10 s, as Centrifugo), then run the partitions and listener."""
        try:
            options = pool_options(self.pg.dsn, self.partitions)
            kwargs = connect_kwargs(self.pg.tls)
        except (ValueError, OSError) as exc:
            raise ConsumerStartError(f"consumer {self.name!r}: {exc}") from None
        try:
            async with asyncio.timeout(START_TIMEOUT):
                self._pool = await asyncpg.create_pool(
                    options.dsn, min_size=options.min_size, max_size=options.max_size,
                    **kwargs)
                await self._pool.fetchval("SELECT 1")
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError,
                ValueError) as exc:
            await self._close_pool()
            reason = "timed out" if isinstance(exc, TimeoutError) else str(exc) or repr(exc)
            raise ConsumerStartError(f"consumer {self.name!r}: cannot connect to PostgreSQL "
                                     f"within {START_TIMEOUT:.0f} s: {reason}") from None
        await self._check_table()
        loop = asyncio.get_running_loop()
        for p in range(self.partitions):
            self._tasks.append(loop.create_task(self._partition_forever(p),
                                                name=f"consumer-{self.name}-{p}"))
        if self.pg.partition_notification_channel:
            self._tasks.append(loop.create_task(self._listen_forever(),
                                                name=f"consumer-{self.name}-listen"))
        log.info("consumer %r started: table %s, %d partition(s)", self.name,
                 self.pg.outbox_table_name, self.partitions, extra=self._extra)

    async def _check_table(self) -> None:
        """A missing table is not fatal (a migration may create it later) but is told."""
        assert self._pool is not None
        try:
            await self._pool.fetch(self._select.replace("LIMIT $2", "LIMIT 0"), 0)
        except asyncpg.PostgresError as exc:
            log.error("consumer %r cannot read its outbox table %s yet: %s (retrying)",
                      self.name, self.pg.outbox_table_name, exc,
                      extra={**self._extra, "error": str(exc)})

    async def close(self) -> None:
        """Stop every task (an open transaction rolls back: its rows stay for next time)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self._close_pool()

    async def _close_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await pool.close()
        except (TimeoutError, OSError, asyncpg.InterfaceError):
            pool.terminate()

    # ---------------------------------------------------------------- partitions

    async def _partition_forever(self, partition: int) -> None:
        backoff = Backoff()
        extra = {**self._extra, "partition": partition}
        while True:
            try:
                selected = await self._process_once(partition)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # task root: count, log, back off, try again
                self.counts.consumer_errors[self.name] += 1
                delay = backoff.next()
                unexpected = not isinstance(exc, RetryLater | OSError | asyncpg.PostgresError
                                            | asyncpg.InterfaceError | TimeoutError)
                log.error("consumer %r partition %d: %s; retrying in %.2f s", self.name,
                          partition, exc or repr(exc), delay, exc_info=unexpected,
                          extra={**extra, "error": str(exc) or repr(exc)})
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            if selected is None or selected < self.limit:
                await self._idle(partition)

    async def _idle(self, partition: int) -> None:
        wake = self._wake[partition]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.poll_interval):
                await wake.wait()
        wake.clear()

    async def _process_once(self, partition: int) -> int | None:
        """One round; the number of rows selected (None: another node holds the lock)."""
        pool = self._pool
        assert pool is not None
        done: list[int] = []
        failed = False
        async with pool.acquire() as conn, conn.transaction(isolation="read_committed"):
            locked = await conn.fetchval(self._lock, lock_key(self.name, partition))
            if locked is False:  # use_try_lock: someone else works on it
                return None
            rows = await conn.fetch(self._select, partition, self.limit)
            failed = await self._dispatch(rows, done)
            if done:
                await conn.execute(self._delete, done)
        if failed:
            raise RetryLater(f"row {rows[len(done)]['id']}: dispatch failed with an internal "
                             f"error ({len(done)} row(s) before it done)")
        self.counts.consumed[self.name] += len(done)
        return len(rows)

    async def _dispatch(self, rows: Sequence[asyncpg.Record], done: list[int]) -> bool:
        """Dispatch ``rows`` in order, appending the ids done; True when one must be retried."""
        for row in rows:
            try:
                outcome = await self.dispatcher.dispatch(row["method"] or "",
                                                         _payload_bytes(row["payload"]))
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug, not the row: an internal error, retried
                log.exception("consumer %r: dispatch of row %s failed", self.name, row["id"],
                              extra=self._extra)
                outcome = Outcome.RETRY
            if outcome is Outcome.RETRY:
                return True
            done.append(row["id"])
        return False

    # ---------------------------------------------------------------- LISTEN/NOTIFY

    async def _listen_forever(self) -> None:
        while True:
            try:
                await self._listen_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # task root: log, wait, reconnect
                log.warning("consumer %r: notification listener: %s; reconnecting in %.0f s",
                            self.name, exc or repr(exc), LISTEN_RETRY,
                            extra={**self._extra, "error": str(exc) or repr(exc)})
            await asyncio.sleep(LISTEN_RETRY)

    async def _listen_once(self) -> None:
        dsn = self.pg.partition_notification_dsn or self.pg.dsn
        options = pool_options(dsn, 0)
        async with asyncio.timeout(START_TIMEOUT):
            conn = await asyncpg.connect(options.dsn, **connect_kwargs(self.pg.tls))
        try:
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(self.pg.partition_notification_channel, self._notified)
            for wake in self._wake:  # what was sent while nobody listened: look now
                wake.set()
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(LISTEN_CHECK):
                        await lost.wait()
                if not lost.is_set():
                    await conn.fetchval("SELECT 1", timeout=LISTEN_CHECK)
            raise ConnectionError("the LISTEN connection was closed")
        finally:
            with contextlib.suppress(OSError, TimeoutError, asyncpg.PostgresError,
                                     asyncpg.InterfaceError):
                await asyncio.wait_for(conn.close(), CLOSE_TIMEOUT)
            conn.terminate()

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        """A NOTIFY's payload is the partition number; anything else is ignored."""
        if _PARTITION_RE.fullmatch(payload) and 0 <= int(payload) < self.partitions:
            self._wake[int(payload)].set()
            return
        log.warning("consumer %r: notification payload %r is not a partition number "
                    "(0..%d), ignored", self.name, payload[:100], self.partitions - 1,
                    extra=self._extra)
