"""The proxy protocol's JSON both ways (PROXY.md §3, §8), the backend-side helper
(``tidings.hooks.answer``), header forwarding and the config checks of the hook keys."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import msgspec
import pytest

from tidings.cli import main
from tidings.config import ConfigError, config_from_dict
from tidings.config.proxyschema import ProxyConfig
from tidings.config.validate import require_hook_endpoints
from tidings.errors import ReplyError
from tidings.hooks import (
    UNSET,
    ConnectRequest,
    ConnectResult,
    HookDisconnect,
    HookError,
    PublishResponse,
    RefreshRequest,
    RefreshResponse,
    answer,
)
from tidings.protocol.hookanswers import credentials, publish_answer
from tidings.proxy.base import HeaderRules, HookState


def test_requests_on_the_wire() -> None:
    wire = json.loads(msgspec.json.encode(RefreshRequest(
        client="c", transport="websocket", protocol="json", encoding="json", user="")))
    assert wire == {"client": "c", "transport": "websocket", "protocol": "json",
                    "encoding": "json", "user": ""}  # user always, headers never
    connect = ConnectRequest(client="c", data=msgspec.Raw(b'{"a":1}'), headers={"x": "y"})
    assert json.loads(msgspec.json.encode(connect))["data"] == {"a": 1}


def test_publish_data_null_replaces_and_absent_keeps() -> None:
    def decode(body: bytes) -> PublishResponse:
        return msgspec.json.decode(body, type=PublishResponse)

    null = decode(b'{"result":{"data":null,"b64data":"eA=="}}').result
    assert publish_answer(null, b'{"a":1}').data == b"null"  # data wins, null included
    absent = decode(b'{"result":{"skip_history":true}}').result
    kept = publish_answer(absent, b'{"a":1}')
    assert kept.data == b'{"a":1}' and kept.skip_history
    assert publish_answer(decode(b'{"result":{"b64data":"eA=="}}').result, b"1").data == b"x"
    assert absent is not None and absent.data is UNSET


def test_backend_helper_answers() -> None:
    def connect(req: ConnectRequest) -> ConnectResult | None:
        if req.name == "bad":
            raise HookError(4000, "no", temporary=True)
        if req.name == "gone":
            raise HookDisconnect(4501, "bye")
        if req.name == "none":
            return None
        return ConnectResult(user=req.headers["cookie"], info={"n": 1})

    headers = {"Cookie": "u1"}
    assert answer(connect, b'{"client":"c"}', headers) == (
        200, b'{"result":{"user":"u1","info":{"n":1}}}')
    assert json.loads(answer(connect, b'{"name":"bad"}', headers)[1]) == {
        "error": {"code": 4000, "message": "no", "temporary": True}}
    assert json.loads(answer(connect, b'{"name":"gone"}', headers)[1]) == {
        "disconnect": {"code": 4501, "reason": "bye"}}
    assert answer(connect, b'{"name":"none"}', headers) == (200, b"{}")
    assert answer(connect, b"not json", headers)[0] == 400
    with pytest.raises(TypeError):
        answer(lambda req: None, b"{}", headers)  # no request type to parse into


def test_forwarded_headers_precedence() -> None:
    state = HookState({"cookie": "real", "authorization": "Bearer t", "x-secret": "s"})
    state.emulated_headers = {"cookie": "emulated", "x-emu": "e"}
    proxy = ProxyConfig(http_headers=["Cookie"], emulated_headers=["Cookie", "X-Emu"])
    assert HeaderRules(proxy).forwarded(state) == {"cookie": "real", "x-emu": "e"}
    assert HeaderRules(ProxyConfig()).forwarded(state) == {}


@pytest.mark.parametrize(("overrides", "message"), [
    ({"proxies": [{"name": "default", "endpoint": "http://x"}]}, r"proxies\[0\]\.name"),
    ({"proxies": [{"name": "aa", "endpoint": "http://x"}, {"name": "aa", "endpoint": "http://y"}]},
     "duplicate proxy name"),
    ({"proxies": [{"name": "gg", "endpoint": "grpc://x:1"}]}, "gRPC proxies are not supported"),
    ({"proxies": [{"name": "tt", "endpoint": "http://x", "timeout": "0s"}]}, "timeout"),
    ({"channel": {"without_namespace": {"subscribe_proxy_enabled": True,
                                        "subscribe_proxy_name": "nope"}}}, "unknown proxy"),
    ({"rpc": {"namespaces": [{"name": "m", "proxy_enabled": True, "proxy_name": "xx"}]}},
     "unknown proxy"),
    ({"client": {"proxy": {"connect": {"enabled": True, "endpoint": "http://x", "http": {
        "status_to_code_transforms": [{"status_code": 403}]}}}}}, "exactly one"),
    ({"channel": {"without_namespace": {"subscribe_stream_proxy_enabled": True}}},
     "not supported"),
])
def test_config_checks(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict(overrides)


def test_a_config_file_needs_every_enabled_hook_endpoint() -> None:
    config, _ = config_from_dict({"rpc": {"without_namespace": {"proxy_enabled": True}}})
    with pytest.raises(ConfigError, match=r"'rpc\.proxy\.endpoint' is required"):
        require_hook_endpoints(config)  # the CLI's check; code may set the hook instead
    config, _ = config_from_dict({"rpc": {"without_namespace": {"proxy_enabled": True},
                                          "proxy": {"endpoint": "http://app/rpc"}}})
    require_hook_endpoints(config)


def test_checkconfig_refuses_hooks_it_cannot_call(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"client": {"proxy": {"connect": {
        "enabled": True, "endpoint": "python:no_such_module:connect"}}}}))
    assert main(["checkconfig", "--config", str(bad)]) == 1
    assert "no_such_module" in capsys.readouterr().err
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"client": {"proxy": {"connect": {
        "enabled": True, "endpoint": "python:tests.support.hookapp:connect"}}},
        "http_api": {"key": "k"}}))
    assert main(["checkconfig", "--config", str(good)]) == 0


def test_connect_result_channels_and_subs_are_merged() -> None:
    result = msgspec.json.decode(
        b'{"user":"u","channels":["news","chat"],"subs":{"chat":{"info":{"r":1}}}}',
        type=ConnectResult)
    creds = credentials(result, 0.0)
    assert sorted(creds.subs) == ["chat", "news"] and creds.subs["chat"].info == b'{"r":1}'


def test_info_that_is_not_json_is_refused() -> None:
    result = ConnectResult(user="u", b64info=base64.b64encode(b"\x00bin\n").decode())
    with pytest.raises(ReplyError) as err:
        credentials(result, 0.0)
    assert err.value.code == 100


async def test_a_deeply_nested_answer_is_a_failure_not_a_crash() -> None:
    import asyncio

    from tidings.proxy import HookFailure
    from tidings.proxy.http import HttpCaller, HttpPool

    nested = b'{"result":{"data":' + b"[" * 100_000 + b"]" * 100_000 + b"}}"

    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(nested), nested))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(backend, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = HttpPool()
    caller = HttpCaller("default", ProxyConfig(endpoint=f"http://127.0.0.1:{port}/rpc"), pool)
    request = RefreshRequest(user="u")
    with pytest.raises(HookFailure):
        await caller.call("refresh", request, RefreshResponse, None)
    assert caller.stats.failures == 1
    await pool.close()
    server.close()
