"""Async consumers: server API commands taken from a queue or an outbox table instead of HTTP
(Centrifugo's ``consumers[]``, CONSUMERS.md). ``dispatch`` turns one message into one API call
and decides whether it is done; ``postgresql`` is the outbox consumer.

``Consumers`` runs the enabled ones for a server: ``start`` after the node started (fatal when
one cannot connect: ``ConsumerStartError``), ``close`` first at shutdown."""

from __future__ import annotations

import logging

from tidings.config.consumerschema import ConsumerConfig
from tidings.consumers.dispatch import Api, ConsumerStartError, Dispatcher
from tidings.consumers.postgresql import PostgresConsumer
from tidings.consumers.redis_stream import RedisStreamConsumer
from tidings.metrics.counts import Counts

__all__ = ["ConsumerStartError", "Consumers"]

log = logging.getLogger("tidings.consumers")

Consumer = PostgresConsumer | RedisStreamConsumer
_TYPES: dict[str, type[Consumer]] = {"postgresql": PostgresConsumer,
                                     "redis_stream": RedisStreamConsumer}


class Consumers:
    def __init__(self, configs: list[ConsumerConfig], api: Api, counts: Counts) -> None:
        self.running: list[Consumer] = []
        self._pending: list[Consumer] = []
        for config in configs:
            if not config.enabled:
                log.info("consumer %r is not enabled, skip", config.name,
                         extra={"consumer": config.name})
                continue
            kind = _TYPES.get(config.type)
            if kind is None:  # refused by config.validate; not run if unchecked
                log.error("consumer %r: type %r is not supported, skip", config.name,
                          config.type, extra={"consumer": config.name})
                continue
            self._pending.append(kind(config, Dispatcher(api, config.name), counts))

    async def start(self) -> None:
        """Start every enabled consumer; on a failure, stop those started and raise
        ``ConsumerStartError``."""
        for consumer in self._pending:
            try:
                await consumer.start()
            except ConsumerStartError:
                await self.close()
                raise
            self.running.append(consumer)
        self._pending = []

    async def close(self) -> None:
        running, self.running = self.running, []
        for consumer in running:
            await consumer.close()
