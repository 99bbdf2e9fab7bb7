"""The event seam: which backend hook (if any) answers each client event, and observers.

Answering hooks follow Centrifugo's event proxies (PROXY.md): ``connect`` and ``refresh``
(``client.proxy.*``, on when ``enabled``), ``subscribe``, ``publish`` and ``sub_refresh`` per
channel namespace (``*_proxy_enabled`` / ``*_proxy_name``: ``default`` is
``channel.proxy.<hook>``, else a ``proxies[]`` entry), and ``rpc`` per RPC namespace. A proxy's
endpoint is a backend URL (``http(s)://``) or an in-process Python function
(``python:module:function``); in code, ``set`` puts a function in a hook's default place. The
config decides *where* hooks apply, the hook decides *what* happens: a function set for
``subscribe`` answers the namespaces that enable the subscribe proxy.

Observers (``connected`` / ``disconnected``) are plain callables, called in order; one that
raises is logged and the rest still run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from tidings.config import Config, ConfigError
from tidings.config.proxyschema import EnabledProxy, ProxyConfig
from tidings.errors import ErrorCode
from tidings.proxy import Caller, HttpCaller, HttpPool, PythonCaller, import_hook

__all__ = ["ClientEvent", "DisconnectedEvent", "Hooks"]

log = logging.getLogger("tidings.hooks")

E = TypeVar("E", bound="ClientEvent")
CHANNEL_HOOKS = ("subscribe", "publish", "sub_refresh")


@dataclass(frozen=True, slots=True)
class ClientEvent:
    """Who: the connection's client ID, user ("" for anonymous) and transport name."""

    client: str
    user: str
    transport: str


@dataclass(frozen=True, slots=True)
class DisconnectedEvent(ClientEvent):
    code: int = 0
    reason: str = ""


