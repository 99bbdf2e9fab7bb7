"""The processes of the live-comments stack (stack.py): finding the binaries, waiting for a
server to answer, and ending a child by its PID (SIGTERM, then SIGKILL), never by name."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Proc", "StackError", "as_postgres", "binary", "free_port", "http_ok",
           "others_can_enter", "pg_bindir", "port_free", "tail", "wait_for"]

START_TIMEOUT = 30.0 * float(os.environ.get("TIDINGS_TESTS_TIMEOUT_FACTOR", "1"))
STOP_TIMEOUT = 10.0


class StackError(RuntimeError):
    """Something could not be set up or did not start; the message says what and where."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def binary(name: str, *extra_dirs: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(extra_dirs))
    if found is None:
        raise StackError(f"{name} not found: install it (./run installs Debian's packages)")
    return found


def pg_bindir() -> Path:
    """Debian's newest /usr/lib/postgresql/N/bin, else where ``initdb`` on PATH lives."""
    versions = sorted((p for p in Path("/usr/lib/postgresql").glob("*/bin/postgres")),
                      key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    if versions:
        return versions[-1].parent
    return Path(os.path.realpath(binary("initdb"))).parent


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"<{exc}>"


def wait_for(check: Callable[[], bool], what: str, alive: Callable[[], bool], log: Path,
             timeout: float = START_TIMEOUT) -> None:
    """Poll ``check`` every 50 ms until it is true; fail when the process exits or in time."""
    deadline = time.monotonic() + timeout
    while not check():
        if not alive() or time.monotonic() > deadline:
            state = "exited" if not alive() else f"not ready after {timeout:.0f} s"
            raise StackError(f"{what} {state}; {log}:\n{tail(log)}")
        time.sleep(0.05)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    group: bool = False  # signal its whole process group (nginx: the master and workers)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if self.group:
                os.killpg(self.popen.pid, sig)
            else:
                self.popen.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """``sig``, up to STOP_TIMEOUT for it to exit, then SIGKILL; reaped."""
        if self.alive():
            self._signal(sig)
            try:
                self.popen.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.popen.wait()
        elif self.group:  # the leader is gone; its workers may not be
            self._signal(signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL, as a crash: no shutdown at all."""
        self._signal(signal.SIGKILL)
        self.popen.wait()


def as_postgres() -> dict[str, Any]:
    """PostgreSQL refuses to run as root: as root, run it as Debian's ``postgres`` user."""
    if os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam("postgres")
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def others_can_enter(path: Path) -> bool:
    return all(p.stat().st_mode & 0o001 for p in [path, *path.parents] if p.exists())
