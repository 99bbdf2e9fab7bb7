"""The PostgreSQL outbox (docs/outbox.md): ``tidings serve`` processes with a ``consumers[]``
entry of type ``postgresql`` against a real PostgreSQL (tests/support/pgproc.py); rows are
written in real transactions (psycopg, SQLAlchemy, a Django program) and received by real
clients (centrifuge-python, a bare WebSocket). A row is published if and only if its
transaction commits; every committed row exactly once, across a SIGKILL of Tidings, a restart
of PostgreSQL, and two nodes sharing the table."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
from sqlalchemy import MetaData, create_engine
from sqlalchemy.orm import Session

from tests.support.api import api_result
from tests.support.pgproc import PostgresServer
from tests.support.raw import JsonWebSocket
from tests.support.redisproc import RedisServer
from tests.support.sdk import Clients, SubEvents, next_item
from tests.support.server import ServerFactory, ServerProcess, make_token, unique
from tests.support.timing import T, eventually
from tidings.outbox import DEFAULT_NOTIFY_CHANNEL, create_sql
from tidings.outbox.sqlalchemy import outbox_table
from tidings.outbox.sqlalchemy import publish as sa_publish

pytestmark = pytest.mark.sdk(max_retry_delay=1.0)

TABLE = "centrifugo_outbox"
ROOT = Path(__file__).resolve().parents[2]


def consumer(dsn: str, **postgresql: Any) -> dict[str, Any]:
    """Server overrides: one enabled outbox consumer (polling every 50 ms unless told)."""
    pg = {"dsn": dsn, "outbox_table_name": TABLE, "partition_poll_interval": "50ms",
          **postgresql}
    return {"consumers": [{"name": "outbox", "enabled": True, "type": "postgresql",
                           "postgresql": pg}],
            "client": {"history_max_publication_limit": 5000},
            "prometheus": {"enabled": True}}


def redis_engine(redis: RedisServer) -> dict[str, Any]:
    return {"engine": {"type": "redis", "redis": {"address": [redis.url],
                                                  "prefix": unique("outbox")}}}


def make_table(dsn: str, *, notify: bool = True) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in create_sql(TABLE, notify_channel=DEFAULT_NOTIFY_CHANNEL if notify
                                    else None):
            conn.execute(statement)


Row = tuple[str, str, int]  # method, payload (JSON text), partition


def row(channel: str, data: Any, *, key: str = "", partition: int = 0) -> Row:
    payload: dict[str, Any] = {"channel": channel, "data": data}
    if key:
        payload["idempotency_key"] = key
    return "publish", json.dumps(payload), partition


def insert(dsn: str, rows: list[Row], *, commit: bool = True) -> None:
    """INSERT ``rows`` in one transaction, then COMMIT (or ROLLBACK)."""
    with psycopg.connect(dsn) as conn:
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {TABLE} (method, payload, partition) "
                            "VALUES (%s, %s::jsonb, %s)", rows)
        if commit:
            conn.commit()
        else:
            conn.rollback()


def count(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        found = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
    assert found is not None
    return int(found[0])


async def subscriber(clients: Clients, server: ServerProcess, channel: str) -> SubEvents:
    client, _ = await clients.connect(server)
    _, events, _ = await clients.subscribe(client, channel)
    return events


async def received(events: SubEvents, n: int, within: float = T) -> list[Any]:
    return [(await next_item(events.publications, within=within)).data for _ in range(n)]


async def published(server: ServerProcess, channel: str) -> int:
    """How many publications the channel's stream has taken (its top offset)."""
    result = await api_result(server, "history", {"channel": channel, "limit": 0})
    return int(result.get("offset", 0))


async def metric(server: ServerProcess, name: str) -> float:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.http_url}/metrics") as response:
            text = await response.text()
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


async def test_published_if_and_only_if_committed(
        tidings_server: ServerFactory, pg_dsn: str, clients: Clients) -> None:
    make_table(pg_dsn)
    server = tidings_server(consumer(pg_dsn))
    channel = unique("news")
    events = await subscriber(clients, server, channel)
    insert(pg_dsn, [row(channel, {"n": 1})])
    insert(pg_dsn, [row(channel, {"n": 2})], commit=False)
    insert(pg_dsn, [row(channel, {"n": 3})])  # the marker: committed after the rollback
    # Strictly in order: the rolled-back row would have come before the marker.
    assert await received(events, 2) == [{"n": 1}, {"n": 3}]
    assert await eventually(lambda: count(pg_dsn) == 0)
    assert await metric(server, "centrifugo_consumers_messages_processed_total") == 2
    assert await metric(server, "centrifugo_consumers_errors_total") == 0


