"""Self-test of tests/support/redisproc.py: real redis-server processes start, persist, and stop."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import redis

from tests.support.redisproc import RedisCluster, RedisSentinel, RedisServer, free_port


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_standalone_restart_keeps_aof_data_and_stop_leaves_nothing(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, appendonly=True)
    with server:
        port, first_pid = server.port, server.pid
        assert server.url == f"redis://127.0.0.1:{port}"
        with server.client() as client:
            assert client.ping()
            assert client.set(b"key", b"value")
        server.restart()
        assert server.port == port
        assert server.pid != first_pid
        assert _pid_gone(first_pid)
        with server.client() as client:
            assert client.get(b"key") == b"value"
        last_pid = server.pid
    assert not server.alive()
    assert _pid_gone(last_pid)


def test_password_and_kill(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, password="pw", port=free_port(), name="authed").start()
    try:
        assert server.url == f"redis://:pw@127.0.0.1:{server.port}"
        with redis.Redis.from_url(server.url) as client:
            assert client.ping()
        pid = server.pid
        server.kill()
        assert not server.alive()
        assert _pid_gone(pid)
        server.restart()  # after a kill, too: same port
        with redis.Redis.from_url(server.url) as client:
            assert client.ping()
    finally:
        server.stop()


def test_cluster_forms_and_accepts_writes(tmp_path: Path) -> None:
    with RedisCluster(tmp_path, masters=3) as cluster:
        assert len(cluster.addresses) == 3
        for node in cluster.nodes:
            with node.client() as client:
                info = client.execute_command("CLUSTER", "INFO")
            assert b"cluster_state:ok" in info
        host, port = cluster.host_ports[0]
        with redis.RedisCluster(host=host, port=port) as rc:
            for i in range(10):  # keys spread over the nodes
                assert rc.set(f"key-{i}", b"v")
                assert rc.get(f"key-{i}") == b"v"
        pids = [node.pid for node in cluster.nodes]
    assert all(_pid_gone(pid) for pid in pids)


def test_sentinel_reports_master(tmp_path: Path) -> None:
    with RedisSentinel(tmp_path) as sentinel:
        assert sentinel.master_name == "mymaster"
        assert sentinel.sentinel_url == f"redis://{sentinel.sentinel_address}"
        host, port = sentinel.sentinel_address.split(":")
        sentinel_cls: Any = redis.Sentinel  # untyped in redis-py
        discovery = sentinel_cls([(host, int(port))], socket_timeout=2.0)
        assert discovery.discover_master("mymaster") == ("127.0.0.1", sentinel.master.port)
        master = discovery.master_for("mymaster")
        try:
            assert master.set(b"via-sentinel", b"1")
        finally:
            master.close()
        with sentinel.master.client() as client:
            assert client.get(b"via-sentinel") == b"1"
        pids = [sentinel.master.pid, sentinel.sentinel.pid]
    assert all(_pid_gone(pid) for pid in pids)
