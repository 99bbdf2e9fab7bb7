"""Cross-field checks msgspec's type validation cannot express; each error names its key."""

from __future__ import annotations

import re

from tidings.config.adminschema import admin_lint, admin_problem
from tidings.config.consumercheck import validate_consumers
from tidings.config.proxyschema import ProxyConfig
from tidings.config.schema import (
    ChannelOptions,
    CommandRateLimit,
    Config,
    ConfigError,
    RateRule,
    RedisConfig,
)
from tidings.config.workersschema import check_workers
from tidings.engine import ENGINES
from tidings.logs import FORMATS, LEVELS

__all__ = ["lint", "problems", "require_hook_endpoints", "validate"]

_NAMESPACE_NAME_RE = re.compile(r"^[-a-zA-Z0-9_]{2,}$")


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
    _validate_addresses(cfg, where)
    if "{" in cfg.prefix or "}" in cfg.prefix:
        raise ConfigError(f"invalid value for '{where}.prefix': no braces (Redis hash tags)")
    if cfg.presence_ttl <= 0 or cfg.connect_timeout <= 0 or cfg.io_timeout <= 0:
        raise ConfigError(f"'{where}': presence_ttl, connect_timeout and io_timeout must be "
                          "positive")


def _validate_addresses(cfg: RedisConfig, where: str) -> None:
    for key, addresses in (("address", cfg.address), ("cluster_address", cfg.cluster_address)):
        for address in addresses:
            if "://" in address and not address.startswith(_REDIS_SCHEMES):
                raise ConfigError(f"invalid value in '{where}.{key}': {address!r} (use "
                                  "redis://, rediss:// or unix://)")


def _validate_channels(config: Config) -> None:
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


def _validate_engine(config: Config) -> None:
    if config.engine.type not in ENGINES:
        raise ConfigError(f"invalid value for 'engine.type': {config.engine.type!r} "
                          f"(available: {', '.join(ENGINES)})")
    if config.engine.type == "redis":
        _validate_redis(config.engine.redis, "engine.redis")
    if config.presence_manager.enabled:
        if config.presence_manager.type != "redis":
            raise ConfigError("invalid value for 'presence_manager.type': only redis")
        if config.engine.type != "redis":
            raise ConfigError("'presence_manager' needs 'engine.type' redis")
        _validate_redis(config.presence_manager.redis, "presence_manager.redis")


def _validate_limits(config: Config) -> None:
    if not 0 < config.http_server.port < 65536:
        raise ConfigError("invalid value for 'http_server.port': must be 1..65535")
    if config.client.channel_limit < 0 or config.client.queue_max_size <= 0:
        raise ConfigError("'client.channel_limit' and 'client.queue_max_size' must be positive")
    if config.websocket.message_size_limit <= 0:
        raise ConfigError("'websocket.message_size_limit' must be positive")


def validate(config: Config) -> None:
    """Cross-field checks msgspec's type validation cannot express; raises at the first."""
    for check in _CHECKS:
        check(config)


def problems(config: Config) -> list[str]:
    """Every error :func:`validate` and :func:`require_hook_endpoints` find (the first of each
    area), and the settings no client or application could work with."""
    found: list[str] = []
    for check in (*_CHECKS, require_hook_endpoints):
        try:
            check(config)
        except ConfigError as exc:
            found.append(str(exc))
    return found + _unworkable(config)


def _unworkable(config: Config) -> list[str]:
    """Valid settings that refuse every connect or every API call."""
    found: list[str] = []
    client, token = config.client, config.client.token
    if not (token.hmac_secret_key or token.hmac_previous_secret_key or token.rsa_public_key
            or token.ecdsa_public_key or client.insecure
            or client.insecure_skip_token_signature_verify
            or client.allow_anonymous_connect_without_token or client.proxy.connect.enabled):
        found.append(
            "no way to authenticate a connection: every connect is refused (3500/3501); set "
            "'client.token.hmac_secret_key' (or rsa_public_key/ecdsa_public_key), enable "
            "'client.proxy.connect', or allow 'client.allow_anonymous_connect_without_token'")
    api = config.http_api
    if not api.disabled and not api.key and not api.insecure:
        found.append("'http_api.key' is empty: every server API call is refused (401); set it, "
                     "or 'http_api.insecure' (trusted networks only), or 'http_api.disabled'")
    return found


def _validate_log(config: Config) -> None:
    log = config.log
    if log.level.strip().lower() not in LEVELS:
        raise ConfigError(f"invalid value for 'log.level' (old name 'log_level'): "
                          f"{log.level!r} (trace, debug, info, warn, error or none)")
    if log.format not in FORMATS:
        raise ConfigError(f"invalid value for 'log.format': {log.format!r} (text or json)")


