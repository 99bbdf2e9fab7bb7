#!/usr/bin/env python3
"""Load the running live-comments site the way its users do, and measure what they see.

    python3 load.py --url http://127.0.0.1:8080 --readers 2000 --rate 20 --duration 30

- **readers**: N centrifuge clients connected through nginx to ``/connection/websocket`` with a
  logged-in session cookie (the connect hook logs them in, as it does browsers), each
  subscribed to the comments channel of one of the site's articles (round robin). By default
  they are centrifuge-js clients in one Node process (``load_readers.mjs``, the SDK the pages
  use); ``--readers-impl python`` uses centrifuge-python clients in this process instead,
  which needs about a core per 10,000 deliveries a second (watch ``generator_cpu_pct``);
- **writers**: M comments a second POSTed to ``/articles/<slug>/comments`` through nginx and
  gunicorn with a logged-in session (round robin over the same articles), on a fixed
  schedule. Each goes the whole way: INSERT + outbox row, COMMIT, NOTIFY, Tidings' consumer,
  Redis, both nodes, nginx, the readers.

It prints the latency of every delivery, from just before its POST was sent to the reader's
publication callback (one clock: CLOCK_MONOTONIC), and completeness: deliveries received /
deliveries expected (the readers of that article, for every comment accepted with 201).
Thousands of readers on a few cores queue deliveries in the generator itself, so a few extra
readers (``--probes`` per article, centrifuge-python, in this process) are measured apart: what
one user sees while the others load the site. ``--json`` prints the same as one JSON object.
Exit status 1 if anything was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Protocol

import aiohttp

__all__ = ["main"]

HERE = Path(__file__).resolve().parent
_CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
_ARTICLE = re.compile(r'href="/articles/([-\w]+)/"')
_TEXT = re.compile(r"^load (\d+) (\d+)$")  # "load <seq> <monotonic ns when POSTed>"


async def log_in(url: str, user: str, password: str) -> aiohttp.ClientSession:
    """A session logged in through Django's login form (the CSRF cookie and token first)."""
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                    timeout=aiohttp.ClientTimeout(total=30))
    async with session.get(f"{url}/accounts/login/") as resp:
        match = _CSRF.search(await resp.text())
    if match is None:
        raise SystemExit(f"{url}/accounts/login/: no login form")
    form = {"username": user, "password": password, "csrfmiddlewaretoken": match.group(1)}
    async with session.post(f"{url}/accounts/login/", data=form,
                            allow_redirects=False) as resp:
        if resp.status != 302:
            raise SystemExit(f"cannot log in as {user!r}: HTTP {resp.status}")
    return session


def cookie_header(session: aiohttp.ClientSession) -> str:
    return "; ".join(f"{c.key}={c.value}" for c in session.cookie_jar)


