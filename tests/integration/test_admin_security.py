"""The admin web interface's doors, over plain HTTP against real ``tidings serve`` processes:
every admin endpoint refuses a missing, forged, expired or misplaced token; wrong passwords
are throttled; nothing admin answers with ``admin.enabled`` false; the admin token and the
server API key each open only their own door; where admin is served (internal listener,
``admin.external``, ``admin.handler_prefix``); ``admin.insecure``.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator

import aiohttp
import pytest

from tests.support.admin import ADMIN, ADMIN_PASSWORD, ADMIN_SECRET, admin_api, admin_login
from tests.support.server import (
    API_KEY,
    BASE_CONFIG,
    ServerFactory,
    ServerProcess,
    deep_merge,
    start_server,
    unique,
)
from tidings.admin.auth import MAX_AGE, Throttle, make_token

# (method, path, body) of every admin endpoint that needs the token.
GUARDED = [
    ("POST", "/admin/api", b'{"method":"info","params":{}}'),
    ("GET", "/admin/tail?channel=news", b""),
]


def _bad_tokens() -> dict[str, dict[str, str]]:
    """Authorization headers that must all be refused."""
    good = make_token(ADMIN_SECRET)
    forged = make_token("some-other-secret-than-the-servers")
    expired = make_token(ADMIN_SECRET, now=time.time() - MAX_AGE - 60)
    future = make_token(ADMIN_SECRET, now=time.time() + 3600)
    raw = bytearray(base64.urlsafe_b64decode(good))
    raw[-1] ^= 1  # one bit of the MAC
    tampered = base64.urlsafe_b64encode(bytes(raw)).decode()
    return {
        "missing": {},
        "empty": {"Authorization": ""},
        "garbage": {"Authorization": "token not-a-token"},
        "forged": {"Authorization": f"token {forged}"},
        "expired": {"Authorization": f"token {expired}"},
        "from the future": {"Authorization": f"token {future}"},
        "tampered": {"Authorization": f"token {tampered}"},
        "wrong scheme": {"Authorization": f"Bearer {good}"},
        "three fields": {"Authorization": f"token {good} extra"},
        "the API key": {"Authorization": f"token {API_KEY}"},
        "the API key as apikey": {"Authorization": f"apikey {API_KEY}"},
        "the API key header": {"X-API-Key": API_KEY},
        "the password": {"Authorization": f"token {ADMIN_PASSWORD}"},
    }


@pytest.fixture(scope="module")
def admin_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the tests that change nothing another would see."""
    server = start_server(tmp_path_factory.mktemp("admin"), deep_merge(BASE_CONFIG, ADMIN))
    yield server
    server.stop()