class Hooks:
    """The node's hooks, built from the config (``from_config``) or set in code (``set``)."""

    def __init__(self, config: Config | None = None) -> None:
        self.pool = HttpPool()
        self.connect: Caller | None = None
        self.refresh: Caller | None = None
        # Channel hooks and rpc by (hook, proxy name): "default" or a proxies[] name (a named
        # proxy gets a caller per hook, so each is counted apart; they share the HTTP pool).
        self._callers: dict[tuple[str, str], Caller] = {}
        self._rpc_spaces: dict[str, tuple[bool, str]] = {}  # name -> (proxy_enabled, proxy)
        self._rpc_plain: tuple[bool, str] | None = None
        self.rpc_boundary = ":"
        self.rpc_ping = ""
        self.header_names: frozenset[str] = frozenset()  # kept from each connection's request
        self.emulated_names: frozenset[str] = frozenset()
        self.connected: list[Callable[[ClientEvent], None]] = []
        self.disconnected: list[Callable[[DisconnectedEvent], None]] = []
        if config is not None:
            self._configure(config)

    def _caller(self, name: str, proxy: ProxyConfig) -> Caller:
        try:
            if proxy.endpoint.startswith("python:"):
                return PythonCaller(name, proxy, import_hook(proxy.endpoint))
            return HttpCaller(name, proxy, self.pool)
        except ValueError as exc:  # a function that does not import, a URL it cannot use
            raise ConfigError(f"proxy {name!r}: {exc}") from None

    def _configure(self, config: Config) -> None:
        proxies: list[ProxyConfig] = []
        for hook in ("connect", "refresh"):
            proxy: EnabledProxy = getattr(config.client.proxy, hook)
            if proxy.enabled and proxy.endpoint:
                setattr(self, hook, self._caller("default", proxy))
                proxies.append(proxy)
        for hook in CHANNEL_HOOKS:
            proxy_cfg: ProxyConfig = getattr(config.channel.proxy, hook)
            if proxy_cfg.endpoint:
                self._callers[hook, "default"] = self._caller("default", proxy_cfg)
                proxies.append(proxy_cfg)
        if config.rpc.proxy.endpoint:
            self._callers["rpc", "default"] = self._caller("default", config.rpc.proxy)
            proxies.append(config.rpc.proxy)
        for named in config.proxies:
            for hook in (*CHANNEL_HOOKS, "rpc"):
                self._callers[hook, named.name] = self._caller(named.name, named)
            proxies.append(named)
        rpc = config.rpc
        self.rpc_boundary = rpc.namespace_boundary
        self.rpc_ping = rpc.ping.method if rpc.ping.enabled else ""
        self._rpc_plain = (rpc.without_namespace.proxy_enabled, rpc.without_namespace.proxy_name)
        self._rpc_spaces = {ns.name: (ns.proxy_enabled, ns.proxy_name) for ns in rpc.namespaces}
        self._note_headers(proxies)

    def _note_headers(self, proxies: Sequence[ProxyConfig]) -> None:
        self.header_names |= {h.lower() for p in proxies for h in p.http_headers}
        self.emulated_names |= {h.lower() for p in proxies for h in p.emulated_headers}

    # ---------------------------------------------------------------- in code

    def set(self, hook: str, fn: Callable[..., Any], *, timeout: float = 1.0,
            http_headers: Sequence[str] = ("cookie", "authorization"),
            name: str = "default") -> None:
        """Answer ``hook`` (connect, refresh, subscribe, publish, sub_refresh, rpc) with the
        Python function ``fn`` under the proxy ``name``. ``http_headers``: the connection
        headers it may read (``request.headers``)."""
        proxy = ProxyConfig(endpoint=f"python:{getattr(fn, '__qualname__', 'hook')}",
                            timeout=timeout, http_headers=list(http_headers))
        caller = PythonCaller(name, proxy, fn)
        self._note_headers([proxy])
        if hook in ("connect", "refresh"):
            setattr(self, hook, caller)
        elif hook in (*CHANNEL_HOOKS, "rpc"):
            self._callers[hook, name] = caller
        else:
            raise ValueError(f"unknown hook {hook!r}")

    # ---------------------------------------------------------------- where each applies

    def for_channel(self, hook: str, enabled: bool, name: str) -> Caller | None:
        """The caller of a channel hook in a namespace with ``<hook>_proxy_enabled`` =
        ``enabled`` and ``<hook>_proxy_name`` = ``name``."""
        if not enabled:
            return None
        return self._callers.get((hook, name))

    def needed(self, hook: str, name: str) -> Caller:
        """The caller a namespace enables; without one (enabled in the config, never set in
        code) the command fails with 100 and the log says why."""
        caller = self.for_channel(hook, True, name)
        if caller is None:
            log.error("a namespace enables the %s hook %r but none is set", hook, name)
            raise ErrorCode.INTERNAL
        return caller

    def for_rpc(self, method: str) -> Caller | None:
        """The caller of an RPC (PROXY.md §4.6); None for the ping method; raises 108/104."""
        if self.rpc_ping and method == self.rpc_ping:
            return None
        spaces = [*self._rpc_spaces.values(), self._rpc_plain or (False, "")]
        if not any(enabled for enabled, _ in spaces):  # no RPC proxy anywhere
            raise ErrorCode.METHOD_NOT_FOUND if self.rpc_ping else ErrorCode.NOT_AVAILABLE
        space: tuple[bool, str] | None
        if self.rpc_boundary and self.rpc_boundary in method:
            space = self._rpc_spaces.get(method.split(self.rpc_boundary, 1)[0])
        else:
            space = self._rpc_plain
        if space is None:
            raise ErrorCode.METHOD_NOT_FOUND
        enabled, name = space
        if not enabled:
            raise ErrorCode.NOT_AVAILABLE
        return self.needed("rpc", name)

    def callers(self) -> list[tuple[str, str, str, Caller]]:
        """Every caller as (hook, proxy name, protocol: http or python, caller)."""
        rows: list[tuple[str, str, Caller]] = [
            (hook, "default", caller) for hook, caller in (("connect", self.connect),
                                                           ("refresh", self.refresh))
            if caller is not None]
        rows += [(hook, name, caller) for (hook, name), caller in self._callers.items()]
        return [(hook, name, "python" if isinstance(c, PythonCaller) else "http", c)
                for hook, name, c in sorted(rows, key=lambda r: (r[0], r[1]))]

    def stats(self) -> dict[str, dict[str, float]]:
        """Each caller's counters by ``<hook>/<proxy name>``."""
        return {f"{hook}/{name}": c.stats.as_dict() for hook, name, _, c in self.callers()}

    def keep(self, headers: Mapping[str, str]) -> dict[str, str] | None:
        """The headers of a connection's opening request that some hook forwards."""
        names = self.header_names
        if not names:
            return None
        kept = {k: v for k, v in headers.items() if k in names}
        return kept or None

    # ---------------------------------------------------------------- observers

    def notify_connected(self, event: ClientEvent) -> None:
        _notify(self.connected, event, "connected")

    def notify_disconnected(self, event: DisconnectedEvent) -> None:
        _notify(self.disconnected, event, "disconnected")

    async def close(self) -> None:
        await self.pool.close()


def _notify(observers: Sequence[Callable[[E], None]], event: E, what: str) -> None:
    for observer in observers:
        try:
            observer(event)
        except Exception:
            log.exception("a %s observer failed", what)
