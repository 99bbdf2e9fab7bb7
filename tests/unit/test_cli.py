"""The ``tidings`` command: each command through ``main([...])``, the busy port in a process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml

from tidings import __version__
from tidings.cli import main
from tidings.config import Config, ConfigError, config_from_dict, config_to_dict, load_config
from tidings.config.validate import problems
from tidings.protocol.tokens import InvalidToken, TokenVerifier

KEY = "k" * 40
SUB_KEY = "s" * 40


@pytest.fixture(autouse=True)
def _no_tidings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TIDINGS_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, config: dict[str, Any], name: str = "c.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(config))
    return str(path)


def valid(**client: Any) -> dict[str, Any]:
    return {"client": {"token": {"hmac_secret_key": KEY}, **client}, "http_api": {"key": "a"}}


def out_err(capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    captured = capsys.readouterr()
    return captured.out, captured.err


# ------------------------------------------------------------------ --version


def test_version_flag_prints_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert out_err(capsys)[0] == f"tidings {__version__}\n"


# ------------------------------------------------------------------ gentoken, gensubtoken


@pytest.mark.parametrize(("ttl", "seconds"), [("1h", 3600), ("30m", 1800), ("90s", 90),
                                              ("120", 120)])
def test_gentoken_ttl_takes_durations_and_seconds(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], ttl: str, seconds: int) -> None:
    assert main(["gentoken", "-c", write(tmp_path, valid()), "-u", "42", "-t", ttl]) == 0
    claims = jwt.decode(out_err(capsys)[0].strip(), KEY, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == seconds


def test_gentoken_ttl_zero_means_no_expiry_and_junk_is_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, valid())
    assert main(["gentoken", "-c", path, "-t", "0"]) == 0
    assert "exp" not in jwt.decode(out_err(capsys)[0].strip(), KEY, algorithms=["HS256"])
    assert main(["gentoken", "-c", path, "-t", "soon"]) == 2
    assert "'soon' is not seconds or a duration" in out_err(capsys)[1]


def test_gentoken_channels_and_info_are_what_the_server_reads(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, valid())
    assert main(["gentoken", "-c", path, "-u", "42", "--channels", "a, b",
                 "--info", '{"json":1}']) == 0
    config, _ = load_config(path)
    token = TokenVerifier(config.client.token).verify_connect(out_err(capsys)[0].strip(),
                                                              time.time())
    assert (token.user, token.channels, token.info) == ("42", ("a", "b"), b'{"json":1}')
    assert main(["gentoken", "-c", path, "--info", "{nope"]) == 1
    assert "--info is not JSON" in out_err(capsys)[1]


def test_gensubtoken_signs_with_the_subscription_key_when_enabled(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, valid(subscription_token={"enabled": True,
                                                     "hmac_secret_key": SUB_KEY}))
    config, _ = load_config(path)
    assert main(["gensubtoken", "-c", path, "--user", "42", "--channel", "news",
                 "-t", "10m"]) == 0
    token = out_err(capsys)[0].strip()
    sub = TokenVerifier(config.client.subscription_token).verify_subscribe(token, time.time())
    assert (sub.user, sub.channel) == ("42", "news")
    assert 0 < sub.exp - time.time() <= 600
    with pytest.raises(InvalidToken):  # the connection key would not do (103 before)
        TokenVerifier(config.client.token).verify_subscribe(token, time.time())


def test_gentoken_channel_is_deprecated_and_follows_the_subscription_rules(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, valid(subscription_token={"enabled": True,
                                                     "hmac_secret_key": SUB_KEY}))
    assert main(["gentoken", "-c", path, "-u", "42", "--channel", "news"]) == 0
    out, err = out_err(capsys)
    assert "deprecated" in err and "gensubtoken" in err
    assert jwt.decode(out.strip(), SUB_KEY, algorithms=["HS256"])["channel"] == "news"


def test_gensubtoken_without_subscription_tokens_uses_the_connection_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, valid())
    assert main(["gensubtoken", "-c", path, "-u", "42", "--channel", "news"]) == 0
    assert jwt.decode(out_err(capsys)[0].strip(), KEY, algorithms=["HS256"])["sub"] == "42"


def test_tokens_carry_user_id_claim_audience_and_issuer(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    token_cfg = {"hmac_secret_key": KEY, "user_id_claim": "user_id", "audience": "app",
                 "issuer": "me"}
    path = write(tmp_path, {"client": {"token": token_cfg}})
    assert main(["gentoken", "-c", path, "-u", "42"]) == 0
    config, _ = load_config(path)
    token = out_err(capsys)[0].strip()
    assert TokenVerifier(config.client.token).verify_connect(token, time.time()).user == "42"


def test_gentoken_refuses_when_only_public_keys_are_configured(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, {"client": {"token": {"rsa_public_key": "-----BEGIN PUBLIC KEY"}}})
    assert main(["gentoken", "-c", path, "-u", "42"]) == 1
    out, err = out_err(capsys)
    assert out == "" and "only an RSA/ECDSA public key" in err
    assert main(["gentoken", "-c", write(tmp_path, {}, "empty.json")]) == 1
    assert "client.token.hmac_secret_key is not set" in out_err(capsys)[1]


# ------------------------------------------------------------------ checktoken


def test_checktoken_prints_the_claims_of_a_valid_token(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, valid())
    token = jwt.encode({"sub": "42", "channels": ["a"]}, KEY, algorithm="HS256")
    assert main(["checktoken", "-c", path, token]) == 0
    assert json.loads(out_err(capsys)[0]) == {"sub": "42", "channels": ["a"]}


def test_checktoken_refuses_invalid_expired_and_wrong_kind(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, valid(subscription_token={"enabled": True,
                                                     "hmac_secret_key": SUB_KEY}))
    wrong_key = jwt.encode({"sub": "42"}, "x" * 40, algorithm="HS256")
    assert main(["checktoken", "-c", path, wrong_key]) == 1
    assert "invalid token (client.token): token signature verification failed" in (
        out_err(capsys)[1])
    expired = jwt.encode({"sub": "42", "exp": int(time.time()) - 5}, KEY, algorithm="HS256")
    assert main(["checktoken", "-c", path, expired]) == 1
    assert "token expired" in out_err(capsys)[1]
    sub = jwt.encode({"sub": "42", "channel": "news"}, SUB_KEY, algorithm="HS256")
    assert main(["checktoken", "-c", path, sub]) == 1  # a connection token is checked
    out_err(capsys)
    assert main(["checktoken", "-c", path, "--sub", sub]) == 0
    assert json.loads(out_err(capsys)[0])["channel"] == "news"


# ------------------------------------------------------------------ genconfig


@pytest.mark.parametrize("name", ["c.json", "c.yaml", "c.yml"])
def test_genconfig_writes_the_format_its_extension_names(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    path = tmp_path / name
    assert main(["genconfig", "-o", str(path)]) == 0
    text = path.read_text()
    data = json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
    assert data["http_api"]["key"]
    if not name.endswith(".json"):
        with pytest.raises(ValueError):
            json.loads(text)  # YAML proper, not JSON (which YAML would read too)
    out_err(capsys)
    assert main(["checkconfig", "-c", str(path)]) == 0


def test_genconfig_toml_without_a_writer_is_refused_clearly(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tomli_w", None)  # as if not installed
    path = tmp_path / "c.toml"
    assert main(["genconfig", "-o", str(path)]) == 1
    assert "writing TOML needs the tomli-w package" in out_err(capsys)[1]
    assert not path.exists()


def test_genconfig_toml_with_a_writer(tmp_path: Path) -> None:
    import tomli_w  # a dependency  # noqa: F401
    path = tmp_path / "c.toml"
    assert main(["genconfig", "-o", str(path)]) == 0
    config, _ = load_config(path)
    assert config.http_api.key


# ------------------------------------------------------------------ checkconfig


def test_checkconfig_reports_every_problem_at_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_GRPC_API_ENABLED", "true")
    monkeypatch.setenv("TIDINGS_HTTP_API_KEYY", "x")
    path = write(tmp_path, {"client": {"tokn": {}}, "http_server": {"port": 70000},
                            "log": {"level": "loud"}})
    assert main(["checkconfig", "-c", path]) == 1
    out, err = out_err(capsys)
    lines = err.splitlines()
    assert out == ""
    assert ("warning: unknown config key 'client.tokn' is ignored (did you mean "
            "'client.token'?)") in lines
    assert any(line.startswith("warning: unknown environment variable "
                               "'TIDINGS_GRPC_API_ENABLED'") for line in lines)
    assert ("warning: unknown environment variable 'TIDINGS_HTTP_API_KEYY' is ignored (did "
            "you mean 'TIDINGS_HTTP_API_KEY'?)") in lines
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 4, errors
    assert "http_server.port" in errors[0] and "log.level" in errors[1]
    assert "no way to authenticate" in errors[2] and "3500" in errors[2]
    assert "http_api.key" in errors[3] and "401" in errors[3]


def test_checkconfig_with_warnings_only_exits_0(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = valid()
    config["http_api"]["kee"] = "x"
    assert main(["checkconfig", "-c", write(tmp_path, config)]) == 0
    out, err = out_err(capsys)
    assert out == "config is valid\n"
    assert "did you mean 'http_api.key'?" in err and "error" not in err


@pytest.mark.parametrize("config", [
    {"client": {"insecure": True}},
    {"client": {"allow_anonymous_connect_without_token": True}},
    {"client": {"proxy": {"connect": {"enabled": True, "endpoint": "http://app/connect"}}}},
    {"client": {"token": {"ecdsa_public_key": "PEM"}}},
])
def test_any_way_to_authenticate_will_do(config: dict[str, Any]) -> None:
    loaded, _ = config_from_dict({**config, "http_api": {"insecure": True}})
    assert problems(loaded) == []


def test_validate_still_raises_for_serve() -> None:
    with pytest.raises(ConfigError, match=r"http_server\.port"):
        config_from_dict({"http_server": {"port": 70000}})
    assert len(problems(Config())) == 2  # no way to connect, no API key: not serve's errors


def test_a_value_of_the_wrong_type_is_an_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, {"channel": {"namespaces": [{"name": "ok", "history_size": "x"}]}})
    assert main(["checkconfig", "-c", path]) == 1
    assert "channel.namespaces[0].history_size" in out_err(capsys)[1]


@pytest.mark.parametrize("command", [["checkconfig"], ["serve"], ["gentoken"]])
def test_an_unreadable_config_file_exits_2_naming_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    missing = tmp_path / "missing.json"
    assert main([*command, "-c", str(missing)]) == 2
    err = out_err(capsys)[1]
    assert err == f"tidings: cannot read config file {str(missing)!r}: No such file or " \
                  "directory\n"


# ------------------------------------------------------------------ defaultconfig


def _leaves(value: dict[str, Any], prefix: str = "") -> set[str]:
    """Dotted keys of the default config (an empty mapping, a list: one key)."""
    keys: set[str] = set()
    for key, item in value.items():
        if isinstance(item, dict) and item:
            keys |= _leaves(item, f"{prefix}{key}.")
        else:
            keys.add(f"{prefix}{key}")
    return keys


@pytest.mark.parametrize("command", ["defaultconfig", "configdoc"])
def test_defaultconfig_prints_every_key_with_its_default(
        capsys: pytest.CaptureFixture[str], command: str) -> None:
    assert main([command]) == 0
    lines = out_err(capsys)[0].splitlines()
    printed = {line.split(" = ")[0]: line.split(" = ", 1)[1] for line in lines
               if not line.startswith("#")}
    expected = _leaves(config_to_dict(Config()))
    assert expected <= set(printed), expected - set(printed)
    assert printed["http_server.port"] == "8000"
    assert printed["client.ping_interval"] == "25.0"
    assert printed["client.connection_limit"] == "0  # 0: unlimited"
    assert "channel.namespaces[].history_size" in printed
    assert "proxies[].endpoint" in printed


# ------------------------------------------------------------------ fatal errors


def test_a_busy_port_is_one_line_and_exit_1(tmp_path: Path) -> None:
    path = write(tmp_path, valid())
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        done = subprocess.run(
            [sys.executable, "-m", "tidings", "serve", "-c", path, "--port", str(port)],
            capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1
    assert done.stderr == f"tidings: cannot listen on 127.0.0.1:{port}: Address already in use\n"
