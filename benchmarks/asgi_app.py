"""Tidings as an ASGI app on uvicorn (uvloop, httptools, websockets): the ``tidings-asgi``
target of ``run.py``, beside the standalone ``tidings`` target with the same config, so the cost
of mounting Tidings in an ASGI server (``tidings.asgi``) is a same-run ratio.

    python benchmarks/asgi_app.py --config CONFIG.json --port 8001
"""

from __future__ import annotations

import argparse
import json

import uvicorn

import tidings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ws", default="auto",
                        help="uvicorn's WebSocket implementation (--ws of uvicorn)")
    args = parser.parse_args()
    with open(args.config) as f:
        config = json.load(f)
    config.pop("log_level", None)
    app = tidings.Server(config, listen=False).asgi()  # the lifespan starts and stops it
    uvicorn.run(app, host="127.0.0.1", port=args.port, loop="uvloop", http="httptools",
                ws=args.ws, log_level="warning", lifespan="on")


if __name__ == "__main__":
    main()
