"""``GET /metrics``: the node's counts, labelled and written in Prometheus' text format 0.0.4
under Centrifugo's names (METRICS.md §3), then prometheus_client's ``process_*`` collector.

Written by hand because Centrifugo's counters mostly have no ``_total`` suffix and its
Summaries carry quantiles, neither of which prometheus_client's stock types produce (METRICS.md
§5). Everything here runs at scrape time; nothing on the node's paths.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.process_collector import ProcessCollector

from tidings import __version__
from tidings.metrics.timing import QUANTILES, Histogram, Timing
from tidings.protocol.kinds import KINDS

if TYPE_CHECKING:
    from tidings.core.node import Node

__all__ = ["render"]

Labels = tuple[tuple[str, str], ...]
NS = ("channel_namespace", "")  # always empty, as in Centrifugo OSS

_process = CollectorRegistry()
ProcessCollector(registry=_process)


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels))
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _le(bound: float) -> str:
    """A bucket bound as Go prints it ("1", "0.005", "1e-06"), so one histogram_quantile may
    mix Tidings and Centrifugo nodes."""
    return f"{bound:g}" if float(bound) != int(bound) else str(int(bound))


def _num(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if isinstance(value, float) else str(value)


class Out:
    """Families in text format: each declared once, then its samples."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.now = time.monotonic()

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, labels: Labels, value: float) -> None:
        self.lines.append(f"{name}{_labels(labels)} {_num(value)}")

    def values(self, name: str, kind: str, help_text: str,
               rows: Iterable[tuple[Labels, float]]) -> None:
        self.family(name, kind, help_text)
        for labels, value in rows:
            self.sample(name, labels, value)

    def histogram(self, name: str, help_text: str,
                  rows: Iterable[tuple[Labels, Histogram]]) -> None:
        self.family(name, "histogram", help_text)
        for labels, h in rows:
            for bound, total in zip((*h.bounds, math.inf), h.cumulative(), strict=True):
                le = "+Inf" if math.isinf(bound) else _le(bound)
                self.sample(f"{name}_bucket", (*labels, ("le", le)), total)
            self.sample(f"{name}_sum", labels, h.sum)
            self.sample(f"{name}_count", labels, h.count)

    def timing(self, name: str, help_text: str, rows: list[tuple[Labels, Timing]]) -> None:
        """A Summary (with quantiles) and its ``_histogram`` companion."""
        self.family(name, "summary", help_text)
        for labels, t in rows:
            for q, v in zip(QUANTILES, t.quantiles(self.now), strict=True):
                self.sample(name, (*labels, ("quantile", str(q))), v)
            self.sample(f"{name}_sum", labels, t.sum)
            self.sample(f"{name}_count", labels, t.count)
        self.histogram(f"{name}_histogram", help_text, rows)


def _node(out: Out, node: Node) -> None:
    hub = node.channels.hub
    registry = node.registry
    gauges = (
        ("num_clients", "Number of clients connected.", len(registry.clients)),
        ("num_users", "Number of unique users connected.", len(registry.users)),
        ("num_subscriptions", "Number of subscriptions.",
         sum(hub.num_subscribed(s) for s in hub.channels.values())),
        ("num_channels", "Number of channels with one or more subscribers.", len(hub.channels)),
        ("num_nodes", "Number of nodes in the cluster.", len(node.cluster.live_nodes())),
    )
    for name, help_text, value in gauges:
        out.values(f"centrifugo_node_{name}", "gauge", help_text, [((), value)])
    out.values("centrifugo_node_build", "gauge", "Node build info.",
               [((("version", f"{__version__} tidings"),), 1)])
    counts = node.counts
    out.values("centrifugo_node_action_count", "counter", "Number of various actions called.",
               [((( ("action", a), NS)), n) for a, n in sorted(counts.actions.items())])
    out.values("centrifugo_node_messages_sent_count", "counter",
               "Number of messages sent by node to broker.",
               [(((("type", t), NS)), n) for t, n in sorted(counts.broker_sent.items())])
    out.values("centrifugo_node_messages_received_count", "counter",
               "Number of messages received by node from broker.",
               [(((("type", t), NS)), n) for t, n in sorted(counts.broker_received.items())])
    out.timing("centrifugo_node_survey_duration_seconds", "Survey duration by operation.",
               [((("op", op),), t) for op, t in sorted(counts.surveys.items())])
    out.histogram("centrifugo_node_broadcast_duration_seconds",
                  "Broadcast duration to local subscribers.",
                  [((("type", "publication"), NS), counts.broadcast)])
    if node.config.prometheus.instrument_http_handlers:
        out.values("centrifugo_node_incoming_http_requests_total", "counter",
                   "Number of incoming HTTP requests.",
                   [((("path", p), ("method", m), ("status", str(s))), n)
                    for (p, m, s), n in sorted(counts.http_requests.items())])
    out.values("centrifugo_node_client_connection_limit", "counter",
               "Connections refused at the door (connection limit and rate).",
               [((), node.limits.refused_connections)])


