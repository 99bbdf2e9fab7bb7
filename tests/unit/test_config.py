"""Unit tests for tidings.config: defaults, file formats, durations, validation, env vars."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tidings.config import (
    Config,
    ConfigError,
    config_from_dict,
    config_from_env,
    load_config,
    parse_duration,
)

# The v6 example of PROTOCOL.md §9.4: every key is known.
V6_EXAMPLE: dict[str, Any] = {
    "client": {
        "insecure": False,
        "allowed_origins": ["http://localhost:3000"],
        "allow_anonymous_connect_without_token": False,
        "token": {"hmac_secret_key": "secret"},
        "subscribe_to_user_personal_channel": {"enabled": True},
        "ping_interval": "25s",
        "pong_timeout": "8s",
    },
    "http_api": {"key": "api_key"},
    "http_stream": {"enabled": True},
    "sse": {"enabled": True},
    "channel": {
        "without_namespace": {
            "presence": True, "history_size": 100, "history_ttl": "300s", "force_recovery": True
        },
        "namespaces": [{"name": "chat", "presence": True, "allow_subscribe_for_client": True}],
    },
}


def _load(raw: dict[str, Any]) -> Config:
    config, _ = config_from_dict(raw)
    return config


def _error(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw)
    return str(info.value)


# ------------------------------------------------------------------ defaults


def test_defaults() -> None:
    config, warnings = load_config(env={})
    assert warnings == []
    assert (config.http_server.address, config.http_server.port) == ("127.0.0.1", 8000)
    client = config.client
    assert (client.ping_interval, client.pong_timeout, client.channel_limit) == (25.0, 8.0, 128)
    assert (client.insecure, client.allowed_origins, client.token.hmac_secret_key) == (
        False, [], ""
    )
    assert config.websocket.message_size_limit == 65536
    assert config.http_api.key == ""
    channel = config.channel
    assert (channel.max_length, channel.private_prefix, channel.namespace_boundary) == (
        255, "$", ":"
    )
    assert (channel.user_boundary, channel.user_separator) == ("#", ",")
    assert channel.history_meta_ttl == 720 * 3600.0
    assert channel.namespaces == []
    assert channel.without_namespace.presence is False
    assert channel.without_namespace.history_enabled is False
    assert (config.engine.type, config.log.level, config.log.format) == ("memory", "info", "text")
    assert config == Config()


# ------------------------------------------------------------------ files


def _check_v6_example(config: Config) -> None:
    client = config.client
    assert (client.token.hmac_secret_key, config.http_api.key) == ("secret", "api_key")
    assert client.allowed_origins == ["http://localhost:3000"]
    assert client.subscribe_to_user_personal_channel.enabled is True
    assert (client.ping_interval, client.pong_timeout) == (25.0, 8.0)
    wns = config.channel.without_namespace
    assert (wns.presence, wns.history_size, wns.history_ttl) == (True, 100, 300.0)
    assert (wns.force_recovery, wns.history_enabled) == (True, True)
    (chat,) = config.channel.namespaces
    assert (chat.name, chat.presence, chat.allow_subscribe_for_client) == ("chat", True, True)
    assert chat.allow_publish_for_client is False


YAML_EXAMPLE = """
client:
  allowed_origins: ["http://localhost:3000"]
  token: {hmac_secret_key: secret}
  subscribe_to_user_personal_channel: {enabled: true}
  ping_interval: 25s
  pong_timeout: 8s
http_api: {key: api_key}
channel:
  without_namespace: {presence: true, history_size: 100, history_ttl: 300s, force_recovery: true}
  namespaces:
    - {name: chat, presence: true, allow_subscribe_for_client: true}
"""

TOML_EXAMPLE = """
[client]
allowed_origins = ["http://localhost:3000"]
ping_interval = "25s"
pong_timeout = 8
token = { hmac_secret_key = "secret" }
subscribe_to_user_personal_channel = { enabled = true }

[http_api]
key = "api_key"

[channel.without_namespace]
presence = true
history_size = 100
history_ttl = "300s"
force_recovery = true

