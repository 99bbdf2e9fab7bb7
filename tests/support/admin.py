"""The admin web interface as the tests reach it: its config, logging in over HTTP, calling
the admin API and reading a live tail (plain HTTP with aiohttp; the browser tests drive the UI
itself through tests/support/browser.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from tests.support.timing import T

__all__ = ["ADMIN", "ADMIN_PASSWORD", "ADMIN_SECRET", "admin_api", "admin_login", "open_tail"]

ADMIN_PASSWORD = "correct horse battery staple"
ADMIN_SECRET = "admin-secret-for-the-tests-only-0123456789"
ADMIN: dict[str, Any] = {
    "admin": {"enabled": True, "password": ADMIN_PASSWORD, "secret": ADMIN_SECRET},
}


async def admin_login(session: aiohttp.ClientSession, base: str,
                      password: str = ADMIN_PASSWORD) -> str:
    """A token from ``POST <base>/admin/auth`` (``base``: where the UI is, no trailing /)."""
    async with session.post(f"{base}/admin/auth", data={"password": password},
                            timeout=aiohttp.ClientTimeout(total=T)) as resp:
        assert resp.status == 200, (resp.status, await resp.text())
        token: str = (await resp.json())["token"]
    return token


async def admin_api(session: aiohttp.ClientSession, base: str, token: str, method: str,
                    params: dict[str, Any]) -> dict[str, Any]:
    """One admin API call that must be answered 200: its reply (``result`` or ``error``)."""
    async with session.post(f"{base}/admin/api", json={"method": method, "params": params},
                            headers={"Authorization": f"token {token}"},
                            timeout=aiohttp.ClientTimeout(total=T)) as resp:
        body = await resp.read()
        assert resp.status == 200, (resp.status, body)
    reply: dict[str, Any] = json.loads(body)
    return reply


class Tail:
    """The events of an open live tail, as (event name, data) pairs."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp
        self._buffer = b""

    async def next(self, within: float = T) -> tuple[str, Any]:
        """The next event (keep-alive comments skipped), within ``within`` seconds."""
        return await asyncio.wait_for(self._next(), within)

    async def _next(self) -> tuple[str, Any]:
        while True:
            end = self._buffer.find(b"\n\n")
            if end >= 0:
                block, self._buffer = self._buffer[:end], self._buffer[end + 2:]
                name, data = "message", b""
                for line in block.split(b"\n"):
                    if line.startswith(b"event: "):
                        name = line[7:].decode()
                    elif line.startswith(b"data: "):
                        data = line[6:]
                if data:
                    return name, json.loads(data)
                continue
            piece = await self.resp.content.readany()
            assert piece, "the tail ended"
            self._buffer += piece


@asynccontextmanager
async def open_tail(session: aiohttp.ClientSession, base: str, token: str,
                    channel: str) -> AsyncIterator[Tail]:
    """A live tail of ``channel``, open once its ``ready`` event came."""
    async with session.get(f"{base}/admin/tail", params={"channel": channel},
                           headers={"Authorization": f"token {token}"},
                           timeout=aiohttp.ClientTimeout(total=None, sock_connect=T)) as resp:
        assert resp.status == 200, (resp.status, await resp.text())
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        tail = Tail(resp)
        name, data = await tail.next()
        assert name == "ready" and data["channel"] == channel, (name, data)
        yield tail
