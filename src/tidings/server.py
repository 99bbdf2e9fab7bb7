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
import os
import resource
import signal
import socket

from tidings import __version__, logs
from tidings.api.handlers import ApiHandler
from tidings.config import Config, HttpServerConfig
from tidings.consumers import Consumers
from tidings.core.node import Node
from tidings.engine import make_engine
from tidings.transports.http import HttpProtocol, ServerState
from tidings.transports.routes import EVERY, INTERNAL, PUBLIC
from tidings.worker import WorkerSpec, join_workers

__all__ = ["ListenError", "Server", "run"]

log = logging.getLogger("tidings.server")


class ListenError(OSError):
    """A listener cannot bind (its ``strerror`` is the CLI's one line, naming host:port)."""


class Server:
    def __init__(self, config: Config, *, config_path: str = "",
                 worker: WorkerSpec | None = None) -> None:
        self.config = config
        self.config_path = config_path  # for the start-up line only
        self.worker = worker  # with --workers: this process's place (SO_REUSEPORT listeners)
        self.node = Node(config, make_engine(config))
        self.api = ApiHandler(self.node)
        self.consumers = Consumers(config.consumers, self.api, self.node.counts)
        self.state = ServerState(self.node, self.api)
        self._servers: list[asyncio.AbstractServer] = []
        self._stop = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None
        self.port = config.http_server.port
        self.internal_port: int | None = None  # the internal listener's, when there is one

    async def start(self, *, listen: bool = True) -> None:
        """Start the node and the connection timeouts' sweep, then (``listen``) bind the
        listeners; without them the connections come through ``tidings.asgi``."""
        raise_open_files_limit()
        await self.node.start()
        try:  # outbox consumers: fatal when one cannot reach its database (ConsumerStartError)
            await self.consumers.start()
        except BaseException:
            await self.node.shutdown(0)
            raise
        loop = asyncio.get_running_loop()
        self._sweeper = loop.create_task(self.state.sweep_forever())
        if not listen:
            return
        cfg = self.config.http_server
        internal = internal_address(cfg)
        if internal is not None:  # first: its line is out before the main one (the harness)
            self.internal_port = await self._listen(*internal, INTERNAL)
            logging.getLogger(logs.STARTUP_LOGGER).info(
                "tidings internal listener on http://%s:%d", internal[0] or "0.0.0.0",
                self.internal_port)
        self.port = await self._listen(cfg.address, cfg.port,
                                       EVERY if internal is None else PUBLIC)
        host = cfg.address or "0.0.0.0"
        main = f"http://{host}:{self.port}"
        listeners = [main]
        if internal is not None:
            listeners.append(f"http://{internal[0] or '0.0.0.0'}:{self.internal_port}")
        # The test harness, scripts and humans read this line: keep it starting with
        # "tidings listening on http://HOST:PORT". INFO, as Centrifugo's start-up lines, on a
        # logger that shows it at every log.level but none (logs.STARTUP_LOGGER).
        logging.getLogger(logs.STARTUP_LOGGER).info(
            "tidings listening on %s", main,
            extra={"version": __version__, "engine": self.config.engine.type,
                   "config": self.config_path, "listeners": ",".join(listeners),
                   "node_id": self.node.id})

    async def _listen(self, host: str, port: int, listener: int) -> int:
        """Serve the routes ``listener`` names on host:port; returns the bound port."""
        try:
            server = await asyncio.get_running_loop().create_server(
                lambda: HttpProtocol(self.state, listener), host=host or None, port=port,
                reuse_address=True, reuse_port=self.worker is not None, backlog=4096,
            )
        except OSError as exc:
            code = exc.errno or 0
            reason = os.strerror(code) if code > 0 else exc.strerror or str(exc)
            raise ListenError(exc.errno, f"cannot listen on {host or '0.0.0.0'}:{port}: "
                                         f"{reason}") from exc
        self._servers.append(server)
        for s in server.sockets:
            with contextlib.suppress(OSError):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        bound: int = server.sockets[0].getsockname()[1]
        return bound

    def request_stop(self) -> None:
        self._stop.set()

    async def serve_until_stopped(self) -> None:
        await self._stop.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        timeout = self.config.shutdown.timeout
        log.warning("shutting down (timeout %.0fs)", timeout)
        # Stop consuming first: nothing new is published while clients are let go.
        await self.consumers.close()
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


def internal_address(cfg: HttpServerConfig) -> tuple[str, int] | None:
    """Where the internal listener binds, or None when the main one serves every route
    (as in Centrifugo, an unset internal address or port is the main one)."""
    if not cfg.internal_address and not cfg.internal_port:
        return None
    host = cfg.internal_address or cfg.address
    port = int(cfg.internal_port) if cfg.internal_port else cfg.port
    if (host, port) == (cfg.address, cfg.port) and port != 0:
        return None
    return host, port


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


async def _main(config: Config, config_path: str, worker: WorkerSpec | None) -> None:
    server = Server(config, config_path=config_path, worker=worker)
    if worker is not None:  # the supervisor prints the start-up lines, once for all workers
        logging.getLogger(logs.STARTUP_LOGGER).disabled = True
    await server.start()
    handoff = join_workers(server, worker) if worker is not None else None
    # Long-lived start-up objects never become garbage: keep the collector off them.
    gc.collect()
    gc.freeze()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.request_stop)
    await server.serve_until_stopped()
    if handoff is not None:
        handoff.close()


def run(config: Config, *, config_path: str = "", worker: WorkerSpec | None = None) -> None:
    """Serve until SIGTERM/SIGINT; ``worker``: as one of ``tidings serve --workers N``."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; kept for odd platforms
        asyncio.run(_main(config, config_path, worker))
        return
    uvloop.run(_main(config, config_path, worker))
