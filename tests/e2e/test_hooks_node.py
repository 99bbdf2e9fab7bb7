"""End to end: the real centrifuge-js client (npm ``centrifuge``) under Node calls RPCs that
Tidings hands to a hook_backend's rpc hook over HTTP (``HookBackend``, aiohttp in the test process).

The Node side is ``tests/e2e/node/hooks_rpc.mjs``; it prints one JSON line with what it saw.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.support.hookapp import HookBackend, hook_config
from tests.support.npm import NODE_DIR, run_node_script
from tests.support.server import ServerFactory, ServerProcess, make_token

SCRIPT = NODE_DIR / "hooks_rpc.mjs"


@pytest.fixture
def hooked(tidings_server: ServerFactory, hook_backend: HookBackend) -> ServerProcess:
    """A server with every hook wired to the hook_backend over HTTP."""
    return tidings_server(hook_config(hook_backend.endpoint))


async def _run_node(server: ServerProcess, token: str) -> dict[str, Any]:
    """Run the script; the hook_backend answers the hooks on this loop meanwhile, so the process is
    awaited, not waited for."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_E2E_")}
    run = await run_node_script(SCRIPT, ["--ws-url", server.ws_url, "--token", token],
                                lambda: server.log_text()[-4000:], env=env)
    out = run.out
    assert out["ok"] is True, f"script failed: {out.get('error')}\n{run.diag}"
    assert run.returncode == 0, run.diag
    return out


async def test_node_client_rpc_through_the_hook(hooked: ServerProcess,
                                                hook_backend: HookBackend) -> None:
    out = await _run_node(hooked, make_token("42"))
    assert out["sum"] == {"sum": 9}
    assert out["refused"] == {"code": 104, "message": "method not found", "temporary": False}
    assert "refusedData" not in out
    assert hook_backend.calls["rpc"] == 2
    assert hook_backend.calls["connect"] == 0  # a token connect never asks the connect hook
