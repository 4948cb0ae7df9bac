"""Deep queues at the storage level: does a consumer's cost grow with the queue behind it?

For each of ``--stores`` (a fresh SQLite file, a private redis-server with AOF
``appendfsync always``, a PostgreSQL schema of its own; see ``stores.py``) this drives
the storage driver directly, in this process, over one queue shaped into every cell of
``--depths`` x ``--in-flight``:

* depth: free messages (not claimed, not delayed, not expired);
* in flight: messages held by live claims (ttl one week; ``--claim-size`` messages
  each) at the head of the queue, i.e. posted and claimed before the free ones, which
  is where a scan from the head meets them first.

In each cell it times, one call at a time after a short warm-up:

* ``claim+delete``: claim 10 (ttl 300, grace 60), then delete exactly those ids with
  the claim id (``delete_many`` with ``claim_ids``); the 10 are then posted again at
  the tail, untimed, so that the depth stays what the cell says;
* ``list``: the first page of 10 without ``include_claimed`` (nor delayed ones);
* ``stats``: the queue's counts and ends (``QueueStore.stats``); "wrong" counts calls
  whose total or claimed count was not the cell's.

Each figure is a p50 in milliseconds with its ratio to the shallow, empty cell (the
smallest depth with nothing in flight); the target is 1.5x at most. "short" counts
calls that came back with fewer than 10 messages although the queue had them: a store
that walks past what it cannot return starves its consumers there, and its timings for
those calls measure giving up, not serving.

Cells run from shallow to deep; between cells the queue is reshaped with large batches
(claims released, posts of ``--batch`` messages, claims taking the in-flight block). On
PostgreSQL the schema's tables are then VACUUM ANALYZEd, as autovacuum would after such
a bulk change. Last, in a fresh namespace of its own, ``--footprint``
messages are posted to one queue to measure the storage they take (SQLite pages in
use, Redis ``used_memory``, PostgreSQL ``pg_total_relation_size`` of the schema's
tables), reported per 1,000,000 messages.

Once per store, in another fresh namespace, ``--delete-depth`` messages are posted to
one queue, which is then deleted while a claimer works on another queue (claim 10,
release, again; each call timed): the figures are the time the delete call takes, the time and calls
of ``collect_garbage`` until it has nothing left to remove (a store may leave a deleted
queue's rows to its sweep), whether a queue re-created under the same name at once is
empty, and the claimer's p50 and longest call before (alone) and during delete plus
clean-up: the longest is the stall a tenant sees while another deletes a deep queue.
Everything is removed at the end.

Run:  .venv/bin/python benchmarks/bench_deep.py [--stores sqlite,redis,postgres]
      [--quick] [--depths 100,100000,1000000] [--in-flight 0,10000,100000] [--reps 200]
      [--batch 10000] [--claim-size 1000] [--footprint 1000000]
      [--delete-depth 1000000] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from stores import STORES, bench_store

from tests.backends import POSTGRES_DSN
from tidings.config import StorageSettings
from tidings.model import ClaimRequest, NewMessage
from tidings.storage.base import PreparePost, Storage
from tidings.storage.postgres.driver import PostgresStorage

PROJECT = "bench-deep"
QUEUE = "deep"
CLIENT = "0e0e0e0e-0000-4000-8000-000000000000"
BODY = b'{"event": "benchmark", "payload": "' + b"x" * 64 + b'"}'  # ~100 bytes, as elsewhere
MESSAGE_TTL = 14 * 86_400  # nothing expires during a run
HOLD_TTL = 7 * 86_400  # in-flight claims stay live through the run
MEASURED_CLAIM = ClaimRequest(ttl=300, grace=60, limit=10)
PAGE = 10
WARMUP = 5
TARGET = 1.5
PER = 1_000_000
# Fill and reshaping calls move up to --batch messages at once: allow them time.
SETTINGS = StorageSettings(operation_timeout=600.0, busy_timeout=600.0, pool_size=2)
FULL: dict[str, Any] = {
    "depths": "100,100000,1000000", "in_flight": "0,10000,100000", "reps": 200,
    "footprint": PER, "delete_depth": PER,
}  # fmt: skip
QUICK: dict[str, Any] = {
    "depths": "100,10000", "in_flight": "0,1000", "reps": 50, "footprint": 10_000,
    "delete_depth": 10_000,
}  # fmt: skip
BYSTANDER = "bystander"
BYSTANDER_CLAIM = ClaimRequest(ttl=300, grace=60, limit=10)
# Seconds the claimer runs alone first, for its undisturbed figures.
CLAIMER_ALONE = 2.0
# collect_garbage calls the clean-up after a delete may take at most.
GC_CALLS = 100_000
T = TypeVar("T")


def open_storage(kind: str, uri: str) -> Storage:
    if kind == "sqlite":
        from tidings.storage.sqlite.driver import SQLiteStorage

        return SQLiteStorage.from_uri(uri, SETTINGS)
    if kind == "redis":
        from tidings.storage.redis.driver import RedisStorage

        return RedisStorage.from_uri(uri, SETTINGS)
    return PostgresStorage.from_uri(uri, SETTINGS)


async def with_storage(kind: str, uri: str, work: Callable[[Storage], Awaitable[T]]) -> T:
    storage = open_storage(kind, uri)
    await storage.open()
    try:
        return await work(storage)
    finally:
        await storage.close()


def percentile(samples: list[float], fraction: float) -> float:
    """Nearest-rank percentile (0.0 when empty)."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))]


