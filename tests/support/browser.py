"""A real headless Chromium page driven from an async test: ``tests/e2e/browser/drive_page.mjs``
(playwright-core on Debian's ``/usr/bin/chromium``; nothing is downloaded) runs as a child
process, one command a line on its stdin, one answer a line on its stdout.

    async with BrowserPage.start() as page:
        await page.goto(url)
        await page.fill("#login-password", "...")
        await page.click("#login-submit")
        await page.wait_text("#nodes tbody", "node-a")

Every command is bounded (``T``); a failed one raises ``BrowserError`` with the page's console
errors and failed requests. The process runs in its own session and is ended by its process
group ID (it and the Chromium it started) when the page is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from tests.support.npm import E2E_PACKAGES, ensure_node_modules
from tests.support.timing import T

__all__ = ["CHROMIUM", "BrowserError", "BrowserPage"]

DRIVER = Path(__file__).parents[1] / "e2e" / "browser" / "drive_page.mjs"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FOUND = os.path.isfile(CHROMIUM)


class BrowserError(AssertionError):
    """A page command failed (or timed out); the message carries the page's diagnostics."""


class BrowserPage:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self._next_id = 0
        self._lock = asyncio.Lock()

    @classmethod
    async def start(cls) -> BrowserPage:
        node = shutil.which("node")
        assert node is not None, "node is required for the browser tests"
        assert CHROMIUM_FOUND, f"{CHROMIUM} not found: install Debian's chromium"
        await asyncio.to_thread(ensure_node_modules, *E2E_PACKAGES)
        proc = await asyncio.create_subprocess_exec(
            node, str(DRIVER), "--chromium", CHROMIUM, "--timeout-ms", str(int(T * 1000)),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True,
            limit=16 << 20,  # an answer (e.g. a page's diagnostics) is one line
        )
        page = cls(proc)
        try:
            started = await page._read(within=6 * T)
        except BaseException:
            await page.close()
            raise
        assert started.get("value") == "started", started
        return page

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def _read(self, within: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), within)
        if not line:
            err = b""
            if self.proc.stderr is not None:
                with contextlib.suppress(TimeoutError):
                    err = await asyncio.wait_for(self.proc.stderr.read(), 2)
            raise BrowserError(f"drive_page.mjs ended: {err.decode(errors='replace')[-3000:]}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def command(self, op: str, *, within: float = T, **args: Any) -> Any:
        """Run one command; its value. ``within`` bounds the page-side wait too."""
        async with self._lock:
            self._next_id += 1
            ident = self._next_id
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(
                {"id": ident, "op": op, "timeoutMs": int(within * 1000), **args}).encode() + b"\n")
            await self.proc.stdin.drain()
            answer = await self._read(within + 5 * T)
        assert answer.get("id") == ident, answer
        if not answer["ok"]:
            detail = "" if op == "diag" else f"\npage diagnostics: {await self.diagnostics()}"
            raise BrowserError(f"{op} {args}: {answer['error']}{detail}")
        return answer["value"]

    async def goto(self, url: str) -> None:
        await self.command("goto", url=url)

    async def fill(self, selector: str, value: str) -> None:
        await self.command("fill", selector=selector, value=value)

    async def click(self, selector: str) -> None:
        await self.command("click", selector=selector)

    async def wait(self, expr: str, arg: Any = None, *, within: float = T) -> Any:
        """Until the page function ``expr`` (JavaScript, called with ``arg``) is truthy."""
        return await self.command("wait", expr=expr, arg=arg, within=within)

    async def wait_text(self, selector: str, text: str, *, within: float = T) -> str:
        """Until an element matching ``selector`` shows ``text``; that element's text."""
        found: str = await self.wait(
            "([s, t]) => [...document.querySelectorAll(s)].map(e => e.innerText)"
            ".find(x => x.includes(t))", [selector, text], within=within)
        return found

    async def text(self, selector: str) -> str | None:
        value: str | None = await self.command("text", selector=selector)
        return value

    async def texts(self, selector: str) -> list[str]:
        value: list[str] = await self.command("texts", selector=selector)
        return value

    async def evaluate(self, expr: str, arg: Any = None) -> Any:
        return await self.command("eval", expr=expr, arg=arg)

    async def viewport(self, width: int, height: int) -> None:
        await self.command("viewport", width=width, height=height)

    async def screenshot(self, path: Path, *, full_page: bool = False) -> None:
        await self.command("screenshot", path=str(path), fullPage=full_page, within=3 * T)

    async def fresh(self) -> None:
        """A new browser context and page (no storage, no history): a clean start for the
        next test, without starting another Chromium."""
        await self.command("fresh")

    async def diagnostics(self) -> dict[str, list[str]]:
        value: dict[str, list[str]] = await self.command("diag")
        return value

    async def close(self) -> None:
        proc = self.proc
        if proc.returncode is None:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), T)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # its own group: it and its Chromium
                await proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(Exception):
                    await stream.read()
