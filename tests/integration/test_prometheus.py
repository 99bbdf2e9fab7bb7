"""A real Prometheus (Debian's 2.42, tests/support/prometheus.py) scrapes a node's internal
listener every second and answers the dashboard's PromQL.

First the basics by hand: the target is up, ``sum(centrifugo_node_num_clients)`` is 1 with one
client connected, and ``rate`` of a counter gives a series per command. Then every query of
deploy/grafana/tidings-dashboard.json, with Grafana's variables filled in: Prometheus accepts
each, and each whose selectors all find a sample on the node's own /metrics returns a series.
Last, the alerting rules of docs/monitoring.md load (``promtool check rules``).
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.api import ApiEndpoint, api_publish
from tests.support.dashboard import (
    Exposition,
    drive_scenario,
    instantiate,
    load_dashboard,
    queries,
    scenario_config,
    selectors,
    variables,
)
from tests.support.hookapp import HookBackend
from tests.support.prometheus import PROMETHEUS, PrometheusServer
from tests.support.raw import JsonWebSocket
from tests.support.server import ServerFactory, ServerProcess, deep_merge, make_token, unique
from tests.support.timing import T, eventually

INTERNAL: dict[str, Any] = {
    "http_server": {"internal_port": 0},  # Prometheus scrapes the internal listener
    "prometheus": {"enabled": True},
}
RATE_INTERVAL = "10s"  # $__rate_interval: ten scrapes
# Panels with a selector that finds no sample on the node after the scenario (no Redis, no
# slow client, no fast pings: see tests/integration/test_dashboard.py).
NO_SAMPLE = {"Redis PUB/SUB errors", "Slow-consumer disconnects (3008)", "Ping/pong time"}

Opener = Callable[[str], Awaitable[JsonWebSocket]]


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[ServerProcess], PrometheusServer]]:
    """Factory: a Prometheus scraping the node's internal listener, stopped (by its PID) at
    teardown. Blocks until the node's target is up; call it with ``asyncio.to_thread``."""
    started: list[PrometheusServer] = []

    def factory(node: ServerProcess) -> PrometheusServer:
        port = node.internal.rsplit(":", 1)[1]
        prom = PrometheusServer(tmp_path, targets=[f"127.0.0.1:{port}"],
                                name=f"prometheus-{len(started)}")
        started.append(prom)
        prom.start()
        prom.wait_targets_up()
        return prom

    yield factory
    for prom in started:
        prom.stop()


def internal_api(node: ServerProcess) -> ApiEndpoint:
    return ApiEndpoint(f"{node.internal_url}/api", node.api_key)


async def test_prometheus_scrapes_a_node(
    tidings_server: ServerFactory, json_ws: Opener,
    prometheus: Callable[[ServerProcess], PrometheusServer],
) -> None:
    node = tidings_server(INTERNAL)
    channel = unique("news")
    client = await json_ws(node.ws_url)
    await client.connect(make_token(unique("user")))
    await client.command(subscribe={"channel": channel})
    await api_publish(internal_api(node), channel, {"n": 1})
    await client.push("pub", channel)
    prom = await asyncio.to_thread(prometheus, node)

    async def query(expr: str) -> list[dict[str, Any]]:
        return await asyncio.to_thread(prom.query, expr)

    [up] = await query('up{job="tidings"}')
    assert up["value"][1] == "1"

    async def one_client() -> bool:
        result = await query("sum(centrifugo_node_num_clients)")
        return [r["value"][1] for r in result] == ["1"]

    assert await eventually(one_client, within=2 * T, interval=0.5)

    methods: set[str] = set()

    async def command_rates() -> bool:
        result = await query(
            "sum(rate(centrifugo_client_command_duration_seconds_count[10s])) by (method)")
        methods.update(r["metric"]["method"] for r in result)
        return {"connect", "subscribe"} <= methods

    assert await eventually(command_rates, within=3 * T, interval=0.5), methods


async def test_every_dashboard_query_runs(
    tidings_server: ServerFactory, hook_backend: HookBackend, json_ws: Opener,
    http: aiohttp.ClientSession, prometheus: Callable[[ServerProcess], PrometheusServer],
) -> None:
    # No fast pings here: the client reads nothing while Prometheus is polled.
    config = deep_merge(scenario_config(hook_backend.endpoint("rpc"), ping=False), INTERNAL)
    node = tidings_server(config)

    async def scrape() -> Exposition:
        async with http.get(f"{node.internal_url}/metrics") as resp:
            assert resp.status == 200
            return Exposition.parse(await resp.text())

    await drive_scenario(node.ws_url, internal_api(node), json_ws, scrape, ping=False)
    exposition = await scrape()
    prom = await asyncio.to_thread(prometheus, node)
    dashboard = load_dashboard()

    # $instance lists the node, as Grafana's label_values(centrifugo_node_build, instance) does.
    assert "label_values(centrifugo_node_build, instance)" == variables(dashboard)[
        "instance"]["query"]["query"]
    [instance] = await asyncio.to_thread(prom.label_values, "instance", "centrifugo_node_build")
    assert instance.endswith(node.internal.rsplit(":", 1)[1])

    exprs = {q.expr: q.panel for q in queries(dashboard)}
    filled = {expr: instantiate(expr, instance=instance.replace(".", "\\\\."),
                                rate_interval=RATE_INTERVAL) for expr in exprs}
    expected = {expr for expr in exprs
                if all(exposition.has_match(s) for s in selectors(instantiate(expr)))}
    assert {exprs[e] for e in exprs if e not in expected} == NO_SAMPLE
    empty: dict[str, str] = {}

    def run_all() -> None:
        empty.clear()
        for expr, panel in exprs.items():
            result = prom.query(filled[expr])  # PrometheusError if Prometheus refuses it
            if expr in expected and not result:
                empty[panel] = filled[expr]

    async def all_answer() -> bool:
        await asyncio.to_thread(run_all)
        return not empty

    assert await eventually(all_answer, within=3 * T, interval=0.5), empty


def test_the_documented_alert_rules_load(tmp_path: Path) -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "monitoring.md"
    [rules] = re.findall(r"```yaml\n(groups:.*?)```", docs.read_text(), re.S)
    path = tmp_path / "rules.yml"
    path.write_text(rules)
    promtool = str(Path(PROMETHEUS).with_name("promtool"))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=2 * T, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {rules.count('- alert:')} rules found" in done.stdout, done.stdout