async def test_data_bytes_are_the_ones_postgresql_returns(
        tidings_server: ServerFactory, pg_dsn: str, json_ws: Any) -> None:
    """``jsonb`` comes back normalized (sorted keys, ", " and ": "); those bytes are passed on,
    not re-encoded."""
    make_table(pg_dsn)
    server = tidings_server(consumer(pg_dsn))
    channel = unique("raw")
    ws: JsonWebSocket = await json_ws(server.ws_url)
    await ws.connect(make_token("7"))
    assert "subscribe" in await ws.command(subscribe={"channel": channel})
    written = '{"data": {"b": 1, "a": [1,2]}, "channel": "' + channel + '"}'
    insert(pg_dsn, [("publish", written, 0)])
    async with asyncio.timeout(T):
        while True:
            frame = await ws.ws.recv()
            text = frame.decode() if isinstance(frame, bytes) else frame
            if channel in text:
                break
    assert '"data":{"a": [1, 2], "b": 1}' in text, text


async def test_both_shapes_broadcast_and_bad_rows(
        tidings_server: ServerFactory, pg_dsn: str, clients: Clients) -> None:
    """Method column or envelope (payload an object or a JSON string); rows that can never
    succeed (unknown method, malformed envelope, a request the API refuses) are dropped, not
    retried, and the rows after them go through."""
    make_table(pg_dsn)
    server = tidings_server(consumer(pg_dsn))
    ch, other = unique("shapes"), unique("shapes")
    events = await subscriber(clients, server, ch)
    other_events = await subscriber(clients, server, other)
    request = json.dumps({"channel": ch, "data": {"n": 2}})
    insert(pg_dsn, [
        ("", json.dumps({"method": "publish", "payload": {"channel": ch, "data": {"n": 1}}}), 0),
        ("", json.dumps({"method": "publish", "payload": request}), 0),
        ("broadcast", json.dumps({"channels": [ch, other], "data": {"n": 3}}), 0),
        ("presence", json.dumps({"channel": ch}), 0),  # not consumable: skipped
        ("nope", json.dumps({"channel": ch, "data": {"n": -1}}), 0),  # unknown: skipped
        ("", json.dumps({"method": "publish", "payload": "{not json"}), 0),  # malformed
        ("", json.dumps(["not", "an", "envelope"]), 0),  # malformed
        ("publish", json.dumps({"channel": "", "data": {"n": -2}}), 0),  # 107: dropped
        ("publish", json.dumps({"channel": ch, "data": {"n": 4}}), 0),
    ])
    assert await received(events, 4) == [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]
    assert await received(other_events, 1) == [{"n": 3}]
    assert await eventually(lambda: count(pg_dsn) == 0)
    assert await metric(server, "centrifugo_consumers_messages_processed_total") == 9
    assert await metric(server, "centrifugo_consumers_errors_total") == 0
    assert server.wait_log("skip malformed consumed message", timeout=1)


