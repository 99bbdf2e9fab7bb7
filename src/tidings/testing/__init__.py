"""The test kit: Tidings in a test's own process, a client that subscribes and awaits
publications, and assertions that code published something (docs/testing.md).

With pytest it is a plugin (loaded on its own once ``tidings`` is installed; the websockets
package is needed: ``pip install 'tidings[testing]'``). Its fixtures:

- ``tidings``: a :class:`LiveServer` (on a thread: for sync tests, Django's, Flask's,
  Starlette's ``TestClient``);
- ``async_tidings``: an :class:`AsyncLiveServer` on the test's event loop (pytest-asyncio);
- ``tidings_config``: the config both start with (override it to change channels, hooks...).

::

    def test_comment_is_published(client, tidings):
        with tidings.expect_publication("comments", {"text": "hi"}):
            client.post("/comments", {"text": "hi"})
"""

from tidings.testing.client import (
    ANY,
    AsyncLiveClient,
    AsyncSubscription,
    Closed,
    LiveClient,
    NoPublication,
    Publication,
    ReplyError,
    Subscription,
)
from tidings.testing.live import AsyncLiveServer, LiveServer, test_config

__all__ = [
    "ANY",
    "AsyncLiveClient",
    "AsyncLiveServer",
    "AsyncSubscription",
    "Closed",
    "LiveClient",
    "LiveServer",
    "NoPublication",
    "Publication",
    "ReplyError",
    "Subscription",
    "test_config",
]
