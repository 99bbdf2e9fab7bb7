"""Core behaviour in process: a node on the test's loop, clients on fake sockets (no server
process, no network), so each case runs in milliseconds."""

from __future__ import annotations

import time

from tests.support.inprocess import (
    InProcessServer,
    in_process_server,
    settle,
    websocket,
)
from tests.support.server import make_token
from tidings.engine.base import PublishOptions
from tidings.protocol.kinds import Kind
from tidings.protocol.messages import ClientInfo, Publication, Raw


async def publish(server: InProcessServer, channel: str, n: int) -> None:
    node = server.node
    opts = node.rules.options(channel)
    await node.channels.publish(channel, Publication(data=Raw(b'{"n":%d}' % n)), opts)


def publications(pushes: list[dict[str, object]], channel: str) -> list[object]:
    return [p["pub"]["data"] for p in pushes  # type: ignore[index]
            if p.get("channel") == channel and "pub" in p]


async def test_fan_out_frames_once_and_writes_the_same_bytes(server: InProcessServer) -> None:
    clients = [await websocket(server, make_token(str(i))) for i in range(5)]
    for ws in clients:
        ws.command(subscribe={"channel": "news"})
    await settle()
    marks = [len(ws.transport.written) for ws in clients]
    await publish(server, "news", 1)
    await settle()
    written = [ws.transport.written[mark:] for ws, mark in zip(clients, marks, strict=True)]
    assert all(len(w) == 1 for w in written)
    first = written[0][0]
    assert all(w[0] is first for w in written), "one framed bytes object shared by all"
    assert all(publications(ws.pushes(), "news") == [{"n": 1}] for ws in clients)


async def test_subscribe_reply_comes_before_a_publication_made_meanwhile(
    server: InProcessServer,
) -> None:
    """A publication made while a subscribe is between its stream read and its reply is
    buffered and delivered after the reply, once (sync-on-subscribe)."""
    node = server.node
    ws = await websocket(server, make_token("1"))
    add_presence = node.engine.add_presence

    async def add_presence_then_publish(channel: str, client_id: str,
                                        info: ClientInfo) -> None:
        await add_presence(channel, client_id, info)
        await publish(server, channel, 2)  # after the stream read, before the reply

    await publish(server, "news", 1)
    node.engine.add_presence = add_presence_then_publish  # type: ignore[method-assign]
    cmd_id = ws.command(subscribe={"channel": "news"})
    await settle()
    messages = ws.messages()
    reply_at = next(i for i, m in enumerate(messages) if m.get("id") == cmd_id)
    pubs = [(i, m["push"]["pub"]) for i, m in enumerate(messages)
            if "push" in m and "pub" in m["push"]]
    assert messages[reply_at]["subscribe"]["offset"] == 1
    assert [(p["offset"], p["data"]) for _, p in pubs] == [(2, {"n": 2})]
    assert pubs[0][0] > reply_at


async def test_a_burst_leaves_in_one_write_per_connection(server: InProcessServer) -> None:
    ws = await websocket(server, make_token("1"))
    ws.command(subscribe={"channel": "news"})
    await settle()
    mark = len(ws.transport.written)
    rounds = server.node.writer.rounds
    for n in range(5):  # one loop iteration: the flush round has not run yet
        await server.node.engine.publish("news", Publication(data=Raw(b'{"n":%d}' % n)),
                                         PublishOptions())
    await settle()
    assert server.node.writer.rounds == rounds + 1
    assert len(ws.transport.written[mark:]) == 1
    assert publications(ws.pushes(), "news") == [{"n": n} for n in range(5)]
    stats = server.node.transport_stats[Kind.WEBSOCKET]
    assert stats[0] >= 5  # messages counted, not writes


async def test_timers_ping_and_judge_pongs(server: InProcessServer) -> None:
    now = time.time()
    quiet = await websocket(server, make_token("quiet"))  # never answers pings
    polite = await websocket(server, make_token("polite"))
    timers = server.node.timers
    for tick in range(1, 27):  # 26 s: every client pinged once (ping_interval 25 s)
        timers.tick(tick, now + tick)
        await settle()
        ws = polite.protocol.ws
        if ws is not None and ws.client.session.awaiting_pong:
            polite.send(b"{}")  # the pong
    await settle()
    assert {} in quiet.messages() and {} in polite.messages(), "both pinged"
    for tick in range(27, 40):  # the pong deadline (8 s) passes
        timers.tick(tick, now + tick)
    await settle()
    assert quiet.close_code() == 3012
    assert polite.close_code() is None


async def test_timers_close_stale_and_expired_connections() -> None:
    async with in_process_server({"client": {"ping_interval": "0s",
                                             "expired_close_delay": "0s"}}) as srv:
        now = time.time()
        stale = await websocket(srv)  # never connects
        expiring = await websocket(srv, make_token("exp", exp=int(now) + 30))
        lasting = await websocket(srv, make_token("forever"))
        srv.node.timers.tick(1, now + 11)  # past stale_close_delay (10 s)
        await settle()
        assert (stale.close_code(), expiring.close_code()) == (3502, None)
        srv.node.timers.tick(2, now + 31)
        await settle()
        assert (expiring.close_code(), lasting.close_code()) == (3005, None)


async def test_registry_and_hub_forget_a_closed_client(server: InProcessServer) -> None:
    node = server.node
    ws = await websocket(server, make_token("gone"))
    ws.command(subscribe={"channel": "news"})
    await settle()
    assert "news" in node.channels.hub.channels and node.registry.users.get("gone")
    ws.protocol.connection_lost(None)
    await settle()
    assert "news" not in node.channels.hub.channels
    assert "gone" not in node.registry.users and not node.registry.opened
