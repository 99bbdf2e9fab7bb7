"""Real Redis processes for tests: a standalone server, a small cluster, a master plus sentinel.

Every process is started from Debian's ``redis-server`` with command-line flags only (no system
config, no daemonizing), lives in its own directory under the caller's temp dir, listens on
127.0.0.1 and is ended by its own ``Popen`` handle, never by name. The API is synchronous and
blocks only briefly, so it can be used from sync and async tests alike (in an async test, call
it from a fixture or wrap it in ``asyncio.to_thread`` if the blocking matters)::

    with RedisServer(tmp_path, appendonly=True) as server:
        server.client().set(b"k", b"v")
        server.restart()            # same port, same dir: the AOF brings "k" back

    with RedisCluster(tmp_path) as cluster:
        cluster.addresses           # ["redis://127.0.0.1:P1", ...]

    with RedisSentinel(tmp_path) as sentinel:
        sentinel.sentinel_address   # "127.0.0.1:S"; sentinel.master is a RedisServer

All waits are bounded and poll every ~50 ms; ``TIDINGS_TESTS_TIMEOUT_FACTOR`` scales the bounds
for slow machines (tests/support/timing.py).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.procs import LIVE, spawn, stop_process
from tests.support.timing import TIMEOUT_FACTOR

__all__ = [
    "RedisCluster",
    "RedisProcessError",
    "RedisSentinel",
    "RedisServer",
    "free_port",
    "redis_cli_path",
    "redis_server_path",
]

START_TIMEOUT = 10.0 * TIMEOUT_FACTOR
STOP_TIMEOUT = 10.0 * TIMEOUT_FACTOR
CLUSTER_TIMEOUT = 20.0 * TIMEOUT_FACTOR
SENTINEL_TIMEOUT = 10.0 * TIMEOUT_FACTOR
POLL_INTERVAL = 0.05
CLUSTER_SLOTS = 16384
CLUSTER_NODE_ARGS = (
    *("--cluster-enabled", "yes"),
    *("--cluster-config-file", "nodes.conf"),
    *("--cluster-node-timeout", "2000"),
)



class RedisProcessError(RuntimeError):
    """A Redis process did not start, or did not reach the expected state in time."""


# Ports this process has handed out: a port picked now and bound later (a cluster bus port,
# the port of a server not started yet) must not be handed out a second time meanwhile.
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, close, return it).

    Never returns the same port twice within one test process.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RedisProcessError("no free port found that was not handed out before")


def redis_server_path() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise RuntimeError(
            "redis-server not found: install Debian's redis-server (scripts/test does)"
        )
    return path


def redis_cli_path() -> str:
    path = shutil.which("redis-cli")
    if path is None:
        raise RuntimeError("redis-cli not found: install Debian's redis-server (scripts/test does)")
    return path


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def _poll(
    check: Callable[[], bool], timeout: float, *, alive: Callable[[], bool] | None = None
) -> bool:
    """Call ``check`` every ~50 ms until it returns True (-> True) or ``timeout`` passes (-> False).

    Stops early (-> False) when ``alive`` says the process being waited on has exited.
    """
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if alive is not None and not alive():
            return False
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL)


def _probe_client(port: int, password: str | None = None) -> redis.Redis:
    """A short-timeout client for readiness checks (no retries, so a failed poll fails fast)."""
    return redis.Redis(
        host="127.0.0.1",
        port=port,
        password=password,
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
        retry=Retry(NoBackoff(), 0),
    )


def _inspection_client(port: int, password: str | None = None) -> redis.Redis:
    """A sync client for a test's own inspection (bytes responses, the usual timeouts)."""
    return redis.Redis(
        host="127.0.0.1",
        port=port,
        password=password,
        decode_responses=False,
        socket_timeout=5.0 * TIMEOUT_FACTOR,
        socket_connect_timeout=5.0 * TIMEOUT_FACTOR,
    )


