"""The live-comments reference site (examples/live-comments), whole, in real headless Chromium.

The example's own ``stack.py`` (what ``./run`` runs) starts a private PostgreSQL, Redis, two
Tidings nodes, two gunicorns and nginx on free ports. Two browsers, logged in as alice and
bob through the site's login form, read one article:

- bob alone sees "1 reading", then "2 reading" when alice opens it (presence);
- alice types: bob sees "alice is typing" (a client publication through the publish hook);
- alice posts 100 comments; each appears on bob's page, and the time from her submit to its
  insertion in his DOM is measured in the pages (one machine, one clock): p99 under 200 ms;
- a comment that moderation rolls back (after its outbox row was written) never reaches bob;
- bob's Tidings node is killed (SIGKILL); his page reconnects through nginx to the other node
  and shows the comments alice posted meanwhile (recovery from the render's stream position);
- the HTTP-streaming and SSE fallbacks work through nginx; the server API and the hook
  endpoints are not public; a WebSocket without a session is refused by the connect hook;
- full-text search finds comments (highlighted, HTML escaped); load.py runs against it.

Screenshots go to the test's temp dir; with ``TIDINGS_UPDATE_SCREENSHOTS=1`` also to docs/img/
(the ones the tutorial shows).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import sys
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import websockets

from tests.support.api import api_result
from tests.support.browser import BrowserPage
from tests.support.livecomments import (
    EXAMPLE,
    PASSWORD,
    Stack,
    log_in,
    node_api,
    node_clients,
    running_stack,
)
from tests.support.livesite import Site
from tests.support.timing import TIMEOUT_FACTOR, T, eventually
from tests.support.webapps import REPO_ROOT

pytestmark = pytest.mark.asyncio(loop_scope="module")  # the browsers' pipes live on one loop

ARTICLE = "200-ms-or-bust"
ARTICLE_PATH = f"/articles/{ARTICLE}/"
CHANNEL = f"comments:{ARTICLE}"
COMMENTS = 100
WARM_UP = 8
GAP_MS = 50  # between one comment shown on alice's page and her next submit
P99_LIMIT_MS = 200.0 * TIMEOUT_FACTOR  # the "200 ms or bust"
DOCS_IMG = REPO_ROOT / "docs" / "img"

# In the writer's page: post n comments through the page's own form, one after the other
# (each once the page shows it: the POST answered); the submit time of each, by text.
SEND = """async ({ n, prefix, gap }) => {
  const form = document.getElementById('comment-form');
  const area = document.getElementById('comment-text');
  const list = document.getElementById('comments');
  const error = document.getElementById('form-error');
  const shown = (text) => new Promise((resolve, reject) => {
    const done = () => list.lastElementChild?.querySelector('.text').textContent === text;
    const watch = new MutationObserver(() => {
      if (done()) { watch.disconnect(); clearTimeout(timer); resolve(); }
      else if (error.textContent) { watch.disconnect(); reject(new Error(error.textContent)); }
    });
    const timer = setTimeout(() => {
      watch.disconnect();
      reject(new Error(`not posted: ${text}`));
    }, 10000);
    watch.observe(form.parentElement, { childList: true, subtree: true, characterData: true });
  });
  const sent = {};
  for (let i = 0; i < n; i++) {
    const text = `${prefix} ${i}`;
    area.value = text;
    const posted = shown(text);
    sent[text] = performance.timeOrigin + performance.now();
    form.requestSubmit();
    await posted;
    await new Promise((resolve) => { setTimeout(resolve, gap); });  // a person's pace, roughly
  }
  return sent;
}"""

# In the reader's page: when each comment is inserted into the list (by its text).
OBSERVE = """() => {
  window.rendered = {};
  new MutationObserver((records) => {
    const now = performance.timeOrigin + performance.now();
    for (const record of records) {
      for (const node of record.addedNodes) {
        const text = node.querySelector && node.querySelector('.text');
        if (text) (window.rendered[text.textContent] ||= []).push(now);
      }
    }
  }).observe(document.getElementById('comments'), { childList: true });
  return true;
}"""

EVIL = "Redis & <i warm caches <img src=x onerror=alert(1)>"
STATE = "() => document.getElementById('connection').dataset.state"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("live-comments")) as stack:
        yield stack


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bob(site: Stack) -> AsyncIterator[BrowserPage]:
    """The reader: his own Chromium (own cookies), logged in on the article."""
    async with await BrowserPage.start() as page:
        await page.viewport(1000, 760)
        await log_in(page, site, "bob", ARTICLE_PATH)
        yield page


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def alice(site: Stack) -> AsyncIterator[BrowserPage]:
    """The writer, in another Chromium."""
    async with await BrowserPage.start() as page:
        await page.viewport(1000, 760)
        await log_in(page, site, "alice", "/")
        yield page


async def screenshot(page: BrowserPage, shots: Path, name: str) -> None:
    await page.screenshot(shots / name, full_page=True)
    if os.environ.get("TIDINGS_UPDATE_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(exist_ok=True)
        shutil.copy(shots / name, DOCS_IMG / name)


async def texts(page: BrowserPage) -> list[str]:
    return await page.texts("#comments .text")


async def send(page: BrowserPage, n: int, prefix: str, gap: int = 0) -> dict[str, float]:
    sent: dict[str, float] = await page.command("eval", expr=SEND,
                                                arg={"n": n, "prefix": prefix, "gap": gap},
                                                within=n * T)
    return sent


async def wait_connected(page: BrowserPage, *, within: float = T) -> None:
    await page.wait(f"() => ({STATE})() === 'connected'", within=within)


async def node_of_the_only_client(site: Stack) -> int:
    """The node holding the one client connected so far."""
    found: list[int] = []

    async def check() -> bool:
        counts = [await node_clients(site, i) for i in range(2)]
        found[:] = [i for i, n in enumerate(counts) if n]
        return sorted(counts) == [0, 1]

    assert await eventually(check), "one node must hold exactly one client"
    return found[0]


async def test_two_readers_see_each_other_type_and_comment(
        site: Stack, bob: BrowserPage, alice: BrowserPage, shots: Path,
        record_property: Any) -> None:
    await wait_connected(bob)
    await bob.wait("() => document.getElementById('readers').dataset.users === '1'")
    bobs_node = await node_of_the_only_client(site)

    await alice.goto(site.url + ARTICLE_PATH)
    await wait_connected(alice)
    await bob.wait("() => document.getElementById('readers').dataset.users === '2'")
    # Alice's page asks for presence stats on its own schedule: await its count too.
    await alice.wait("() => document.getElementById('readers').dataset.users === '2'")
    assert await alice.text("#readers") == "2 reading"

    await alice.fill("#comment-text", "Hello Bob, are you")  # typing: the publish hook
    assert "alice is typing" in await bob.wait_text("#typing", "alice is typing")
    await screenshot(bob, shots, "live-comments-reader.png")
    await alice.fill("#comment-text", "")

    await send(alice, WARM_UP, "warming up")  # each gunicorn worker's first request
    await bob.evaluate(OBSERVE)                 # opens its PostgreSQL and Redis connections
    sent = await send(alice, COMMENTS, "latency probe", GAP_MS)
    await bob.wait("(ts) => ts.every((t) => window.rendered[t])", list(sent), within=3 * T)
    rendered: dict[str, list[float]] = await bob.evaluate("() => window.rendered")
    latencies = sorted(rendered[text][0] - at for text, at in sent.items())
    assert all(len(rendered[text]) == 1 for text in sent), "each rendered once"
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[math.ceil(0.99 * len(latencies)) - 1]
    record_property("submit_to_render_ms", {"n": len(latencies), "p50": round(p50, 1),
                                            "p99": round(p99, 1),
                                            "max": round(latencies[-1], 1)})
    print(f"\nsubmit -> render in the other page, {len(latencies)} comments: "
          f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {latencies[-1]:.1f} ms", file=sys.stderr)
    assert p99 < P99_LIMIT_MS, latencies

    # Rolled back: the comment and its outbox row are written, then moderation refuses it.
    await alice.fill("#comment-text", "Buy cheap spam now")
    await alice.click("#comment-submit")
    await alice.wait_text("#form-error", "rejected by moderation")
    await screenshot(alice, shots, "live-comments-writer.png")
    after = await send(alice, 1, "after the rejected one")
    await bob.wait("(t) => window.rendered[t]", next(iter(after)))
    assert not any("spam" in text for text in await texts(bob))
    history = await api_result(node_api(site, 1 - bobs_node), "history",
                               {"channel": CHANNEL, "limit": 1000})
    published = [pub["data"]["text"] for pub in history.get("publications", [])]
    assert "after the rejected one 0" in published
    assert not any("spam" in text for text in published)

    # bob's node dies; alice posts while he is away; he comes back on the other node.
    site.kill(f"tidings{bobs_node + 1}")
    await bob.wait(f"() => ({STATE})() !== 'connected'")
    missed = await send(alice, 1, "while you were away")
    assert await bob.evaluate(STATE) != "connected", "posted while bob was disconnected"
    missed |= await send(alice, 2, "also while you were away")
    await bob.wait(
        "() => document.getElementById('connection').dataset.recovered === 'true'",
        within=4 * T)
    await wait_connected(bob)
    await bob.wait("(ts) => ts.every((t) => window.rendered[t])", list(missed))
    assert await node_clients(site, 1 - bobs_node) >= 1
    await bob.wait("() => document.getElementById('readers').dataset.users === '2'")
    await screenshot(bob, shots, "live-comments-recovered.png")
    shown = await texts(bob)
    assert len(shown) == len(set(shown)), "no comment shown twice"
    diag = await bob.diagnostics()
    assert diag["pageErrors"] == [], diag


@pytest.mark.parametrize("transport", ["http_stream", "sse"])
async def test_fallback_transports_through_nginx(
        site: Stack, bob: BrowserPage, alice: BrowserPage, transport: str) -> None:
    await bob.goto(f"{site.url}{ARTICLE_PATH}?transport={transport}")
    await wait_connected(bob, within=3 * T)
    assert await bob.evaluate(
        "() => document.getElementById('connection').dataset.transport") == transport
    await alice.goto(site.url + ARTICLE_PATH)
    await wait_connected(alice)
    sent = await send(alice, 1, f"over {transport}")
    await bob.wait_text("#comments", next(iter(sent)))


async def test_api_and_hooks_are_not_public(site: Stack) -> None:
    async with aiohttp.ClientSession() as http:
        for method, path in (("POST", "/api/info"), ("POST", "/api"),
                             ("POST", "/tidings/connect"), ("POST", "/hooks/typing")):
            async with http.request(method, site.url + path, json={}) as resp:
                assert resp.status == 404, path
    info = await api_result(node_api(site, 0), "info", {})
    assert info["nodes"], info


async def test_websocket_without_a_session_is_refused_by_the_connect_hook(
        site: Stack) -> None:
    url = site.url.replace("http", "ws") + "/connection/websocket"
    async with websockets.connect(url, origin=websockets.Origin(site.url)) as ws:
        await ws.send(json.dumps({"id": 1, "connect": {}}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), T)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4501


async def test_search_finds_comments_highlighted_and_escaped(
        site: Stack, bob: BrowserPage, shots: Path) -> None:
    """Found by a stem (cache: caches), ranked, its HTML escaped (no script runs)."""
    async with Site(site.url) as browser:
        login = {"username": "bob", "password": PASSWORD}
        assert await browser.post("/accounts/login/", login, csrf_from="/accounts/login/") \
            == 302
        comment = {"text": EVIL}  # a form post: redirected
        assert await browser.post(f"{ARTICLE_PATH}comments", comment,
                                  csrf_from=ARTICLE_PATH) == 302
        status, page = await browser.get("/search?q=" + urllib.parse.quote("caches -cold"))
    assert status == 200
    # ts_headline keeps this text's markup (it is not well formed): escaped, then marked.
    assert ("Redis &amp; &lt;i warm <mark>caches</mark> &lt;img src=x onerror=alert(1)&gt;"
            in page), page
    assert "<img" not in page
    await bob.goto(f"{site.url}/search?q=" + urllib.parse.quote('"outbox row" OR cache'))
    await bob.wait_text(".results", "outbox row")
    await screenshot(bob, shots, "live-comments-search.png")


async def test_load_script_delivers_everything(site: Stack) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLE / "load.py"), "--url", site.url, "--readers", "30",
        "--rate", "10", "--duration", "2", "--drain", "2", "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 12 * T)
    assert proc.returncode == 0, err.decode()[-3000:]
    result = json.loads(out)
    assert result["accepted"] == 20 and result["lost"] == 0, result
    assert result["delivered"] == result["expected"] == 20 * 10, result
