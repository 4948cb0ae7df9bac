"""Shared store workers serve tenants in turn (``storage.fairness``, SQLite's executor)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tidings.storage.fairness import FairQueue, current_tenant
from tidings.storage.sqlite.executor import SQLiteExecutor


def test_batches_serve_the_least_used_tenants_first() -> None:
    now = [100.0]
    jobs: FairQueue[str] = FairQueue(clock=lambda: now[0])
    jobs.charge([("a", 1.0), ("c", 0.1)])
    for n in range(5):
        jobs.put(f"a{n}", "a")
    jobs.put("b0", "b")
    jobs.put("c0", "c")
    assert jobs.take(4) == [("b", "b0"), ("c", "c0"), ("a", "a0"), ("a", "a1")]
    assert jobs.take(10) == [("a", "a2"), ("a", "a3"), ("a", "a4")]


def test_usage_fades_with_time() -> None:
    now = [0.0]
    jobs: FairQueue[str] = FairQueue(clock=lambda: now[0])
    jobs.charge([("a", 1.0)])
    now[0] = 2.0  # two half-lives
    assert abs(jobs.usage("a") - 0.25) < 1e-9
    jobs.charge([("b", 0.5)])
    jobs.put("a0", "a")
    jobs.put("b0", "b")
    assert jobs.take(1) == [("a", "a0")]


def test_put_back_returns_jobs_to_the_head_of_their_lines() -> None:
    jobs: FairQueue[str] = FairQueue()
    for n in range(3):
        jobs.put(f"a{n}", "a")
    taken = jobs.take(3)
    assert taken is not None
    jobs.put_back(taken[1:])
    assert jobs.take(3) == [("a", "a1"), ("a", "a2")]


def test_close_ends_the_consumer_after_the_queued_jobs() -> None:
    jobs: FairQueue[str] = FairQueue()
    jobs.put("x")
    jobs.close()
    assert jobs.take(5) == [("", "x")]
    assert jobs.take(5) is None


def test_a_waiting_consumer_wakes_on_put() -> None:
    jobs: FairQueue[str] = FairQueue()
    taken: list[object] = []
    consumer = threading.Thread(target=lambda: taken.append(jobs.take(5)))
    consumer.start()
    jobs.put("job", "t")
    consumer.join(timeout=10)
    assert taken == [[("t", "job")]]


def test_writer_runs_a_cheap_tenant_before_an_expensive_tenants_backlog(
    tmp_path: Path,
) -> None:
    """Tenant A's writes are slow and it has used the writer; B's one write goes first."""

    def connect() -> sqlite3.Connection:
        db = sqlite3.connect(tmp_path / "fair.db", check_same_thread=False, isolation_level=None)
        db.execute("CREATE TABLE IF NOT EXISTS log (n INTEGER PRIMARY KEY, tenant TEXT)")
        return db

    def record(name: str, seconds: float) -> Callable[[sqlite3.Connection], None]:
        def work(db: sqlite3.Connection) -> None:
            time.sleep(seconds)  # stands for a heavy fan-out
            db.execute("INSERT INTO log (tenant) VALUES (?)", (name,))

        return work

    async def scenario() -> list[str]:
        executor = SQLiteExecutor(connect, readers=1)
        executor.start()
        gate, holding = threading.Event(), threading.Event()

        def hold(db: sqlite3.Connection) -> None:
            holding.set()
            assert gate.wait(timeout=30)

        async def as_tenant(name: str, count: int, seconds: float) -> None:
            current_tenant.set(name)
            await asyncio.gather(*(executor.write(record(name, seconds)) for _ in range(count)))

        await as_tenant("a", 3, 0.02)  # A's history: 60 ms of writer time
        holder = asyncio.create_task(executor.write(hold))
        assert await asyncio.to_thread(holding.wait, 30)  # the writer is busy from here
        busy = asyncio.create_task(as_tenant("a", 20, 0.02))
        quiet = asyncio.create_task(as_tenant("b", 1, 0.0))
        for _ in range(10_000):  # until all 21 jobs wait behind the held writer
            if executor.writes_waiting() == 21:
                break
            await asyncio.sleep(0.001)
        assert executor.writes_waiting() == 21
        gate.set()
        await asyncio.gather(holder, busy, quiet)
        rows = await executor.read(
            lambda db: [r[0] for r in db.execute("SELECT tenant FROM log ORDER BY n")]
        )
        await executor.close()
        return rows

    order = asyncio.run(scenario())
    assert len(order) == 24
    assert order.index("b") == 3  # after A's history, before any of A's twenty queued jobs
