"""The test kit (``tidings.testing``) against the real server it starts in process: the pytest
plugin's fixtures, the sync and async clients, and the assertions, including that each one
fails when it should."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tidings.testing import (
    AsyncLiveServer,
    Closed,
    LiveServer,
    NoPublication,
    ReplyError,
)


def _publish_later(live: LiveServer, channel: str, data: Any) -> threading.Thread:
    thread = threading.Thread(target=live.publish, args=(channel, data))
    thread.start()
    return thread


def test_the_fixture_is_a_started_server_with_random_keys(tidings: LiveServer) -> None:
    assert tidings.ws_url.startswith("ws://127.0.0.1:") and tidings.server.port > 0
    assert len(tidings.token_key) == 64 and tidings.api_key
    assert tidings.settings()["API_URL"] == tidings.api_url


def test_client_receives_live_publications_in_order(tidings: LiveServer) -> None:
    client = tidings.client("alice")
    assert client.client_id
    sub = client.subscribe("news")
    for n in range(3):
        tidings.publish("news", {"n": n})
    assert [sub.next().data for _ in range(3)] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert [p.offset for p in sub.received] == [1, 2, 3]


def test_subscribe_since_recovers_what_came_after_the_position(tidings: LiveServer) -> None:
    tidings.publish("feed", "before")
    position = tidings.position("feed")
    tidings.publish("feed", "after-1")
    tidings.publish("feed", "after-2")
    sub = tidings.client().subscribe("feed", since=position)
    assert sub.recovered and sub.was_recovering
    assert [sub.next().data, sub.next().data] == ["after-1", "after-2"]


def test_next_times_out_naming_what_arrived(tidings: LiveServer) -> None:
    sub = tidings.client().subscribe("quiet")
    tidings.publish("quiet", {"other": 1})
    with pytest.raises(NoPublication, match=r"\{'want': 1\} on channel 'quiet' did not arrive "
                                            r"within 0.2 s; received: \{'other': 1\}"):
        sub.expect({"want": 1}, timeout=0.2)


def test_refused_commands_and_bad_tokens_raise(tidings: LiveServer) -> None:
    client = tidings.client()
    with pytest.raises(ReplyError) as refused:
        client.subscribe("nosuchns:x")
    assert refused.value.code == 102  # unknown namespace
    with pytest.raises(Closed) as closed:
        tidings.client(token="not-a-jwt")
    assert closed.value.code == 3500


def test_expect_publication_passes_for_a_publication_made_in_the_block(
        tidings: LiveServer) -> None:
    with tidings.expect_publication("news", {"text": "hi"}) as sub:
        tidings.publish("news", {"text": "first"})
        _publish_later(tidings, "news", {"text": "hi"}).join()
    assert [p.data for p in sub.received] == [{"text": "first"}, {"text": "hi"}]
    with tidings.expect_publication("news", match=lambda d: d["n"] > 1):
        tidings.publish("news", {"n": 2})


def test_expect_publication_fails_without_one(tidings: LiveServer) -> None:
    with pytest.raises(NoPublication, match="'news' did not arrive"), \
            tidings.expect_publication("news", {"text": "hi"}, timeout=0.2):
        tidings.publish("news", {"text": "other"})


def test_expect_publication_subscribes_in_namespaces_closed_to_clients(
        tidings_config: dict[str, Any]) -> None:
    tidings_config["channel"]["namespaces"] = [{"name": "staff"}]  # no client may subscribe
    with LiveServer(tidings_config) as live:
        with pytest.raises(ReplyError):
            live.client().subscribe("staff:news")
        with live.expect_publication("staff:news", "ok"):
            live.publish("staff:news", "ok")


def test_expect_no_publication(tidings: LiveServer) -> None:
    with tidings.expect_no_publication("news"):
        tidings.publish("elsewhere", 1)
    with pytest.raises(NoPublication, match=r"expected no publication on channel 'news'; "
                                            r"received: 'oops'"), \
            tidings.expect_no_publication("news"):
        tidings.publish("news", "oops")
    assert tidings.position("news").offset == 1  # the marker is not kept in history


async def test_async_kit(async_tidings: AsyncLiveServer) -> None:
    client = await async_tidings.client("bob")
    sub = await client.subscribe("news")
    async with async_tidings.expect_publication("news", {"n": 1}):
        await async_tidings.publish("news", {"n": 1})
    assert (await sub.next()).data == {"n": 1}
    async with async_tidings.expect_no_publication("news"):
        pass
    with pytest.raises(NoPublication):
        async with async_tidings.expect_publication("news", timeout=0.2):
            pass
    position = await async_tidings.position("news")
    await async_tidings.publish("news", "later")
    late = await (await async_tidings.client()).subscribe("news", since=position)
    assert (await late.next()).data == "later" and late.recovered
