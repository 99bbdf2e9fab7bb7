"""Prometheus metrics under Centrifugo's names: what the node counts (``counts``), durations
with quantiles (``timing``), and the text exposition written at scrape time (``render``)."""

from tidings.metrics.counts import Counts
from tidings.metrics.render import render

__all__ = ["Counts", "render"]
