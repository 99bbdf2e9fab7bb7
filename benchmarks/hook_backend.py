"""The smallest fast backend for Tidings' HTTP hooks (Centrifugo's event-proxy JSON protocol,
/work/shared/PROXY.md §3): raw asyncio on uvloop, HTTP/1.1 parsed by httptools (the parser
Tidings itself uses), keep-alive, no framework. One process, one thread.

    python benchmarks/hook_backend.py --port 9000 [--host 127.0.0.1]

Routes (by path; the request body carries no hook name):

- ``POST /connect``  -> ``{"result":{"user":"u<n>"}}``, n counting connects from 0
- ``POST /rpc``      -> ``{"result":{"data":<the request's "data">}}`` (an echo)
- ``POST /publish``  -> ``{"result":{}}`` (publish the client's data unchanged)
- anything else      -> 404

It prints ``backend listening on http://HOST:PORT`` once bound; SIGTERM/SIGINT end it. It
answers every request in the ``on_message_complete`` callback (no task per request), so a
request costs one parse, one small JSON decode (``/rpc`` only) and one ``write``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import cast

import httptools
import msgspec
import uvloop

_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
         b"Content-Length: %d\r\n\r\n")
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
_PUBLISH = b'{"result":{}}'


class _RpcRequest(msgspec.Struct):
    data: msgspec.Raw = msgspec.Raw(b"null")


_decode_rpc = msgspec.json.Decoder(_RpcRequest).decode


class Stats:
    connects = 0
    requests = 0


class HookProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        assert self.transport is not None
        Stats.requests += 1
        path = self.url.split(b"?", 1)[0]
        if path == b"/connect":
            payload = b'{"result":{"user":"u%d"}}' % Stats.connects
            Stats.connects += 1
        elif path == b"/rpc":
            try:
                data = _decode_rpc(b"".join(self.body)).data
            except msgspec.DecodeError:
                data = msgspec.Raw(b"null")
            payload = b'{"result":{"data":' + bytes(data) + b"}}"
        elif path == b"/publish":
            payload = _PUBLISH
        else:
            self.transport.write(_NOT_FOUND)
            return
        self.transport.write(_HEAD % len(payload) + payload)
        if not self.parser.should_keep_alive():
            self.transport.close()


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(HookProtocol, host, port, backlog=4096)
    bound = server.sockets[0].getsockname()
    print(f"backend listening on http://{bound[0]}:{bound[1]}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    print(f"backend stopped: {Stats.requests} requests, {Stats.connects} connects", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    if not args.host.startswith("127."):
        parser.error("loopback only")
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
