#!/usr/bin/env python3
"""A bounded soak test: does a Tidings node keep its size under steady churn?

One server (core 0; this process on core 1) holds ``--subscribers`` honest WebSocket subscribers
while the HTTP API publishes at ``--publish-rate`` and connections churn at ``--churn-rate``
(connect/subscribe/publish-or-history/presence then a clean close or a TCP reset; clients that
never connect; bad or expired tokens and malformed frames, which must be refused; uni HTTP
streams). Every ``--sample-seconds``: RSS, fds, threads (/proc) and num_clients/num_subs/
num_channels (+ ``process.tasks`` when reported) from ``/api/info``. A metric grows when the mean
of the last 20% of the samples exceeds the mean of the 20%-40% window by more than TOLERANCE.
Honest subscribers must get every publication once, in order; 15 s after the churn the node must
count only them. Exit 0 when nothing grows or is lost, every bad client was refused, the server
lives and logged no traceback; else 1.

    python benchmarks/soak.py --minutes 5 [--pythonpath /work/base/src]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import os
import random
import struct
import sys
import tempfile
import time
import weakref
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from livenode import HOST, Api, abort, alive, frame, proc_stats, start_server, stop_server, token

CHURN_CHANNELS = [f"churn{i}" for i in range(8)]
TOLERANCE = {  # metric -> (relative, absolute): it grows if the rise exceeds both
    "rss_mib": (0.10, 8.0), "fds": (0.05, 5), "threads": (0.05, 2), "tasks": (0.05, 5),
    "num_clients": (0.05, 5), "num_subs": (0.05, 5), "num_channels": (0.05, 2),
}
CHURN_KINDS = {"clean": 30, "reset": 20, "silent": 10, "bad_token": 15, "malformed": 15,
               "uni_stream": 10}
CHURN_SOCKETS: weakref.WeakSet[asyncio.StreamWriter] = weakref.WeakSet()  # closed at the end


def cmd(obj: Any) -> bytes:
    return frame(json.dumps(obj, separators=(",", ":")).encode())


class Closed(Exception):
    def __init__(self, code: int | None) -> None:
        super().__init__(f"closed {code}")
        self.code = code


class WS:
    """A minimal JSON-protocol WebSocket client on asyncio streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.r, self.w = reader, writer
        self.pending: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, port: int, churn: bool = True) -> WS:
        r, w = await asyncio.open_connection(HOST, port)
        if churn:
            CHURN_SOCKETS.add(w)
        key = base64.b64encode(os.urandom(16)).decode()
        w.write(f"GET /connection/websocket HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        head = await r.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            w.close()
            raise ConnectionError(head.split(b"\r\n")[0].decode(errors="replace"))
        return cls(r, w)

    async def messages(self) -> list[dict[str, Any]]:
        """The JSON messages of the next frame (pings answered); raises Closed."""
        try:
            h = await self.r.readexactly(2)
            n = h[1] & 0x7F
            if n >= 126:
                n = int.from_bytes(await self.r.readexactly(2 if n == 126 else 8), "big")
            payload = await self.r.readexactly(n)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise Closed(None) from exc
        if h[0] & 0x0F == 8:
            raise Closed(int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None)
        out = [json.loads(line) for line in payload.split(b"\n") if line.strip()]
        if {} in out:
            self.w.write(cmd({}))
        return [m for m in out if m]

    async def reply(self, cid: int) -> dict[str, Any]:
        while True:
            for m in self.pending:
                if m.get("id") == cid:
                    self.pending.remove(m)
                    return m
            self.pending.extend(await self.messages())

    async def wait_closed(self) -> int | None:
        """Read until the server closes: its close code (None: EOF without a close frame)."""
        try:
            while True:
                await self.messages()
        except Closed as c:
            return c.code


@dataclass
class Soak:
    port: int
    pid: int
    args: argparse.Namespace
    rng: random.Random
    channels: list[str]
    published: dict[str, list[int]] = field(default_factory=dict)  # channel -> acked seqs
    received: list[tuple[str, list[int]]] = field(default_factory=list)  # per subscriber
    honest_lost: int = 0  # honest subscribers the server disconnected
    publish_errors: int = 0
    churn: Counter[str] = field(default_factory=Counter)  # "kind: outcome" -> count
    problems: list[str] = field(default_factory=list)  # not refused / error replies
    samples: list[dict[str, float]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def honest(self, i: int, ready: asyncio.Event) -> None:
        ch = self.channels[i % len(self.channels)]
        ws = await WS.open(self.port, churn=False)
        ws.w.write(cmd({"id": 1, "connect": {"token": token(f"honest{i}")}})
                   + cmd({"id": 2, "subscribe": {"channel": ch}}))
        for cid in (1, 2):
            if "error" in (rep := await ws.reply(cid)):
                raise RuntimeError(f"honest subscriber {i}: {rep}")
        got: list[int] = []
        self.received.append((ch, got))
        if len(self.received) == self.args.subscribers:
            ready.set()
        try:
            while True:
                for m in await ws.messages():
                    pub = m.get("push", {}).get("pub")
                    if pub and m["push"].get("channel") == ch and "seq" in pub.get("data", {}):
                        got.append(pub["data"]["seq"])
        except Closed:
            self.honest_lost += 1
        finally:
            ws.w.close()

    async def publisher(self) -> None:
        api, seq, t0 = Api(self.port), Counter[str](), time.monotonic()
        for k in itertools.count():
            if self.stop.is_set():
                return
            await asyncio.sleep(max(0.0, t0 + k / self.args.publish_rate - time.monotonic()))
            ch = self.channels[k % len(self.channels)]
            seq[ch] += 1
            try:
                answer = await api.call("publish", {"channel": ch, "data": {"seq": seq[ch]}})
                if "result" not in answer:
                    raise ValueError(answer)
                self.published.setdefault(ch, []).append(seq[ch])
            except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError):
                self.publish_errors += 1

    async def churner(self) -> None:
        tasks: set[asyncio.Task[None]] = set()
        t0 = time.monotonic()
        for k in itertools.count():
            if self.stop.is_set():
                break
            await asyncio.sleep(max(0.0, t0 + k / self.args.churn_rate - time.monotonic()))
            if len(tasks) < 1000:
                tasks.add(task := asyncio.create_task(self.one_churn(k)))
                task.add_done_callback(tasks.discard)
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for w in list(CHURN_SOCKETS):
            w.close()

    async def one_churn(self, k: int) -> None:
        kinds = self.args.kinds
        kind = self.rng.choices(kinds, [CHURN_KINDS[k] for k in kinds])[0]
        try:
            outcome = await asyncio.wait_for(getattr(self, f"churn_{kind}")(k), 20)
        except (OSError, asyncio.IncompleteReadError, Closed, TimeoutError) as exc:
            outcome = f"error: {type(exc).__name__}"
        except RuntimeError as exc:  # an error reply to a valid command
            outcome = "ERROR REPLY"
            self.problems.append(str(exc)[:200])
        if outcome.startswith("NOT REFUSED"):
            self.problems.append(f"{kind}: {outcome}")
        self.churn[f"{kind}: {outcome}"] += 1

    async def session(self, k: int) -> WS:
        """Connect, subscribe, publish or read history, presence; every reply must be OK."""
        ws = await WS.open(self.port)
        ch = self.rng.choice([*CHURN_CHANNELS, self.channels[0]])
        third: dict[str, Any] = {"history": {"channel": ch, "limit": 10}}
        if ch in CHURN_CHANNELS and self.rng.random() < 0.5:
            third = {"publish": {"channel": ch, "data": {"churn": k}}}
        ws.w.write(cmd({"id": 1, "connect": {"token": token(f"churn{k % 500}")}})
                   + cmd({"id": 2, "subscribe": {"channel": ch}}) + cmd({"id": 3, **third})
                   + cmd({"id": 4, "presence": {"channel": ch}}))
        for cid in (1, 2, 3, 4):
            if "error" in (rep := await ws.reply(cid)):
                raise RuntimeError(f"churn {k} command {cid}: {rep}")
        return ws

    async def churn_clean(self, k: int) -> str:
        ws = await self.session(k)
        ws.w.write(frame(struct.pack("!H", 1000), opcode=8))
        code = await ws.wait_closed()
        ws.w.close()
        return f"closed {code}"

    async def churn_reset(self, k: int) -> str:
        abort((await self.session(k)).w)
        return "reset"

    async def churn_silent(self, k: int) -> str:
        """Never sends connect: the server closes it (stale) or we give up first."""
        ws = await WS.open(self.port)
        try:
            code = await asyncio.wait_for(ws.wait_closed(), self.rng.uniform(0.5, 12))
            return f"server closed {code}"
        except TimeoutError:
            if self.rng.random() < 0.5:
                abort(ws.w)
            else:
                ws.w.close()
            return "we gave up"

    async def churn_bad_token(self, k: int) -> str:
        ws = await WS.open(self.port)
        if self.rng.random() < 0.3:  # expired: an error reply (109), the connection stays
            expired = token("late", exp=int(time.time()) - 60)
            ws.w.write(cmd({"id": 1, "connect": {"token": expired}}))
            rep = await ws.reply(1)
            ws.w.close()
            return f"error {rep['error'].get('code')}" if "error" in rep else f"NOT REFUSED {rep}"
        ws.w.write(cmd({"id": 1, "connect": {"token": token("intruder", "wrong-secret" * 4)}})
                   + cmd({"id": 2, "subscribe": {"channel": self.channels[0]}}))
        return await self.refused(ws)

    async def churn_malformed(self, k: int) -> str:
        ws = await WS.open(self.port)
        variant = self.rng.randrange(4)
        if variant == 1:  # garbage after a valid connect
            ws.w.write(cmd({"id": 1, "connect": {"token": token(f"churn{k % 500}")}}))
            await ws.reply(1)
        ws.w.write([frame(b'{"id":1,"connect":{"tok'), frame(b'{"id":2,"subscribe":{"chan'),
                    frame(b"x" * 70000), frame(b'{"id":1,"connect":{}}', masked=False)][variant])
        return await self.refused(ws)

    async def refused(self, ws: WS) -> str:
        try:
            code = await asyncio.wait_for(ws.wait_closed(), 5)
        except TimeoutError:
            abort(ws.w)
            return "NOT REFUSED (still open after 5 s)"
        ws.w.close()
        return f"refused {code}"

    async def churn_uni_stream(self, k: int) -> str:
        r, w = await asyncio.open_connection(HOST, self.port)
        CHURN_SOCKETS.add(w)
        body = json.dumps({"token": token(f"uni{k % 500}",
                                          channels=[self.rng.choice(CHURN_CHANNELS)])})
        w.write(f"POST /connection/uni_http_stream HTTP/1.1\r\nHost: {HOST}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n{body}".encode())
        head = await r.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"uni_http_stream: {head[:40]!r}")
        await r.readuntil(b'"connect"')
        w.close()
        return "ok"

    async def sample(self, api: Api, t: float) -> dict[str, float]:
        s: dict[str, float] = {"t": round(t), **proc_stats(self.pid)}
        try:
            node = (await api.call("info", {}))["result"]["nodes"][0]
        except (OSError, TimeoutError, asyncio.IncompleteReadError, KeyError, TypeError):
            return s  # no info this time: the means skip this sample
        s.update({k: node.get(k, 0) for k in ("num_clients", "num_subs", "num_channels")})
        if isinstance(node.get("process"), dict) and "tasks" in node["process"]:
            s["tasks"] = node["process"]["tasks"]
        return s | {"churned": sum(self.churn.values())}

    async def sampler(self, t0: float) -> None:
        api = Api(self.port)
        for k in itertools.count():
            await asyncio.sleep(max(0.0, t0 + k * self.args.sample_seconds - time.monotonic()))
            try:
                self.samples.append(s := await self.sample(api, time.monotonic() - t0))
            except ProcessLookupError:  # the server is gone
                self.stop.set()
                return
            if k == 0:
                print("\n## Samples\n\n| " + " | ".join(s) + " |\n|" + "---|" * len(s))
            print("| " + " | ".join(f"{s.get(c, 0):.1f}" if c == "rss_mib" else f"{s.get(c, 0):g}"
                                    for c in self.samples[0]) + " |", flush=True)

    async def quiesced(self) -> dict[str, float]:
        """After the churn: the sample once the node counts only the honest clients (<= 15 s)."""
        api, n = Api(self.port), self.args.subscribers
        for _ in range(30):
            s = await self.sample(api, 0)
            if s.get("num_clients") == n and s.get("num_subs") == n:
                break
            await asyncio.sleep(0.5)
        return s


