"""Tidings: a real-time messaging server speaking the Centrifugo client protocol v2.

The embedding API (docs/python.md)::

    import tidings

    async with tidings.Server({"http_server": {"port": 0}}) as server:
        await server.publish("news", {"text": "hello"})

Names are imported on first use, so ``import tidings.hooks`` in a web app loads no server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["ApiError", "BackgroundServer", "Server", "StreamPosition", "__version__"]

if TYPE_CHECKING:
    from tidings.embed import BackgroundServer, Server
    from tidings.results import ApiError, StreamPosition

_LAZY = {"Server": "tidings.embed", "BackgroundServer": "tidings.embed",
         "ApiError": "tidings.results", "StreamPosition": "tidings.results"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tidings' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
