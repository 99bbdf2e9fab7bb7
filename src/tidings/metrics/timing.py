"""Durations as Centrifugo exposes them: a Summary (quantiles 0.5, 0.99, 0.999 over the last
10 minutes) and its ``_histogram`` companion, fed by one ``observe`` per event.

prometheus_client's Summary has no quantiles, and Centrifugo's dashboard reads them, so the
quantiles are computed here at scrape time from the most recent observations: at most
``KEEP`` (2,048) per series within the window, sorted when scraped. Observing is a bisect, three
additions and a deque append; nothing is computed until a scrape asks.
"""

from __future__ import annotations

import bisect
import math
from collections import deque

__all__ = ["COMMAND_BUCKETS", "DEF_BUCKETS", "QUANTILES", "Histogram", "Timing"]

DEF_BUCKETS = (.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)
COMMAND_BUCKETS = (.0001, .00025, .0005, .001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)
QUANTILES = (0.5, 0.99, 0.999)
WINDOW = 600.0  # seconds of observations the quantiles cover (client_golang's MaxAge)
KEEP = 2048


class Histogram:
    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = DEF_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf only)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[int]:
        out, total = [], 0
        for n in self.counts:
            total += n
            out.append(total)
        return out


class Timing(Histogram):
    """A Summary and its Histogram in one series."""

    __slots__ = ("_recent",)

    def __init__(self, bounds: tuple[float, ...] = DEF_BUCKETS, keep: int = KEEP) -> None:
        super().__init__(bounds)
        self._recent: deque[tuple[float, float]] = deque(maxlen=keep)

    def observe_at(self, value: float, now: float) -> None:
        self.observe(value)
        self._recent.append((now, value))

    def quantiles(self, now: float) -> list[float]:
        """The quantiles of the observations of the last ``WINDOW`` s (NaN: none)."""
        values = sorted(v for t, v in self._recent if now - t <= WINDOW)
        if not values:
            return [math.nan] * len(QUANTILES)
        last = len(values) - 1
        return [values[min(last, int(q * len(values)))] for q in QUANTILES]
