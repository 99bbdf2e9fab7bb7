#!/usr/bin/env python3
"""The whole live-comments stack on one machine, as ordinary child processes: a private
PostgreSQL cluster, Redis, two Tidings nodes, two gunicorns (sync workers) and nginx in front.

    ./run                           # installs what is missing, then runs this file
    python3 stack.py [--port 8080] [--state DIR] [--free-ports]
    python3 stack.py vendor DIR     # only put centrifuge.js (from npm) into DIR

Nothing is installed as a service and nothing is started by name: each process is a child of
this one, stopped by its PID on Ctrl-C (SIGTERM, then SIGKILL). Data lives in the state dir
(default ``.state`` here): the PostgreSQL cluster, logs, static files, nginx's files. The
end-to-end test (tests/e2e/test_live_comments.py) starts the same ``Stack`` on free ports.

Everything the processes need to know about each other goes in environment variables, the
same names ``docker-compose.yml`` sets: ``LIVE_COMMENTS_*`` for Django, ``TIDINGS_*`` over
``tidings.json`` for the Tidings nodes.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import signal
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from centrifugejs import ensure_centrifuge_js
from stackprocs import (
    START_TIMEOUT,
    Proc,
    StackError,
    as_postgres,
    binary,
    free_port,
    http_ok,
    others_can_enter,
    pg_bindir,
    port_free,
    tail,
    wait_for,
)

__all__ = ["Ports", "Stack", "StackError", "ensure_centrifuge_js", "main"]

HERE = Path(__file__).resolve().parent
DATABASE = "live_comments"


@dataclass(frozen=True)
class Ports:
    """Every port of the stack, all on 127.0.0.1."""

    public: int = 8080  # nginx: the site, /static/, /connection/
    internal: int = 8090  # nginx: Tidings -> Django hooks, Django -> Tidings API
    postgres: int = 5433
    redis: int = 6380
    web: tuple[int, int] = (8101, 8102)  # gunicorn
    tidings: tuple[int, int] = (8201, 8202)

    @classmethod
    def free(cls, public: int = 0) -> Ports:
        return cls(public or free_port(), free_port(), free_port(), free_port(),
                   (free_port(), free_port()), (free_port(), free_port()))

    def all(self) -> list[int]:
        return [self.public, self.internal, self.postgres, self.redis, *self.web, *self.tidings]


# ----------------------------------------------------------------------------- processes


@dataclass
class Stack:
    """The stack's processes; ``start()`` brings them up in order, ``stop()`` ends them."""

    state: Path
    ports: Ports = field(default_factory=Ports)
    workers: int = 2  # sync workers per gunicorn
    python: str = sys.executable
    say: Callable[[str], None] = print
    procs: list[Proc] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.state = self.state.resolve()
        self.logs = self.state / "logs"
        self.pg_dir = self._pg_dir()

    # ------------------------------------------------------------------ addresses

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports.public}"

    @property
    def internal_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.internal}"

    @property
    def database_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.ports.postgres}/{DATABASE}"

    def tidings_url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.ports.tidings[i]}"

    def django_env(self) -> dict[str, str]:
        """The site's settings (livecomments/settings.py); docker-compose.yml sets the same."""
        return {
            "DJANGO_SETTINGS_MODULE": "livecomments.settings",
            "LIVE_COMMENTS_STATE_DIR": str(self.state),
            "LIVE_COMMENTS_DATABASE_URL": self.database_url,
            "LIVE_COMMENTS_REDIS_URL": f"redis://127.0.0.1:{self.ports.redis}/1",
            "LIVE_COMMENTS_TIDINGS_API_URL": f"{self.internal_url}/api",
            "LIVE_COMMENTS_STATIC_ROOT": str(self.state / "static"),
            "LIVE_COMMENTS_VENDOR_DIR": str(self.state / "vendor"),
        }

    def tidings_env(self, i: int) -> dict[str, str]:
        """What differs from ``tidings.json`` for node ``i``: its name, where Redis,
        PostgreSQL and the hooks are (the consumer list is replaced whole, so it is the
        file's with this stack's ``dsn``)."""
        consumers = json.loads((HERE / "tidings.json").read_text())["consumers"]
        for consumer in consumers:
            consumer["postgresql"]["dsn"] = self.database_url
        return {
            "TIDINGS_NODE_NAME": f"tidings{i + 1}",
            "TIDINGS_HTTP_SERVER_PORT": str(self.ports.tidings[i]),
            "TIDINGS_ENGINE_REDIS_ADDRESS": f"redis://127.0.0.1:{self.ports.redis}",
            "TIDINGS_CLIENT_PROXY_CONNECT_ENDPOINT": f"{self.internal_url}/tidings/connect",
            "TIDINGS_CHANNEL_PROXY_PUBLISH_ENDPOINT": f"{self.internal_url}/hooks/typing",
            "TIDINGS_CONSUMERS": json.dumps(consumers),
        }

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Stack:
        busy = [p for p in self.ports.all() if not port_free(p)]
        if busy:
            raise StackError(f"port(s) {busy} in use (another run?): stop it, or use "
                             "--free-ports")
        self.logs.mkdir(parents=True, exist_ok=True)
        try:
            ensure_centrifuge_js(self.state / "vendor")
            self._start_postgres()
            self._start_redis()
            self._manage("setup")  # migrate, collectstatic, seed
            self._start_apps()
            self._start_nginx()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Every process, the last started first (nginx, apps, Redis, PostgreSQL)."""
        while self.procs:
            proc = self.procs.pop()
            # PostgreSQL: SIGINT is its "fast" shutdown (sessions ended, data kept).
            proc.stop(signal.SIGINT if proc.name == "postgres" else signal.SIGTERM)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def proc(self, name: str) -> Proc:
        return next(p for p in self.procs if p.name == name)

    def kill(self, name: str) -> None:
        """SIGKILL one process (``tidings1``...), as a crash."""
        self.proc(name).kill()

    def dead(self) -> list[str]:
        return [p.name for p in self.procs if not p.alive()]

    # ------------------------------------------------------------------ the parts

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None,
               cwd: Path = HERE, group: bool = False, **kw: Any) -> Proc:
        log = self.logs / f"{name}.log"
        base = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        with log.open("ab") as out:
            # Each in a session of its own: Ctrl-C in the terminal reaches this process
            # only, which then stops them in order (the web tier before the databases).
            popen = subprocess.Popen(argv, cwd=cwd, env={**base, **(env or {})},
                                     stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True, **kw)
        proc = Proc(name, popen, log, group)
        self.procs.append(proc)
        return proc

    def _pg_dir(self) -> Path:
        """The cluster's directory: in the state dir, unless PostgreSQL (run as ``postgres``
        when we are root) could not enter it; then one of its own under the temp dir."""
        wanted = self.state / "postgres"
        if os.geteuid() != 0 or others_can_enter(
                self.state if self.state.exists() else self.state.parent):
            return wanted
        digest = hashlib.sha1(str(self.state).encode()).hexdigest()[:10]
        return Path(tempfile.gettempdir()) / f"live-comments-pg-{digest}"

    def _start_postgres(self) -> None:
        bindir, data, sock = pg_bindir(), self.pg_dir / "data", self.pg_dir / "sock"
        sock.mkdir(parents=True, exist_ok=True)
        as_pg = as_postgres()
        for path in (self.pg_dir, sock) if as_pg else ():
            os.chown(path, as_pg["user"], as_pg["group"])
        if not (data / "PG_VERSION").exists():
            self.say(f"postgres: creating a cluster in {data}")
            subprocess.run([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A",
                            "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
                           cwd=self.pg_dir, check=True, capture_output=True,
                           timeout=START_TIMEOUT, **as_pg)
        proc = self._spawn("postgres", [
            str(bindir / "postgres"), "-D", str(data), "-p", str(self.ports.postgres),
            "-k", str(sock), "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"],
            cwd=self.pg_dir, **as_pg)
        import psycopg  # installed with the site's dependencies

        admin = f"postgresql://postgres@127.0.0.1:{self.ports.postgres}/postgres"

        def ready() -> bool:
            try:
                with psycopg.connect(admin, connect_timeout=1, autocommit=True) as conn:
                    if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                        (DATABASE,)).fetchone():
                        conn.execute(f"CREATE DATABASE {DATABASE}")
                return True
            except psycopg.OperationalError:
                return False

        wait_for(ready, "postgres", proc.alive, proc.log)
        self.say(f"postgres: 127.0.0.1:{self.ports.postgres}, database {DATABASE}")

    def _start_redis(self) -> None:
        (self.state / "redis").mkdir(exist_ok=True)
        proc = self._spawn("redis", [
            binary("redis-server", "/usr/sbin"), "--port", str(self.ports.redis),
            "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--dir", str(self.state / "redis")])
        import redis

        def ready() -> bool:
            try:
                return bool(redis.Redis(port=self.ports.redis, socket_timeout=1).ping())
            except redis.RedisError:
                return False

        wait_for(ready, "redis-server", proc.alive, proc.log)
        self.say(f"redis: 127.0.0.1:{self.ports.redis}")

    def _manage(self, *args: str) -> None:
        log = self.logs / "manage.log"
        with log.open("ab") as out:
            result = subprocess.run([self.python, "manage.py", *args], cwd=HERE,
                                    env={**os.environ, **self.django_env()}, stdout=out,
                                    stderr=subprocess.STDOUT, timeout=5 * START_TIMEOUT)
        if result.returncode != 0:
            raise StackError(f"manage.py {' '.join(args)} failed; {log}:\n{tail(log)}")
        self.say(f"django: manage.py {' '.join(args)}")

    def _start_apps(self) -> None:
        """Both Tidings nodes and both gunicorns at once, then wait for each."""
        started = []
        for i, port in enumerate(self.ports.tidings):
            proc = self._spawn(f"tidings{i + 1}", [
                self.python, "-m", "tidings", "serve", "--config", str(HERE / "tidings.json")],
                self.tidings_env(i))
            started.append((proc, f"http://127.0.0.1:{port}/health"))
        for i, port in enumerate(self.ports.web):
            proc = self._spawn(f"gunicorn{i + 1}", [
                self.python, "-m", "gunicorn", "--worker-class", "sync", "--workers",
                str(self.workers), "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "5",
                "livecomments.wsgi"], self.django_env())
            started.append((proc, f"http://127.0.0.1:{port}/health"))
        for proc, url in started:
            wait_for(functools.partial(http_ok, url), proc.name, proc.alive, proc.log)
            self.say(f"{proc.name}: {url.removesuffix('/health')}")

    def nginx_conf(self) -> str:
        """``nginx.conf.template`` with this stack's addresses (the ``${LC_*}`` names; the
        official nginx image's envsubst fills the same ones in docker-compose.yml)."""
        text = (HERE / "nginx.conf.template").read_text()
        values = {
            "LC_LISTEN": f"127.0.0.1:{self.ports.public}",
            "LC_INTERNAL_LISTEN": f"127.0.0.1:{self.ports.internal}",
            "LC_WEB1": f"127.0.0.1:{self.ports.web[0]}",
            "LC_WEB2": f"127.0.0.1:{self.ports.web[1]}",
            "LC_TIDINGS1": f"127.0.0.1:{self.ports.tidings[0]}",
            "LC_TIDINGS2": f"127.0.0.1:{self.ports.tidings[1]}",
            "LC_STATIC_ROOT": str(self.state / "static"),
            "LC_RUN_DIR": str(self.state / "nginx"),
            "LC_LOG_DIR": str(self.logs),
        }
        rendered = string.Template(text).safe_substitute(values)
        if "${LC_" in rendered:
            raise StackError("nginx.conf.template names an unknown ${LC_...} variable")
        return rendered

    def _start_nginx(self) -> None:
        prefix = self.state / "nginx"
        prefix.mkdir(exist_ok=True)
        conf = prefix / "nginx.conf"
        conf.write_text(self.nginx_conf())
        # As root, nginx's workers would run as nobody, who may not read the state dir.
        globals_ = "daemon off;" + (" user root;" if os.geteuid() == 0 else "")
        proc = self._spawn("nginx", [binary("nginx", "/usr/sbin"), "-p", str(prefix), "-c",
                                     str(conf), "-e", "stderr", "-g", globals_], group=True)
        wait_for(lambda: http_ok(f"{self.url}/health"), "nginx", proc.alive, proc.log)
        self.say(f"nginx: {self.url} (internal: {self.internal_url})")


