"""The SQLite change feed: signals within the process, and across processes on the file.

A post, claim release or dead-letter move records the queue in ``feed_events`` in its
own transaction and, once that committed, wakes this process's watchers directly (the
executor's commit hook). Other processes learn of it from a poller thread with a
connection of its own: every ``POLL_INTERVAL`` it asks ``PRAGMA data_version``, which
changes when another connection committed (no table read), and only then reads the
events after the last one it saw, and the payloads relayed to its node. SQLite has no
notification between processes; this keeps the idle cost to one pragma per tick, and only
while something listens (watchers, or a relay handler). A wake-up across processes thus
takes up to ``POLL_INTERVAL``; within the process it is immediate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable

from tidings.errors import StorageError
from tidings.storage.feed import FeedHub, QueueKey, RelayHandler, Watch
from tidings.storage.sql import load_queries
from tidings.storage.sqlite.executor import SQLiteExecutor

log = logging.getLogger("tidings.feed.sqlite")

Q = load_queries(__package__ or "tidings.storage.sqlite", "queries.sql")

# Seconds between two looks at data_version: the latency of a wake-up across processes.
POLL_INTERVAL = 0.02
# Seconds the poller goes on after the last watcher left, before it parks: a long poll
# that watches again at once does not pay a restart (and stale events) each time.
LINGER = 1.0
# Events one look reads at most; when more came, every watcher is woken instead.
EVENT_BOUND = 1000
# Relayed payloads taken per transaction (each up to ~300 KiB), and transactions per look.
RELAY_CHUNK = 32
RELAY_ROUNDS = 8
# Seconds between attempts after the poller's connection failed, doubling up to the max.
RETRY_FIRST = 0.1
RETRY_MAX = 5.0
# Events and relayed payloads are pruned once this old (seconds).
FEED_RETENTION = 60.0


class SQLiteFeed:
    """``ChangeFeed`` of ``SQLiteStorage`` (see the module docstring)."""

    def __init__(
        self,
        executor: SQLiteExecutor,
        connect: Callable[[], sqlite3.Connection],
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        self._hub = FeedHub(on_first_watch=self._first_watch, on_last_unwatch=self._last_unwatch)
        self._executor = executor
        self._connect = connect
        self._poll_interval = poll_interval
        self._watched = 0  # queues with a watcher; changed on the event loop only
        self._relaying = False
        self._poller: _Poller | None = None
        # Queues noted by the write transaction under way; the writer thread's alone.
        self._pending: set[QueueKey] = set()
        executor.before_commit(self.flush)

    # --- ChangeFeed ---------------------------------------------------------------

    @property
    def node_id(self) -> str:
        return self._hub.node_id

    def watch(self, project: str, queue: str) -> Watch:
        return self._hub.watch(project, queue)

    async def next_ready(self, project: str, queue: str, now: float) -> float | None:
        def work(db: sqlite3.Connection) -> float | None:
            db.execute("BEGIN")  # one snapshot for the key and both probes
            try:
                row = db.execute(Q["queue_key"], {"project": project, "name": queue}).fetchone()
                if row is None:
                    return None
                params = {"project": project, "queue": str(row[0])}
                found = [
                    float(hit[0])
                    for name in ("feed_next_claim_expiry", "feed_next_delay_end")
                    if (hit := db.execute(Q[name], params).fetchone()) is not None
                ]
            finally:
                db.execute("COMMIT")
            return min(found) if found else None

        try:
            earliest = await self._executor.read(work)
        except sqlite3.Error as exc:
            raise StorageError(str(exc)) from exc
        return None if earliest is None else max(earliest, now)

    async def relay(self, node: str, payload: bytes) -> None:
        params = {"node": node, "payload": payload, "at": time.time()}
        try:
            await self._executor.write(lambda db: db.execute(Q["feed_relay_insert"], params))
        except sqlite3.Error as exc:
            raise StorageError(str(exc)) from exc

    def on_relay(self, handler: RelayHandler) -> None:
        self._hub.on_relay(handler)
        self._relaying = True
        self._demand_changed()

    # --- for the driver -----------------------------------------------------------

    def record(self, db: sqlite3.Connection, project: str, queue: str) -> None:
        """Note, in the caller's write transaction, that the queue got ready messages.

        The event rows are written once per queue and transaction, just before it
        commits (``flush``): a batch of many posts to few queues adds few rows. A job
        rolled back alone may leave its queue noted: a spurious wake-up, never a lost one.
        """
        self._pending.add((project, queue))

    def flush(self, db: sqlite3.Connection) -> None:
        """Write the noted events (the executor's hook before every write commit)."""
        if not self._pending:
            return
        keys, self._pending = self._pending, set()
        node, at = self._hub.node_id, time.time()
        db.executemany(Q["feed_event_insert"], [(node, p, q, at) for p, q in keys])

    def signal(self, keys: Iterable[QueueKey]) -> None:
        """Wake this process's watchers of these queues (after the commit, on the loop)."""
        for project, queue in keys:
            self._hub.ready(project, queue)

    async def start(self) -> None:
        """Start after the schema is up to date; events already stored are not news."""
        try:
            last = await self._executor.read(
                lambda db: int(db.execute(Q["feed_last_event"]).fetchone()[0])
            )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot start the change feed: {exc}") from exc
        self._poller = _Poller(
            self._connect,
            self._hub.node_id,
            last,
            self._poll_interval,
            asyncio.get_running_loop(),
            self._deliver,
        )
        self._demand_changed()
        self._poller.start()

    async def stop(self) -> None:
        poller, self._poller = self._poller, None
        if poller is not None:
            await asyncio.to_thread(poller.stop)

    # --- internals ----------------------------------------------------------------

    def _first_watch(self, key: QueueKey) -> None:
        self._watched += 1
        self._demand_changed()

    def _last_unwatch(self, key: QueueKey) -> None:
        self._watched -= 1
        self._demand_changed()

    def _demand_changed(self) -> None:
        if self._poller is not None:
            self._poller.set_wanted(watching=self._watched > 0, relaying=self._relaying)

    def _deliver(self, keys: set[QueueKey], wake_all: bool, payloads: list[bytes]) -> None:
        if wake_all:
            self._hub.wake_all()
        else:
            self.signal(keys)
        for payload in payloads:
            self._hub.relayed(payload)


Deliver = Callable[[set[QueueKey], bool, list[bytes]], None]


class _Poller:
    """The thread that notices other connections' commits (see the module docstring)."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        node: str,
        last_seq: int,
        interval: float,
        loop: asyncio.AbstractEventLoop,
        deliver: Deliver,
    ) -> None:
        self._connect = connect
        self._node = node
        self._last_seq = last_seq
        self._interval = interval
        self._loop = loop
        self._deliver = deliver
        self._version: int | None = None
        self._relay_pending = False
        self._relayed: list[bytes] = []  # taken (deleted) and not yet delivered
        self._missed = False  # a failure may have hidden signals: wake every watcher
        self._wanted = False
        self._relaying = False
        self._stopping = False
        self._kick = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tidings-sqlite-feed", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._kick.set()
        self._thread.join()

    def set_wanted(self, *, watching: bool, relaying: bool) -> None:
        self._relaying = relaying
        self._wanted = watching or relaying
        if self._wanted:
            self._kick.set()

    def _run(self) -> None:
        db: sqlite3.Connection | None = None
        idle_since: float | None = float("-inf")  # nothing listens yet: park at once
        retry = RETRY_FIRST
        while not self._stopping:
            if self._wanted:
                idle_since = None
            elif idle_since is None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= LINGER:
                self._kick.wait()  # parked until a watcher or a relay handler comes
                self._kick.clear()
                idle_since = None
                continue
            try:
                if db is None:
                    db = self._connect()
                self._look(db)
                if retry != RETRY_FIRST:
                    log.info("change feed polling again")
                retry = RETRY_FIRST
                pause = self._interval
            except Exception as exc:  # never let the thread die: log, back off, reopen
                log.warning("change feed poll failed (%s); retrying in %.1fs", exc, retry)
                if db is not None:
                    db.close()
                    db = None
                self._version = None
                self._missed = True
                pause, retry = retry, min(retry * 2, RETRY_MAX)
            self._kick.wait(pause)
            self._kick.clear()
        if db is not None:
            db.close()

    def _look(self, db: sqlite3.Connection) -> None:
        """One tick: if another connection committed, read what it changed."""
        (version,) = db.execute("PRAGMA data_version").fetchone()
        changed = version != self._version
        # Noted before reading, so a commit landing meanwhile changes it again.
        self._version = version
        keys: set[QueueKey] = set()
        wake_all, self._missed = self._missed, False
        if changed:
            params = {"after": self._last_seq, "limit": EVENT_BOUND + 1}
            events = db.execute(Q["feed_events_after"], params).fetchall()
            if len(events) > EVENT_BOUND:
                wake_all = True
                self._last_seq = max(
                    int(events[-1][0]), int(db.execute(Q["feed_last_event"]).fetchone()[0])
                )
            elif events:
                self._last_seq = int(events[-1][0])
            keys = {(str(p), str(q)) for _, node, p, q in events if node != self._node}
        if self._relaying and (changed or self._relay_pending):
            self._take_relayed(db)
        payloads, self._relayed = self._relayed, []
        if keys or wake_all or payloads:
            # RuntimeError: the loop closed, nobody is left to wake.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._deliver, keys, wake_all, payloads)

    def _take_relayed(self, db: sqlite3.Connection) -> None:
        """Take (delete) what was relayed to this node, a bounded number of chunks, into
        ``_relayed`` (kept there until delivered, should a later chunk fail)."""
        node = {"node": self._node}
        self._relay_pending = False
        if not db.execute(Q["feed_relay_waiting"], node).fetchone()[0]:
            return
        for _ in range(RELAY_ROUNDS):
            db.execute("BEGIN IMMEDIATE")
            try:
                rows = db.execute(Q["feed_relay_take"], {**node, "limit": RELAY_CHUNK}).fetchall()
                if rows:
                    db.execute(Q["feed_relay_taken"], {**node, "last": int(rows[-1][0])})
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                self._relay_pending = True
                raise
            self._relayed += [bytes(payload) for _, payload in rows]
            if len(rows) < RELAY_CHUNK:
                return
        self._relay_pending = True  # more than a look takes: go on next tick
