"""A real Prometheus for tests: Debian's ``prometheus`` package (2.42), started as the test's own
process.

The server gets a config of its own (scraping the given targets every second), its own TSDB
directory under the caller's temp dir, and a free port on 127.0.0.1; it is ended by its own
``Popen`` handle (its PID), never by name. The API is synchronous and blocks only briefly
(from an async test, call it through ``asyncio.to_thread``)::

    with PrometheusServer(tmp_path, targets=["127.0.0.1:8000"]) as prom:
        prom.wait_targets_up()
        prom.query("sum(centrifugo_node_num_clients)")  # [{"metric": {}, "value": [t, "1"]}]

Waits are bounded and scaled by ``TIDINGS_TESTS_TIMEOUT_FACTOR`` (tests/support/timing.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests.support.procs import spawn, stop_process
from tests.support.redisproc import free_port
from tests.support.timing import TIMEOUT_FACTOR

__all__ = ["PROMETHEUS", "PrometheusError", "PrometheusServer"]

PROMETHEUS = "/usr/bin/prometheus"
START_TIMEOUT = 15.0 * TIMEOUT_FACTOR
STOP_TIMEOUT = 10.0 * TIMEOUT_FACTOR
POLL_INTERVAL = 0.1

Json = dict[str, Any]



class PrometheusError(RuntimeError):
    """Prometheus did not start or reach the expected state in time, or refused a query."""


def _poll(check: Callable[[], bool], timeout: float, alive: Callable[[], bool]) -> bool:
    """``check`` every ``POLL_INTERVAL`` until True (-> True), the process exits or ``timeout``
    passes (-> False)."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if not alive() or time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL)


class PrometheusServer:
    """``prometheus`` scraping ``targets`` (``HOST:PORT``) at ``metrics_path`` every
    ``scrape_interval``, in the directory ``tmp_dir/name`` (config, TSDB, log)."""

    def __init__(
        self,
        tmp_dir: Path,
        *,
        targets: list[str],
        metrics_path: str = "/metrics",
        scrape_interval: str = "1s",
        name: str = "prometheus",
    ) -> None:
        self.workdir = Path(tmp_dir) / name
        self.targets = list(targets)
        self.metrics_path = metrics_path
        self.scrape_interval = scrape_interval
        self.config_file = self.workdir / "prometheus.yml"
        self.logfile = self.workdir / "prometheus.log"
        self._port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    # -- public -----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._port == 0:
            raise PrometheusError("prometheus: not started yet, no port chosen")
        return f"http://127.0.0.1:{self._port}"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise PrometheusError("prometheus: not running")
        return self._proc.pid

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        if self.alive():
            raise PrometheusError(f"prometheus: already running (pid {self.pid})")
        if not os.access(PROMETHEUS, os.X_OK):
            raise PrometheusError(
                f"{PROMETHEUS} not found: install Debian's prometheus (scripts/test does)")
        self._port = free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        argv = [
            PROMETHEUS,
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self._port}",
        ]
        self._proc = spawn(argv, self.workdir, self.logfile)
        try:
            if not _poll(self._ready, START_TIMEOUT, self.alive):
                raise PrometheusError(self.describe_failure("did not become ready"))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """SIGTERM, wait up to ``STOP_TIMEOUT``, then SIGKILL. No-op when not running."""
        proc = self._proc
        if proc is None:
            return
        stop_process(proc, STOP_TIMEOUT)
        self._proc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/<path>`` with ``params``; its ``data`` (``PrometheusError`` with
        Prometheus' own message when it answers ``"status": "error"``)."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=5 * TIMEOUT_FACTOR) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as exc:  # 400/422/503 carry the error as JSON
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: "
                                  f"{body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[Json]:
        """An instant query: the vector's elements (``metric`` labels and ``value``)."""
        data = self.api("query", query=expr)
        if data["resultType"] != "vector":
            raise PrometheusError(f"{expr!r}: a {data['resultType']}, not a vector")
        result: list[Json] = data["result"]
        return result

    def label_values(self, label: str, match: str) -> list[str]:
        """What Grafana's ``label_values(match, label)`` lists."""
        values: list[str] = self.api(f"label/{label}/values", **{"match[]": match})
        return values

    def active_targets(self) -> list[Json]:
        targets: list[Json] = self.api("targets", state="active")["activeTargets"]
        return targets

    def wait_targets_up(self, timeout: float = START_TIMEOUT) -> None:
        """Until every target has been scraped successfully (its health ``up``)."""
        def all_up() -> bool:
            targets = self.active_targets()
            return len(targets) == len(self.targets) and all(
                t["health"] == "up" for t in targets)

        if not _poll(all_up, timeout, self.alive):
            raise PrometheusError(self.describe_failure(
                f"did not scrape its targets: {json.dumps(self.active_targets())}"))

    def describe_failure(self, what: str) -> str:
        proc = self._proc
        state = ("running" if proc is not None and proc.poll() is None
                 else f"exited with {proc.returncode}" if proc is not None else "not started")
        try:
            tail = "\n".join(self.logfile.read_text(errors="replace").splitlines()[-30:])
        except OSError as exc:
            tail = f"<cannot read {self.logfile}: {exc}>"
        return (f"prometheus on 127.0.0.1:{self._port} {what} ({state}); dir {self.workdir}\n"
                f"--- {self.logfile.name} (tail) ---\n{tail}")

    # -- internals --------------------------------------------------------------------------------

    def _write_config(self) -> None:
        # JSON is YAML: no YAML writer needed.
        config = {
            "global": {"scrape_interval": self.scrape_interval,
                       "scrape_timeout": self.scrape_interval,
                       "evaluation_interval": self.scrape_interval},
            "scrape_configs": [{
                "job_name": "tidings",
                "metrics_path": self.metrics_path,
                "static_configs": [{"targets": self.targets}],
            }],
        }
        self.config_file.write_text(json.dumps(config, indent=2) + "\n")

    def _ready(self) -> bool:
        """``/-/ready`` answers 200: the TSDB is open and the web API serves."""
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                return bool(resp.status == 200)
        except (OSError, urllib.error.URLError):
            return False
