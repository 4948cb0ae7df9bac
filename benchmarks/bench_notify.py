"""Notification benchmark: webhook deliveries per second and post→delivery delay.

Starts ``tidings serve`` over a fresh store for each of ``--stores`` (as
``bench_core.py``: SQLite file, private Redis with AOF ``appendfsync always``,
PostgreSQL schema) and, in this process, a fast webhook receiver (aiohttp web server on
127.0.0.1 answering 204). Then, for each subscription count in ``--subscriptions``
(default 1, 10, 100) it makes a fresh queue with that many webhook subscriptions (each
a distinct URL on the receiver), posts single-message POSTs at a steady ``--rate`` for
``--duration`` seconds, and waits until every (message, subscription) delivery has
arrived or ``--drain-timeout`` passes.

All subscriptions belong to one project and point at one host:port, so deliveries in
flight are bounded by ``max_deliveries_per_project`` and ``max_deliveries_per_host``
(4 each by default) before ``max_notifier_workers``; raise them with ``--server-setting``
to measure a single trusted tenant.

Delay is the receiver's arrival time minus the moment the 201 for that message's post
was received (both ``time.monotonic()`` in this process), matched through the payload's
``message_id``. Throughput is deliveries received per second over the whole run (first
post to last delivery) and within the posting window only ("steady"). Missing and
duplicate deliveries are counted.

Run:  /work/venv/bin/python benchmarks/bench_notify.py [--stores sqlite,redis,postgres]
      [--subscriptions 1,10,100] [--rate 20] [--duration 5] [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from aiohttp import web
from loadgen import percentile
from servers import TreeSampler
from stores import STORES, BenchStore, bench_store

from tests.server import TidingsServer, free_port

PROJECT = "bench-notify"


@dataclass
class Receiver:
    """Arrival times of deliveries, keyed by (subscription index, message id)."""

    arrivals: dict[tuple[int, str], list[float]] = field(default_factory=dict)
    count: int = 0
    bad: Counter[str] = field(default_factory=Counter)
    event: asyncio.Event = field(default_factory=asyncio.Event)
    expected: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        at = time.monotonic()
        body = await request.read()
        try:
            index = int(request.match_info["index"])
            message_id = json.loads(body)["message_id"]
        except (ValueError, KeyError, TypeError):
            self.bad["unparsable delivery"] += 1
            return web.Response(status=204)
        self.arrivals.setdefault((index, message_id), []).append(at)
        self.count += 1
        if self.expected and self.count >= self.expected:
            self.event.set()
        return web.Response(status=204)

    def reset(self, expected: int) -> None:
        self.arrivals.clear()
        self.count = 0
        self.bad.clear()
        self.expected = expected
        self.event.clear()


@dataclass
class RunResult:
    store: str
    subscriptions: int
    rate: float
    duration_s: float
    posted: int
    post_errors: int
    expected: int
    delivered: int
    missing: int
    duplicates: int
    deliveries_per_s: float
    steady_deliveries_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    drain_s: float
    server_cpu_pct: float
    client_cpu_pct: float
    post_p50_ms: float


async def start_receiver(receiver: Receiver, port: int) -> web.AppRunner:
    app = web.Application()
    app.router.add_post("/s/{index}", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    return runner


async def subscribe_all(
    session: aiohttp.ClientSession, base: str, queue: str, count: int, receiver_url: str
) -> None:
    async def one(index: int) -> None:
        body = {"subscriber": f"{receiver_url}/s/{index}", "ttl": 3600}
        async with session.post(f"{base}/queues/{queue}/subscriptions", json=body) as resp:
            if resp.status != 201:
                raise RuntimeError(f"subscription {index}: {resp.status} {await resp.text()}")

    sem = asyncio.Semaphore(16)

    async def bounded(index: int) -> None:
        async with sem:
            await one(index)

    await asyncio.gather(*(bounded(i) for i in range(count)))


async def post_steadily(
    session: aiohttp.ClientSession, url: str, rate: float, duration: float, ttl: int
) -> tuple[dict[str, float], list[float], int]:
    """One message per POST every 1/rate s; returns ack times by id, post latencies, errors."""
    acked: dict[str, float] = {}
    latencies: list[float] = []
    errors = 0
    total = max(1, int(rate * duration))
    start = time.monotonic()
    in_flight: set[asyncio.Task[None]] = set()

    async def one(seq: int) -> None:
        nonlocal errors
        payload = {"messages": [{"body": {"seq": seq, "pad": "x" * 48}, "ttl": ttl}]}
        sent = time.monotonic()
        try:
            async with session.post(url, json=payload) as resp:
                body = await resp.read()
                at = time.monotonic()
                if resp.status != 201:
                    errors += 1
                    return
        except (aiohttp.ClientError, TimeoutError):
            errors += 1
            return
        latencies.append(at - sent)
        for href in json.loads(body)["resources"]:
            acked[href.rsplit("/", 1)[1]] = at

    for seq in range(total):
        delay = start + seq / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(seq))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    await asyncio.gather(*in_flight)
    return acked, latencies, errors


async def run_one(
    args: argparse.Namespace, server: TidingsServer, receiver: Receiver, receiver_url: str,
    sampler: TreeSampler, kind: str, subscriptions: int,
) -> RunResult:
    base = server.url + "/v2"
    queue = f"notify-{subscriptions}-{uuid.uuid4().hex[:6]}"
    headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": PROJECT}
    connector = aiohttp.TCPConnector(limit=64)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(
        connector=connector, headers=headers, timeout=timeout
    ) as session:
        await subscribe_all(session, base, queue, subscriptions, receiver_url)
        expected_total = int(max(1, int(args.rate * args.duration)) * subscriptions)
        receiver.reset(expected_total)
        me = psutil.Process()
        cpu0_server, cpu0_client = sampler.cpu_seconds(), sum(me.cpu_times()[:2])
        started = time.monotonic()
        acked, post_latencies, post_errors = await post_steadily(
            session, f"{base}/queues/{queue}/messages", args.rate, args.duration, args.ttl
        )
        posting_ended = time.monotonic()
        expected = len(acked) * subscriptions
        receiver.expected = expected
        if receiver.count < expected:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(receiver.event.wait(), args.drain_timeout)
        # a short grace to catch duplicates arriving after the last expected delivery
        await asyncio.sleep(0.3)
        finished = time.monotonic()
        cpu_server = sampler.cpu_seconds() - cpu0_server
        cpu_client = sum(me.cpu_times()[:2]) - cpu0_client
        # Clean up so the next run starts with an empty outbox.
        async with session.post(f"{base}/queues/{queue}/purge",
                                json={"resource_types": ["messages", "subscriptions"]}):
            pass

    delays: list[float] = []
    duplicates = 0
    delivered = 0
    first_arrivals: list[float] = []
    for (_, message_id), times in receiver.arrivals.items():
        ack = acked.get(message_id)
        if ack is None:
            continue
        delivered += 1
        duplicates += len(times) - 1
        delays.append(max(0.0, times[0] - ack))
        first_arrivals.append(times[0])
    delays.sort()
    post_latencies.sort()
    last = max(first_arrivals) if first_arrivals else posting_ended
    span = max(last - started, 1e-9)
    steady = sum(1 for t in first_arrivals if t <= posting_ended)
    wall = max(finished - started, 1e-9)
    return RunResult(
        store=kind,
        subscriptions=subscriptions,
        rate=args.rate,
        duration_s=args.duration,
        posted=len(acked),
        post_errors=post_errors,
        expected=expected,
        delivered=delivered,
        missing=expected - delivered,
        duplicates=duplicates,
        deliveries_per_s=delivered / span,
        steady_deliveries_per_s=steady / max(posting_ended - started, 1e-9),
        p50_ms=percentile(delays, 0.50) * 1000,
        p99_ms=percentile(delays, 0.99) * 1000,
        max_ms=(delays[-1] * 1000) if delays else 0.0,
        drain_s=max(0.0, last - posting_ended),
        server_cpu_pct=100 * cpu_server / wall,
        client_cpu_pct=100 * cpu_client / wall,
        post_p50_ms=percentile(post_latencies, 0.50) * 1000,
    )


async def run_store(args: argparse.Namespace, store: BenchStore) -> tuple[list[RunResult], str]:
    receiver = Receiver()
    port = free_port()
    runner = await start_receiver(receiver, port)
    env = {
        # the receiver is on loopback, which subscribers may not point at by default
        "TIDINGS_NOTIFICATION__SUBSCRIBER_DENY_NETWORKS": "[]",
        # the largest fan-out measured (the default bound is lower)
        "TIDINGS_TRANSPORT__MAX_SUBSCRIPTIONS_PER_QUEUE": str(max(args.subscriptions)),
        **{f"TIDINGS_NOTIFICATION__{k.upper()}": v for k, v in args.server_env},
    }
    server = TidingsServer(store.data_dir, env=env, workers=args.workers, store_uri=store.uri)
    results: list[RunResult] = []
    try:
        await asyncio.to_thread(server.start)
        sampler = TreeSampler(server.pid).start()
        try:
            for count in args.subscriptions:
                print(f"  {count} subscription(s)", file=sys.stderr)
                results.append(await run_one(
                    args, server, receiver, f"http://127.0.0.1:{port}", sampler,
                    store.kind, count,
                ))
        finally:
            sampler.stop()
    finally:
        await asyncio.to_thread(server.stop)
        await runner.cleanup()
    log = "\n".join(
        line for line in server.log().splitlines() if " serving on " not in line
    ).strip()
    return results, log


def markdown(results: list[RunResult], args: argparse.Namespace) -> str:
    lines = [
        f"Steady posting: {args.rate:g} single-message POSTs/s for {args.duration:g} s per "
        f"row; workers={args.workers}; server settings: "
        f"{', '.join(f'{k}={v}' for k, v in args.server_env) or 'defaults'}.",
        "",
        "| store | subs | posted | deliveries | missing | dup | delivered/s (run) "
        "| delivered/s (while posting) | delay p50 ms | delay p99 ms | delay max ms "
        "| drain s | server CPU % | post p50 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.store} | {r.subscriptions} | {r.posted} | {r.delivered:,}/{r.expected:,} "
            f"| {r.missing} | {r.duplicates} | {r.deliveries_per_s:,.0f} "
            f"| {r.steady_deliveries_per_s:,.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} "
            f"| {r.max_ms:.0f} | {r.drain_s:.2f} | {r.server_cpu_pct:.0f} "
            f"| {r.post_p50_ms:.1f} |"
        )
    return "\n".join(lines)


def _runner() -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run
    return uvloop.run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", default="sqlite",
                        help=f"comma-separated, from {', '.join(STORES)} (default sqlite)")
    parser.add_argument("--subscriptions", default="1,10,100",
                        help="subscription counts, one run each (default 1,10,100)")
    parser.add_argument("--rate", type=float, default=20.0,
                        help="messages posted per second (default 20)")
    parser.add_argument("--duration", type=float, default=5.0,
                        help="seconds of posting per run (default 5)")
    parser.add_argument("--drain-timeout", type=float, default=120.0,
                        help="seconds to wait for the remaining deliveries (default 120)")
    parser.add_argument("--ttl", type=int, default=300, help="message ttl")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--server-setting", action="append", default=[], metavar="KEY=VALUE",
                        help="a [notification] setting for the server, e.g. "
                        "max_notifier_workers=50 (repeatable)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1,10 subscriptions, 2 s at 10/s")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--tmp-dir", help="parent for the temporary data directory")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    args = parser.parse_args(argv)
    if args.quick:
        args.subscriptions, args.duration, args.rate = "1,10", 2.0, 10.0
    args.stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    for kind in args.stores:
        if kind not in STORES:
            parser.error(f"unknown store {kind!r}")
    args.subscriptions = [int(s) for s in str(args.subscriptions).split(",") if s.strip()]
    pairs = []
    for item in args.server_setting:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--server-setting needs KEY=VALUE, got {item!r}")
        pairs.append((key.strip(), value.strip()))
    args.server_env = pairs
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data_dir = Path(tempfile.mkdtemp(prefix="tidings-bench-notify-", dir=args.tmp_dir))
    print(f"data dir: {data_dir}", file=sys.stderr)
    results: list[RunResult] = []
    logs: dict[str, str] = {}
    run = _runner()
    try:
        for kind in args.stores:
            print(f"store: {kind}", file=sys.stderr)
            with bench_store(kind, data_dir / kind) as store:
                store_results, logs[kind] = run(run_store(args, store))
            results += store_results
    finally:
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    print(markdown(results, args))
    for kind, log in logs.items():
        if log:
            print(f"\nTidings server log over {kind} (tail):\n{log[-3000:]}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"args": {k: v for k, v in vars(args).items() if k != "server_env"}
             | {"server_env": args.server_env},
             "results": [asdict(r) for r in results]}, indent=2) + "\n")
    return 1 if any(r.missing or r.post_errors for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
