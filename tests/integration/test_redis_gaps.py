"""Gap detection with the Redis engine: a publication that never reaches a node is noticed from
the offsets, and each positioned subscriber is told to recover instead of silently missing it.

The gap is made for real: the stream's top offset in Redis is bumped behind the server's back,
exactly what a publication lost on the way (e.g. while the pub/sub connection was down) looks
like to the node.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.api import api_publish
from tests.support.redisproc import RedisServer
from tests.support.sdk import Clients, next_item
from tests.support.server import BASE_CONFIG, ServerProcess, deep_merge, start_server, unique


@pytest.fixture
def prefix() -> str:
    return unique("gap")


@pytest.fixture
def node(tmp_path: Path, redis: RedisServer, prefix: str) -> Iterator[ServerProcess]:
    config = deep_merge(BASE_CONFIG, {"engine": {"type": "redis", "redis": {
        "address": [redis.url], "prefix": prefix, "io_timeout": "1s",
    }}})
    server = start_server(tmp_path, config)
    try:
        yield server
    finally:
        server.stop()


def lose_publication(redis: RedisServer, prefix: str, channel: str) -> None:
    with redis.client() as c:
        assert c.hincrby(f"{prefix}.m.{{{channel}}}", "s", 1) > 0


async def test_lost_publication_makes_subscriber_recover(
    node: ServerProcess, redis: RedisServer, prefix: str, clients: Clients
) -> None:
    client, _ = await clients.connect(node)
    _, events, ctx = await clients.subscribe(client, "g")
    epoch = ctx.stream_position.epoch
    for n in (1, 2):
        assert (await api_publish(node, "g", {"n": n}))["offset"] == n
        assert (await next_item(events.publications)).offset == n
    lose_publication(redis, prefix, "g")  # offset 3 "never arrives"
    assert (await api_publish(node, "g", {"n": 4}))["offset"] == 4

    # The node does not deliver 4 after 2: it unsubscribes with 2500, the SDK resubscribes
    # from offset 2 and learns that 3 cannot be recovered.
    resubscribing: Any = await next_item(events.subscribing, lambda ctx: ctx.code != 0)
    assert resubscribing.code == 2500
    resub: Any = await next_item(events.subscribed)
    assert (resub.was_recovering, resub.recovered) == (True, False)
    assert resub.stream_position.epoch == epoch
    assert node.wait_log("publications 3..3 never arrived")

    # Afterwards the subscription is live and gapless again.
    assert (await api_publish(node, "g", {"n": 5}))["offset"] == 5
    got = await next_item(events.publications)
    assert (got.offset, got.data) == (5, {"n": 5})


async def test_other_subscribers_and_unpositioned_channels_are_untouched(
    node: ServerProcess, redis: RedisServer, prefix: str, clients: Clients
) -> None:
    client, _ = await clients.connect(node)
    _, gap_events, _ = await clients.subscribe(client, "g2")
    _, calm_events, _ = await clients.subscribe(client, "calm")
    await api_publish(node, "g2", {"n": 1})
    await next_item(gap_events.publications)
    lose_publication(redis, prefix, "g2")
    await api_publish(node, "g2", {"n": 3})
    assert (await next_item(gap_events.subscribing, lambda ctx: ctx.code != 0)).code == 2500
    await api_publish(node, "calm", {"n": 1})
    assert (await next_item(calm_events.publications)).data == {"n": 1}
    assert calm_events.unsubscribed.empty()
