"""A real PostgreSQL for tests: Debian's ``postgresql`` binaries, a cluster of the test run's own
(``initdb`` into a temp dir, trust auth), listening on a free port on 127.0.0.1 with its socket
in that dir, started and stopped by its own ``Popen`` handle (never by name)::

    with PostgresServer() as pg:
        dsn = pg.create_database()        # a fresh database: "postgresql://postgres@..."
        with pg.connect(dsn) as conn: ...  # psycopg, autocommit
        pg.restart()                       # same port and data: committed rows survive

PostgreSQL refuses to run as root: as root, the cluster belongs to the ``postgres`` user that
the Debian package creates, and initdb and the server run as that user. The session-wide
``postgres`` fixture and the per-test ``pg_dsn`` (a fresh database) are in tests/conftest.py.
All waits are bounded (``TIDINGS_TESTS_TIMEOUT_FACTOR`` scales them).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psycopg

from tests.support.procs import LIVE, spawn
from tests.support.redisproc import free_port
from tests.support.timing import TIMEOUT_FACTOR

__all__ = ["PostgresError", "PostgresServer", "pg_bindir"]

START_TIMEOUT = 30.0 * TIMEOUT_FACTOR
STOP_TIMEOUT = 15.0 * TIMEOUT_FACTOR
SUPERUSER = "postgres"


class PostgresError(RuntimeError):
    """PostgreSQL could not be set up, or did not start or stop in time."""


def pg_bindir() -> Path:
    """The directory of ``initdb`` and ``postgres``: the newest /usr/lib/postgresql/N/bin, else
    where ``initdb`` on PATH really lives."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise PostgresError("PostgreSQL not found: install Debian's postgresql (scripts/test "
                            "does)")
    return Path(os.path.realpath(initdb)).parent


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"


class PostgresServer:
    def __init__(self) -> None:
        self.bindir = pg_bindir()
        # Its own dir under the system temp dir (pytest's tmp_path is root's alone: the
        # postgres user could not enter it).
        self.root = Path(tempfile.mkdtemp(prefix="tidings-pg-"))
        self.datadir = self.root / "data"
        self.sockdir = self.root / "sock"
        self.logfile = self.root / "postgres.log"
        self.user = SUPERUSER if os.geteuid() == 0 else None
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._initialized = False

    # ---------------------------------------------------------------- public

    @property
    def dsn(self) -> str:
        """The ``postgres`` database (for administration)."""
        return self.dsn_for("postgres")

    def dsn_for(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        if self.alive():
            raise PostgresError("postgres: already running")
        if not self._initialized:
            self._initdb()
        if self.port == 0:
            self.port = free_port()
        argv = [str(self.bindir / "postgres"), "-D", str(self.datadir), "-p", str(self.port),
                "-k", str(self.sockdir), "-c", "listen_addresses=127.0.0.1",
                "-c", "fsync=off", "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off", "-c", "max_connections=200"]
        self._proc = spawn(argv, self.root, self.logfile, user=self.user)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Fast shutdown (SIGINT: sessions are ended, committed data kept), then SIGKILL if
        it hangs. No-op when not running."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        LIVE.discard(proc)

    def restart(self) -> Self:
        """Stop and start again: same port, same data."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop and remove the cluster's files."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def connect(self, dsn: str | None = None) -> psycopg.Connection[Any]:
        """A psycopg connection in autocommit mode; the caller closes it (``with``)."""
        return psycopg.connect(dsn or self.dsn, autocommit=True,
                               connect_timeout=int(5 * TIMEOUT_FACTOR))

    def create_database(self, name: str | None = None) -> str:
        """A new, empty database; its DSN."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn_for(name)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ---------------------------------------------------------------- internals

    def _initdb(self) -> None:
        self.sockdir.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            for path in (self.root, self.sockdir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        argv = [str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", SUPERUSER,
                "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"]
        as_user: dict[str, Any] = {}
        if self.user is not None:
            as_user = {"user": self.user, "group": pwd.getpwnam(self.user).pw_gid,
                       "extra_groups": []}
        result = subprocess.run(argv, cwd=self.root, capture_output=True, check=False,
                                timeout=START_TIMEOUT, stdin=subprocess.DEVNULL, **as_user)
        if result.returncode != 0:
            raise PostgresError(f"initdb failed ({result.returncode}):\n"
                                + (result.stdout + result.stderr).decode(errors="replace"))
        self._initialized = True

    def _ready(self) -> bool:
        try:
            with psycopg.connect(self.dsn, connect_timeout=1) as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not self._ready():
            if not self.alive() or time.monotonic() > deadline:
                raise PostgresError(f"postgres on 127.0.0.1:{self.port} did not start; "
                                    f"{self.logfile}:\n{_tail(self.logfile)}")
            time.sleep(0.05)
