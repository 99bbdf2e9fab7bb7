"""Config keys of the backend hooks (Centrifugo v6's event proxies, PROXY.md §2)."""

from __future__ import annotations

from typing import Any

import msgspec

from tidings.config.tls import TLSConfig

__all__ = [
    "ClientProxyConfig",
    "EnabledProxy",
    "NamedProxy",
    "ProxyConfig",
    "RpcConfig",
    "RpcNamespace",
    "RpcOptions",
    "StatusTransform",
    "UniDisconnectConfig",
]


class _Base(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    pass


class ToError(_Base):
    code: int = 0
    message: str = ""
    temporary: bool = False


class ToDisconnect(_Base):
    code: int = 0
    reason: str = ""


class StatusTransform(_Base):
    """``http.status_to_code_transforms[i]``: a non-200 status answered as an error or a
    disconnect instead of a failure."""

    status_code: int = 0
    to_error: ToError = msgspec.field(default_factory=ToError)
    to_disconnect: ToDisconnect = msgspec.field(default_factory=ToDisconnect)


class ProxyHttpConfig(_Base):
    tls: TLSConfig = msgspec.field(default_factory=TLSConfig)
    static_headers: dict[str, str] = msgspec.field(default_factory=dict)
    status_to_code_transforms: list[StatusTransform] = msgspec.field(default_factory=list)


class ProxyConfig(_Base):
    """One proxy: where it calls (``http(s)://`` a backend; ``python:module:function`` an
    in-process Python hook, a Tidings addition) and how."""

    endpoint: str = ""
    timeout: float = 1.0
    http_headers: list[str] = msgspec.field(default_factory=list)
    emulated_headers: list[str] = msgspec.field(default_factory=list)
    grpc_metadata: list[str] = msgspec.field(default_factory=list)
    binary_encoding: bool = False
    include_connection_meta: bool = False
    http: ProxyHttpConfig = msgspec.field(default_factory=ProxyHttpConfig)
    grpc: dict[str, Any] = msgspec.field(default_factory=dict)  # gRPC proxies: refused


class EnabledProxy(ProxyConfig, kw_only=True):
    enabled: bool = False


class NamedProxy(ProxyConfig, kw_only=True):
    name: str = ""


class ClientProxyConfig(_Base):
    connect: EnabledProxy = msgspec.field(default_factory=EnabledProxy)
    refresh: EnabledProxy = msgspec.field(default_factory=EnabledProxy)


class ChannelProxyConfig(_Base):
    subscribe: ProxyConfig = msgspec.field(default_factory=ProxyConfig)
    publish: ProxyConfig = msgspec.field(default_factory=ProxyConfig)
    sub_refresh: ProxyConfig = msgspec.field(default_factory=ProxyConfig)
    subscribe_stream: ProxyConfig = msgspec.field(default_factory=ProxyConfig)


class RpcOptions(_Base):
    proxy_enabled: bool = False
    proxy_name: str = "default"


class RpcNamespace(RpcOptions, kw_only=True):
    name: str = ""


class RpcPing(_Base):
    enabled: bool = False
    method: str = "ping"


class RpcConfig(_Base):
    proxy: ProxyConfig = msgspec.field(default_factory=ProxyConfig)
    without_namespace: RpcOptions = msgspec.field(default_factory=RpcOptions)
    namespaces: list[RpcNamespace] = msgspec.field(default_factory=list)
    namespace_boundary: str = ":"
    ping: RpcPing = msgspec.field(default_factory=RpcPing)


class UniTransform(_Base):
    code: int = 0
    to: ToDisconnect = msgspec.field(default_factory=ToDisconnect)


class UniDisconnectConfig(_Base):
    """``client.connect_code_to_unidirectional_disconnect``: connect error codes a
    unidirectional client sees as these disconnects."""

    enabled: bool = False
    transforms: list[UniTransform] = msgspec.field(default_factory=list)
