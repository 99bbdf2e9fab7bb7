"""``tidings serve --workers N``: N worker processes share the port, each with its own event
loop, its own node and engine connections; they share state through the distributed engine.

The supervisor (this module) never serves a request. It

1. reserves the port(s): a socket bound with ``SO_REUSEPORT`` and never listening, held until
   the end, so port 0 becomes one real port every worker binds, a restarted worker finds its
   port free, and no other program takes it meanwhile;
2. writes the effective config (file < ``TIDINGS_*`` < flags, resolved once) where only its
   user can read it, so every worker, restarted ones included, runs the config it started with;
3. starts worker ``i`` as ``python -m tidings serve --config <that file> --worker-of SPEC``
   (``tidings.worker``), waits until each says ``ready`` down its pipe, then prints the start-up
   line once, with the real port;
4. restarts a worker that exits (crash, kill) with backoff: 0.1 s, doubling to 5 s while it
   keeps dying within 10 s of its start; a worker failing before it ever got ready (a port
   taken, a bad setting) ends the supervisor with that worker's exit code;
5. forwards SIGTERM/SIGINT to every worker (each drains: clients get 3001), waits for them up
   to ``shutdown.timeout`` plus a margin (then SIGKILL), and exits 0 when all drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from typing import Any

import msgspec

from tidings import __version__, logs
from tidings.config import Config, config_to_dict
from tidings.config.workersschema import worker_count
from tidings.server import ListenError, internal_address
from tidings.worker import WorkerSpec, worker_node_name

__all__ = ["Supervisor", "reserve_port", "supervise"]

log = logging.getLogger("tidings.workers")

BACKOFF_MIN = 0.1
BACKOFF_MAX = 5.0
STABLE_AFTER = 10.0  # a worker up this long has its restart backoff reset
DRAIN_MARGIN = 5.0  # past shutdown.timeout before a worker still draining is killed


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to host:port with ``SO_REUSEPORT`` only, never listening: workers (also
    ``SO_REUSEPORT``, same user) bind beside it, anything else is refused. A given port is
    probed first with a plain ``SO_REUSEADDR`` bind, which fails on any listener there (one
    sharing its port too)."""
    try:
        family, _, _, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        if port:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(address)
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
        except OSError:
            sock.close()
            raise
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ListenError(exc.errno, f"cannot listen on {host or '0.0.0.0'}:{port}: "
                                     f"{reason}") from exc
    return sock


class _Worker:
    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: asyncio.subprocess.Process | None = None
        self.started = 0.0
        self.ever_ready = False
        self.ready = asyncio.Event()