async def test_sigkill_during_consumption_publishes_every_row_exactly_once(
        tidings_server: ServerFactory, pg_dsn: str, redis: RedisServer) -> None:
    """2,000 committed rows with idempotency keys; Tidings is killed (SIGKILL) while a batch
    is published but not yet deleted, and started again: each row is in the channel's stream
    once, and the table ends empty."""
    make_table(pg_dsn)
    total = 2000
    channel = f"count:{unique('kill')}"
    engine = redis_engine(redis)
    namespace = {"channel": {"namespaces": [{"name": "count", "history_size": 5000,
                                             "history_ttl": "300s"}]}}
    config = {**consumer(pg_dsn, partition_select_limit=1000), **engine, **namespace}
    watcher = tidings_server({**engine, **namespace,
                              "client": {"history_max_publication_limit": 5000}})
    first = tidings_server(config)
    insert(pg_dsn, [row(channel, {"i": i}, key=f"row-{i}") for i in range(total)])

    with psycopg.connect(pg_dsn, autocommit=True) as conn:

        async def in_flight() -> bool:
            """Rows published but not deleted yet (read published first: it only grows, so
            the count read after it proves it)."""
            done = await published(watcher, channel)
            found = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
            return found is not None and done > total - found[0]

        assert await eventually(in_flight, within=3 * T, interval=0.002)
    first.proc.kill()  # in the middle of a batch (1,000 rows take over 100 ms)
    first.stop()
    left = count(pg_dsn)
    before = await published(watcher, channel)
    assert 0 < left <= total
    replayed = before - (total - left)  # published, but their rows stayed: they come again
    assert replayed > 0, (before, left)
    second = tidings_server(config)
    assert await eventually(lambda: count(pg_dsn) == 0, within=3 * T)
    assert await published(second, channel) == total
    history = await api_result(second, "history", {"channel": channel, "limit": total})
    assert sorted(p["data"]["i"] for p in history["publications"]) == list(range(total))
    print(f"killed with {left} rows left, {replayed} of them already published; "
          f"all {total} published once after the restart")


async def test_postgresql_restart_and_notify_wakeup(
        tidings_server: ServerFactory, clients: Clients) -> None:
    """With ``partition_notification_channel`` the trigger's NOTIFY delivers a row long before
    the (10 s) poll; after PostgreSQL restarts, the consumer reconnects and goes on."""
    with PostgresServer() as pg:
        dsn = pg.create_database()
        make_table(dsn)
        server = tidings_server(consumer(dsn, partition_poll_interval="10s",
                                         partition_notification_channel=DEFAULT_NOTIFY_CHANNEL))
        channel = unique("notify")
        events = await subscriber(clients, server, channel)
        latencies = []
        for n in range(3):
            started = time.monotonic()
            insert(dsn, [row(channel, {"n": n}, key=f"n{n}")])
            assert await received(events, 1) == [{"n": n}]
            latencies.append(time.monotonic() - started)
        assert max(latencies) < 1.0, latencies
        # Published is not yet deleted: a restart now could replay the last row (its key
        # would drop it); wait for the DELETE so the next row is the next publication.
        assert await eventually(lambda: count(dsn) == 0)
        pg.restart()
        started = time.monotonic()
        insert(dsn, [row(channel, {"n": "after restart"}, key="after")])
        assert await received(events, 1, within=3 * T) == [{"n": "after restart"}]
        after_restart = time.monotonic() - started
        assert after_restart < 10.0, after_restart  # not the poll: a reconnect woke it
    print(f"NOTIFY latency {1000 * min(latencies):.1f}-{1000 * max(latencies):.1f} ms "
          f"(poll interval 10 s); first row after a PostgreSQL restart in {after_restart:.2f} s")


async def test_internal_error_is_retried_never_skipped(
        tidings_server: ServerFactory, pg_dsn: str, redis: RedisServer) -> None:
    """Publishing fails with error 100 while Redis is away: the partition backs off and
    retries (errors counted) without skipping or reordering rows; once Redis is back, every
    row is published in order."""
    make_table(pg_dsn)
    server = tidings_server({**consumer(pg_dsn), **redis_engine(redis)})
    channel = unique("retry")
    redis.stop()
    insert(pg_dsn, [row(channel, {"n": n}) for n in range(3)])

    async def failing() -> bool:
        return await metric(server, "centrifugo_consumers_errors_total") >= 3

    assert await eventually(failing, within=3 * T)
    assert count(pg_dsn) == 3
    redis.start()
    assert await eventually(lambda: count(pg_dsn) == 0, within=3 * T)
    history = await api_result(server, "history", {"channel": channel, "limit": 10})
    assert [p["data"] for p in history["publications"]] == [{"n": 0}, {"n": 1}, {"n": 2}]