@dataclass
class Rate:
    """Messages moved by one kind of bulk step, and the seconds it took."""

    messages: int = 0
    seconds: float = 0.0

    def add(self, messages: int, seconds: float) -> None:
        self.messages += messages
        self.seconds += seconds

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


@dataclass
class Cell:
    depth: int
    in_flight: int
    claim_delete_p50_ms: float
    claim_delete_p95_ms: float
    claim_short: int
    list_p50_ms: float
    list_p95_ms: float
    list_short: int
    stats_p50_ms: float
    stats_p95_ms: float
    stats_wrong: int
    reps: int
    shape_s: float
    claim_delete_ratio: float = 0.0
    list_ratio: float = 0.0
    stats_ratio: float = 0.0


@dataclass
class DeleteRun:
    """Deleting a deep queue while another tenant claims from its own queue."""

    messages: int
    fill_s: float = 0.0
    call_ms: float = 0.0
    cleanup_s: float = 0.0
    gc_calls: int = 0
    gc_removed: int = 0
    recreated_empty: bool = False
    alone_calls: int = 0
    alone_p50_ms: float = 0.0
    alone_max_ms: float = 0.0
    during_calls: int = 0
    during_p50_ms: float = 0.0
    during_max_ms: float = 0.0


@dataclass
class StoreRun:
    store: str
    cells: list[Cell] = field(default_factory=list)
    post: Rate = field(default_factory=Rate)
    hold: Rate = field(default_factory=Rate)
    release: Rate = field(default_factory=Rate)
    pop: Rate = field(default_factory=Rate)
    footprint_messages: int = 0
    footprint_bytes: int = 0
    footprint_how: str = ""
    delete: DeleteRun | None = None
    seconds: float = 0.0

    @property
    def bytes_per_million(self) -> float:
        if not self.footprint_messages:
            return 0.0
        return self.footprint_bytes * PER / self.footprint_messages


def same_messages(count: int) -> PreparePost:
    messages = [NewMessage(body=BODY, ttl=MESSAGE_TTL)] * count
    return lambda _metadata: messages


