"""One backend's hooks, served two ways: in process (``python:tests.support.hookapp:<hook>``
endpoints, run inside the Tidings server) and over HTTP (``HookBackend``: a real aiohttp server
on loopback that answers each call with the same functions through ``tidings.hooks``).

What the hooks do is steered by the client's payload (``{"mode": ...}``), so one test body
drives both kinds. ``HookBackend`` adds the faults only HTTP has (statuses, garbage, huge
answers), chosen the same way, and counts the calls it gets.

``hook_config(endpoint)`` is the Tidings config wiring every hook to ``endpoint(hook)``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tidings.hooks import (
    BoolValue,
    ConnectRequest,
    ConnectResult,
    HookDisconnect,
    HookError,
    PublishRequest,
    PublishResult,
    RefreshRequest,
    RefreshResult,
    RPCRequest,
    RPCResult,
    SubRefreshRequest,
    SubRefreshResult,
    SubscribeOptionOverride,
    SubscribeRequest,
    SubscribeResult,
    answer_async,
)

HOOKS = ("connect", "refresh", "subscribe", "publish", "sub_refresh", "rpc")
SLOW = 3.0  # seconds a "slow" hook takes: over the proxies' 1 s timeout


def _mode(data: Any) -> str:
    return str(data.get("mode", "")) if isinstance(data, dict) else ""


def _cookie(headers: dict[str, str], name: str) -> str:
    for part in headers.get("cookie", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return ""


async def _common_modes(mode: str) -> None:
    if mode == "error":
        raise HookError(1403, "custom refusal", temporary=False)
    if mode == "disconnect":
        raise HookDisconnect(4501, "unauthorized")
    if mode == "slow":
        await asyncio.sleep(SLOW)
    if mode == "crash":
        raise RuntimeError("a bug in the hook")


async def connect(req: ConnectRequest) -> ConnectResult | None:
    mode = _mode(req.data)
    await _common_modes(mode)
    if mode == "anonymous":
        return None
    user = _cookie(req.headers, "user") or req.headers.get("authorization", "").removeprefix(
        "Bearer ")
    if not user:
        raise HookDisconnect(4501, "unauthorized")
    expire_at = int(time.time()) + 2 if mode == "expiring" else 0
    return ConnectResult(
        user=user, expire_at=expire_at, info={"name": user.title()},
        data={"welcome": user, "client_name": req.name}, channels=["news"],
        meta={"tenant": "t1", "expiring": mode == "expiring"},
    )


async def refresh(req: RefreshRequest) -> RefreshResult:
    # Extends each connection once (meta says whether it was asked before), then ends it.
    meta = req.meta if isinstance(req.meta, dict) else {}
    if meta.get("refreshed"):
        return RefreshResult(expired=True)
    return RefreshResult(expire_at=int(time.time()) + 2, info={"refreshed": True},
                         meta={**meta, "refreshed": True})


async def subscribe(req: SubscribeRequest) -> SubscribeResult | None:
    await _common_modes(_mode(req.data))
    if req.channel.endswith("secret"):
        raise HookError(403, "permission denied")
    if req.channel.endswith("expiring"):
        return SubscribeResult(expire_at=int(time.time()) + 1)
    quiet = req.channel.endswith("quiet")  # no presence for this one
    return SubscribeResult(
        info={"role": "member", "tenant": (req.meta or {}).get("tenant")},
        data={"motd": f"hello {req.user}"},
        override=SubscribeOptionOverride(presence=BoolValue(value=False)) if quiet else None,
    )


async def publish(req: PublishRequest) -> PublishResult | None:
    await _common_modes(_mode(req.data))
    text = req.data.get("text", "") if isinstance(req.data, dict) else ""
    if "spam" in text:
        raise HookError(1000, "spam is not allowed")
    if text == "null":
        return PublishResult(data=None)
    return PublishResult(data={"text": text.upper(), "by": req.user}, tags={"checked": "yes"})


async def sub_refresh(req: SubRefreshRequest) -> SubRefreshResult:
    return SubRefreshResult(expire_at=int(time.time()) + 3600, info={"refreshed": True})


async def rpc(req: RPCRequest) -> RPCResult:
    await _common_modes(_mode(req.data))
    if req.method == "whoami":
        return RPCResult(data={"user": req.user, "meta": req.meta})
    if req.method.endswith("sum"):
        return RPCResult(data={"sum": sum(req.data["numbers"])})
    raise HookError(104, "method not found")


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "connect": connect, "refresh": refresh, "subscribe": subscribe, "publish": publish,
    "sub_refresh": sub_refresh, "rpc": rpc,
}


def hook_config(endpoint: Callable[[str], str], dead: str = "http://127.0.0.1:9/dead",
                timeout: str = "1s") -> dict[str, Any]:
    """Config overrides wiring every hook to ``endpoint(hook)``; namespace ``hooked`` uses
    the channel hooks, ``dead`` (and RPC namespace ``dead``) a proxy nobody listens on."""
    headers = {"http_headers": ["Cookie", "Authorization"], "timeout": timeout,
               "include_connection_meta": True}
    proxy = {hook: {"endpoint": endpoint(hook), **headers} for hook in HOOKS}
    return {
        "client": {"proxy": {"connect": {"enabled": True, **proxy["connect"]},
                             "refresh": {"enabled": True, **proxy["refresh"]}}},
        "channel": {
            "proxy": {h: proxy[h] for h in ("subscribe", "publish", "sub_refresh")},
            "namespaces": [
                {"name": "hooked", "subscribe_proxy_enabled": True,
                 "publish_proxy_enabled": True, "presence": True, "join_leave": True,
                 "history_size": 10, "history_ttl": "60s", "force_recovery": True},
                {"name": "refreshed", "subscribe_proxy_enabled": True,
                 "sub_refresh_proxy_enabled": True},
                {"name": "dead", "subscribe_proxy_enabled": True,
                 "subscribe_proxy_name": "dead"},
            ],
        },
        "proxies": [{"name": "dead", "endpoint": dead, "timeout": timeout}],
        "rpc": {
            "proxy": proxy["rpc"],
            "without_namespace": {"proxy_enabled": True},
            "namespaces": [{"name": "math", "proxy_enabled": True},
                           {"name": "off", "proxy_enabled": False},
                           {"name": "dead", "proxy_enabled": True, "proxy_name": "dead"}],
            "ping": {"enabled": True},
        },
    }


def python_endpoint(hook: str) -> str:
    return f"python:tests.support.hookapp:{hook}"


# ---------------------------------------------------------------- over HTTP

HUGE = 9 * 1024 * 1024  # over the node's 8 MiB limit on an answer


class HookBackend:
    """The hooks above behind a real aiohttp server on 127.0.0.1, plus HTTP faults chosen
    by ``mode``: ``status500``, ``status404``, ``status403`` (a transformed status),
    ``badjson``, ``huge``. ``calls`` counts calls per hook; ``headers`` keeps the last
    request's headers per hook."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.headers: dict[str, dict[str, str]] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    def endpoint(self, hook: str) -> str:
        return f"http://127.0.0.1:{self.port}/{hook}"

    async def start(self) -> HookBackend:
        app = web.Application(client_max_size=1024 * 1024)
        for hook in HOOKS:
            app.router.add_post(f"/{hook}", self._handler(hook))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        await site.start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _handler(self, hook: str) -> Callable[[web.Request], Any]:
        async def handle(request: web.Request) -> web.StreamResponse:
            self.calls[hook] += 1
            self.headers[hook] = {k.lower(): v for k, v in request.headers.items()}
            body = await request.read()
            fault = _fault(_mode(json.loads(body).get("data")))
            if fault is not None:
                return fault
            status, out = await answer_async(FUNCTIONS[hook], body, request.headers)
            return web.Response(body=out, status=status, content_type="application/json")
        return handle


def _fault(mode: str) -> web.Response | None:
    if mode.startswith("status"):
        return web.Response(status=int(mode.removeprefix("status")), text="no")
    if mode == "badjson":
        return web.Response(body=b'{"result": {"user": ', content_type="application/json")
    if mode == "huge":
        blob = json.dumps({"result": {"data": {"blob": "x" * HUGE}}})
        return web.Response(body=blob.encode(), content_type="application/json")
    return None
