"""The Grafana dashboard of ``deploy/grafana`` as the tests read it, a node's /metrics as
Prometheus will store it, and a scenario that gives (nearly) every panel something to show.

- ``queries(load_dashboard())``: every PromQL expression of every panel, with its panel;
  ``metric_names``, ``selectors`` and ``grouping_labels`` pull out what an expression reads;
  ``instantiate`` fills in Grafana's variables so that a real Prometheus can run it.
- ``Exposition.parse(text)``: the text format checked by prometheus_client's parser, with the
  sample names as written (the parser renames every counter sample ``<family>_total``, while
  Prometheus stores the name as written, so the dashboard must use the written one).
- ``scenario_config`` and ``drive_scenario``: a node with an RPC hook, and the client, API and
  hook traffic after which the dashboard's selectors find samples.

The PromQL handling is regular expressions, not a parser: enough for the dashboard's own
queries (metric names start with ``centrifugo_``, ``tidings_`` or ``process_``; label matchers
have quoted values; grouping is ``by (...)``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.support.api import ApiTarget, api, api_publish, api_result
from tests.support.raw import JsonWebSocket
from tests.support.server import make_token, unique
from tests.support.timing import T, eventually

__all__ = [
    "DASHBOARD_PATH",
    "Exposition",
    "Matcher",
    "Query",
    "Selector",
    "drive_scenario",
    "grouping_labels",
    "instantiate",
    "load_dashboard",
    "metric_names",
    "panels",
    "queries",
    "rated",
    "scenario_config",
    "selectors",
    "variables",
]

DASHBOARD_PATH = Path(__file__).resolve().parents[2] / "deploy/grafana/tidings-dashboard.json"

_NAME = r"\b(?:centrifugo|tidings|process)_[a-z0-9_]+"
_METRIC = re.compile(_NAME)
_SELECTOR = re.compile(rf"({_NAME})\s*(?:\{{([^}}]*)\}})?")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_RATED = re.compile(rf"\brate\(\s*({_NAME})")
_GROUPING = re.compile(r"\bby\s*\(([^)]*)\)")
_SAMPLE_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{\s]")

Json = dict[str, Any]


# -- the dashboard --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Query:
    panel: str  # the panel's title
    ref_id: str
    expr: str


def load_dashboard(path: Path = DASHBOARD_PATH) -> Json:
    dashboard = json.loads(path.read_text())
    assert isinstance(dashboard, dict), path
    return dashboard


def panels(dashboard: Json) -> Iterator[Json]:
    """Every panel, rows included, and the panels inside collapsed rows."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", ())


def queries(dashboard: Json) -> list[Query]:
    return [Query(p["title"], t["refId"], t["expr"])
            for p in panels(dashboard) for t in p.get("targets", ())]


def variables(dashboard: Json) -> dict[str, Json]:
    return {v["name"]: v for v in dashboard["templating"]["list"]}


def instantiate(expr: str, *, instance: str = ".*", quantile: str = "0.99",
                rate_interval: str = "10s") -> str:
    """``expr`` with Grafana's variables filled in, as Grafana sends it to Prometheus."""
    out = expr.replace("$__rate_interval", rate_interval)
    return out.replace("$instance", instance).replace("$quantile", quantile)


# -- what an expression reads ---------------------------------------------------------------------

@dataclass(frozen=True)
class Matcher:
    label: str
    op: str  # =, !=, =~, !~
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.label, "")  # an absent label matches as ""
        if self.op in ("=", "!="):
            return (actual == self.value) == (self.op == "=")
        return (re.fullmatch(self.value, actual) is not None) == (self.op == "=~")


@dataclass(frozen=True)
class Selector:
    metric: str
    matchers: tuple[Matcher, ...] = ()

    def __str__(self) -> str:
        inner = ", ".join(f'{m.label}{m.op}"{m.value}"' for m in self.matchers)
        return f"{self.metric}{{{inner}}}" if inner else self.metric

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)


def metric_names(expr: str) -> set[str]:
    return set(_METRIC.findall(expr))


def selectors(expr: str) -> list[Selector]:
    return [Selector(name, tuple(Matcher(*m) for m in _MATCHER.findall(inner or "")))
            for name, inner in _SELECTOR.findall(expr)]


def rated(expr: str) -> set[str]:
    """The metrics read through ``rate(...)``: they must be counters."""
    return set(_RATED.findall(expr))


def grouping_labels(expr: str) -> set[str]:
    """The labels of every ``by (...)`` clause."""
    return {label.strip() for group in _GROUPING.findall(expr)
            for label in group.split(",") if label.strip()}


# -- the exposition -------------------------------------------------------------------------------

_SUFFIXES = {"counter": ("",), "gauge": ("",), "untyped": ("",), "unknown": ("",),
             "summary": ("", "_sum", "_count"), "histogram": ("_bucket", "_sum", "_count")}


