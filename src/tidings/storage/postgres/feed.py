"""The change feed on PostgreSQL: LISTEN/NOTIFY, and a table for relayed payloads.

A post, once committed, wakes this node's watchers of its queue and has the other nodes
notified by ``signals.SignalSender`` (why apart from the post: see there). The rarer
statements that make messages ready (claim release or renewal, dead-letter move) call
``pg_notify`` in their own transaction: PostgreSQL delivers it at commit. Either way
nobody hears of data it cannot see yet. A schema has two channels of its own (several
deployments, or tests, may share a database). Each node keeps one connection outside
the pool that LISTENs to both; when it is lost the node reconnects by itself, then wakes
every watcher and drains its relay rows, since what was sent meanwhile was not heard.

A notification carries less than 8000 bytes, a relayed payload up to about 300 KiB: it
goes through the ``feed_relay`` table (migration 0008), and the notification only names
the node, which takes its rows with DELETE ... RETURNING.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from typing import Any

from tidings.errors import StorageError
from tidings.storage.feed import FeedHub, QueueKey, RelayHandler, Watch
from tidings.storage.postgres.database import BACKEND_ERRORS, SINGLE, Connection, Database
from tidings.storage.postgres.signals import SignalSender
from tidings.storage.sql import load_queries

log = logging.getLogger(__name__)

F = load_queries(__package__ or "tidings.storage.postgres", "feed.sql")

# PostgreSQL refuses a notification payload of this many bytes or more.
NOTIFY_LIMIT = 8000
# A readiness payload that names no queue: every watcher looks again. No encoded
# (project, queue) starts with it.
WAKE_ALL = "*"
# Relayed rows nobody took for this long belong to a node that is gone.
RELAY_KEPT = 60.0
# Rows one drain statement takes (a payload may be ~300 KiB).
RELAY_BATCH = 32
# An idle listener checks its connection this often: a cut network says nothing.
KEEPALIVE = 10.0
# A drain that failed is tried again this soon.
DRAIN_RETRY = 1.0
BACKOFF_FIRST = 0.1
BACKOFF_MAX = 5.0


def channels(schema: str) -> tuple[str, str]:
    """The schema's readiness and relay channels: valid identifiers (< 64 bytes) for
    any schema name."""
    digest = hashlib.blake2b(schema.encode(), digest_size=10, person=b"tidings-feed").hexdigest()
    return f"tidings_ready_{digest}", f"tidings_relay_{digest}"


def ready_payload(project: str, queue: str) -> str:
    """``<len(project)>:<project><queue>``: unambiguous whatever the names hold."""
    payload = f"{len(project)}:{project}{queue}"
    if len(payload.encode(errors="replace")) >= NOTIFY_LIMIT:
        return WAKE_ALL  # cannot happen with validated names; never fail a post for it
    return payload


def parse_ready(payload: str) -> QueueKey | None:
    """The (project, queue) of a readiness payload; None when it names none."""
    size, colon, rest = payload.partition(":")
    if not colon or not size.isascii() or not size.isdigit() or int(size) > len(rest):
        return None
    cut = int(size)
    return rest[:cut], rest[cut:]


class PostgresFeed:
    """This node's change feed on one schema; ``start`` and ``stop`` bracket its life."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._hub = FeedHub()
        self.ready_channel, self.relay_channel = channels(db.target.schema)
        self._task: asyncio.Task[None] | None = None
        self._poke: asyncio.Event | None = None
        self._drain_due = False
        self._drain_failing = False
        # Listening sessions established so far (a reconnect adds one).
        self.sessions = 0
        self._signals = SignalSender(
            db, self.ready_channel, f"tidings-signals-{self.node_id}", WAKE_ALL
        )

    @property
    def node_id(self) -> str:
        return self._hub.node_id

    @property
    def application_name(self) -> str:
        """What the listening connection shows in ``pg_stat_activity``."""
        return f"tidings-feed-{self.node_id}"

    def watch(self, project: str, queue: str) -> Watch:
        return self._hub.watch(project, queue)

    def on_relay(self, handler: RelayHandler) -> None:
        self._hub.on_relay(handler)

    def signal(self, project: str, queue: str) -> None:
        """A post made messages of the queue ready, and has committed: this node's
        watchers wake now, the other nodes' when the notification sent apart arrives."""
        self._hub.ready(project, queue)
        self._signals.send(ready_payload(project, queue))

    async def next_ready(self, project: str, queue: str, now: float) -> float | None:
        async def work(connection: Connection) -> float | None:
            at = await connection.fetchval(F["feed_next_ready"], project, queue)
            return None if at is None else float(at)

        at = await self._db.run(work, SINGLE)
        return None if at is None else max(at, now)

    async def relay(self, node: str, payload: bytes) -> None:
        async def work(connection: Connection) -> None:
            await connection.execute(
                F["relay_send"], node, payload, time.time(), self.relay_channel
            )

        await self._db.run(work, SINGLE)

    def start(self) -> None:
        """Start listening, and sending signals, in the background (no error reaches
        the caller)."""
        self._signals.start()
        if self._task is None:
            self._poke = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="tidings-postgres-feed"
            )

    async def stop(self) -> None:
        await self._signals.stop()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
            if not task.cancelled() and task.exception() is not None:
                log.error("change feed stopped by an error", exc_info=task.exception())

    async def _run(self) -> None:
        """Listen, and listen again after every loss, backing off while it fails."""
        failures = 0
        while True:
            started = time.monotonic()
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let the listener die
                level = logging.WARNING if failures == 0 else logging.DEBUG
                log.log(level, "change feed cannot listen (%s); retrying", _describe(exc))
                failures += 1
            else:
                log.warning("change feed lost its connection; reconnecting")
                # Right away after a long session; a connection lost as soon as it was
                # made backs off like a failure.
                failures = 0 if time.monotonic() - started >= BACKOFF_MAX else failures + 1
            if failures:
                backoff = min(BACKOFF_FIRST * 2 ** (failures - 1), BACKOFF_MAX)
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))

    async def _listen(self) -> None:
        """One listening session: returns when its connection is lost, raises when it
        cannot be set up or stops answering."""
        poke = self._poke
        assert poke is not None
        connection = await self._db.connect(self.application_name)
        try:
            connection.add_termination_listener(lambda _connection: poke.set())
            await connection.add_listener(self.ready_channel, self._heard_ready)
            await connection.add_listener(self.relay_channel, self._heard_relay)
            self.sessions += 1
            if self.sessions > 1:
                log.info("change feed listening again")
            # What was signalled while nobody listened is lost: every watcher looks
            # again, and relayed rows are taken.
            self._hub.wake_all()
            self._drain_due = True
            await self._serve(connection, poke)
        finally:
            with contextlib.suppress(*BACKEND_ERRORS):
                await connection.close(timeout=self._db.timeout)

    async def _serve(self, connection: Any, poke: asyncio.Event) -> None:
        while not connection.is_closed():
            if self._drain_due:
                self._drain_due = False
                await self._drain()
            try:
                async with asyncio.timeout(DRAIN_RETRY if self._drain_due else KEEPALIVE):
                    await poke.wait()
            except TimeoutError:
                await connection.fetchval("SELECT 1", timeout=self._db.timeout)
                continue
            poke.clear()

    async def _drain(self) -> None:
        """Hand this node's relayed rows to the hub, oldest first; on failure, try again
        in a while (``_serve``)."""

        async def take(connection: Connection) -> list[tuple[int, bytes]]:
            rows = await connection.fetch(F["relay_take"], self.node_id, RELAY_BATCH)
            return sorted((int(row[0]), bytes(row[1])) for row in rows)

        try:
            while True:
                rows = await self._db.run(take, SINGLE)
                for _, payload in rows:
                    self._hub.relayed(payload)
                if len(rows) < RELAY_BATCH:
                    break
        except StorageError as exc:
            if not self._drain_failing:
                log.warning("change feed cannot take relayed payloads (%s); will retry", exc)
            self._drain_failing = True
            self._drain_due = True
        else:
            self._drain_failing = False

    def _heard_ready(self, _connection: Any, pid: int, _channel: str, payload: str) -> None:
        if pid == self._signals.pid:
            return  # this node's own post: its watchers were woken then
        key = parse_ready(payload)
        if key is None:
            self._hub.wake_all()
        else:
            self._hub.ready(*key)

    def _heard_relay(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload == self.node_id and self._poke is not None:
            self._drain_due = True
            self._poke.set()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
