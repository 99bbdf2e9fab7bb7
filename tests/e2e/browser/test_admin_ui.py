"""The admin web UI in a real headless Chromium (tests/support/browser.py), against a
two-node Redis-engine cluster with admin enabled on both nodes. Every assertion reads the
page's state (its DOM text), never pixels; real centrifuge-python clients are the users the
admin watches and acts on.

- log in; a wrong password refused, then throttled (a memory-engine server of its own);
- the status page lists both nodes, live;
- an API publication (through node B) shows in the live tail (on node A) within a second;
- presence lists a centrifuge-python client;
- publish from the UI reaches a subscriber; disconnect-user closes it with the chosen code;
- the connections inspector finds a user's connections on both nodes and disconnects one.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from tests.support.admin import ADMIN, ADMIN_PASSWORD
from tests.support.api import api_result
from tests.support.browser import BrowserPage
from tests.support.cluster import node_config, running_nodes
from tests.support.redisproc import RedisServer
from tests.support.sdk import Clients, next_item
from tests.support.server import (
    ServerFactory,
    ServerProcess,
    deep_merge,
    make_token,
    start_server,
    unique,
)
from tests.support.timing import TIMEOUT_FACTOR
from tidings.admin.auth import Throttle

pytestmark = pytest.mark.asyncio(loop_scope="module")  # the browser's pipes live on one loop
Pair = tuple[ServerProcess, ServerProcess]
TAIL_WITHIN = 1.0 * TIMEOUT_FACTOR  # "appears in the live tail within a second"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """Node A and node B on one Redis, admin enabled on both."""
    with RedisServer(tmp_path_factory.mktemp("redis")) as redis:
        tmp = tmp_path_factory.mktemp("nodes")
        prefix = unique("admin")
        configs = [deep_merge(node_config([redis], prefix, name), ADMIN)
                   for name in ("node-a", "node-b")]
        with running_nodes(lambda cfg: start_server(tmp, cfg), configs) as (a, b):
            yield a, b


@pytest_asyncio.fixture(loop_scope="module")
async def clients() -> AsyncIterator[Clients]:
    """centrifuge-python clients (JSON), disconnected at teardown."""
    registry = Clients(max_retry_delay=1.0)
    yield registry
    await registry.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[BrowserPage]:
    """One Chromium for the module (starting one takes seconds)."""
    started = await BrowserPage.start()
    yield started
    await started.close()


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: BrowserPage) -> BrowserPage:
    """A clean page (a new browser context) for each test."""
    await browser.fresh()
    return browser


async def log_in(page: BrowserPage, server: ServerProcess, route: str = "") -> None:
    """Open the UI on ``server`` and log in; lands on ``route`` (e.g. ``#/actions``)."""
    await page.goto(f"{server.http_url}/{route}")
    await page.wait("() => !document.getElementById('login').hidden")
    await page.fill("#login-password", ADMIN_PASSWORD)
    await page.click("#login-submit")
    await page.wait("() => !document.getElementById('app').hidden")


async def assert_clean(page: BrowserPage, *allowed: str) -> None:
    """No script error, no console error or warning but ``allowed`` ones, no failed request."""
    diag = await page.diagnostics()
    assert diag["pageErrors"] == [], diag
    assert diag["failed"] == [], diag
    assert [m for m in diag["console"] if not any(a in m for a in allowed)] == [], diag


async def test_status_page_shows_both_nodes_live(
    cluster: Pair, page: BrowserPage, clients: Clients
) -> None:
    a, _ = cluster
    await log_in(page, a)
    assert await page.text("#view h1") == "Cluster status"
    for name in ("node-a", "node-b"):
        row = await page.wait_text(f'#nodes tr[data-node="{name}"]', name)
        assert "redis: ok" in row, row
    assert "2 nodes" in (await page.text("#nodes tfoot") or "")
    assert await page.text("#stat-nodes") == "2"
    # Refreshed live: a client connecting shows in its node's row at the next refresh.
    await clients.connect(a, unique("status"))
    await page.wait(
        "() => Number(document.querySelector('#nodes tr[data-node=\"node-a\"] "
        "td[data-col=clients]').innerText) >= 1", within=10 * TIMEOUT_FACTOR)
    # Messages per second, from two readings of the node's counters.
    await page.wait("() => /\\d/.test(document.querySelector("
                    "'#nodes tr[data-node=\"node-a\"] td[data-col=in]').innerText)",
                    within=10 * TIMEOUT_FACTOR)
    # A phone's screen: nothing wider than the screen but the table, which scrolls.
    await page.viewport(390, 844)
    overflow = await page.evaluate(
        "() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, overflow
    assert await page.texts(".tabs a") == ["Status", "Channels", "Connections", "Actions"]
    await assert_clean(page)


async def test_live_tail_shows_an_api_publication_within_a_second(
    cluster: Pair, page: BrowserPage, clients: Clients
) -> None:
    a, b = cluster
    channel, user = unique("tailed"), unique("joiner")
    await log_in(page, a, f"#/channel/{urllib.parse.quote(channel)}")
    await page.wait_text("#tail-state", "live, through node node-a")
    marker = unique("marker")
    started = time.monotonic()
    published = await api_result(b, "publish", {"channel": channel, "data": {"marker": marker}})
    row = await page.wait_text("#tail-list li[data-kind=publication]", marker, within=TAIL_WITHIN)
    elapsed = time.monotonic() - started
    assert elapsed < TAIL_WITHIN, elapsed
    assert f"offset {published['offset']}" in row, row
    print(f"API publication on node B -> live tail on node A: {elapsed * 1000:.0f} ms")
    # Joins and leaves, as they happen (the channel has join_leave on).
    client, _ = await clients.connect(b, user)
    sub, _, _ = await clients.subscribe(client, channel)
    join = await page.wait_text("#tail-list li[data-kind=join]", user)
    assert client.client_id in join, join
    await sub.unsubscribe()
    await page.wait_text("#tail-list li[data-kind=leave]", user)
    assert (await page.text("#tail-count")) == "3 events"
    await assert_clean(page)


async def test_presence_lists_a_centrifuge_python_client(
    cluster: Pair, page: BrowserPage, clients: Clients
) -> None:
    a, b = cluster
    channel, user = unique("present"), unique("visitor")
    # With connection info from its token: it crosses Redis as raw JSON.
    client, events = clients.new(b, make_token(user, info={"name": "Visitor"}))
    await client.connect()
    await next_item(events.connected)
    await clients.subscribe(client, channel)
    await log_in(page, a, f"#/channel/{urllib.parse.quote(channel)}")
    row = await page.wait_text("#presence tbody tr", client.client_id)
    assert user in row and '{"name":"Visitor"}' in row, row
    assert await page.wait_text("#presence-stats", "1 client, 1 user")
    # History, newest first, with offsets.
    for n in (1, 2):
        await api_result(a, "publish", {"channel": channel, "data": {"n": n}})
    await page.click("#history-newest")
    await page.wait("() => document.querySelectorAll('#history tbody tr[data-offset]').length == 2")
    offsets = await page.evaluate(
        "() => [...document.querySelectorAll('#history tbody tr')].map(r => r.dataset.offset)")
    assert offsets == ["2", "1"]
    await assert_clean(page)


async def test_publish_from_the_ui_reaches_a_subscriber(
    cluster: Pair, page: BrowserPage, clients: Clients
) -> None:
    a, b = cluster
    channel = unique("published")
    client, _ = await clients.connect(b, unique("reader"))
    _, events, _ = await clients.subscribe(client, channel)
    await log_in(page, a, f"#/actions?channel={urllib.parse.quote(channel)}")
    assert await page.evaluate("() => document.getElementById('publish-channel').value") == channel
    # The JSON editor refuses what is not JSON.
    await page.fill("#publish-data", '{"oops": ')
    await page.wait_text("#publish-data-hint", "✗")
    assert await page.evaluate("() => document.getElementById('publish-submit').disabled")
    data = {"from": "the admin UI", "n": 7}
    await page.fill("#publish-data", json.dumps(data))
    await page.wait_text("#publish-data-hint", "valid JSON")
    await page.click("#publish-submit")
    answer = json.loads(await page.wait_text("#publish-answer", '"offset"'))
    pub = await next_item(events.publications)
    assert pub.data == data
    assert answer == {"result": {"offset": pub.offset, "epoch": answer["result"]["epoch"]}}
    await assert_clean(page)


async def test_disconnect_user_from_the_ui_closes_the_client_with_the_code(
    cluster: Pair, page: BrowserPage, clients: Clients
) -> None:
    a, b = cluster
    user = unique("leaving")
    _, events = await clients.connect(b, user)
    await log_in(page, a, "#/actions")
    await page.fill("#disconnect-user", user)
    await page.fill("#disconnect-code", "4502")
    await page.fill("#disconnect-reason", "bye from the admin")
    await page.click("#disconnect-submit")
    assert json.loads(await page.wait_text("#disconnect-answer", "result")) == {"result": {}}
    ctx = await next_item(events.disconnected)
    assert (ctx.code, ctx.reason) == (4502, "bye from the admin")
    await assert_clean(page)


async def test_connections_inspector_finds_a_user_and_disconnects_one(
    cluster: Pair, page: BrowserPage, clients: Clients
) -> None:
    a, b = cluster
    user, channel = unique("inspected"), unique("room")
    on_a, events_a = await clients.connect(a, user)
    on_b, events_b = await clients.connect(b, user)
    await clients.subscribe(on_b, channel)
    await log_in(page, a, f"#/connections?user={urllib.parse.quote(user)}")
    await page.wait("() => document.querySelectorAll('#connections tbody tr[data-client]')"
                    ".length == 2")
    rows = {r["client"]: r for r in await _rows(page)}
    assert rows[on_a.client_id]["text"][:3] == ["node-a", on_a.client_id, user]
    assert rows[on_b.client_id]["text"][:6] == ["node-b", on_b.client_id, user, "websocket",
                                                "json", rows[on_b.client_id]["text"][5]]
    assert rows[on_b.client_id]["text"][6] == channel
    assert "ago" in rows[on_b.client_id]["text"][5]
    assert await page.text("#conn-summary") == "2 connections"
    # Disconnect the one on node B, with a code.
    await page.click(f'#connections tr[data-client="{on_b.client_id}"] button')
    await page.fill("#dc-code", "4503")
    await page.click("#dc-submit")
    await page.wait_text("#dc-answer", '"result"')
    ctx = await next_item(events_b.disconnected)
    assert ctx.code == 4503
    await page.wait("() => document.querySelectorAll('#connections tbody tr[data-client]')"
                    ".length == 1")
    assert events_a.disconnected.empty()
    await assert_clean(page)


async def _rows(page: BrowserPage) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await page.evaluate(
        "() => [...document.querySelectorAll('#connections tbody tr[data-client]')].map(r => "
        "({client: r.dataset.client, text: [...r.cells].map(c => c.innerText.trim())}))")
    return rows


async def test_log_in_refuses_a_wrong_password_then_throttles(
    tidings_server: ServerFactory, page: BrowserPage
) -> None:
    server = tidings_server(ADMIN)  # its own: the throttle counts this address's failures
    await log_in(page, server)
    await page.wait("() => document.querySelectorAll('#nodes tbody tr[data-node]').length == 1")
    await page.click("#logout")
    await page.wait("() => !document.getElementById('login').hidden")

    async def attempt(password: str, expect: str) -> None:
        await page.evaluate("() => { document.getElementById('login-error').textContent = ''; }")
        await page.fill("#login-password", password)
        await page.click("#login-submit")
        await page.wait_text("#login-error", expect)

    for i in range(Throttle.FREE):
        await attempt(f"wrong {i}", "Wrong password.")
    # Throttled: even the right password is refused for now, and the page says so.
    await attempt(ADMIN_PASSWORD, "Too many wrong passwords: try again in")
    assert await page.evaluate("() => document.getElementById('app').hidden")
    assert await page.evaluate("() => localStorage.getItem('tidings-admin-token')") is None
    await assert_clean(page, "400 (Bad Request)", "429 (Too Many Requests)")