[[channel.namespaces]]
name = "chat"
presence = true
allow_subscribe_for_client = true
"""


@pytest.mark.parametrize(
    ("name", "text", "warnings"),
    [
        (
            "config.json",
            json.dumps(V6_EXAMPLE),
            [],
        ),
        ("config.yaml", YAML_EXAMPLE, []),
        ("config.yml", YAML_EXAMPLE, []),
        ("config.toml", TOML_EXAMPLE, []),
    ],
)
def test_config_file_formats(tmp_path: Path, name: str, text: str, warnings: list[str]) -> None:
    path = tmp_path / name
    path.write_text(text)
    config, got = load_config(path, env={})
    assert sorted(got) == warnings
    _check_v6_example(config)
    config, _ = load_config(str(path), env={})  # a str path works too
    assert config.http_api.key == "api_key"


def test_empty_json_file_gives_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.json"
    path.write_text("  \n")
    config, warnings = load_config(path, env={})
    assert config == Config()
    assert warnings == []


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("bad.json", "{not json", "cannot parse"),
        ("bad.yaml", "client: [unclosed", "cannot parse"),
        ("bad.toml", "client = = 1", "cannot parse"),
        ("list.json", "[1, 2]", "object at the top level"),
    ],
)
def test_bad_files(tmp_path: Path, name: str, text: str, fragment: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert fragment in str(info.value)
    assert name in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.json", env={})


# ------------------------------------------------------------------ durations


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("300s", 300.0), ("1m30s", 90.0), ("720h", 2592000.0), ("1h30m15s", 5415.0),
        ("1.5h", 5400.0), ("250ms", 0.25), ("15", 15.0), (" 10s ", 10.0), ("", 0.0),
        ("0", 0.0), (10, 10.0), (2.5, 2.5), (0, 0.0),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value, "k") == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["5x", "abc", "1m30", "s", "-5s", -1, True, [1], None])
def test_parse_duration_invalid(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_duration(value, "client.ping_interval")
    assert "client.ping_interval" in str(info.value)


def test_durations_in_config() -> None:
    config = _load(
        {
            "client": {"ping_interval": "1m30s", "pong_timeout": 3, "stale_close_delay": "2.5s"},
            "channel": {
                "history_meta_ttl": "1h",
                "namespaces": [{"name": "ns", "history_size": 5, "history_ttl": "720h"}],
            },
            "shutdown": {"timeout": "1m"},
        }
    )
    client = config.client
    assert (client.ping_interval, client.pong_timeout, client.stale_close_delay) == (90, 3, 2.5)
    assert config.channel.history_meta_ttl == 3600.0
    assert config.channel.namespaces[0].history_ttl == 720 * 3600.0
    assert config.shutdown.timeout == 60.0


def test_invalid_duration_names_key_path() -> None:
    message = _error({"channel": {"namespaces": [{"name": "ns", "history_ttl": "soon"}]}})
    assert "channel.namespaces[0].history_ttl" in message
    assert "client.pong_timeout" in _error({"client": {"pong_timeout": "8 parsecs"}})


# ------------------------------------------------------------------ unknown keys, bad values


def test_unknown_keys_warn_with_full_path() -> None:
    client = {"tokn": {"hmac_secret_key": "x"}, "token": {"hmac_secert_key": "y"}}
    channel = {"namespaces": [{"name": "ab"}, {"name": "cd", "presense": True}]}
    config, warnings = config_from_dict({"client": client, "channel": channel, "bogus": 1})
    assert sorted(warnings) == [
        "unknown config key 'bogus' is ignored",
        "unknown config key 'channel.namespaces[1].presense' is ignored (did you mean "
        "'channel.namespaces[1].presence'?)",
        "unknown config key 'client.token.hmac_secert_key' is ignored (did you mean "
        "'client.token.hmac_secret_key'?)",
        "unknown config key 'client.tokn' is ignored (did you mean 'client.token'?)",
    ]
    assert config.client.token.hmac_secret_key == ""
    assert config.channel.namespaces[1].presence is False


def _nest(path: str, value: object) -> dict[str, Any]:
    *parents, last = path.split(".")
    raw: dict[str, Any] = {last: value}
    for part in reversed(parents):
        raw = {part: raw}
    return raw


WNS = "channel.without_namespace"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("http_server.port", "abc"), ("http_server.port", 70000), ("http_server.port", 0),
        ("client.insecure", "very"), ("client.allowed_origins", "*"), ("client", 5),
        ("client.channel_limit", -1), ("engine.type", "tarantool"), ("log_level", "loud"),
        (f"{WNS}.force_recovery_mode", "magic"), (f"{WNS}.allowed_delta_types", ["zstd"]),
        (f"{WNS}.publication_data_format", "xml"), (f"{WNS}.channel_regex", "(["),
    ],
)
def test_invalid_value_names_key(key: str, value: object) -> None:
    assert key in _error(_nest(key, value))


@pytest.mark.parametrize(
    ("namespace", "key"),
    [
        ({"name": "ns", "history_size": "ten"}, "channel.namespaces[1].history_size"),
        ({"name": "ns", "channel_regex": "(["}, "channel.namespaces[1].channel_regex"),
        ({"presence": True}, "channel.namespaces[1]"),  # no name
    ],
)
def test_invalid_namespace_value_names_key(namespace: dict[str, Any], key: str) -> None:
    assert key in _error({"channel": {"namespaces": [{"name": "ok"}, namespace]}})


@pytest.mark.parametrize("name", ["ab", "chat", "chat_1", "my-ns", "A-Z_09"])
def test_namespace_name_valid(name: str) -> None:
    config = _load({"channel": {"namespaces": [{"name": name}]}})
    assert config.channel.namespaces[0].name == name


# "chat\n" must fail too: PROTOCOL.md §9.1 gives ^[-a-zA-Z0-9_]{2,}$ (Go: $ is end of text).
@pytest.mark.parametrize("name", ["a", "", "bad name", "chat:x", "чат", "a.b", "chat\n"])
def test_namespace_name_invalid(name: str) -> None:
    message = _error({"channel": {"namespaces": [{"name": "ok"}, {"name": name}]}})
    assert "channel.namespaces[1].name" in message


def test_duplicate_namespace() -> None:
    message = _error({"channel": {"namespaces": [{"name": "chat"}, {"name": "chat"}]}})
    assert "duplicate namespace name 'chat'" in message


@pytest.mark.parametrize(
    ("options", "where"),
    [
        ({"history_size": 10}, "history_ttl"),
        ({"history_ttl": "60s"}, "history_size"),
        ({"history_size": -1, "history_ttl": "60s"}, "history_size"),
        ({"force_recovery": True}, "force_recovery/force_positioning"),
        ({"force_positioning": True}, "force_recovery/force_positioning"),
    ],
)
def test_history_options_checked(options: dict[str, Any], where: str) -> None:
    ns_message = _error({"channel": {"namespaces": [{"name": "ns", **options}]}})
    assert f"channel.namespaces[0].{where}" in ns_message
    assert f"channel.without_namespace.{where}" in _error(
        {"channel": {"without_namespace": options}}
    )


def test_personal_channel_namespace_must_exist() -> None:
    personal = {"subscribe_to_user_personal_channel": {"personal_channel_namespace": "personal"}}
    message = _error({"client": personal})
    assert "personal_channel_namespace" in message
    config = _load({"client": personal, "channel": {"namespaces": [{"name": "personal"}]}})
    personal_config = config.client.subscribe_to_user_personal_channel
    assert personal_config.personal_channel_namespace == "personal"


# ------------------------------------------------------------------ environment


def test_env_scalars() -> None:
    env = {
        "TIDINGS_CLIENT_TOKEN_HMAC_SECRET_KEY": "s3cret",
        "TIDINGS_CLIENT_SUBSCRIPTION_TOKEN_HMAC_SECRET_KEY": "sub-secret",
        "TIDINGS_HTTP_API_KEY": "api_key",
        "TIDINGS_HTTP_SERVER_PORT": "9001",
        "TIDINGS_CHANNEL_WITHOUT_NAMESPACE_PRESENCE": "true",
        "TIDINGS_CLIENT_PING_INTERVAL": "1m",
        "PATH": "/usr/bin",
        "CENTRIFUGO_HTTP_API_KEY": "not-ours",
        "TIDINGS_NO_SUCH_KEY": "x",
    }
    assert config_from_env(env) == {
        "client": {
            "token": {"hmac_secret_key": "s3cret"},
            "subscription_token": {"hmac_secret_key": "sub-secret"},
            "ping_interval": "1m",
        },
        "http_api": {"key": "api_key"},
        "http_server": {"port": 9001},
        "channel": {"without_namespace": {"presence": True}},
    }
    config, warnings = load_config(env=env)
    assert warnings == ["unknown environment variable 'TIDINGS_NO_SUCH_KEY' is ignored"]
    assert (config.client.token.hmac_secret_key, config.http_api.key) == ("s3cret", "api_key")
    assert (config.http_server.port, config.client.ping_interval) == (9001, 60.0)
    assert config.channel.without_namespace.presence is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("1", True), ("YES", True), ("on", True), ("false", False), ("0", False)],
)
def test_env_bools(text: str, expected: bool) -> None:
    config, _ = load_config(env={"TIDINGS_CLIENT_INSECURE": text})
    assert config.client.insecure is expected


def test_env_invalid_value_names_key() -> None:
    with pytest.raises(ConfigError, match=r"channel\.without_namespace\.presence"):
        load_config(env={"TIDINGS_CHANNEL_WITHOUT_NAMESPACE_PRESENCE": "maybe"})
    with pytest.raises(ConfigError, match=r"http_server\.port"):
        load_config(env={"TIDINGS_HTTP_SERVER_PORT": "eighty"})


def test_env_namespaces() -> None:
    env = {
        "TIDINGS_CHANNEL_NAMESPACES": "chat news",
        "TIDINGS_CHANNEL_NAMESPACES_CHAT_HISTORY_SIZE": "10",
        "TIDINGS_CHANNEL_NAMESPACES_CHAT_HISTORY_TTL": "60s",
        "TIDINGS_CHANNEL_NAMESPACES_NEWS_PRESENCE": "true",
        "TIDINGS_CHANNEL_NAMESPACES_NEWS_ALLOWED_DELTA_TYPES": "fossil",
    }
    config, warnings = load_config(env=env)
    assert warnings == []
    chat, news = config.channel.namespaces
    assert chat.name == "chat"
    assert (chat.history_size, chat.history_ttl, chat.presence) == (10, 60.0, False)
    assert chat.history_enabled is True
    assert news.name == "news"
    assert (news.history_size, news.presence) == (0, True)
    assert news.allowed_delta_types == ["fossil"]


def test_env_namespaces_json() -> None:
    env = {"TIDINGS_CHANNEL_NAMESPACES": '[{"name": "chat", "presence": true}, {"name": "xy"}]'}
    config, _ = load_config(env=env)
    got = [(ns.name, ns.presence) for ns in config.channel.namespaces]
    assert got == [("chat", True), ("xy", False)]


def test_env_lists() -> None:
    config, _ = load_config(env={"TIDINGS_CLIENT_ALLOWED_ORIGINS": "a b"})
    assert config.client.allowed_origins == ["a", "b"]
    config, _ = load_config(env={"TIDINGS_CLIENT_ALLOWED_ORIGINS": '["http://x:1", "*"]'})
    assert config.client.allowed_origins == ["http://x:1", "*"]


def test_env_custom_prefix() -> None:
    env = {"CENTRIFUGO_HTTP_API_KEY": "k", "TIDINGS_HTTP_API_KEY": "other"}
    assert config_from_env(env, prefix="CENTRIFUGO_") == {"http_api": {"key": "k"}}


def test_load_config_reads_process_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_HTTP_API_KEY", "from-os-environ")
    config, _ = load_config()
    assert config.http_api.key == "from-os-environ"


def test_precedence_file_env_overrides(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    server = {"port": 8001, "address": "0.0.0.0"}
    client = {"token": {"hmac_secret_key": "file-secret"}, "channel_limit": 5}
    raw = {"http_api": {"key": "file-key"}, "http_server": server, "client": client}
    path.write_text(json.dumps(raw))
    env = {"TIDINGS_HTTP_API_KEY": "env-key", "TIDINGS_HTTP_SERVER_PORT": "8002"}
    config, _ = load_config(path, env=env, overrides={"http_server": {"port": 8003}})
    assert config.http_api.key == "env-key"  # env beats file
    assert config.http_server.port == 8003  # overrides beat env
    assert config.http_server.address == "0.0.0.0"  # merged, not replaced
    assert config.client.token.hmac_secret_key == "file-secret"
    assert config.client.channel_limit == 5
    config, _ = load_config(path, env=env)
    assert config.http_server.port == 8002
    config, _ = load_config(path, env={})
    assert (config.http_server.port, config.http_api.key) == (8001, "file-key")


def test_unbuilt_features_are_refused_or_warned() -> None:
    with pytest.raises(ConfigError, match="cache mode is not supported yet"):
        config_from_dict({"channel": {"without_namespace": {
            "history_size": 1, "history_ttl": "60s", "force_recovery": True,
            "force_recovery_mode": "cache"}}})
    config, warnings = config_from_dict(
        {"channel": {"namespaces": [{"name": "st", "allowed_delta_types": ["fossil"]}]}}
    )
    assert warnings == [] and config.channel.namespaces[0].allowed_delta_types == ["fossil"]


def test_redis_engine_config() -> None:
    config, warnings = config_from_dict({
        "engine": {"type": "redis", "redis": {
            "address": "redis://127.0.0.1:6390", "prefix": "app", "io_timeout": "500ms",
            "presence_ttl": "30s",
        }},
        "presence_manager": {"enabled": True, "redis": {"address": ["unix:///tmp/r.sock"]}},
    })
    assert warnings == []
    assert config.engine.redis.address == ["redis://127.0.0.1:6390"]
    assert config.engine.redis.io_timeout == 0.5
    assert config.engine.redis.presence_ttl == 30.0
    assert config.presence_manager.redis.address == ["unix:///tmp/r.sock"]


@pytest.mark.parametrize(
    ("redis", "needle"),
    [
        ({"address": ["http://x:1"]}, "engine.redis.address"),
        ({"sentinel_address": ["127.0.0.1:26379"]}, "sentinel_master_name"),
        ({"prefix": "a{b}"}, "engine.redis.prefix"),
        ({"address": [], "cluster_address": []}, "engine.redis.address"),
    ],
)
def test_bad_redis_config_names_key(redis: dict[str, Any], needle: str) -> None:
    assert needle in _error({"engine": {"type": "redis", "redis": redis}})


def test_presence_manager_needs_redis_engine() -> None:
    assert "presence_manager" in _error({"presence_manager": {"enabled": True}})


def test_internal_listener_and_prometheus_keys() -> None:
    config, warnings = config_from_dict({
        "http_server": {"internal_address": "10.0.0.1", "internal_port": 9000},
        "http_api": {"external": True},
        "prometheus": {"enabled": True, "handler_prefix": "/prom",
                       "instrument_http_handlers": True,
                       "recovered_publications_histogram": True},
    })
    assert warnings == []
    assert config.http_server.internal_port == "9000"  # a string, as in Centrifugo
    assert config.http_server.internal_address == "10.0.0.1"
    assert config.http_api.external and config.prometheus.enabled
    defaults = Config()
    assert (defaults.http_server.internal_port, defaults.http_api.external) == ("", False)
    assert (defaults.prometheus.enabled, defaults.prometheus.handler_prefix) == (False,
                                                                                 "/metrics")
    env = config_from_env({"TIDINGS_HTTP_SERVER_INTERNAL_PORT": "9001",
                           "TIDINGS_PROMETHEUS_ENABLED": "true"})
    assert env == {"http_server": {"internal_port": "9001"}, "prometheus": {"enabled": True}}


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"http_server": {"internal_port": "x"}}, "http_server.internal_port"),
        ({"http_server": {"internal_port": 70000}}, "http_server.internal_port"),
        ({"prometheus": {"handler_prefix": "metrics"}}, "prometheus.handler_prefix"),
        ({"prometheus": {"handler_prefix": "/api/metrics"}}, "prometheus.handler_prefix"),
        ({"prometheus": {"handler_prefix": "/health"}}, "prometheus.handler_prefix"),
    ],
)
def test_bad_internal_listener_or_metrics_path_names_key(raw: dict[str, Any],
                                                         needle: str) -> None:
    assert needle in _error(raw)
