"""Redis goes away and comes back under two live nodes, with subscribers and a publisher.

Two ``tidings serve`` nodes share one Redis. Centrifugo SDK clients on both nodes subscribe to
a few channels with history; a bounded publisher alternates between the nodes' HTTP APIs while
the test stops Redis, waits, and starts it again on the same port. Without an append-only file
the restarted Redis has lost every stream (the epochs change); with one, nothing is lost.

What must hold afterwards, for every client and channel: it received the acknowledged
publications in offset order, without gaps or duplicates - except where it was explicitly told
that continuity broke (a resubscribe with ``was_recovering=True, recovered=False``, or a terminal
unsubscribe/disconnect). Failed publishes fail fast with a clear error; both nodes stay up and
keep serving; their logs report the pub/sub reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from centrifuge import ClientState, SubscriptionState

from tests.support.api import api_result
from tests.support.cluster import node_config, running_nodes, wait_log
from tests.support.redisproc import RedisServer
from tests.support.sdk import Clients, Event, SubEvents, next_item
from tests.support.server import ServerFactory, ServerProcess, unique
from tests.support.timing import TIMEOUT_FACTOR, T, eventually

pytestmark = pytest.mark.sdk(max_retry_delay=1.0)
CHANNELS = ("feed_a", "feed_b", "feed_c")
PUBLISHES = 150
STOP_AFTER = 40  # publish attempts before Redis is stopped
OUTAGE = 1.5  # seconds Redis stays down
PACE = 0.02  # seconds between publish attempts
AFTER_RESTART = 30  # publishes once both nodes are reconnected
# A failed publish must be answered within this (io_timeout is 1 s; the client's own timeout,
# far above it, only catches hangs).
FAST_FAIL = 3.0 * TIMEOUT_FACTOR
HTTP_TIMEOUT = 10.0 * TIMEOUT_FACTOR


@dataclass
class Attempt:
    """One publish through the HTTP API, as the publisher saw it."""

    seq: int
    node: int
    channel: str
    elapsed: float = 0.0
    offset: int = 0
    epoch: str = ""
    error: Any = None  # the JSON error object, or a description of a transport failure

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Publisher:
    nodes: list[ServerProcess]
    session: aiohttp.ClientSession
    attempts: list[Attempt] = field(default_factory=list)

    async def publish(self, channel: str, node: int) -> Attempt:
        attempt = Attempt(seq=len(self.attempts), node=node, channel=channel)
        self.attempts.append(attempt)
        srv = self.nodes[node]
        started = time.monotonic()
        try:
            async with self.session.post(
                f"{srv.api_url}/publish",
                json={"channel": channel, "data": {"seq": attempt.seq}},
                headers={"X-API-Key": srv.api_key},
                timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT),
            ) as resp:
                status = resp.status
                body = await resp.json(content_type=None) if status == 200 else None
        except (aiohttp.ClientError, TimeoutError) as exc:
            attempt.error = f"transport failure: {exc!r}"
            return attempt
        finally:
            attempt.elapsed = time.monotonic() - started
        if status != 200 or not isinstance(body, dict):
            attempt.error = f"HTTP {status}: {body!r}"
        elif "result" in body:
            attempt.offset = int(body["result"]["offset"])
            attempt.epoch = str(body["result"]["epoch"])
        else:
            attempt.error = body.get("error", body)
        return attempt

    async def run(self, count: int, first: int = 0) -> None:
        """``count`` publishes, round robin over the channels and alternating nodes."""
        for i in range(first, first + count):
            await self.publish(CHANNELS[i % len(CHANNELS)], i % len(self.nodes))
            await asyncio.sleep(PACE)

    def acked(self) -> dict[int, Attempt]:
        return {a.seq: a for a in self.attempts if a.ok}


@dataclass
class Watched:
    """One subscription of one SDK client."""

    name: str
    client: Any
    sub: Any
    events: SubEvents


@dataclass
class Verdict:
    problems: list[str] = field(default_factory=list)
    told: int = 0  # explicit continuity breaks: recovered=False resubscribes, terminal events
    received: int = 0


def judge(log: list[Event], channel: str, acked: dict[int, Attempt], *, terminal: bool) -> Verdict:
    """Check one subscription's ordered event log against the acknowledged publications.

    The log splits into segments at every subscribed event that does not continue the stream
    (the first subscribe, and every resubscribe with ``recovered=False``). Within a segment the
    offsets must run on by exactly one from the segment's start position, each publication the
    one acknowledged with that offset and epoch, none twice. The last segment must hold every
    acknowledged publication of its epoch after its start, unless the subscription ended with a
    terminal event (``terminal``), which also counts as being told."""
    verdict = Verdict()
    seen: set[int] = set()
    epoch = ""
    last = -1  # offset of the last publication in the current segment (-1: no segment)
    start = 0
    segment: list[int] = []
    subscribes = 0
    for event in log:
        if event.kind == "subscribed":
            subscribes += 1
            pos = event.ctx.stream_position
            if event.ctx.was_recovering and event.ctx.recovered:
                if (pos.epoch, pos.offset) != (epoch, last):
                    verdict.problems.append(
                        f"recovered from {pos.offset}/{pos.epoch}, had {last}/{epoch}"
                    )
                continue
            if event.ctx.was_recovering:
                verdict.told += 1
            elif subscribes > 1:
                verdict.problems.append("subscribed again without recovering")
            epoch, last, start, segment = pos.epoch, pos.offset, pos.offset, []
        elif event.kind == "unsubscribed":
            verdict.told += 1
            last = -1
        elif event.kind == "publication":
            pub = event.ctx
            seq = int(pub.data["seq"])
            verdict.received += 1
            if seq in seen:
                verdict.problems.append(f"seq {seq} (offset {pub.offset}) delivered twice")
            seen.add(seq)
            if last < 0:
                verdict.problems.append(f"seq {seq} arrived outside a subscription")
                continue
            if pub.offset != last + 1:
                verdict.problems.append(
                    f"offset {pub.offset} (seq {seq}) after {last} without being told"
                )
            ack = acked.get(seq)
            if ack is not None and (ack.channel, ack.offset, ack.epoch) != (
                channel,
                pub.offset,
                epoch,
            ):
                verdict.problems.append(
                    f"seq {seq} came as {channel}/{pub.offset}/{epoch}, acked as "
                    f"{ack.channel}/{ack.offset}/{ack.epoch}"
                )
            last = pub.offset
            segment.append(seq)
    if terminal:
        verdict.told += 1
    elif last >= 0:
        wanted = {
            a.seq
            for a in acked.values()
            if a.channel == channel and a.epoch == epoch and a.offset > start
        }
        missing = sorted(wanted - set(segment))
        if missing:
            verdict.problems.append(
                f"never received acked seqs {missing} (epoch {epoch}, after offset {start})"
            )
    else:
        verdict.problems.append("ended without a subscription and without being told")
    return verdict


@pytest.mark.parametrize("appendonly", [False, True], ids=["no-aof", "aof"])
async def test_redis_restart_under_load(
    tmp_path: Path,
    tidings_server: ServerFactory,
    clients: Clients,
    appendonly: bool,
) -> None:
    redis = RedisServer(tmp_path, appendonly=appendonly)
    prefix = unique("t")
    with (
        redis,
        running_nodes(
            lambda cfg: tidings_server(config=cfg),
            [node_config([redis], prefix, name) for name in ("fault-a", "fault-b")],
        ) as nodes,
    ):
        watched: list[Watched] = []
        for n, node in enumerate(nodes):
            for k in range(2):
                name = f"node{n}-client{k}"
                client, _ = await clients.connect(node, name)
                for channel in CHANNELS:
                    sub, events, _ = await clients.subscribe(client, channel)
                    watched.append(Watched(f"{name}/{channel}", client, sub, events))

        async with aiohttp.ClientSession() as session:
            publisher = Publisher(nodes, session)
            publishing = asyncio.create_task(publisher.run(PUBLISHES))
            try:

                async def loop_running() -> bool:
                    return len(publisher.attempts) >= STOP_AFTER

                assert await eventually(loop_running, within=30 * T)
                await asyncio.to_thread(redis.stop)
                stopped_at = len(publisher.attempts)
                await asyncio.sleep(OUTAGE)
                await asyncio.to_thread(redis.restart)  # same port, same directory
                restarted_at = len(publisher.attempts)
                await asyncio.wait_for(asyncio.shield(publishing), 60 * T)
            finally:
                publishing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await publishing
            for node in nodes:
                assert await wait_log(node, "pub/sub reconnected"), node.log_text()
            looped = list(publisher.attempts)

            # The publishes during the loop: quick answers, failures only as the clear error.
            slow = [a for a in looped if a.elapsed > FAST_FAIL]
            assert not slow, slow
            failed = [a for a in looped if not a.ok]
            assert failed, f"no publish failed: the outage missed the loop ({stopped_at=})"
            for attempt in failed:
                assert isinstance(attempt.error, dict), attempt
                assert attempt.error.get("code") == 100, attempt
                assert attempt.error.get("message"), attempt
            assert all(a.ok for a in looped[: STOP_AFTER - 1]), looped[:STOP_AFTER]
            assert stopped_at <= restarted_at

            # Every subscription is (again) live before the last round of publishes.
            async def all_subscribed() -> bool:
                return all(w.sub.state == SubscriptionState.SUBSCRIBED for w in watched)

            assert await eventually(all_subscribed, within=3 * T), _states(watched)
            await publisher.run(AFTER_RESTART, first=PUBLISHES)
            after = publisher.attempts[len(looped) :]
            assert all(a.ok for a in after), [a for a in after if not a.ok]
            await _settle(publisher, watched, redis, prefix)

        acked = publisher.acked()
        report: dict[str, Verdict] = {}
        for w in watched:
            channel = w.name.split("/")[1]
            terminal = w.client.state == ClientState.DISCONNECTED or (
                w.sub.state == SubscriptionState.UNSUBSCRIBED
            )
            report[w.name] = judge(w.events.log, channel, acked, terminal=terminal)
        problems = {name: v.problems for name, v in report.items() if v.problems}
        assert not problems, problems

        epochs = {(a.channel, a.epoch) for a in acked.values()}
        told = sum(v.told for v in report.values())
        if appendonly:
            # Nothing was lost: one epoch per channel, nobody had to be told.
            assert len(epochs) == len(CHANNELS), epochs
            assert told == 0, {n: v.told for n, v in report.items()}
        else:
            # Every stream was lost: new epochs, and every subscriber was told so.
            assert len(epochs) == 2 * len(CHANNELS), epochs
            assert all(v.told >= 1 for v in report.values()), {n: v.told for n, v in report.items()}

        for node in nodes:
            assert node.proc.poll() is None, node.log_text()
        # Still serving: a fresh client on each node subscribes and receives.
        for n, node in enumerate(nodes):
            fresh, _ = await clients.connect(node, f"fresh{n}")
            _, events, ctx = await clients.subscribe(fresh, CHANNELS[0])
            result = await api_result(
                nodes[1 - n], "publish", {"channel": CHANNELS[0], "data": {"seq": -1 - n}}
            )
            pub = await next_item(events.publications)
            assert (pub.offset, pub.data) == (result["offset"], {"seq": -1 - n})
            assert result["epoch"] == ctx.stream_position.epoch


def _states(watched: list[Watched]) -> dict[str, str]:
    return {w.name: f"{w.client.state}/{w.sub.state}" for w in watched}


async def _settle(
    publisher: Publisher, watched: list[Watched], redis: RedisServer, prefix: str
) -> None:
    """Wait until every live subscription got the last publication of its channel (or was
    told it won't: its subscribe position is already past it)."""

    def settled(w: Watched) -> bool:
        channel = w.name.split("/")[1]
        if w.sub.state != SubscriptionState.SUBSCRIBED:
            return bool(w.sub.state == SubscriptionState.UNSUBSCRIBED)
        last = max(
            (a for a in publisher.acked().values() if a.channel == channel),
            key=lambda a: a.seq,
        )
        for event in reversed(w.events.log):
            if event.kind == "publication" and event.ctx.data["seq"] == last.seq:
                return True
            if event.kind == "subscribed":
                pos = event.ctx.stream_position
                return bool(pos.epoch == last.epoch and pos.offset >= last.offset)
        return False

    async def all_settled() -> bool:
        return all(settled(w) for w in watched)

    if not await eventually(all_settled, within=3 * T):
        with redis.client() as raw:
            numsub = raw.pubsub_numsub(*(f"{prefix}.p.{ch}" for ch in CHANNELS))
        logs = "\n".join(
            line
            for node in publisher.nodes
            for line in node.log_text().splitlines()
            if "API call failed" not in line and "connect failed" not in line
        )
        stuck = {
            w.name: [e.kind for e in w.events.log if e.kind != "publication"]
            for w in watched
            if not settled(w)
        }
        pytest.fail(f"not settled: {stuck}\nPUBSUB NUMSUB: {numsub}\nnode logs:\n{logs}")
