"""Fossil delta compression (PROTOCOL.md §6.6): on the wire (raw WebSocket) and through the real
centrifuge-python client, which applies the deltas itself."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
import websockets
from centrifuge import DeltaType
from centrifuge.fossil import apply_delta
from centrifuge.protocol import client_pb2 as pbm
from websockets.typing import Subprotocol

from tests.support.api import api
from tests.support.protobuf import delimited, replies
from tests.support.raw import JsonLines, json_websocket
from tests.support.redisproc import RedisServer
from tests.support.sdk import Clients, next_item
from tests.support.server import (
    BASE_CONFIG,
    ServerFactory,
    ServerProcess,
    deep_merge,
    make_token,
)
from tests.support.timing import T

DELTA_NS = {
    "name": "state",
    "allowed_delta_types": ["fossil"],
    "delta_publish": True,
    "history_size": 20,
    "history_ttl": "300s",
    "force_recovery": True,
    "allow_subscribe_for_client": True,
    "allow_publish_for_subscriber": True,
}


@pytest.fixture
def srv(tidings_server: ServerFactory) -> ServerProcess:
    namespaces = [*BASE_CONFIG["channel"]["namespaces"], DELTA_NS]
    return tidings_server({"channel": {"namespaces": namespaces}, "http_stream": {"enabled": True}})


def state(n: int) -> dict[str, Any]:
    """Similar payloads: a long shared body and a changing counter."""
    return {"counter": n, "title": "scoreboard", "players": [f"player-{i}" for i in range(30)]}


def is_pub(message: dict[str, Any]) -> bool:
    return "pub" in message.get("push", {})


async def test_one_full_then_deltas_on_the_wire(srv: ServerProcess) -> None:
    async with json_websocket(srv.ws_url, token=make_token("d")) as ws:
        sub = await ws.command(subscribe={"channel": "state:x", "delta": "fossil"})
        assert sub["subscribe"]["delta"] is True
        for n in range(1, 11):
            await api(srv, "publish", {"channel": "state:x", "data": state(n)})
        pubs = [(await ws.next(is_pub))["push"]["pub"] for _ in range(10)]
    assert [bool(p.get("delta")) for p in pubs] == [False] + [True] * 9
    assert all(isinstance(p["data"], str) for p in pubs)  # JSON strings, full or delta
    current = pubs[0]["data"].encode()
    assert json.loads(current) == state(1)
    for n, p in enumerate(pubs[1:], start=2):
        patch = p["data"].encode()
        assert len(patch) < len(current) / 3  # worth it
        current = apply_delta(current, patch)
        assert json.loads(current) == state(n)


async def test_without_negotiation_or_delta_publish_data_stays_plain(srv: ServerProcess) -> None:
    async with json_websocket(srv.ws_url, token=make_token("p")) as ws:
        assert "delta" not in (await ws.command(subscribe={"channel": "state:y"}))["subscribe"]
        plain = await ws.command(subscribe={"channel": "plain", "delta": "fossil"})
        assert "delta" not in plain["subscribe"]
        for n in (1, 2):
            await api(srv, "publish", {"channel": "state:y", "data": state(n)})
            await api(srv, "publish", {"channel": "plain", "data": state(n), "delta": True})
        got = [(await ws.next(is_pub))["push"] for _ in range(4)]
    assert all(p["pub"]["data"]["counter"] in (1, 2) and "delta" not in p["pub"] for p in got)


@pytest.mark.parametrize("recover", [False, True])
async def test_centrifuge_python_applies_deltas(
    srv: ServerProcess, clients: Clients, recover: bool
) -> None:
    client, _ = await clients.connect(srv)
    sub, events, _ = await clients.subscribe(client, "state:py", delta=DeltaType.FOSSIL)
    for n in range(1, 6):
        await api(srv, "publish", {"channel": "state:py", "data": state(n)})
    got = [(await next_item(events.publications)).data for _ in range(5)]
    assert got == [state(n) for n in range(1, 6)]
    if recover:
        # History in a delta subscription: recovered publications arrive as full strings,
        # then live deltas continue.
        await sub.unsubscribe()
        for n in range(6, 9):
            await api(srv, "publish", {"channel": "state:py", "data": state(n)})
        await sub.subscribe()  # the SDK resubscribes from offset 5 and recovers 6..8
        ctx = await next_item(events.subscribed)
        assert (ctx.was_recovering, ctx.recovered) == (True, True)
        await api(srv, "publish", {"channel": "state:py", "data": state(9)})
        later = [(await next_item(events.publications)).data for _ in range(4)]
        assert later == [state(n) for n in range(6, 10)]
    await api(srv, "publish", {"channel": "state:py", "data": state(10)})
    assert (await next_item(events.publications)).data == state(10)


async def test_deltas_across_nodes(
    redis: RedisServer, tidings_server: ServerFactory, clients: Clients
) -> None:
    """The publisher's delta request travels through Redis with the publication."""
    namespaces = [*BASE_CONFIG["channel"]["namespaces"], DELTA_NS]
    config = deep_merge(BASE_CONFIG, {
        "channel": {"namespaces": namespaces},
        "engine": {"type": "redis", "redis": {"address": [redis.url], "prefix": "dx"}},
    })
    a, b = tidings_server(config=config), tidings_server(config=config)
    client, _ = await clients.connect(a)
    _, events, _ = await clients.subscribe(client, "state:z", delta=DeltaType.FOSSIL)
    for n in range(1, 5):
        await api(b, "publish", {"channel": "state:z", "data": state(n)})
    got = [(await next_item(events.publications)).data for _ in range(4)]
    assert got == [state(n) for n in range(1, 5)]
    history = await api(b, "history", {"channel": "state:z", "limit": -1})
    pubs = history["result"]["publications"]
    assert [p["data"]["counter"] for p in pubs] == [1, 2, 3, 4]
    assert not any("delta" in p for p in pubs)  # the request marker stays internal


