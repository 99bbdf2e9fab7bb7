"""The Redis Streams consumer (``consumers[]`` type ``redis_stream``, CONSUMERS.md §3): entries
added with ``XADD`` to a real Redis reach a centrifuge-python subscriber through a ``tidings
serve`` process; entries added while Tidings is down are read when it is back; an entry whose
publish fails with an internal error stays pending and is claimed again after
``visibility_timeout``."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.api import api_result
from tests.support.redisproc import RedisServer
from tests.support.sdk import Clients, next_item
from tests.support.server import ServerFactory, unique
from tests.support.timing import T, eventually

pytestmark = pytest.mark.sdk(max_retry_delay=1.0)


def stream_consumer(redis: RedisServer, stream: str, **more: Any) -> dict[str, Any]:
    options = {"address": [redis.url], "streams": [stream], "consumer_group": "tidings",
               **more}
    return {"consumers": [{"name": "stream", "enabled": True, "type": "redis_stream",
                           "redis_stream": options}]}


async def test_entries_of_both_shapes_are_published(
        tidings_server: ServerFactory, redis: RedisServer, clients: Clients) -> None:
    stream, channel = unique("commands"), unique("news")
    config = stream_consumer(redis, stream)
    server = tidings_server(config)
    client, _ = await clients.connect(server)
    _, events, _ = await clients.subscribe(client, channel)
    r = redis.client()
    r.xadd(stream, {"method": "publish", "payload": json.dumps({"channel": channel,
                                                                 "data": {"n": 1}})})
    r.xadd(stream, {"payload": json.dumps({"method": "publish", "payload": {
        "channel": channel, "data": {"n": 2}}})})
    r.xadd(stream, {"method": "publish"})  # no payload: dropped (acknowledged)
    r.xadd(stream, {"payload": json.dumps({"method": "publish", "payload": json.dumps(
        {"channel": channel, "data": {"n": 3}})})})
    assert [(await next_item(events.publications)).data for _ in range(3)] == [
        {"n": 1}, {"n": 2}, {"n": 3}]
    assert await eventually(lambda: r.xpending(stream, "tidings")["pending"] == 0)
    # Entries added while no Tidings reads are read when one is back (the group remembers).
    server.stop()
    r.xadd(stream, {"method": "publish", "payload": json.dumps({"channel": channel,
                                                                 "data": {"n": 4}})})
    again = tidings_server(config)
    assert await eventually(lambda: r.xpending(stream, "tidings")["pending"] == 0
                            and r.xinfo_groups(stream)[0]["last-delivered-id"]
                            == r.xinfo_stream(stream)["last-generated-id"])
    history = await api_result(again, "history", {"channel": channel, "limit": 10})
    assert [p["data"] for p in history["publications"]] == [{"n": 4}]  # memory engine: new


async def test_failed_entry_stays_pending_and_is_claimed_again(
        tidings_server: ServerFactory, tmp_path: Any, redis: RedisServer) -> None:
    """The engine's Redis (not the stream's) is away: the publish fails with error 100, the
    entry is not acknowledged; once the engine is back, the claimer takes it again after
    ``visibility_timeout`` and publishes it."""
    stream, channel = unique("commands"), unique("retry")
    with RedisServer(tmp_path, name="engine") as engine:
        server = tidings_server({
            **stream_consumer(redis, stream, visibility_timeout="1s"),
            "engine": {"type": "redis", "redis": {"address": [engine.url],
                                                  "prefix": unique("e")}}})
        r = redis.client()
        engine.stop()
        r.xadd(stream, {"method": "publish", "payload": json.dumps({"channel": channel,
                                                                     "data": "kept"})})
        assert await eventually(lambda: r.xpending(stream, "tidings")["pending"] == 1)
        engine.start()
        assert await eventually(lambda: r.xpending(stream, "tidings")["pending"] == 0,
                                within=3 * T)
        history = await api_result(server, "history", {"channel": channel, "limit": 10})
        assert [p["data"] for p in history["publications"]] == ["kept"]
