#!/usr/bin/env python3
"""A long fuzz campaign against a live Tidings server (loopback only).

One server (core 0; the fuzzer on core 1) gets malformed and random input over many concurrent
connections until ``--inputs`` inputs (WebSocket frames or HTTP requests written) or
``--seconds``: random and damaged JSON commands before and after a valid connect, Protobuf
frames, invalid framing, fragment storms and bad handshakes; garbage HTTP, odd headers, bad
``/api/*`` bodies with and without the key, bad ``/emulation`` posts (also to a live session),
bad connect bodies for the uni_* and emulated streams. Meanwhile a probe process GETs
``/health`` every 50 ms (slower than 100 ms: a stall; afterwards the cases in flight during the
worst stalls are replayed one at a time, ``--triage N``), and an honest subscriber must get,
in order, every one of ~50 API publications per second. At the end the server must be alive,
answer ``/health`` with 200 and have logged no ``Traceback``/``Exception`` line; else exit 1.

A case is built from ``(seed, case index)`` alone: ``--cases 17,4242 --seed S --show`` replays
and prints exactly those cases. ``--save-log FILE`` keeps the server's log.

    python benchmarks/fuzz_live.py --inputs 1000000 [--seed S] [--pythonpath /work/base/src]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import multiprocessing as mp
import os
import random
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import quote

from livenode import API_KEY, HOST, Api, abort, cpu_seconds, frame, start_server, stop_server, token
from websockets.asyncio.client import connect as ws_connect

HONEST_CHANNEL = "honest-probe-channel"  # no generator below produces this name
PROBE_INTERVAL, STALL = 0.05, 0.100
HEALTH = f"GET /health HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
Probe = tuple[float, float, bool, float]  # start, seconds, answered 200, wake-up lag

# ------------------------------------------------------------------ the probe (own process)


def health(sock: socket.socket) -> int:
    """``GET /health`` on a keep-alive connection: the status (raises OSError)."""
    sock.sendall(HEALTH)
    buf = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
        head, sep, body = buf.partition(b"\r\n\r\n")
        m = re.search(rb"content-length:\s*(\d+)", head, re.I)
        if sep and len(body) >= (int(m.group(1)) if m else 0):
            return int(st[1]) if (st := re.match(rb"HTTP/1\.1 (\d{3})", head)) else 0


def probe_main(port: int, stop: Connection, out: Connection, live: Any) -> None:
    """GET /health every 50 ms on one keep-alive connection; sends back [(start, seconds, ok,
    wake-up lag)] (the lag, how late this process woke up for the probe, tells whether the
    probe itself was starved of CPU). ``live`` (shared) holds the stall count and worst latency."""
    results: list[Probe] = []
    sock: socket.socket | None = None
    next_at = time.monotonic()
    while not stop.poll() and len(results) < 2_000_000:
        t = time.monotonic()
        lag = t - next_at
        ok = False
        try:
            if sock is None:
                sock = socket.create_connection((HOST, port), timeout=5)
            ok = health(sock) == 200
        except OSError:
            if sock is not None:
                sock.close()
            sock = None
        seconds = time.monotonic() - t
        results.append((t, seconds, ok, lag))
        live[0] += seconds > STALL
        live[1] = max(live[1], seconds)
        next_at = max(next_at + PROBE_INTERVAL, time.monotonic())
        time.sleep(max(0.0, next_at - time.monotonic()))
    out.send(results)


# ------------------------------------------------------------------ input generators

INTERESTING_INTS = [0, 1, -1, 2, 127, 128, 255, 256, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1,
                    2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), 10**30]
INTERESTING_STRS = ["", "a", " ", "\x00", "\n", "\r\n", "\\", '"', "é", "\u2028", "\ud800",
                    "\U0001f600", "%00", "../..", "null", "{}", "[]", "${x}", "a" * 300,
                    "x" * 5000, "$private", "#42", "ns:chan", "chat:#user", "news", "c"]
CHANNELS = ["c", "news", "chat", "$priv", "#fuzz1", "a:b", "ns:c", "x" * 300, "#", ":", "",
            "é", "\U0001f600", "a b", "c\nd", *[f"fz{i}" for i in range(64)]]
COMMANDS = ["connect", "subscribe", "unsubscribe", "publish", "presence", "presence_stats",
            "history", "rpc", "refresh", "sub_refresh", "send", "ping"]
API_METHODS = ["publish", "broadcast", "subscribe", "unsubscribe", "disconnect", "refresh",
               "presence", "presence_stats", "history", "history_remove", "channels", "info",
               "rpc", "batch", "nope", ""]
PATHS = ["/", "/health", "/api", "/api/", "/api/publish", "/api/info", "/api/batch",
         "/connection/websocket", "/connection/uni_websocket", "/connection/sse",
         "/connection/http_stream", "/connection/uni_sse", "/connection/uni_http_stream",
         "/emulation", "/connection/sockjs/info", "/connection/sockjs/1/abc/xhr",
         "/favicon.ico", "/%2e%2e/%2e%2e", "//", "/api/../health", "*"]
METHODS = ["GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD", "PATCH", "CONNECT", "TRACE",
           "PRI", "get", "G E T", "X" * 100, ""]


def make_tokens() -> list[str]:
    """Connection tokens: valid ones first (index 0..7), then odd claims and forgeries."""
    now = int(time.time())
    good = [token(f"fuzz{i}") for i in range(8)]
    odd_claims: list[dict[str, Any]] = [
        {"sub": "u", "channels": ["c", "news", "$x", "#u", "ns:x", "fz1"]},
        {"sub": 123}, {"sub": "u", "exp": 1}, {"sub": "u", "exp": 2**70},
        {"sub": "u", "exp": "tomorrow"}, {"sub": "u", "info": {"k": ["v"] * 50}},
        {"sub": "u", "b64info": "!!!"}, {"sub": "u", "subs": {"c": {"data": 1}}},
        {"sub": "u", "subs": "x"}, {"sub": "u", "channel": "c"}, {"sub": "u", "aud": "x"},
        {"sub": "u", "iss": 5}, {"sub": "u", "expire_at": -1}, {"sub": "u", "exp": now + 1},
        {"sub": "\ud800"}, {"sub": "u", "channels": "c"}, {"sub": "u", "nbf": 2**40},
        {"sub": "u" * 5000}, {"sub": "u", "meta": None, "channels": [None, 1, {}]},
    ]
    odd = []
    for claims in odd_claims:
        try:
            odd.append(token(**claims))
        except (TypeError, ValueError, UnicodeError):
            continue
    b64 = base64.urlsafe_b64encode
    forged = [
        token("intruder", "not-the-secret-0123456789-0123456789"),
        (b64(b'{"alg":"none","typ":"JWT"}').rstrip(b"=") + b"."
         + b64(b'{"sub":"x"}').rstrip(b"=") + b".").decode(),
        "a.b.c", "", "x" * 10000, "...", good[0][:-3] + "AAA", good[0] + ".x",
    ]
    return good + odd + forged


@dataclass
class Case:
    """One connection's worth of input: steps are bytes to write (with how many inputs they
    are), ``"head"`` (wait for the response head) or ``"session"`` (for the stream's session)."""

    kind: str
    steps: list[tuple[bytes, int] | str] = field(default_factory=list)
    read_timeout: float = 1.5
    reset: bool = False  # abort with a TCP RST instead of reading the answer
    half_close: bool = False  # shut our write side down after the last step

    def send(self, data: bytes, inputs: int = 1) -> None:
        self.steps.append((data, inputs))

    def send_frames(self, frames: list[bytes], per_write: int) -> None:
        for i in range(0, len(frames), per_write):
            self.send(b"".join(frames[i:i + per_write]), len(frames[i:i + per_write]))

    @property
    def inputs(self) -> int:
        return sum(s[1] for s in self.steps if isinstance(s, tuple))


class Gen:
    """Random inputs; everything comes from ``self.rng`` (seeded per case)."""

    def __init__(self, rng: random.Random, tokens: list[str], port: int) -> None:
        self.rng = rng
        self.tokens = tokens
        self.port = port

    # -- values

    def text(self) -> str:
        r = self.rng
        if r.random() < 0.5:
            return r.choice(INTERESTING_STRS)
        n = r.choice([1, 2, 8, 30, 200])
        pools = [(0x20, 0x7E), (0, 0x1F), (0x80, 0x7FF), (0x800, 0xFFFF), (0x10000, 0x10FFFF)]
        lo, hi = r.choice(pools)
        return "".join(chr(r.randint(lo, hi)) for _ in range(n))

    def number(self) -> int | float:
        r = self.rng
        return r.choice([r.choice(INTERESTING_INTS), r.randint(-1000, 1000),
                         r.choice([0.5, -0.0, 1e308, -1e308, 1e-320, 3.0])])

    def value(self, depth: int = 0) -> Any:
        r = self.rng
        kind = r.randrange(7 if depth < 3 else 4)
        if kind == 0:
            return self.number()
        if kind == 1:
            return self.text()
        if kind == 2:
            return r.choice([True, False, None])
        if kind == 3:
            return {"text": self.text(), "n": r.randint(0, 99)}
        if kind == 4:
            return [self.value(depth + 1) for _ in range(r.randrange(4))]
        return {self.text(): self.value(depth + 1) for _ in range(r.randrange(4))}

    def channel(self) -> str:
        return self.rng.choice(CHANNELS) if self.rng.random() < 0.9 else self.text()

    def token(self, good: float = 0.5) -> str:
        return self.tokens[self.rng.randrange(8)] if self.rng.random() < good else (
            self.rng.choice(self.tokens))

    # -- client protocol

    def request(self, name: str) -> dict[str, Any]:
        r, ch = self.rng, self.channel()
        if name == "connect":
            req: dict[str, Any] = {"token": self.token(0.3)}
            if r.random() < 0.3:
                req["subs"] = {self.channel(): {"recover": True, "offset": self.number(),
                                                "epoch": self.text()}}
            if r.random() < 0.2:
                req.update(data=self.value(), name=self.text(), version=self.text())
            return req
        if name == "subscribe":
            req = {"channel": ch}
            for key, make in (("recover", lambda: r.random() < 0.5), ("offset", self.number),
                              ("epoch", self.text), ("token", self.token),
                              ("join_leave", lambda: True), ("delta", lambda: "fossil"),
                              ("flag", self.number), ("data", self.value),
                              ("positioned", lambda: True), ("recoverable", lambda: True)):
                if r.random() < 0.2:
                    req[key] = make()
            return req
        if name == "publish":
            return {"channel": ch, "data": self.value()}
        if name == "history":
            req = {"channel": ch, "limit": r.choice([0, -1, 1, 10, 1000, *INTERESTING_INTS])}
            if r.random() < 0.5:
                req["since"] = {"offset": self.number(), "epoch": self.text()}
            if r.random() < 0.3:
                req["reverse"] = True
            return req
        if name in ("refresh", "sub_refresh"):
            return {"token": self.token(), **({"channel": ch} if name == "sub_refresh" else {})}
        if name == "rpc":
            return {"method": self.text(), "data": self.value()}
        if name == "send":
            return {"data": self.value()}
        return {} if name == "ping" else {"channel": ch}  # unsubscribe, presence(_stats)

    def command(self, cid: int, wild: float) -> Any:
        """A command; with probability ``wild`` per knob: odd ids, wrong types, extra fields."""
        r = self.rng
        name = r.choices(COMMANDS, [2, 20, 8, 20, 10, 10, 15, 3, 2, 2, 1, 3])[0]
        cmd: dict[str, Any] = {"id": cid, name: self.request(name)}
        if r.random() < wild:
            cmd["id"] = r.choice([0, -1, 2**32, 2**64, 1.5, "1", None, cid - 1])
        if r.random() < wild:  # wrong type somewhere
            target = cmd[name] if cmd[name] and r.random() < 0.7 else cmd
            target[r.choice(list(target))] = self.value()
        if r.random() < wild:
            cmd[r.choice(["x", "unknown", self.text()])] = self.value()
            if isinstance(cmd.get(name), dict):
                cmd[name][self.text()] = self.value()
        if r.random() < wild / 2:
            return r.choice([[cmd], "cmd", 42, None, {}, {"id": cid}])
        return cmd

    def encode(self, obj: Any) -> bytes:
        try:
            text = json.dumps(obj, separators=(",", ":"), ensure_ascii=self.rng.random() < 0.5)
        except (ValueError, RecursionError):
            return b"{}"
        return text.encode("utf-8", "surrogatepass")

    def mutate(self, data: bytes, p: float | None = None) -> bytes:
        """Byte-level damage to an encoded command (only with probability ``p`` if given)."""
        r, b = self.rng, bytearray(data)
        if p is not None and r.random() >= p:
            return data
        for _ in range(r.choice([1, 1, 2, 4])):
            op = r.randrange(9)
            i = r.randrange(len(b) + 1)
            if op == 0 and b:  # flip bits
                b[min(i, len(b) - 1)] ^= 1 << r.randrange(8)
            elif op == 1:  # truncate
                del b[i:]
            elif op == 2:  # insert random bytes
                b[i:i] = r.randbytes(r.randint(1, 8))
            elif op == 3:  # newlines / separators
                b[i:i] = r.choice([b"\n", b"\r\n", b"\n\n", b"\x00", b" \n "])
            elif op == 4:  # a huge number
                b[i:i] = r.choice([b"1" * 400, b"-9" * 40, b"1e999999", b"0x10", b"NaN"])
            elif op == 5:  # duplicate a slice
                j = r.randrange(len(b) + 1)
                b[i:i] = b[min(i, j):max(i, j)]
            elif op == 6 and b:  # delete a slice
                del b[i:i + r.randint(1, 10)]
            elif op == 7:  # invalid UTF-8
                b[i:i] = r.choice([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"])
            else:  # swap quotes / brackets
                b = bytearray(bytes(b).replace(r.choice([b'"', b"{", b":", b","]),
                                               r.choice([b"'", b"[", b"}", b""]), 1))
        return bytes(b)

    def deep(self) -> bytes:
        n = self.rng.choice([100, 1000, 10000, 30000])
        opener, closer = self.rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
        inner = opener * n + b"1" + closer * n
        if self.rng.random() < 0.5:
            inner = inner[: len(inner) * 3 // 4]
        return b'{"id":3,"publish":{"channel":"c","data":' + inner + b"}}"

    def payload(self, cid: int) -> bytes:
        """One JSON-protocol frame payload: a (batch of) command(s), damaged or not."""
        r = self.rng
        choice = r.random()
        if choice < 0.15:
            return r.randbytes(r.choice([0, 1, 2, 10, 100, 1000]))
        if choice < 0.2:
            return self.deep()
        n = 1 if r.random() < 0.8 else r.randint(2, 10)
        sep = r.choice([b"\n", b"\n", b"\r\n", b"\n\n"])
        body = sep.join(self.encode(self.command(cid + i, 0.3)) for i in range(n))
        return self.mutate(body, 0.5)

    # -- WebSocket framing

    def frame(self, payload: bytes, opcode: int = 1, **kw: Any) -> bytes:
        """``livenode.frame`` with its mask key from the case's rng."""
        key = self.rng.randbytes(4) if kw.get("masked", True) else None
        return frame(payload, opcode, key=key, **kw)

    def handshake(self, path: str = "/connection/websocket", extra: str = "") -> bytes:
        key = base64.b64encode(self.rng.randbytes(16)).decode()
        return (f"GET {path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n{extra}\r\n").encode()

    def connect_frame(self) -> bytes:
        return self.frame(self.encode({"id": 1, "connect": {"token": self.token(1.0)}}))

    def close_frame(self) -> bytes:
        return self.frame(struct.pack("!H", 1000), opcode=8)

    def bad_frame(self) -> bytes:
        r = self.rng
        p = self.payload(2)[:200]
        kind = r.randrange(14)
        if kind == 0:
            return self.frame(p, rsv=r.choice([0x40, 0x20, 0x10, 0x70]))
        if kind == 1:
            return self.frame(p, opcode=r.choice([3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF]))
        if kind == 2:
            return self.frame(p, masked=False)
        if kind == 3:  # a length that is a lie (the bytes that follow are the next frames)
            return self.frame(p[:10], length=r.choice([2**63 - 1, 2**64 - 1, 10**9, 65537,
                                                       70000, 200]))
        if kind == 4:  # control frame too long / fragmented
            return self.frame(r.randbytes(r.randint(126, 300)), opcode=r.choice([8, 9, 10]))
        if kind == 5:
            return self.frame(b"x", opcode=9, fin=False)
        if kind == 6:  # continuation without a start
            return self.frame(p, opcode=0, fin=r.random() < 0.5)
        if kind == 7:  # a new data frame inside a fragmented message
            return self.frame(p[:5], fin=False) + self.frame(p, opcode=r.choice([1, 2]))
        if kind == 8:  # odd close frames
            code = r.choice([0, 999, 1004, 1005, 1006, 1015, 2999, 3000, 4999, 5000, 65535])
            reason = r.choice([b"", b"\xff\xfe", "é".encode() * 60, b"bye"])
            return self.frame(r.choice([b"\x03", struct.pack("!H", code) + reason]), opcode=8)
        if kind == 9:  # ping / unsolicited pong
            return self.frame(r.randbytes(r.randint(0, 125)), opcode=r.choice([9, 10]))
        if kind == 10:  # non-minimal length encoding
            return self.frame(p, width=(2 if r.random() < 0.5 else 8) if len(p) < 126 else None)
        if kind == 11:  # a header cut short
            return self.frame(p)[: r.randint(1, 5)]
        if kind == 12:  # text with invalid UTF-8 / binary JSON
            return self.frame(b'{"id":2,"ping":{}}\xff', opcode=r.choice([1, 2]))
        return self.frame(b"", opcode=r.choice([1, 2]))

    # -- Protobuf protocol

    @staticmethod
    def varint(n: int) -> bytes:
        out = bytearray()
        n &= (1 << 70) - 1
        while True:
            if n < 0x80:
                return bytes(out) + bytes((n,))
            out.append(0x80 | (n & 0x7F))
            n >>= 7

    def pb_field(self, num: int, wire: int, value: bytes | int) -> bytes:
        key = self.varint(num << 3 | wire)
        if wire == 0:
            return key + self.varint(int(value))
        if isinstance(value, int):
            value = value.to_bytes(8 if wire == 1 else 4, "little", signed=False)
        return key + (self.varint(len(value)) + value if wire == 2 else value)

    def pb_message(self, depth: int = 0) -> bytes:
        r = self.rng
        out = b""
        for _ in range(r.randrange(5)):
            num, wire = r.randint(1, 20), r.choice([0, 0, 2, 2, 2, 1, 5, 3, 4, 6, 7])
            if wire in (3, 4, 6, 7):
                out += self.varint(num << 3 | wire)
            elif wire == 0:
                out += self.pb_field(num, 0, r.choice(INTERESTING_INTS) & (2**64 - 1))
            elif wire == 2:
                inner = self.pb_message(depth + 1) if depth < 2 and r.random() < 0.3 else (
                    self.text().encode("utf-8", "surrogatepass"))
                out += self.pb_field(num, 2, inner)
            else:
                out += self.pb_field(num, wire, r.getrandbits(64 if wire == 1 else 32))
        return out

    def pb_frame(self, cid: int) -> bytes:
        r = self.rng
        parts = []
        for i in range(r.choice([1, 1, 1, 3])):
            body = self.pb_field(1, 2, self.channel().encode("utf-8", "surrogatepass"))
            if r.random() < 0.5:
                body = self.pb_message()
            msg = self.pb_field(1, 0, cid + i) + self.pb_field(r.randint(4, 15), 2, body)
            msg = self.mutate(msg, 0.3)
            prefix = self.varint(len(msg) + r.choice([0, 0, 0, 1, -1, 1000]))
            parts.append(prefix + msg)
        return self.frame(b"".join(parts), opcode=2)

    # -- HTTP

    def http(self, method: str, path: str, body: bytes = b"", headers: str = "",
             keep: bool = True) -> bytes:
        length = f"Content-Length: {len(body)}\r\n" if body or method == "POST" else ""
        close = "" if keep else "Connection: close\r\n"
        return (f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\n{length}{close}{headers}\r\n"
                .encode("utf-8", "surrogatepass") + body)

    def api_body(self) -> bytes:
        r = self.rng
        method = r.choice(API_METHODS)
        params: dict[str, Any] = {}
        for key in r.sample(["channel", "channels", "data", "user", "client", "session",
                             "limit", "since", "reverse", "offset", "epoch", "info",
                             "idempotency_key", "tags", "skip_history", "delta", "commands",
                             "pattern", "disconnect", "expire_at", "expired"], r.randint(0, 5)):
            params[key] = self.value() if key != "channel" else self.channel()
        if method == "batch":
            params["commands"] = [{r.choice(API_METHODS): {"channel": self.channel(),
                                                           "data": self.value()}}
                                  for _ in range(r.randint(0, 20))]
        obj: Any = params if r.random() < 0.8 else {"method": method, "params": params}
        data = self.encode(obj)
        if r.random() < 0.3:
            data = self.mutate(data)
        elif r.random() < 0.05:
            data = self.deep()
        return data

    def api_request(self, keep: bool = True) -> bytes:
        r = self.rng
        auth = r.choice([f"X-API-Key: {API_KEY}\r\n", f"Authorization: apikey {API_KEY}\r\n",
                         "X-API-Key: wrong\r\n", "", f"X-API-Key: {API_KEY}\r\n"])
        path = r.choice(["/api", *(f"/api/{m}" for m in API_METHODS), "/api/publish/x",
                         f"/api/publish?api_key={API_KEY}"])
        ctype = r.choice(["Content-Type: application/json\r\n", "",
                          "Content-Type: application/octet-stream\r\n"])
        return self.http(r.choice(["POST", "POST", "POST", "GET", "PUT"]), path,
                         self.api_body(), auth + ctype, keep)

    def garbage_request(self) -> bytes:
        r = self.rng
        kind = r.randrange(9)
        if kind == 0:
            return r.randbytes(r.choice([1, 10, 100, 2000])) + b"\r\n\r\n"
        if kind == 1:  # odd request line
            version = r.choice(["HTTP/1.1", "HTTP/1.0", "HTTP/9.9", "HTTP/1", "", "HTTP/1.1 x"])
            path = r.choice([*PATHS, self.text(), "/" + "a" * 9000, "http://x/health", ""])
            return (f"{r.choice(METHODS)} {path} {version}\r\nHost: x\r\n\r\n"
                    .encode("utf-8", "surrogatepass"))
        if kind == 2:  # a huge header
            return self.http("GET", r.choice(PATHS), headers=f"X-Big: {'a' * 70000}\r\n")
        if kind == 3:  # many headers
            return self.http("GET", "/health", headers="".join(
                f"X-H{i}: {i}\r\n" for i in range(r.choice([100, 1000, 5000]))))
        if kind == 4:  # broken header lines
            return (b"GET /health HTTP/1.1\r\n" + r.choice(
                [b"Host x\r\n", b": empty\r\n", b"Bad\x00Name: v\r\n", b" folded: v\r\n",
                 b"X: \xff\xfe\r\n", b"Host: a\r\nHost: b\r\n", b"X: a\nY: b\n"]) + b"\r\n")
        if kind == 5:  # content-length lies
            cl = r.choice(["-1", "abc", "99999999999999999999", "1, 2", "5\r\nContent-Length: 7"])
            return (f"POST /api/publish HTTP/1.1\r\nHost: x\r\nX-API-Key: {API_KEY}\r\n"
                    f"Content-Length: {cl}\r\n\r\n{{}}").encode()
        if kind == 6:  # chunked bodies, good and bad
            chunks = r.choice([b"2\r\n{}\r\n0\r\n\r\n", b"zz\r\n{}\r\n0\r\n\r\n",
                               b"ffffffffffffffffff\r\n", b"2\r\n{}0\r\n\r\n", b"0\r\n"])
            return (b"POST /api/info HTTP/1.1\r\nHost: x\r\nX-API-Key: " + API_KEY.encode()
                    + b"\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks)
        if kind == 7:  # other protocols
            return r.choice([b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"\x16\x03\x01\x02\x00\x01",
                             b"GET /\r\n\r\n", b"\r\n\r\n\r\n", b"SSH-2.0-x\r\n"])
        path = r.choice(PATHS) + r.choice(["", "?", "?a=b&a=c", "?cf_connect=%ZZ", "#frag"])
        return self.http(r.choice(METHODS[:9]), path, r.randbytes(r.randint(0, 50)),
                         r.choice(["", "Origin: http://evil\r\n", "Expect: 100-continue\r\n"]))

    def connect_body(self) -> bytes:
        """A body for uni_*/emulated stream connects: usually damaged."""
        r = self.rng
        req = self.request("connect")
        obj: Any = req if r.random() < 0.6 else {"id": 1, "connect": req}
        return self.mutate(self.encode(obj), 0.5)

    def emulation_body(self, session: str = "", node: str = "") -> bytes:
        r = self.rng
        cmds = b"\n".join(self.encode(self.command(i + 2, 0.2)) for i in range(r.randint(1, 5)))
        cmds = self.mutate(cmds, 0.3)
        obj: Any = {"session": session or self.text(), "node": node or self.text(),
                    "data": cmds.decode("utf-8", "replace")}
        if r.random() < 0.2:
            obj[r.choice(["session", "node", "data"])] = self.value()
        data = self.encode(obj) if r.random() < 0.9 else r.randbytes(r.randint(0, 300))
        return self.mutate(data, 0.2)


# ------------------------------------------------------------------ cases

CaseMaker = Callable[[Gen], Case]


def case_ws_soft(g: Gen) -> Case:
    """Connect, then many valid-shaped commands with random values (a few wild ones)."""
    c = Case("ws_soft")
    c.send(g.handshake() + g.connect_frame(), 2)
    n = g.rng.choice([20, 50, 100, 200])
    frames = [g.frame(g.encode(g.command(i + 2, 0.03))) for i in range(n)]
    c.send_frames(frames, 25)
    c.send(g.close_frame())
    return c


def case_ws_wild(g: Gen) -> Case:
    """Random bytes / damaged JSON frames, before or after a valid connect."""
    c = Case("ws_wild_after" if g.rng.random() < 0.6 else "ws_wild_before")
    head = g.handshake()
    if c.kind == "ws_wild_after":
        c.send(head + g.connect_frame(), 2)
    else:
        c.send(head)
    if g.rng.random() < 0.3:
        c.steps.append("head")
    for i in range(g.rng.choice([1, 3, 10])):
        c.send(g.frame(g.payload(i + 2), opcode=g.rng.choice([1, 1, 1, 2])))
    return c


def case_ws_framing(g: Gen) -> Case:
    c = Case("ws_framing")
    c.send(g.handshake() + (g.connect_frame() if g.rng.random() < 0.5 else b""))
    for _ in range(g.rng.choice([1, 2, 5])):
        c.send(g.bad_frame())
    c.send(g.close_frame())
    return c


def case_ws_fragments(g: Gen) -> Case:
    """A fragment storm: a message cut into many (often empty) continuation frames."""
    r = g.rng
    c = Case("ws_fragments")
    c.send(g.handshake() + g.connect_frame(), 2)
    n = r.choice([100, 100, 1000, 1000, 10000])
    msg = g.encode({"id": 2, "publish": {"channel": "fz1", "data": {"s": "y" * n}}})
    variant = r.randrange(3)
    if variant == 0:  # the message spread over n fragments
        cuts = sorted(r.randrange(len(msg)) for _ in range(n - 1))
        parts = [msg[a:b] for a, b in itertools.pairwise([0, *cuts, len(msg)])]
    elif variant == 1:  # n empty fragments around it
        parts = [msg[:5], *([b""] * (n - 2)), msg[5:]]
    else:  # never finished
        parts = [msg[:5], *([b""] * n)]
    frames = [g.frame(p, opcode=1 if i == 0 else 0, fin=variant < 2 and i == len(parts) - 1)
              for i, p in enumerate(parts)]
    if r.random() < 0.3:  # pings between fragments are legal
        frames = [f + g.frame(b"p", opcode=9) if i % 50 == 0 else f for i, f in enumerate(frames)]
    c.send_frames(frames, 2000)
    c.send(g.close_frame())
    return c


def case_ws_protobuf(g: Gen) -> Case:
    c = Case("ws_protobuf")
    path = g.rng.choice(["/connection/websocket?format=protobuf", "/connection/websocket"])
    c.send(g.handshake(path, "Sec-WebSocket-Protocol: centrifuge-protobuf\r\n"))
    if g.rng.random() < 0.7:
        connect = g.pb_field(1, 0, 1) + g.pb_field(4, 2, g.pb_field(1, 2, g.token(1).encode()))
        c.send(g.frame(g.varint(len(connect)) + connect, opcode=2))
    for i in range(g.rng.choice([1, 5, 20])):
        c.send(g.pb_frame(i + 2))
    c.send(g.close_frame())
    return c


def case_ws_handshake(g: Gen) -> Case:
    r = g.rng
    c = Case("ws_handshake")
    key = base64.b64encode(r.randbytes(16)).decode()
    lines = ["Host: x", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    i = r.randrange(len(lines))
    lines[i] = r.choice(["", lines[i].split(":")[0] + ": " + g.text(), "X: y",
                         "Sec-WebSocket-Version: 8", "Sec-WebSocket-Key: short",
                         "Origin: http://evil.example", "Sec-WebSocket-Protocol: " + g.text(),
                         "Connection: keep-alive, Upgrade", "Upgrade: h2c"])
    path = r.choice(["/connection/websocket", "/connection/uni_websocket",
                     "/connection/websocket?format=" + g.text(), "/connection/websocket?cf_ws_"
                     "frame_ping_pong=true", "/api/publish"])
    target = quote(path, safe="/?=&", errors="surrogatepass")
    c.send((f"{r.choice(['GET', 'POST', 'GET'])} {target} HTTP/1.1\r\n"
            + "".join(f"{x}\r\n" for x in lines if x) + "\r\n").encode("utf-8", "surrogatepass"))
    c.send(g.connect_frame())
    return c


def case_http_garbage(g: Gen) -> Case:
    c = Case("http_garbage", read_timeout=1.0, half_close=g.rng.random() < 0.5)
    for _ in range(g.rng.choice([1, 2, 5])):
        c.send(g.garbage_request())
    return c


def case_http_api(g: Gen) -> Case:
    c = Case("http_api", read_timeout=1.0, half_close=g.rng.random() < 0.5)
    n = g.rng.choice([1, 10, 50, 100])
    for i in range(n):
        c.send(g.api_request(keep=i < n - 1 or c.half_close))
    return c


def case_http_streams(g: Gen) -> Case:
    """Bad connect bodies for the uni_* and emulated streams, bad /emulation posts."""
    r = g.rng
    c = Case("http_streams", read_timeout=0.5, half_close=r.random() < 0.5)
    for _ in range(r.choice([1, 3, 8])):
        kind = r.randrange(6)
        if kind == 0:
            c.send(g.http("POST", "/connection/uni_http_stream", g.connect_body()))
        elif kind == 1:
            c.send(g.http("GET", "/connection/uni_sse?cf_connect="
                          + quote(g.connect_body().decode("utf-8", "replace"))))
        elif kind == 2:
            path = r.choice(["/connection/uni_sse", "/connection/sse",
                             "/connection/http_stream"])
            ctype = r.choice(["", "Content-Type: application/octet-stream\r\n"])
            c.send(g.http("POST", path, g.connect_body(), ctype))
        elif kind == 3:
            c.send(g.http("GET", "/connection/sse?cf_connect=" + r.choice(
                ["", "%ZZ", quote(g.connect_body().decode("utf-8", "replace"))])))
        elif kind == 4:
            ctype = r.choice(["", "Content-Type: application/octet-stream\r\n",
                              "Origin: http://evil\r\n"])
            body = g.emulation_body() if r.random() < 0.95 else b"x" * 70000
            c.send(g.http(r.choice(["POST", "POST", "OPTIONS", "GET"]), "/emulation", body,
                          ctype))
        else:
            c.send(g.http("POST", "/emulation", g.pb_message(),
                          "Content-Type: application/octet-stream\r\n"))
    return c


def case_emulation_live(g: Gen) -> Case:
    """Open an HTTP stream, then send damaged /emulation posts to its real session."""
    c = Case("emulation_live", read_timeout=0.5)
    connect = g.encode({"id": 1, "connect": {"token": g.token(1.0)}})
    c.send(g.http("POST", "/connection/http_stream", connect))
    c.steps.append("session")
    for _ in range(g.rng.choice([1, 5, 20])):
        c.send(g.http("POST", "/emulation", g.emulation_body("@@SESSION@@", "@@NODE@@")))
    return c


CASES: list[tuple[CaseMaker, float]] = [
    (case_ws_soft, 25), (case_ws_wild, 20), (case_ws_framing, 12), (case_ws_fragments, 0.5),
    (case_ws_protobuf, 8), (case_ws_handshake, 4), (case_http_garbage, 10), (case_http_api, 10),
    (case_http_streams, 6), (case_emulation_live, 2),
]


def build_case(seed: int, index: int, tokens: list[str], port: int) -> Case:
    g = Gen(random.Random(f"{seed}/{index}"), tokens, port)
    maker = g.rng.choices([m for m, _ in CASES], [w for _, w in CASES])[0]
    case = maker(g)
    case.reset = g.rng.random() < 0.08
    return case


# ------------------------------------------------------------------ the campaign


def server_close_code(data: bytes) -> str:
    """How a WebSocket answer (101 head + server frames) ended."""
    pos = data.find(b"\r\n\r\n") + 4
    while pos + 2 <= len(data):
        op, n = data[pos] & 0x0F, data[pos + 1] & 0x7F
        hdr = 2
        if n == 126:
            n, hdr = int.from_bytes(data[pos + 2:pos + 4], "big"), 4
        elif n == 127:
            n, hdr = int.from_bytes(data[pos + 2:pos + 10], "big"), 10
        if op == 8:
            body = data[pos + hdr:pos + hdr + n]
            return f"ws close {int.from_bytes(body[:2], 'big') if len(body) >= 2 else '-'}"
        pos += hdr + n
    return "ws no close frame"


@dataclass
class Campaign:
    args: argparse.Namespace
    port: int
    proc: subprocess.Popen[bytes]
    tokens: list[str]
    inputs: Counter[str] = field(default_factory=Counter)  # per case kind
    outcomes: Counter[str] = field(default_factory=Counter)
    history: list[tuple[float, float, int, str]] = field(default_factory=list)
    published: list[int] = field(default_factory=list)
    received: list[int] = field(default_factory=list)
    honest_disconnects: int = 0
    fuzzer_errors: list[str] = field(default_factory=list)  # bugs of this script
    crashed: bool = False
    cpu: tuple[float, float] = (0.0, 0.0)  # server, fuzzer CPU seconds during the campaign
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def total(self) -> int:
        return sum(self.inputs.values())

    async def run_case(self, index: int) -> None:
        try:
            case = build_case(self.args.seed, index, self.tokens, self.port)
        except Exception:  # a bug of this script: report it, keep fuzzing
            self.fuzzer_errors.append(f"case {index}: {traceback.format_exc()}")
            return
        if self.args.show:
            print(f"--- case {index} ({case.kind}, {case.inputs} inputs)")
            for step in case.steps:
                print("   ", repr(step[0][:300]) if isinstance(step, tuple) else step)
        t0 = time.monotonic()
        try:
            outcome = await asyncio.wait_for(self.execute(case), 10)
        except TimeoutError:
            outcome = "case timeout"
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            outcome = f"{type(exc).__name__}"
        except Exception:
            self.fuzzer_errors.append(f"case {index}: {traceback.format_exc()}")
            outcome = "fuzzer error"
        self.history.append((t0, time.monotonic(), index, case.kind))
        self.outcomes[f"{case.kind}: {outcome}"] += 1
        if self.args.show:
            print(f"    -> {outcome}")

    async def execute(self, case: Case) -> str:
        """Write the case's steps and read what the server says; how the exchange ended."""
        conns: list[tuple[asyncio.StreamWriter, bytearray, asyncio.Task[None]]] = []

        async def read_all(reader: asyncio.StreamReader, received: bytearray) -> None:
            while len(received) < 1 << 20:
                chunk = await reader.read(65536)
                if not chunk:
                    return
                received.extend(chunk)
                if received.startswith(b"HTTP/1.1 101") and b"\x88" in chunk:
                    if server_close_code(bytes(received)).startswith("ws close"):
                        return

        async def open_connection() -> None:
            reader, writer = await asyncio.open_connection(HOST, self.port)
            received = bytearray()
            conns.append((writer, received, asyncio.create_task(read_all(reader, received))))

        await open_connection()
        try:
            for step in case.steps:
                writer, received, reading = conns[-1]
                if isinstance(step, tuple):
                    if writer.transport.is_closing():
                        break
                    data, n = step
                    if case.kind == "emulation_live" and b"@@SESSION@@" in data:
                        data = self.fill_session(data, bytes(conns[0][1]))
                    writer.write(data)
                    self.inputs[case.kind] += n
                    await writer.drain()
                else:  # "head" / "session": wait (<= 1 s) for the answer to get this far
                    want = b"\r\n\r\n" if step == "head" else b'"session"'
                    for _ in range(100):
                        if want in received or reading.done():
                            break
                        await asyncio.sleep(0.01)
                    if step == "session":  # the stream keeps its connection: post on another
                        await open_connection()
            writer, received, reading = conns[-1]
            if case.reset:
                abort(writer)
                return "reset by us"
            if case.half_close and writer.can_write_eof() and not writer.transport.is_closing():
                writer.write_eof()
            try:
                await asyncio.wait_for(asyncio.shield(reading), case.read_timeout)
            except TimeoutError:
                pass
        except (ConnectionError, BrokenPipeError):
            pass
        finally:
            for writer, _, reading in conns:
                reading.cancel()
                writer.transport.abort()
        data = bytes(conns[-1][1])
        if data.startswith(b"HTTP/1.1 101"):
            return server_close_code(data)
        statuses = re.findall(rb"HTTP/1\.1 (\d{3})", data[:200_000])
        if not statuses:
            return "no answer"
        return "http " + ",".join(sorted({s.decode() for s in statuses}))

    @staticmethod
    def fill_session(data: bytes, answer: bytes) -> bytes:
        session = re.search(rb'"session":"([^"]*)"', answer)
        node = re.search(rb'"node":"([^"]*)"', answer)
        body = data.split(b"\r\n\r\n", 1)
        filled = body[1].replace(b"@@SESSION@@", session.group(1) if session else b"none")
        filled = filled.replace(b"@@NODE@@", node.group(1) if node else b"none")
        head = re.sub(rb"Content-Length: \d+", b"Content-Length: %d" % len(filled), body[0])
        return head + b"\r\n\r\n" + filled

    async def worker(self, counter: itertools.count[int], deadline: float) -> None:
        while not self.stop.is_set() and self.total() < self.args.inputs:
            if time.monotonic() > deadline:
                return
            await self.run_case(next(counter))

    async def honest_subscriber(self, ready: asyncio.Event) -> None:
        url = f"ws://{HOST}:{self.port}/connection/websocket"
        hello = "\n".join(json.dumps(x) for x in (
            {"id": 1, "connect": {"token": token("honest-probe-user")}},
            {"id": 2, "subscribe": {"channel": HONEST_CHANNEL}}))
        last_error = ""
        while not self.stop.is_set():
            try:
                async with ws_connect(url, ping_interval=None, max_size=None,
                                      compression=None, open_timeout=10) as ws:
                    await ws.send(hello)
                    async for message in ws:
                        for line in str(message).split("\n"):
                            if not line.strip():
                                continue
                            m = json.loads(line)
                            if m == {}:
                                await ws.send("{}")
                            elif m.get("id") == 2:
                                ready.set()
                            elif (pub := m.get("push", {}).get("pub")) is not None:
                                self.received.append(pub["data"]["seq"])
            except Exception as exc:  # any way the connection ends; retried below
                last_error = repr(exc)[:200]
            if not self.stop.is_set():
                self.honest_disconnects += 1
                print(f"honest subscriber disconnected: {last_error}", flush=True)
                await asyncio.sleep(0.5)

    async def honest_publisher(self) -> None:
        api, t0 = Api(self.port), time.monotonic()
        for seq in range(1, 10**9):
            if self.stop.is_set():
                break
            await asyncio.sleep(max(0.0, t0 + seq / 50 - time.monotonic()))
            try:
                answer = await api.call("publish", {"channel": HONEST_CHANNEL,
                                                    "data": {"seq": seq}})
                if "result" in answer:
                    self.published.append(seq)
            except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError):
                pass

    async def monitor(self, t0: float, stalls: Callable[[], tuple[int, float]]) -> None:
        last = 0
        while not self.stop.is_set():
            await asyncio.sleep(5)
            if self.proc.poll() is not None:
                self.crashed = True
                self.stop.set()
                print(f"server exited with {self.proc.returncode}", flush=True)
                return
            n, dt = self.total(), time.monotonic() - t0
            count, worst = stalls()
            print(f"{dt:6.0f}s  inputs {n:>9,}  ({(n - last) / 5:,.0f}/s)  stalls {count}"
                  f"  max probe {worst * 1000:.0f} ms", flush=True)
            last = n


async def campaign(c: Campaign, stall_info: Callable[[], tuple[int, float]]) -> float:
    ready = asyncio.Event()
    honest = asyncio.create_task(c.honest_subscriber(ready))
    await asyncio.wait_for(ready.wait(), 30)
    publisher = asyncio.create_task(c.honest_publisher())
    t0 = time.monotonic()
    cpu0 = (cpu_seconds(c.proc.pid), time.process_time())
    monitor = asyncio.create_task(c.monitor(t0, stall_info))
    if c.args.cases:
        for index in c.args.cases:
            await c.run_case(index)
    else:
        counter = itertools.count()
        deadline = t0 + c.args.seconds
        await asyncio.gather(*(c.worker(counter, deadline) for _ in range(c.args.workers)))
    elapsed = time.monotonic() - t0
    c.cpu = (cpu_seconds(c.proc.pid) - cpu0[0], time.process_time() - cpu0[1])
    await asyncio.sleep(1.0)  # honest publications continue a little after the fuzz
    c.stop.set()
    await publisher
    last = c.published[-1] if c.published else 0
    for _ in range(50):  # the last ones reach the subscriber
        if (c.received and c.received[-1] >= last) or c.crashed:
            break
        await asyncio.sleep(0.1)
    for task in (honest, monitor):
        task.cancel()
    await asyncio.gather(honest, monitor, return_exceptions=True)
    return elapsed


def in_flight(history: list[tuple[float, float, int, str]], t: float,
              seconds: float) -> list[tuple[float, float, int, str]]:
    """The cases running at some moment of a probe that started at t and took ``seconds``."""
    return [h for h in history if h[0] <= t + seconds and h[1] >= t]


def exception_summary(log: list[str]) -> tuple[Counter[str], dict[str, list[str]]]:
    """Tracebacks grouped by their final exception (numbers blanked) and the deepest frame in
    tidings' code, counted; and the first traceback of each group."""
    counts: Counter[str] = Counter()
    first: dict[str, list[str]] = {}
    i = 0
    while i < len(log):
        if not log[i].startswith("Traceback"):
            i += 1
            continue
        end = i + 1  # the record goes on until the next timestamped line (chained ones too)
        while end < len(log) and not re.match(r"\d{4}-\d\d-\d\d ", log[end]):
            end += 1
        block = log[i:end]
        last = next((x for x in reversed(block) if x.strip() and not x.startswith(" ")), "?")
        frames = [m for x in block if (m := re.search(
            r'File "[^"]*?/(tidings/[^"]+)", line (\d+), in (\S+)', x))]
        where = f" @ {frames[-1][1]}:{frames[-1][2]} {frames[-1][3]}" if frames else ""
        key = re.sub(r"\d+", "N", last)[:110] + where
        counts[key] += 1
        first.setdefault(key, block)
        i = end
    return counts, first


async def triage(c: Campaign, suspects: list[int]) -> list[tuple[int, str, float]]:
    """Replay each suspect case alone while GETting /health back to back; the worst latency."""
    r, w = await asyncio.open_connection(HOST, c.port)
    counted = c.inputs.copy()  # replays are not campaign inputs
    out = []
    try:
        for index in suspects:
            case = build_case(c.args.seed, index, c.tokens, c.port)
            task = asyncio.create_task(c.execute(case))
            worst = 0.0
            while not task.done():
                t = time.monotonic()
                w.write(HEALTH)
                await asyncio.wait_for(r.readuntil(b"{}"), 10)
                worst = max(worst, time.monotonic() - t)
                await asyncio.sleep(0.01)
            if not task.cancelled():
                task.exception()  # a replay that failed to connect is not the point here
            out.append((index, case.kind, worst))
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        print(f"triage stopped: {exc!r}", flush=True)
    w.close()
    c.inputs = counted
    return out


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def report(c: Campaign, elapsed: float, probes: list[Probe],
           health: int, log: list[str], triaged: list[tuple[int, str, float]] | None) -> bool:
    lat = [p[1] for p in probes]
    stalls = sorted((p for p in probes if p[1] > STALL), key=lambda p: -p[1])
    failed_probes = sum(1 for p in probes if not p[2])
    published, received = c.published, c.received
    got = set(received)
    missing = sum(1 for s in published if s not in got)
    disorder = sum(1 for a, b in itertools.pairwise(received) if b <= a)
    tracebacks = [i for i, line in enumerate(log) if "Traceback" in line or "Exception" in line]
    crashed = c.crashed
    n = c.total()
    rows: list[tuple[str, str, bool]] = [
        ("seed", str(c.args.seed), True),
        ("inputs sent", f"{n:,}", True),
        ("inputs/s", f"{n / elapsed:,.0f}" if elapsed else "-", True),
        ("connections (cases)", f"{len(c.history):,}", True),
        ("server / fuzzer CPU", f"{c.cpu[0] / elapsed:.0%} / {c.cpu[1] / elapsed:.0%}"
         if elapsed else "-", True),
        ("server crashes", str(int(crashed)), not crashed),
        ("final /health status", str(health), health == 200),
        ("probes", f"{len(probes):,}", True),
        (f"stalls over {STALL * 1000:.0f} ms", str(len(stalls)), not stalls),
        ("failed probes", str(failed_probes), failed_probes == 0),
        ("max probe latency", f"{max(lat, default=0) * 1000:.1f} ms", True),
        ("p99 probe latency", f"{percentile(lat, 0.99) * 1000:.1f} ms", True),
        ("probe wake-up lag max / p99 (the probe's own delay)",
         f"{max((p[3] for p in probes), default=0) * 1000:.1f} / "
         f"{percentile([p[3] for p in probes], 0.99) * 1000:.1f} ms", True),
        ("honest publications sent", str(len(published)), True),
        ("honest publications received", str(len(received)), True),
        ("honest publications missing", str(missing), missing == 0),
        ("honest out of order / duplicated", str(disorder), disorder == 0),
        ("honest subscriber disconnects", str(c.honest_disconnects), c.honest_disconnects == 0),
        ("traceback lines in the server log", str(len(tracebacks)), not tracebacks),
        ("errors of the fuzzer itself", str(len(c.fuzzer_errors)), not c.fuzzer_errors),
    ]
    print("\n## Summary\n\n| what | value |\n|---|---|")
    for name, value, good in rows:
        print(f"| {name} | {value}{'' if good else ' (FAIL)'} |")
    print("\n## Inputs by case kind\n\n| kind | inputs |\n|---|---|")
    for kind, count in c.inputs.most_common():
        print(f"| {kind} | {count:,} |")
    print("\n## How the server answered (top 40)\n\n| case: outcome | connections |\n|---|---|")
    for outcome, count in c.outcomes.most_common(40):
        print(f"| {outcome} | {count:,} |")
    if stalls:
        print("\n## Worst stalls (case kinds in flight)\n")
        for t, seconds, *_ in stalls[:5]:
            kinds = Counter(h[3] for h in in_flight(c.history, t, seconds))
            print(f"- {seconds * 1000:.0f} ms: {dict(kinds.most_common())}")
    if triaged is not None:
        print(f"\n## Triage: the {len(triaged)} cases in flight during the worst stalls, "
              "replayed one at a time\n")
        culprits = [t for t in triaged if t[2] > STALL]
        for index, kind, seconds in culprits:
            print(f"- case {index} ({kind}) alone: probe {seconds * 1000:.0f} ms; replay: "
                  f"--seed {c.args.seed} --cases {index} --show")
        if not culprits:
            print("no single case stalls the server on its own: the stalls come from the load "
                  "as a whole (or from state it built up)")
    if tracebacks:
        counts, first = exception_summary(log)
        print("\n## Exceptions in the server log\n\n| exception @ deepest tidings frame | count |"
              "\n|---|---|")
        for key, count in counts.most_common(15):
            print(f"| {key} | {count} |")
        for key, _ in counts.most_common(6):
            print(f"\nThe first of `{key}` (innermost frames):\n")
            print("\n".join("    " + x for x in first[key][-10:]))
    if c.fuzzer_errors:
        print("\n## First error of the fuzzer itself\n\n" + c.fuzzer_errors[0])
    ok = all(good for _, _, good in rows)
    print(f"\nverdict: {'PASS' if ok else 'FAIL'} (seed {c.args.seed})")
    return ok


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--inputs", type=int, default=1_000_000)
    p.add_argument("--seconds", type=float, default=1800.0, help="time cap")
    p.add_argument("--seed", type=int, default=int.from_bytes(os.urandom(4), "big"))
    p.add_argument("--workers", type=int, default=16, help="concurrent fuzz connections")
    p.add_argument("--cases", type=lambda s: [int(x) for x in s.split(",")],
                   help="run only these case indices (replay), one at a time")
    p.add_argument("--triage", type=int, default=60,
                   help="after stalls, replay up to N of the cases in flight, one at a time")
    p.add_argument("--save-log", type=Path, help="copy the server's log here")
    p.add_argument("--show", action="store_true", help="print each case's bytes and outcome")
    p.add_argument("--pythonpath", help="import tidings from here (default: the installed one)")
    args = p.parse_args()
    print(f"seed {args.seed}", flush=True)
    with tempfile.TemporaryDirectory(prefix="tidings-fuzz-") as tmp:
        proc, port = start_server(args.pythonpath, Path(tmp))
        try:
            if 1 in os.sched_getaffinity(0):
                os.sched_setaffinity(0, {1})
            ctx = mp.get_context("fork")
            stop_r, stop_w = ctx.Pipe(duplex=False)
            res_r, res_w = ctx.Pipe(duplex=False)
            live = ctx.Array("d", 2)
            probe = ctx.Process(target=probe_main, args=(port, stop_r, res_w, live), daemon=True)
            probe.start()
            os.nice(5)  # the probe (nice 0) wins the core when it wakes up
            c = Campaign(args, port, proc, make_tokens())
            print(f"server pid {proc.pid} port {port}; fuzzing with {args.workers} connections",
                  flush=True)
            elapsed = asyncio.run(campaign(c, lambda: (int(live[0]), live[1])))
            stop_w.send(True)
            probes: list[Probe] = res_r.recv()
            probe.join(5)
            triaged = None
            stalls = sorted((p for p in probes if p[1] > STALL), key=lambda p: -p[1])
            if stalls and args.triage and proc.poll() is None:
                suspects: list[int] = []
                for t, seconds, *_ in stalls[:3]:
                    around = sorted(in_flight(c.history, t, seconds), key=lambda h: h[0] - h[1])
                    suspects += [h[2] for h in around if h[2] not in suspects]
                print(f"triage: replaying {min(len(suspects), args.triage)} cases", flush=True)
                triaged = asyncio.run(triage(c, suspects[: args.triage]))
            try:
                with socket.create_connection((HOST, port), timeout=5) as sock:
                    status = health(sock)
            except OSError:
                status = 0
            c.crashed |= proc.poll() is not None
        finally:
            stop_server(proc)
        if args.save_log:
            shutil.copyfile(Path(tmp) / "server.log", args.save_log)
        log = (Path(tmp) / "server.log").read_text(errors="replace").splitlines()
    return 0 if report(c, elapsed, probes, status, log, triaged) else 1


if __name__ == "__main__":
    sys.exit(main())
