"""The real cent 5.2.0 HTTP API client (sync `Client` and `AsyncClient`) against tidings.

Every test runs twice, once per client flavour; the sync client runs in a worker thread so that
raw WebSocket subscribers (for presence/channels) can live on the test's event loop meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TypeVar, cast

import pytest
from cent import (
    AsyncClient,
    BatchRequest,
    BroadcastRequest,
    CentApiResponseError,
    CentRequest,
    CentResult,
    CentUnauthorizedError,
    ChannelsRequest,
    Client,
    HistoryRequest,
    InfoRequest,
    PresenceRequest,
    PresenceStatsRequest,
    PublishRequest,
    PublishResult,
    StreamPosition,
)

from tests.support.raw import json_websocket
from tests.support.server import ServerProcess, make_token
from tests.support.timing import T

R = TypeVar("R", bound=CentResult)


class Api:
    """One cent client (sync or async) behind a single awaitable call."""

    def __init__(self, kind: str, srv: ServerProcess, api_key: str | None = None) -> None:
        key = srv.api_key if api_key is None else api_key
        self.kind = kind
        self.sync = Client(srv.api_url, key, timeout=T) if kind == "sync" else None
        self.aio = AsyncClient(srv.api_url, key, timeout=T) if kind == "async" else None

    async def __call__(self, request: CentRequest[R]) -> R:
        """Calls the client's public method named after the request's API method."""
        if self.aio is not None:
            result = await getattr(self.aio, request.api_method)(request)
        else:
            result = await asyncio.to_thread(getattr(self.sync, request.api_method), request)
        return cast(R, result)

    async def close(self) -> None:
        if self.aio is not None:
            await self.aio.close()
        if self.sync is not None:
            self.sync.close()


@pytest.fixture(params=["sync", "async"])
async def api(request: pytest.FixtureRequest, server: ServerProcess) -> AsyncIterator[Api]:
    client = Api(request.param, server)
    yield client
    await client.close()


@asynccontextmanager
async def ws_subscriber(srv: ServerProcess, user: str, channel: str) -> AsyncIterator[str]:
    """A raw protocol-v2 JSON WebSocket client subscribed to ``channel``; yields its client ID."""
    async with json_websocket(srv.ws_url, proxy=None) as ws:
        connect = {"connect": {"token": make_token(user)}}
        subscribe = {"subscribe": {"channel": channel}}
        connected, subscribed = await ws.commands(connect, subscribe)
        assert "connect" in connected, connected
        assert "subscribe" in subscribed, subscribed
        client_id = connected["connect"]["client"]
        assert isinstance(client_id, str) and client_id
        yield client_id


async def test_publish_offsets_increment(api: Api) -> None:
    first = await api(PublishRequest(channel="pub", data={"n": 1}))
    assert first.offset == 1
    assert first.epoch != ""
    second = await api(PublishRequest(channel="pub", data={"n": 2}, tags={"k": "v"}))
    assert (second.offset, second.epoch) == (2, first.epoch)
    other = await api(PublishRequest(channel="pub_other", data={"n": 1}))
    assert other.offset == 1  # offsets are per channel


async def test_publish_idempotency_key(api: Api) -> None:
    req = PublishRequest(channel="idem", data={"n": 1}, idempotency_key="key-1")
    first = await api(req)
    again = await api(req)
    assert (again.offset, again.epoch) == (first.offset, first.epoch)
    history = await api(HistoryRequest(channel="idem", limit=-1))
    assert [p.offset for p in history.publications] == [1]


async def test_broadcast_to_two_channels(api: Api) -> None:
    await api(PublishRequest(channel="bc_b", data={"before": True}))
    result = await api(BroadcastRequest(channels=["bc_a", "bc_b"], data={"text": "all"}))
    assert len(result.responses) == 2
    assert [r.error for r in result.responses] == [None, None]
    offsets = [r.result.offset if r.result else None for r in result.responses]
    assert offsets == [1, 2]  # in request order; bc_b already had one publication
    for channel, top in (("bc_a", 1), ("bc_b", 2)):
        history = await api(HistoryRequest(channel=channel, limit=-1))
        assert history.offset == top
        assert history.publications[-1].data == {"text": "all"}


async def test_history(api: Api) -> None:
    for n in (1, 2, 3):
        await api(PublishRequest(channel="hist", data={"n": n}, tags={"n": str(n)}))

    full = await api(HistoryRequest(channel="hist", limit=-1))
    assert [(p.offset, p.data) for p in full.publications] == [(n, {"n": n}) for n in (1, 2, 3)]
    assert full.publications[0].tags == {"n": "1"}
    assert full.publications[0].info is None
    assert full.offset == 3
    epoch = full.epoch
    assert epoch != ""

    limited = await api(HistoryRequest(channel="hist", limit=2))
    assert [p.offset for p in limited.publications] == [1, 2]
    reverse = await api(HistoryRequest(channel="hist", limit=2, reverse=True))
    assert [p.offset for p in reverse.publications] == [3, 2]
    since = StreamPosition(offset=1, epoch=epoch)
    after = await api(HistoryRequest(channel="hist", limit=-1, since=since))
    assert [p.offset for p in after.publications] == [2, 3]

    position = await api(HistoryRequest(channel="hist"))  # no limit: position only
    assert (position.publications, position.offset, position.epoch) == ([], 3, epoch)

    with pytest.raises(CentApiResponseError) as exc:
        await api(
            HistoryRequest(channel="hist", limit=-1, since=StreamPosition(offset=1, epoch="x"))
        )
    assert exc.value.code == 112


async def test_presence_and_stats(api: Api, server: ServerProcess) -> None:
    empty = await api(PresenceRequest(channel="room"))
    assert empty.presence == {}
    async with ws_subscriber(server, "42", "room") as c1, ws_subscriber(server, "43", "room") as c2:
        presence = await api(PresenceRequest(channel="room"))
        assert set(presence.presence) == {c1, c2}
        assert {k: (v.user, v.client) for k, v in presence.presence.items()} == {
            c1: ("42", c1),
            c2: ("43", c2),
        }
        stats = await api(PresenceStatsRequest(channel="room"))
        assert (stats.num_clients, stats.num_users) == (2, 2)
        async with ws_subscriber(server, "42", "room"):
            stats = await api(PresenceStatsRequest(channel="room"))
            assert (stats.num_clients, stats.num_users) == (3, 2)


async def test_batch_of_publishes(api: Api) -> None:
    result = await api(
        BatchRequest(
            requests=[
                PublishRequest(channel="batch_a", data={"i": 1}),
                PublishRequest(channel="batch_b", data={"i": 2}),
                PublishRequest(channel="batch_a", data={"i": 3}),
            ]
        )
    )
    assert len(result.replies) == 3
    assert all(isinstance(reply, PublishResult) for reply in result.replies)
    replies = cast(list[PublishResult], result.replies)
    assert [reply.offset for reply in replies] == [1, 1, 2]
    assert replies[0].epoch == replies[2].epoch != ""
    history = await api(HistoryRequest(channel="batch_a", limit=-1))
    assert [p.data for p in history.publications] == [{"i": 1}, {"i": 3}]


async def test_channels(api: Api, server: ServerProcess) -> None:
    await api(PublishRequest(channel="chan_history_only", data={}))  # no subscribers
    async with (
        ws_subscriber(server, "42", "chan_a"),
        ws_subscriber(server, "42", "chan_b"),
        ws_subscriber(server, "43", "chan_b"),
        ws_subscriber(server, "43", "other"),
    ):
        everything = await api(ChannelsRequest())
        counts = {name: info.num_clients for name, info in everything.channels.items()}
        assert counts == {"chan_a": 1, "chan_b": 2, "other": 1}
        matched = await api(ChannelsRequest(pattern="chan_*"))
        assert set(matched.channels) == {"chan_a", "chan_b"}


async def test_info(api: Api) -> None:
    info = await api(InfoRequest())
    assert len(info.nodes) >= 1
    for node in info.nodes:
        assert node.uid != ""
        assert node.name != ""


async def test_command_errors(api: Api) -> None:
    with pytest.raises(CentApiResponseError) as exc:
        await api(PublishRequest(channel="undefined:channel", data={}))
    assert exc.value.code == 102
    assert "unknown channel" in str(exc.value)

    with pytest.raises(CentApiResponseError) as exc:
        await api(PresenceRequest(channel="smallhistory:x"))  # presence off there
    assert exc.value.code == 108
    with pytest.raises(CentApiResponseError) as exc:
        await api(HistoryRequest(channel="private:x", limit=-1))  # no history there
    assert exc.value.code == 108
    with pytest.raises(CentApiResponseError) as exc:
        await api(PublishRequest(channel="news", data=None))  # `data` left out
    assert exc.value.code == 107


async def test_wrong_api_key(api: Api, server: ServerProcess) -> None:
    wrong = Api(api.kind, server, api_key="not-the-key")
    try:
        with pytest.raises(CentUnauthorizedError):
            await wrong(PublishRequest(channel="news", data={"x": 1}))
    finally:
        await wrong.close()
    assert (await api(PublishRequest(channel="news", data={"x": 1}))).offset == 1
