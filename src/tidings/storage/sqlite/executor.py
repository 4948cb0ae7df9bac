"""Runs SQLite work off the event loop, with group commit for writes.

One writer thread owns the write connection. Jobs queued while it is busy are run
together in one ``BEGIN IMMEDIATE`` transaction, each inside its own savepoint, and
committed with a single fsync: many concurrent small writes cost one disk flush, and a
failing job rolls back alone. A small pool of reader threads serves reads from their
own connections (WAL lets them run beside the writer).
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
Work = Callable[[sqlite3.Connection], T]

MAX_BATCH = 512


@dataclass(slots=True)
class _Job:
    work: Work[Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class SQLiteExecutor:
    def __init__(self, connect: Callable[[], sqlite3.Connection], readers: int = 2) -> None:
        self._connect = connect
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._local = threading.local()
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="tidings-sqlite-read")
        self._reader_connections: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()

    def start(self) -> None:
        self._writer = threading.Thread(
            target=self._write_loop, name="tidings-sqlite-write", daemon=True
        )
        self._writer.start()

    async def write(self, work: Work[T]) -> T:
        """Run ``work`` inside the next committed write transaction."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put(_Job(work, loop, future))
        return await future

    async def read(self, work: Work[T]) -> T:
        """Run ``work`` on a reader connection (sees everything committed so far)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._read, work)

    def _read(self, work: Work[T]) -> T:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
            with self._reader_lock:
                self._reader_connections.append(connection)
        return work(connection)

    def _write_loop(self) -> None:
        connection: sqlite3.Connection | None = None
        while True:
            job = self._jobs.get()
            if job is None:
                break
            batch = [job]
            while len(batch) < MAX_BATCH:
                try:
                    nxt = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._jobs.put(None)  # finish this batch, then stop
                    break
                batch.append(nxt)
            try:
                if connection is None:
                    connection = self._connect()
                outcomes = self._run_batch(connection, batch)
            except BaseException as exc:
                outcomes = [(None, exc) for _ in batch]
                if connection is not None and isinstance(exc, sqlite3.DatabaseError):
                    # Drop a connection that may be broken; the next batch reopens.
                    connection.close()
                    connection = None
            for item, (result, error) in zip(batch, outcomes, strict=True):
                item.loop.call_soon_threadsafe(_settle, item.future, result, error)
        if connection is not None:
            connection.close()

    @staticmethod
    def _run_batch(
        connection: sqlite3.Connection, batch: list[_Job]
    ) -> list[tuple[Any, BaseException | None]]:
        outcomes: list[tuple[Any, BaseException | None]] = []
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

    async def close(self) -> None:
        if self._writer is not None:
            self._jobs.put(None)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        self._readers.shutdown(wait=True)
        with self._reader_lock:
            for connection in self._reader_connections:
                connection.close()
            self._reader_connections.clear()
