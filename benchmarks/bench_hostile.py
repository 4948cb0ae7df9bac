"""A hostile tenant beside a normal one: does the normal tenant notice?

For each of ``--stores`` this starts ``tidings serve`` over a fresh store, a webhook
receiver for the normal tenant (127.0.0.1, answers 204 at once) and a tarpit for the
hostile tenant (127.0.0.2: accepts, reads, never answers). Then two phases of
``--duration`` seconds each:

* ``quiet``: the normal tenant posts single messages at ``--rate`` per second to a
  queue with one webhook subscription;
* ``attack``: the same, while the hostile tenant, at once,
  - posts ``max_messages_per_post`` batches to a queue with ``max_subscriptions_per_queue``
    tarpit subscriptions (the fan-out and tarpit attacks),
  - subscribes with the largest retry policy accepted to a closed port and posts to it,
  - grows queue metadata with PATCHes,
  - lists queues with a metadata filter that matches nothing,
  - holds ``--idle`` idle connections, stalls request bodies and streams an endless header.

Reported per phase: the normal tenant's post latency (p50/p99), the delay from its
post's 201 to its webhook's arrival (p50/p99, and how many never arrived within
``--drain`` seconds), the server's peak RSS, and what the hostile tenant's requests got.

``--baseline-src DIR`` runs the same phases first against the server in another
checkout's ``src`` (e.g. ``git worktree add /tmp/base <commit>``), with no settings it
may not know, and reports it beside this one.

Run:  python benchmarks/bench_hostile.py [--stores sqlite,redis,postgres] [--duration 10]
      [--rate 20] [--idle 300] [--attacks fan-out,...] [--baseline-src DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from loadgen import percentile
from servers import TreeSampler
from stores import STORES, bench_store

from tests.hostile import ATTACKS, Arena, Traffic
from tests.server import TidingsServer


@dataclass
class PhaseResult:
    store: str
    phase: str
    posts: int = 0
    failed_posts: int = 0
    post_p50_ms: float = 0.0
    post_p99_ms: float = 0.0
    delivery_p50_ms: float = 0.0
    delivery_p99_ms: float = 0.0
    undelivered: int = 0
    peak_rss_mb: float = 0.0
    hostile: dict[str, int] = field(default_factory=dict)


async def run_store(
    store: str, store_uri: str, data_dir: Path, args: argparse.Namespace, baseline: bool
) -> list[PhaseResult]:
    results = []
    label = f"{store} (baseline)" if baseline else store
    env = (
        {"PYTHONPATH": args.baseline_src}
        if baseline
        else {"TIDINGS_NOTIFICATION__SUBSCRIBER_DENY_NETWORKS": "[]"}
    )
    async with Arena() as arena:
        server = TidingsServer(data_dir, store_uri=store_uri, env=env)
        await asyncio.to_thread(server.start)
        try:
            base = f"{server.url}/v2"
            await arena.subscribe_normal_tenant(base)
            for phase in ("quiet", "attack"):
                sampler = TreeSampler(server.pid).start()
                traffic = await arena.observe(
                    base,
                    server.port,
                    attack=phase == "attack",
                    duration=args.duration,
                    rate=args.rate,
                    idle=args.idle,
                    drain=args.drain,
                    attacks=tuple(args.attacks.split(",")),
                )
                sampler.stop()
                results.append(summarise(label, phase, traffic, sampler.peak_rss))
        finally:
            await asyncio.to_thread(server.stop)
    return results


def summarise(store: str, phase: str, traffic: Traffic, peak_rss: int) -> PhaseResult:
    return PhaseResult(
        store=store,
        phase=phase,
        posts=len(traffic.latencies),
        failed_posts=sum(traffic.failures.values()),
        post_p50_ms=percentile(traffic.latencies, 0.50) * 1000,
        post_p99_ms=percentile(traffic.latencies, 0.99) * 1000,
        delivery_p50_ms=percentile(traffic.delays, 0.50) * 1000,
        delivery_p99_ms=percentile(traffic.delays, 0.99) * 1000,
        undelivered=traffic.undelivered,
        peak_rss_mb=peak_rss / 2**20,
        hostile=dict(traffic.hostile),
    )


def report(results: list[PhaseResult]) -> None:
    print(
        f"{'store':<20}{'phase':<8}{'posts':>7}{'failed':>7}{'post p50':>10}{'post p99':>10}"
        f"{'deliv p50':>11}{'deliv p99':>11}{'lost':>6}{'peak RSS':>10}"
    )
    for r in results:
        print(
            f"{r.store:<20}{r.phase:<8}{r.posts:>7}{r.failed_posts:>7}{r.post_p50_ms:>8.1f}ms{r.post_p99_ms:>8.1f}ms"
            f"{r.delivery_p50_ms:>9.1f}ms{r.delivery_p99_ms:>9.1f}ms{r.undelivered:>6}"
            f"{r.peak_rss_mb:>8.0f}MB"
        )
    for r in results:
        if r.hostile:
            print(f"\n{r.store} hostile tenant's requests:")
            for name, count in sorted(r.hostile.items()):
                print(f"  {name}: {count}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--stores", default=",".join(STORES))
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--idle", type=int, default=300)
    parser.add_argument("--drain", type=float, default=15.0)
    parser.add_argument(
        "--attacks", default=",".join(ATTACKS), help="which attacks (default: all at once)"
    )
    parser.add_argument("--baseline-src", help="another checkout's src/ to compare against")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    results: list[PhaseResult] = []
    for store in [s.strip() for s in args.stores.split(",") if s.strip()]:
        data_dir = Path(tempfile.mkdtemp(prefix=f"bench-hostile-{store}-"))
        try:
            for baseline in ([True] if args.baseline_src else []) + [False]:
                with bench_store(store, data_dir / str(baseline)) as bench:
                    results.extend(
                        asyncio.run(
                            run_store(store, bench.uri, data_dir / str(baseline), args, baseline)
                        )
                    )
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
