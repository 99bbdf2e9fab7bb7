"""Fixtures for every test folder: a real ``tidings serve`` subprocess per test, on a free port
(tests/support/server.py), stopped by its PID when the test finishes; the hook backend; bare
JSON WebSocket clients closed at teardown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.hookapp import HookBackend
from tests.support.pgproc import PostgresServer
from tests.support.raw import JsonWebSocket, open_json_websocket
from tests.support.server import BASE_CONFIG, ServerFactory, ServerProcess, deep_merge, start_server
from tests.support.timing import TIMEOUT_FACTOR

__all__ = ["TIMEOUT_FACTOR"]  # re-exported for code that still imports it from here


@pytest.fixture
def tidings_server(
    tmp_path: Path,
) -> Iterator[ServerFactory]:
    """Factory: ``tidings_server(overrides={...})`` starts a server with BASE_CONFIG + overrides."""
    started: list[ServerProcess] = []

    def factory(
        overrides: dict[str, Any] | None = None,
        *,
        config: dict[str, Any] | None = None,
        extra_args: list[str] | None = None,
        env_vars: dict[str, str] | None = None,
        soft_nofile: int | None = None,
    ) -> ServerProcess:
        cfg = config if config is not None else deep_merge(BASE_CONFIG, overrides or {})
        server = start_server(tmp_path, cfg, extra_args=extra_args, env_vars=env_vars,
                              soft_nofile=soft_nofile)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def server(tidings_server: ServerFactory) -> ServerProcess:
    """A server with BASE_CONFIG."""
    return tidings_server()


@pytest.fixture
async def hook_backend() -> AsyncIterator[HookBackend]:
    """The test hooks (tests/support/hookapp.py) behind a real aiohttp server on loopback."""
    backend = await HookBackend().start()
    yield backend
    await backend.stop()


@pytest.fixture
async def json_ws() -> AsyncIterator[Callable[..., Awaitable[JsonWebSocket]]]:
    """Opens ``JsonWebSocket`` clients (``await json_ws(url, headers)``), all closed at
    teardown (a socket left to the garbage collector warns in whichever test runs next)."""
    opened: list[JsonWebSocket] = []

    async def open_one(url: str, headers: dict[str, str] | None = None) -> JsonWebSocket:
        client = await open_json_websocket(url, additional_headers=headers or {})
        opened.append(client)
        return client

    yield open_one
    for client in opened:
        await client.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL for the whole run (tests/support/pgproc.py), started on first use.
    Tests that stop or restart PostgreSQL start a ``PostgresServer`` of their own."""
    with PostgresServer() as server:
        yield server


@pytest.fixture
def pg_dsn(postgres: PostgresServer) -> str:
    """The DSN of a fresh, empty database on the shared PostgreSQL, the test's own."""
    return postgres.create_database()
