"""Backend hooks answered by real web-framework apps through ``tidings.hooks``' adapters, each
app in a process of its own (tests/support/webapps): Django on gunicorn authenticates WebSockets
from its own session cookie and authorizes per document; Flask on gunicorn answers RPC; FastAPI
on uvicorn rewrites and refuses publications with an async and a sync hook. Each backend is
started once for the module; every test gets its own Tidings server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from django.core import signing

from tests.support.api import api_result
from tests.support.raw import JsonWebSocket, json_websocket, open_json_websocket
from tests.support.server import ServerFactory, ServerProcess, make_token
from tests.support.timing import T
from tests.support.webapps import BackendProcess, start_django, start_fastapi, start_flask
from tests.support.webapps.djangoapp import settings as django_settings

HOOK_TIMEOUT = "3s"  # a cold gunicorn worker imports the views on its first call
SESSION_SALT = "django.contrib.sessions.backends.signed_cookies"


def _backend(start: Any, tmp_path_factory: pytest.TempPathFactory, name: str
             ) -> Iterator[BackendProcess]:
    log_dir: Path = tmp_path_factory.mktemp(name)
    backend: BackendProcess = start(log_dir)
    yield backend
    backend.stop()


@pytest.fixture(scope="module")
def django_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendProcess]:
    yield from _backend(start_django, tmp_path_factory, "django")


@pytest.fixture(scope="module")
def flask_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendProcess]:
    yield from _backend(start_flask, tmp_path_factory, "flask")


@pytest.fixture(scope="module")
def fastapi_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendProcess]:
    yield from _backend(start_fastapi, tmp_path_factory, "fastapi")


# ---------------------------------------------------------------- Django: sessions, per-doc


@pytest.fixture
def docs_server(tidings_server: ServerFactory, django_app: BackendProcess) -> ServerProcess:
    """Connect hook and ``docs`` subscribe hook answered by the Django app."""
    server: ServerProcess = tidings_server({
        "client": {"proxy": {"connect": {
            "enabled": True, "endpoint": f"{django_app.url}/centrifugo/connect",
            "http_headers": ["Cookie"], "timeout": HOOK_TIMEOUT,
        }}},
        "channel": {
            "proxy": {"subscribe": {"endpoint": f"{django_app.url}/centrifugo/subscribe",
                                    "timeout": HOOK_TIMEOUT}},
            "namespaces": [{"name": "docs", "subscribe_proxy_enabled": True, "presence": True}],
        },
    })
    return server


async def django_login(django: BackendProcess, username: str) -> str:
    """Log in through the Django app's form; the ``sessionid`` cookie it set."""
    async with aiohttp.ClientSession() as session, session.post(
        f"{django.url}/login", data={"username": username},
        timeout=aiohttp.ClientTimeout(total=T),
    ) as resp:
        assert resp.status == 200, await resp.text()
        morsel = resp.cookies.get("sessionid")
    assert morsel is not None and morsel.value, resp.headers.getall("Set-Cookie", [])
    return morsel.value


def signed_session(user: str, key: str) -> str:
    """A signed-cookie session holding ``user``, signed with ``key`` the way Django does."""
    signer = signing.TimestampSigner(key=key, salt=SESSION_SALT, fallback_keys=[])
    value: str = signer.sign_object({"user": user}, serializer=signing.JSONSerializer,
                                    compress=True)
    return value


async def with_cookie(server: ServerProcess, cookie: str | None) -> JsonWebSocket:
    headers = {"Cookie": f"theme=dark; sessionid={cookie}"} if cookie is not None else {}
    return await open_json_websocket(server.ws_url, additional_headers=headers)


async def test_django_session_authenticates_and_owners_subscribe(
        docs_server: ServerProcess, django_app: BackendProcess) -> None:
    for user, own, other in (("alice", "docs:1", "docs:2"), ("bob", "docs:2", "docs:1")):
        client = await with_cookie(docs_server, await django_login(django_app, user))
        reply = await client.command(connect={})
        assert reply["id"] == 1 and reply["connect"]["client"], reply
        allowed = await client.command(subscribe={"channel": own})
        assert "subscribe" in allowed, allowed
        refused = await client.command(subscribe={"channel": other})
        assert refused == {"id": 3, "error": {"code": 403, "message": "permission denied"}}
        # The user Tidings took from Django's session, with the hooks' infos.
        presence = await api_result(docs_server, "presence", {"channel": own})
        [entry] = presence["presence"].values()
        assert entry["user"] == user
        assert entry["conn_info"] == {"name": user.title()}
        assert entry["chan_info"] == {"doc": own.removeprefix("docs:")}
        await client.close()


