"""The screenshots of docs/admin.md, taken from the real UI against a real two-node Redis
cluster with real centrifuge-python clients. In the suite they go to a temporary folder and the
test checks that every page was shot; ``scripts/admin_screenshots`` sets
``TIDINGS_ADMIN_SCREENSHOTS`` to ``docs/img`` to refresh the committed ones.

Each page is shot once its data is on it (waits on the DOM, as the UI tests do), so a
screenshot never shows a page still loading.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.support.admin import ADMIN, ADMIN_PASSWORD
from tests.support.api import api_result
from tests.support.browser import BrowserPage
from tests.support.cluster import node_config, running_nodes, wait_cluster
from tests.support.redisproc import RedisServer
from tests.support.sdk import Clients
from tests.support.server import ServerProcess, deep_merge, make_token, start_server
from tests.support.timing import T

OUT = os.environ.get("TIDINGS_ADMIN_SCREENSHOTS", "")
PAGES = ("admin-login", "admin-status", "admin-channels", "admin-channel", "admin-connections",
         "admin-actions", "admin-status-phone", "admin-channel-phone-dark")
pytestmark = pytest.mark.asyncio(loop_scope="module")
CHAT = {"name": "chat", "presence": True, "join_leave": True, "force_push_join_leave": True,
        "history_size": 100, "history_ttl": "3600s", "allow_subscribe_for_client": True,
        "allow_publish_for_subscriber": True, "allow_presence_for_subscriber": True}
PRICES = {"name": "prices", "history_size": 50, "history_ttl": "600s",
          "allow_subscribe_for_client": True}
PEOPLE = {"alice": "Alice Martin", "bob": "Bob Chen", "carol": "Carol Diaz", "dave": "Dave Okafor",
          "erin": "Erin Walsh"}
LOBBY = "chat:lobby"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as redis:
        tmp = tmp_path_factory.mktemp("nodes")
        configs = []
        for name in ("web-1", "web-2"):
            config = deep_merge(node_config([redis], "shots", name), ADMIN)
            config["channel"]["namespaces"] += [CHAT, PRICES]
            configs.append(config)
        with running_nodes(lambda cfg: start_server(tmp, cfg), configs) as nodes:
            yield nodes


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def scene(cluster: list[ServerProcess]) -> AsyncIterator[Clients]:
    """People connected to both nodes, in a few channels, with some history."""
    await wait_cluster(cluster)
    clients = Clients()
    web1, web2 = cluster
    where = {"alice": [web1, web2], "bob": [web2], "carol": [web1], "dave": [web2],
             "erin": [web1]}
    rooms = {"alice": [LOBBY, "news"], "bob": [LOBBY, "prices:btc"], "carol": [LOBBY, "news"],
             "dave": ["chat:support", "news"], "erin": ["news", "prices:btc", "prices:eth"]}
    for user, nodes in where.items():
        for node in nodes:
            token = make_token(user, info={"name": PEOPLE[user]})
            client, events = clients.new(node, token)
            await client.connect()
            await asyncio.wait_for(events.connected.get(), T)
            for channel in rooms[user]:
                await clients.subscribe(client, channel)
    lines = [("alice", "Morning all!"), ("bob", "Hi Alice, the deploy went fine"),
             ("carol", "Great news. Lunch at 12?"), ("alice", "Count me in")]
    for user, text in lines:
        await api_result(web1, "publish", {"channel": LOBBY, "data": {"user": user, "text": text}})
    for n in range(3):
        await api_result(web2, "publish", {"channel": "prices:btc",
                                           "data": {"symbol": "BTC", "price": 97210.5 + n}})
    yield clients
    await clients.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def page() -> AsyncIterator[BrowserPage]:
    browser = await BrowserPage.start()
    yield browser
    await browser.close()


async def _traffic(node: ServerProcess, stop: asyncio.Event) -> None:
    """Some publications every second, so the rates are not zero."""
    n = 0
    while not stop.is_set():
        n += 1
        await api_result(node, "publish", {"channel": "prices:eth",
                                           "data": {"symbol": "ETH", "price": 3401 + n % 7}})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)


async def shoot(page: BrowserPage, out: Path, name: str, *, full_page: bool = False) -> None:
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    await page.screenshot(out / f"{name}.png", full_page=full_page)


async def log_in(page: BrowserPage, node: ServerProcess, route: str = "") -> None:
    await page.goto(f"{node.http_url}/{route}")
    await page.wait("() => !document.getElementById('login').hidden")
    await page.fill("#login-password", ADMIN_PASSWORD)
    await page.click("#login-submit")
    await page.wait("() => !document.getElementById('app').hidden")


async def test_screenshots(cluster: list[ServerProcess], scene: Clients,
                           page: BrowserPage, tmp_path: Path) -> None:
    out = Path(OUT) if OUT else tmp_path
    web1, web2 = cluster
    stop = asyncio.Event()
    traffic = asyncio.get_running_loop().create_task(_traffic(web2, stop))
    try:
        await _pages(page, web1, web2, scene, out)
    finally:
        stop.set()
        await traffic
    shot = {p.stem: p.stat().st_size for p in out.glob("admin-*.png")}
    assert set(PAGES) <= set(shot), shot
    assert all(size > 5000 for size in shot.values()), shot  # not blank pages


async def _pages(page: BrowserPage, web1: ServerProcess, web2: ServerProcess,
                 scene: Clients, out: Path) -> None:
    await page.goto(f"{web1.http_url}/")
    await page.wait("() => !document.getElementById('login').hidden")
    await shoot(page, out, "admin-login")

    await log_in(page, web1)
    for node in ("web-1", "web-2"):
        await page.wait(f"() => /\\d/.test(document.querySelector("
                        f"'#nodes tr[data-node=\"{node}\"] td[data-col=out]')?.innerText)",
                        within=4 * T)
    await shoot(page, out, "admin-status")

    await page.goto(f"{web1.http_url}/#/channels")
    await page.wait_text("#channels tbody", LOBBY)
    await shoot(page, out, "admin-channels")

    await page.goto(f"{web1.http_url}/#/channel/{urllib.parse.quote(LOBBY)}")
    await page.wait_text("#tail-state", "live")
    await page.wait_text("#presence tbody", "carol")
    await _lobby_activity(web2, scene)
    await page.wait("() => document.querySelectorAll('#tail-list li[data-kind]').length >= 5")
    await page.click("#history-newest")
    await page.wait_text("#history tbody", "Who is on call")
    await shoot(page, out, "admin-channel")

    await page.goto(f"{web1.http_url}/#/connections?user=alice")
    await page.wait("() => document.querySelectorAll('#connections tbody tr[data-client]')"
                    ".length == 2")
    await shoot(page, out, "admin-connections")

    await page.goto(f"{web1.http_url}/#/actions?channel={urllib.parse.quote(LOBBY)}")
    await page.fill("#publish-data", '{"user": "admin", "text": "Maintenance at 18:00 UTC"}')
    await page.click("#publish-submit")
    await page.wait_text("#publish-answer", "offset")
    await page.fill("#disconnect-user", "dave")
    await page.fill("#disconnect-code", "4501")
    await page.fill("#disconnect-reason", "account suspended")
    await page.click("#disconnect-submit")
    await page.wait_text("#disconnect-answer", "result")
    await page.fill("#broadcast-data", '{"text": "oops"')
    await page.wait_text("#broadcast-data-hint", "✗")
    await shoot(page, out, "admin-actions", full_page=True)

    await page.viewport(390, 844)
    await page.goto(f"{web1.http_url}/#/status")
    await page.wait("() => /\\d/.test(document.querySelector("
                    "'#nodes tr[data-node=\"web-1\"] td[data-col=in]')?.innerText)", within=4 * T)
    await shoot(page, out, "admin-status-phone")
    await page.goto(f"{web1.http_url}/#/channel/{urllib.parse.quote(LOBBY)}")
    for theme in ("light", "dark"):  # the theme button: auto -> light -> dark
        await page.click("#theme")
        await page.wait("(t) => document.documentElement.dataset.theme === t", theme)
    await page.wait_text("#tail-state", "live")
    await api_result(web2, "publish", {"channel": LOBBY,
                                       "data": {"user": "bob", "text": "Seen on a phone"}})
    await page.wait_text("#tail-list", "Seen on a phone")
    await page.wait_text("#presence tbody", "carol")
    await shoot(page, out, "admin-channel-phone-dark")


async def _lobby_activity(node: ServerProcess, scene: Clients) -> None:
    """Someone joins the lobby, talks, someone leaves: what the live tail shows."""
    token = make_token("frank", info={"name": "Frank Ito"})
    client, events = scene.new(node, token)
    await client.connect()
    await asyncio.wait_for(events.connected.get(), T)
    sub, _, _ = await scene.subscribe(client, LOBBY)
    says: list[tuple[str, Any]] = [
        ("frank", "Hello! First day here"), ("alice", "Welcome Frank!"),
        ("bob", "Who is on call tonight?")]
    for user, text in says:
        await api_result(node, "publish", {"channel": LOBBY, "data": {"user": user, "text": text},
                                           "tags": {"source": "web"}})
    await sub.unsubscribe()
