"""``tidings.client``: the ``cent`` client with safe retries, against ``tidings serve``.

A flaky front (a real HTTP proxy in a thread of the test that answers 503 to the first try of
each request, then passes the retry on to the server) shows that a publication retried after a
failure in transit carries the same idempotency key, chosen by the client, and is published
once."""

from __future__ import annotations

import http.server
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from cent import HistoryRequest, PresenceStatsRequest, PublishRequest
from cent.exceptions import CentApiResponseError, CentNetworkError, CentTransportError

from tests.support.redisproc import free_port
from tests.support.server import ServerProcess, unique
from tidings.client import AsyncClient, Client


class FlakyFront:
    """Answers 503 to every other request (the first of each pair), forwards the rest."""

    def __init__(self, upstream: str) -> None:
        self.bodies: list[bytes] = []
        front = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                front.bodies.append(body)
                if len(front.bodies) % 2:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                request = urllib.request.Request(upstream + self.path.removeprefix("/api"),
                                                 data=body, headers={
                                                     "X-API-Key": self.headers["X-API-Key"]})
                with urllib.request.urlopen(request, timeout=5) as resp:
                    answer = resp.read()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/api"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def flaky(server: ServerProcess) -> Iterator[FlakyFront]:
    front = FlakyFront(server.api_url)
    yield front
    front.close()


def test_typed_results_and_errors(server: ServerProcess) -> None:
    client = Client(server.api_url, server.api_key, timeout=5)
    channel = unique("client")
    result = client.publish(PublishRequest(channel=channel, data={"n": 1}))
    assert result.offset == 1 and result.epoch
    assert client.presence_stats(PresenceStatsRequest(channel=channel)).num_clients == 0
    with pytest.raises(CentApiResponseError) as error:
        client.publish(PublishRequest(channel="nosuchns:x", data={}))
    assert error.value.code == 102  # unknown namespace: an answer, not retried


def test_retry_after_a_failure_in_transit_publishes_once(server: ServerProcess,
                                                         flaky: FlakyFront) -> None:
    client = Client(flaky.url, server.api_key, timeout=5, retries=1)
    channel = unique("client")
    assert client.publish(PublishRequest(channel=channel, data={"n": 1})).offset == 1
    first, retry = flaky.bodies
    assert first == retry and b'"idempotency_key"' in first  # chosen before the first try
    # The caller's own key is kept; with no retries left the 503 is the caller's.
    no_retry = Client(flaky.url, server.api_key, timeout=5, retries=0)
    with pytest.raises(CentTransportError) as error:
        no_retry.publish(PublishRequest(channel=channel, data={"n": 2},
                                        idempotency_key="mine"))
    assert error.value.status_code == 503 and b'"idempotency_key": "mine"' in flaky.bodies[-1]
    history = Client(server.api_url, server.api_key).history(
        HistoryRequest(channel=channel, limit=-1))
    assert [p.data for p in history.publications] == [{"n": 1}]


async def test_async_client_retries_and_gives_up(server: ServerProcess,
                                                 flaky: FlakyFront) -> None:
    client = AsyncClient(flaky.url, server.api_key, timeout=5, retries=1)
    channel = unique("client")
    result = await client.publish(PublishRequest(channel=channel, data={"n": 1}))
    assert result.offset == 1 and len(flaky.bodies) == 2
    await client.close()
    nowhere = AsyncClient(f"http://127.0.0.1:{free_port()}/api", "k", timeout=1, retries=2)
    with pytest.raises(CentNetworkError):
        await nowhere.publish(PublishRequest(channel=channel, data={}))
    await nowhere.close()
