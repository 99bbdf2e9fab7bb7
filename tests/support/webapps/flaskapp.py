"""The Flask backend (on gunicorn): an RPC hook. ``add`` sums ``a`` and ``b``; any other
method is refused."""

from __future__ import annotations

from flask import Flask

from tidings.hooks import HookError, RPCRequest, RPCResult
from tidings.hooks.flask import view

app = Flask(__name__)


@app.get("/health")
def health() -> str:
    return "ok"


def rpc(req: RPCRequest) -> RPCResult:
    if req.method != "add":
        raise HookError(404, "no such method")
    args = req.data if isinstance(req.data, dict) else {}
    a, b = args.get("a"), args.get("b")
    if not (isinstance(a, int | float) and isinstance(b, int | float)):
        raise HookError(107, "bad request: a and b must be numbers")
    return RPCResult(data={"sum": a + b})


app.post("/centrifugo/rpc")(view(rpc))
