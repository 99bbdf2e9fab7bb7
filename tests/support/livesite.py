"""A browser's side of the example web apps (examples/): a cookie-keeping HTTP session that
logs in, renders a page, reads what the page's script would (the ``live`` JSON: connection URL,
token endpoint, stream position; the CSRF token) and posts forms.

Every request is bounded by ``T`` (tests/support/timing.py).
"""

from __future__ import annotations

import html
import json
import re
from types import TracebackType
from typing import Any, Self

import aiohttp

from tests.support.timing import T

__all__ = ["Site", "live_json"]

_LIVE = re.compile(r'<script id="live" type="application/json">(.*?)</script>', re.S)
_CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def live_json(page: str) -> dict[str, Any]:
    """The ``live`` object a page rendered for its script (Django's ``json_script`` escapes
    <, > and & as \\uXXXX; Jinja's ``tojson`` too)."""
    found = _LIVE.search(page)
    assert found is not None, f"no live JSON in the page:\n{page[:2000]}"
    value: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    return value


class Site:
    """``async with Site(url) as site``: one cookie jar (IP hosts allowed), as a browser."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            timeout=aiohttp.ClientTimeout(total=T))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.session.close()

    def cookie_header(self) -> str:
        """The Cookie header the browser would send to the site."""
        return "; ".join(f"{c.key}={c.value}" for c in self.session.cookie_jar)

    async def get(self, path: str) -> tuple[int, str]:
        async with self.session.get(self.base_url + path, allow_redirects=False) as resp:
            return resp.status, await resp.text()

    async def get_json(self, path: str) -> tuple[int, Any]:
        async with self.session.get(self.base_url + path) as resp:
            return resp.status, await resp.json(content_type=None)

    async def post(self, path: str, data: dict[str, str], *, csrf_from: str = "") -> int:
        """POST a form (with the CSRF token of the page at ``csrf_from``, as the form
        would); the status, redirects not followed."""
        form = dict(data)
        if csrf_from:
            _, page = await self.get(csrf_from)
            found = _CSRF.search(page)
            assert found is not None, f"no CSRF token on {csrf_from}"
            form["csrfmiddlewaretoken"] = found.group(1)
        async with self.session.post(self.base_url + path, data=form,
                                     allow_redirects=False) as resp:
            await resp.read()
            return resp.status

    async def token(self, path: str) -> str:
        """What a ``getToken`` callback does: fetch the token endpoint, return ``token``."""
        status, body = await self.get_json(path)
        assert status == 200, (status, body)
        token: str = body["token"]
        return token