async def articles(session: aiohttp.ClientSession, url: str, count: int) -> list[str]:
    async with session.get(f"{url}/") as resp:
        slugs = list(dict.fromkeys(_ARTICLE.findall(await resp.text())))
    if not slugs:
        raise SystemExit(f"{url}/ lists no articles")
    return slugs[:count]


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50/p90/p99/max/mean of latencies in seconds, as ms."""
    ordered = sorted(values)

    def at(q: float) -> float | None:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1) \
            if ordered else None

    mean = round(sum(ordered) / len(ordered) * 1000, 1) if ordered else None
    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": at(1.0), "mean": mean}


# ----------------------------------------------------------------------------- readers


class Readers(Protocol):
    async def start(self, n: int, slugs: list[str]) -> dict[str, int]:
        """Connect and subscribe ``n`` readers; how many read each slug."""

    async def finish(self) -> dict[str, Any]:
        """Stop; ``got`` (seq -> readers that got it), ``duplicates``, ``latency`` (ms)."""


class NodeReaders:
    """centrifuge-js clients in ``procs`` Node processes (load_readers.mjs)."""

    def __init__(self, url: str, cookie: str, node_path: str, procs: int = 1) -> None:
        self.url, self.cookie, self.node_path, self.procs = url, cookie, node_path, procs
        self.running: list[asyncio.subprocess.Process] = []

    @staticmethod
    async def _line(proc: asyncio.subprocess.Process, within: float) -> dict[str, Any]:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), within)
        if not line:
            raise SystemExit("load_readers.mjs ended early (is node there, and centrifuge, ws?)")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def start(self, n: int, slugs: list[str]) -> dict[str, int]:
        node = shutil.which("node")
        if node is None:
            raise SystemExit("node not found: install Node.js, or use --readers-impl python")
        ws_url = self.url.replace("http", "ws", 1) + "/connection/websocket"
        shares = [n // self.procs + (1 if i < n % self.procs else 0) for i in range(self.procs)]
        first = 0
        for share in shares:
            self.running.append(await asyncio.create_subprocess_exec(
                node, str(HERE / "load_readers.mjs"), ws_url, self.url, self.cookie,
                str(share), ",".join(slugs), str(first), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, env={**os.environ, "NODE_PATH": self.node_path},
                limit=256 << 20))
            first += share
        readers: Counter[str] = Counter()
        for proc in self.running:
            ready = await self._line(proc, within=60 + n / 20)
            if ready["failed"]:
                raise SystemExit(f"{ready['failed']} readers could not subscribe")
            readers.update(ready["readers"])
        return dict(readers)

    async def finish(self) -> dict[str, Any]:
        got: Counter[int] = Counter()
        latencies: list[float] = []
        duplicates, cpu = 0, 0.0
        for proc in self.running:
            assert proc.stdin is not None
            proc.stdin.close()
        for proc in self.running:
            result = await self._line(proc, within=60)
            await proc.wait()
            got.update({int(seq): count for seq, count in result["got"].items()})
            latencies += [ms / 1000 for ms in result["latencies"]]
            duplicates += result["duplicates"]
            cpu += result["cpu_s"]
        return {"got": dict(got), "duplicates": duplicates, "latency": percentiles(latencies),
                "cpu_s": cpu}


class PythonReaders:
    """centrifuge-python clients in this process (CPU-bound past a few thousand deliveries/s)."""

    def __init__(self, url: str, cookie: str, concurrency: int = 50) -> None:
        self.url, self.cookie, self.concurrency = url, cookie, concurrency
        self.clients: list[Any] = []
        self.got: Counter[int] = Counter()
        self.seen: set[tuple[int, int]] = set()
        self.duplicates = 0
        self.latencies: list[float] = []

    def on_publication(self, reader: int, data: Any) -> None:
        now = time.monotonic_ns()
        match = _TEXT.match(str(data.get("text", ""))) if isinstance(data, dict) else None
        if match is None:
            return  # a browser's comment
        seq = int(match.group(1))
        if (reader, seq) in self.seen:
            self.duplicates += 1
            return
        self.seen.add((reader, seq))
        self.got[seq] += 1
        self.latencies.append((now - int(match.group(2))) / 1e9)

    async def start(self, n: int, slugs: list[str]) -> dict[str, int]:
        from centrifuge import Client, PublicationContext, SubscriptionEventHandler

        ws_url = self.url.replace("http", "ws", 1) + "/connection/websocket"
        gate = asyncio.Semaphore(self.concurrency)
        readers: Counter[str] = Counter()
        outer = self

        class Handler(SubscriptionEventHandler):  # type: ignore[misc]
            def __init__(self, reader: int) -> None:
                self.reader = reader

            async def on_publication(self, ctx: PublicationContext) -> None:
                outer.on_publication(self.reader, ctx.pub.data)

        async def one(i: int) -> None:
            slug = slugs[i % len(slugs)]
            client = Client(ws_url, headers={"Cookie": self.cookie, "Origin": self.url},
                            timeout=30.0, max_reconnect_delay=5.0)
            self.clients.append(client)
            sub = client.new_subscription(f"comments:{slug}", Handler(i))
            async with gate:
                await client.connect()
                await sub.subscribe()
                await sub.ready(timeout=60)
            readers[slug] += 1

        await asyncio.gather(*(one(i) for i in range(n)))
        return dict(readers)

    async def finish(self) -> dict[str, Any]:
        await asyncio.gather(*(c.disconnect() for c in self.clients), return_exceptions=True)
        return {"got": dict(self.got), "duplicates": self.duplicates,
                "latency": percentiles(self.latencies)}


def node_path() -> str:
    """Where centrifuge and ws are: node_modules here (``npm install`` in this directory),
    else the repository's test packages (tests/e2e/node)."""
    for candidate in (HERE / "node_modules", HERE.parents[1] / "tests/e2e/node/node_modules"):
        if (candidate / "centrifuge").is_dir():
            return str(candidate)
    return os.environ.get("NODE_PATH", "")


# ----------------------------------------------------------------------------- writers


class Writer:
    """``rate`` comments a second for ``duration`` s, on a fixed schedule (a slow answer does
    not delay the next POST)."""

    def __init__(self, session: aiohttp.ClientSession, url: str, slugs: list[str]) -> None:
        self.session, self.url, self.slugs = session, url, slugs
        self.csrf = next(c.value for c in session.cookie_jar if c.key == "csrftoken")
        self.accepted: dict[int, str] = {}  # seq -> slug
        self.errors: Counter[str] = Counter()
        self.posted = 0
        self.answered: list[float] = []  # seconds from POST to its answer

    async def post_one(self, seq: int) -> None:
        slug = self.slugs[seq % len(self.slugs)]
        sent = time.monotonic_ns()
        text = f"load {seq} {sent}"
        self.posted += 1
        try:
            async with self.session.post(
                    f"{self.url}/articles/{slug}/comments", json={"text": text},
                    headers={"X-CSRFToken": self.csrf, "Origin": self.url}) as resp:
                await resp.read()
                self.answered.append((time.monotonic_ns() - sent) / 1e9)
                if resp.status == 201:
                    self.accepted[seq] = slug
                else:
                    self.errors[f"HTTP {resp.status}"] += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.errors[type(exc).__name__] += 1

    async def run(self, rate: float, duration: float) -> None:
        start = time.monotonic()
        tasks = []
        for seq in range(int(rate * duration)):
            await asyncio.sleep(max(0.0, start + seq / rate - time.monotonic()))
            tasks.append(asyncio.create_task(self.post_one(seq)))
        await asyncio.gather(*tasks)


