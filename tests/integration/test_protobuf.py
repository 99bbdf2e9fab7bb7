"""The Protobuf protocol (``centrifuge-protobuf`` WebSocket subprotocol) with the real
centrifuge-python client in Protobuf mode, beside JSON clients on the same channels."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import aiohttp
import pytest
import websockets
from centrifuge import ReplyError, StreamPosition
from centrifuge.protocol import client_pb2 as pbm
from websockets.typing import Subprotocol

from tests.support.api import api, api_publish
from tests.support.protobuf import delimited, replies
from tests.support.sdk import Clients, drop_transport, next_item
from tests.support.server import BASE_CONFIG, ServerFactory, ServerProcess, make_token
from tests.support.timing import T


async def test_protobuf_and_json_clients_share_a_channel(
    server: ServerProcess, pb: Clients, clients: Clients
) -> None:
    pclient, _ = await pb.connect(server, user="p")
    jclient, _ = await clients.connect(server, user="j")
    psub, pevents, pctx = await pb.subscribe(pclient, "mixed")
    _, jevents, _ = await clients.subscribe(jclient, "mixed")
    assert pctx.recoverable is True
    assert (await api_publish(server, "mixed", {"n": 1}))["offset"] == 1
    ppub, jpub = await next_item(pevents.publications), await next_item(jevents.publications)
    assert (ppub.offset, json.loads(ppub.data)) == (1, {"n": 1})  # raw bytes in Protobuf
    assert (jpub.offset, jpub.data) == (1, {"n": 1})
    await psub.publish(data=b'{"from":"protobuf"}')
    assert json.loads((await next_item(pevents.publications)).data) == {"from": "protobuf"}
    assert (await next_item(jevents.publications)).data == {"from": "protobuf"}
    stats = await psub.presence_stats()
    assert (stats.num_clients, stats.num_users) == (2, 2)
    presence = await psub.presence()
    assert {info.user for info in presence.clients.values()} == {"p", "j"}
    history = await psub.history(limit=-1)
    assert [p.offset for p in history.publications] == [1, 2]
    assert history.epoch == pctx.stream_position.epoch


async def test_protobuf_recovery_after_dropped_connection(
    server: ServerProcess, pb: Clients
) -> None:
    client, events = await pb.connect(server)
    _, sub_events, _ = await pb.subscribe(client, "precover")
    await api_publish(server, "precover", "one")
    assert (await next_item(sub_events.publications)).offset == 1
    release = await drop_transport(client, events)
    for n in (2, 3):
        await api_publish(server, "precover", n)
    release()
    resub = await next_item(sub_events.subscribed)
    assert (resub.was_recovering, resub.recovered) == (True, True)
    missed = [await next_item(sub_events.publications) for _ in range(2)]
    assert [(p.offset, json.loads(p.data)) for p in missed] == [(2, 2), (3, 3)]


async def test_protobuf_join_leave_and_server_disconnect(
    server: ServerProcess, pb: Clients
) -> None:
    watcher, _ = await pb.connect(server, user="w")
    _, wevents, _ = await pb.subscribe(watcher, "pjl")
    other, oevents = await pb.connect(server, user="o")
    await pb.subscribe(other, "pjl")
    join = await next_item(wevents.joins, lambda info: info.user == "o")
    assert join.client == other.client_id
    reply = await api(server, "disconnect", {"user": "o"})
    assert "result" in reply
    gone = await next_item(oevents.disconnected)
    assert gone.code == 3503
    leave = await next_item(wevents.leaves, lambda info: info.user == "o")
    assert leave.client == other.client_id


async def test_malformed_protobuf_frame_is_3501(server: ServerProcess) -> None:
    protocols = [Subprotocol("centrifuge-protobuf")]
    async with websockets.connect(server.ws_url, subprotocols=protocols) as ws:
        assert ws.subprotocol == "centrifuge-protobuf"
        await ws.send(b"\x05\xff\xff")  # a length prefix past the end
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), T)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 3501


async def test_protobuf_recovery_position_from_get_state(
    server: ServerProcess, pb: Clients
) -> None:
    for n in range(1, 4):
        await api_publish(server, "pstate", n)
    client, _ = await pb.connect(server)
    epoch = (await api(server, "history", {"channel": "pstate", "limit": 0}))["result"]["epoch"]

    async def get_state(_: str) -> StreamPosition:
        return StreamPosition(offset=1, epoch=epoch)

    _, events, ctx = await pb.subscribe(client, "pstate", get_state=get_state)
    assert (ctx.was_recovering, ctx.recovered) == (True, True)
    got = [await next_item(events.publications) for _ in range(2)]
    assert [json.loads(p.data) for p in got] == [2, 3]


async def test_protobuf_over_http_streaming_emulation(
    tidings_server: ServerFactory,
) -> None:
    srv = tidings_server({"http_stream": {"enabled": True}})
    octets = {"Content-Type": "application/octet-stream"}
    connect = pbm.Command(id=1, connect=pbm.ConnectRequest(token=make_token("hp")))
    async with aiohttp.ClientSession() as http, http.post(
        f"{srv.http_url}/connection/http_stream", data=delimited(connect), headers=octets,
    ) as stream:
        assert stream.status == 200
        assert stream.headers["Content-Type"] == "application/octet-stream"
        buffer = b""

        async def next_replies() -> list[Any]:
            nonlocal buffer
            async with asyncio.timeout(T):
                buffer += await stream.content.readany()
            # whole messages only: the varint prefix tells
            try:
                found = replies(buffer)
            except Exception:
                return []
            buffer = b""
            return found

        first: list[Any] = []
        while not first:
            first = await next_replies()
        result = first[0].connect
        assert result.session and result.node
        subscribe = pbm.Command(id=2, subscribe=pbm.SubscribeRequest(channel="hp"))
        request = pbm.EmulationRequest(session=result.session, node=result.node,
                                       data=delimited(subscribe))
        async with http.post(f"{srv.http_url}/emulation", data=request.SerializeToString(),
                             headers=octets) as resp:
            assert resp.status == 204
        seen: list[Any] = []
        while not any(r.id == 2 for r in seen):
            seen += await next_replies()
        await api_publish(srv, "hp", {"over": "stream"})
        pubs: list[Any] = []
        while not pubs:
            pubs = [r.push.pub for r in await next_replies() if r.push.HasField("pub")]
    assert json.loads(pubs[0].data) == {"over": "stream"} and pubs[0].offset == 1


async def test_binary_data_stays_in_binary_channels(
    tidings_server: ServerFactory, pb: Clients
) -> None:
    binary_ns = {"name": "bin", "publication_data_format": "binary",
                 "allow_subscribe_for_client": True, "allow_publish_for_subscriber": True}
    srv = tidings_server({"channel": {"namespaces": [*BASE_CONFIG["channel"]["namespaces"],
                                                     binary_ns]}})
    client, _ = await pb.connect(srv)
    sub, events, _ = await pb.subscribe(client, "bin:raw")
    blob = bytes(range(256))
    reply = await api(srv, "publish", {"channel": "bin:raw",
                                       "b64data": base64.b64encode(blob).decode()})
    assert "result" in reply
    assert (await next_item(events.publications)).data == blob  # byte for byte
    await sub.publish(data=b"\x00\xffraw")
    assert (await next_item(events.publications)).data == b"\x00\xffraw"
    # Outside binary channels: an API b64data that is not JSON, or a Protobuf client's
    # non-JSON data, is refused (107): JSON subscribers could not read it.
    refused = await api(srv, "publish", {"channel": "plain",
                                         "b64data": base64.b64encode(blob).decode()})
    assert refused["error"]["code"] == 107
    _, _, _ = await pb.subscribe(client, "plain")
    plain = client.get_subscription("plain")
    with pytest.raises(ReplyError) as err:
        await plain.publish(data=b"\x00not json")
    assert err.value.code == 107
