"""The example web apps of the docs (examples/django_app, examples/flask_app) served for tests:
a fresh database on the test run's PostgreSQL, users alice and bob, the app on gunicorn (two
workers) beside a Tidings the test runs in process (the test kit's ``LiveServer``), and the
Node script that runs the pages' ``live.js`` with the real centrifuge-js."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.livesite import Site
from tests.support.npm import E2E_PACKAGES, NODE_DIR, ensure_node_modules, run_node_script
from tests.support.redisproc import free_port
from tests.support.timing import TIMEOUT_FACTOR
from tests.support.webapps import REPO_ROOT, BackendProcess, start_backend
from tidings.testing import LiveServer, test_config

__all__ = ["DJANGO_EXAMPLE", "FLASK_EXAMPLE", "PASSWORD", "kit_config", "login",
           "run_live_page", "start_django_example", "start_flask_example"]

DJANGO_EXAMPLE = REPO_ROOT / "examples" / "django_app"
FLASK_EXAMPLE = REPO_ROOT / "examples" / "flask_app"
PASSWORD = "example-password-0123"
LIVE_PAGE = NODE_DIR / "live_page.mjs"


def kit_config(outbox_dsn: str = "") -> dict[str, Any]:
    """The kit's config plus the examples' ``notes`` namespace (subscription tokens only)
    and, with ``outbox_dsn``, the consumer of the Django example's outbox table."""
    config = test_config()
    config["channel"]["namespaces"] = [{"name": "notes", "history_size": 10,
                                        "history_ttl": "60s"}]
    if outbox_dsn:
        config["consumers"] = [{
            "name": "comments_outbox", "enabled": True, "type": "postgresql",
            "postgresql": {"dsn": outbox_dsn, "outbox_table_name": "centrifugo_outbox",
                           "partition_poll_interval": "300ms",
                           "partition_notification_channel": "centrifugo_partition_change"}}]
    return config


def shared_config(live: LiveServer, path: Path) -> Path:
    """The config file the app reads its keys from (as ``tidings serve`` would)."""
    path.write_text(json.dumps({"client": {"token": {"hmac_secret_key": live.token_key}},
                                "http_api": {"key": live.api_key}}))
    return path


def _run(cwd: Path, env: dict[str, str], *argv: str) -> None:
    done = subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120 * TIMEOUT_FACTOR, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def _gunicorn(chdir: Path, port: int, app: str) -> list[str]:
    return [sys.executable, "-m", "gunicorn", "--chdir", str(chdir), "--workers", "2",
            "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "2", app]


def _env(env_vars: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")} | env_vars


def start_django_example(name: str, tmp: Path, live: LiveServer, dsn: str, *,
                         migrate: bool = True, **extra_env: str) -> BackendProcess:
    """Migrate a fresh database and add alice and bob (unless ``migrate=False``: a second
    app on the same database), serve the Django example."""
    env_vars = {"DATABASE_URL": dsn, "DJANGO_SETTINGS_MODULE": "mysite.settings",
                "COMMENTS_TIDINGS_CONFIG": str(shared_config(live, tmp / "tidings.json")),
                "COMMENTS_TIDINGS_API_URL": live.api_url, **extra_env}
    env = _env(env_vars)
    if migrate:
        _run(DJANGO_EXAMPLE, env, "manage.py", "migrate", "--noinput")
        _run(DJANGO_EXAMPLE, env, "manage.py", "shell", "-c",
             "from django.contrib.auth.models import User\n"
             f"for n in ('alice', 'bob'): User.objects.create_user(n, password={PASSWORD!r})")
    port = free_port()
    return start_backend(name, _gunicorn(DJANGO_EXAMPLE, port, "mysite.wsgi:application"),
                         port, tmp, env_vars)


def start_flask_example(name: str, tmp: Path, live: LiveServer, dsn: str) -> BackendProcess:
    """Create the tables, add alice and bob (``flask add-users``), serve the Flask example."""
    env_vars = {"DATABASE_URL": dsn, "FLASK_APP": "app",
                "COMMENTS_TIDINGS_CONFIG": str(shared_config(live, tmp / "tidings.json")),
                "COMMENTS_TIDINGS_API_URL": live.api_url}
    env = _env(env_vars)
    _run(FLASK_EXAMPLE, env, "-m", "flask", "add-users", "--password", PASSWORD, "alice", "bob")
    port = free_port()
    return start_backend(name, _gunicorn(FLASK_EXAMPLE, port, "app:app"), port, tmp,
                         env_vars)


async def login(backend: BackendProcess, user: str, *, path: str) -> Site:
    """A browser session logged in through the app's login form at ``path``."""
    site = Site(backend.url)
    csrf_from = path if "django" in backend.name else ""
    status = await site.post(path, {"username": user, "password": PASSWORD},
                             csrf_from=csrf_from)
    assert status in (302, 303), f"login failed ({status}):\n{backend.log_tail()}"
    return site


async def run_live_page(backend: BackendProcess, site: Site) -> dict[str, Any]:
    """Run ``live_page.mjs`` as ``site``'s logged-in browser; the one JSON line it printed."""
    await asyncio.to_thread(ensure_node_modules, *E2E_PACKAGES)
    run = await run_node_script(
        LIVE_PAGE, ["--site-url", backend.url, "--cookie", site.cookie_header()],
        backend.log_tail)
    out = run.out
    assert out["ok"] is True and run.returncode == 0, f"script failed\n{run.diag}"
    return out