class _Started:
    """``with thing:`` starts it and stops it at the end."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _Process(_Started):
    """One redis-server process: start by argv, wait for PING, stop/kill by its Popen only."""

    def __init__(self, workdir: Path, name: str, port: int, password: str | None) -> None:
        self.workdir = workdir
        self.name = name
        self._port = port
        self._password = password
        self._proc: subprocess.Popen[bytes] | None = None
        self.logfile = workdir / f"{name}.log"
        # stdout/stderr of the process itself: errors that happen before the log file is open
        # (a bad flag, an unreadable config) only show up here.
        self.outfile = workdir / f"{name}.out"

    # -- to override ----------------------------------------------------------------------------

    def _argv(self) -> list[str]:
        raise NotImplementedError

    # -- public -----------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port == 0:
            raise RedisProcessError(f"{self.name}: not started yet, no port chosen")
        return self._port

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RedisProcessError(f"{self.name}: not running")
        return self._proc.pid

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        if self.alive():
            raise RedisProcessError(f"{self.name}: already running (pid {self.pid})")
        if self._port == 0:
            self._port = free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._proc = spawn(self._argv(), self.workdir, self.outfile)
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def stop(self) -> None:
        """SIGTERM, wait up to 10 s, then SIGKILL. No-op when not running."""
        proc = self._proc
        if proc is None:
            return
        stop_process(proc, STOP_TIMEOUT)
        self._proc = None

    def kill(self) -> None:
        """SIGKILL and reap. No-op when not running."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
        LIVE.discard(proc)
        self._proc = None

    def restart(self) -> Self:
        """Stop (gracefully) and start again on the same port with the same directory."""
        self.stop()
        return self.start()

    def __enter__(self) -> Self:
        if not self.alive():
            self.start()
        return self

    # -- internals --------------------------------------------------------------------------------

    def describe_failure(self, what: str) -> str:
        proc = self._proc
        state = (
            "running"
            if proc is not None and proc.poll() is None
            else (f"exited with {proc.returncode}" if proc is not None else "not started")
        )
        return (
            f"{self.name} on 127.0.0.1:{self._port} {what} ({state}); "
            f"dir {self.workdir}\n--- {self.logfile.name} (tail) ---\n{_tail(self.logfile)}"
            f"\n--- {self.outfile.name} (tail) ---\n{_tail(self.outfile)}"
        )

    def _pings(self) -> bool:
        """PING answered by THIS process (not by another server that holds the port)."""
        proc = self._proc
        if proc is None:
            return False
        try:
            with _probe_client(self._port, self._password) as client:
                if not client.ping():
                    return False
                info: Any = client.info("server")
        except redis.RedisError:  # refused, LOADING, ... : not ready yet
            return False
        if info.get("process_id") != proc.pid:
            raise RedisProcessError(
                self.describe_failure(
                    f"is answered by another process (pid {info.get('process_id')}), "
                    "the port is taken"
                )
            )
        return True

    def _wait_ready(self) -> None:
        if not _poll(self._pings, START_TIMEOUT, alive=self.alive):
            raise RedisProcessError(self.describe_failure("did not answer PING"))