def growth(samples: list[dict[str, float]]) -> list[tuple[str, float, float, bool]]:
    end = samples[-1]["t"] or 1.0
    early = [s for s in samples if 0.2 * end <= s["t"] <= 0.4 * end] or samples[:1]
    late = [s for s in samples if s["t"] >= 0.8 * end] or samples[-1:]
    out = []
    for key, (rel, absolute) in TOLERANCE.items():
        a = [s[key] for s in early if key in s]
        b = [s[key] for s in late if key in s]
        if a and b:
            ma, mb = sum(a) / len(a), sum(b) / len(b)
            out.append((key, ma, mb, mb - ma > rel * ma and mb - ma > absolute))
    return out


def report(soak: Soak, after: dict[str, float], running: bool, tracebacks: list[str]) -> bool:
    print("\n## Growth: mean of the last 20% of the run vs. the 20%-40% window\n\n"
          "| metric | 20-40% | last 20% | grows if the rise exceeds | verdict |\n"
          "|---|---|---|---|---|")
    ok = True
    for key, a, b, grows in growth(soak.samples):
        ok &= not grows
        rel, absolute = TOLERANCE[key]
        print(f"| {key} | {a:.1f} | {b:.1f} | {rel:.0%} and {absolute:g} | "
              f"{'GROWS' if grows else 'flat'} |")
    missing = dups = disorder = 0
    for ch, got in soak.received:
        seen = Counter(got)
        missing += len(set(soak.published.get(ch, [])) - seen.keys())
        dups += sum(n - 1 for n in seen.values())
        disorder += sum(1 for x, y in itertools.pairwise(got) if y <= x)
    n = soak.args.subscribers
    left = f"{after.get('num_clients', -1) - n:g} / {after.get('num_subs', -1) - n:g}"
    rows = [("API publications acknowledged / failed",
             f"{sum(map(len, soak.published.values()))} / {soak.publish_errors}", True),
            ("honest subscribers", len(soak.received), len(soak.received) == n),
            ("deliveries missing", missing, missing == 0),
            ("deliveries duplicated", dups, dups == 0),
            ("deliveries out of order", disorder, disorder == 0),
            ("honest subscribers disconnected", soak.honest_lost, soak.honest_lost == 0),
            ("bad clients not refused / error replies to valid commands",
             len(soak.problems), not soak.problems),
            ("clients / subs beyond the honest ones, 15 s after the churn", left, left == "0 / 0"),
            ("fds after the churn / before it", f"{after.get('fds', 0):g} / "
             f"{soak.samples[0].get('fds', 0):g}", True),
            ("server alive at the end", running, running),
            ("traceback lines in the server log", len(tracebacks), not tracebacks)]
    print("\n## Correctness\n\n| check | value |\n|---|---|")
    for name, value, good in rows:
        ok &= good
        print(f"| {name} | {value}{'' if good else ' (FAIL)'} |")
    print("\n## Churned connections\n\n| kind: outcome | count |\n|---|---|")
    for outcome, count in sorted(soak.churn.items()):
        print(f"| {outcome} | {count} |")
    for line in soak.problems[:20] + tracebacks[:20]:
        print("  ", line)
    if soak.args.minutes < 5:
        print("\nnote: in a run under ~5 minutes the 20%-40% window may still be warm-up; "
              "read the samples before trusting a GROWS")
    print(f"\nverdict: {'PASS' if ok else 'FAIL'}")
    return ok


