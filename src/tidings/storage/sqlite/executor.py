"""Runs SQLite work off the event loop, with group commit for writes.

One writer thread owns the write connection. Jobs queued while it is busy are run
together in one ``BEGIN IMMEDIATE`` transaction, each inside its own savepoint, and
committed with a single fsync: many concurrent small writes cost one disk flush, and a
failing job rolls back alone. Reader threads serve reads from their own connections
(WAL lets them run beside the writer). Each thread hands a whole batch of results back
to the event loop with one wake-up, not one per job.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
Work = Callable[[sqlite3.Connection], T]
Outcome = tuple[Any, BaseException | None]

MAX_BATCH = 512


@dataclass(slots=True)
class _Job:
    work: Work[Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


def _settle_all(settled: list[tuple[asyncio.Future[Any], Outcome]]) -> None:
    for future, (result, error) in settled:
        if future.cancelled():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


def _deliver(batch: list[_Job], outcomes: list[Outcome]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Outcome]]] = {}
    for job, outcome in zip(batch, outcomes, strict=True):
        by_loop.setdefault(job.loop, []).append((job.future, outcome))
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
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._connect = connect
        self._run_batch = run_batch
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.jobs.put(None)

    def join(self) -> None:
        self._thread.join()

    def _next_batch(self) -> list[_Job] | None:
        first = self.jobs.get()
        if first is None:
            return None
        batch = [first]
        while len(batch) < MAX_BATCH:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self.jobs.put(None)  # finish this batch, then stop
                break
            batch.append(job)
        return batch

    def _loop(self) -> None:
        connection: sqlite3.Connection | None = None
        while (batch := self._next_batch()) is not None:
            try:
                if connection is None:
                    connection = self._connect()
                outcomes = self._run_batch(connection, batch)
            except BaseException as exc:
                outcomes = [(None, exc)] * len(batch)
                if connection is not None and isinstance(exc, sqlite3.DatabaseError):
                    # Drop a connection that may be broken; the next batch reopens.
                    connection.close()
                    connection = None
            _deliver(batch, outcomes)
        if connection is not None:
            connection.close()


def _run_reads(connection: sqlite3.Connection, batch: list[_Job]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for job in batch:
        try:
            outcomes.append((job.work(connection), None))
        except Exception as exc:
            outcomes.append((None, exc))
    return outcomes


def _run_writes(connection: sqlite3.Connection, batch: list[_Job]) -> list[Outcome]:
    if len(batch) == 1:
        return [_run_alone(connection, batch[0])]
    outcomes: list[Outcome] = []
    connection.execute("BEGIN IMMEDIATE")
    try:
        for job in batch:
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
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return outcomes


def _run_alone(connection: sqlite3.Connection, job: _Job) -> Outcome:
    # A lone job needs no savepoint: its failure rolls back the whole transaction.
    connection.execute("BEGIN IMMEDIATE")
    try:
        result = job.work(connection)
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


class SQLiteExecutor:
    def __init__(self, connect: Callable[[], sqlite3.Connection], readers: int = 2) -> None:
        self._writer = _Thread("tidings-sqlite-write", connect, _run_writes)
        self._readers = [
            _Thread(f"tidings-sqlite-read-{n}", connect, _run_reads) for n in range(readers)
        ]
        self._next_reader = itertools.cycle(self._readers)
        self._started = False

    def start(self) -> None:
        for thread in (self._writer, *self._readers):
            thread.start()
        self._started = True

    async def write(self, work: Work[T]) -> T:
        """Run ``work`` inside the next committed write transaction."""
        return await self._submit(self._writer, work)

    async def read(self, work: Work[T]) -> T:
        """Run ``work`` on a reader connection (sees everything committed so far)."""
        return await self._submit(next(self._next_reader), work)

    @staticmethod
    async def _submit(thread: _Thread, work: Work[T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        thread.jobs.put(_Job(work, loop, future))
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
