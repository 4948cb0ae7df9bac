"""Readiness signals of posts, sent to the other nodes once the post has committed.

A NOTIFY in the transaction that writes would be heard at its commit, but PostgreSQL
serialises the commits of every transaction that notified, in the whole cluster, under
one lock held until the commit is on disk: posts would queue for each other's (and any
other notifier's) disk flush one at a time. So a post commits without notifying; the
node then wakes its own watchers at once and hands the queue's payload to this sender,
which notifies on a connection of its own, several queues a statement, each queue once
however many posts it had meanwhile.

That connection commits without waiting for the disk (``synchronous_commit`` off): it
writes nothing but notifications, which PostgreSQL never keeps across a crash anyway.
The posts themselves commit as durably as ever. A signal is sent after its post
committed, so whoever hears it can see the messages; the node's own listener ignores
what this connection sent (its watchers were woken already).

Failures are retried: what was not sent stays pending, so a signal is lost only with
the node (the other nodes' waiters then answer at their deadline or with the next post).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

from tidings.storage.postgres.database import BACKEND_ERRORS, Database
from tidings.storage.sql import load_queries

log = logging.getLogger(__name__)

F = load_queries(__package__ or "tidings.storage.postgres", "feed.sql")

# Payloads one statement notifies at most.
BATCH = 256
# Queues waiting for their signal beyond which one "every queue" signal goes instead.
PENDING_MAX = 10_000
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0


class SignalSender:
    """Notifies ``channel`` with queued payloads from a background task."""

    def __init__(self, db: Database, channel: str, application_name: str, wake_all: str) -> None:
        self._db = db
        self._channel = channel
        self._application_name = application_name
        self._wake_all = wake_all
        self._pending: set[str] = set()
        self._due = asyncio.Event()
        # Set while nothing is pending (what stop waits for).
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._connection: Any = None
        # The backend that sends: its notifications come back to this node's listener.
        self.pid: int | None = None

    def send(self, payload: str) -> None:
        """Notify ``payload`` soon (once, however often it is asked for meanwhile)."""
        if self._wake_all in self._pending:
            return
        if len(self._pending) >= PENDING_MAX:
            self._pending = {self._wake_all}
        else:
            self._pending.add(payload)
        self._idle.clear()
        self._due.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="tidings-postgres-signals"
            )

    async def stop(self) -> None:
        """Send what is pending (within ``operation_timeout``), then stop."""
        task, self._task = self._task, None
        if task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), self._db.timeout)
        task.cancel()
        await asyncio.wait([task])
        await self._disconnect()

    async def _run(self) -> None:
        failures = 0
        while True:
            await self._due.wait()
            self._due.clear()
            try:
                await self._send_pending()
            except Exception as exc:  # never let the sender die
                level = logging.WARNING if failures == 0 else logging.DEBUG
                log.log(level, "readiness signals not sent (%s: %s); retrying",
                        type(exc).__name__, exc)  # fmt: skip
                failures += 1
                await self._disconnect()
                self._due.set()
                backoff = min(BACKOFF_FIRST * 2 ** (failures - 1), BACKOFF_MAX)
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
            else:
                failures = 0
                if not self._pending:
                    self._idle.set()

    async def _send_pending(self) -> None:
        while self._pending:
            if self._connection is None or self._connection.is_closed():
                self._connection = await self._db.connect(
                    self._application_name, durable_commits=False
                )
                self.pid = self._connection.get_server_pid()
            batch = [self._pending.pop() for _ in range(min(BATCH, len(self._pending)))]
            try:
                await self._connection.execute(
                    F["feed_signal_many"], self._channel, batch, timeout=self._db.timeout
                )
            except BaseException:
                # Not sent (or not known to be): sent again, which costs a wake-up at most.
                if self._wake_all not in self._pending:
                    self._pending.update(batch)
                raise

    async def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await connection.close(timeout=self._db.timeout)
            except BACKEND_ERRORS:
                connection.terminate()
