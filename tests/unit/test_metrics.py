"""/metrics under Centrifugo's names (METRICS.md §3): every starred family is there with its
type and labels, the exposition parses with prometheus_client's parser, and the values move
with what the node does."""

from __future__ import annotations

import math

from prometheus_client.parser import text_string_to_metric_families

from tests.support.inprocess import InProcessServer, in_process_server, settle, websocket
from tests.support.server import make_token
from tidings.metrics import render
from tidings.metrics.timing import Timing

STARRED = {
    "centrifugo_node_num_clients": "gauge", "centrifugo_node_num_users": "gauge",
    "centrifugo_node_num_subscriptions": "gauge", "centrifugo_node_num_channels": "gauge",
    "centrifugo_node_num_nodes": "gauge", "centrifugo_node_build": "gauge",
    "centrifugo_node_action_count": "counter",
    "centrifugo_node_messages_sent_count": "counter",
    "centrifugo_node_messages_received_count": "counter",
    "centrifugo_node_survey_duration_seconds": "summary",
    "centrifugo_node_broadcast_duration_seconds": "histogram",
    "centrifugo_client_connections_inflight": "gauge",
    "centrifugo_client_command_duration_seconds": "summary",
    "centrifugo_client_num_reply_errors": "counter",
    "centrifugo_client_num_server_unsubscribes": "counter",
    "centrifugo_client_num_server_disconnects": "counter",
    "centrifugo_client_recover": "counter",
    "centrifugo_client_ping_pong_duration_seconds": "histogram",
    "centrifugo_transport_messages_sent": "counter",
    "centrifugo_transport_messages_received": "counter",
    "centrifugo_broker_redis_pub_sub_errors": "counter",
    "centrifugo_broker_redis_pub_sub_dropped_messages": "counter",
    "centrifugo_broker_redis_pub_sub_buffered_messages": "gauge",
    "centrifugo_api_command_duration_seconds": "summary",
    "centrifugo_api_command_errors_total": "counter",
    "centrifugo_proxy_duration_seconds": "summary", "centrifugo_proxy_errors": "counter",
    "centrifugo_proxy_inflight_requests": "gauge",
}


def scrape(server: InProcessServer) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = render(server.node).decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str,
          **labels: str) -> float:
    # The parser names a counter's samples `<family>_total`, whatever the exposition said.
    rows = samples.get(name) or samples.get(f"{name}_total", [])
    return sum(v for lbl, v in rows if all(lbl.get(k) == x for k, x in labels.items()))


async def test_every_starred_family_with_its_type(server: InProcessServer) -> None:
    text = render(server.node).decode()
    found = {f.name: f.type for f in text_string_to_metric_families(text)}
    # The parser strips a counter's `_total`; Centrifugo's counters mostly have none.
    for name, kind in STARRED.items():
        key = name.removesuffix("_total")
        assert found.get(key) == kind, (name, found.get(key))
    assert "process_resident_memory_bytes" in found and "process_cpu_seconds" in found


async def test_values_move_with_the_node(server: InProcessServer) -> None:
    before = scrape(server)
    ws = await websocket(server, make_token("7"))
    ok = ws.command(subscribe={"channel": "news"})
    refused = ws.command(subscribe={"channel": "$secret"})
    ws.command(presence={"channel": "news"})
    await settle()
    assert "subscribe" in ws.reply(ok), ws.messages()
    code = str(ws.reply(refused)["error"]["code"])
    ok_api, _ = await server.state.api.handle_http("publish", b'{"channel":"news","data":{"a":1}}')
    bad_api, _ = await server.state.api.handle_http("publish", b'{"channel":"","data":{}}')
    await settle()
    after = scrape(server)
    assert value(after, "centrifugo_node_num_clients") == 1
    assert value(after, "centrifugo_node_num_subscriptions") == 1
    assert value(after, "centrifugo_client_connections_inflight", transport="websocket") == 1
    assert value(after, "centrifugo_client_num_reply_errors", method="subscribe",
                 code=code) == 1
    assert value(after, "centrifugo_client_command_duration_seconds_count",
                 method="subscribe") == 2
    assert value(after, "centrifugo_transport_messages_received", transport="websocket",
                 frame_type="connect") == 1
    assert value(after, "centrifugo_node_messages_sent_count", type="publication") == 1
    assert value(after, "centrifugo_node_messages_received_count", type="publication") == 1
    assert value(after, "centrifugo_node_broadcast_duration_seconds_count") == 1
    assert value(after, "centrifugo_api_command_duration_seconds_count", method="publish") == 2
    assert value(after, "centrifugo_api_command_errors_total", method="publish") >= 1
    assert value(after, "centrifugo_node_action_count", action="add_subscription") == 1
    assert value(before, "centrifugo_node_action_count", action="add_subscription") == 0
    ws.send(b'{"id":9,"bogus":{}}')  # 3501
    await settle()
    gone = scrape(server)
    assert value(gone, "centrifugo_client_num_server_disconnects", code="3501") == 1
    assert value(gone, "centrifugo_client_connections_inflight", transport="websocket") == 0
    assert ok_api == 200 and bad_api == 200


def test_summary_quantiles_over_the_window() -> None:
    t = Timing()
    assert all(math.isnan(q) for q in t.quantiles(0.0))
    for i in range(1, 101):
        t.observe_at(i / 1000, now=100.0)
    q50, q99, q999 = t.quantiles(100.0)
    assert (q50, q99, q999) == (0.051, 0.1, 0.1)
    assert t.count == 100 and abs(t.sum - 5.05) < 1e-9
    assert all(math.isnan(q) for q in t.quantiles(100.0 + 601))  # out of the window
    assert t.cumulative()[-1] == 100



async def test_opt_in_families() -> None:
    overrides = {"prometheus": {"enabled": True, "instrument_http_handlers": True,
                                "recovered_publications_histogram": True}}
    async with in_process_server(overrides) as srv:
        protocol, transport = srv.connect()
        protocol.data_received(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n"
                               b"GET /nowhere/x HTTP/1.1\r\nHost: t\r\n\r\n")
        await settle(20)
        assert transport.data().count(b"HTTP/1.1 ") == 2
        ws = await websocket(srv, make_token("7"))
        ws.command(subscribe={"channel": "news", "recover": True, "offset": 0, "epoch": "x"})
        await settle()
        samples = scrape(srv)
    assert value(samples, "centrifugo_node_incoming_http_requests_total", path="/health",
                 method="GET", status="200") == 1
    assert value(samples, "centrifugo_node_incoming_http_requests_total", path="other",
                 status="404") == 1
    assert value(samples, "centrifugo_client_recovered_publications_count") == 1
    assert value(samples, "centrifugo_client_recover") == 1


def test_quantiles_merged_over_transports_keep_every_sample() -> None:
    from tidings.metrics.render import _merged

    slow, fast = Timing(), Timing()
    for _ in range(2048):
        slow.observe_at(1.0, now=10.0)
        fast.observe_at(0.001, now=10.0)
    merged = _merged(slow, fast)
    assert merged.count == 4096
    assert merged.quantiles(10.0)[1] == 1.0  # p99 of half 1 s, half 1 ms
