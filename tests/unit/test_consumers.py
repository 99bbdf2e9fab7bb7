"""The async consumers without a database: ``consumers[]`` config (validation, defaults, env),
the dispatch rules (CONSUMERS.md §1.1, §1.2) run through a real in-process node, the backoff,
the DSN handling, the outbox row builders, and the consumer metrics. The PostgreSQL loop itself
is tested against a real PostgreSQL in tests/integration/test_outbox.py."""

from __future__ import annotations

import json
import uuid
import zlib
from typing import Any

import pytest

from tests.support.inprocess import in_process_server
from tidings.config import ConfigError, config_from_dict, load_config
from tidings.config.validate import problems
from tidings.consumers.dispatch import Backoff, Dispatcher, Malformed, Outcome, unpack, verdict
from tidings.consumers.pgconnect import pool_options
from tidings.consumers.postgresql import lock_key
from tidings.metrics.render import render
from tidings.outbox import (
    broadcast_row,
    command_row,
    create_sql,
    notify_sql,
    partition_for,
    publish_row,
)

PG = {"dsn": "postgresql://u@127.0.0.1/db", "outbox_table_name": "centrifugo_outbox"}


def consumers(*items: dict[str, Any]) -> dict[str, Any]:
    return {"consumers": list(items)}


# ------------------------------------------------------------------ config


def test_defaults_as_centrifugo() -> None:
    config, _ = config_from_dict(consumers(
        {"name": "pg", "enabled": True, "type": "postgresql", "postgresql": PG}))
    pg = config.consumers[0].postgresql
    assert (pg.effective_partitions, pg.effective_select_limit, pg.effective_poll_interval) == (
        1, 100, 0.3)
    assert (pg.partition_notification_channel, pg.use_try_lock) == ("", False)


def test_durations_and_values() -> None:
    config, warnings = config_from_dict(consumers({
        "name": "pg", "enabled": True, "type": "postgresql",
        "postgresql": {**PG, "num_partitions": 4, "partition_poll_interval": "1m30s",
                       "partition_select_limit": 7, "use_try_lock": True, "unknown": 1}}))
    pg = config.consumers[0].postgresql
    assert (pg.effective_partitions, pg.effective_poll_interval, pg.effective_select_limit) == (
        4, 90.0, 7)
    assert warnings == ["unknown config key 'consumers[0].postgresql.unknown' is ignored"]