class DeepQueue:
    """One queue and what it holds: ``free`` messages behind ``held`` claims' messages."""

    def __init__(
        self, storage: Storage, run: StoreRun, batch: int, claim_size: int = 0, queue: str = QUEUE
    ) -> None:
        self.storage = storage
        self.run = run
        self.batch = batch
        self.claim_size = claim_size
        self.queue = queue
        self.free = 0
        self.held: list[tuple[str, int]] = []  # (claim id, messages it holds)

    @property
    def in_flight(self) -> int:
        return sum(count for _, count in self.held)

    async def post(self, count: int, *, bulk: bool = True) -> None:
        started = time.perf_counter()
        left = count
        while left > 0:
            size = min(self.batch, left)
            await self.storage.messages.post(
                PROJECT, self.queue, same_messages(size), CLIENT, time.time()
            )
            left -= size
        self.free += count
        if bulk:  # the rate of filling; refills after measured calls are not bulk
            self.run.post.add(count, time.perf_counter() - started)

    async def release_all(self) -> None:
        started, released = time.perf_counter(), self.in_flight
        for claim_id, _ in self.held:
            await self.storage.claims.release(PROJECT, self.queue, claim_id, time.time())
        self.held.clear()
        self.free += released
        self.run.release.add(released, time.perf_counter() - started)

    async def pop(self, count: int) -> None:
        started, left = time.perf_counter(), count
        for _ in range(count // self.batch + 2):
            if left <= 0:
                break
            popped = await self.storage.messages.pop(
                PROJECT, self.queue, min(self.batch, left), time.time()
            )
            left -= len(popped)
        if left > 0:
            raise RuntimeError(f"pop could not remove {count} free messages ({left} left)")
        self.free -= count
        self.run.pop.add(count, time.perf_counter() - started)

    async def hold(self, count: int) -> None:
        """Claim the ``count`` oldest free messages, ``claim_size`` per claim (0: one)."""
        started, left = time.perf_counter(), count
        while left > 0:
            size = min(left, self.claim_size or left)
            request = ClaimRequest(ttl=HOLD_TTL, grace=0, limit=size)
            result = await self.storage.claims.create(PROJECT, self.queue, request, time.time())
            got = len(result.messages) if result is not None else 0
            if result is not None:
                self.held.append((result.id, got))
                self.free -= got
                left -= got
            if got < size:
                raise RuntimeError(
                    f"holding {count:,} messages: a claim of {size:,} took {got:,} after "
                    f"{count - left - got:,} were held (a store that scans from the head "
                    "starves here; --claim-size 0 holds the block in one claim)"
                )
        self.run.hold.add(count, time.perf_counter() - started)

    async def shape(self, depth: int, in_flight: int) -> None:
        """``in_flight`` held messages at the head, then ``depth`` free ones."""
        if self.in_flight != in_flight:
            await self.release_all()
        wanted = depth + in_flight - self.in_flight  # free before the in-flight claim
        if self.free < wanted:
            await self.post(wanted - self.free)
        elif self.free > wanted:
            await self.pop(self.free - wanted)
        if self.in_flight < in_flight:
            await self.hold(in_flight)
        assert (self.free, self.in_flight) == (depth, in_flight)


async def vacuum_analyze(schema: str) -> None:
    connection = await asyncpg.connect(POSTGRES_DSN)
    try:
        tables = await connection.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = $1", schema
        )
        for row in tables:
            await connection.execute(f'VACUUM ANALYZE "{schema}"."{row[0]}"')
    finally:
        await connection.close()


async def claim_then_delete(queue: DeepQueue, reps: int) -> tuple[list[float], int]:
    storage, samples, short = queue.storage, [], 0
    for i in range(WARMUP + reps):
        started = time.perf_counter()
        result = await storage.claims.create(PROJECT, queue.queue, MEASURED_CLAIM, time.time())
        if result is not None:
            ids = [m.id for m in result.messages]
            await storage.messages.delete_many(
                PROJECT, queue.queue, ids, [result.id], time.time()
            )
        elapsed = (time.perf_counter() - started) * 1000
        got = len(result.messages) if result is not None else 0
        if i >= WARMUP:
            samples.append(elapsed)
            short += got < min(MEASURED_CLAIM.limit, queue.free)
        if got:  # keep the depth: the consumed messages come back at the tail, untimed
            queue.free -= got
            await queue.post(got, bulk=False)
    return samples, short


async def list_first_page(queue: DeepQueue, reps: int) -> tuple[list[float], int]:
    storage, samples, short = queue.storage, [], 0
    for i in range(WARMUP + reps):
        started = time.perf_counter()
        page = await storage.messages.page(
            PROJECT, queue.queue, marker=None, limit=PAGE, exclude_client=None,
            include_claimed=False, include_delayed=False, now=time.time(),
        )  # fmt: skip
        elapsed = (time.perf_counter() - started) * 1000
        if i >= WARMUP:
            samples.append(elapsed)
            short += len(page.messages) < min(PAGE, queue.free)
    return samples, short


async def stats_calls(queue: DeepQueue, reps: int) -> tuple[list[float], int]:
    storage, samples, wrong = queue.storage, [], 0
    for i in range(WARMUP + reps):
        started = time.perf_counter()
        stats = await storage.queues.stats(PROJECT, queue.queue, time.time())
        elapsed = (time.perf_counter() - started) * 1000
        if i >= WARMUP:
            samples.append(elapsed)
            expected = (queue.free + queue.in_flight, queue.in_flight)
            wrong += (stats.total, stats.claimed) != expected
    return samples, wrong