class RedisServer(_Process):
    """A standalone ``redis-server`` on 127.0.0.1 in its own subdirectory ``tmp_dir/name``.

    ``port=0`` picks a free port on the first ``start()``; ``restart()`` keeps it.
    """

    def __init__(
        self,
        tmp_dir: Path,
        *,
        port: int = 0,
        appendonly: bool = False,
        password: str | None = None,
        extra_args: list[str] | None = None,
        name: str = "redis",
    ) -> None:
        super().__init__(Path(tmp_dir) / name, name, port, password)
        self.appendonly = appendonly
        self.password = password
        self.extra_args = list(extra_args or [])

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password is not None else ""
        return f"redis://{auth}127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        """A sync client for inspection (bytes responses); the caller closes it (or ignores it)."""
        return _inspection_client(self.port, self.password)

    def _argv(self) -> list[str]:
        argv = [
            redis_server_path(),
            "--port", str(self._port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--dir", str(self.workdir),
            "--logfile", str(self.logfile),
            "--protected-mode", "no",
            "--daemonize", "no",
        ]  # fmt: skip
        if self.password is not None:
            argv += ["--requirepass", self.password]
        return argv + self.extra_args


class RedisCluster(_Started):
    """``masters`` cluster-enabled servers joined with ``redis-cli --cluster create``, no replicas.

    ``start()`` returns once every node reports ``cluster_state:ok``, all 16384 slots are
    assigned and ok, and every node knows all the others.
    """

    def __init__(self, tmp_dir: Path, masters: int = 3) -> None:
        if masters < 1:
            raise ValueError("a cluster needs at least one master")
        self.tmp_dir = Path(tmp_dir)
        self.nodes: list[RedisServer] = [
            RedisServer(
                self.tmp_dir,
                name=f"cluster-{i}",
                # The bus port defaults to port + 10000, which must be free too and makes any
                # port above 55535 fail; pick a free one explicitly (cluster-port, Redis 7+).
                extra_args=[*CLUSTER_NODE_ARGS, "--cluster-port", str(free_port())],
            )
            for i in range(masters)
        ]
        self.create_log = self.tmp_dir / "cluster-create.log"

    @property
    def addresses(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def host_ports(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", node.port) for node in self.nodes]

    def start(self) -> Self:
        try:
            for node in self.nodes:
                node.start()
            self._create()
            self._wait_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def alive(self) -> bool:
        return all(node.alive() for node in self.nodes)

    def _create(self) -> None:
        argv = [redis_cli_path(), "--cluster", "create"]
        argv += [node.address for node in self.nodes]
        argv += ["--cluster-replicas", "0", "--cluster-yes"]
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        try:
            result = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=CLUSTER_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:  # run() has killed redis-cli already
            raise RedisProcessError(
                f"redis-cli --cluster create timed out after {CLUSTER_TIMEOUT:.0f} s"
            ) from exc
        output = (result.stdout + result.stderr).decode(errors="replace")
        self.create_log.write_text(output)
        if result.returncode != 0:
            raise RedisProcessError(
                f"redis-cli --cluster create failed with {result.returncode}:\n{output}"
            )

    @staticmethod
    def _info(node: RedisServer) -> dict[str, str]:
        with _probe_client(node.port) as client:
            raw: Any = client.execute_command("CLUSTER", "INFO")
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        info: dict[str, str] = {}
        for line in text.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                info[key.strip()] = value.strip()
        return info

    def _node_ok(self, node: RedisServer) -> bool:
        try:
            info = self._info(node)
        except redis.RedisError:
            return False
        return (
            info.get("cluster_state") == "ok"
            and info.get("cluster_slots_assigned") == str(CLUSTER_SLOTS)
            and info.get("cluster_slots_ok") == str(CLUSTER_SLOTS)
            and info.get("cluster_known_nodes") == str(len(self.nodes))
        )

    def _wait_ok(self) -> None:
        def all_ok() -> bool:
            return all(self._node_ok(node) for node in self.nodes)

        if not _poll(all_ok, CLUSTER_TIMEOUT, alive=self.alive):
            details = []
            for node in self.nodes:
                try:
                    state = repr(self._info(node))
                except redis.RedisError as exc:
                    state = f"<{exc!r}>"
                details.append(f"{node.address}: {state}")
            raise RedisProcessError(
                "cluster did not reach cluster_state:ok with all slots covered:\n"
                + "\n".join(details)
                + "\n"
                + "\n".join(
                    node.describe_failure("state") for node in self.nodes if not node.alive()
                )
            )


class _SentinelProcess(_Process):
    """``redis-server sentinel.conf --sentinel``: a sentinel rewrites its config, so it gets one."""

    def __init__(self, workdir: Path, master_name: str, master_port: int, port: int = 0) -> None:
        super().__init__(workdir, "sentinel", port, None)
        self.master_name = master_name
        self.master_port = master_port
        self.conffile = workdir / "sentinel.conf"

    def _argv(self) -> list[str]:
        # Written on every start: the sentinel rewrites the file with what it learned, and a
        # fresh start must monitor the master it was given, not a stale failover result.
        name = self.master_name
        self.conffile.write_text(
            f"port {self._port}\n"
            "bind 127.0.0.1\n"
            "protected-mode no\n"
            "daemonize no\n"
            f'dir "{self.workdir}"\n'
            f'logfile "{self.logfile}"\n'
            f"sentinel monitor {name} 127.0.0.1 {self.master_port} 1\n"
            f"sentinel down-after-milliseconds {name} 2000\n"
            f"sentinel failover-timeout {name} 5000\n"
        )
        return [redis_server_path(), str(self.conffile), "--sentinel"]


class RedisSentinel(_Started):
    """A master ``RedisServer`` plus ONE sentinel monitoring it (quorum 1) as ``master_name``.

    ``start()`` returns once the sentinel reports the master's address and is connected to it
    (its flags for the master are exactly ``master``).
    """

    def __init__(self, tmp_dir: Path, master_name: str = "mymaster") -> None:
        self.tmp_dir = Path(tmp_dir)
        self.master_name = master_name
        self.master = RedisServer(self.tmp_dir, name="sentinel-master")
        self._sentinel: _SentinelProcess | None = None

    @property
    def sentinel(self) -> _SentinelProcess:
        if self._sentinel is None:
            raise RedisProcessError("sentinel: not started yet")
        return self._sentinel

    @property
    def sentinel_port(self) -> int:
        return self.sentinel.port

    @property
    def sentinel_address(self) -> str:
        return f"127.0.0.1:{self.sentinel_port}"

    @property
    def sentinel_url(self) -> str:
        return f"redis://127.0.0.1:{self.sentinel_port}"

    def sentinel_client(self) -> redis.Redis:
        """A sync client connected to the sentinel (bytes responses)."""
        return _inspection_client(self.sentinel_port)

    def alive(self) -> bool:
        return self.master.alive() and self._sentinel is not None and self._sentinel.alive()

    def start(self) -> Self:
        try:
            self.master.start()
            if self._sentinel is None:
                self._sentinel = _SentinelProcess(
                    self.tmp_dir / "sentinel", self.master_name, self.master.port
                )
            self._sentinel.start()
            self._wait_master()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._sentinel is not None:
            self._sentinel.stop()
        self.master.stop()

    def _query(self, *args: str) -> Any:
        with _probe_client(self.sentinel_port) as client:
            return client.execute_command("SENTINEL", *args)

    def _reports_master(self) -> bool:
        try:
            addr = self._query("get-master-addr-by-name", self.master_name)
            state = self._query("master", self.master_name)
        except redis.RedisError:
            return False
        if not isinstance(addr, list | tuple) or len(addr) != 2:
            return False
        host, port = (x.decode() if isinstance(x, bytes) else str(x) for x in addr)
        if (host, port) != ("127.0.0.1", str(self.master.port)):
            return False
        # RESP2: a flat [field, value, field, value, ...] list.
        if isinstance(state, dict):
            flags = state.get(b"flags", state.get("flags"))
        else:
            items = list(state)
            fields = dict(zip(items[::2], items[1::2], strict=True))
            flags = fields.get(b"flags")
        if isinstance(flags, bytes):
            flags = flags.decode()
        return flags == "master"

    def _wait_master(self) -> None:
        if not _poll(self._reports_master, SENTINEL_TIMEOUT, alive=self.alive):
            raise RedisProcessError(
                self.sentinel.describe_failure(
                    f"did not report master {self.master_name} at {self.master.address}"
                )
            )
