"""Fixtures of the unit tests. No server process here: ``server`` is a node running in the
test's own event loop (tests/support/inprocess.py), on the memory engine with BASE_CONFIG."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.inprocess import InProcessServer, in_process_server


@pytest.fixture
async def server() -> AsyncIterator[InProcessServer]:
    async with in_process_server() as srv:
        yield srv
