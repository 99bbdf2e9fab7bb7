"""``tidings.contrib.django`` in the Django example (examples/django_app) on gunicorn with a
real PostgreSQL, beside a Tidings the test runs (the test kit's ``LiveServer``): the rendered
page carries the connection URL, token endpoint and stream position; the real centrifuge-python
client authenticates through the app's token view and receives what a committed transaction
publishes; a rolled-back one publishes nothing; what is published between the render and the
subscribe is recovered; the token views refuse who they must; the connect hook logs a WebSocket
in with the Django session cookie; and the page's own script (examples/static/live.js) runs
under Node with the real centrifuge-js."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from centrifuge import StreamPosition

from tests.support.examplesites import kit_config, run_live_page, start_django_example
from tests.support.examplesites import login as login_at
from tests.support.livesite import Site, live_json
from tests.support.pgproc import PostgresServer
from tests.support.sdk import Clients, next_item
from tests.support.webapps import BackendProcess
from tidings.testing import Closed, LiveClient, LiveServer, ReplyError, test_config


@pytest.fixture(scope="module")
def dsn(postgres: PostgresServer) -> str:
    return postgres.create_database()


@pytest.fixture(scope="module")
def live(dsn: str) -> Iterator[LiveServer]:
    """Tidings beside the app, consuming its outbox table too."""
    with LiveServer(kit_config(outbox_dsn=dsn)) as server:
        yield server


@pytest.fixture(scope="module")
def site(live: LiveServer, dsn: str,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendProcess]:
    backend = start_django_example("django-example", tmp_path_factory.mktemp("django"),
                                   live, dsn)
    yield backend
    backend.stop()


@pytest.fixture(scope="module")
def outbox_site(site: BackendProcess, live: LiveServer, dsn: str,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendProcess]:
    """The same app and database, publishing through the outbox (``COMMENTS_OUTBOX=1``)."""
    backend = start_django_example("django-outbox", tmp_path_factory.mktemp("outbox"), live,
                                   dsn, migrate=False, COMMENTS_OUTBOX="1")
    yield backend
    backend.stop()


async def login(backend: BackendProcess, user: str) -> Site:
    return await login_at(backend, user, path="/accounts/login/")


async def rendered(site: Site) -> tuple[str, dict[str, Any]]:
    status, page = await site.get("/")
    assert status == 200, page
    return page, live_json(page)


async def test_page_token_view_and_publish_on_commit(
        site: BackendProcess, live: LiveServer, clients: Clients) -> None:
    async with await login(site, "alice") as alice:
        page, data = await rendered(alice)
        assert data["url"] == live.ws_url and data["channel"] == "comments"
        assert data["tokenUrl"] == "/tidings/token" and data["since"]["epoch"]
        client, _ = clients.new(live, get_token=lambda: alice.token(data["tokenUrl"]))
        await client.connect()
        _, events, ctx = await clients.subscribe(
            client, "comments",
            get_state=lambda _ch: _position(data))
        assert ctx.was_recovering and ctx.recovered
        assert await alice.post("/comments", {"text": "hello"}, csrf_from="/") == 302
        pub = await next_item(events.publications)
        assert pub.data["author"] == "alice" and pub.data["text"] == "hello"
        page, _ = await rendered(alice)
        assert f'data-id="{pub.data["id"]}"' in page  # committed: the next render shows it


async def _position(data: dict[str, Any]) -> StreamPosition:
    return StreamPosition(offset=data["since"]["offset"], epoch=data["since"]["epoch"])


async def test_rolled_back_comment_publishes_nothing(site: BackendProcess,
                                                     live: LiveServer) -> None:
    async with await login(site, "bob") as bob:
        with live.subscribed("comments") as sub:
            assert await bob.post("/comments", {"text": "buy spam"}, csrf_from="/") == 400
            assert await bob.post("/comments", {"text": "marker"}, csrf_from="/") == 302
            assert sub.next().data["text"] == "marker"  # nothing before the marker
            assert [p.data["text"] for p in sub.received] == ["marker"]
        page, _ = await rendered(bob)
        assert "buy spam" not in page  # and nothing was saved


async def test_render_then_subscribe_recovers_what_came_between(
        site: BackendProcess, live: LiveServer, clients: Clients) -> None:
    async with await login(site, "alice") as alice, await login(site, "bob") as bob:
        page, data = await rendered(alice)
        assert await bob.post("/comments", {"text": "in the gap"}, csrf_from="/") == 302
        assert "in the gap" not in page
        client, _ = clients.new(live, get_token=lambda: alice.token(data["tokenUrl"]))
        await client.connect()
        _, events, ctx = await clients.subscribe(client, "comments",
                                                 get_state=lambda _ch: _position(data))
        assert ctx.recovered
        pub = await next_item(events.publications)
        assert pub.data["text"] == "in the gap" and pub.data["author"] == "bob"


async def test_token_views_refuse_whom_they_must(site: BackendProcess,
                                                 live: LiveServer) -> None:
    async with Site(site.url) as anonymous:
        assert (await anonymous.get_json("/tidings/token"))[0] == 401
        assert (await anonymous.get_json("/tidings/subscription-token?channel=comments")
                )[0] == 401
    async with await login(site, "alice") as alice:
        claims = jwt.decode(await alice.token("/tidings/token"), live.token_key,
                            algorithms=["HS256"])
        assert claims["info"] == {"name": "alice"} and claims["exp"] > claims["iat"]
        mine = f"notes:{claims['sub']}"
        token = await alice.token(f"/tidings/subscription-token?channel={mine}")
        assert (await alice.get_json("/tidings/subscription-token?channel=notes:999"))[0] == 403
        assert (await alice.get_json("/tidings/subscription-token"))[0] == 400
    with LiveClient(live.ws_url, token=live.token(claims["sub"])) as client:
        with pytest.raises(ReplyError):  # the namespace lets no client in without a token
            client.subscribe(mine)
        client.subscribe(mine, token=token)


async def test_connect_hook_logs_in_with_the_session_cookie(site: BackendProcess) -> None:
    config = test_config()
    config["client"]["proxy"] = {"connect": {
        "enabled": True, "endpoint": f"{site.url}/tidings/connect",
        "http_headers": ["Cookie"], "timeout": "3s"}}
    async with await login(site, "alice") as alice:
        cookie = alice.cookie_header()
        user = jwt.decode(await alice.token("/tidings/token"),
                          options={"verify_signature": False})["sub"]
    with LiveServer(config) as hooked:
        with LiveClient(hooked.ws_url, headers={"Cookie": cookie}) as client:
            client.subscribe("room")
            presence = hooked.server.presence("room")
            assert [info.user for info in presence.values()] == [user]
        with pytest.raises(Closed) as refused:
            LiveClient(hooked.ws_url, headers={"Cookie": "sessionid=forged"}).connect()
        assert refused.value.code == 4501


async def test_page_script_under_node_recovers_the_gap_and_receives_live(
        site: BackendProcess) -> None:
    """live.js with centrifuge-js: renders, a comment is posted before it subscribes, then one
    after; both arrive (the first recovered from the rendered position), no resync."""
    async with await login(site, "alice") as browser:
        out = await run_live_page(site, browser)
    assert out["received"] == ["in the gap", "live"]
    assert out["recovered"] is True and out["resyncs"] == 0


async def test_outbox_option_publishes_committed_comments_only(outbox_site: BackendProcess,
                                                              live: LiveServer) -> None:
    """``COMMENTS_OUTBOX=1``: the publication is a row of the comment's transaction, which
    Tidings' PostgreSQL consumer publishes; a rolled-back comment leaves no row."""
    async with await login(outbox_site, "alice") as alice:
        with live.subscribed("comments") as sub:
            assert await alice.post("/comments", {"text": "buy spam"}, csrf_from="/") == 400
            assert await alice.post("/comments", {"text": "via outbox"}, csrf_from="/") == 302
            assert sub.next().data["text"] == "via outbox"
            assert [p.data["text"] for p in sub.received] == ["via outbox"]
