"""PostgreSQL driver at scale: 1,000,000 messages in one queue, 100,000 queues in one project.

Loads the data with COPY into a schema of its own (dropped at the end), times the hot
storage calls through the driver (many repetitions; percentiles in milliseconds), and
prints the EXPLAIN (ANALYZE, BUFFERS) plans of the hot queries.

    /work/venv/bin/python benchmarks/bench_postgres_scale.py [--dsn URI] [--messages N]
        [--queues N] [--reps N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import asyncpg

from tidings.config import StorageSettings
from tidings.ids import new_ids
from tidings.model import ClaimRequest, NewMessage
from tidings.storage.postgres.driver import PostgresStorage, Q

PROJECT = "bench-project"
BIG = "big"
CLIENT = "bench-client-0000"
T0 = 1_700_000_000.0
TTL = 86_400
COPY_CHUNK = 100_000
MESSAGE_COLUMNS = [
    "id", "project", "queue", "body", "client_id", "ttl", "created", "expires",
    "delay_until", "claim_count",
]  # fmt: skip


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dsn",
        default=os.environ.get(
            "TIDINGS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--queues", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=1000)
    return parser.parse_args()


def _message_rows(count: int) -> Iterator[list[tuple[Any, ...]]]:
    body = b'{"event": "benchmark", "payload": "' + b"x" * 64 + b'"}'
    for start in range(0, count, COPY_CHUNK):
        size = min(COPY_CHUNK, count - start)
        yield [
            (mid, PROJECT, BIG, body, CLIENT, TTL, T0, T0 + TTL, 0.0, 0) for mid in new_ids(size)
        ]


async def load(connection: Any, schema: str, messages: int, queues: int) -> None:
    """COPY the data in, then VACUUM ANALYZE as a running system's autovacuum would."""
    started = time.perf_counter()
    names = [(PROJECT, f"q-{i:06d}", "{}", T0) for i in range(queues)]
    names.append((PROJECT, BIG, "{}", T0))
    await connection.copy_records_to_table(
        "queues", records=names, columns=["project", "name", "metadata", "created"],
        schema_name=schema,
    )  # fmt: skip
    for rows in _message_rows(messages):
        await connection.copy_records_to_table(
            "messages", records=rows, columns=MESSAGE_COLUMNS, schema_name=schema
        )
    loaded = time.perf_counter()
    for table in ("queues", "messages", "claims"):
        await connection.execute(f'VACUUM ANALYZE "{schema}".{table}')
    print(
        f"loaded {messages:,} messages and {queues + 1:,} queues in {loaded - started:.1f} s "
        f"(+ {time.perf_counter() - loaded:.1f} s VACUUM ANALYZE)"
    )


async def deep_seq(connection: Any, schema: str, messages: int) -> int:
    """The marker of the message 90% of the way into the big queue."""
    return int(
        await connection.fetchval(
            f'SELECT seq FROM "{schema}".messages WHERE project = $1 AND queue = $2 '
            "ORDER BY seq OFFSET $3 LIMIT 1",
            PROJECT,
            BIG,
            messages * 9 // 10,
        )
    )


async def timed(reps: int, call: Callable[[int], Awaitable[object]]) -> list[float]:
    samples = []
    for i in range(reps):
        started = time.perf_counter()
        await call(i)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def row(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]

    return (
        f"{name:<44} {len(samples):>6} {statistics.fmean(samples):>8.3f} {pct(0.5):>8.3f} "
        f"{pct(0.95):>8.3f} {pct(0.99):>8.3f} {ordered[-1]:>8.3f}"
    )


