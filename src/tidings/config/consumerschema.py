"""Config keys of the async consumers (``consumers[]``, CONSUMERS.md §1.6, §2.2): server API
commands taken from a queue or an outbox table instead of HTTP, Centrifugo v6's names.

As in Centrifugo, an empty (zero) value means the default: ``num_partitions: 0`` is 1, an empty
``partition_poll_interval`` is 300 ms (the ``effective_*`` properties). Tidings runs
``postgresql`` and ``redis_stream``; the other types' objects are accepted (so a Centrifugo
config loads) and refused only when such a consumer is enabled (``config.validate``)."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from tidings.config.tls import TLSConfig

__all__ = [
    "CONSUMER_TYPES",
    "NAME_RE",
    "SUPPORTED_TYPES",
    "TABLE_RE",
    "ConsumerConfig",
    "ConsumerTLSConfig",
    "PostgresConsumerConfig",
    "RedisStreamConsumerConfig",
]

# Every type Centrifugo v6 knows; Tidings runs the ones in SUPPORTED_TYPES.
CONSUMER_TYPES = ("postgresql", "kafka", "nats_jetstream", "redis_stream", "google_pub_sub",
                  "aws_sqs", "azure_service_bus")
SUPPORTED_TYPES = ("postgresql", "redis_stream")

NAME_RE = re.compile(r"^[a-zA-Z0-9_]{2,}$")
# A table name pasted into the SQL, as Centrifugo does (unquoted, so ``schema.table`` works and
# names fold to lower case); Tidings allows identifiers only, so the config cannot inject SQL.
TABLE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")


class _Base(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    pass


class ConsumerTLSConfig(_Base):
    """``postgresql.tls``: each ``*_pem`` is raw PEM, base64 of PEM, or a file path."""

    enabled: bool = False
    cert_pem: str = ""
    key_pem: str = ""
    server_ca_pem: str = ""
    client_ca_pem: str = ""  # read by Centrifugo's common TLS object; unused by a client
    insecure_skip_verify: bool = False
    server_name: str = ""


class PostgresConsumerConfig(_Base):
    dsn: str = ""
    outbox_table_name: str = ""
    num_partitions: int = 0  # 0: 1
    partition_select_limit: int = 0  # 0: 100
    partition_poll_interval: float = 0.0  # seconds; 0: 0.3
    partition_notification_channel: str = ""  # non-empty: LISTEN on it
    partition_notification_dsn: str = ""  # "": dsn
    tls: ConsumerTLSConfig = msgspec.field(default_factory=ConsumerTLSConfig)
    use_try_lock: bool = False

    @property
    def effective_partitions(self) -> int:
        return self.num_partitions or 1

    @property
    def effective_select_limit(self) -> int:
        return self.partition_select_limit or 100

    @property
    def effective_poll_interval(self) -> float:
        return self.partition_poll_interval or 0.3


class RedisStreamConsumerConfig(_Base):
    """``redis_stream`` (CONSUMERS.md §3): the common Redis connection keys (one standalone
    Redis: the first ``address``) and the stream keys."""

    address: list[str] = msgspec.field(default_factory=lambda: ["redis://127.0.0.1:6379"])
    connect_timeout: float = 1.0
    io_timeout: float = 4.0
    db: int = 0
    user: str = ""
    password: str = ""
    client_name: str = ""
    tls: TLSConfig = msgspec.field(default_factory=TLSConfig)
    cluster_address: list[str] = msgspec.field(default_factory=list)  # refused
    sentinel_address: list[str] = msgspec.field(default_factory=list)  # refused
    streams: list[str] = msgspec.field(default_factory=list)
    consumer_group: str = ""
    visibility_timeout: float = 0.0  # seconds; 0: 30
    num_workers: int = 0  # 0: 1
    payload_value: str = ""  # "": "payload"
    method_value: str = ""  # "": "method"
    publication_data_mode: dict[str, Any] = msgspec.field(default_factory=dict)  # refused

    @property
    def effective_visibility_timeout(self) -> float:
        return self.visibility_timeout or 30.0

    @property
    def effective_workers(self) -> int:
        return self.num_workers or 1


class ConsumerConfig(_Base):
    name: str = ""
    enabled: bool = False
    type: str = ""
    postgresql: PostgresConsumerConfig = msgspec.field(default_factory=PostgresConsumerConfig)
    # Other Centrifugo consumer types: accepted as they are, refused when enabled.
    kafka: dict[str, Any] = msgspec.field(default_factory=dict)
    nats_jetstream: dict[str, Any] = msgspec.field(default_factory=dict)
    redis_stream: RedisStreamConsumerConfig = msgspec.field(
        default_factory=RedisStreamConsumerConfig)
    google_pub_sub: dict[str, Any] = msgspec.field(default_factory=dict)
    aws_sqs: dict[str, Any] = msgspec.field(default_factory=dict)
    azure_service_bus: dict[str, Any] = msgspec.field(default_factory=dict)