class Supervisor:
    def __init__(self, config: Config, *, config_path: str = "") -> None:
        self.config = config
        self.config_path = config_path  # for the start-up line only
        self.count = worker_count(config)
        self.workers = [_Worker(i) for i in range(self.count)]
        self.port = 0
        self.internal_port = 0
        self.directory = ""
        self._reserved: list[socket.socket] = []
        self._stop = asyncio.Event()
        self._failed: asyncio.Future[int] | None = None

    # ---------------------------------------------------------------- the whole run

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self._failed = loop.create_future()
        try:
            self._reserve()
            self.directory = tempfile.mkdtemp(prefix="tidings-workers-")  # mode 0700
            self._write_config()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
            keepers = [loop.create_task(self._keep(w)) for w in self.workers]
            code = await self._first_start()
            if code == 0 and not self._stop.is_set():
                self._announce()
                await self._stop.wait()
            self.request_stop()
            drained = await self._drain()
            await asyncio.gather(*keepers, return_exceptions=True)
            return code or (0 if drained else 1)
        finally:
            for sock in self._reserved:
                sock.close()
            if self.directory:
                shutil.rmtree(self.directory, ignore_errors=True)

    def _write_config(self) -> None:
        """The effective config, with the reserved ports, for every worker to load."""
        data = config_to_dict(self.config)
        data["http_server"]["port"] = self.port
        if self.internal_port:
            data["http_server"]["internal_port"] = str(self.internal_port)
        with open(os.path.join(self.directory, "config.json"), "w", encoding="utf-8") as f:
            json.dump(data, f)

    def _reserve(self) -> None:
        cfg = self.config.http_server
        internal = internal_address(cfg)
        if internal is not None:
            sock = reserve_port(*internal)
            self._reserved.append(sock)
            self.internal_port = sock.getsockname()[1]
        sock = reserve_port(cfg.address, cfg.port)
        self._reserved.append(sock)
        self.port = sock.getsockname()[1]

    async def _first_start(self) -> int:
        """0 once every worker is ready; else the exit code of the first that failed."""
        assert self._failed is not None
        everyone = asyncio.ensure_future(asyncio.gather(*(w.ready.wait()
                                                          for w in self.workers)))
        stop = asyncio.ensure_future(self._stop.wait())
        waits: list[asyncio.Future[Any]] = [everyone, self._failed, stop]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        everyone.cancel()
        stop.cancel()
        if self._failed.done():
            return self._failed.result() or 1
        return 0

    def _announce(self) -> None:
        cfg = self.config.http_server
        host = cfg.address or "0.0.0.0"
        main = f"http://{host}:{self.port}"
        listeners = [main]
        startup = logging.getLogger(logs.STARTUP_LOGGER)
        internal = internal_address(cfg)
        if internal is not None:  # first: its line is out before the main one (the harness)
            url = f"http://{internal[0] or '0.0.0.0'}:{self.internal_port}"
            listeners.append(url)
            startup.info("tidings internal listener on %s", url)
        # The same line as a lone server's (scripts and the test harness wait for it).
        startup.info("tidings listening on %s", main, extra={
            "version": __version__, "engine": self.config.engine.type,
            "config": self.config_path, "listeners": ",".join(listeners),
            "workers": self.count, "pid": os.getpid()})

    # ---------------------------------------------------------------- one worker

    async def _keep(self, worker: _Worker) -> None:
        """Run ``worker``, again after each exit, until the supervisor stops."""
        delay = 0.0
        while not self._stop.is_set():
            code = await self._run_once(worker)
            if self._stop.is_set():
                return
            if not worker.ever_ready:  # it never started: a setting or the port is wrong
                assert self._failed is not None
                if not self._failed.done():
                    self._failed.set_result(code)
                return
            uptime = time.monotonic() - worker.started
            delay = (BACKOFF_MIN if uptime >= STABLE_AFTER or not delay
                     else min(delay * 2, BACKOFF_MAX))
            log.warning("worker %d exited with %s after %.1fs; restarting in %.1fs",
                        worker.index, _exit_text(code), uptime, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)

    async def _run_once(self, worker: _Worker) -> int:
        """Start the worker, note when it is ready, and wait for its exit code."""
        read_end, write_end = os.pipe()
        spec = WorkerSpec(
            index=worker.index, count=self.count, port=self.port,
            internal_port=self.internal_port,
            name=worker_node_name(self.config.node.name, worker.index),
            ready_fd=write_end, handoff_dir=self.directory, parent=os.getpid())
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        try:
            worker.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tidings", "serve",
                "--config", os.path.join(self.directory, "config.json"),
                "--worker-of", _encode(spec), pass_fds=(write_end,), env=env)
        except OSError as exc:  # no process to wait for: a failure like any other
            log.error("worker %d not started: %s", worker.index, exc)
            os.close(read_end)
            return 127
        finally:
            os.close(write_end)
        if self._stop.is_set():  # stopped while this one was starting: it drains too
            worker.proc.send_signal(signal.SIGTERM)
        worker.started = time.monotonic()
        log.info("worker %d started (pid %d)", worker.index, worker.proc.pid,
                 extra={"pid": worker.proc.pid})
        loop = asyncio.get_running_loop()
        loop.add_reader(read_end, self._ready_line, worker, read_end)
        try:
            return await worker.proc.wait()
        finally:
            loop.remove_reader(read_end)
            os.close(read_end)
            worker.proc = None

    def _ready_line(self, worker: _Worker, fd: int) -> None:
        try:
            data = os.read(fd, 64)
        except OSError:
            data = b""
        if data.startswith(b"ready"):
            worker.ever_ready = True
            worker.ready.set()
        asyncio.get_running_loop().remove_reader(fd)  # one line, or the end of the pipe

    # ---------------------------------------------------------------- stopping

    def request_stop(self) -> None:
        """SIGTERM/SIGINT: every worker drains (its clients get 3001), then this exits."""
        if not self._stop.is_set():
            log.warning("stopping %d workers", self.count)
        self._stop.set()
        for worker in self.workers:
            if worker.proc is not None and worker.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.send_signal(signal.SIGTERM)

    async def _drain(self) -> bool:
        """Wait for every worker to end; True when none had to be killed."""
        procs = [w.proc for w in self.workers if w.proc is not None]
        grace = self.config.shutdown.timeout + DRAIN_MARGIN
        waits = [asyncio.ensure_future(p.wait()) for p in procs]
        if not waits:
            return True
        _, pending = await asyncio.wait(waits, timeout=grace)
        for proc in procs:
            if proc.returncode is None:
                log.error("worker (pid %d) still running after %.0fs: killed", proc.pid, grace)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        if pending:
            await asyncio.wait(pending)
        log.warning("all workers stopped")
        return not pending


def _encode(spec: WorkerSpec) -> str:
    return msgspec.json.encode(spec).decode()


def _exit_text(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"code {code}"


def supervise(config: Config, *, config_path: str = "") -> int:
    """Run the workers until SIGTERM/SIGINT; the exit code (``ListenError`` when a port cannot
    be reserved)."""
    return asyncio.run(Supervisor(config, config_path=config_path).run())
