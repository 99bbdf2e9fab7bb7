"""Backend hooks seen through the real centrifuge-python 0.7.0 SDK: a ``tidings serve``
subprocess whose hooks are a ``HookBackend`` (aiohttp, over HTTP, in the test process).

The SDK's ``headers`` option sets real HTTP headers on the WebSocket handshake, so a client
without a token authenticates through the connect hook with a cookie or an ``Authorization``
header, as a browser would (no emulated headers needed). Every wait is bounded (``T``).
"""

from __future__ import annotations

import time

import pytest
from centrifuge import ClientState, ReplyError

from tests.support.api import api_result
from tests.support.hookapp import HookBackend, hook_config
from tests.support.sdk import Clients, next_item
from tests.support.server import ServerFactory, ServerProcess
from tests.support.timing import T, eventually


@pytest.fixture
def hooked(tidings_server: ServerFactory, hook_backend: HookBackend) -> ServerProcess:
    """A server with every hook wired to the hook_backend over HTTP."""
    overrides = hook_config(hook_backend.endpoint)
    overrides["client"]["expired_close_delay"] = "0s"
    return tidings_server(overrides)


async def test_rpc_through_the_hook_with_a_token_connection(
        hooked: ServerProcess, hook_backend: HookBackend, clients: Clients) -> None:
    client, _ = await clients.connect(hooked, "42")
    assert hook_backend.calls["connect"] == 0  # a token connect never asks the connect hook
    result = await client.rpc("math:sum", {"numbers": [1, 2, 3]})
    assert result.data == {"sum": 6}
    with pytest.raises(ReplyError) as refused:
        await client.rpc("other", {})
    assert (refused.value.code, refused.value.message) == (104, "method not found")
    who = await client.rpc("whoami", None)
    assert who.data == {"user": "42", "meta": None}  # no connect hook: no meta
    assert hook_backend.calls["rpc"] == 3
    assert client.state == ClientState.CONNECTED  # a refused rpc leaves the connection be


async def test_publish_hook_rewrites_and_rejects_sdk_publications(
        hooked: ServerProcess, hook_backend: HookBackend, clients: Clients) -> None:
    reader, _ = await clients.connect(hooked, "bob")
    _, reader_events, ctx = await clients.subscribe(reader, "hooked:chat")
    assert ctx.data == {"motd": "hello bob"}  # the subscribe hook's data
    writer, _ = await clients.connect(hooked, "alice")
    sub, writer_events, _ = await clients.subscribe(writer, "hooked:chat")
    await sub.publish({"text": "hi"})
    for events in (reader_events, writer_events):
        pub = await next_item(events.publications)
        assert pub.data == {"text": "HI", "by": "alice"}
        assert pub.tags == {"checked": "yes"}
        assert pub.info is not None and pub.info.user == "alice"
    with pytest.raises(ReplyError) as refused:
        await sub.publish({"text": "spam!"})
    assert (refused.value.code, refused.value.message) == (1000, "spam is not allowed")
    assert hook_backend.calls["publish"] == 2
    # Nothing of the refused one reached anybody: the next publication is the next one seen.
    await sub.publish({"text": "bye"})
    assert (await next_item(reader_events.publications)).data == {"text": "BYE", "by": "alice"}
    history = await api_result(hooked, "history", {"channel": "hooked:chat", "limit": 10})
    assert [p["data"]["text"] for p in history["publications"]] == ["HI", "BYE"]


async def test_sdk_authenticates_through_the_connect_hook_with_a_cookie(
        hooked: ServerProcess, hook_backend: HookBackend, clients: Clients) -> None:
    client, events = clients.new(hooked, headers={"Cookie": "theme=dark; user=carol"})
    await client.connect()
    ctx = await next_item(events.connected)
    assert ctx.data == {"welcome": "carol", "client_name": "python"}
    assert hook_backend.calls["connect"] == 1
    assert "user=carol" in hook_backend.headers["connect"]["cookie"]  # sent on the handshake
    news = await next_item(events.server_subscribed)
    assert news.channel == "news"  # the hook's channels: subscribed server-side
    who = await client.rpc("whoami", None)
    assert who.data == {"user": "carol", "meta": {"tenant": "t1", "expiring": False}}


async def test_refresh_hook_extends_an_sdk_connection_then_expires_it(
        hooked: ServerProcess, hook_backend: HookBackend, clients: Clients) -> None:
    client, events = clients.new(hooked, headers={"Authorization": "Bearer alice"},
                                 data={"mode": "expiring"})
    started = time.monotonic()
    await client.connect()
    first = await next_item(events.connected)
    assert (await client.rpc("whoami", None)).data["user"] == "alice"
    # The connect hook set expire_at to now + 2 (whole seconds: 1-2 s away); at that expiry
    # the server asks the refresh hook, which extends the connection once, by 2 s.
    assert await eventually(lambda: hook_backend.calls["refresh"] == 1, within=T)
    # Up to 2.5 s after the start: past the first expiry (at most 2 s after the hook ran) and
    # before the second (over 3 s after it), the first connection is still up.
    with pytest.raises(TimeoutError):
        await next_item(events.connecting, lambda c: c.code != 0,
                        within=max(0.3, started + 2.5 - time.monotonic()))
    assert client.state == ClientState.CONNECTED and client.client_id == first.client
    states = {"connecting", "connected", "disconnected"}
    assert [e.kind for e in events.log if e.kind in states] == ["connecting", "connected"]
    # The second expiry: the hook answers expired and the server closes with 3005. That code
    # means "reconnect" to the SDK, which connects again through the connect hook.
    expired = await next_item(events.connecting, lambda c: c.code == 3005, within=T)
    assert expired.reason == "connection expired"
    assert time.monotonic() - started > 3.0
    assert hook_backend.calls["refresh"] == 2
    again = await next_item(events.connected)
    assert again.client != first.client
    assert again.data == {"welcome": "alice", "client_name": "python"}
    assert hook_backend.calls["connect"] == 2
    assert not [e for e in events.log if e.kind == "disconnected"]
