"""Runs SQLite work off the event loop, with group commit for writes.

One writer thread owns the write connection. Jobs queued while it is busy are run
together in one ``BEGIN IMMEDIATE`` transaction, each inside its own savepoint, and
committed with a single fsync: many concurrent small writes cost one disk flush, and a
failing job rolls back alone. Reader threads serve reads from their own connections
(WAL lets them run beside the writer). Each thread hands a whole batch of results back
to the event loop with one wake-up, not one per job.

Both are shared by every tenant, so jobs wait in a ``FairQueue``: one line per tenant,
and each batch serves first the tenants that used the least thread time lately (each
job's run time, plus its share of the commit, is charged to its tenant). A batch stops
starting jobs once it has run for ``BATCH_TIME_BUDGET``, or before a job whose tenant's
jobs lately took longer than what is left of it; the rest go back to the head of their
lines. A tenant flooding the writer with heavy jobs thus delays another tenant's cheap
job by at most the one heavy job already running, however many it queues.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tidings.storage.fairness import FairQueue, current_tenant

T = TypeVar("T")
Work = Callable[[sqlite3.Connection], T]
Outcome = tuple[Any, BaseException | None]
OnCommit = Callable[[Any], None]
BeforeCommit = Callable[[sqlite3.Connection], None]

log = logging.getLogger("tidings.storage.sqlite")

MAX_BATCH = 512
# Seconds a batch may run before the jobs it has not started go back to the queue.
BATCH_TIME_BUDGET = 0.05


@dataclass(slots=True)
class _Job:
    work: Work[Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    tenant: str
    cost: float = 0.0  # seconds the job ran, set by the thread that runs it
    expected: float = 0.0  # what its tenant's jobs cost lately, set when it is taken
    on_commit: OnCommit | None = None


def _settle_all(settled: list[tuple[_Job, Outcome]]) -> None:
    for job, (result, error) in settled:
        if error is None and job.on_commit is not None:
            # Even when the caller gave up waiting: what committed must be signalled.
            try:
                job.on_commit(result)
            except Exception:
                log.exception("a commit hook failed")
        future = job.future
        if future.cancelled():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


def _deliver(batch: list[_Job], outcomes: list[Outcome]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Job, Outcome]]] = {}
    for job, outcome in zip(batch, outcomes, strict=True):
        by_loop.setdefault(job.loop, []).append((job, outcome))
    for loop, settled in by_loop.items():
        if not loop.is_closed():
            loop.call_soon_threadsafe(_settle_all, settled)


class _Thread:
    """A thread with its own connection that runs queued jobs in batches."""

    def __init__(
        self,
        name: str,
        connect: Callable[[], sqlite3.Connection],
        run_batch: Callable[[sqlite3.Connection, list[_Job]], list[Outcome]],
    ) -> None:
        self.jobs: FairQueue[_Job] = FairQueue()
        self._connect = connect
        self._run_batch = run_batch
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.jobs.close()

    def join(self) -> None:
        self._thread.join()

    def _next_batch(self) -> list[_Job] | None:
        taken = self.jobs.take(MAX_BATCH)
        if taken is None:
            return None
        expected = self.jobs.expected_costs({tenant for tenant, _ in taken})
        for tenant, job in taken:
            job.expected = expected[tenant]
        return [job for _, job in taken]

    def _charge(self, batch: list[_Job], elapsed: float) -> None:
        """Split the batch's time (commit included) over its jobs by their run time."""
        measured = sum(job.cost for job in batch)
        if measured > 0:
            costs = [(job.tenant, elapsed * job.cost / measured) for job in batch]
        else:
            costs = [(job.tenant, elapsed / len(batch)) for job in batch]
        self.jobs.charge(costs)

    def _loop(self) -> None:
        connection: sqlite3.Connection | None = None
        while (batch := self._next_batch()) is not None:
            try:
                if connection is None:
                    connection = self._connect()
                started = time.monotonic()
                outcomes = self._run_batch(connection, batch)
                # Jobs the batch had no time for wait again at the head of their lines.
                self.jobs.put_back((job.tenant, job) for job in batch[len(outcomes) :])
                batch = batch[: len(outcomes)]
                self._charge(batch, time.monotonic() - started)
            except BaseException as exc:
                outcomes = [(None, exc)] * len(batch)
                if connection is not None and isinstance(exc, sqlite3.DatabaseError):
                    # Drop a connection that may be broken; the next batch reopens.
                    connection.close()
                    connection = None
            _deliver(batch, outcomes)
        if connection is not None:
            connection.close()


