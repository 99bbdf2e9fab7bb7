"""The checks of ``consumers[]`` (Centrifugo's, CONSUMERS.md §1.6), run by ``config.validate``;
each error names its key."""

from __future__ import annotations

from tidings.config.consumerschema import (
    CONSUMER_TYPES,
    NAME_RE,
    SUPPORTED_TYPES,
    TABLE_RE,
    ConsumerConfig,
    PostgresConsumerConfig,
    RedisStreamConsumerConfig,
)
from tidings.config.schema import Config, ConfigError

__all__ = ["validate_consumers"]

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def _validate_postgresql(cfg: PostgresConsumerConfig, where: str) -> None:
    if not cfg.dsn:
        raise ConfigError(f"'{where}.dsn' is required")
    if not TABLE_RE.fullmatch(cfg.outbox_table_name):
        raise ConfigError(f"'{where}.outbox_table_name' is required: a table name, "
                          f"optionally schema.table (got {cfg.outbox_table_name!r})")
    if cfg.num_partitions < 0 or cfg.partition_select_limit < 0:
        raise ConfigError(f"'{where}.num_partitions' and '{where}.partition_select_limit' must "
                          "not be negative")


def validate_consumers(config: Config) -> None:
    """Centrifugo's checks (CONSUMERS.md §1.6): a valid unique name and a known type for every
    consumer; an enabled one also needs its type's settings, and a type Tidings runs."""
    seen: set[str] = set()
    for i, consumer in enumerate(config.consumers):
        where = f"consumers[{i}]"
        if not NAME_RE.fullmatch(consumer.name):
            raise ConfigError(f"invalid value for '{where}.name': {consumer.name!r} must match "
                              f"{NAME_RE.pattern}")
        if consumer.name in seen:
            raise ConfigError(f"duplicate consumer name {consumer.name!r} in 'consumers'")
        seen.add(consumer.name)
        if consumer.type not in CONSUMER_TYPES:
            raise ConfigError(f"invalid value for '{where}.type': {consumer.type!r} "
                              f"(one of {', '.join(CONSUMER_TYPES)})")
        if not consumer.enabled:
            continue
        _validate_enabled(consumer, where)


def _validate_enabled(consumer: ConsumerConfig, where: str) -> None:
    if consumer.type == "postgresql":
        _validate_postgresql(consumer.postgresql, f"{where}.postgresql")
    elif consumer.type == "redis_stream":
        _validate_redis_stream(consumer.redis_stream, f"{where}.redis_stream")
    else:
        raise ConfigError(f"'{where}.type' {consumer.type!r} is not supported by Tidings "
                          f"(supported: {', '.join(SUPPORTED_TYPES)}); disable it")


def _validate_redis_stream(cfg: RedisStreamConsumerConfig, where: str) -> None:
    if not cfg.streams or not all(cfg.streams):
        raise ConfigError(f"'{where}.streams' must list at least one stream")
    if not cfg.consumer_group:
        raise ConfigError(f"'{where}.consumer_group' is required")
    if cfg.cluster_address or cfg.sentinel_address or not cfg.address:
        raise ConfigError(f"'{where}': one standalone Redis ('address') only; Redis Cluster "
                          "and Sentinel are not supported for stream consumers")
    for address in cfg.address:
        if "://" in address and not address.startswith(_REDIS_SCHEMES):
            raise ConfigError(f"invalid value in '{where}.address': {address!r} (use "
                              "redis://, rediss:// or unix://)")
    if cfg.publication_data_mode.get("enabled"):
        raise ConfigError(f"'{where}.publication_data_mode' is not supported: put the API "
                          "command in the entry (method and payload)")
    if cfg.num_workers < 0 or cfg.connect_timeout <= 0 or cfg.io_timeout <= 0:
        raise ConfigError(f"'{where}': num_workers must not be negative, connect_timeout and "
                          "io_timeout must be positive")