async def run(args: argparse.Namespace, port: int, pid: int) -> tuple[Soak, dict[str, float]]:
    soak = Soak(port, pid, args, random.Random(args.seed),
                [f"soak{i}" for i in range(args.channels)])
    ready = asyncio.Event()
    honest = [asyncio.create_task(soak.honest(i, ready)) for i in range(args.subscribers)]
    await asyncio.wait_for(ready.wait(), 60)
    t0 = time.monotonic()
    load = [asyncio.create_task(c) for c in (soak.publisher(), soak.churner())]
    sampler = asyncio.create_task(soak.sampler(t0))
    try:
        await asyncio.wait_for(soak.stop.wait(), args.minutes * 60)
    except TimeoutError:
        soak.stop.set()
    await asyncio.gather(*load)
    sampler.cancel()
    await asyncio.sleep(3)  # the last publications reach the subscribers
    after = await soak.quiesced() if alive(pid) else {}
    for task in honest:
        task.cancel()
    await asyncio.gather(*honest, return_exceptions=True)
    return soak, after


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--subscribers", type=int, default=200)
    p.add_argument("--channels", type=int, default=4, help="channels of the honest subscribers")
    p.add_argument("--churn-rate", type=float, default=100.0, help="new connections per second")
    p.add_argument("--kinds", type=lambda v: v.split(","), default=list(CHURN_KINDS),
                   help=f"churn only these kinds (of {','.join(CHURN_KINDS)})")
    p.add_argument("--publish-rate", type=float, default=20.0, help="API publishes per second")
    p.add_argument("--sample-seconds", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=1, help="seed of the churn mix")
    p.add_argument("--pythonpath", help="import tidings from here (default: the installed one)")
    args = p.parse_args()
    if unknown := set(args.kinds) - set(CHURN_KINDS):
        p.error(f"unknown --kinds {unknown}")
    with tempfile.TemporaryDirectory(prefix="tidings-soak-") as tmp:
        proc, port = start_server(args.pythonpath, Path(tmp))
        if 1 in os.sched_getaffinity(0):
            os.sched_setaffinity(0, {1})
        print(f"server pid {proc.pid}, port {port}; {args.minutes:g} min, {args.subscribers} "
              f"subscribers, churn {args.churn_rate:g}/s, publish {args.publish_rate:g}/s",
              flush=True)
        try:
            soak, after = asyncio.run(run(args, port, proc.pid))
            running = proc.poll() is None
        finally:
            stop_server(proc)
        log = (Path(tmp) / "server.log").read_text(errors="replace").splitlines()
    tracebacks = [line for line in log if "Traceback" in line or "Exception" in line]
    return 0 if report(soak, after, running, tracebacks) else 1


if __name__ == "__main__":
    sys.exit(main())
