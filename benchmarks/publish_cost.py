"""What one API publish costs the server: CPU microseconds per publication, before and after a
change, side by side in one run (S4's load: 2,000 subscribers each on its own channel, 8
publisher connections), and with the batch API.

    python benchmarks/publish_cost.py                          # this tree, plain publishes
    python benchmarks/publish_cost.py --baseline 3fdd59e       # beside the build of a git ref
    python benchmarks/publish_cost.py --batch 20 --rate 1000   # /api/batch, 20 publishes each
    python benchmarks/publish_cost.py --profile /tmp/pub       # + py-spy (collapsed stacks)

CPU time per operation is what a publish costs whoever else uses the machine: unlike a
throughput figure it does not drop when another process takes the core for a while, so it is
the steadier figure on a shared machine (the server is pinned to core 0, the generator to core
1, as in run.py). The window is the generator's publish phase (its progress lines), from the
second to the last one: connecting the subscribers is not counted. Each row is the median of
``--repeat`` runs, targets alternating, so a busy minute hits both.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from run import (  # benchmarks/run.py, beside this file
    TIDINGS_CONFIG,
    Running,
    Target,
    baseline_target,
    loadgen_args,
    tidings_target,
)

CONNS = 2000


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, in clock ticks


def measure(target: Target, rate: int, seconds: int, batch: int,
            profile: str = "") -> dict[str, Any]:
    """One run: the server's CPU per publication over the publish phase."""
    if batch:
        one = '{"publish":{"channel":"bench{ch}","data":{"ts":{ts}}}}'
        target.pub_path = "/api/batch"
        target.pub_body = '{"commands":[' + ",".join([one] * batch) + "]}"
    running = Running(target)
    samples: list[tuple[float, int]] = []  # (server CPU s, requests published) per line
    spy: subprocess.Popen[bytes] | None = None
    try:
        args = loadgen_args(running, conns=CONNS, channels=CONNS, rate=rate,
                            duration=seconds, pub_conns=8)
        gen = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert gen.stderr is not None and gen.stdout is not None
        for line in gen.stderr:  # "[  3.0s] publish started=... pub=N recv=..."
            if " publish " in line:
                pub = int(line.split(" pub=")[1].split()[0])
                samples.append((cpu_seconds(running.proc.pid), pub))
                if profile and spy is None:
                    spy = subprocess.Popen(
                        ["py-spy", "record", "-p", str(running.proc.pid), "-d",
                         str(max(seconds - 2, 1)), "-r", "200", "-f", "raw", "-o",
                         f"{profile}-{target.name}.txt", "--nonblocking"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        result: dict[str, Any] = json.loads(gen.stdout.read().strip().splitlines()[-1])
        gen.wait()
    finally:
        if spy is not None:
            spy.wait()
        running.stop()
    (cpu0, pub0), (cpu1, pub1) = samples[1], samples[-1]
    publications = (pub1 - pub0) * max(batch, 1)
    return {"us_per_publication": 1e6 * (cpu1 - cpu0) / max(publications, 1),
            "publications_per_s": result["published"] * max(batch, 1) / seconds,
            "cpu_pct": 100 * (cpu1 - cpu0) / max(len(samples) - 2, 1),
            "p99_ms": result["lat_ms"]["p99"], "received": result["received"],
            "requests": result["published"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=6000, help="requests/s (default 6000)")
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", type=int, default=0,
                        help="publishes per /api/batch request (0: /api/publish)")
    parser.add_argument("--baseline", default="", metavar="REF")
    parser.add_argument("--profile", default="", metavar="PREFIX",
                        help="py-spy collapsed stacks to PREFIX-<target>.txt (first run)")
    args = parser.parse_args()
    cfg = Path(tempfile.gettempdir()) / "tidings-bench-config.json"
    cfg.write_text(json.dumps(TIDINGS_CONFIG))
    makers = [lambda: tidings_target(cfg)]
    if args.baseline:
        makers.insert(0, lambda: baseline_target(cfg, args.baseline))
    rows: dict[str, list[dict[str, Any]]] = {}
    for i in range(args.repeat):
        for make in makers if i % 2 == 0 else makers[::-1]:
            target = make()
            r = measure(target, args.rate, args.seconds, args.batch,
                        args.profile if i == 0 else "")
            rows.setdefault(target.name, []).append(r)
            print(f"{target.name}: {r['us_per_publication']:.1f} us/publication, "
                  f"{r['publications_per_s']:.0f} publications/s, cpu {r['cpu_pct']:.0f}%, "
                  f"p99 {r['p99_ms']:.1f} ms", file=sys.stderr)
    print(f"\n{time.strftime('%Y-%m-%d %H:%M')}, rate {args.rate} requests/s, batch "
          f"{args.batch}, {args.seconds} s x {args.repeat}; median (min-max):")
    for name, runs in rows.items():
        us = [r["us_per_publication"] for r in runs]
        print(f"| {name} | {statistics.median(us):.1f} us/publication ({min(us):.1f}-"
              f"{max(us):.1f}) | {statistics.median(r['publications_per_s'] for r in runs):.0f}"
              f" publications/s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