async def test_deltas_over_http_streaming(srv: ServerProcess) -> None:
    async with aiohttp.ClientSession() as http:
        command = json.dumps({"id": 1, "connect": {"token": make_token("hs")}})
        async with http.post(f"{srv.http_url}/connection/http_stream", data=command,
                             headers={"Content-Type": "application/json"}) as stream:
            assert stream.status == 200
            lines = JsonLines(stream, sse=False)
            connect = (await lines.until(lambda m: m.get("id") == 1))["connect"]
            body = {"session": connect["session"], "node": connect["node"], "data": json.dumps(
                {"id": 2, "subscribe": {"channel": "state:h", "delta": "fossil"}})}
            async with http.post(f"{srv.http_url}/emulation", json=body) as resp:
                assert resp.status == 204
            assert (await lines.until(lambda m: m.get("id") == 2))["subscribe"]["delta"] is True
            for n in (1, 2):
                await api(srv, "publish", {"channel": "state:h", "data": state(n)})
            first = (await lines.until(is_pub))["push"]["pub"]
            second = (await lines.until(is_pub))["push"]["pub"]
    assert "delta" not in first and second["delta"] is True
    patched = apply_delta(first["data"].encode(), second["data"].encode())
    assert json.loads(patched) == state(2)


async def test_protobuf_client_applies_raw_deltas(srv: ServerProcess, pb: Clients) -> None:
    client, _ = await pb.connect(srv)
    sub, events, _ = await pb.subscribe(client, "state:pb", delta=DeltaType.FOSSIL)
    for n in range(1, 6):
        await api(srv, "publish", {"channel": "state:pb", "data": state(n)})
    got = [json.loads((await next_item(events.publications)).data) for _ in range(5)]
    assert got == [state(n) for n in range(1, 6)]
    await sub.unsubscribe()
    for n in (6, 7):
        await api(srv, "publish", {"channel": "state:pb", "data": state(n)})
    await sub.subscribe()  # recovers 6 and 7 (raw, in full), then live deltas continue
    assert (await next_item(events.subscribed)).recovered is True
    for n in (8, 9):
        await api(srv, "publish", {"channel": "state:pb", "data": state(n)})
    later = [json.loads((await next_item(events.publications)).data) for _ in range(4)]
    assert later == [state(n) for n in range(6, 10)]


async def test_protobuf_deltas_on_the_wire(srv: ServerProcess) -> None:
    connect = pbm.Command(id=1, connect=pbm.ConnectRequest(token=make_token("w")))
    sub = pbm.Command(id=2, subscribe=pbm.SubscribeRequest(channel="state:w", delta="fossil"))
    async with websockets.connect(srv.ws_url,
                                  subprotocols=[Subprotocol("centrifuge-protobuf")]) as ws:
        await ws.send(delimited(connect, sub))
        seen: list[Any] = []
        pubs: list[Any] = []
        async with asyncio.timeout(T):
            while not any(r.id == 2 for r in seen):
                seen += replies(await _binary(ws))
            assert next(r for r in seen if r.id == 2).subscribe.delta is True
            for n in range(1, 4):
                await api(srv, "publish", {"channel": "state:w", "data": state(n)})
            while len(pubs) < 3:
                pubs += [r.push.pub for r in replies(await _binary(ws)) if r.push.HasField("pub")]
    assert [p.delta for p in pubs] == [False, True, True]
    current = pubs[0].data
    for n, p in enumerate(pubs[1:], start=2):
        assert len(p.data) < len(current) / 3
        current = apply_delta(current, p.data)
        assert json.loads(current) == state(n)


async def _binary(ws: Any) -> bytes:
    message = await ws.recv()
    assert isinstance(message, bytes), "Protobuf travels in binary frames"
    return message