def _validate_rule(rule: RateRule, where: str) -> None:
    buckets = [(f"{where}.buckets", rule.buckets)]
    buckets += [(f"{where}.namespace_overrides[{i}].buckets", o.buckets)
                for i, o in enumerate(rule.namespace_overrides)]
    buckets += [(f"{where}.method_overrides[{i}].buckets", o.buckets)
                for i, o in enumerate(rule.method_overrides)]
    for key, items in buckets:
        for i, bucket in enumerate(items):
            if bucket.interval <= 0 or bucket.rate <= 0:
                raise ConfigError(f"'{key}[{i}]': interval and rate must be positive")


def _validate_rate_limits(config: Config) -> None:
    limits = config.client.rate_limit
    commands: list[tuple[str, CommandRateLimit]] = [
        ("client.rate_limit.client_command", limits.client_command),
        ("client.rate_limit.user_command", limits.user_command),
    ]
    for where, limit in commands:
        for name in limit.__struct_fields__:
            rule = getattr(limit, name)
            if isinstance(rule, RateRule):
                _validate_rule(rule, f"{where}.{name}")
    _validate_rule(limits.client_error.total, "client.rate_limit.client_error.total")
    if limits.redis_user_command.enabled:
        raise ConfigError("'client.rate_limit.redis_user_command' is not supported: use "
                          "'client.rate_limit.user_command' (per user on each node)")


def _validate_http(config: Config) -> None:
    http = config.http_server
    if http.max_header_bytes < 1024 or http.max_header_count < 8:
        raise ConfigError("'http_server.max_header_bytes' must be >= 1024 and "
                          "'http_server.max_header_count' >= 8")
    if min(http.read_header_timeout, http.read_timeout, http.idle_timeout,
           http.write_timeout) <= 0:
        raise ConfigError("'http_server' timeouts must be positive")
    if config.client.connection_rate_limit < 0 or config.client.connection_limit < 0:
        raise ConfigError("'client.connection_limit' and 'client.connection_rate_limit' must "
                          "not be negative")
    if config.emulation.max_request_body_size <= 0:
        raise ConfigError("'emulation.max_request_body_size' must be positive")
    port = http.internal_port
    if port and not (port.isdigit() and int(port) < 65536):
        raise ConfigError(f"invalid value for 'http_server.internal_port': {port!r} (a port "
                          "number, 0 for any free one)")
    _validate_metrics_path(config.prometheus.handler_prefix)


# Paths of other endpoints (transports/routes.py), which the metrics path must not take.
_TAKEN_PATHS = ("/api", "/health", "/ready", "/emulation")
_TAKEN_PREFIXES = ("/api/", "/connection/")


def _validate_metrics_path(path: str) -> None:
    if (not path.startswith("/") or path.rstrip("/") in ("", *_TAKEN_PATHS)
            or path.startswith(_TAKEN_PREFIXES)):
        raise ConfigError(f"invalid value for 'prometheus.handler_prefix': {path!r} (a path "
                          "starting with '/' that no other endpoint uses)")


_PROXY_NAME_RE = re.compile(r"^[-a-zA-Z0-9_.]{2,}$")
_HOOK_SWITCHES = ("subscribe", "publish", "sub_refresh")


def _validate_proxy(proxy: ProxyConfig, where: str) -> None:
    if not proxy.endpoint:
        raise ConfigError(f"'{where}.endpoint' is required")
    if not proxy.endpoint.startswith(("http://", "https://", "python:")):
        raise ConfigError(f"invalid value for '{where}.endpoint': {proxy.endpoint!r}: gRPC "
                          "proxies are not supported; use http(s):// or python:module:function")
    if proxy.timeout <= 0:
        raise ConfigError(f"'{where}.timeout' must be positive")
    for i, tr in enumerate(proxy.http.status_to_code_transforms):
        key = f"{where}.http.status_to_code_transforms[{i}]"
        if tr.status_code <= 0:
            raise ConfigError(f"'{key}.status_code' is required")
        if (tr.to_error.code > 0) == (tr.to_disconnect.code > 0):
            raise ConfigError(f"'{key}': set exactly one of to_error.code and "
                              "to_disconnect.code")
        text = tr.to_error.message + tr.to_disconnect.reason
        if not text.isascii() or len(tr.to_error.message) > 123 or len(
                tr.to_disconnect.reason) > 123:
            raise ConfigError(f"'{key}': message and reason must be ASCII, 123 bytes at most")


