#!/usr/bin/env python3
# ruff: noqa: ASYNC109, ASYNC110  (bounded polling in a smoke check is fine)
"""Smoke-check the benchmark peer servers with the exact frames documented in
README.md (the same ones the C load generator sends).

    python benchmarks/peers/verify.py                 # all peers
    python benchmarks/peers/verify.py channels --ping # one peer, also wait for a socket.io ping
    python benchmarks/peers/verify.py --scale 2000    # plus N clients, one room each

For every peer: start it on a free 127.0.0.1 port, wait for its "listening"
line, then
  1. 3 clients join bench0 with the peer's first init variant (socket.io:
     the single frame 40{"room":"bench0"} sent right after the WS opens),
     one keep-alive POST /publish?ch=0 {"ts":1}: all 3 must get '"ts":1'.
  2. socket.io only: same with the two-step variant (40, wait for 40{,
     42["join","bench0"]).
  3. two rooms: 2 clients in bench0, 2 in bench1; publish {"ts":2} to ch=1 and
     {"ts":3} to ch=0; each client must get only its room's message.
  4. (--scale N) N clients, client i in bench<i>; publish to a few rooms.
  5. (--ping) socket.io peers only: wait for the server's "2", answer "3",
     then check the client still receives publishes.
Everything is bounded in time; the peer process is stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import websockets

HERE = os.path.dirname(os.path.abspath(__file__))
SIO_PATH = "/socket.io/?EIO=4&transport=websocket"
# Both socket.io peers (Python and Node) speak the same frames.
SIO_INIT = {
    # one frame, sent right after the WS opens (what the generator should use)
    "auth": lambda k: [(f'40{{"room":"bench{k}"}}', None)],
    # two steps, each sent only after the server frame named next to it
    "join-event": lambda k: [("40", "0{"), (f'42["join","bench{k}"]', "40{")],
}

# name -> how to start it and how a client subscribes.  init: variant name ->
# list of (frame to send, substring of the server frame to wait for before
# sending it, or None to send at once).  Mirrors the table in README.md.
PEERS = {
    "python-socketio": {
        "cmd": [sys.executable, os.path.join(HERE, "python-socketio", "server.py")],
        "path": lambda k: SIO_PATH,
        "init": SIO_INIT,
        "ready": "ready",
        "pong": {"2": "3"},
    },
    "channels": {
        "cmd": [sys.executable, os.path.join(HERE, "channels", "server.py")],
        "path": lambda k: f"/ws/{k}",
        "init": {"none": lambda k: []},
        "ready": "ready",
        "pong": {},
    },
    "starlette-broadcaster": {
        "cmd": [sys.executable, os.path.join(HERE, "starlette-broadcaster", "server.py")],
        "path": lambda k: f"/ws/{k}",
        "init": {"none": lambda k: []},
        "ready": "ready",
        "pong": {},
    },
    "node-socketio": {
        "cmd": ["node", os.path.join(HERE, "node-socketio", "server.js")],
        "env": {"NODE_ENV": "production"},
        "path": lambda k: SIO_PATH,
        "init": SIO_INIT,
        "ready": "ready",
        "pong": {"2": "3"},
    },
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    def __init__(self, spec: dict, port: int, k: int) -> None:
        self.spec, self.port, self.k = spec, port, k
        self.frames: list[str] = []
        self.pings_answered = 0
        self._new = asyncio.Event()

    async def connect(self, variant: str) -> None:
        url = f"ws://127.0.0.1:{self.port}{self.spec['path'](self.k)}"
        self.ws = await websockets.connect(
            url, max_size=None, open_timeout=20, ping_interval=None, compression=None
        )
        for frame, wait_for in self.spec["init"][variant](self.k):
            if wait_for is not None:
                await self._recv_until(wait_for, 10)
            await self.ws.send(frame)
        self.task = asyncio.create_task(self._reader())
        await self.wait_for(self.spec["ready"], 10)

    async def _recv_until(self, sub: str, timeout: float) -> str:
        async with asyncio.timeout(timeout):
            while True:
                f = await self.ws.recv()
                self.frames.append(f)
                if sub in f:
                    return f

    async def _reader(self) -> None:
        try:
            async for f in self.ws:
                assert isinstance(f, str), f"binary frame {f!r}"
                reply = self.spec["pong"].get(f)
                if reply is not None:
                    await self.ws.send(reply)
                    self.pings_answered += 1
                self.frames.append(f)
                self._new.set()
        except websockets.ConnectionClosed:
            pass

    async def wait_for(self, sub: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            for f in self.frames:
                if sub in f:
                    return f
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"client bench{self.k}: no frame with {sub!r}; got {self.frames[-5:]!r}"
                )
            self._new.clear()
            try:
                await asyncio.wait_for(self._new.wait(), left)
            except TimeoutError:
                pass

    def has(self, sub: str) -> bool:
        return any(sub in f for f in self.frames)

    async def close(self) -> None:
        await self.ws.close()
        try:
            await asyncio.wait_for(self.task, 5)
        except (TimeoutError, asyncio.CancelledError):
            self.task.cancel()


class Publisher:
    """One keep-alive HTTP/1.1 connection, like the load generator's."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.local_port: int | None = None

    def _post(self, ch: int, body: bytes) -> tuple[int, bytes, str | None]:
        self.conn.request(
            "POST", f"/publish?ch={ch}", body=body, headers={"Content-Type": "application/json"}
        )
        r = self.conn.getresponse()
        out = r.status, r.read(), r.getheader("connection")
        lp = self.conn.sock.getsockname()[1] if self.conn.sock else None
        assert self.local_port in (None, lp), "publish connection was not kept alive"
        self.local_port = lp
        return out

    async def publish(self, ch: int, body: bytes) -> None:
        t0 = time.perf_counter()
        status, text, conn_hdr = await asyncio.to_thread(self._post, ch, body)
        dt = (time.perf_counter() - t0) * 1000
        assert status == 200, f"publish ch={ch}: HTTP {status} {text!r}"
        assert (conn_hdr or "").lower() != "close", "server closed the keep-alive connection"
        print(f"    POST /publish?ch={ch} {body.decode()} -> {status} {text!r} ({dt:.1f} ms)")

    def close(self) -> None:
        self.conn.close()


