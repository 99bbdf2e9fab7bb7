"""The pytest plugin of the test kit (registered as ``tidings`` under the ``pytest11`` entry
point; ``-p no:tidings`` turns it off). Fixtures, each per test:

- ``tidings_config``: the config dict the servers start with (``tidings.testing.test_config()``);
  override it in a conftest.py, asking for the default by the same name to extend it;
- ``tidings``: a started :class:`~tidings.testing.LiveServer` (its own thread);
- ``async_tidings``: a started :class:`~tidings.testing.AsyncLiveServer` (the test's loop;
  needs pytest-asyncio).

Nothing is imported from Tidings until a fixture is used, so the plugin costs nothing to
suites that do not use it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tidings.testing.live import AsyncLiveServer, LiveServer

try:
    import pytest_asyncio

    _async_fixture: Any = pytest_asyncio.fixture
except ImportError:  # pragma: no cover - without pytest-asyncio there is no async fixture
    _async_fixture = None


@pytest.fixture
def tidings_config() -> dict[str, Any]:
    """The config of the kit's servers (a free port, random keys, channels with history)."""
    from tidings.testing.live import test_config

    return test_config()


@pytest.fixture
def tidings(tidings_config: dict[str, Any]) -> Iterator[LiveServer]:
    """A Tidings server on its own thread for this test, stopped after it."""
    from tidings.testing.live import LiveServer

    with LiveServer(tidings_config) as live:
        yield live


if _async_fixture is not None:
    @_async_fixture  # type: ignore[untyped-decorator]  # pytest_asyncio.fixture is overloaded
    async def async_tidings(tidings_config: dict[str, Any]) -> AsyncIterator[AsyncLiveServer]:
        """A Tidings server on the test's event loop, stopped after the test."""
        from tidings.testing.live import AsyncLiveServer

        async with AsyncLiveServer(tidings_config) as live:
            yield live
