"""Real web-framework backends answering Tidings' hooks through ``tidings.hooks``, each in a
process of its own on 127.0.0.1:

- ``djangoapp``: a minimal Django project (signed-cookie sessions, no database) on gunicorn;
- ``flaskapp``: a Flask app on gunicorn;
- ``fastapiapp``: a FastAPI app on uvicorn.

``start_django(log_dir)`` (and ``start_flask``, ``start_fastapi``) starts one on a free port and
waits until ``GET /health`` answers 200; ``BackendProcess.stop()`` ends it by its PID. Output
goes to ``<log_dir>/<name>.log``, whose tail is in every error. All waits are bounded and
scaled by ``TIDINGS_TESTS_TIMEOUT_FACTOR`` (tests/support/timing.py).
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tests.support.redisproc import free_port
from tests.support.timing import TIMEOUT_FACTOR

__all__ = ["BackendProcess", "start_asgi_mount", "start_backend", "start_django", "start_fastapi",
           "start_flask"]

REPO_ROOT = Path(__file__).resolve().parents[3]
START_TIMEOUT = 15.0 * TIMEOUT_FACTOR
STOP_TIMEOUT = 10.0 * TIMEOUT_FACTOR
GRACE = 2  # seconds gunicorn/uvicorn give open requests at shutdown (below STOP_TIMEOUT)
POLL_INTERVAL = 0.05


@dataclass
class BackendProcess:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    log_file: IO[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 40) -> str:
        self.log_file.flush()
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """End the process (``sig``, then SIGKILL after ``STOP_TIMEOUT``); its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()
        return self.proc.returncode


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            ok: bool = resp.status == 200 and resp.read() == b"ok"
            return ok
    except (OSError, http.client.HTTPException):  # not up yet (URLError is an OSError)
        return False


def start_backend(name: str, cmd: list[str], port: int, log_dir: Path,
                  env_vars: dict[str, str] | None = None) -> BackendProcess:
    """Run ``cmd`` (from the repository root, so ``tests.support.webapps`` imports) and wait
    until ``GET /health`` on ``port`` answers ``ok``; raise with the log's tail if the process
    exits or does not answer within ``START_TIMEOUT``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(env_vars or {})
    log_path = log_dir / f"{name}-{time.monotonic_ns()}.log"
    log_file = log_path.open("wb")
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log_file,
                            stderr=subprocess.STDOUT)
    backend = BackendProcess(name, proc, port, log_path, log_file)
    deadline = time.monotonic() + START_TIMEOUT
    while proc.poll() is None and time.monotonic() < deadline:
        if _answers(f"{backend.url}/health"):
            return backend
        time.sleep(POLL_INTERVAL)
    exited = proc.poll()
    backend.stop(signal.SIGKILL)
    state = f"exited with {exited}" if exited is not None else "did not answer in time"
    raise RuntimeError(f"{name} backend {state}:\n{backend.log_tail()}")


def _gunicorn(app: str, port: int) -> list[str]:
    return [sys.executable, "-m", "gunicorn", "--worker-class", "sync", "--workers", "2",
            "--bind", f"127.0.0.1:{port}", "--graceful-timeout", str(GRACE), app]


def start_django(log_dir: Path) -> BackendProcess:
    """The Django project (``djangoapp``) on gunicorn, two sync workers."""
    port = free_port()
    return start_backend(
        "django", _gunicorn("tests.support.webapps.djangoapp.wsgi:application", port), port,
        log_dir, {"DJANGO_SETTINGS_MODULE": "tests.support.webapps.djangoapp.settings"},
    )


def start_flask(log_dir: Path) -> BackendProcess:
    """The Flask app (``flaskapp``) on gunicorn, two sync workers."""
    port = free_port()
    return start_backend("flask", _gunicorn("tests.support.webapps.flaskapp:app", port), port,
                         log_dir)


def start_fastapi(log_dir: Path) -> BackendProcess:
    """The FastAPI app (``fastapiapp``) on uvicorn."""
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port),
           "--timeout-graceful-shutdown", str(GRACE), "tests.support.webapps.fastapiapp:app"]
    return start_backend("fastapi", cmd, port, log_dir)


def start_asgi_mount(log_dir: Path, config: Path) -> BackendProcess:
    """FastAPI with Tidings mounted at ``/rt`` (``asgimount``) on uvicorn; ``config``: the
    node's JSON config file."""
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port),
           "--timeout-graceful-shutdown", str(GRACE), "tests.support.webapps.asgimount:app"]
    return start_backend("asgi-mount", cmd, port, log_dir, {"ASGI_MOUNT_CONFIG": str(config)})
