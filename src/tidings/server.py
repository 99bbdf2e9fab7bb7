"""Run a Tidings server: bind, serve, and shut down gracefully on SIGTERM/SIGINT.

Shutdown reads as a checklist (after uvicorn): stop accepting connections, disconnect every
client with 3001 (they reconnect elsewhere), close idle HTTP connections, wait for in-flight
work up to ``shutdown.timeout``, stop the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import resource
import signal
import socket

from tidings.api.handlers import ApiHandler
from tidings.config import Config
from tidings.core.node import Node
from tidings.engine import make_engine
from tidings.transports.http import HttpProtocol, ServerState

__all__ = ["Server", "run"]

log = logging.getLogger("tidings.server")


class Server:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.node = Node(config, make_engine(config))
        self.api = ApiHandler(self.node)
        self.state = ServerState(self.node, self.api)
        self._servers: list[asyncio.AbstractServer] = []
        self._stop = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None
        self.port = config.http_server.port

    async def start(self) -> None:
        raise_open_files_limit()
        await self.node.start()
        loop = asyncio.get_running_loop()
        self._sweeper = loop.create_task(self.state.sweep_forever())
        cfg = self.config.http_server
        server = await loop.create_server(
            lambda: HttpProtocol(self.state), host=cfg.address or None, port=cfg.port,
            reuse_address=True, backlog=4096,
        )
        self._servers.append(server)
        sock = server.sockets[0]
        self.port = sock.getsockname()[1]
        for s in server.sockets:
            with contextlib.suppress(OSError):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        host = cfg.address or "0.0.0.0"
        # The test harness and humans read this line; keep its shape.
        log.warning("tidings listening on http://%s:%d", host, self.port)

    def request_stop(self) -> None:
        self._stop.set()

    async def serve_until_stopped(self) -> None:
        await self._stop.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        timeout = self.config.shutdown.timeout
        log.warning("shutting down (timeout %.0fs)", timeout)
        # Stop accepting new connections.
        self.state.accepting = False
        for server in self._servers:
            server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        # Disconnect clients with 3001 so they reconnect, and wait for cleanup.
        await self.node.shutdown(timeout)
        # Close every connection; close() still flushes what is buffered (the close frames).
        for connection in list(self.state.connections):
            if connection.transport is not None:
                connection.transport.close()
        for server in self._servers:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await server.wait_closed()
        log.warning("stopped")


def raise_open_files_limit() -> None:
    """Each connection is a descriptor: raise the soft RLIMIT_NOFILE to the hard limit (as
    Go programs such as Centrifugo get from their runtime), so a node with the common
    1,024 default does not stop accepting at ~1,000 connections."""
    infinity = resource.RLIM_INFINITY
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != infinity else 1 << 20  # Linux's usual fs.nr_open
    if soft == infinity or soft >= target:
        log.info("open files limit: %s", "unlimited" if soft == infinity else soft)
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("open files limit stays at %d (hard limit %s): %s", soft, hard, exc)
        return
    log.info("open files limit raised from %d to %d", soft, target)


async def _main(config: Config) -> None:
    server = Server(config)
    await server.start()
    # Long-lived start-up objects never become garbage: keep the collector off them.
    gc.collect()
    gc.freeze()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.request_stop)
    await server.serve_until_stopped()


def run(config: Config) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; kept for odd platforms
        asyncio.run(_main(config))
        return
    uvloop.run(_main(config))
