"""The Grafana dashboard (deploy/grafana/tidings-dashboard.json) reads what a node exposes.

Grafana's side: the JSON imports into any Grafana 10 (a ``${DS_PROMETHEUS}`` input that every
panel uses, the ``instance`` and ``quantile`` variables, unique ids, no overlapping panels).

The node's side, after a small scenario (tests/support/dashboard.py ``drive_scenario``): every
metric name of every query is a sample name of /metrics as written (what Prometheus stores),
of the right type for how the query reads it (``rate`` of counters, ``histogram_quantile`` of
``_bucket``, ``quantile=`` of Summaries); every label a query matches on or groups by is on
those samples; and every selector finds a sample, except the few in ``NO_SAMPLE``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp

from tests.support.dashboard import (
    Exposition,
    drive_scenario,
    grouping_labels,
    instantiate,
    load_dashboard,
    metric_names,
    panels,
    queries,
    rated,
    scenario_config,
    selectors,
    variables,
)
from tests.support.hookapp import HookBackend
from tests.support.raw import JsonWebSocket
from tests.support.server import ServerFactory

DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
ADDED_BY_PROMETHEUS = {"instance", "job"}
# Selectors the scenario leaves without a sample, and why.
NO_SAMPLE = {
    "centrifugo_broker_redis_pub_sub_errors": "the memory engine has no PUB/SUB connection",
    'centrifugo_client_num_server_disconnects{code="3008"}': "no client is slow",
}


def test_the_dashboard_imports_anywhere() -> None:
    dashboard = load_dashboard()
    assert dashboard["schemaVersion"] >= 38
    assert dashboard["id"] is None and dashboard["uid"]
    [source] = dashboard["__inputs"]
    assert (source["name"], source["type"], source["pluginId"]) == (
        "DS_PROMETHEUS", "datasource", "prometheus")

    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    taken: dict[tuple[int, int], str] = {}
    for panel in panels(dashboard):
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[x, y]}"
                taken[x, y] = panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        targets = panel["targets"]
        assert targets, panel["title"]
        assert len({t["refId"] for t in targets}) == len(targets), panel["title"]
        for target in targets:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]

    found = variables(dashboard)
    instance, quantile = found["instance"], found["quantile"]
    assert instance["type"] == "query" and instance["datasource"] == DATASOURCE
    assert instance["query"]["query"] == "label_values(centrifugo_node_build, instance)"
    assert instance["multi"] and instance["includeAll"]
    assert quantile["type"] == "custom" and quantile["query"] == "0.5,0.99,0.999"
    assert [o["value"] for o in quantile["options"]] == ["0.5", "0.99", "0.999"]
    # Every query filters by node (and Summary quantiles by $quantile).
    for query in queries(dashboard):
        for selector in selectors(query.expr):
            assert 'instance=~"$instance"' in str(selector), (query.panel, query.expr)


async def test_every_query_reads_what_a_node_exposes(
    tidings_server: ServerFactory,
    hook_backend: HookBackend,
    json_ws: Callable[[str], Awaitable[JsonWebSocket]],
    http: aiohttp.ClientSession,
) -> None:
    srv = tidings_server(scenario_config(hook_backend.endpoint("rpc"), ping=True))

    async def scrape() -> Exposition:
        async with http.get(f"{srv.http_url}/metrics") as resp:
            assert resp.status == 200
            return Exposition.parse(await resp.text())

    await drive_scenario(srv.ws_url, srv, json_ws, scrape, ping=True)
    exposition = await scrape()
    dashboard = load_dashboard()
    all_queries = queries(dashboard)
    variable_query = variables(dashboard)["instance"]["query"]["query"]

    # Names: as written in the text (counters without `_total` stay without).
    used: dict[str, set[str]] = {}
    for query in all_queries:
        for name in metric_names(query.expr):
            used.setdefault(name, set()).add(query.panel)
    for name in metric_names(variable_query):
        used.setdefault(name, set()).add("$instance")
    unknown = {name: sorted(where) for name, where in used.items()
               if exposition.kind(name) is None}
    assert not unknown, f"read by the dashboard, not in /metrics: {unknown}"

    # Types: what a query does with a metric suits the metric's type.
    for query in all_queries:
        for name in rated(query.expr):
            kind = exposition.kind(name)
            assert kind is not None and (kind[0] == "counter" or kind[1] in (
                "_count", "_sum", "_bucket")), (query.panel, name, kind)
        if "histogram_quantile" in query.expr:
            assert all(exposition.kind(name) == ("histogram", "_bucket")
                       for name in metric_names(query.expr)), (query.panel, query.expr)
        for selector in selectors(query.expr):
            if any(m.label == "quantile" for m in selector.matchers):
                assert exposition.kind(selector.metric) == ("summary", ""), query.panel

    # Labels: every label matched on or grouped by is on the samples read (when they all
    # have samples: a family without any says nothing about its labels).
    for query in all_queries:
        names = metric_names(query.expr)
        if not all(name in exposition.samples for name in names):
            continue
        available = set(ADDED_BY_PROMETHEUS)
        for name in names:
            available |= exposition.labels(name)
        for selector in selectors(query.expr):
            labels = exposition.labels(selector.metric) | ADDED_BY_PROMETHEUS
            missing = {m.label for m in selector.matchers} - labels
            assert not missing, (query.panel, str(selector), missing)
        missing = grouping_labels(query.expr) - available
        assert not missing, (query.panel, query.expr, missing)

    # Samples: after the scenario every selector finds one, but for the ones listed.
    unmatched: dict[str, str] = {}
    for query in all_queries:
        for selector in selectors(instantiate(query.expr, instance=".*")):
            if not exposition.has_match(selector):
                shown = str(selector).replace('instance=~".*", ', "").replace(
                    '{instance=~".*"}', "")
                unmatched[shown] = query.panel
    assert set(unmatched) == set(NO_SAMPLE), unmatched
