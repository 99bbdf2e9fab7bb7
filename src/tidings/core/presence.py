"""Keeping this node's entries alive in a distributed engine: presence in each channel and the
counted connections of each user (``client.user_connection_limit``) expire after the engine's
``presence_ttl`` unless re-added, so a node that dies takes its clients' entries with it; a
living node re-adds them every ``presence_ttl / 3`` (at most 25 s), in batches of 100."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Iterator

from tidings.core.peer import Peer
from tidings.engine.base import Engine

__all__ = ["refresh_forever"]

log = logging.getLogger("tidings.presence")

BATCH = 100


async def refresh_forever(engine: Engine, clients: dict[str, Peer]) -> None:
    """Run until cancelled (``clients``: the node's authenticated clients by ID)."""
    interval = min(max(engine.presence_ttl / 3, 0.2), 25.0)
    while True:
        await asyncio.sleep(interval)
        live = [c for c in list(clients.values()) if not c.closed]
        counted = (engine.add_user_connection(c.user, c.client_id, 0) for c in live if c.counted)
        await _in_batches("user connection refresh", counted)
        present = (
            engine.add_presence(sub.channel, c.client_id, c.session.client_info(sub.chan_info))
            for c in live
            for sub in list(c.session.subs.values())
            if sub.presence
        )
        await _in_batches("presence refresh", present)


async def _in_batches(what: str, calls: Iterator[Awaitable[object]]) -> None:
    """Await ``calls`` (made lazily) BATCH at a time; stop at the first batch with a failure
    (the engine is away: the next round tries again)."""
    while True:
        batch = list(itertools.islice(calls, BATCH))
        if not batch:
            return
        results = await asyncio.gather(*batch, return_exceptions=True)
        failed = [r for r in results if isinstance(r, Exception)]
        if failed:
            log.warning("%s: %d of %d failed: %s", what, len(failed), len(results), failed[0])
            return