async def measure(
    storage: PostgresStorage, connection: Any, schema: str, reps: int, messages: int, queues: int
) -> list[str]:
    now = T0 + 10
    deep = await deep_seq(connection, schema, messages)
    victims = [
        r[0]
        for r in await connection.fetch(
            f'SELECT id::text FROM "{schema}".messages WHERE project = $1 AND queue = $2 '
            "AND seq > $3 ORDER BY seq LIMIT $4",
            PROJECT,
            BIG,
            deep + 1000,
            reps,
        )
    ]
    middle = f"q-{queues // 2:06d}"
    claim10 = ClaimRequest(ttl=300, grace=60, limit=10)
    batch = [NewMessage(body=b'{"n": 1}', ttl=TTL) for _ in range(10)]
    stats_reps = max(5, reps // 50)
    lapsed = now + 400  # every claim taken above has lapsed by then
    m = storage.messages

    async def page(marker: str | None, *, claimed: bool = False, at: float = now) -> object:
        return await m.page(
            PROJECT, BIG, marker=marker, limit=10, exclude_client=None,
            include_claimed=claimed, include_delayed=False, now=at,
        )  # fmt: skip

    cases: list[tuple[str, int, Callable[[int], Awaitable[object]]]] = [
        ("claim 10 (in-flight claims pile up at head)", reps,
         lambda i: storage.claims.create(PROJECT, BIG, claim10, now)),
        ("list 10, head (claimed ones skipped)", reps, lambda i: page(None)),
        ("list 10, head, include_claimed", reps, lambda i: page(None, claimed=True)),
        ("list 10, marker 90% deep", reps, lambda i: page(str(deep))),
        ("delete by id (deep in queue)", len(victims),
         lambda i: m.delete(PROJECT, BIG, victims[i], None, now)),
        ("get 1 by id", len(victims) // 2,
         lambda i: m.get(PROJECT, BIG, [victims[-1 - i]], now)),
        ("post 10", reps, lambda i: m.post(PROJECT, BIG, lambda _: batch, CLIENT, now)),
        ("pop 10", reps // 4, lambda i: m.pop(PROJECT, BIG, 10, now)),
        ("claim 10 after all claims lapsed", reps // 4,
         lambda i: storage.claims.create(PROJECT, BIG, claim10, lapsed)),
        ("list 10 after all claims lapsed", reps // 4, lambda i: page(None, at=lapsed)),
        ("queue page 20, marker mid-project", reps,
         lambda i: storage.queues.page(PROJECT, marker=middle, limit=20)),
        ("queue page 20, first", reps,
         lambda i: storage.queues.page(PROJECT, marker=None, limit=20)),
        (f"queue count ({queues + 1:,} queues)", reps // 4,
         lambda i: storage.queues.count(PROJECT)),
        (f"queue stats ({messages:,} messages)", stats_reps,
         lambda i: storage.queues.stats(PROJECT, BIG, now)),
    ]  # fmt: skip
    lines = []
    for name, count, call in cases:
        lines.append(row(name, await timed(count, call)))
    return lines


async def explain(connection: Any, schema: str, messages: int, queues: int) -> None:
    now = T0 + 10
    budget = StorageSettings().scan_budget
    deep = await deep_seq(connection, schema, messages)
    some_id = await connection.fetchval(
        f'SELECT id::text FROM "{schema}".messages WHERE project = $1 AND queue = $2 '
        "AND seq > $3 ORDER BY seq LIMIT 1",
        PROJECT,
        BIG,
        deep,
    )
    plans = [
        ("message_settle", (PROJECT, BIG, now + 400, budget)),
        ("message_claimable", (PROJECT, BIG, now, 10, budget)),
        ("message_list_ready", (PROJECT, BIG, 0, 10, now, None, budget)),
        ("message_list_all", (PROJECT, BIG, deep, 10, now, None, False, budget)),
        ("message_by_ids_for_update", (PROJECT, BIG, [some_id], now)),
        ("queue_list", (PROJECT, f"q-{queues // 2:06d}", 20, None)),
        ("queue_count", (PROJECT,)),
    ]
    await connection.execute(f'SET search_path TO "{schema}"')
    for name, args in plans:
        # Inside a rolled-back transaction: EXPLAIN ANALYZE really takes the row locks.
        transaction = connection.transaction()
        await transaction.start()
        try:
            rows = await connection.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {Q[name]}", *args)
        finally:
            await transaction.rollback()
        print(f"\n--- {name}")
        print("\n".join(r[0] for r in rows))


async def main() -> None:
    args = _args()
    schema = f"bench_scale_{uuid.uuid4().hex[:8]}"
    settings = StorageSettings(operation_timeout=60.0, pool_size=4)
    storage = PostgresStorage.from_uri(f"{args.dsn}?schema={schema}", settings)
    connection = await asyncpg.connect(args.dsn)
    try:
        await storage.open()
        await load(connection, schema, args.messages, args.queues)
        lines = await measure(storage, connection, schema, args.reps, args.messages, args.queues)
        print(
            f"\n{'call (ms)':<44} {'n':>6} {'mean':>8} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}"
        )
        print("\n".join(lines))
        await explain(connection, schema, args.messages, args.queues)
    finally:
        await storage.close()
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await connection.close()


if __name__ == "__main__":
    asyncio.run(main())