# ----------------------------------------------------------------------------- command line


def _watch(stack: Stack) -> int:
    """Until Ctrl-C (or SIGTERM): 0; or until a process exits by itself: 1."""
    stopping: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stopping.append(signum))
    while not stopping:
        dead = stack.dead()
        if dead:
            print(f"\n{', '.join(dead)} exited; see {stack.logs}", file=sys.stderr)
            return 1
        time.sleep(0.5)
    return 0


def _banner(stack: Stack) -> Iterator[str]:
    password = os.environ.get("LIVE_COMMENTS_DEMO_PASSWORD", "live-comments-demo")
    yield ""
    yield f"  Live comments is running: {stack.url}/"
    yield f"  Log in as alice or bob (password {password}), or sign up; open an article in"
    yield "  two browsers (or a private window) and comment."
    yield f"  Logs: {stack.logs}/    Ctrl-C stops everything."
    yield ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("command", nargs="?", default="run", choices=["run", "vendor"])
    parser.add_argument("dir", nargs="?", help="vendor: where centrifuge.js goes")
    parser.add_argument("--port", type=int, default=8080, help="the site's port (8080)")
    parser.add_argument("--state", type=Path, default=HERE / ".state",
                        help="data, logs and static files (default: .state here)")
    parser.add_argument("--free-ports", action="store_true",
                        help="pick free ports for the internal processes")
    parser.add_argument("--workers", type=int, default=2, help="sync workers per gunicorn")
    args = parser.parse_args(argv)
    if args.command == "vendor":
        print(ensure_centrifuge_js(Path(args.dir or HERE / ".state" / "vendor")))
        return 0
    ports = Ports.free(args.port) if args.free_ports else Ports(public=args.port)
    stack = Stack(args.state, ports, workers=args.workers)
    try:
        stack.start()
        print("\n".join(_banner(stack)), flush=True)
        return _watch(stack)
    except StackError as exc:
        print(f"live-comments: {exc}", file=sys.stderr)
        return 1
    finally:
        print("stopping...", file=sys.stderr)
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