# ----------------------------------------------------------------------------- the run


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _completeness(per_slug: dict[str, int], writer: Writer,
                  got: dict[int, int]) -> tuple[int, int]:
    """(expected, delivered) deliveries of the comments accepted."""
    expected = sum(per_slug.get(slug, 0) for slug in writer.accepted.values())
    delivered = sum(n for seq, n in got.items() if seq in writer.accepted)
    return expected, delivered


async def run(args: argparse.Namespace) -> dict[str, Any]:
    url = args.url.rstrip("/")
    writer_session = await log_in(url, args.writer, args.password)
    reader_session = await log_in(url, args.reader, args.password)
    cookie = cookie_header(reader_session)
    readers: Readers = (NodeReaders(url, cookie, node_path(), args.procs)
                        if args.readers_impl == "node" else PythonReaders(url, cookie))
    probes = PythonReaders(url, cookie)  # a few readers of their own: what one user sees
    try:
        slugs = await articles(writer_session, url, args.articles)
        started = time.monotonic()
        per_slug = await readers.start(args.readers, slugs)
        probed = await probes.start(args.probes * len(slugs), slugs) if args.probes else {}
        say(f"{sum(per_slug.values())} readers subscribed in "
            f"{time.monotonic() - started:.1f} s on {len(slugs)} articles; posting "
            f"{args.rate}/s for {args.duration} s", args)
        writer = Writer(writer_session, url, slugs)
        cpu0, wall0 = _cpu(), time.monotonic()
        await writer.run(args.rate, args.duration)
        await asyncio.sleep(args.drain)
        cpu, wall = _cpu() - cpu0, time.monotonic() - wall0
        result, probe = await readers.finish(), await probes.finish()
    finally:
        await writer_session.close()
        await reader_session.close()
    expected, delivered = _completeness(per_slug, writer, result["got"])
    probe_expected, probe_delivered = _completeness(probed, writer, probe["got"])
    return {
        "readers": sum(per_slug.values()), "readers_impl": args.readers_impl,
        "articles": len(slugs), "rate": args.rate, "duration_s": args.duration,
        "posted": writer.posted, "accepted": len(writer.accepted),
        "post_errors": dict(writer.errors), "expected": expected, "delivered": delivered,
        "lost": expected - delivered + probe_expected - probe_delivered,
        "duplicates": result["duplicates"] + probe["duplicates"],
        "latency_ms": result["latency"], "probe_latency_ms": probe["latency"],
        "probes": sum(probed.values()), "post_answer_ms": percentiles(writer.answered),
        "generator_cpu_pct": round(100 * (cpu + result.get("cpu_s", 0.0)) / wall, 1),
    }


def say(line: str, args: argparse.Namespace) -> None:
    if not args.json:
        print(line, file=sys.stderr, flush=True)


def summary(r: dict[str, Any]) -> str:
    lat, ans, probe = r["latency_ms"], r["post_answer_ms"], r["probe_latency_ms"]
    errors = f" (errors: {r['post_errors']})" if r["post_errors"] else ""
    return (f"{r['readers']} readers ({r['readers_impl']}) on {r['articles']} articles, "
            f"{r['rate']} comments/s for {r['duration_s']} s: {r['accepted']}/{r['posted']} "
            f"accepted{errors}\n"
            f"POST -> delivery: p50 {lat['p50']} ms, p90 {lat['p90']} ms, p99 {lat['p99']} ms,"
            f" max {lat['max']} ms\n"
            f"  seen by {r['probes']} probe readers in this process: p50 {probe['p50']} ms, "
            f"p99 {probe['p99']} ms; the POST's own answer: p50 {ans['p50']} ms, p99 "
            f"{ans['p99']} ms\n"
            f"delivered {r['delivered']}/{r['expected']} (lost {r['lost']}, duplicates "
            f"{r['duplicates']}); load generator CPU {r['generator_cpu_pct']}% of one core")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="the site (nginx)")
    parser.add_argument("--readers", type=int, default=200)
    parser.add_argument("--readers-impl", choices=["node", "python"], default="node")
    parser.add_argument("--procs", type=int, default=2, help="Node processes of readers")
    parser.add_argument("--probes", type=int, default=1,
                        help="extra centrifuge-python readers per article, measured apart")
    parser.add_argument("--articles", type=int, default=3, help="how many articles to read")
    parser.add_argument("--rate", type=float, default=20.0, help="comments per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of posting")
    parser.add_argument("--drain", type=float, default=3.0,
                        help="seconds to wait for late deliveries after the last POST")
    parser.add_argument("--writer", default="alice")
    parser.add_argument("--reader", default="bob")
    parser.add_argument("--password", default="live-comments-demo")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    try:
        import uvloop  # a dependency of Tidings: a faster loop for thousands of clients
    except ImportError:
        result = asyncio.run(run(args))
    else:
        result = uvloop.run(run(args))
    print(json.dumps(result) if args.json else summary(result), flush=True)
    return 0 if result["lost"] == 0 and not result["post_errors"] else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