@dataclass
class Exposition:
    """``types``: each family as its ``# TYPE`` line declares it; ``samples``: the label sets
    of each sample name as written in the text."""

    types: dict[str, str] = field(default_factory=dict)
    samples: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Exposition:
        out = cls()
        written: set[str] = set()
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ", 3)
                out.types[name] = kind
            elif m := _SAMPLE_LINE.match(line):
                written.add(m.group(1))
        for family in text_string_to_metric_families(text):  # raises on a malformed text
            for sample in family.samples:
                # Written as `<family>` or `<family>_total`: the parser says `_total` for both.
                name = sample.name if sample.name in written else sample.name.removesuffix(
                    "_total")
                assert name in written, (family.name, sample.name)
                out.samples.setdefault(name, []).append(dict(sample.labels))
        return out

    def kind(self, name: str) -> tuple[str, str] | None:
        """The type of the family that declares the sample name ``name`` (even with no samples
        yet), and the suffix: ``("histogram", "_bucket")`` for ``h_bucket``, ``("counter", "")``
        for a counter; None when no family declares it."""
        for family, kind in self.types.items():
            for suffix in _SUFFIXES.get(kind, ()):
                if f"{family}{suffix}" == name:
                    return kind, suffix
        return None

    def labels(self, name: str) -> set[str]:
        """Every label name the samples called ``name`` carry."""
        return {label for labels in self.samples.get(name, ()) for label in labels}

    def has_match(self, selector: Selector) -> bool:
        """Whether a sample of this exposition is selected by ``selector`` (labels that
        Prometheus adds, such as ``instance``, should be left out of it)."""
        return any(selector.matches(labels) for labels in self.samples.get(selector.metric, ()))


# -- a scenario that makes (nearly) every dashboard series exist ---------------------------------

def scenario_config(rpc_endpoint: str, *, ping: bool) -> Json:
    """Config overrides: /metrics on (with the HTTP request counter), the RPC hook at
    ``rpc_endpoint`` plus a named proxy nobody listens on (RPC namespace ``dead``); with
    ``ping``, server pings every second."""
    config: Json = {
        "prometheus": {"enabled": True, "instrument_http_handlers": True},
        "rpc": {
            "proxy": {"endpoint": rpc_endpoint, "timeout": "1s"},
            "without_namespace": {"proxy_enabled": True},
            "namespaces": [{"name": "dead", "proxy_enabled": True, "proxy_name": "dead"}],
        },
        "proxies": [{"name": "dead", "endpoint": "http://127.0.0.1:9/dead", "timeout": "1s"}],
    }
    if ping:
        config["client"] = {"ping_interval": "1s"}
    return config


async def drive_scenario(
    ws_url: str,
    api_target: ApiTarget,
    open_ws: Callable[[str], Awaitable[JsonWebSocket]],
    scrape: Callable[[], Awaitable[Exposition]],
    *,
    ping: bool,
) -> JsonWebSocket:
    """Connect (JWT), subscribe, publish (API), a refused subscribe, the RPC hook answered and
    failing, a recovery, a server unsubscribe, a survey (API ``channels``), an API error, a
    bad command (disconnect 3501) and, with ``ping``, a ping/pong. Returns the first client,
    still connected; the others are closed."""
    user, channel = unique("user"), unique("metrics")
    client = await open_ws(ws_url)
    await client.connect(make_token(user))
    epoch = (await client.command(subscribe={"channel": channel}))["subscribe"]["epoch"]
    await api_publish(api_target, channel, {"n": 1})
    await client.push("pub", channel)
    denied = await client.command(subscribe={"channel": "private:x"})
    assert denied["error"]["code"] == 103, denied
    total = await client.command(rpc={"method": "sum", "data": {"numbers": [1, 2]}})
    assert total["rpc"]["data"] == {"sum": 3}, total
    dead = await client.command(rpc={"method": "dead:x"})
    assert dead["error"]["code"] == 100, dead

    other_user = unique("user")
    other = await open_ws(ws_url)
    await other.connect(make_token(other_user))
    recovery = await other.command(
        subscribe={"channel": channel, "recover": True, "epoch": epoch, "offset": 0})
    assert recovery["subscribe"].get("recovered") is True, recovery
    assert len(recovery["subscribe"]["publications"]) == 1, recovery
    await api_result(api_target, "unsubscribe", {"user": other_user, "channel": channel})
    await other.push("unsubscribe", channel)
    await other.close()
    await api_result(api_target, "channels", {})
    bad_request = await api(api_target, "publish", {"channel": "", "data": {}})
    assert bad_request["error"]["code"] == 107, bad_request

    broken = await open_ws(ws_url)
    await broken.send("this is not JSON")
    assert (await broken.expect_close())[0] == 3501

    if ping:
        async def ponged() -> bool:
            # Reading a reply answers the server's pings that came before it.
            await client.command(presence_stats={"channel": channel})
            return "centrifugo_client_ping_pong_duration_seconds_count" in (
                await scrape()).samples

        assert await eventually(ponged, within=3 * T, interval=0.2), "no ping/pong observed"
    return client