def _validate_proxies(config: Config) -> None:
    """Centrifugo's start-up checks (PROXY.md §2.4)."""
    names: set[str] = set()
    for i, named in enumerate(config.proxies):
        where = f"proxies[{i}]"
        if not _PROXY_NAME_RE.fullmatch(named.name) or named.name == "default":
            raise ConfigError(f"invalid value for '{where}.name': {named.name!r} must match "
                              f"{_PROXY_NAME_RE.pattern} and not be 'default'")
        if named.name in names:
            raise ConfigError(f"duplicate proxy name {named.name!r} in 'proxies'")
        names.add(named.name)
        _validate_proxy(named, where)
    for hook in ("connect", "refresh"):
        proxy = getattr(config.client.proxy, hook)
        if proxy.enabled and proxy.endpoint:
            _validate_proxy(proxy, f"client.proxy.{hook}")
    _validate_hook_switches(config, names)


def _validate_hook_switches(config: Config, names: set[str]) -> None:
    """Each namespace's hook switches name a proxy that exists (PROXY.md §2.3)."""
    spaces: list[tuple[str, ChannelOptions]] = [
        ("channel.without_namespace", config.channel.without_namespace)]
    spaces += [(f"channel.namespaces[{i}]", ns) for i, ns in enumerate(config.channel.namespaces)]
    for where, opts in spaces:
        if opts.subscribe_stream_proxy_enabled:
            raise ConfigError(f"'{where}.subscribe_stream_proxy_enabled': subscription "
                              "streams (gRPC only) are not supported")
        for hook in _HOOK_SWITCHES:
            if getattr(opts, f"{hook}_proxy_enabled"):
                _check_proxy_name(config, names, getattr(opts, f"{hook}_proxy_name"),
                                  f"{where}.{hook}_proxy_name",
                                  getattr(config.channel.proxy, hook), f"channel.proxy.{hook}")
    rpc = config.rpc
    rpc_spaces = [("rpc.without_namespace", rpc.without_namespace)]
    rpc_spaces += [(f"rpc.namespaces[{i}]", ns) for i, ns in enumerate(rpc.namespaces)]
    for where, rpc_opts in rpc_spaces:
        if rpc_opts.proxy_enabled:
            _check_proxy_name(config, names, rpc_opts.proxy_name, f"{where}.proxy_name",
                              rpc.proxy, "rpc.proxy")


def _check_proxy_name(config: Config, names: set[str], name: str, where: str,
                      default: ProxyConfig, default_where: str) -> None:
    if name == "default":
        if default.endpoint:  # empty: a hook set in code (require_hook_endpoints)
            _validate_proxy(default, default_where)
    elif name not in names:
        raise ConfigError(f"'{where}' names an unknown proxy {name!r} (not in 'proxies')")


def require_hook_endpoints(config: Config) -> None:
    """A server started from a config file has no hooks set in code: every enabled hook needs
    its endpoint (Centrifugo's start-up check). Embedding code sets hooks instead."""
    spaces = [config.channel.without_namespace, *config.channel.namespaces]
    rpc_spaces = [config.rpc.without_namespace, *config.rpc.namespaces]
    wanted: list[tuple[str, ProxyConfig, bool]] = [
        (f"client.proxy.{hook}", getattr(config.client.proxy, hook),
         getattr(config.client.proxy, hook).enabled) for hook in ("connect", "refresh")]
    wanted += [(f"channel.proxy.{hook}", getattr(config.channel.proxy, hook),
                any(getattr(o, f"{hook}_proxy_enabled")
                    and getattr(o, f"{hook}_proxy_name") == "default" for o in spaces))
               for hook in _HOOK_SWITCHES]
    wanted.append(("rpc.proxy", config.rpc.proxy,
                   any(o.proxy_enabled and o.proxy_name == "default" for o in rpc_spaces)))
    for where, proxy, needed in wanted:
        if needed and not proxy.endpoint:
            raise ConfigError(f"'{where}.endpoint' is required: a hook is enabled for it")


def _validate_admin(config: Config) -> None:
    problem = admin_problem(config.admin)  # config/adminschema.py
    if problem:
        raise ConfigError(problem)


_CHECKS = (_validate_channels, _validate_limits, _validate_engine, _validate_http,
           _validate_rate_limits, _validate_proxies, _validate_log, validate_consumers,
           _validate_admin, check_workers)


def lint(config: Config) -> list[str]:
    """Warnings for valid settings that probably do not do what was meant."""
    warnings: list[str] = admin_lint(config.admin)
    for pattern in config.client.allowed_origins:
        rest = pattern.split("//*", 1)[1] if "//*" in pattern else ""
        if rest and rest[0] not in ".:/":
            warnings.append(
                f"client.allowed_origins pattern {pattern!r}: '*' matches any characters, dots "
                f"included, so it also admits other domains ending the same way (e.g. "
                f"{pattern.replace('*', 'evil', 1)!r}); write '*.' to allow subdomains only"
            )
    return warnings