@pytest.mark.parametrize(("item", "fragment"), [
    ({"name": "a", "type": "postgresql"}, "consumers[0].name"),
    ({"name": "has-dash", "type": "postgresql"}, "consumers[0].name"),
    ({"name": "pg", "type": "rabbitmq"}, "consumers[0].type"),
    ({"name": "pg", "type": "kafka", "enabled": True}, "not supported by Tidings"),
    ({"name": "pg", "type": "postgresql", "enabled": True,
      "postgresql": {"outbox_table_name": "t"}}, "postgresql.dsn' is required"),
    ({"name": "pg", "type": "postgresql", "enabled": True,
      "postgresql": {"dsn": "postgresql://x"}}, "outbox_table_name' is required"),
    ({"name": "pg", "type": "postgresql", "enabled": True,
      "postgresql": {**PG, "outbox_table_name": "t; DROP TABLE x"}}, "outbox_table_name"),
    ({"name": "pg", "type": "postgresql", "enabled": True,
      "postgresql": {**PG, "num_partitions": -1}}, "must not be negative"),
    ({"name": "rs", "type": "redis_stream", "enabled": True,
      "redis_stream": {"consumer_group": "g"}}, "redis_stream.streams' must list"),
    ({"name": "rs", "type": "redis_stream", "enabled": True,
      "redis_stream": {"streams": ["s"]}}, "redis_stream.consumer_group' is required"),
    ({"name": "rs", "type": "redis_stream", "enabled": True,
      "redis_stream": {"streams": ["s"], "consumer_group": "g",
                       "sentinel_address": ["127.0.0.1:26379"]}}, "one standalone Redis"),
    ({"name": "rs", "type": "redis_stream", "enabled": True,
      "redis_stream": {"streams": ["s"], "consumer_group": "g",
                       "publication_data_mode": {"enabled": True}}}, "publication_data_mode"),
])
def test_invalid_consumers_name_the_key(item: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(consumers(item))
    assert fragment in str(info.value)
    config, _ = config_from_dict(consumers(item), check=False)
    assert any(fragment in problem for problem in problems(config))


def test_redis_stream_defaults_as_centrifugo() -> None:
    config, _ = config_from_dict(consumers({
        "name": "rs", "enabled": True, "type": "redis_stream",
        "redis_stream": {"address": "redis://127.0.0.1:6390", "streams": ["s"],
                         "consumer_group": "g", "visibility_timeout": "2s"}}))
    rs = config.consumers[0].redis_stream
    assert rs.address == ["redis://127.0.0.1:6390"]  # one address as a string
    assert (rs.effective_visibility_timeout, rs.effective_workers) == (2.0, 1)
    assert (rs.payload_value or "payload", rs.method_value or "method") == ("payload", "method")


def test_duplicate_names_and_disabled_consumers() -> None:
    with pytest.raises(ConfigError, match="duplicate consumer name 'pg'"):
        config_from_dict(consumers({"name": "pg", "type": "postgresql"},
                                   {"name": "pg", "type": "kafka"}))
    # Disabled: only name and type are checked, so a Centrifugo config with Kafka loads.
    config, _ = config_from_dict(consumers(
        {"name": "kafka_in", "type": "kafka", "kafka": {"brokers": ["x:9092"]}},
        {"name": "pg", "type": "postgresql"}))
    assert [c.name for c in config.consumers] == ["kafka_in", "pg"]


def test_env_names_and_keys() -> None:
    config, warnings = load_config(env={
        "TIDINGS_CONSUMERS": "outbox",
        "TIDINGS_CONSUMERS_OUTBOX_ENABLED": "true",
        "TIDINGS_CONSUMERS_OUTBOX_TYPE": "postgresql",
        "TIDINGS_CONSUMERS_OUTBOX_POSTGRESQL_DSN": "postgresql://u@h/db",
        "TIDINGS_CONSUMERS_OUTBOX_POSTGRESQL_OUTBOX_TABLE_NAME": "chat_outbox",
        "TIDINGS_CONSUMERS_OUTBOX_POSTGRESQL_NUM_PARTITIONS": "3",
        "TIDINGS_CONSUMERS_OUTBOX_POSTGRESQL_PARTITION_POLL_INTERVAL": "250ms",
    })
    assert warnings == []
    [c] = config.consumers
    assert (c.name, c.enabled, c.type) == ("outbox", True, "postgresql")
    pg = c.postgresql
    assert (pg.dsn, pg.outbox_table_name, pg.num_partitions, pg.partition_poll_interval) == (
        "postgresql://u@h/db", "chat_outbox", 3, 0.25)
    config, _ = load_config(env={"TIDINGS_CONSUMERS": json.dumps(
        [{"name": "pg", "type": "postgresql"}])})
    assert [c.name for c in config.consumers] == ["pg"]


# ------------------------------------------------------------------ dispatch rules


def test_unpack_shapes() -> None:
    request = b'{"channel":"ch","data":{"a":1}}'
    assert unpack("publish", request) == ("publish", request)
    envelope = b'{"method":"publish","payload":{"channel":"ch","data":{"a":1}}}'
    assert unpack("", envelope) == ("publish", request)
    as_string = json.dumps({"method": "broadcast", "payload": request.decode()}).encode()
    assert unpack("", as_string) == ("broadcast", request)
    for bad in (b"{oops", b"[1]", b'{"method":"publish"}', b'{"method":"publish","payload":"{"',
                b'{"method":"publish","payload":""}'):
        with pytest.raises(Malformed):
            unpack("", bad)
    with pytest.raises(Malformed):
        unpack("publish", b"  ")


def test_verdict_retries_internal_errors_only() -> None:
    assert verdict("publish", {"result": {}}) is Outcome.DONE
    assert verdict("publish", {"error": {"code": 100, "message": "x"}}) is Outcome.RETRY
    for code in (102, 107, 108, 104):
        assert verdict("publish", {"error": {"code": code, "message": "x"}}) is Outcome.DONE
    partial = {"result": {"responses": [{"result": {}},
                                        {"error": {"code": 100, "message": "x"}}]}}
    assert verdict("broadcast", partial) is Outcome.RETRY
    refused = {"result": {"responses": [{"error": {"code": 102, "message": "x"}}]}}
    assert verdict("broadcast", refused) is Outcome.DONE


def test_backoff_doubles_to_five_seconds() -> None:
    backoff = Backoff()
    delays = [backoff.next() for _ in range(12)]
    assert 0.020 <= delays[0] < 0.040 and 0.040 <= delays[1] < 0.080
    assert delays[-1] == 5.0 and all(d <= 5.0 for d in delays)
    backoff.reset()
    assert backoff.next() < 0.040


async def test_dispatch_through_a_real_node() -> None:
    async with in_process_server() as server:
        dispatcher = Dispatcher(server.state.api, "pg")
        # The request bytes reach the publication as they are (PostgreSQL's jsonb spacing).
        body = b'{"channel": "news", "data": {"a": [1, 2], "b": 1}}'
        assert await dispatcher.dispatch("publish", body) is Outcome.DONE
        envelope = json.dumps({"method": "publish", "payload": json.dumps(
            {"channel": "news", "data": 2})}).encode()
        assert await dispatcher.dispatch("", envelope) is Outcome.DONE
        for method, bad in (("presence", b'{"channel":"news"}'), ("nope", b"{}"),
                            ("", b"not json"), ("publish", b'{"channel":""}'),
                            ("publish", b"{not json")):
            assert await dispatcher.dispatch(method, bad) is Outcome.DONE
        history = await server.node.channels.history(
            "news", server.node.rules.options("news"), limit=10, since=None, reverse=False)
        assert [bytes(p.data) for p in history.publications] == [
            b'{"a": [1, 2], "b": 1}', b"2"]
        counts = server.node.counts
        assert counts.api["consuming", "publish"].count == 4
        assert counts.api_errors["consuming", "publish", "107"] == 2


async def test_consumer_metrics_exist_at_zero_for_enabled_consumers() -> None:
    async with in_process_server(consumers(
            {"name": "pg", "enabled": True, "type": "postgresql", "postgresql": PG},
            {"name": "off", "type": "postgresql"})) as server:
        server.node.counts.consumed["pg"] += 3
        text = render(server.node).decode()
    assert 'centrifugo_consumers_messages_processed_total{consumer_name="pg"} 3' in text
    assert 'centrifugo_consumers_errors_total{consumer_name="pg"} 0' in text
    assert 'consumer_name="off"' not in text


def test_lock_key_is_centrifugos() -> None:
    assert lock_key("postgresql", 0) == "centrifugo_partition_lock_postgresql0"


# ------------------------------------------------------------------ DSN


def test_pool_options_read_pgx_options() -> None:
    options = pool_options("postgresql://u:p@h:5433/db?sslmode=disable&pool_max_conns=12"
                           "&pool_min_conns=2&pool_max_conn_lifetime=1h", 3, cpus=2)
    assert (options.max_size, options.min_size) == (12, 2)
    assert options.dsn == "postgresql://u:p@h:5433/db?sslmode=disable"
    assert pool_options("postgresql://h/db", 8, cpus=2).max_size == 9
    assert pool_options("postgresql://h/db", 1, cpus=2).max_size == 4
    keyword = pool_options("host=/run/postgresql dbname=app user='a b' port=5432", 1)
    assert keyword.dsn == ("postgresql://?host=%2Frun%2Fpostgresql&database=app&user=a%20b"
                           "&port=5432")
    for bad in ("host", "postgresql://h/db?pool_max_conns=zero"):
        with pytest.raises(ValueError, match="invalid dsn"):
            pool_options(bad, 1)


# ------------------------------------------------------------------ outbox rows


def test_rows() -> None:
    row = publish_row("chat:1", {"text": "hi"}, num_partitions=4)
    assert row.method == "publish" and row.partition == zlib.crc32(b"chat:1") % 4
    assert row.payload["channel"] == "chat:1" and row.payload["data"] == {"text": "hi"}
    uuid.UUID(row.payload["idempotency_key"])  # a random key by default
    assert "idempotency_key" not in publish_row("c", 1, idempotency_key="").payload
    keyed = publish_row("c", 1, idempotency_key="message_7", tags={"k": "v"}, skip_history=True)
    assert keyed.payload == {"channel": "c", "data": 1, "idempotency_key": "message_7",
                             "tags": {"k": "v"}, "skip_history": True}
    both = broadcast_row(["a", "b"], None, idempotency_key="")
    assert (both.method, both.payload, both.partition) == (
        "broadcast", {"channels": ["a", "b"], "data": None}, 0)
    assert command_row("disconnect", {"user": "42"}).payload == {"user": "42"}
    assert partition_for("chat:1", 8) == partition_for("chat:1", 8)
    with pytest.raises(ValueError, match="outside"):
        publish_row("c", 1, partition=2, num_partitions=2)
    with pytest.raises(ValueError):
        broadcast_row("not-a-list", 1)


def test_table_sql() -> None:
    create, index, function, trigger = create_sql("app.outbox")
    assert create.startswith("CREATE TABLE IF NOT EXISTS app.outbox (id BIGSERIAL PRIMARY KEY")
    assert "ON app.outbox (partition, id)" in index
    assert "pg_notify('centrifugo_partition_change', NEW.partition::text)" in function
    assert "AFTER INSERT ON app.outbox" in trigger
    assert len(create_sql(notify_channel=None)) == 2
    with pytest.raises(ValueError):
        notify_sql("t", "bad'channel")
