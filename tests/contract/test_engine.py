"""The engine contract (see the guarantees in ``tidings.engine.base``)."""

from __future__ import annotations

import asyncio
import contextlib

import msgspec

from tests.support.engine import EngineEnv
from tidings.engine.base import PublishOptions
from tidings.protocol.messages import ClientInfo, Publication, StreamPosition


def pub(n: int) -> Publication:
    return Publication(data=msgspec.Raw(b'{"n":%d}' % n))


def data_of(p: Publication) -> bytes:
    return bytes(p.data)


async def test_publish_without_history_has_no_offset(engine_env: EngineEnv) -> None:
    await engine_env.engine.subscribe("a")
    position, suppressed = await engine_env.engine.publish("a", pub(1))
    assert position == StreamPosition()
    assert not suppressed
    await engine_env.settle()
    assert [(c, data_of(p)) for c, p, _ in engine_env.events.publications] == [("a", b'{"n":1}')]


async def test_offsets_grow_and_epoch_is_stable(engine_env: EngineEnv) -> None:
    engine = engine_env.engine
    await engine.subscribe("a")
    positions = [(await engine.publish("a", pub(i), engine_env.stream))[0]
                 for i in range(1, 4)]
    assert [p.offset for p in positions] == [1, 2, 3]
    assert len({p.epoch for p in positions}) == 1
    assert positions[0].epoch
    await engine_env.settle()
    delivered = [(p.offset, pos.offset) for _, p, pos in engine_env.events.publications]
    assert delivered == [(1, 1), (2, 2), (3, 3)]


async def test_reading_creates_the_stream_and_its_epoch_sticks(engine_env: EngineEnv) -> None:
    engine = engine_env.engine
    pubs, top = await engine.history("fresh", options=engine_env.opts, limit=0)
    assert pubs == []
    assert top.offset == 0 and top.epoch
    position, _ = await engine.publish("fresh", pub(1), engine_env.stream)
    assert position == StreamPosition(offset=1, epoch=top.epoch)


async def test_history_limit_since_reverse(engine_env: EngineEnv) -> None:
    engine = engine_env.engine
    for i in range(1, 6):
        await engine.publish("h", pub(i), engine_env.stream)
    everything, top = await engine.history("h", options=engine_env.opts, limit=-1)
    assert [p.offset for p in everything] == [1, 2, 3, 4, 5]
    assert top.offset == 5
    first_two, _ = await engine.history("h", options=engine_env.opts, limit=2)
    assert [p.offset for p in first_two] == [1, 2]
    newest_two, _ = await engine.history("h", options=engine_env.opts, limit=2, reverse=True)
    assert [p.offset for p in newest_two] == [5, 4]
    after_two, _ = await engine.history(
        "h", options=engine_env.opts, limit=2, since=StreamPosition(offset=2, epoch=top.epoch)
    )
    assert [p.offset for p in after_two] == [3, 4]
    before_four, _ = await engine.history(
        "h", options=engine_env.opts, limit=-1, since=StreamPosition(offset=4), reverse=True
    )
    assert [p.offset for p in before_four] == [3, 2, 1]
    none, top2 = await engine.history("h", options=engine_env.opts, limit=0)
    assert none == [] and top2 == top
    assert [data_of(p) for p in everything] == [b'{"n":%d}' % i for i in range(1, 6)]


async def test_window_keeps_last_size_items(engine_env: EngineEnv) -> None:
    engine = engine_env.engine
    for i in range(1, 9):
        await engine.publish("w", pub(i), engine_env.stream)
    pubs, top = await engine.history("w", options=engine_env.opts, limit=-1)
    assert [p.offset for p in pubs] == [4, 5, 6, 7, 8]
    assert top.offset == 8
    since_old, _ = await engine.history(
        "w", options=engine_env.opts, limit=-1, since=StreamPosition(offset=1)
    )
    assert [p.offset for p in since_old] == [4, 5, 6, 7, 8]


async def test_ttl_drops_items_but_keeps_position(engine_env: EngineEnv) -> None:
    engine = engine_env.engine
    for i in range(1, 4):
        await engine.publish("t", pub(i), engine_env.stream)
    _, before = await engine.history("t", options=engine_env.opts, limit=0)
    await engine_env.advance(engine_env.opts.ttl + 1)
    pubs, after = await engine.history("t", options=engine_env.opts, limit=-1)
    assert pubs == []
    assert after == before
    position, _ = await engine.publish("t", pub(4), engine_env.stream)
    assert position == StreamPosition(offset=4, epoch=before.epoch)


async def test_meta_ttl_expiry_starts_a_new_epoch(engine_env: EngineEnv) -> None:
    engine = engine_env.engine
    await engine.publish("m", pub(1), engine_env.stream)
    _, before = await engine.history("m", options=engine_env.opts, limit=0)
    await engine_env.advance(engine_env.opts.meta_ttl + 1)
    _, after = await engine.history("m", options=engine_env.opts, limit=0)
    assert after.offset == 0
    assert after.epoch != before.epoch


async def test_remove_history_keeps_position(engine_env: EngineEnv) -> None:
    engine = engine_env.engine
    for i in range(1, 4):
        await engine.publish("r", pub(i), engine_env.stream)
    await engine.remove_history("r")
    pubs, top = await engine.history("r", options=engine_env.opts, limit=-1)
    assert pubs == []
    assert top.offset == 3
    position, _ = await engine.publish("r", pub(4), engine_env.stream)
    assert position.offset == 4 and position.epoch == top.epoch


