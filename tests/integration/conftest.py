"""Fixtures of the integration tests: centrifuge-python clients (JSON and Protobuf), an aiohttp
session, a Redis server of the test's own.

Modules whose nodes or Redis go away cap the SDK's retry backoff with
``pytestmark = pytest.mark.sdk(max_retry_delay=1.0)`` (see ``Clients``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.redisproc import RedisServer
from tests.support.sdk import Clients
from tests.support.timing import T


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sdk(**options): options of the `clients` and `pb` registries (Clients)"
    )


def _sdk_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    marker = request.node.get_closest_marker("sdk")
    return dict(marker.kwargs) if marker is not None else {}


@pytest.fixture
async def clients(request: pytest.FixtureRequest) -> AsyncIterator[Clients]:
    """centrifuge-python clients (JSON protocol), all disconnected at teardown."""
    registry = Clients(**_sdk_options(request))
    yield registry
    await registry.close()


@pytest.fixture
async def pb(request: pytest.FixtureRequest) -> AsyncIterator[Clients]:
    """centrifuge-python clients in Protobuf mode, all disconnected at teardown."""
    registry = Clients(use_protobuf=True, **_sdk_options(request))
    yield registry
    await registry.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """One aiohttp session for the test (its connections are reused)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3 * T)) as session:
        yield session


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server of the test's own, on a free port."""
    with RedisServer(tmp_path) as server:
        yield server
