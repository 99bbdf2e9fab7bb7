"""Backend hooks for Python apps: the request and result types of Centrifugo's proxy protocol
(the same for hooks over HTTP and in process) and helpers to answer them.

A hook is a function taking a request (``ConnectRequest``, ``SubscribeRequest``, ...) and
returning its result (``ConnectResult``, ...), a full response, or None; it refuses by raising
``HookError`` (the client gets that error) or ``HookDisconnect`` (the connection is closed).
Serve it from a web app with ``tidings.hooks.django.view``, ``tidings.hooks.flask.view`` or
``tidings.hooks.fastapi.endpoint``; or run it inside Tidings with a ``python:module:function``
endpoint. See docs/hooks.md.
"""

from tidings.hooks.web import answer, answer_async, request_type_of
from tidings.protocol.proxyproto import (
    UNSET,
    BoolValue,
    ConnectRequest,
    ConnectResponse,
    ConnectResult,
    Disconnect,
    Error,
    HookDisconnect,
    HookError,
    PublishRequest,
    PublishResponse,
    PublishResult,
    RefreshRequest,
    RefreshResponse,
    RefreshResult,
    RPCRequest,
    RPCResponse,
    RPCResult,
    SubRefreshRequest,
    SubRefreshResponse,
    SubRefreshResult,
    SubscribeOptionOverride,
    SubscribeOptions,
    SubscribeRequest,
    SubscribeResponse,
    SubscribeResult,
)

__all__ = [
    "UNSET",
    "BoolValue",
    "ConnectRequest",
    "ConnectResponse",
    "ConnectResult",
    "Disconnect",
    "Error",
    "HookDisconnect",
    "HookError",
    "PublishRequest",
    "PublishResponse",
    "PublishResult",
    "RPCRequest",
    "RPCResponse",
    "RPCResult",
    "RefreshRequest",
    "RefreshResponse",
    "RefreshResult",
    "SubRefreshRequest",
    "SubRefreshResponse",
    "SubRefreshResult",
    "SubscribeOptionOverride",
    "SubscribeOptions",
    "SubscribeRequest",
    "SubscribeResponse",
    "SubscribeResult",
    "answer",
    "answer_async",
    "request_type_of",
]