async def test_django_refuses_connections_without_a_valid_session(
        docs_server: ServerProcess) -> None:
    forged = signed_session("alice", "not-the-project-key")
    for cookie in (None, "forged", forged):
        client = await with_cookie(docs_server, cookie)
        await client.send('{"id":1,"connect":{}}')
        assert await client.expect_close() == (4501, "unauthorized"), cookie
    # The same session signed with the project's key is accepted: the refusal above was the
    # signature's, not the cookie's format.
    genuine = await with_cookie(docs_server,
                                signed_session("alice", django_settings.SECRET_KEY))
    reply = await genuine.command(connect={})
    assert "connect" in reply, reply
    await genuine.close()


# ---------------------------------------------------------------- Flask: RPC


async def test_flask_rpc_hook_answers_and_refuses(tidings_server: ServerFactory,
                                                  flask_app: BackendProcess) -> None:
    server: ServerProcess = tidings_server({"rpc": {
        "proxy": {"endpoint": f"{flask_app.url}/centrifugo/rpc", "timeout": HOOK_TIMEOUT},
        "without_namespace": {"proxy_enabled": True},
    }})
    async with json_websocket(server.ws_url, token=make_token("42")) as client:
        added = await client.command(rpc={"method": "add", "data": {"a": 2, "b": 40}})
        assert added == {"id": 2, "rpc": {"data": {"sum": 42}}}
        unknown = await client.command(rpc={"method": "mul", "data": {"a": 2, "b": 40}})
        assert unknown == {"id": 3, "error": {"code": 404, "message": "no such method"}}
        again = await client.command(rpc={"method": "add", "data": {"a": 0.5, "b": 1}})
        assert again["rpc"]["data"] == {"sum": 1.5}  # the connection survived the refusal


# ---------------------------------------------------------------- FastAPI: publish


@pytest.mark.parametrize(
    ("channel", "ok", "rewritten", "refused", "error"),
    [
        pytest.param("chat:room", {"text": "hi"},
                     {"text": "HI", "by": "alice", "thread": "main"},
                     {"text": "buy spam"}, {"code": 1000, "message": "spam is not allowed"},
                     id="async-hook"),
        pytest.param("notes:room", {"text": "  buy milk "},
                     {"note": "buy milk", "words": 2, "by": "alice", "thread": "worker"},
                     {"text": "   "}, {"code": 1001, "message": "empty note"},
                     id="sync-hook"),
    ],
)
async def test_fastapi_publish_hooks_rewrite_and_refuse(
        tidings_server: ServerFactory, fastapi_app: BackendProcess, channel: str,
        ok: dict[str, Any], rewritten: dict[str, Any], refused: dict[str, Any],
        error: dict[str, Any]) -> None:
    hooked = {"publish_proxy_enabled": True, "allow_subscribe_for_client": True}
    server: ServerProcess = tidings_server({
        "channel": {
            "proxy": {"publish": {"endpoint": f"{fastapi_app.url}/centrifugo/publish",
                                  "timeout": HOOK_TIMEOUT}},
            "namespaces": [{"name": "chat", **hooked},
                           {"name": "notes", "publish_proxy_name": "notes", **hooked}],
        },
        "proxies": [{"name": "notes", "endpoint": f"{fastapi_app.url}/centrifugo/notes",
                     "timeout": HOOK_TIMEOUT}],
    })
    async with (json_websocket(server.ws_url, token=make_token("reader")) as reader,
                json_websocket(server.ws_url, token=make_token("alice")) as writer):
        subscribed = await reader.command(subscribe={"channel": channel})
        assert "subscribe" in subscribed, subscribed
        published = await writer.command(publish={"channel": channel, "data": ok})
        assert published == {"id": 2, "publish": {}}, published
        assert (await reader.push("pub", channel))["pub"]["data"] == rewritten
        rejected = await writer.command(publish={"channel": channel, "data": refused})
        assert rejected == {"id": 3, "error": error}
        # The refused publication never reached the channel: the next one is the next pub.
        await writer.command(publish={"channel": channel, "data": ok})
        assert (await reader.push("pub", channel))["pub"]["data"] == rewritten
        assert reader.pushes == []