async def connect_all(spec, port, ks, variant=None) -> list[Client]:
    variant = variant or next(iter(spec["init"]))
    clients = [Client(spec, port, k) for k in ks]
    sem = asyncio.Semaphore(200)

    async def one(c: Client) -> None:
        async with sem:
            await c.connect(variant)

    await asyncio.gather(*(one(c) for c in clients))
    return clients


async def close_all(clients) -> None:
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


async def check_peer(name: str, port: int, scale: int, ping: bool) -> None:
    spec = PEERS[name]
    pub = Publisher(port)
    try:
        for i, variant in enumerate(spec["init"]):
            frames = [f for f, _ in spec["init"][variant](0)]
            print(f"  [1/2] 3 clients in bench0, init variant {variant!r}: {frames!r}")
            cs = await connect_all(spec, port, [0, 0, 0], variant)
            print(f"    frames of client 0 up to ready: {cs[0].frames!r}")
            ts = 1 + 10 * i
            await pub.publish(0, b'{"ts":%d}' % ts)
            got = await asyncio.gather(*(c.wait_for(f'"ts":{ts}', 10) for c in cs))
            print(f"    received: {got[0]!r} x{len(got)}")
            await close_all(cs)

        print("  [3] two rooms: 2 clients in bench0, 2 in bench1")
        cs = await connect_all(spec, port, [0, 0, 1, 1])
        await pub.publish(1, b'{"ts":2}')
        await pub.publish(0, b'{"ts":3}')
        for c in cs:
            await c.wait_for('"ts":2' if c.k == 1 else '"ts":3', 10)
        await asyncio.sleep(0.5)
        for c in cs:
            wrong = '"ts":3' if c.k == 1 else '"ts":2'
            assert not c.has(wrong), f"client in bench{c.k} got the other room's message"
        print("    each room got only its own message")

        if ping and spec["pong"]:
            print("  [5] waiting (<= 35 s) for the server's socket.io ping")
            c = cs[0]
            n0 = len(c.frames)
            deadline = time.monotonic() + 35
            while c.pings_answered == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
            assert c.pings_answered > 0, "no ping within 35 s"
            pings = [f for f in c.frames[n0:] if f in spec["pong"]]
            print(f"    got {pings!r}, answered {list(spec['pong'].values())!r}")
            await pub.publish(0, b'{"ts":4}')
            await c.wait_for('"ts":4', 10)
            print("    still subscribed after the ping/pong")
        await close_all(cs)

        if scale:
            print(f"  [4] {scale} clients, client i in bench<i>")
            t0 = time.monotonic()
            cs = await connect_all(spec, port, list(range(scale)))
            print(f"    {scale} ready in {time.monotonic() - t0:.1f} s")
            picks = sorted({0, 1, scale // 2, scale - 1})
            for i, k in enumerate(picks):
                await pub.publish(k, b'{"ts":%d}' % (100 + i))
            for i, k in enumerate(picks):
                await cs[k].wait_for(f'"ts":{100 + i}', 10)
            await asyncio.sleep(0.5)
            stray = [c.k for c in cs if c.k not in picks and any('"ts":' in f for f in c.frames)]
            assert not stray, f"clients {stray[:5]} got messages for other rooms"
            print(f"    rooms {picks} got their message, no other client got any")
            await close_all(cs)
    finally:
        pub.close()


def start_peer(name: str, port: int) -> tuple[subprocess.Popen, object]:
    spec = PEERS[name]
    env = dict(os.environ, **spec.get("env", {}))
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        spec["cmd"] + ["--port", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        log.seek(0)
        buf = log.read().decode(errors="replace")
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited {proc.returncode}: {buf}")
        if "listening" in buf:
            print(f"  started: {' '.join(spec['cmd'][1:])} --port {port}  (pid {proc.pid})")
            print(f"  stdout: {buf.strip()}")
            log.seek(0, 2)
            return proc, log
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    raise RuntimeError(f"{name}: no 'listening' line within 30 s")


def stop_peer(proc: subprocess.Popen, log) -> str:
    pos = log.tell()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    log.seek(pos)
    rest = log.read().decode(errors="replace")
    log.close()
    return rest


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("peers", nargs="*", default=list(PEERS))
    ap.add_argument("--scale", type=int, default=0, help="also N clients, one room each")
    ap.add_argument("--ping", action="store_true", help="socket.io: wait for a server ping (~25 s)")
    args = ap.parse_args()
    failed = []
    for name in args.peers:
        print(f"== {name}")
        port = free_port()
        proc, log = start_peer(name, port)
        try:
            asyncio.run(asyncio.wait_for(check_peer(name, port, args.scale, args.ping), 300))
            print(f"== {name}: OK")
        except Exception as e:
            failed.append(name)
            print(f"== {name}: FAILED: {type(e).__name__}: {e}")
        finally:
            tail = stop_peer(proc, log)
            if tail.strip():
                out = tail.strip().replace("\n", "\n    ")[-3000:]
                print("  peer output after the checks:\n    " + out)
    print(f"{len(args.peers) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
