"""The internal listener (``http_server.internal_port``), ``/metrics`` and ``/ready``.

With an internal listener, as in Centrifugo, /metrics, /health, /ready and the server API
(unless ``http_api.external``) are served there only and client connections on the public
listener only; the other listener answers 404. Without one, the main listener serves all.
``/ready`` says whether the engine answers: with Redis, 503 while the test's own Redis is
stopped and 200 again once it is back.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.support.cluster import node_config
from tests.support.raw import http_exchange, raw_websocket, upgrade_request
from tests.support.redisproc import RedisServer
from tests.support.server import ServerFactory, ServerProcess, make_token, unique
from tests.support.timing import T, eventually

INTERNAL: dict[str, Any] = {
    "http_server": {"internal_port": 0},  # a free port, as --port 0
    "prometheus": {"enabled": True},
}
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def host_port(hostport: str) -> tuple[str, int]:
    host, port = hostport.rsplit(":", 1)
    return host, int(port)


async def status(http: aiohttp.ClientSession, url: str, *, method: str = "GET",
                 **kwargs: Any) -> int:
    async with http.request(method, url, **kwargs) as resp:
        await resp.read()
        return resp.status


async def api_status(http: aiohttp.ClientSession, srv: ServerProcess, base: str) -> int:
    return await status(http, f"{base}/api/info", method="POST", json={},
                        headers={"X-API-Key": srv.api_key})


async def num_clients(http: aiohttp.ClientSession, url: str) -> float:
    async with http.get(f"{url}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == METRICS_TYPE
        text = await resp.text()
    for family in text_string_to_metric_families(text):
        if family.name == "centrifugo_node_num_clients":
            return float(family.samples[0].value)
    raise AssertionError(f"no centrifugo_node_num_clients in:\n{text[:2000]}")


async def test_internal_routes_answer_on_the_internal_listener_only(
    tidings_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    srv = tidings_server(INTERNAL)
    public, internal = srv.http_url, srv.internal_url
    assert srv.internal != f"{srv.host}:{srv.port}"

    async def one_client() -> bool:
        return await num_clients(http, internal) == 1

    assert await num_clients(http, internal) == 0
    async with raw_websocket(srv.host, srv.port, token=make_token(unique("user"))):
        assert await eventually(one_client)
    for path in ("/metrics", "/health", "/ready"):
        assert await status(http, f"{public}{path}") == 404, path
        assert await status(http, f"{internal}{path}") == 200, path
    # The API goes internal too (Centrifugo's default, http_api.external: false).
    assert await api_status(http, srv, internal) == 200
    assert await api_status(http, srv, public) == 404


async def test_client_endpoints_answer_on_the_public_listener_only(
    tidings_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    srv = tidings_server(INTERNAL)
    host, port = host_port(srv.internal)
    code, _, _ = await http_exchange(host, port, upgrade_request(srv.internal))
    assert code == 404
    code, _, _ = await http_exchange(srv.host, srv.port,
                                     upgrade_request(f"{srv.host}:{srv.port}"))
    assert code == 101
    assert await status(http, f"{srv.internal_url}/connection/websocket") == 404
    assert await status(http, f"{srv.http_url}/connection/websocket") == 426


async def test_http_api_external_keeps_the_api_public(
    tidings_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    srv = tidings_server({**INTERNAL, "http_api": {"external": True}})
    assert await api_status(http, srv, srv.http_url) == 200
    assert await api_status(http, srv, srv.internal_url) == 404
    assert await status(http, f"{srv.http_url}/metrics") == 404


async def test_one_listener_serves_everything_without_an_internal_port(
    tidings_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    srv = tidings_server({"prometheus": {"enabled": True, "handler_prefix": "/prom/"}})
    assert not srv.internal
    assert await status(http, f"{srv.http_url}/prom") == 200
    assert await status(http, f"{srv.http_url}/metrics") == 404
    assert await api_status(http, srv, srv.http_url) == 200
    async with http.get(f"{srv.http_url}/ready") as resp:
        assert (resp.status, await resp.json()) == (200, {"ready": True})
    off = tidings_server()  # prometheus.enabled is false by default
    assert await status(http, f"{off.http_url}/metrics") == 404


async def test_ready_follows_redis(
    tidings_server: ServerFactory, http: aiohttp.ClientSession, redis: RedisServer
) -> None:
    config = node_config([redis], unique("ready"), "ready")
    config["http_server"] = {"internal_port": 0}
    config["prometheus"] = {"enabled": True}
    srv = tidings_server(config=config)
    url = f"{srv.internal_url}/ready"

    async def answer() -> tuple[int, dict[str, Any]]:
        async with http.get(url) as resp:
            body: dict[str, Any] = await resp.json()
            return resp.status, body

    async def is_ready() -> bool:
        return (await answer()) == (200, {"ready": True})

    async def is_not_ready() -> bool:
        code, body = await answer()
        return code == 503 and body["ready"] is False and bool(body["reason"])

    assert await eventually(is_ready, within=2 * T, interval=0.2)
    redis.stop()
    assert await eventually(is_not_ready, within=2 * T, interval=0.2)
    code, body = await answer()
    assert code == 503 and "redis" in body["reason"], body
    assert await status(http, f"{srv.internal_url}/health") == 200  # liveness is unaffected
    redis.start()  # the same port
    assert await eventually(is_ready, within=2 * T, interval=0.2)
    # The lost pub/sub connection is counted (centrifugo_broker_redis_pub_sub_errors).
    async with http.get(f"{srv.internal_url}/metrics") as resp:
        metrics = await resp.text()
    errors = [line for line in metrics.splitlines()
              if line.startswith('centrifugo_broker_redis_pub_sub_errors{')]
    assert any('error="connection_lost"' in line and not line.endswith(" 0") for line in errors)
