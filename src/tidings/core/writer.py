"""Write coalescing: clients with something to send are flushed together, in rounds.

A client that queues a message while it has nothing pending marks itself dirty and joins the
next round (``schedule``); the round writes each dirty client's pending messages as one frame
(``Peer.flush``). Rounds are spaced by their own cost: after a round that took ``T`` >=
``COALESCE_THRESHOLD`` (thousands of sockets), the next one starts no sooner than ``T`` after it
ended (at most ``COALESCE_MAX_DELAY``), so under sustained load the publications arriving
meanwhile share one write per connection; at moderate load rounds run at once. One loopback
``send()`` costs ~10-15 us here, so fewer writes is the lever for throughput (docs/design.md).
"""

from __future__ import annotations

import asyncio

from tidings.core.peer import Peer
from tidings.metrics.timing import Histogram

__all__ = ["COALESCE_MAX_DELAY", "COALESCE_THRESHOLD", "Writer"]

COALESCE_THRESHOLD = 0.002
COALESCE_MAX_DELAY = 0.05
FLUSH_BUCKETS = (1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, .001, .0025, .005, .01, .025, .05, .1, .25)


class Writer:
    __slots__ = ("_dirty", "_loop", "_next_flush_at", "_scheduled", "cost", "delayed", "flushed",
                 "rounds")

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dirty: list[Peer] = []
        self._scheduled = False
        self._next_flush_at = 0.0
        self.rounds = 0  # flush rounds run (for info, tests and /metrics)
        self.delayed = 0  # rounds that left the next one waiting (coalescing under load)
        self.flushed = 0  # client flushes, summed over rounds
        self.cost = Histogram(FLUSH_BUCKETS)  # seconds per round

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def schedule(self, client: Peer) -> None:
        """``client`` has something to write: flush it in the next round (it calls this once
        per round, when it becomes dirty)."""
        self._dirty.append(client)
        if not self._scheduled:
            self._scheduled = True
            loop = self._loop
            assert loop is not None, "Writer.start() has not been called"
            wait = self._next_flush_at - loop.time()
            if wait <= 0:
                loop.call_soon(self.flush)
            else:
                loop.call_later(min(wait, COALESCE_MAX_DELAY), self.flush)

    def flush(self) -> None:
        """One round: every dirty client writes what it has."""
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        loop = self._loop
        assert loop is not None
        started = loop.time()
        for client in dirty:
            client.flush()
        ended = loop.time()
        cost = ended - started
        if cost >= COALESCE_THRESHOLD:
            self._next_flush_at = ended + cost
            self.delayed += 1
        else:
            self._next_flush_at = 0.0
        self.rounds += 1
        self.flushed += len(dirty)
        self.cost.observe(cost)
