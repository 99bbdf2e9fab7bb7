"""Django Channels peer: daphne + InMemoryChannelLayer.

    python benchmarks/peers/channels/server.py --port 8002

Equivalent to the plain daphne command line
    daphne -e tcp:port=P:interface=127.0.0.1:backlog=4096 bench_channels.asgi:application
(run from this directory), plus a "listening" line on stdout once bound.
WS:      ws://127.0.0.1:P/ws/<K>     server -> {"ready":true} after joining bench<K>
Publish: POST /publish?ch=<K>        body relayed as-is as a text frame.
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8002)
    args = ap.parse_args()

    sys.path.insert(0, HERE)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench_channels.settings")

    # daphne.server installs Twisted's asyncio reactor on import; keep it first.
    from daphne.cli import CommandLineInterface
    from daphne.server import Server

    host, port = args.host, args.port

    class ReadyServer(Server):
        def __init__(self, *a, **kw):
            kw["ready_callable"] = lambda: print(
                f"channels peer listening on {host}:{port}", flush=True
            )
            super().__init__(*a, **kw)

    cli = CommandLineInterface()
    cli.server_class = ReadyServer
    cli.run(
        [
            "-e",
            f"tcp:port={port}:interface={host}:backlog=4096",
            "-v",
            "0",  # no access log
            "bench_channels.asgi:application",
        ]
    )


if __name__ == "__main__":
    main()
