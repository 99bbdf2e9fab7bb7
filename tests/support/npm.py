"""The pinned npm packages of ``tests/e2e/node`` (the Node and browser tests): installed with
``npm ci`` when missing (``scripts/test`` already runs it; this covers running one test file
directly)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tests.support.timing import TIMEOUT_FACTOR, T

__all__ = ["E2E_PACKAGES", "NODE_DIR", "NodeRun", "ensure_node_modules", "run_node_script"]

NODE_DIR = Path(__file__).parents[1] / "e2e" / "node"
# What the e2e tests load: the SDK and, under Node, its WebSocket, EventSource and SockJS
# transports; playwright-core drives Chromium for the browser tests.
E2E_PACKAGES = ("centrifuge", "ws", "eventsource", "sockjs-client", "playwright-core")
_lock = threading.Lock()


def ensure_node_modules(*packages: str) -> None:
    """Run ``npm ci`` once if any of ``packages`` is not installed."""
    with _lock:
        modules = NODE_DIR / "node_modules"
        if all((modules / name / "package.json").is_file() for name in packages):
            return
        npm = shutil.which("npm")
        assert npm is not None, "npm is required for the e2e tests"
        proc = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR, capture_output=True, text=True, timeout=300, check=False,
        )
        assert proc.returncode == 0, f"npm ci failed:\n{proc.stdout}\n{proc.stderr}"


NODE_TIMEOUT_MS = int(15000 * TIMEOUT_FACTOR)  # what a script is given (its --timeout-ms)


class NodeRun:
    """A Node script's one JSON line (``out``), exit status and the text for a failure."""

    def __init__(self, out: dict[str, Any], returncode: int | None, diag: str) -> None:
        self.out = out
        self.returncode = returncode
        self.diag = diag


async def run_node_script(script: Path, args: list[str], log_tail: Callable[[], str], *,
                          env: Mapping[str, str] | None = None) -> NodeRun:
    """Run ``node script args... --timeout-ms N`` from ``NODE_DIR`` without blocking the loop
    (the test's own servers answer meanwhile), killing it past its timeout; it must print
    exactly one JSON line. ``log_tail`` gives the server's log for the failure text."""
    node = shutil.which("node")
    assert node is not None, "node is required for the Node e2e tests"
    proc = await asyncio.create_subprocess_exec(
        node, str(script), *args, "--timeout-ms", str(NODE_TIMEOUT_MS), cwd=NODE_DIR,
        env=None if env is None else dict(env),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), NODE_TIMEOUT_MS / 1000 + T)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    lines = [ln for ln in stdout.decode().splitlines() if ln.startswith("{")]
    diag = (f"exit={proc.returncode}\nstdout:\n{stdout.decode()}\nstderr:\n{stderr.decode()}\n"
            f"server log (tail):\n{log_tail()}")
    assert len(lines) == 1, f"expected exactly one JSON line\n{diag}"
    return NodeRun(json.loads(lines[0]), proc.returncode, diag)
