"""Helpers for scenario S7 (Redis engine, two Tidings nodes): a private redis-server, a
background load generator that only listens (the subscribers on the second node), and the
checks of the processes' logs.

run.py owns the scenario itself (it starts the nodes with its own ``Running``); this module
has no dependency on it. Every process started here is stopped by its PID, also on failure.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# Lines a healthy Tidings node writes at log_level "warning" (start and stop).
BENIGN_NODE_LINES = (
    re.compile(r"tidings listening on "),
    re.compile(r"shutting down \(timeout"),
    re.compile(r"\bstopped\s*$"),
)
# redis-server's start-up banner and the kernel-setting advice it always prints here.
BENIGN_REDIS_LINES = (
    re.compile(r"oO0OoO0OoO0Oo"),
    re.compile(r"Redis version="),
    re.compile(r"Configuration loaded"),
    re.compile(r"Server initialized"),
    re.compile(r"WARNING Memory overcommit must be enabled"),
    re.compile(r"WARNING overcommit_memory"),
    re.compile(r"WARNING you have Transparent Huge Pages"),
    re.compile(r"Received SIGTERM scheduling shutdown"),
    re.compile(r"User requested shutdown"),
    re.compile(r"Redis is now ready to exit"),
)


def notable_lines(text: str, benign: tuple[re.Pattern[str], ...]) -> list[str]:
    """The non-empty log lines that match none of the benign patterns."""
    return [line for line in text.splitlines()
            if line.strip() and not any(p.search(line) for p in benign)]


class RedisServer:
    """A redis-server of our own: free port, no persistence, its own temporary directory,
    pinned to ``core``; stopped by its PID (SIGTERM, then SIGKILL) in ``stop``."""

    def __init__(self, core: str, binary: str = "redis-server") -> None:
        exe = shutil.which(binary)
        if exe is None:
            raise RuntimeError(f"{binary} not found (Debian: apt-get install redis-server)")
        self.dir = Path(tempfile.mkdtemp(prefix="tidings-bench-redis-"))
        self.logfile = self.dir / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_text = ""
        for _attempt in range(5):  # the port may be taken between choosing and binding
            self.port = _free_port()
            self.proc = subprocess.Popen(
                ["taskset", "-c", core, exe, "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", str(self.dir),
                 "--logfile", str(self.logfile), "--loglevel", "warning",
                 "--daemonize", "no"],
                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
            if self._wait_ready(10.0):
                return
            self._kill()
        self.stop()
        raise RuntimeError(f"redis-server did not start; log:\n{self._read_log()[-2000:]}")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            with contextlib.suppress(OSError):
                if self.command("PING") == b"+PONG":
                    return True
            time.sleep(0.05)
        return False

    def command(self, *args: str, timeout: float = 5.0) -> bytes:
        """One command over a fresh connection; returns the reply's raw bytes (simple
        replies and bulk strings only, which is all this module asks for)."""
        req = f"*{len(args)}\r\n".encode()
        for a in args:
            b = a.encode()
            req += b"$%d\r\n%s\r\n" % (len(b), b)
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            s.sendall(req)
            buf = b""
            while b"\r\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    raise OSError("redis closed the connection")
                buf += chunk
            head, _, rest = buf.partition(b"\r\n")
            if head[:1] != b"$":
                return head
            size = int(head[1:])
            while len(rest) < size + 2:
                chunk = s.recv(65536)
                if not chunk:
                    raise OSError("redis closed the connection")
                rest += chunk
            return rest[:size]

    def info(self) -> dict[str, str]:
        text = self.command("INFO", "everything").decode(errors="replace")
        out: dict[str, str] = {}
        for line in text.splitlines():
            key, sep, value = line.partition(":")
            if sep and not line.startswith("#"):
                out[key] = value.strip()
        return out

    def cpu_seconds(self) -> float:
        info = self.info()
        return float(info.get("used_cpu_user", 0)) + float(info.get("used_cpu_sys", 0))

    def flushall(self) -> None:
        reply = self.command("FLUSHALL")
        if reply != b"+OK":
            raise RuntimeError(f"FLUSHALL answered {reply!r}")

    def _read_log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""

    def _kill(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)  # by PID: only the server we started
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop(self) -> str:
        """Stop the server, delete its directory; returns its log."""
        self._kill()
        self.log_text = self._read_log()
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.log_text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


_PROGRESS = re.compile(r"\]\s+(\w+)\s+started=(\d+) open=(\d+) sub=(\d+) .* recv=(\d+)")


class Listener:
    """A load generator started in the background with ``--idle``: its connections subscribe
    and count what arrives, it publishes nothing. Its progress lines (stderr, one a second)
    tell when every connection is subscribed and how many messages have arrived so far; on
    ``finish`` it is stopped with SIGTERM, upon which it prints its JSON result."""

    def __init__(self, argv: list[str], conns: int) -> None:
        self.conns = conns
        self.phase = "connect"
        self.sub = 0
        self.recv = 0
        self.stderr_tail: list[str] = []
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True)
        self._stdout = ""
        self._threads = [threading.Thread(target=self._read_stderr, daemon=True),
                         threading.Thread(target=self._read_stdout, daemon=True)]
        for t in self._threads:
            t.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            m = _PROGRESS.search(line)
            with self._changed:
                if m:
                    self.phase, self.sub, self.recv = m[1], int(m[4]), int(m[5])
                else:
                    self.stderr_tail = [*self.stderr_tail[-20:], line.rstrip()]
                self._changed.notify_all()
        with self._changed:
            self.phase = "exited"
            self._changed.notify_all()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        self._stdout = self.proc.stdout.read()

    def wait_subscribed(self, timeout: float) -> None:
        """Return once the generator left its connect phase with every connection subscribed
        (it then idles); raise if it did not get there."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.phase == "connect":
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"listener not subscribed within {timeout}s "
                                       f"({self.sub}/{self.conns})")
                self._changed.wait(left)
            if self.phase != "idle" or self.sub != self.conns:
                raise RuntimeError(f"listener: phase {self.phase}, {self.sub}/{self.conns} "
                                   f"subscribed; {' | '.join(self.stderr_tail[-3:])}")

    def wait_received(self, n: int, timeout: float) -> None:
        """Wait (bounded) until the progress lines report ``n`` messages received."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.recv < n and self.phase == "idle":
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._changed.wait(left)

    def finish(self) -> dict[str, Any]:
        """SIGTERM (the generator prints its JSON and exits), then parse the result."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for t in self._threads:
            t.join(5)
        try:
            result: dict[str, Any] = json.loads(self._stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            raise RuntimeError("listener loadgen failed: "
                               + " | ".join(self.stderr_tail[-5:])) from None
        return result

    def kill(self) -> None:
        """Stop it without caring for its result (the failure path)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