async def test_idempotency_key_suppresses_repeat(engine_env: EngineEnv) -> None:
    engine = engine_env.engine
    opts = engine_env.opts
    engine_env.set_idempotency_ttl(1)
    await engine.subscribe("i")
    key, key2 = (PublishOptions(history=opts, idempotency_key=k) for k in ("k", "k2"))
    first, suppressed1 = await engine.publish("i", pub(1), key)
    again, suppressed2 = await engine.publish("i", pub(1), key)
    other, _ = await engine.publish("i", pub(2), key2)
    assert (suppressed1, suppressed2) == (False, True)
    assert again == first
    assert other.offset == 2
    await engine_env.settle()
    assert len(engine_env.events.publications) == 2
    await engine_env.advance(2)
    later, suppressed3 = await engine.publish("i", pub(1), key)
    assert not suppressed3 and later.offset == 3


async def test_presence_and_stats(engine_env: EngineEnv) -> None:
    engine = engine_env.engine
    await engine.add_presence("p", "c1", ClientInfo(user="u1", client="c1"))
    await engine.add_presence("p", "c2", ClientInfo(user="u1", client="c2"))
    await engine.add_presence("p", "c3", ClientInfo(user="", client="c3"))
    await engine.add_presence("p", "c3", ClientInfo(user="", client="c3"))  # refresh, not a dup
    presence = await engine.presence("p")
    assert sorted(presence) == ["c1", "c2", "c3"]
    assert presence["c1"].user == "u1"
    stats = await engine.presence_stats("p")
    assert (stats.num_clients, stats.num_users) == (3, 2)
    await engine.remove_presence("p", "c1", "u1")
    await engine.remove_presence("p", "c3", "")
    stats = await engine.presence_stats("p")
    assert (stats.num_clients, stats.num_users) == (1, 1)
    await engine.remove_presence("p", "c2", "u1")
    assert await engine.presence("p") == {}
    empty = await engine.presence_stats("p")
    assert (empty.num_clients, empty.num_users) == (0, 0)


async def test_connection_and_channel_info_come_back(engine_env: EngineEnv) -> None:
    """Presence, joins and a publication's publisher keep their info (raw JSON objects)."""
    engine = engine_env.engine
    info = ClientInfo(user="u", client="c", conn_info=msgspec.Raw(b'{"name":"Ann"}'),
                      chan_info=msgspec.Raw(b'[1,2]'))
    await engine.add_presence("ci", "c", info)
    back = (await engine.presence("ci"))["c"]
    assert msgspec.json.encode(back) == msgspec.json.encode(info)
    await engine.subscribe("ci")
    await engine.publish_join("ci", info)
    await engine.publish("ci", Publication(data=msgspec.Raw(b"{}"), info=info))
    await engine_env.settle()
    assert [msgspec.json.encode(i) for _, i in engine_env.events.joins] == [
        msgspec.json.encode(info)]
    [(_, published, _)] = engine_env.events.publications
    assert published.info is not None
    assert msgspec.json.encode(published.info) == msgspec.json.encode(info)


async def test_join_leave_and_control_reach_the_handler(engine_env: EngineEnv) -> None:
    engine = engine_env.engine
    info = ClientInfo(user="u", client="c")
    await engine.subscribe("j")
    await engine.publish_join("j", info)
    await engine.publish_leave("j", info)
    await engine.publish_control(b"ctl")
    await engine_env.settle()
    assert engine_env.events.joins == [("j", info)]
    assert engine_env.events.leaves == [("j", info)]
    assert engine_env.events.controls == [b"ctl"]


async def test_user_connections_are_counted_up_to_a_limit(engine_env: EngineEnv) -> None:
    engine = engine_env.engine
    assert await engine.add_user_connection("u", "c1", 2)
    assert await engine.add_user_connection("u", "c2", 2)
    assert not await engine.add_user_connection("u", "c3", 2)  # a third is refused
    assert await engine.add_user_connection("u", "c1", 2)  # a counted one refreshes
    assert await engine.add_user_connection("other", "c9", 2)  # users are counted apart
    await engine.remove_user_connection("u", "c1")
    assert await engine.add_user_connection("u", "c3", 2)
    assert not await engine.add_user_connection("u", "c4", 2)
    assert await engine.add_user_connection("u", "c4", 0)  # limit 0: counted unconditionally


async def test_publish_options_delta_reaches_handlers_but_not_history(
    engine_env: EngineEnv,
) -> None:
    engine = engine_env.engine
    await engine.subscribe("d")
    delta = PublishOptions(history=engine_env.opts, delta=True)
    await engine.publish("d", pub(1), delta)
    await engine.publish("d", pub(2), engine_env.stream)
    await engine.publish("d", pub(3), PublishOptions(delta=True))  # outside the stream
    await engine_env.settle()
    assert engine_env.events.deltas == [True, False, True]
    assert [p.offset for _, p, _ in engine_env.events.publications] == [1, 2, 0]
    assert not any(p.delta for _, p, _ in engine_env.events.publications)
    pubs, _ = await engine.history("d", options=engine_env.opts, limit=-1)
    assert [(p.offset, p.delta) for p in pubs] == [(1, False), (2, False)]


async def test_a_started_engine_is_ready_and_a_cancelled_check_harms_nothing(
    engine_env: EngineEnv,
) -> None:
    engine = engine_env.engine
    async with asyncio.timeout(1.0):
        await engine.ready()
    check = asyncio.ensure_future(engine.ready())
    await asyncio.sleep(0)  # under way (a PING sent) when
    check.cancel()  # a caller's deadline passes: the engine keeps working
    with contextlib.suppress(asyncio.CancelledError):
        await check
    position, _ = await engine.publish("r", pub(1), engine_env.stream)
    assert position.offset == 1
    async with asyncio.timeout(1.0):
        await engine.ready()