@pytest.mark.parametrize("use_try_lock", [False, True])
async def test_two_nodes_share_one_table(
        tidings_server: ServerFactory, pg_dsn: str, redis: RedisServer,
        use_try_lock: bool) -> None:
    """The advisory lock per partition (waited for, or tried): two nodes consume one table,
    and each row is published once (no idempotency keys here, so a row taken twice would
    show)."""
    make_table(pg_dsn)
    total = 600
    channel = f"count:{unique('two')}"
    engine = redis_engine(redis)
    namespace = {"channel": {"namespaces": [{"name": "count", "history_size": 5000,
                                             "history_ttl": "300s"}]}}
    config = {**consumer(pg_dsn, num_partitions=2, partition_select_limit=20,
                         partition_notification_channel=DEFAULT_NOTIFY_CHANNEL,
                         use_try_lock=use_try_lock),
              **engine, **namespace}
    nodes = [tidings_server(config), tidings_server(config)]
    for start in range(0, total, 100):
        insert(pg_dsn, [row(channel, {"i": i}, partition=i % 2) for i in range(start, start + 100)])
    assert await eventually(lambda: count(pg_dsn) == 0, within=3 * T)
    history = await api_result(nodes[0], "history", {"channel": channel, "limit": total + 10})
    assert sorted(p["data"]["i"] for p in history["publications"]) == list(range(total))
    shares = [await metric(node, "centrifugo_consumers_messages_processed_total")
              for node in nodes]
    assert sum(shares) == total
    print(f"rows consumed per node: {shares}")


async def test_sqlalchemy_helper(
        tidings_server: ServerFactory, pg_dsn: str, clients: Clients) -> None:
    engine = create_engine(pg_dsn.replace("postgresql://", "postgresql+psycopg://"))
    metadata = MetaData()
    outbox = outbox_table(metadata)
    metadata.create_all(engine)  # the table and its NOTIFY trigger
    server = tidings_server(consumer(pg_dsn, partition_poll_interval="10s",
                                     partition_notification_channel=DEFAULT_NOTIFY_CHANNEL))
    channel = unique("sqla")
    events = await subscriber(clients, server, channel)
    with Session(engine) as session, session.begin():
        sa_publish(session, channel, {"n": 1}, table=outbox)
    with Session(engine) as session:
        session.begin()
        sa_publish(session, channel, {"n": 2}, table=outbox)
        session.rollback()
    with engine.begin() as conn:  # a Connection works as well as a Session
        sa_publish(conn, channel, {"n": 3}, table=outbox)
    assert await received(events, 2) == [{"n": 1}, {"n": 3}]
    engine.dispose()


async def test_django_helper(
        tidings_server: ServerFactory, pg_dsn: str, clients: Clients) -> None:
    server = tidings_server(consumer(pg_dsn, partition_poll_interval="10s",
                                     partition_notification_channel=DEFAULT_NOTIFY_CHANNEL))
    channel = unique("django")
    events = await subscriber(clients, server, channel)
    program = [sys.executable, "-m", "tests.support.outboxdjango", pg_dsn, channel]
    done = await asyncio.to_thread(subprocess.run, program, cwd=ROOT, capture_output=True,
                                   text=True, timeout=6 * T, check=False)
    assert done.returncode == 0 and "done" in done.stdout, done.stdout + done.stderr
    # Within the 10 s poll: the migration's trigger NOTIFYs.
    assert await received(events, 2) == [{"n": 1}, {"n": 3, "day": "2024-05-17"}]


def test_unreachable_database_is_fatal(tmp_path: Path) -> None:
    """As Centrifugo: no database at start-up, no server (one line on stderr, exit 1)."""
    from tests.support.redisproc import free_port

    config = consumer(f"postgresql://postgres@127.0.0.1:{free_port()}/none")
    config["client"]["token"] = {"hmac_secret_key": "x" * 32}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    done = subprocess.run([sys.executable, "-m", "tidings", "serve", "--config", str(path),
                           "--port", "0"], capture_output=True, text=True, timeout=6 * T,
                          check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "tidings: error initializing consumers: consumer 'outbox': cannot connect to "
        "PostgreSQL"), done.stderr
    assert "listening on" not in done.stdout


def test_checkconfig_reports_consumer_problems(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"consumers": [
        {"name": "x", "type": "postgresql"},
        {"name": "kafka_one", "type": "kafka", "enabled": True}]}))
    done = subprocess.run([sys.executable, "-m", "tidings", "checkconfig", "--config",
                           str(path)], capture_output=True, text=True, timeout=6 * T,
                          check=False)
    assert done.returncode == 1
    assert "invalid value for 'consumers[0].name'" in done.stderr, done.stderr
