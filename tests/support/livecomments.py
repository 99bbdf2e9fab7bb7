"""The live-comments example (examples/live-comments) for tests: the example's own ``stack.py``
(the one command's start logic) brings up PostgreSQL, Redis, two Tidings nodes, two gunicorns
and nginx on free ports in a temp dir; helpers log a browser page in and reach each node's API.

    with running_stack(tmp) as stack:
        stack.url                       # nginx: the site
        node_api(stack, 0)              # Tidings node 1's own API (ApiEndpoint)

The pages load centrifuge.js from the pinned tests/e2e/node package (``stack`` copies it;
nothing is downloaded). Every process is ended by its PID when the block ends; those not
reaped yet are killed at interpreter exit like every server the tests start
(tests/support/procs.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.api import ApiEndpoint, api_result
from tests.support.browser import BrowserPage
from tests.support.npm import NODE_DIR, ensure_node_modules
from tests.support.procs import LIVE
from tests.support.timing import T
from tests.support.webapps import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "live-comments"
if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))

from stack import Ports, Stack  # noqa: E402  (examples/live-comments/stack.py)

__all__ = ["EXAMPLE", "PASSWORD", "Stack", "log_in", "node_api", "node_clients",
           "running_stack"]

PASSWORD = "live-comments-demo"  # the seed command's demo users: alice, bob
CENTRIFUGE_JS = NODE_DIR / "node_modules" / "centrifuge" / "dist" / "centrifuge.js"
log = logging.getLogger("tests.livecomments")


@contextlib.contextmanager
def running_stack(tmp: Path) -> Iterator[Stack]:
    """The whole stack, started by the example's ``Stack`` on free ports under ``tmp``."""
    ensure_node_modules("centrifuge")
    stack = Stack(tmp / "state", Ports.free(), say=log.info)
    (stack.state / "vendor").mkdir(parents=True)
    shutil.copy(CENTRIFUGE_JS, stack.state / "vendor" / "centrifuge.js")  # the pinned one
    try:
        stack.start()
        LIVE.update(proc.popen for proc in stack.procs)
        yield stack
    finally:
        procs = [proc.popen for proc in stack.procs]
        stack.stop()
        LIVE.difference_update(procs)
        if not stack.pg_dir.is_relative_to(stack.state):  # root: a dir of its own
            shutil.rmtree(stack.pg_dir, ignore_errors=True)


def node_api(stack: Stack, i: int) -> ApiEndpoint:
    """Tidings node ``i``'s own API (not through nginx), with the example's key."""
    key = json.loads((EXAMPLE / "tidings.json").read_text())["http_api"]["key"]
    return ApiEndpoint(f"{stack.tidings_url(i)}/api", key)


async def node_clients(stack: Stack, i: int) -> int:
    """How many clients node ``i`` holds now (its own count in its ``info``)."""
    name = f"tidings{i + 1}"
    info: dict[str, Any] = await api_result(node_api(stack, i), "info", {})
    return int(next(n for n in info["nodes"] if n["name"] == name).get("num_clients", 0))


async def log_in(page: BrowserPage, stack: Stack, user: str, next_path: str) -> None:
    """Log ``user`` in through the site's login form and land on ``next_path``."""
    await page.goto(f"{stack.url}/accounts/login/?next={next_path}")
    await page.fill("#id_username", user)
    await page.fill("#id_password", PASSWORD)
    await page.click("#login-submit")
    await page.wait("(path) => location.pathname === path", next_path, within=3 * T)
