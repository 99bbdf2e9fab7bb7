"""The pinned npm packages of ``tests/e2e/node`` (the Node and browser tests): installed with
``npm ci`` when missing (``scripts/test`` already runs it; this covers running one test file
directly)."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

__all__ = ["E2E_PACKAGES", "NODE_DIR", "ensure_node_modules"]

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
