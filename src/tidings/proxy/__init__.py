"""Callers of backend hooks: over HTTP (Centrifugo's proxy protocol) or in process (a Python
function). Both take a request from ``tidings.protocol.proxyproto`` and give its response; any
unexpected failure (timeout, non-200, unreachable, unreadable answer, a hook that raised
something else) is a ``HookFailure``, logged here with the proxy's name."""

from tidings.proxy.base import Caller, HookFailure, HookState, Who
from tidings.proxy.http import HttpCaller, HttpPool
from tidings.proxy.inprocess import PythonCaller, import_hook

__all__ = ["Caller", "HookFailure", "HookState", "HttpCaller", "HttpPool", "PythonCaller", "Who",
           "import_hook"]
