"""Server processes the tests start themselves (redis-server, prometheus): every one is ended
by its own ``Popen`` handle (its PID), and any not reaped yet is killed at interpreter exit,
so an aborted run (a failing fixture, Ctrl-C) never leaves one behind."""

from __future__ import annotations

import atexit
import contextlib
import pwd
import signal
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["LIVE", "spawn", "stop_process"]

LIVE: set[subprocess.Popen[bytes]] = set()  # started and not reaped yet


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(LIVE):
        with contextlib.suppress(OSError):
            proc.kill()
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        LIVE.discard(proc)


def spawn(argv: list[str], cwd: Path, log: Path,
          user: str | None = None) -> subprocess.Popen[bytes]:
    """Start ``argv`` in ``cwd``, its output appended to ``log``; known to ``LIVE`` until
    stopped. ``user``: run as that user (and its group, no other groups), for servers that
    refuse to run as root (PostgreSQL)."""
    as_user: dict[str, Any] = {}
    if user is not None:
        as_user = {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, **as_user)
    LIVE.add(proc)
    return proc


def stop_process(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL; reaped and forgotten either way."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
    LIVE.discard(proc)