async def run_cells(
    storage: Storage, run: StoreRun, args: argparse.Namespace, schema: str | None
) -> None:
    queue = DeepQueue(storage, run, args.batch, args.claim_size)
    for depth in args.depths:
        for in_flight in args.in_flight:
            started = time.perf_counter()
            await queue.shape(depth, in_flight)
            if schema is not None:
                await vacuum_analyze(schema)
            shaped = time.perf_counter() - started
            claims, claim_short = await claim_then_delete(queue, args.reps)
            lists, list_short = await list_first_page(queue, args.reps)
            stats, stats_wrong = await stats_calls(queue, args.reps)
            cell = Cell(
                depth=depth, in_flight=in_flight,
                claim_delete_p50_ms=percentile(claims, 0.5),
                claim_delete_p95_ms=percentile(claims, 0.95), claim_short=claim_short,
                list_p50_ms=percentile(lists, 0.5), list_p95_ms=percentile(lists, 0.95),
                list_short=list_short, stats_p50_ms=percentile(stats, 0.5),
                stats_p95_ms=percentile(stats, 0.95), stats_wrong=stats_wrong,
                reps=args.reps, shape_s=shaped,
            )  # fmt: skip
            run.cells.append(cell)
            print(
                f"  {run.store}: depth {depth:,}, in flight {in_flight:,}: shaped in "
                f"{shaped:.1f} s; claim+delete p50 {cell.claim_delete_p50_ms:.2f} ms "
                f"({claim_short} short), list p50 {cell.list_p50_ms:.2f} ms "
                f"({list_short} short), stats p50 {cell.stats_p50_ms:.2f} ms "
                f"({stats_wrong} wrong)",
                file=sys.stderr,
                flush=True,
            )
    if run.cells:
        base = run.cells[0]
        for cell in run.cells:
            cell.claim_delete_ratio = cell.claim_delete_p50_ms / base.claim_delete_p50_ms
            cell.list_ratio = cell.list_p50_ms / base.list_p50_ms
            cell.stats_ratio = cell.stats_p50_ms / base.stats_p50_ms


def footprint(kind: str, data_dir: Path, count: int, batch: int, run: StoreRun) -> None:
    """Post ``count`` messages into a fresh namespace and measure what they take."""
    rate = Rate()  # not mixed into the run's rates: no cell is running here
    with bench_store(kind, data_dir) as store:

        async def create(storage: Storage) -> None:
            await storage.queues.create(PROJECT, QUEUE, {}, time.time())

        async def fill(storage: Storage) -> None:
            await DeepQueue(storage, StoreRun(kind, post=rate), batch).post(count)

        run_async(with_storage(kind, store.uri, create))
        store.mark_baseline()
        run_async(with_storage(kind, store.uri, fill))
        measured = store.footprint(count)
    run.footprint_messages, run.footprint_bytes = count, measured.bytes_total
    run.footprint_how = measured.detail
    print(
        f"  {kind}: footprint: {count:,} messages posted at {rate.per_second:,.0f}/s, "
        f"{measured.bytes_per_message:.0f} bytes each",
        file=sys.stderr,
        flush=True,
    )