def _client(out: Out, node: Node) -> None:
    counts = node.counts
    names = (("accept_protocol", ""), ("client_name", ""), ("client_version", ""))
    transports = sorted(counts.accepted)
    out.values("centrifugo_client_connections_accepted", "counter",
               "Number of accepted client connections.",
               [(((("transport", t), *names)), counts.accepted[t]) for t in transports])
    out.values("centrifugo_client_connections_inflight", "gauge",
               "Number of client connections in flight.",
               [(((("transport", t), *names)), counts.accepted[t] - counts.gone[t])
               for t in transports])
    by_method: dict[str, Timing] = {}
    for (_, method), t in counts.commands.items():
        by_method[method] = _merged(by_method.get(method), t)
    out.timing("centrifugo_client_command_duration_seconds", "Client command duration.",
               [((("method", m), NS), t) for m, t in sorted(by_method.items())])
    out.values("centrifugo_client_num_reply_errors", "counter",
               "Number of errors in replies sent to clients.",
               [(((("method", m), ("code", str(c)), NS)), n)
               for (m, c), n in sorted(counts.reply_errors.items())])
    out.values("centrifugo_client_num_server_unsubscribes", "counter",
               "Number of server initiated unsubscribes.",
               [(((("code", str(c)), NS)), n) for c, n in sorted(counts.unsubscribes.items())])
    out.values("centrifugo_client_num_server_disconnects", "counter",
               "Number of server initiated disconnects.",
               [(((("code", str(c)),)), n) for c, n in sorted(counts.disconnects.items())])
    out.values("centrifugo_client_recover", "counter", "Count of recover operations.",
               [(((("recovered", _yes(r)), NS, ("has_recovered_publications", _yes(p)))), n)
               for (r, p), n in sorted(counts.recovers.items())])
    if node.config.prometheus.recovered_publications_histogram:
        out.histogram("centrifugo_client_recovered_publications",
                      "Number of publications recovered during subscription recovery.",
                      [((NS,), counts.recovered)])
    out.histogram("centrifugo_client_ping_pong_duration_seconds",
                  "Ping/Pong duration in seconds.",
                  [((("transport", t),), h) for t, h in sorted(counts.ping_pong.items())])


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _merged(into: Timing | None, t: Timing) -> Timing:
    if into is None:
        return t
    merged = Timing(t.bounds, keep=len(into._recent) + len(t._recent) + 1)
    for source in (into, t):
        merged.counts = [a + b for a, b in zip(merged.counts, source.counts, strict=True)]
        merged.sum += source.sum
        merged.count += source.count
        merged._recent.extend(source._recent)
    return merged


def _transport(out: Out, node: Node) -> None:
    """Messages by transport and frame type: replies and received commands by the command's
    name (counted per command), every other message sent (publications, join/leave and the
    other pushes) as ``push_publication``: the node counts messages per transport kind where it
    writes them, not per push type."""
    counts = node.counts
    sent: list[tuple[Labels, float]] = []
    received: list[tuple[Labels, float]] = []
    per_kind: dict[str, dict[str, int]] = {}
    for (transport, method), t in counts.commands.items():
        per_kind.setdefault(transport, {})[method] = t.count
    totals: dict[str, int] = {}
    for info, stats in zip(KINDS.values(), node.transport_stats, strict=True):
        name = info.transport
        totals[name] = totals.get(name, 0) + stats[0]
    for transport in sorted(set(totals) | set(per_kind)):
        methods = per_kind.get(transport, {})
        replies = 0
        for method, n in sorted(methods.items()):
            received.append(((("transport", transport), ("frame_type", method), NS), n))
            if method != "pong":
                sent.append(((("transport", transport), ("frame_type", method), NS), n))
                replies += n
        pushes = max(totals.get(transport, 0) - replies, 0)
        sent.append(((("transport", transport), ("frame_type", "push_publication"), NS), pushes))
    out.values("centrifugo_transport_messages_sent", "counter",
               "Number of messages sent to client connections over specific transport.", sent)
    out.values("centrifugo_transport_messages_received", "counter",
               "Number of messages received from client connections over specific transport.",
               received)