def _over_budget(started: float, done: int, job: _Job) -> bool:
    """True when the batch should end before ``job`` (never before its first job)."""
    return done > 0 and time.monotonic() - started + job.expected > BATCH_TIME_BUDGET


def _run_reads(connection: sqlite3.Connection, batch: list[_Job]) -> list[Outcome]:
    """Outcomes of a prefix of the batch (at least one job; the rest ran out of time)."""
    outcomes: list[Outcome] = []
    started = time.monotonic()
    for job in batch:
        if _over_budget(started, len(outcomes), job):
            break
        began = time.monotonic()
        try:
            outcomes.append((job.work(connection), None))
        except Exception as exc:
            outcomes.append((None, exc))
        job.cost = time.monotonic() - began
    return outcomes


def _run_writes(
    connection: sqlite3.Connection, batch: list[_Job], before_commit: BeforeCommit
) -> list[Outcome]:
    """Outcomes of a prefix of the batch, committed together (see ``_run_reads``)."""
    if len(batch) == 1:
        return [_run_alone(connection, batch[0], before_commit)]
    outcomes: list[Outcome] = []
    started = time.monotonic()
    connection.execute("BEGIN IMMEDIATE")
    try:
        for job in batch:
            if _over_budget(started, len(outcomes), job):
                break
            began = time.monotonic()
            connection.execute("SAVEPOINT job")
            try:
                result = job.work(connection)
            except Exception as exc:  # the job's own failure: undo it alone
                connection.execute("ROLLBACK TO job")
                connection.execute("RELEASE job")
                outcomes.append((None, exc))
            else:
                connection.execute("RELEASE job")
                outcomes.append((result, None))
            job.cost = time.monotonic() - began
        before_commit(connection)
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return outcomes


def _run_alone(connection: sqlite3.Connection, job: _Job, before_commit: BeforeCommit) -> Outcome:
    # A lone job needs no savepoint: its failure rolls back the whole transaction.
    connection.execute("BEGIN IMMEDIATE")
    try:
        result = job.work(connection)
        before_commit(connection)
    except Exception as exc:
        connection.execute("ROLLBACK")
        if isinstance(exc, sqlite3.DatabaseError):
            raise
        return None, exc
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
    return result, None


def _nothing(connection: sqlite3.Connection) -> None:
    pass


class SQLiteExecutor:
    def __init__(self, connect: Callable[[], sqlite3.Connection], readers: int = 2) -> None:
        self._before_commit: BeforeCommit = _nothing
        self._writer = _Thread(
            "tidings-sqlite-write",
            connect,
            lambda db, batch: _run_writes(db, batch, self._before_commit),
        )
        self._readers = [
            _Thread(f"tidings-sqlite-read-{n}", connect, _run_reads) for n in range(readers)
        ]
        self._next_reader = itertools.cycle(self._readers)
        self._started = False

    def start(self) -> None:
        for thread in (self._writer, *self._readers):
            thread.start()
        self._started = True

    def before_commit(self, hook: BeforeCommit) -> None:
        """Run ``hook`` on the writer thread in every write transaction, after its jobs
        and before its commit (set before ``start``)."""
        self._before_commit = hook

    def writes_waiting(self) -> int:
        """Write jobs queued and not yet taken by the writer."""
        return len(self._writer.jobs)

    async def write(self, work: Work[T], on_commit: Callable[[T], None] | None = None) -> T:
        """Run ``work`` inside the next committed write transaction; ``on_commit`` gets
        its result on the event loop once that transaction committed (before the caller
        resumes, and even when the caller was cancelled meanwhile)."""
        return await self._submit(self._writer, work, on_commit)

    async def read(self, work: Work[T]) -> T:
        """Run ``work`` on a reader connection (sees everything committed so far)."""
        return await self._submit(next(self._next_reader), work)

    @staticmethod
    async def _submit(
        thread: _Thread, work: Work[T], on_commit: Callable[[T], None] | None = None
    ) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        tenant = current_tenant.get()
        thread.jobs.put(_Job(work, loop, future, tenant, on_commit=on_commit), tenant)
        return await future

    async def close(self) -> None:
        if not self._started:
            return
        threads = (self._writer, *self._readers)
        for thread in threads:
            thread.stop()
        for thread in threads:
            await asyncio.to_thread(thread.join)
        self._started = False
