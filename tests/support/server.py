"""A real ``tidings serve`` subprocess on a free port, and the config and tokens it is started
with.

``start_server(tmp_path, config)`` writes the config to a temp file, starts ``python -m tidings
serve --config FILE --port 0`` and waits for the "listening" line the server prints with the
bound port; ``ServerProcess.stop()`` ends it (by its PID). The ``tidings_server`` and ``server``
fixtures (tests/conftest.py) stop every server a test started.
"""

from __future__ import annotations

import copy
import json
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt

from tests.support.timing import TIMEOUT_FACTOR

SECRET = "secret"
API_KEY = "api_key"

BASE_CONFIG: dict[str, Any] = {
    "client": {
        "token": {"hmac_secret_key": SECRET},
        "ping_interval": "25s",
        "pong_timeout": "8s",
    },
    "http_api": {"key": API_KEY},
    "channel": {
        "without_namespace": {
            "presence": True,
            "join_leave": True,
            "force_push_join_leave": True,
            "history_size": 100,
            "history_ttl": "300s",
            "force_recovery": True,
            "allow_subscribe_for_client": True,
            "allow_subscribe_for_anonymous": True,
            "allow_publish_for_subscriber": True,
            "allow_publish_for_client": True,
            "allow_publish_for_anonymous": True,
            "allow_presence_for_subscriber": True,
            "allow_presence_for_anonymous": True,
            "allow_history_for_subscriber": True,
            "allow_history_for_anonymous": True,
        },
        "namespaces": [
            {
                "name": "smallhistory",
                "history_size": 2,
                "history_ttl": "300s",
                "force_recovery": True,
                "allow_subscribe_for_client": True,
                "allow_subscribe_for_anonymous": True,
            },
            {
                "name": "private",
                "presence": True,
            },
        ],
    },
}


def make_token(sub: str = "42", *, secret: str = SECRET, **claims: Any) -> str:
    """An HS256 connection (or, with ``channel=...``, subscription) JWT."""
    payload: dict[str, Any] = {"sub": sub, **claims}
    return jwt.encode(payload, secret, algorithm="HS256")


def unique(name: str) -> str:
    """``name`` with a random suffix: a channel, user or key prefix no other test uses."""
    return f"{name}-{uuid.uuid4().hex[:10]}"


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass
class ServerProcess:
    proc: subprocess.Popen[str]
    host: str
    port: int
    config: dict[str, Any]
    log_lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None
    changed: threading.Condition = field(default_factory=threading.Condition)
    internal: str = ""  # HOST:PORT of the internal listener (http_server.internal_port)

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def internal_url(self) -> str:
        """The internal listener (/metrics, /health, /ready, the API unless external)."""
        assert self.internal, "started without http_server.internal_port/internal_address"
        return f"http://{self.internal}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/connection/websocket"

    @property
    def api_url(self) -> str:
        return f"{self.http_url}/api"

    @property
    def api_key(self) -> str:
        return str(self.config.get("http_api", {}).get("key", ""))

    def log_text(self) -> str:
        return "".join(self.log_lines)

    def wait_log(self, *texts: str, timeout: float = 10.0) -> bool:
        """Block until one of ``texts`` (case-insensitive) shows up in the server's output; the
        reader thread signals each new line. False after ``timeout`` seconds."""
        wanted = [t.lower() for t in texts]

        def seen() -> bool:
            log = self.log_text().lower()
            return any(t in log for t in wanted)

        with self.changed:
            return self.changed.wait_for(seen, timeout * TIMEOUT_FACTOR)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout * TIMEOUT_FACTOR)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.reader is not None:
            self.reader.join(timeout=5)
        if self.proc.stdout is not None and not self.proc.stdout.closed:
            self.proc.stdout.close()
        return self.proc.returncode


# The ``tidings_server`` fixture: ``tidings_server(overrides)`` or ``tidings_server(config=...)``
# starts a server (tests/conftest.py).
ServerFactory = Callable[..., "ServerProcess"]


def start_server(
    tmp_path: Path,
    config: dict[str, Any],
    *,
    extra_args: list[str] | None = None,
    env_vars: dict[str, str] | None = None,
    soft_nofile: int | None = None,
    program: list[str] | None = None,
) -> ServerProcess:
    """Start ``tidings serve`` with ``config``; ``soft_nofile`` lowers the process's soft
    RLIMIT_NOFILE before it starts (as a default 1,024 would be); ``program`` is the command
    before ``serve`` (default ``python -m tidings`` of this interpreter; an installed
    ``tidings`` script in tests/integration/test_wheel.py)."""
    cfg_path = tmp_path / f"tidings-{time.monotonic_ns()}.json"
    cfg_path.write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(env_vars or {})
    cmd = [*(program or [sys.executable, "-m", "tidings"]),
           "serve", "--config", str(cfg_path), "--port", "0"]
    cmd += extra_args or []

    def lower_nofile() -> None:
        if soft_nofile is not None:
            _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft_nofile, hard))

    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        preexec_fn=lower_nofile if soft_nofile is not None else None,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    internal = ""
    deadline = time.monotonic() + 15 * TIMEOUT_FACTOR
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        # "tidings internal listener on http://HOST:PORT" comes first, when there is one
        if m := re.search(r"internal listener on http://([^\s\",/]+:\d+)", line):
            internal = m.group(1)
        # "tidings listening on http://HOST:PORT", in a text line or a JSON one (log.format)
        if m := re.search(r"listening on http://([^\s\",/]+):(\d+)", line):
            host, port = m.group(1), m.group(2)
            server = ServerProcess(proc, host, int(port), config, lines, internal=internal)
            _drain_in_background(server)
            return server
    proc.kill()
    proc.wait()
    raise RuntimeError("tidings serve did not start:\n" + "".join(lines))


def _drain_in_background(server: ServerProcess) -> None:
    def pump() -> None:
        assert server.proc.stdout is not None
        for line in server.proc.stdout:
            with server.changed:
                server.log_lines.append(line)
                server.changed.notify_all()

    server.reader = threading.Thread(target=pump, daemon=True)
    server.reader.start()
