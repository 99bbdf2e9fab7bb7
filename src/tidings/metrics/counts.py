"""What a node counts for /metrics: plain integers and timings, bumped where the event already
happens (never per delivery beyond what the node counted before), labelled at scrape time by
``metrics.render``. The node owns one ``Counts``; its parts call the small methods below."""

from __future__ import annotations

import time
from collections import Counter, defaultdict

from tidings.metrics.timing import COMMAND_BUCKETS, Histogram, Timing

__all__ = ["Counts"]

BROADCAST_BUCKETS = (1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, .001, .005, .01, .025, .05,
                     .1, .25, .5, 1, 2.5, 5, 10)
MAX_ERROR_SERIES = 500
RECOVERED_BUCKETS = (0, 1, 2, 3, 5, 10, 20, 50, 100, 250, 500, 1000, 2000, 5000, 10000)
SURVEY_BUCKETS = (.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)


class Counts:
    def __init__(self) -> None:
        self.actions: Counter[str] = Counter()
        self.broker_sent: Counter[str] = Counter()  # publication, join, leave, control
        self.broker_received: Counter[str] = Counter()
        self.commands: defaultdict[tuple[str, str], Timing] = defaultdict(
            lambda: Timing(COMMAND_BUCKETS))  # (transport, method)
        self.reply_errors: Counter[tuple[str, int]] = Counter()  # (method, code)
        self.disconnects: Counter[int] = Counter()  # by code, 3000 excluded
        self.unsubscribes: Counter[int] = Counter()
        self.recovers: Counter[tuple[bool, bool]] = Counter()  # (recovered, had publications)
        self.accepted: Counter[str] = Counter()  # authenticated connections by transport
        self.gone: Counter[str] = Counter()  # ... of which closed since
        self.ping_pong: defaultdict[str, Histogram] = defaultdict(
            lambda: Histogram(COMMAND_BUCKETS))
        self.api: defaultdict[tuple[str, str], Timing] = defaultdict(Timing)  # (protocol, method)
        self.api_errors: Counter[tuple[str, str, str]] = Counter()  # (protocol, method, error)
        # The async consumers (consumers/), by consumer name.
        self.consumed: Counter[str] = Counter()
        self.consumer_errors: Counter[str] = Counter()
        self.surveys: defaultdict[str, Timing] = defaultdict(lambda: Timing(SURVEY_BUCKETS))
        self.broadcast = Histogram(BROADCAST_BUCKETS)
        self.recovered = Histogram(RECOVERED_BUCKETS)  # publications per recovery
        self.http_requests: Counter[tuple[str, str, int]] = Counter()  # (path, method, status)

    def reply_error(self, method: str, code: int) -> None:
        """Error replies by method and code; codes a backend hook chose can be anything, so at
        most ``MAX_ERROR_SERIES`` series, the rest under code 0 ("other")."""
        key = (method, code)
        if key not in self.reply_errors and len(self.reply_errors) >= MAX_ERROR_SERIES:
            key = (method, 0)
        self.reply_errors[key] += 1

    def action(self, name: str) -> None:
        self.actions[name] += 1

    def command(self, transport: str, method: str, seconds: float) -> None:
        self.commands[transport, method].observe_at(seconds, time.monotonic())

    def api_call(self, method: str, seconds: float, protocol: str = "http") -> None:
        self.api[protocol, method].observe_at(seconds, time.monotonic())

    def survey(self, op: str, seconds: float) -> None:
        self.surveys[op].observe_at(seconds, time.monotonic())
