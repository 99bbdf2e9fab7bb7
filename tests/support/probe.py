"""Watching a server from outside: its loop's responsiveness and its memory."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import TracebackType

from tests.support.raw import read_response

PROBE_INTERVAL = 0.02


def rss_mib(pid: int) -> float:
    """The resident memory of process ``pid`` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


class HealthProbe:
    """``GET /health`` on its own keep-alive connection every PROBE_INTERVAL while the
    ``async with`` block runs; ``worst`` is the slowest answer in seconds (a stalled event loop
    shows as one long answer). Use: ``async with HealthProbe(host, port) as probe: ...``."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.worst = 0.0
        self.answers = 0
        self._task: asyncio.Task[None] | None = None
        self._stop = False

    async def __aenter__(self) -> HealthProbe:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        await self._ask(reader, writer)  # the connection works before the test starts
        self._task = asyncio.create_task(self._run(reader, writer))
        return self

    async def _ask(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        started = time.monotonic()
        writer.write(b"GET /health HTTP/1.1\r\nHost: probe\r\n\r\n")
        status, _, _ = await read_response(reader)
        assert status == 200, status
        self.worst = max(self.worst, time.monotonic() - started)
        self.answers += 1

    async def _run(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while not self._stop:
                await self._ask(reader, writer)
                await asyncio.sleep(PROBE_INTERVAL)
        finally:
            writer.close()

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        # The answer in flight counts too (a stall still going on at the end is the worst one).
        self._stop = True
        assert self._task is not None
        await asyncio.wait_for(self._task, 60)
