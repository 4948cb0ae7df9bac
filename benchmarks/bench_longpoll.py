"""Long polling: post-to-claim delay, and what an idle long-polling consumer costs the store.

For each store (SQLite file, a private Redis with AOF ``appendfsync always``, PostgreSQL
in a schema of its own), one Tidings server (``--workers``) and, in this process:

* producers posting single messages at ``--rate`` messages/s in total, each body carrying
  its post time;
* ``--consumers`` consumers that claim (limit 10) and delete what they got, measured in
  two phases of ``--duration`` seconds: ``longpoll`` (``?wait=20``) and ``polling``
  (no wait; after an empty claim, ``--poll-interval`` seconds of sleep, as a Zaqar client
  must poll). The delay is from the post being sent to its claim's answer arriving.
* ``idle``: store round trips over ``--idle`` seconds while one consumer long-polls an
  empty queue (its first try excluded), against the same window with nobody waiting.
  Redis: ``INFO commandstats`` of the private instance. PostgreSQL: no
  pg_stat_statements here, so table reads (``seq_scan + idx_scan`` of the schema's tables
  in ``pg_stat_user_tables``; flushed by PostgreSQL about once a second, so approximate).
  SQLite runs inside the server: its change feed's poller reads ``PRAGMA data_version``
  (no table) every 20 ms while a queue is watched, and nothing else; not counted.

The machine is shared and noisy; the figures are what one run saw.

Run:  .venv/bin/python benchmarks/bench_longpoll.py [--stores sqlite,redis,postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import redis.asyncio as aioredis
from loadgen import percentile
from servers import tidings_server
from stores import STORES, BenchStore, bench_store

from tests.backends import POSTGRES_DSN

CLAIM_BODY = json.dumps({"ttl": 60, "grace": 60}).encode()
LONG_WAIT = 20


@dataclass
class Phase:
    name: str
    delays: list[float] = field(default_factory=list)
    claims: int = 0
    empty_claims: int = 0
    posted: int = 0
    errors: Counter[str] = field(default_factory=Counter)


async def produce(
    session: aiohttp.ClientSession, base: str, queue: str, rate: float, until: float,
    phase: Phase,
) -> None:
    """Single-message posts at ``rate``/s on a fixed schedule (each post its own task, so
    a slow answer does not slow the schedule)."""
    url = f"{base}/queues/{queue}/messages"
    tasks: set[asyncio.Task[None]] = set()

    async def one() -> None:
        body = json.dumps({"messages": [{"body": {"t": time.time()}, "ttl": 300}]})
        try:
            async with session.post(url, data=body) as resp:
                await resp.read()
                if resp.status == 201:
                    phase.posted += 1
                else:
                    phase.errors[f"post {resp.status}"] += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            phase.errors[type(exc).__name__] += 1

    start = time.perf_counter()
    sent = 0
    while time.perf_counter() < until:
        due = start + sent / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        sent += 1
    if tasks:
        await asyncio.gather(*tasks)


async def consume(
    session: aiohttp.ClientSession, base: str, queue: str, until: float, phase: Phase,
    wait: float | None, poll_interval: float,
) -> None:
    claim_url = f"{base}/queues/{queue}/claims?limit=10"
    messages_url = f"{base}/queues/{queue}/messages"
    while time.perf_counter() < until:
        url = claim_url
        if wait is not None:  # never wait past the phase's end
            left = max(until - time.perf_counter(), 0.05)
            url = f"{base}/queues/{queue}/claims?limit=10&wait={min(wait, left):.2f}"
        try:
            async with session.post(url, data=CLAIM_BODY) as resp:
                body = await resp.read()
                status = resp.status
            arrived = time.time()
        except (aiohttp.ClientError, TimeoutError) as exc:
            phase.errors[type(exc).__name__] += 1
            continue
        phase.claims += 1
        if status == 204:
            phase.empty_claims += 1
            if wait is None:
                await asyncio.sleep(poll_interval)
            continue
        if status != 201:
            phase.errors[f"claim {status}"] += 1
            continue
        messages: list[dict[str, Any]] = json.loads(body)["messages"]
        phase.delays += [arrived - m["body"]["t"] for m in messages]
        ids = ",".join(m["id"] for m in messages)
        async with session.delete(f"{messages_url}?ids={ids}") as resp:
            await resp.read()


async def run_phase(
    base: str, name: str, args: argparse.Namespace, wait: float | None
) -> Phase:
    phase = Phase(name)
    queue = f"lp-{uuid.uuid4().hex[:8]}"
    headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": "bench-longpoll",
               "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=args.consumers + 64)
    timeout = aiohttp.ClientTimeout(total=LONG_WAIT + 30)
    async with aiohttp.ClientSession(
        connector=connector, headers=headers, timeout=timeout
    ) as session:
        until = time.perf_counter() + args.duration
        await asyncio.gather(
            produce(session, base, queue, args.rate, until, phase),
            *(
                consume(session, base, queue, until + 1.0, phase, wait, args.poll_interval)
                for _ in range(args.consumers)
            ),
        )
    return phase


# --- idle cost --------------------------------------------------------------------------


async def redis_calls(url: str) -> Counter[str]:
    client = aioredis.Redis.from_url(url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    return Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()})


async def postgres_reads(schema: str) -> Counter[str]:
    connection = await asyncpg.connect(POSTGRES_DSN)
    try:
        rows = await connection.fetch(
            "SELECT relname, coalesce(seq_scan, 0) + coalesce(idx_scan, 0) AS reads "
            "FROM pg_stat_user_tables WHERE schemaname = $1",
            schema,
        )
    finally:
        await connection.close()
    return Counter({r["relname"]: int(r["reads"]) for r in rows})


async def store_counts(store: BenchStore) -> Counter[str] | None:
    if store.kind == "redis":
        return await redis_calls(store.uri.partition("?")[0])
    if store.kind == "postgres":
        await asyncio.sleep(1.2)  # let PostgreSQL flush its table statistics
        return await postgres_reads(store._schema)
    return None


async def idle_cost(base: str, store: BenchStore, seconds: float) -> dict[str, Any]:
    """Store round trips over ``seconds``: nobody waiting, then one long poll waiting."""
    headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": "bench-idle"}
    queue = f"idle-{uuid.uuid4().hex[:8]}"

    async def window() -> Counter[str] | None:
        before = await store_counts(store)
        await asyncio.sleep(seconds)
        after = await store_counts(store)
        if before is None or after is None:
            return None
        return Counter({k: after[k] - before[k] for k in after if after[k] - before[k]})

    baseline = await window()
    async with aiohttp.ClientSession(headers=headers) as session:
        request = asyncio.ensure_future(
            session.post(
                f"{base}/queues/{queue}/claims?wait={seconds + 4:g}", data=CLAIM_BODY
            )
        )
        await asyncio.sleep(1.5)  # its first try and the feed's subscription are done
        waiting = await window()
        resp = await request
        status = resp.status
        resp.release()
    return {"baseline": baseline, "waiting": waiting, "status": status}


def summary(counts: Counter[str] | None) -> str:
    if counts is None:
        return "n/a"
    total = sum(counts.values())
    detail = ", ".join(f"{k} {v}" for k, v in counts.most_common(6))
    return f"{total} ({detail})" if detail else "0"


def ms(values: list[float], fraction: float) -> float:
    return percentile(sorted(values), fraction) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", default=",".join(STORES))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--consumers", type=int, default=4)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--poll-interval", type=float, default=0.05)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    report: dict[str, Any] = {"settings": vars(args), "stores": {}}
    print(f"rate {args.rate:g} msg/s, {args.consumers} consumers, {args.workers} worker(s), "
          f"{args.duration:g} s per phase (shared, noisy machine)")
    print(f"{'store':<9} {'consumers':<10} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
          f"{'claimed':>8} {'posted':>7} {'claims':>7} {'empty':>6}  errors")
    for kind in [k.strip() for k in args.stores.split(",") if k.strip()]:
        with tempfile.TemporaryDirectory(prefix="bench-longpoll-") as tmp, \
                bench_store(kind, Path(tmp) / "store") as store:
            server = tidings_server(Path(tmp), args.workers, store.uri)
            server.start()
            try:
                base = server.url + "/v2"
                entry: dict[str, Any] = {}
                for name, wait in (("longpoll", float(LONG_WAIT)), ("polling", None)):
                    phase = asyncio.run(run_phase(base, name, args, wait))
                    entry[name] = {
                        "p50_ms": ms(phase.delays, 0.50), "p99_ms": ms(phase.delays, 0.99),
                        "max_ms": max(phase.delays, default=0) * 1000,
                        "claimed": len(phase.delays), "posted": phase.posted,
                        "claims": phase.claims, "empty_claims": phase.empty_claims,
                        "errors": dict(phase.errors),
                    }
                    e = entry[name]
                    print(f"{kind:<9} {name:<10} {e['p50_ms']:>8.1f} {e['p99_ms']:>8.1f} "
                          f"{e['max_ms']:>8.1f} {e['claimed']:>8} {e['posted']:>7} "
                          f"{e['claims']:>7} {e['empty_claims']:>6}  {e['errors'] or ''}")
                idle = asyncio.run(idle_cost(base, store, args.idle))
                entry["idle"] = {k: dict(v) if isinstance(v, Counter) else v
                                 for k, v in idle.items()}
                unit = {"redis": "commands", "postgres": "table reads"}.get(kind, "")
                print(f"{kind:<9} idle {args.idle:g} s, {unit or 'not counted'}: nobody "
                      f"waiting {summary(idle['baseline'])}; one long poll waiting "
                      f"{summary(idle['waiting'])} (answered {idle['status']})")
                report["stores"][kind] = entry
            finally:
                server.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