def _api_and_broker(out: Out, node: Node) -> None:
    counts = node.counts
    out.timing("centrifugo_api_command_duration_seconds", "Duration of API per command.",
               [((("protocol", p), ("method", m)), t) for (p, m), t in sorted(counts.api.items())])
    out.values("centrifugo_api_command_errors_total", "counter",
               "Number of errors in API per command.",
               [(((("protocol", p), ("method", m), ("error", e))), n)
               for (p, m, e), n in sorted(counts.api_errors.items())])
    broker = ("broker_name", "")
    out.values("centrifugo_broker_redis_pub_sub_errors", "counter",
               "Number of times there was an error in Redis PUB/SUB connection.",
               [(((broker, ("error", e))), n)
               for e, n in sorted(getattr(node.engine, "pubsub_errors", {}).items())])
    out.values("centrifugo_broker_redis_pub_sub_dropped_messages", "counter",
               "Number of dropped messages on application level in Redis PUB/SUB.",
               [(((broker, ("channel_type", t))), 0) for t in ("control", "client")])
    out.values("centrifugo_broker_redis_pub_sub_buffered_messages", "gauge",
               "Number of messages buffered in Redis PUB/SUB processors.",
               [(((broker, ("channel_type", t), ("pub_sub_processor", "0"))), 0)
                for t in ("control", "client")])


def _proxies(out: Out, node: Node) -> None:
    rows = node.hooks.callers()
    def labels(hook: str, name: str, protocol: str) -> Labels:
        return (("protocol", protocol), ("type", hook), ("name", name))
    out.timing("centrifugo_proxy_duration_seconds", "Duration of proxy request.",
               [(labels(h, n, p), c.stats.timing) for h, n, p, c in rows])
    out.values("centrifugo_proxy_errors", "counter", "Number of proxy request errors.",
               ((labels(h, n, p), c.stats.failures) for h, n, p, c in rows))
    out.values("centrifugo_proxy_inflight_requests", "gauge",
               "Number of proxy requests in flight.",
               ((labels(h, n, p), c.stats.inflight) for h, n, p, c in rows))


def _consumers(out: Out, node: Node) -> None:
    """The async consumers' counters, at 0 for every enabled consumer from the start."""
    counts = node.counts
    names = sorted({c.name for c in node.config.consumers if c.enabled} | set(counts.consumed)
                   | set(counts.consumer_errors))
    out.values("centrifugo_consumers_messages_processed_total", "counter",
               "Number of messages processed by consumer.",
               [((("consumer_name", name),), counts.consumed[name]) for name in names])
    out.values("centrifugo_consumers_errors_total", "counter",
               "Number of errors by consumer.",
               [((("consumer_name", name),), counts.consumer_errors[name]) for name in names])


def _tidings(out: Out, node: Node) -> None:
    """Tidings' own: the write coalescing that decides throughput (docs/design.md)."""
    writer = node.writer
    out.values("tidings_writer_flush_rounds_total", "counter",
               "Flush rounds run (each writes every client with pending messages).",
               [((), writer.rounds)])
    out.values("tidings_writer_delayed_rounds_total", "counter",
               "Flush rounds that took long enough to make the next one wait and coalesce.",
               [((), writer.delayed)])
    out.values("tidings_writer_client_flushes_total", "counter",
               "Client writes, summed over flush rounds (messages are coalesced into them).",
               [((), writer.flushed)])
    out.histogram("tidings_writer_flush_duration_seconds", "Duration of one flush round.",
                  [((), writer.cost)])


def _families(node: Node) -> Iterator[str]:
    out = Out()
    _tidings(out, node)
    _node(out, node)
    _client(out, node)
    _transport(out, node)
    _api_and_broker(out, node)
    _proxies(out, node)
    _consumers(out, node)
    yield from out.lines


def render(node: Node) -> bytes:
    """The text exposition of ``node``'s metrics and the process's."""
    text = "\n".join(_families(node)) + "\n"
    return text.encode() + generate_latest(_process)
