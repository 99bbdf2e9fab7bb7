"""``tidings.contrib.flask`` in the Flask example (examples/flask_app: SQLAlchemy on a real
PostgreSQL, gunicorn) beside a Tidings the test runs: the page carries the connection URL,
token endpoint and stream position; the real centrifuge-python client authenticates through
the extension's token view and receives what a committed transaction publishes; a rolled-back
one publishes nothing; what is published between the render and the subscribe is recovered;
the token views refuse who they must; the connect hook reads the Flask session cookie; and
the page's own script (examples/static/live.js) runs under Node with the real centrifuge-js."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from centrifuge import StreamPosition

from tests.support.examplesites import kit_config, run_live_page, start_flask_example
from tests.support.examplesites import login as login_at
from tests.support.livesite import Site, live_json
from tests.support.pgproc import PostgresServer
from tests.support.sdk import Clients, next_item
from tests.support.webapps import BackendProcess
from tidings.testing import Closed, LiveClient, LiveServer, ReplyError, test_config


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    with LiveServer(kit_config()) as server:
        yield server


@pytest.fixture(scope="module")
def site(live: LiveServer, postgres: PostgresServer,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendProcess]:
    backend = start_flask_example("flask-example", tmp_path_factory.mktemp("flask"), live,
                                  postgres.create_database())
    yield backend
    backend.stop()


async def login(backend: BackendProcess, user: str) -> Site:
    return await login_at(backend, user, path="/login")


async def rendered(site: Site) -> tuple[str, dict[str, Any]]:
    status, page = await site.get("/")
    assert status == 200, page
    return page, live_json(page)


async def _position(data: dict[str, Any]) -> StreamPosition:
    return StreamPosition(offset=data["since"]["offset"], epoch=data["since"]["epoch"])


async def test_page_token_view_and_publish_on_commit(
        site: BackendProcess, live: LiveServer, clients: Clients) -> None:
    async with await login(site, "alice") as alice:
        _, data = await rendered(alice)
        assert data["url"] == live.ws_url and data["tokenUrl"] == "/tidings/token"
        assert data["since"]["epoch"]
        client, _ = clients.new(live, get_token=lambda: alice.token(data["tokenUrl"]))
        await client.connect()
        _, events, ctx = await clients.subscribe(client, "comments",
                                                 get_state=lambda _ch: _position(data))
        assert ctx.recovered
        assert await alice.post("/comments", {"text": "hello"}) == 303
        pub = await next_item(events.publications)
        assert pub.data["author"] == "alice" and pub.data["text"] == "hello"
        page, _ = await rendered(alice)
        assert f'data-id="{pub.data["id"]}"' in page


async def test_rolled_back_comment_publishes_nothing(site: BackendProcess,
                                                     live: LiveServer) -> None:
    async with await login(site, "bob") as bob:
        with live.subscribed("comments") as sub:
            assert await bob.post("/comments", {"text": "buy spam"}) == 400
            assert await bob.post("/comments", {"text": "marker"}) == 303
            assert sub.next().data["text"] == "marker"
            assert [p.data["text"] for p in sub.received] == ["marker"]
        page, _ = await rendered(bob)
        assert "buy spam" not in page


async def test_render_then_subscribe_recovers_what_came_between(
        site: BackendProcess, live: LiveServer, clients: Clients) -> None:
    async with await login(site, "alice") as alice, await login(site, "bob") as bob:
        page, data = await rendered(alice)
        assert await bob.post("/comments", {"text": "in the gap"}) == 303
        assert "in the gap" not in page
        client, _ = clients.new(live, get_token=lambda: alice.token(data["tokenUrl"]))
        await client.connect()
        _, events, ctx = await clients.subscribe(client, "comments",
                                                 get_state=lambda _ch: _position(data))
        assert ctx.recovered
        assert (await next_item(events.publications)).data["text"] == "in the gap"


async def test_token_views_refuse_whom_they_must(site: BackendProcess,
                                                 live: LiveServer) -> None:
    async with Site(site.url) as anonymous:
        assert (await anonymous.get_json("/tidings/token"))[0] == 401
    async with await login(site, "alice") as alice:
        claims = jwt.decode(await alice.token("/tidings/token"), live.token_key,
                            algorithms=["HS256"])
        mine = f"notes:{claims['sub']}"
        token = await alice.token(f"/tidings/subscription-token?channel={mine}")
        assert (await alice.get_json("/tidings/subscription-token?channel=notes:999"))[0] == 403
        assert (await alice.get_json("/tidings/subscription-token"))[0] == 400
    with LiveClient(live.ws_url, token=live.token(claims["sub"])) as client:
        with pytest.raises(ReplyError):
            client.subscribe(mine)
        client.subscribe(mine, token=token)


async def test_connect_hook_reads_the_flask_session(site: BackendProcess) -> None:
    config = test_config()
    config["client"]["proxy"] = {"connect": {
        "enabled": True, "endpoint": f"{site.url}/tidings/connect",
        "http_headers": ["Cookie"], "timeout": "3s"}}
    async with await login(site, "bob") as bob:
        cookie = bob.cookie_header()
        user = jwt.decode(await bob.token("/tidings/token"),
                          options={"verify_signature": False})["sub"]
    with LiveServer(config) as hooked:
        with LiveClient(hooked.ws_url, headers={"Cookie": cookie}) as client:
            client.subscribe("room")
            assert [i.user for i in hooked.server.presence("room").values()] == [user]
        with pytest.raises(Closed) as refused:
            LiveClient(hooked.ws_url, headers={"Cookie": "session=forged"}).connect()
        assert refused.value.code == 4501


async def test_page_script_under_node_recovers_the_gap_and_receives_live(
        site: BackendProcess) -> None:
    """live.js with centrifuge-js: renders, a comment is posted before it subscribes, then one
    after; both arrive (the first recovered from the rendered position), no resync."""
    async with await login(site, "bob") as browser:
        out = await run_live_page(site, browser)
    assert out["received"] == ["in the gap", "live"]
    assert out["recovered"] is True and out["resyncs"] == 0
