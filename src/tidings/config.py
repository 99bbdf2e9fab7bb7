"""Configuration: Centrifugo v6 key names, every default in one place.

A Centrifugo JSON config works as is for the features Tidings has. Sources, later ones win:
built-in defaults < config file (JSON, YAML or TOML) < ``TIDINGS_*`` environment variables <
command-line flags. Unknown keys produce a warning (returned by :func:`load_config`, logged by the
CLI); invalid values raise :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import yaml

__all__ = [
    "ChannelConfig",
    "ChannelOptions",
    "ClientConfig",
    "Config",
    "ConfigError",
    "Namespace",
    "RedisConfig",
    "load_config",
    "parse_duration",
]


class ConfigError(ValueError):
    """An invalid configuration value; the message names the key."""


class _Base(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    pass


class ChannelOptions(_Base):
    """Options of one namespace (or of channels without a namespace). Durations in seconds."""

    presence: bool = False
    join_leave: bool = False
    force_push_join_leave: bool = False
    history_size: int = 0
    history_ttl: float = 0.0
    history_meta_ttl: float = 0.0  # 0: use channel.history_meta_ttl
    force_positioning: bool = False
    allow_positioning: bool = False
    force_recovery: bool = False
    allow_recovery: bool = False
    force_recovery_mode: str = "stream"
    allowed_delta_types: list[str] = msgspec.field(default_factory=list)
    delta_publish: bool = False
    allow_subscribe_for_client: bool = False
    allow_subscribe_for_anonymous: bool = False
    allow_publish_for_client: bool = False
    allow_publish_for_subscriber: bool = False
    allow_publish_for_anonymous: bool = False
    allow_presence_for_client: bool = False
    allow_presence_for_subscriber: bool = False
    allow_presence_for_anonymous: bool = False
    allow_history_for_client: bool = False
    allow_history_for_subscriber: bool = False
    allow_history_for_anonymous: bool = False
    allow_user_limited_channels: bool = False
    channel_regex: str = ""
    publication_data_format: str = ""

    @property
    def history_enabled(self) -> bool:
        return self.history_size > 0 and self.history_ttl > 0


class Namespace(ChannelOptions, kw_only=True):
    name: str


class ChannelConfig(_Base):
    without_namespace: ChannelOptions = msgspec.field(default_factory=ChannelOptions)
    namespaces: list[Namespace] = msgspec.field(default_factory=list)
    max_length: int = 255
    private_prefix: str = "$"
    namespace_boundary: str = ":"
    user_boundary: str = "#"
    user_separator: str = ","
    history_meta_ttl: float = 720 * 3600.0


class TokenConfig(_Base):
    hmac_secret_key: str = ""
    hmac_previous_secret_key: str = ""
    rsa_public_key: str = ""
    ecdsa_public_key: str = ""
    audience: str = ""
    audience_regex: str = ""
    issuer: str = ""
    issuer_regex: str = ""
    user_id_claim: str = ""


class SubscriptionTokenConfig(TokenConfig):
    enabled: bool = False


class PersonalChannelConfig(_Base):
    enabled: bool = False
    personal_channel_namespace: str = ""


class ClientConfig(_Base):
    insecure: bool = False
    insecure_skip_token_signature_verify: bool = False
    allowed_origins: list[str] = msgspec.field(default_factory=list)
    allow_anonymous_connect_without_token: bool = False
    disallow_anonymous_connection_tokens: bool = False
    token: TokenConfig = msgspec.field(default_factory=TokenConfig)
    subscription_token: SubscriptionTokenConfig = msgspec.field(
        default_factory=SubscriptionTokenConfig
    )
    subscribe_to_user_personal_channel: PersonalChannelConfig = msgspec.field(
        default_factory=PersonalChannelConfig
    )
    ping_interval: float = 25.0
    pong_timeout: float = 8.0
    expired_close_delay: float = 25.0
    expired_sub_close_delay: float = 25.0
    stale_close_delay: float = 10.0
    channel_limit: int = 128
    connection_limit: int = 0  # 0: unlimited
    user_connection_limit: int = 0
    queue_max_size: int = 1048576  # bytes queued for one slow client before disconnect 3008
    history_max_publication_limit: int = 300
    recovery_max_publication_limit: int = 300
    connect_include_server_time: bool = False


class HttpServerConfig(_Base):
    address: str = "127.0.0.1"
    port: int = 8000


class HttpApiConfig(_Base):
    key: str = ""
    insecure: bool = False
    disabled: bool = False
    error_mode: str = ""
    max_body_size: int = 10 * 1024 * 1024


class WebSocketConfig(_Base):
    disabled: bool = False
    message_size_limit: int = 65536


class HealthConfig(_Base):
    enabled: bool = True


class StreamConfig(_Base):
    """An HTTP-streaming or SSE transport (bidirectional emulation or unidirectional)."""

    enabled: bool = False
    max_request_body_size: int = 65536


class UniWebSocketConfig(_Base):
    enabled: bool = False
    message_size_limit: int = 65536


class RedisTLSConfig(_Base):
    enabled: bool = False
    cert_pem_file: str = ""
    key_pem_file: str = ""
    server_ca_pem_file: str = ""
    insecure_skip_verify: bool = False
    server_name: str = ""


class RedisConfig(_Base):
    """Where the Redis (or Valkey) engine keeps its state; Centrifugo v6 key names.

    ``address`` lists standalone instances (``redis://``, ``rediss://``, ``unix://``); more than
    one shards channels across them (client-side consistent hashing). ``cluster_address`` selects
    Redis Cluster instead, ``sentinel_address`` + ``sentinel_master_name`` Redis Sentinel."""

    address: list[str] = msgspec.field(default_factory=lambda: ["redis://127.0.0.1:6379"])
    prefix: str = "tidings"
    connect_timeout: float = 1.0
    io_timeout: float = 4.0
    db: int = 0
    user: str = ""
    password: str = ""
    client_name: str = ""
    cluster_address: list[str] = msgspec.field(default_factory=list)
    tls: RedisTLSConfig = msgspec.field(default_factory=RedisTLSConfig)
    sentinel_address: list[str] = msgspec.field(default_factory=list)
    sentinel_user: str = ""
    sentinel_password: str = ""
    sentinel_master_name: str = ""
    sentinel_client_name: str = ""
    presence_ttl: float = 60.0


class EngineConfig(_Base):
    type: str = "memory"
    redis: RedisConfig = msgspec.field(default_factory=RedisConfig)


class PresenceManagerConfig(_Base):
    """A separate Redis for presence (``enabled``); otherwise the engine keeps presence."""

    enabled: bool = False
    type: str = "redis"
    redis: RedisConfig = msgspec.field(default_factory=RedisConfig)


class ShutdownConfig(_Base):
    timeout: float = 30.0


class NodeConfig(_Base):
    name: str = ""


class Config(_Base):
    client: ClientConfig = msgspec.field(default_factory=ClientConfig)
    channel: ChannelConfig = msgspec.field(default_factory=ChannelConfig)
    http_server: HttpServerConfig = msgspec.field(default_factory=HttpServerConfig)
    http_api: HttpApiConfig = msgspec.field(default_factory=HttpApiConfig)
    websocket: WebSocketConfig = msgspec.field(default_factory=WebSocketConfig)
    health: HealthConfig = msgspec.field(default_factory=HealthConfig)
    http_stream: StreamConfig = msgspec.field(default_factory=StreamConfig)
    sse: StreamConfig = msgspec.field(default_factory=StreamConfig)
    uni_http_stream: StreamConfig = msgspec.field(default_factory=StreamConfig)
    uni_sse: StreamConfig = msgspec.field(default_factory=StreamConfig)
    uni_websocket: UniWebSocketConfig = msgspec.field(default_factory=UniWebSocketConfig)
    sockjs: StreamConfig = msgspec.field(default_factory=StreamConfig)
    engine: EngineConfig = msgspec.field(default_factory=EngineConfig)
    presence_manager: PresenceManagerConfig = msgspec.field(
        default_factory=PresenceManagerConfig
    )
    shutdown: ShutdownConfig = msgspec.field(default_factory=ShutdownConfig)
    node: NodeConfig = msgspec.field(default_factory=NodeConfig)
    log_level: str = "info"


# Keys whose values are durations: numbers are seconds, strings use Go syntax ("1m30s", "720h").
_DURATION_KEYS = frozenset(
    {
        "history_ttl",
        "history_meta_ttl",
        "ping_interval",
        "pong_timeout",
        "expired_close_delay",
        "expired_sub_close_delay",
        "stale_close_delay",
        "timeout",
        "connect_timeout",
        "io_timeout",
        "presence_ttl",
    }
)
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_NAMESPACE_NAME_RE = re.compile(r"^[-a-zA-Z0-9_]{2,}$")


def parse_duration(value: object, key: str) -> float:
    """Parse a Go-style duration string or a number of seconds into seconds."""
    if isinstance(value, bool):
        raise ConfigError(f"invalid value for {key!r}: expected a duration, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ConfigError(f"invalid value for {key!r}: duration must not be negative")
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text in ("", "0"):
            return 0.0
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return float(text)
        pos, total = 0, 0.0
        for m in _DURATION_RE.finditer(text):
            if m.start() != pos:
                break
            total += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if pos == len(text):
            return total
    raise ConfigError(f'invalid value for {key!r}: {value!r} is not a duration (e.g. "25s")')


def _schema_fields(struct: type[msgspec.Struct]) -> dict[str, Any]:
    hints: dict[str, Any] = {}
    for f in msgspec.structs.fields(struct):
        hints[f.encode_name] = f.type
    return hints


def _struct_type(tp: Any) -> type[msgspec.Struct] | None:
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return tp
    return None


def _list_item_struct(tp: Any) -> type[msgspec.Struct] | None:
    args = getattr(tp, "__args__", None)
    if getattr(tp, "__origin__", None) is list and args:
        return _struct_type(args[0])
    return None


def _normalize(
    raw: Mapping[str, Any], struct: type[msgspec.Struct], path: str, warnings: list[str]
) -> dict[str, Any]:
    """Drop and report unknown keys, parse durations; recurse into nested structs."""
    fields = _schema_fields(struct)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        full = f"{path}{key}"
        if key not in fields:
            warnings.append(f"unknown config key {full!r} is ignored")
            continue
        tp = fields[key]
        sub = _struct_type(tp)
        item = _list_item_struct(tp)
        if sub is not None and isinstance(value, Mapping):
            out[key] = _normalize(value, sub, f"{full}.", warnings)
        elif item is not None and isinstance(value, list):
            out[key] = [
                _normalize(v, item, f"{full}[{i}].", warnings) if isinstance(v, Mapping) else v
                for i, v in enumerate(value)
            ]
        elif key in _DURATION_KEYS:
            out[key] = parse_duration(value, full)
        elif (
            isinstance(value, str)
            and key in _ADDRESS_KEYS
            and getattr(tp, "__origin__", None) is list
        ):
            out[key] = [value]  # one address given as a string
        else:
            out[key] = value
    return out


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), dict):
            result[key] = _merge(result[key], value)
        else:
            result[key] = value
    return result


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a JSON, YAML or TOML config file (chosen by extension, JSON by default)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(p)!r}: {exc.strerror}") from exc
    suffix = p.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        elif suffix == ".toml":
            data = tomllib.loads(text)
        else:
            data = json.loads(text) if text.strip() else {}
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot parse config file {str(p)!r}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r} must hold an object at the top level")
    return data


def _env_value(text: str, tp: Any) -> Any:
    if tp is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off", ""):
            return False
        return text
    if tp is int:
        try:
            return int(text)
        except ValueError:
            return text
    if getattr(tp, "__origin__", None) is list:
        stripped = text.strip()
        if stripped.startswith("["):
            try:
                return json.loads(stripped)
            except ValueError as exc:
                raise ConfigError(f"invalid JSON list in environment variable: {exc}") from exc
        return stripped.split()
    return text


def _env_into(
    struct: type[msgspec.Struct], rest: str, value: str, prefix: str, env: Mapping[str, str]
) -> dict[str, Any] | None:
    """Match an env var suffix like ``TOKEN_HMAC_SECRET_KEY`` against struct fields."""
    fields = _schema_fields(struct)
    for name in sorted(fields, key=len, reverse=True):
        upper = name.upper()
        tp = fields[name]
        if rest == upper:
            sub = _struct_type(tp)
            if sub is not None:
                return None
            if _list_item_struct(tp) is not None:
                return {name: _env_namespaces(value, prefix + upper, env)}
            return {name: _env_value(value, tp)}
        if rest.startswith(upper + "_"):
            sub = _struct_type(tp)
            if sub is not None:
                inner = _env_into(sub, rest[len(upper) + 1 :], value, f"{prefix}{upper}_", env)
                if inner is not None:
                    return {name: inner}
    return None


def _env_namespaces(value: str, prefix: str, env: Mapping[str, str]) -> list[Any]:
    stripped = value.strip()
    if stripped.startswith("["):
        try:
            loaded = json.loads(stripped)
        except ValueError as exc:
            raise ConfigError(f"{prefix}: invalid JSON: {exc}") from exc
        if not isinstance(loaded, list):
            raise ConfigError(f"{prefix} must be a JSON array or space-separated names")
        return loaded
    items: list[Any] = []
    for name in stripped.split():
        ns: dict[str, Any] = {"name": name}
        ns_prefix = f"{prefix}_{name.upper()}_"
        for key, val in env.items():
            if key.startswith(ns_prefix):
                inner = _env_into(Namespace, key[len(ns_prefix) :], val, ns_prefix, env)
                if inner is not None:
                    ns.update(inner)
        items.append(ns)
    return items


_ADDRESS_KEYS = frozenset({"address", "cluster_address", "sentinel_address"})


def config_from_env(env: Mapping[str, str], prefix: str = "TIDINGS_") -> dict[str, Any]:
    """Turn ``TIDINGS_CLIENT_TOKEN_HMAC_SECRET_KEY=...`` style variables into a config dict."""
    result: dict[str, Any] = {}
    for key in sorted(env):
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix) :]
        if rest.startswith("CHANNEL_NAMESPACES_"):
            continue  # read through TIDINGS_CHANNEL_NAMESPACES
        piece = _env_into(Config, rest, env[key], prefix, env)
        if piece is not None:
            result = _merge(result, piece)
    return result


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[Config, list[str]]:
    """Build the effective :class:`Config`; returns it with a list of warnings."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = read_config_file(path)
    raw = _merge(raw, config_from_env(os.environ if env is None else env))
    if overrides:
        raw = _merge(raw, overrides)
    return config_from_dict(raw)


def config_from_dict(raw: Mapping[str, Any]) -> tuple[Config, list[str]]:
    warnings: list[str] = []
    normalized = _normalize(raw, Config, "", warnings)
    try:
        config = msgspec.convert(normalized, Config)
    except msgspec.ValidationError as exc:
        message = str(exc).replace("`$.", "`")
        raise ConfigError(f"invalid config: {message}") from exc
    validate(config)
    return config, warnings


def _validate_options(opts: ChannelOptions, where: str) -> None:
    if opts.history_size < 0:
        raise ConfigError(f"invalid value for '{where}.history_size': must be >= 0")
    if (opts.history_size > 0) != (opts.history_ttl > 0):
        raise ConfigError(
            f"'{where}.history_size' and '{where}.history_ttl' must be set together"
        )
    if (opts.force_recovery or opts.force_positioning) and not opts.history_enabled:
        raise ConfigError(f"'{where}.force_recovery/force_positioning' need history enabled")
    if opts.force_recovery_mode == "cache":
        raise ConfigError(f"'{where}.force_recovery_mode': cache mode is not supported yet "
                          "(use stream)")
    if opts.force_recovery_mode != "stream":
        raise ConfigError(f"invalid value for '{where}.force_recovery_mode': stream or cache")
    for delta in opts.allowed_delta_types:
        if delta != "fossil":
            raise ConfigError(f"invalid value in '{where}.allowed_delta_types': {delta!r}")
    if opts.publication_data_format not in ("", "json", "json_object", "binary"):
        raise ConfigError(f"invalid value for '{where}.publication_data_format'")
    if opts.channel_regex:
        try:
            re.compile(opts.channel_regex)
        except re.error as exc:
            raise ConfigError(f"invalid value for '{where}.channel_regex': {exc}") from exc


_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def _validate_redis(cfg: RedisConfig, where: str) -> None:
    if cfg.cluster_address and cfg.sentinel_address:
        raise ConfigError(f"'{where}': cluster_address and sentinel_address exclude each other")
    if cfg.sentinel_address and not cfg.sentinel_master_name:
        raise ConfigError(f"'{where}.sentinel_master_name' is required with sentinel_address")
    if not (cfg.address or cfg.cluster_address or cfg.sentinel_address):
        raise ConfigError(f"'{where}.address' must list at least one Redis address")
    for key, addresses in (("address", cfg.address), ("cluster_address", cfg.cluster_address)):
        for address in addresses:
            if "://" in address and not address.startswith(_REDIS_SCHEMES):
                raise ConfigError(f"invalid value in '{where}.{key}': {address!r} (use "
                                  "redis://, rediss:// or unix://)")
    if "{" in cfg.prefix or "}" in cfg.prefix:
        raise ConfigError(f"invalid value for '{where}.prefix': no braces (Redis hash tags)")
    if cfg.presence_ttl <= 0 or cfg.connect_timeout <= 0 or cfg.io_timeout <= 0:
        raise ConfigError(f"'{where}': presence_ttl, connect_timeout and io_timeout must be "
                          "positive")


def validate(config: Config) -> None:
    """Cross-field checks msgspec's type validation cannot express."""
    _validate_options(config.channel.without_namespace, "channel.without_namespace")
    seen: set[str] = set()
    for i, ns in enumerate(config.channel.namespaces):
        where = f"channel.namespaces[{i}]"
        if not _NAMESPACE_NAME_RE.fullmatch(ns.name):
            raise ConfigError(f"invalid value for '{where}.name': {ns.name!r} must match "
                              f"{_NAMESPACE_NAME_RE.pattern}")
        if ns.name in seen:
            raise ConfigError(f"duplicate namespace name {ns.name!r} in 'channel.namespaces'")
        seen.add(ns.name)
        _validate_options(ns, where)
    personal = config.client.subscribe_to_user_personal_channel
    if personal.personal_channel_namespace and personal.personal_channel_namespace not in seen:
        raise ConfigError(
            "'client.subscribe_to_user_personal_channel.personal_channel_namespace' names an "
            f"unknown namespace {personal.personal_channel_namespace!r}"
        )
    if not 0 < config.http_server.port < 65536:
        raise ConfigError("invalid value for 'http_server.port': must be 1..65535")
    if config.engine.type not in ("memory", "redis"):
        raise ConfigError(
            f"invalid value for 'engine.type': {config.engine.type!r} (available: memory, redis)"
        )
    if config.engine.type == "redis":
        _validate_redis(config.engine.redis, "engine.redis")
    if config.presence_manager.enabled:
        if config.presence_manager.type != "redis":
            raise ConfigError("invalid value for 'presence_manager.type': only redis")
        if config.engine.type != "redis":
            raise ConfigError("'presence_manager' needs 'engine.type' redis")
        _validate_redis(config.presence_manager.redis, "presence_manager.redis")
    if config.client.channel_limit < 0 or config.client.queue_max_size <= 0:
        raise ConfigError("'client.channel_limit' and 'client.queue_max_size' must be positive")
    if config.websocket.message_size_limit <= 0:
        raise ConfigError("'websocket.message_size_limit' must be positive")
    if config.log_level.lower() not in ("debug", "info", "warning", "warn", "error", "none"):
        raise ConfigError(f"invalid value for 'log_level': {config.log_level!r}")


def config_to_dict(config: Config) -> dict[str, Any]:
    result: dict[str, Any] = msgspec.to_builtins(config)
    return result
