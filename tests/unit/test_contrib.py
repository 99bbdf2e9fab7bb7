"""The framework-free core of ``tidings.contrib`` (settings, tokens, publishers, the page's
data) and the Flask extension's publish-after-commit with a real SQLAlchemy session, against
servers the test kit runs in process."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from flask import Flask
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, insert
from sqlalchemy.orm import Session

from tests.support.redisproc import free_port
from tidings.config import Config
from tidings.contrib.common import Realtime, Settings, SettingsError, ws_url_for
from tidings.contrib.fastapi import Tidings as FastAPITidings
from tidings.contrib.flask import Tidings
from tidings.protocol.tokens import TokenVerifier
from tidings.results import ApiError
from tidings.testing import AsyncLiveServer, LiveServer, test_config


def test_settings_take_any_case_and_durations() -> None:
    s = Settings.from_mapping({"API_URL": "http://h/api", "token_ttl": "1h30m",
                               "Allow_Anonymous": True, "CAN_SUBSCRIBE": "x.y"},
                              extra=["can_subscribe"])
    assert (s.api_url, s.token_ttl, s.allow_anonymous) == ("http://h/api", 5400.0, True)
    assert s.extra == {"can_subscribe": "x.y"}


@pytest.mark.parametrize(("raw", "message"), [
    ({"API_UR": "x"}, "unknown key 'API_UR' \\(did you mean 'API_URL'\\?\\)"),
    ({"api_key2": "x"}, "did you mean 'api_key'"),
    ({"token_ttl": "soon"}, "'soon' is not a duration"),
    ({"config": "/nonexistent/tidings.json"}, "TIDINGS config"),
])
def test_bad_settings_are_named(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Realtime(raw)


def test_keys_come_from_the_shared_config_file_and_explicit_ones_win(tmp_path: Path) -> None:
    path = tmp_path / "tidings.json"
    path.write_text(json.dumps({"client": {"token": {"hmac_secret_key": "k" * 32,
                                                     "audience": "web"}},
                                "http_api": {"key": "file-key"}}))
    rt = Realtime({"CONFIG": str(path), "API_KEY": "mine",
                   "SUBSCRIPTION_TOKEN_HMAC_SECRET_KEY": "s" * 32})
    assert rt.config.http_api.key == "mine"
    now = time.time()
    claims = TokenVerifier(rt.config.client.token).verify_connect(
        rt.tokens.connection("7", info={"name": "x"}, channels=["news"]), now)
    assert (claims.user, claims.channels, claims.info) == ("7", ("news",), b'{"name":"x"}')
    assert 3590 < claims.exp - now <= 3600
    sub = TokenVerifier(rt.config.client.subscription_token).verify_subscribe(
        rt.tokens.subscription("7", "notes:7"), now)
    assert (sub.user, sub.channel) == ("7", "notes:7")


def test_token_answers() -> None:
    rt = Realtime({"TOKEN_HMAC_SECRET_KEY": "k" * 32})
    assert rt.token_answer(None) == (401, {"error": "not logged in"})
    assert rt.token_answer("1")[0] == 200
    assert rt.subscription_token_answer("1", "", True)[0] == 400
    assert rt.subscription_token_answer(None, "c", True)[0] == 401
    assert rt.subscription_token_answer("1", "c", False) == (403, {"error": "permission denied"})
    anonymous = Realtime({"TOKEN_HMAC_SECRET_KEY": "k" * 32, "ALLOW_ANONYMOUS": True})
    token = anonymous.token_answer(None)[1]["token"]
    assert TokenVerifier(anonymous.config.client.token).verify_connect(token, 0).user == ""
    with pytest.raises(SettingsError, match="cannot sign tokens"):
        Realtime({}).tokens.connection("1")


def test_publishing_needs_a_place_to_publish() -> None:
    with pytest.raises(SettingsError, match="set api_url"):
        Realtime({}).publish("news", 1)
    assert ws_url_for("https://rt.example.com/api") == "wss://rt.example.com/connection/websocket"


def test_http_publisher_publishes_and_reads_positions(tidings: LiveServer) -> None:
    rt = Realtime(tidings.settings())
    try:
        with tidings.expect_publication("news", {"n": 1}):
            result = rt.publish("news", {"n": 1})
        assert rt.position("news") == tidings.position("news")
        assert result.offset == 1 and result.epoch == tidings.position("news").epoch
        with pytest.raises(ApiError) as unknown:
            rt.publish("nosuchns:x", 1)
        assert unknown.value.code == 102
        page = rt.page("news", rt.position("news"), token_url="/t")
        assert page == {"url": tidings.ws_url, "tokenUrl": "/t", "subscriptionTokenUrl": "",
                        "channel": "news", "since": {"offset": 1, "epoch": result.epoch}}
    finally:
        rt.close()


def test_http_publisher_errors_are_api_errors(tidings: LiveServer) -> None:
    wrong_key = Realtime({**tidings.settings(), "API_KEY": "wrong"})
    with pytest.raises(ApiError) as refused:
        wrong_key.publish("news", 1)
    assert refused.value.code == 401
    down = Realtime({**tidings.settings(), "API_URL": f"http://127.0.0.1:{free_port()}/api"})
    with pytest.raises(ApiError) as unreachable:
        down.publish("news", 1)
    assert unreachable.value.code == 100
    assert down.position("news") is None  # the page then subscribes without `since`


def test_embedded_mode_runs_a_server_in_process() -> None:
    rt = Realtime({"EMBEDDED": True, "CONFIG": test_config()})
    try:
        assert rt.connection_url.startswith("ws://127.0.0.1:")
        assert rt.publish("news", "x").offset == 1
        assert rt.position("news") is not None
    finally:
        rt.close()
    assert rt._owned is None


async def test_async_publishers(tidings: LiveServer) -> None:
    beside = Realtime(tidings.settings())
    with tidings.subscribed("news") as sub:
        await beside.apublish("news", "over http")
        assert sub.next().data == "over http"
        assert await beside.aposition("news") == tidings.position("news")
        in_process = Realtime({}, server=tidings.server)
        await in_process.apublish("news", "in process")
        assert sub.next().data == "in process"
    await beside.aclose()


def test_flask_publish_on_commit_follows_the_sqlalchemy_transaction(
        tidings: LiveServer) -> None:
    app = Flask(__name__)
    app.config["TIDINGS"] = tidings.settings()
    ext = Tidings(app, user_loader=lambda: None)
    engine = create_engine("sqlite://")
    rows = Table("rows", MetaData(), Column("id", Integer, primary_key=True),
                 Column("text", String))
    rows.metadata.create_all(engine)
    with app.app_context(), tidings.subscribed("rows") as sub:
        with pytest.raises(RuntimeError), Session(engine) as db, db.begin():
            db.execute(insert(rows).values(text="rolled back"))
            ext.publish_on_commit("rows", "rolled back", session=db)
            raise RuntimeError("abort")
        with Session(engine) as db:
            ext.publish_on_commit("rows", "never committed", session=db)
        with Session(engine) as db, db.begin():
            db.execute(insert(rows).values(text="committed"))
            ext.publish_on_commit("rows", "committed", session=db)
            assert sub.received == []  # not before the commit
        assert sub.next().data == "committed"
        tidings.publish("rows", "marker")
        assert sub.next().data == "marker"
        assert [p.data for p in sub.received] == ["committed", "marker"]


def test_config_type_is_a_tidings_config() -> None:
    assert isinstance(Realtime({}).config, Config)


async def test_fastapi_router_dependencies_and_connect_endpoint(
        async_tidings: AsyncLiveServer) -> None:
    async def user(request: Request) -> str | None:
        return request.headers.get("x-user")

    rt = FastAPITidings(async_tidings.settings(), user=user,
                        can_subscribe=_async_check, user_info=lambda u: {"name": u})
    app = FastAPI()
    app.include_router(rt.router, prefix="/rt")
    app.post("/connect")(rt.connect_endpoint(lambda cookie: cookie.removeprefix("s=") or None))

    # A default, not Annotated: this module's annotations are strings (the __future__
    # import), and FastAPI cannot resolve the closure's `rt` from one.
    @app.get("/token")
    async def token(value: str = Depends(rt.connection_token)) -> dict[str, str]:
        return {"token": value}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
        assert (await http.get("/rt/token")).status_code == 401
        assert (await http.get("/token")).status_code == 401
        jwt = (await http.get("/token", headers={"x-user": "7"})).json()["token"]
        client = await async_tidings.client(token=jwt)
        assert client.client_id
        allowed = await http.post("/rt/subscription-token", json={"channel": "notes:7"},
                                  headers={"x-user": "7"})
        assert allowed.status_code == 200
        denied = await http.get("/rt/subscription-token?channel=notes:8",
                                headers={"x-user": "7"})
        assert denied.status_code == 403
        hook = await http.post("/connect", json={"client": "c", "transport": "websocket"},
                               headers={"cookie": "s=alice"})
        assert hook.json() == {"result": {"user": "alice", "info": {"name": "alice"}}}
        refused = await http.post("/connect", json={"client": "c"})
        assert refused.json() == {"disconnect": {"code": 4501, "reason": "unauthorized"}}
    await rt.realtime.aclose()


async def _async_check(user: str | None, channel: str) -> bool:
    return channel == f"notes:{user}"