async def _request(http: aiohttp.ClientSession, method: str, url: str, body: bytes = b"",
                   headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    async with http.request(method, url, data=body or None, headers=headers or {}) as resp:
        return resp.status, await resp.read()


async def test_every_guarded_endpoint_refuses_missing_forged_and_expired_tokens(
    admin_server: ServerProcess, http: aiohttp.ClientSession
) -> None:
    base = admin_server.http_url
    for method, path, body in GUARDED:
        for name, headers in _bad_tokens().items():
            status, answer = await _request(http, method, base + path, body, headers)
            assert (status, answer) == (401, b""), (path, name, status, answer)
    # The same requests with the real token get through (the test can fail).
    token = make_token(ADMIN_SECRET)
    status, answer = await _request(http, "POST", f"{base}/admin/api", GUARDED[0][2],
                                    {"Authorization": f"token {token}"})
    assert status == 200 and b'"nodes"' in answer, answer
    async with http.get(f"{base}/admin/tail", params={"channel": "news"},
                        headers={"Authorization": f"Token {token}"}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    # init tells whether a token is good, and nothing else.
    for name, headers in _bad_tokens().items():
        async with http.get(f"{base}/admin/init", headers=headers) as resp:
            assert await resp.json() == {"authenticated": False, "edition": "oss",
                                         "insecure": False}, name
    async with http.get(f"{base}/admin/init",
                        headers={"Authorization": f"token {token}"}) as resp:
        assert (await resp.json())["authenticated"] is True


async def test_guarded_endpoints_refuse_before_reading_the_body(
    admin_server: ServerProcess, http: aiohttp.ClientSession
) -> None:
    """No token: 401 at the headers, however big the body says it is; wrong methods 405."""
    base = admin_server.http_url
    status, _ = await _request(http, "POST", f"{base}/admin/api", b"x" * 100_000)
    assert status == 401
    token = {"Authorization": f"token {make_token(ADMIN_SECRET)}"}
    assert (await _request(http, "GET", f"{base}/admin/api", headers=token))[0] == 405
    assert (await _request(http, "POST", f"{base}/admin/tail", b"{}", token))[0] == 405
    assert (await _request(http, "GET", f"{base}/admin/auth"))[0] == 405
    assert (await _request(http, "POST", f"{base}/index.html", b"x"))[0] == 405


async def test_wrong_passwords_are_refused_then_throttled(
    tidings_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    admin_server = tidings_server(ADMIN)  # its own: the throttle counts 127.0.0.1's failures
    url = f"{admin_server.http_url}/admin/auth"

    async def attempt(password: str) -> tuple[int, str, str | None]:
        async with http.post(url, data={"password": password}) as resp:
            return resp.status, await resp.text(), resp.headers.get("Retry-After")

    # A right password clears the count of wrong ones.
    for _ in range(Throttle.FREE - 1):
        assert (await attempt("guess"))[0] == 400
    status, body, _ = await attempt(ADMIN_PASSWORD)
    assert status == 200 and '"token"' in body
    for i in range(Throttle.FREE):
        status, body, _ = await attempt(f"guess {i}")
        assert (status, body) == (400, "wrong password\n"), i
    # Now even the right password waits: 429, no token, and when to retry.
    status, body, retry_after = await attempt(ADMIN_PASSWORD)
    assert status == 429, body
    assert "token" not in body and "retry in" in body
    assert retry_after is not None and 1 <= int(retry_after) <= Throttle.BASE_DELAY + 1
    assert admin_server.wait_log("admin login refused: wrong password from 127.0.0.1")
    assert ADMIN_PASSWORD not in admin_server.log_text()


async def test_nothing_admin_answers_when_admin_is_disabled(
    tidings_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    server = tidings_server({"admin": {"enabled": False, "password": ADMIN_PASSWORD,
                                       "secret": ADMIN_SECRET}})
    token = {"Authorization": f"token {make_token(ADMIN_SECRET)}"}
    base = server.http_url
    for method, path, body in [*GUARDED, ("GET", "/admin/init", b""),
                               ("POST", "/admin/auth", b"password=" + ADMIN_PASSWORD.encode()),
                               ("GET", "/", b""), ("GET", "/index.html", b""),
                               ("GET", "/js/app.js", b""), ("GET", "/style.css", b"")]:
        status, _ = await _request(http, method, base + path, body, token)
        assert status == 404, (path, status)


async def test_the_admin_token_and_the_api_key_each_open_only_their_door(
    admin_server: ServerProcess, http: aiohttp.ClientSession
) -> None:
    base = admin_server.http_url
    token = await admin_login(http, base)
    for headers, query in [({"X-API-Key": token}, ""), ({"Authorization": f"apikey {token}"}, ""),
                           ({"Authorization": f"token {token}"}, ""), ({}, f"?api_key={token}")]:
        status, _ = await _request(http, "POST", f"{base}/api/info{query}", b"{}", headers)
        assert status == 401, headers
    status, _ = await _request(http, "POST", f"{base}/api/info", b"{}", {"X-API-Key": API_KEY})
    assert status == 200
    status, _ = await _request(http, "POST", f"{base}/admin/api", GUARDED[0][2],
                               {"X-API-Key": API_KEY})
    assert status == 401


async def test_the_admin_api_speaks_the_legacy_format(
    admin_server: ServerProcess, http: aiohttp.ClientSession
) -> None:
    base = admin_server.http_url
    token = await admin_login(http, base)
    channel = unique("legacy").encode()
    body = b"\n".join([
        b'{"id": 1, "method": "publish", "params": {"channel": "%s", "data": {"n": 1}}}' % channel,
        b'{"id": 2, "method": 9, "params": {}}',
        b'{"id": 3, "method": "connections", "params": {"user": "nobody"}}',
        b'{"method": "publish", "params": {}}',
        b'{"id": 5, "method": "connections", "params": {"limit": "many"}}',
    ])
    async with http.post(f"{base}/admin/api", data=body,
                         headers={"Authorization": f"token {token}"}) as resp:
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "no-store"
        replies = [json.loads(line) for line in (await resp.read()).split(b"\n")]
    assert replies[0] == {"id": 1, "result": {"offset": 1, "epoch": replies[0]["result"]["epoch"]}}
    assert replies[1]["id"] == 2 and len(replies[1]["result"]["nodes"]) == 1
    assert replies[2] == {"id": 3, "result": {"connections": [], "total": 0}}
    assert replies[3] == {"error": {"code": 107, "message": "bad request"}}
    assert replies[4]["id"] == 5 and replies[4]["error"]["code"] == 107
    status, _ = await _request(http, "POST", f"{base}/admin/api", b"not json",
                               {"Authorization": f"token {token}"})
    assert status == 400


async def _serve_check(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url) as resp:
        return resp.status


@pytest.mark.parametrize("external", [False, True])
async def test_admin_is_on_the_internal_listener_unless_external(
    external: bool, tidings_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    server = tidings_server({**ADMIN, "admin": {**ADMIN["admin"], "external": external},
                             "http_server": {"internal_port": "0"}})
    on, off = ((server.http_url, server.internal_url) if external
               else (server.internal_url, server.http_url))
    for path in ("/admin/init", "/", "/js/app.js"):
        assert await _serve_check(http, on + path) == 200, path
        assert await _serve_check(http, off + path) == 404, path
    assert (await admin_api(http, on, await admin_login(http, on), "info", {}))["result"]


async def test_handler_prefix_moves_every_admin_path(
    tidings_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    server = tidings_server({**ADMIN, "admin": {**ADMIN["admin"], "handler_prefix": "/ops/"}})
    base = server.http_url
    for path in ("/admin/init", "/", "/js/app.js"):
        assert await _serve_check(http, base + path) == 404, path
    async with http.get(f"{base}/ops", allow_redirects=False) as resp:
        assert (resp.status, resp.headers["Location"]) == (301, "/ops/")
    async with http.get(f"{base}/ops/") as resp:
        assert resp.status == 200 and "<title>Tidings admin</title>" in await resp.text()
    token = await admin_login(http, f"{base}/ops")
    reply = await admin_api(http, f"{base}/ops", token, "info", {})
    assert len(reply["result"]["nodes"]) == 1


async def test_the_ui_files_hold_no_secret_and_load_nothing_from_elsewhere(
    admin_server: ServerProcess, http: aiohttp.ClientSession
) -> None:
    base = admin_server.http_url
    async with http.get(f"{base}/") as resp:
        index = await resp.text()
        csp = resp.headers["Content-Security-Policy"]
        assert resp.headers["X-Frame-Options"] == "DENY"
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    # Every file the page names, and the modules those import.
    names = set(re.findall(r'(?:src|href)="([^"#]+)"', index))
    seen: dict[str, str] = {}
    while names:
        name = names.pop()
        assert not re.match(r"^(https?:)?//", name), f"{name}: not served here"
        async with http.get(f"{base}/{name}") as resp:
            assert resp.status == 200, name
            text = await resp.text()
        seen[name] = text
        folder = name.rsplit("/", 1)[0] + "/" if "/" in name else ""
        names |= {folder + m.removeprefix("./") for m in re.findall(r"from '(\./[^']+)'", text)
                  if folder + m.removeprefix("./") not in seen}
    assert {"style.css", "js/app.js", "js/api.js", "js/channel.js"} <= set(seen)
    for name, text in [("index.html", index), *seen.items()]:
        for secret in (ADMIN_PASSWORD, ADMIN_SECRET, API_KEY):
            assert secret not in text, (name, secret)
        assert "cdn" not in text.lower() and "https://" not in text, name


async def test_insecure_mode_needs_no_token_and_says_so_loudly(
    tidings_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    server = tidings_server({"admin": {"enabled": True, "insecure": True}})
    assert server.wait_log("admin.insecure is on")
    assert "WARNING" in next(line for line in server.log_lines if "admin.insecure" in line)
    base = server.http_url
    async with http.get(f"{base}/admin/init") as resp:
        assert await resp.json() == {"authenticated": True, "edition": "oss", "insecure": True}
    status, body = await _request(http, "POST", f"{base}/admin/api", GUARDED[0][2])
    assert status == 200 and b'"nodes"' in body
    # Without a password there is nothing to log in with.
    status, _ = await _request(http, "POST", f"{base}/admin/auth", b"password=")
    assert status == 400


async def test_tail_refuses_a_bad_channel(admin_server: ServerProcess,
                                          http: aiohttp.ClientSession) -> None:
    headers = {"Authorization": f"token {make_token(ADMIN_SECRET)}"}
    for params in ({}, {"channel": ""}, {"channel": "nosuchns:x"}, {"channel": "x" * 300}):
        async with http.get(f"{admin_server.http_url}/admin/tail", params=params,
                            headers=headers) as resp:
            assert resp.status == 400, params
            assert "channel" in await resp.text()
