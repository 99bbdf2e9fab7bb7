"""The pure parts of ``--workers``: the ``workers`` key, the worker spec, the SockJS hand-off's
request encoding and session owners (the processes themselves: tests/integration/
test_workers.py)."""

from __future__ import annotations

import os
import socket
from typing import Any

import httptools
import pytest

from tidings.config import ConfigError, config_from_dict
from tidings.config.workersschema import available_cores, worker_count
from tidings.transports.handoff import encode_request, owner_of
from tidings.transports.httpbase import Request
from tidings.worker import WorkerSpec, apply_spec, parse_spec
from tidings.workers import reserve_port

REDIS = {"engine": {"type": "redis", "redis": {"address": ["redis://127.0.0.1:6379"]}}}


@pytest.mark.parametrize(("value", "expected"), [(1, 1), (3, 3), ("4", 4), (" 2 ", 2)])
def test_worker_count(value: object, expected: int) -> None:
    config, _ = config_from_dict({**REDIS, "workers": value})
    assert worker_count(config) == expected


def test_auto_is_one_per_core_of_this_process() -> None:
    config, _ = config_from_dict({**REDIS, "workers": "auto"})
    assert worker_count(config) == available_cores() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("value", [0, -1, "two", "", True, 513, 1.5])
def test_bad_values_name_the_key(value: object) -> None:
    with pytest.raises(ConfigError, match="workers"):
        config_from_dict({**REDIS, "workers": value})


@pytest.mark.parametrize("value", [2, "auto"])
def test_more_than_one_needs_a_distributed_engine(value: object) -> None:
    with pytest.raises(ConfigError, match=r"needs a distributed engine \(engine.type redis\)"):
        config_from_dict({"workers": value})
    config_from_dict({"workers": 1})  # one process: the memory engine is fine


def test_spec_round_trip_and_apply() -> None:
    spec = WorkerSpec(index=1, count=2, port=8123, internal_port=9123, name="n-w1")
    text = '{"index":1,"count":2,"port":8123,"internal_port":9123,"name":"n-w1"}'
    assert parse_spec(text) == spec
    config, _ = config_from_dict(REDIS)
    apply_spec(config, spec)
    assert (config.node.name, config.http_server.port) == ("n-w1", 8123)
    assert config.http_server.internal_port == "9123"
    for bad in ('{"index":2,"count":2,"port":1,"name":"x"}', "{", '{"index":0}'):
        with pytest.raises(ConfigError, match="--worker-of"):
            parse_spec(bad)


class _Parsed:
    """What httptools reads back from bytes."""

    def __init__(self) -> None:
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body = b""
        self.done = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode().lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.done = True


def _parse(data: bytes) -> tuple[_Parsed, Any]:
    parsed = _Parsed()
    parser = httptools.HttpRequestParser(parsed)
    parser.feed_data(data)
    return parsed, parser


def test_encoded_request_parses_back() -> None:
    headers = {"host": "x", "origin": "http://é.example", "transfer-encoding": "chunked",
               "expect": "100-continue", "content-length": "99"}
    req = Request("POST", b"/connection/sockjs/1/abc/xhr_send?t=1", headers,
                  body=b'["{}"]', keep_alive=False)
    parsed, parser = _parse(encode_request(req))
    assert parsed.done and parser.get_method() == b"POST"
    assert parsed.url == req.url and parsed.body == b'["{}"]'
    assert parsed.headers == {"host": "x", "origin": "http://é.example",
                              "content-length": "6", "connection": "close"}


def test_session_owner_is_stable_and_spread() -> None:
    owners = [owner_of(f"session-{i}", 4) for i in range(400)]
    assert owners == [owner_of(f"session-{i}", 4) for i in range(400)]
    assert all(owners.count(w) > 50 for w in range(4))


def test_reserved_port_admits_only_port_sharing_sockets() -> None:
    reserved = reserve_port("127.0.0.1", 0)
    port = reserved.getsockname()[1]
    try:
        with socket.socket() as other:  # a program that does not share its port
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            with pytest.raises(OSError):
                other.bind(("127.0.0.1", port))
        with socket.socket() as worker:
            worker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            worker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            worker.bind(("127.0.0.1", port))
            worker.listen()
            with pytest.raises(OSError, match=r"cannot listen on 127\.0\.0\.1"):
                reserve_port("127.0.0.1", port)  # a listener there: refused up front
    finally:
        reserved.close()