class Claimer:
    """Claims 10 from its own queue and releases them, call after call, timing each."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.samples: list[float] = []
        self.stop = asyncio.Event()

    async def run(self) -> None:
        while not self.stop.is_set():
            started = time.perf_counter()
            result = await self.storage.claims.create(
                PROJECT, BYSTANDER, BYSTANDER_CLAIM, time.time()
            )
            self.samples.append((time.perf_counter() - started) * 1000)
            if result is None:
                raise RuntimeError("the bystander's queue ran dry")
            started = time.perf_counter()
            await self.storage.claims.release(PROJECT, BYSTANDER, result.id, time.time())
            self.samples.append((time.perf_counter() - started) * 1000)

    async def run_for(self, seconds: float) -> list[float]:
        task = asyncio.ensure_future(self.run())
        await asyncio.sleep(seconds)
        self.stop.set()
        await task
        samples, self.samples = self.samples, []
        self.stop.clear()
        return samples


async def delete_deep(storage: Storage, count: int, batch: int) -> DeleteRun:
    figures = DeleteRun(messages=count)
    started = time.perf_counter()
    await DeepQueue(storage, StoreRun("delete"), batch).post(count)
    await storage.messages.post(PROJECT, BYSTANDER, same_messages(100), CLIENT, time.time())
    figures.fill_s = time.perf_counter() - started
    claimer = Claimer(storage)
    alone = await claimer.run_for(CLAIMER_ALONE)
    task = asyncio.ensure_future(claimer.run())
    try:
        await asyncio.sleep(0.2)  # the claimer is in its stride
        started = time.perf_counter()
        await storage.queues.delete(PROJECT, QUEUE)
        figures.call_ms = (time.perf_counter() - started) * 1000
        # Re-created at once: it must be empty whatever is left of the old one.
        await storage.messages.post(PROJECT, QUEUE, same_messages(1), CLIENT, time.time())
        stats = await storage.queues.stats(PROJECT, QUEUE, time.time())
        figures.recreated_empty = stats.total == 1
        started = time.perf_counter()
        for _ in range(GC_CALLS):
            removed = await storage.collect_garbage(time.time())
            figures.gc_calls += 1
            figures.gc_removed += removed
            if not removed:
                break
        figures.cleanup_s = time.perf_counter() - started
        if (await storage.queues.stats(PROJECT, QUEUE, time.time())).total != 1:
            figures.recreated_empty = False
    finally:
        claimer.stop.set()
        await task
    during = claimer.samples
    figures.alone_calls, figures.during_calls = len(alone), len(during)
    figures.alone_p50_ms, figures.alone_max_ms = percentile(alone, 0.5), max(alone, default=0)
    figures.during_p50_ms = percentile(during, 0.5)
    figures.during_max_ms = max(during, default=0.0)
    return figures


def delete_figure(kind: str, data_dir: Path, count: int, batch: int, run: StoreRun) -> None:
    """Delete a queue of ``count`` messages beside a working claimer, in a fresh namespace."""
    with bench_store(kind, data_dir) as store:

        async def work(storage: Storage) -> DeleteRun:
            return await delete_deep(storage, count, batch)

        run.delete = figures = run_async(with_storage(kind, store.uri, work))
    print(
        f"  {kind}: delete of {count:,} messages: call {figures.call_ms:.1f} ms, clean-up "
        f"{figures.cleanup_s:.1f} s in {figures.gc_calls} collect_garbage calls; claimer on "
        f"another queue: longest {figures.during_max_ms:.1f} ms (alone "
        f"{figures.alone_max_ms:.1f} ms); re-created queue empty: {figures.recreated_empty}",
        file=sys.stderr,
        flush=True,
    )


def run_async(work: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop, as the server does."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        return asyncio.run(work)
    return uvloop.run(work)


def run_store(kind: str, data_dir: Path, args: argparse.Namespace) -> StoreRun:
    run = StoreRun(kind)
    started = time.perf_counter()
    print(f"store: {kind}", file=sys.stderr, flush=True)
    with bench_store(kind, data_dir / "cells") as store:

        async def cells(storage: Storage) -> None:
            schema = storage.schema if isinstance(storage, PostgresStorage) else None
            await run_cells(storage, run, args, schema)

        run_async(with_storage(kind, store.uri, cells))
    if args.footprint:
        footprint(kind, data_dir / "footprint", args.footprint, args.batch, run)
    if args.delete_depth:
        delete_figure(kind, data_dir / "delete", args.delete_depth, args.batch, run)
    run.seconds = time.perf_counter() - started
    return run


def ratio(value: float) -> str:
    return f"{value:.2f}x" + (" (over)" if value > TARGET else "")


def markdown(runs: list[StoreRun], args: argparse.Namespace) -> str:
    lines = [
        f"p50 (p95) in ms over {args.reps} calls per figure; ratio to depth "
        f"{args.depths[0]:,} with {args.in_flight[0]:,} in flight (target <= {TARGET}x); "
        f"short = calls that returned fewer than {PAGE} messages.",
    ]
    for run in runs:
        lines += [
            "",
            f"### {run.store}",
            "",
            "| depth | in flight | claim+delete p50 (p95) ms | ratio | short "
            "| list p50 (p95) ms | ratio | short | stats p50 (p95) ms | ratio | wrong |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for c in run.cells:
            lines.append(
                f"| {c.depth:,} | {c.in_flight:,} "
                f"| {c.claim_delete_p50_ms:.2f} ({c.claim_delete_p95_ms:.2f}) "
                f"| {ratio(c.claim_delete_ratio)} | {c.claim_short} "
                f"| {c.list_p50_ms:.2f} ({c.list_p95_ms:.2f}) | {ratio(c.list_ratio)} "
                f"| {c.list_short} | {c.stats_p50_ms:.2f} ({c.stats_p95_ms:.2f}) "
                f"| {ratio(c.stats_ratio)} | {c.stats_wrong} |"
            )
        lines.append("")
        if run.footprint_messages:
            lines.append(
                f"Storage: {run.bytes_per_million / 2**20:,.0f} MiB per 1,000,000 messages "
                f"({run.footprint_bytes / run.footprint_messages:.0f} B/message, measured "
                f"over {run.footprint_messages:,}; {run.footprint_how})."
            )
        rates = ", ".join(
            f"{name} {rate.per_second:,.0f} msgs/s ({rate.messages:,} in {rate.seconds:.1f} s)"
            for name, rate in (
                ("post", run.post), ("hold (claim)", run.hold), ("release", run.release),
                ("pop", run.pop),
            )
            if rate.messages
        )  # fmt: skip
        lines.append(f"Bulk rates: {rates}. Store run: {run.seconds:.0f} s.")
        d = run.delete
        if d is not None:
            lines.append(
                f"Delete of a {d.messages:,}-message queue: the call {d.call_ms:,.1f} ms, "
                f"clean-up {d.cleanup_s:.1f} s ({d.gc_calls} collect_garbage calls, "
                f"{d.gc_removed:,} rows); re-created at once and empty: "
                f"{'yes' if d.recreated_empty else 'NO'}. A claimer on another queue: "
                f"p50 {d.during_p50_ms:.2f} ms, longest {d.during_max_ms:,.1f} ms over "
                f"{d.during_calls:,} calls meanwhile (alone: p50 {d.alone_p50_ms:.2f} ms, "
                f"longest {d.alone_max_ms:.1f} ms over {d.alone_calls:,})."
            )
    return "\n".join(lines)


def int_list(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", default=",".join(STORES),
                        help=f"comma-separated, any of {','.join(STORES)} (default: all)")
    parser.add_argument("--depths", help="free messages per cell (default 100,100000,1000000; "
                                         "quick: 100,10000)")
    parser.add_argument("--in-flight", help="messages held in live claims at the head "
                                            "(default 0,10000,100000; quick: 0,1000)")
    parser.add_argument("--reps", type=int, help="timed calls per figure (default 200; quick 50)")
    parser.add_argument("--batch", type=int, default=10_000,
                        help="messages per post or pop while filling (default 10,000)")
    parser.add_argument("--claim-size", type=int, default=1000,
                        help="messages per claim holding the in-flight block (default 1,000; "
                             "0: the whole block in one claim)")
    parser.add_argument("--footprint", type=int,
                        help="messages posted to measure storage (default 1,000,000; "
                             "quick: 10,000; 0: skip)")
    parser.add_argument("--delete-depth", type=int,
                        help="messages in the queue deleted beside a claimer (default "
                             "1,000,000; quick: 10,000; 0: skip)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run at small scale (explicit options still win)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--tmp-dir", help="parent for the temporary data directory")
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    args.depths = sorted(set(int_list(str(args.depths))))
    args.in_flight = sorted(set(int_list(str(args.in_flight))))
    if not set(args.stores) <= set(STORES):
        parser.error(f"--stores takes {', '.join(STORES)}")
    if not args.depths or args.depths[0] < PAGE:
        parser.error(f"--depths needs values of at least {PAGE}")
    if not args.in_flight or args.in_flight[0] < 0:
        parser.error("--in-flight needs values of at least 0")
    if (args.reps < 1 or args.batch < 1 or args.footprint < 0 or args.claim_size < 0
            or args.delete_depth < 0):
        parser.error("--reps and --batch must be positive, --footprint, --claim-size and "
                     "--delete-depth at least 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data_dir = Path(tempfile.mkdtemp(prefix="tidings-bench-deep-", dir=args.tmp_dir))
    print(f"data dir: {data_dir}; load average {os.getloadavg()[0]:.2f}", file=sys.stderr)
    runs: list[StoreRun] = []
    try:
        for kind in args.stores:
            runs.append(run_store(kind, data_dir / kind, args))
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    print(markdown(runs, args))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(run) for run in runs], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
