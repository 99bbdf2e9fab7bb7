"""The configuration schema: Centrifugo v6 key names, every default in one place."""

from __future__ import annotations

import msgspec

from tidings.config.adminschema import AdminConfig
from tidings.config.consumerschema import ConsumerConfig
from tidings.config.proxyschema import (
    ChannelProxyConfig,
    ClientProxyConfig,
    NamedProxy,
    RpcConfig,
    UniDisconnectConfig,
)
from tidings.config.tls import TLSConfig

__all__ = [
    "ChannelConfig",
    "ChannelOptions",
    "ClientConfig",
    "CommandRateLimit",
    "Config",
    "ConfigError",
    "HttpServerConfig",
    "LogConfig",
    "Namespace",
    "PrometheusConfig",
    "RateBucket",
    "RateLimitConfig",
    "RateRule",
    "RedisConfig",
    "RedisTLSConfig",
    "TokenConfig",
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
    # Backend hooks (PROXY.md §2.3): "default" is channel.proxy.<hook>, else a proxies[] name.
    subscribe_proxy_enabled: bool = False
    subscribe_proxy_name: str = "default"
    publish_proxy_enabled: bool = False
    publish_proxy_name: str = "default"
    sub_refresh_proxy_enabled: bool = False
    sub_refresh_proxy_name: str = "default"
    subscribe_stream_proxy_enabled: bool = False
    subscribe_stream_proxy_name: str = "default"

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
    proxy: ChannelProxyConfig = msgspec.field(default_factory=ChannelProxyConfig)


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


class RateBucket(_Base):
    """A token bucket: ``rate`` commands per ``interval`` (also its burst)."""

    interval: float = 1.0
    rate: int = 0


class NamespaceRateRule(_Base):
    namespace_name: str = ""
    enabled: bool = False
    buckets: list[RateBucket] = msgspec.field(default_factory=list)


class MethodRateRule(_Base):
    method: str = ""
    enabled: bool = False
    buckets: list[RateBucket] = msgspec.field(default_factory=list)


class RateRule(_Base):
    """The buckets of one kind of command; a command passes when every bucket has a token.
    ``namespace_overrides`` replace the buckets for channels of a namespace, ``method_overrides``
    for RPC methods."""

    enabled: bool = False
    buckets: list[RateBucket] = msgspec.field(default_factory=list)
    namespace_overrides: list[NamespaceRateRule] = msgspec.field(default_factory=list)
    method_overrides: list[MethodRateRule] = msgspec.field(default_factory=list)


class CommandRateLimit(_Base):
    """Centrifugo PRO's ``client.rate_limit.client_command`` / ``user_command`` schema."""

    enabled: bool = False
    total: RateRule = msgspec.field(default_factory=RateRule)
    default: RateRule = msgspec.field(default_factory=RateRule)
    connect: RateRule = msgspec.field(default_factory=RateRule)  # user_command only
    subscribe: RateRule = msgspec.field(default_factory=RateRule)
    unsubscribe: RateRule = msgspec.field(default_factory=RateRule)
    publish: RateRule = msgspec.field(default_factory=RateRule)
    history: RateRule = msgspec.field(default_factory=RateRule)
    presence: RateRule = msgspec.field(default_factory=RateRule)
    presence_stats: RateRule = msgspec.field(default_factory=RateRule)
    refresh: RateRule = msgspec.field(default_factory=RateRule)
    sub_refresh: RateRule = msgspec.field(default_factory=RateRule)
    rpc: RateRule = msgspec.field(default_factory=RateRule)


class ErrorRateLimit(_Base):
    """``client.rate_limit.client_error``: error replies one connection may cause."""

    enabled: bool = False
    total: RateRule = msgspec.field(default_factory=RateRule)


class RedisRateLimit(_Base):
    enabled: bool = False


class RateLimitConfig(_Base):
    client_command: CommandRateLimit = msgspec.field(default_factory=CommandRateLimit)
    user_command: CommandRateLimit = msgspec.field(default_factory=CommandRateLimit)
    client_error: ErrorRateLimit = msgspec.field(default_factory=ErrorRateLimit)
    redis_user_command: RedisRateLimit = msgspec.field(default_factory=RedisRateLimit)


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
    connection_rate_limit: int = 0  # new connections per second on this node (0: unlimited)
    rate_limit: RateLimitConfig = msgspec.field(default_factory=RateLimitConfig)
    proxy: ClientProxyConfig = msgspec.field(default_factory=ClientProxyConfig)
    connect_code_to_unidirectional_disconnect: UniDisconnectConfig = msgspec.field(
        default_factory=UniDisconnectConfig
    )


class HttpServerConfig(_Base):
    address: str = "127.0.0.1"
    port: int = 8000
    # The internal listener (Centrifugo's names): /metrics, /health, /ready and the API go
    # there, client connections stay on ``port``. Unset (""): one listener serves everything.
    # ``internal_port`` is a string in Centrifugo; numbers are accepted, "0" picks a free port.
    internal_address: str = ""  # "": ``address``
    internal_port: str = ""  # "": ``port``
    # Limits and timeouts of the HTTP/1.1 server (not Centrifugo keys: Go's net/http and
    # Centrifugo hard-code theirs). Durations in seconds.
    max_header_bytes: int = 65536  # request line + headers -> 414 / 431
    max_header_count: int = 100  # -> 431
    read_header_timeout: float = 10.0  # from accept (or the first byte of a request) -> 408
    read_timeout: float = 30.0  # a whole request, body included -> 408
    idle_timeout: float = 75.0  # a keep-alive connection between requests -> closed
    write_timeout: float = 10.0  # a response the peer does not read -> aborted


class HttpApiConfig(_Base):
    key: str = ""
    insecure: bool = False
    disabled: bool = False
    external: bool = False  # with an internal listener: serve the API on the public one instead
    error_mode: str = ""
    max_body_size: int = 10 * 1024 * 1024


class WebSocketConfig(_Base):
    disabled: bool = False
    message_size_limit: int = 65536


class HealthConfig(_Base):
    enabled: bool = True  # GET /health (liveness) and GET /ready (readiness, a Tidings addition)


class PrometheusConfig(_Base):
    """``GET <handler_prefix>``: the metrics in the Prometheus text format (METRICS.md)."""

    enabled: bool = False
    handler_prefix: str = "/metrics"
    instrument_http_handlers: bool = False
    recovered_publications_histogram: bool = False


class StreamConfig(_Base):
    """An HTTP-streaming or SSE transport (bidirectional emulation or unidirectional)."""

    enabled: bool = False
    max_request_body_size: int = 65536


class UniWebSocketConfig(_Base):
    enabled: bool = False
    message_size_limit: int = 65536


RedisTLSConfig = TLSConfig  # the name it had before hooks shared it


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


class EmulationConfig(_Base):
    max_request_body_size: int = 65536


class ShutdownConfig(_Base):
    timeout: float = 30.0


class NodeConfig(_Base):
    name: str = ""


class LogConfig(_Base):
    """Centrifugo v6's ``log`` (the old top-level ``log_level`` is read as ``log.level``)."""

    level: str = "info"  # trace, debug, info, warn, error or none
    file: str = ""  # "": stdout
    format: str = "text"  # "text" or "json" (a Tidings addition)


class Config(_Base):
    client: ClientConfig = msgspec.field(default_factory=ClientConfig)
    channel: ChannelConfig = msgspec.field(default_factory=ChannelConfig)
    http_server: HttpServerConfig = msgspec.field(default_factory=HttpServerConfig)
    http_api: HttpApiConfig = msgspec.field(default_factory=HttpApiConfig)
    websocket: WebSocketConfig = msgspec.field(default_factory=WebSocketConfig)
    health: HealthConfig = msgspec.field(default_factory=HealthConfig)
    prometheus: PrometheusConfig = msgspec.field(default_factory=PrometheusConfig)
    http_stream: StreamConfig = msgspec.field(default_factory=StreamConfig)
    sse: StreamConfig = msgspec.field(default_factory=StreamConfig)
    uni_http_stream: StreamConfig = msgspec.field(default_factory=StreamConfig)
    uni_sse: StreamConfig = msgspec.field(default_factory=StreamConfig)
    uni_websocket: UniWebSocketConfig = msgspec.field(default_factory=UniWebSocketConfig)
    sockjs: StreamConfig = msgspec.field(default_factory=StreamConfig)
    emulation: EmulationConfig = msgspec.field(default_factory=EmulationConfig)
    engine: EngineConfig = msgspec.field(default_factory=EngineConfig)
    presence_manager: PresenceManagerConfig = msgspec.field(
        default_factory=PresenceManagerConfig
    )
    shutdown: ShutdownConfig = msgspec.field(default_factory=ShutdownConfig)
    node: NodeConfig = msgspec.field(default_factory=NodeConfig)
    proxies: list[NamedProxy] = msgspec.field(default_factory=list)
    rpc: RpcConfig = msgspec.field(default_factory=RpcConfig)
    log: LogConfig = msgspec.field(default_factory=LogConfig)
    admin: AdminConfig = msgspec.field(default_factory=AdminConfig)
    consumers: list[ConsumerConfig] = msgspec.field(default_factory=list)
    workers: int | str = 1  # processes sharing the port; "auto": one per core; >1: engine redis
