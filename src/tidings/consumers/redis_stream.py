"""The Redis Streams consumer (``type: "redis_stream"``), as Centrifugo's (CONSUMERS.md §3).

Rules of this module:

- per stream: ``XGROUP CREATE <stream> <group> $ MKSTREAM`` at start (``BUSYGROUP`` is fine:
  the group exists, and entries added while Tidings was away are read now); a reader loops on
  ``XREADGROUP ... COUNT <num_workers> BLOCK 5000 STREAMS <stream> >`` and runs the entries it
  gets side by side (up to ``num_workers``); ``NOGROUP`` re-creates the group;
- an entry's ``payload`` field (``payload_value``) is the command, its ``method`` field
  (``method_value``) the method; no method: the payload is an envelope (``dispatch``). An entry
  without a payload is dropped (acknowledged), as in Centrifugo;
- ``XACK`` when the dispatch is done; an entry to retry stays pending, and a claimer takes
  pending entries idle longer than ``visibility_timeout`` (``XAUTOCLAIM``, paged) and handles
  them again: at-least-once, and no order once a retry happens;
- the consumer's name is new at every start (Centrifugo uses its random node ID), so a restarted
  node leaves its old pending entries to the claimer;
- nothing is deleted or trimmed: producers cap the stream (``XADD ... MAXLEN ~ N``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

import redis.asyncio
import redis.exceptions

from tidings.config.consumerschema import ConsumerConfig
from tidings.config.schema import RedisConfig
from tidings.consumers.dispatch import Backoff, ConsumerStartError, Dispatcher, Outcome
from tidings.engine.redis_addr import REDIS_ERRORS, client_kwargs, describe, parse_address
from tidings.metrics.counts import Counts

__all__ = ["RedisStreamConsumer"]

log = logging.getLogger("tidings.consumers")

BLOCK_MS = 5000  # XREADGROUP's BLOCK, as Centrifugo
CLAIM_EVERY = 5.0  # seconds between XAUTOCLAIM rounds (or visibility_timeout, if shorter)
CLAIM_PAGE = 100
CLAIM_PAGES = 1000  # bound of one round
START_TIMEOUT = 5.0  # Centrifugo's Redis ping at start-up


class RedisStreamConsumer:
    def __init__(self, config: ConsumerConfig, dispatcher: Dispatcher, counts: Counts) -> None:
        rs = config.redis_stream
        self.name = config.name
        self.rs = rs
        self.dispatcher = dispatcher
        self.counts = counts
        self.group = rs.consumer_group
        self.consumer_id = str(uuid.uuid4())
        self.workers = rs.effective_workers
        self.visibility_ms = int(rs.effective_visibility_timeout * 1000)
        self.payload_field = (rs.payload_value or "payload").encode()
        self.method_field = (rs.method_value or "method").encode()
        self._client: redis.asyncio.Redis | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._extra: dict[str, Any] = {"consumer": self.name}

    def _connect(self) -> redis.asyncio.Redis:
        rs = self.rs
        cfg = RedisConfig(address=rs.address, connect_timeout=rs.connect_timeout,
                          io_timeout=rs.io_timeout, db=rs.db, user=rs.user,
                          password=rs.password, client_name=rs.client_name, tls=rs.tls)
        endpoint = parse_address(rs.address[0], cfg)
        kwargs = client_kwargs(cfg, endpoint)
        kwargs["socket_timeout"] = rs.io_timeout + BLOCK_MS / 1000  # XREADGROUP blocks
        where: dict[str, Any] = ({"unix_socket_path": endpoint.path} if endpoint.path
                                 else {"host": endpoint.host, "port": endpoint.port})
        return redis.asyncio.Redis(db=endpoint.db, **where, **kwargs)

    async def start(self) -> None:
        self._client = self._connect()
        try:
            async with asyncio.timeout(START_TIMEOUT):
                await self._client.ping()
                for stream in self.rs.streams:
                    await self._create_group(stream)
        except (*REDIS_ERRORS, TimeoutError) as exc:
            await self.close()
            raise ConsumerStartError(f"consumer {self.name!r}: cannot reach Redis within "
                                     f"{START_TIMEOUT:.0f} s: {describe(exc)}") from None
        loop = asyncio.get_running_loop()
        for stream in self.rs.streams:
            self._tasks.append(loop.create_task(self._read_forever(stream)))
            self._tasks.append(loop.create_task(self._claim_forever(stream)))
        log.info("consumer %r started: streams %s, group %r", self.name,
                 ", ".join(self.rs.streams), self.group, extra=self._extra)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(*REDIS_ERRORS):
                await client.aclose()

    async def _create_group(self, stream: str) -> None:
        assert self._client is not None
        try:
            await self._client.xgroup_create(stream, self.group, id="$", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # ---------------------------------------------------------------- reading

    async def _read_forever(self, stream: str) -> None:
        backoff = Backoff()
        while True:
            try:
                await self._read_once(stream)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # task root: log, back off, read again
                delay = backoff.next()
                log.error("consumer %r: reading stream %s: %s; retrying in %.2f s", self.name,
                          stream, describe(exc), delay,
                          exc_info=not isinstance(exc, REDIS_ERRORS),
                          extra={**self._extra, "error": describe(exc)})
                await asyncio.sleep(delay)
                continue
            backoff.reset()

    async def _read_once(self, stream: str) -> None:
        assert self._client is not None
        try:
            reply: Any = await self._client.xreadgroup(
                self.group, self.consumer_id, {stream: ">"}, count=self.workers, block=BLOCK_MS)
        except redis.exceptions.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self._create_group(stream)
            return
        for _, entries in reply or ():
            await self._handle_all(stream, entries)

    async def _handle_all(self, stream: str, entries: list[Any]) -> None:
        entries = [e for e in entries if e is not None and e[1] is not None]  # deleted ones
        if len(entries) == 1:
            await self._handle(stream, *entries[0])
        elif entries:
            await asyncio.gather(*(self._handle(stream, eid, fields) for eid, fields in entries))

    async def _handle(self, stream: str, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        assert self._client is not None
        payload = fields.get(self.payload_field)
        if payload is None:
            log.error("consumer %r: entry %s of %s has no %r field, skip", self.name,
                      entry_id.decode(), stream, self.payload_field.decode(), extra=self._extra)
            outcome = Outcome.DONE
        else:
            method = fields.get(self.method_field, b"").decode(errors="replace")
            try:
                outcome = await self.dispatcher.dispatch(method, payload)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug, not the entry: an internal error, retried
                log.exception("consumer %r: dispatch of entry %s failed", self.name,
                              entry_id.decode(), extra=self._extra)
                outcome = Outcome.RETRY
        if outcome is Outcome.RETRY:
            self.counts.consumer_errors[self.name] += 1  # stays pending: claimed again later
            return
        await self._client.xack(stream, self.group, entry_id)
        self.counts.consumed[self.name] += 1

    # ---------------------------------------------------------------- pending entries

    async def _claim_forever(self, stream: str) -> None:
        every = min(CLAIM_EVERY, self.visibility_ms / 1000)
        while True:
            await asyncio.sleep(every)
            try:
                await self._claim(stream)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # task root: log, try at the next round
                log.error("consumer %r: claiming pending entries of %s: %s", self.name,
                          stream, describe(exc), exc_info=not isinstance(exc, REDIS_ERRORS),
                          extra={**self._extra, "error": describe(exc)})

    async def _claim(self, stream: str) -> None:
        assert self._client is not None
        start: bytes | str = "0-0"
        for _ in range(CLAIM_PAGES):
            reply: Any = await self._client.xautoclaim(stream, self.group, self.consumer_id,
                                                  min_idle_time=self.visibility_ms,
                                                  start_id=start, count=CLAIM_PAGE)
            start, entries = reply[0], reply[1]
            await self._handle_all(stream, entries)
            if start in (b"0-0", "0-0"):
                return
