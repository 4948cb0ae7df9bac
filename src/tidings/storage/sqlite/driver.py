"""The embedded SQLite store: durable (WAL, fsync on commit), safe across processes.

A queue's messages and claims are filed under its rows key (migration 0007), which
every operation reads first, in its own transaction: deleting or purging a deep queue
retires the key at once and garbage collection removes what was filed under it in
chunks, so the single writer is never held for long and a new queue of the same name,
filed under another key, starts empty and loses nothing to that clean-up.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from tidings.config import StorageSettings
from tidings.errors import StorageError, SubscriberTaken, UnableToDelete
from tidings.ids import new_id, new_ids
from tidings.model import (
    Claim,
    ClaimRequest,
    ClaimResult,
    Delivery,
    DeliveryFailure,
    DeliveryKind,
    Message,
    MessageSummary,
    NewMessage,
    QueueRecord,
    QueueStats,
    Subscription,
)
from tidings.observe import metrics
from tidings.storage import rules
from tidings.storage.base import (
    FAILURE_PRUNE_CHUNK,
    FAILURES_KEPT,
    TAKE_DROPS,
    TAKE_EXTRA_PROJECTS,
    Audience,
    DeadLetterRule,
    MessageListing,
    MessageVolume,
    PreparePost,
    QueueListing,
    StoreStatus,
)
from tidings.storage.feed import QueueKey
from tidings.storage.rows import (
    budgeted_message_page,
    delivery_from_row,
    filtered_queue_page,
    marker_seq,
    message_from_row,
    subscription_from_row,
    volume_from_row,
)
from tidings.storage.sql import load_migrations, load_queries
from tidings.storage.sqlite.catalog import SQLiteCatalog
from tidings.storage.sqlite.executor import SQLiteExecutor
from tidings.storage.sqlite.feed import FEED_RETENTION, SQLiteFeed

T = TypeVar("T")
Row = tuple[Any, ...]

Q = load_queries(__package__ or "tidings.storage.sqlite", "queries.sql")
MIGRATIONS = load_migrations("tidings.storage.sqlite.migrations", ".")

GC_CHUNK = 1000
# Chunks one collect_garbage call runs at most per statement; the rest waits a run.
GC_MAX_CHUNKS = 100
SCAN_BUDGET = StorageSettings().scan_budget
# Chunks (of scan_budget rows) one settle runs at most per kind of change: thousands of
# expired or due messages at a queue's head are settled in one call, a million never
# hold the writer for long (the next calls go on).
SETTLE_CHUNKS = 10

_json_encode = msgspec.json.encode
_json_decode = msgspec.json.decode


def path_from_uri(uri: str) -> Path:
    """``sqlite:///abs/path.db`` or ``sqlite://relative.db`` to a path."""
    if not uri.startswith("sqlite://"):
        raise ValueError(f"not a sqlite URI: {uri}")
    rest = uri[len("sqlite://") :]
    if not rest or rest == "/":
        raise ValueError("the sqlite URI names no file, e.g. sqlite:///var/lib/tidings.db")
    return Path(rest)


class _Base:
    def __init__(self, executor: SQLiteExecutor, scan_budget: int = SCAN_BUDGET) -> None:
        self._executor = executor
        self._scan_budget = scan_budget

    async def _write(
        self,
        work: Callable[[sqlite3.Connection], T],
        on_commit: Callable[[T], None] | None = None,
    ) -> T:
        try:
            return await self._executor.write(work, on_commit)
        except sqlite3.Error as exc:
            raise StorageError(str(exc)) from exc

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return await self._executor.read(work)
        except sqlite3.Error as exc:
            raise StorageError(str(exc)) from exc

    async def _read_settled(
        self,
        project: str,
        queue: str,
        now: float,
        work: Callable[[sqlite3.Connection, str], T],
        absent: T,
    ) -> T:
        """``work`` (given the queue's rows key) in one read snapshot of a settled
        queue; ``absent`` when there is no such queue.

        Readers cannot write: when the queue has something to settle (three index
        probes, in the same snapshot), the settle runs as a write job and the read again.
        """

        def probed(db: sqlite3.Connection) -> list[T]:
            db.execute("BEGIN")
            try:
                key = _rows_key(db, project, queue)
                if key is None:
                    return [absent]
                return [] if _unsettled(db, project, key, now) else [work(db, key)]
            finally:
                db.execute("COMMIT")

        done = await self._read(probed)
        if done:
            return done[0]

        def settle(db: sqlite3.Connection) -> None:
            key = _rows_key(db, project, queue)
            if key is not None:
                _settle(db, project, key, now, self._scan_budget)

        await self._write(settle)

        def again(db: sqlite3.Connection) -> T:
            db.execute("BEGIN")
            try:
                key = _rows_key(db, project, queue)
                return absent if key is None else work(db, key)
            finally:
                db.execute("COMMIT")

        return await self._read(again)


def _rows_key(db: sqlite3.Connection, project: str, name: str) -> str | None:
    """The key the queue's messages and claims are filed under; None: no such queue."""
    row = db.execute(Q["queue_key"], {"project": project, "name": name}).fetchone()
    return None if row is None else str(row[0])


def _unsettled(db: sqlite3.Connection, project: str, key: str, now: float) -> bool:
    params = {"project": project, "queue": key, "now": now}
    return bool(db.execute(Q["queue_unsettled"], params).fetchone()[0])


def _settle(db: sqlite3.Connection, project: str, key: str, now: float, chunk: int) -> None:
    """Apply what time changed in the queue (inside the caller's write transaction).

    Expired messages are deleted, lapsed claims release their messages, ended delays
    make theirs ready: each in chunks, at most ``SETTLE_CHUNKS`` of them.
    """
    if not _unsettled(db, project, key, now):
        return
    params = {"project": project, "queue": key, "now": now, "chunk": chunk}
    for name in ("settle_expired", "settle_lapsed", "settle_delays"):
        for _ in range(SETTLE_CHUNKS):
            if db.execute(Q[name], params).rowcount < chunk:
                break


def _claimable(
    db: sqlite3.Connection, project: str, key: str, limit: int, now: float, budget: int
) -> list[Message]:
    """Settle the queue, then read its first ``limit`` free messages (claim and pop)."""
    _settle(db, project, key, now, budget)
    params = {
        "project": project,
        "queue": key,
        "marker": 0,
        "exclude_client": None,
        "now": now,
        "limit": limit,
        "budget": rules.scan_window(budget, limit),
    }
    return [message_from_row(r) for r in db.execute(Q["message_list_due"], params)]


def _window_end(rows: list[Row], budget: int) -> tuple[int, int | None]:
    """Where a listing's queue-ordered windows end, as ``budgeted_message_page`` takes
    it: when any window is full, the page ends with the earliest full one."""
    full = [int(last) for count, last in rows if count >= budget and last is not None]
    return (budget, min(full)) if full else (0, None)


def _insert_queue(
    db: sqlite3.Connection, project: str, name: str, metadata: str, now: float
) -> bool:
    params = {
        "project": project,
        "name": name,
        "metadata": metadata,
        "now": now,
        "fresh": new_id(),
    }
    return db.execute(Q["queue_insert"], params).rowcount == 1


def _ensure_queue(db: sqlite3.Connection, project: str, name: str, now: float) -> str:
    """Create the queue unless it exists; returns its rows key."""
    _insert_queue(db, project, name, "{}", now)
    key = _rows_key(db, project, name)
    if key is None:  # inserted, or there already, in this very transaction
        raise StorageError(f"queue {name!r} vanished while being created")
    return key


def _drop_rows(
    db: sqlite3.Connection, project: str, key: str, chunk: int, after: int
) -> tuple[int, bool, int]:
    """Remove up to ``chunk`` messages (those after seq ``after``) and ``chunk`` claims
    filed under ``key``.

    Returns how many rows went, whether that was all of them, and the last seq removed.
    """
    params = {"project": project, "queue": key, "chunk": chunk, "after": after}
    gone = [int(seq) for (seq,) in db.execute(Q["queue_drop_messages"], params)]
    claims = db.execute(Q["queue_drop_claims"], params).rowcount
    all_gone = len(gone) < chunk and claims < chunk
    return len(gone) + claims, all_gone, max(gone, default=after)


def _drop_contents(db: sqlite3.Connection, project: str, key: str, chunk: int) -> bool:
    """Remove a small queue's rows at once (at most ``chunk`` of each kind), or retire
    a deep one's key (garbage collection removes its rows). True when it was retired.

    Runs before the queue row goes (its counters tell how deep it is).
    """
    params = {"project": project, "queue": key}
    (stored,) = db.execute(Q["queue_rows"], params).fetchone() or (0,)
    last, all_gone = 0, False
    if stored <= chunk:
        _, all_gone, last = _drop_rows(db, project, key, chunk, 0)
    if not all_gone:
        db.execute(Q["queue_retire"], {**params, "after": last})
    return not all_gone


class SQLiteQueues(_Base):
    async def create(self, project: str, name: str, metadata: dict[str, Any], now: float) -> bool:
        encoded = _json_encode(metadata).decode()
        return await self._write(lambda db: _insert_queue(db, project, name, encoded, now))

    async def get_metadata(self, project: str, name: str) -> dict[str, Any] | None:
        def work(db: sqlite3.Connection) -> str | None:
            row = db.execute(Q["queue_metadata"], {"project": project, "name": name}).fetchone()
            return None if row is None else str(row[0])

        raw = await self._read(work)
        return None if raw is None else dict(_json_decode(raw))

    async def set_metadata(self, project: str, name: str, metadata: dict[str, Any]) -> bool:
        encoded = _json_encode(metadata).decode()

        def work(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                Q["queue_set_metadata"],
                {"project": project, "name": name, "metadata": encoded},
            )
            return cursor.rowcount == 1

        return await self._write(work)

    async def delete(self, project: str, name: str) -> None:
        def work(db: sqlite3.Connection) -> None:
            key = _rows_key(db, project, name)
            if key is None:
                return
            _drop_contents(db, project, key, self._scan_budget)
            db.execute(Q["queue_delete"], {"project": project, "name": name})

        await self._write(work)

    async def page(
        self,
        project: str,
        *,
        marker: str | None,
        limit: int,
        name_contains: str | None = None,
        metadata_equals: dict[str, Any] | None = None,
    ) -> QueueListing:
        if not name_contains and not metadata_equals:
            params = {"project": project, "marker": marker or "", "limit": limit}

            def plain(db: sqlite3.Connection) -> QueueListing:
                rows = db.execute(Q["queue_list"], {**params, "name_contains": None})
                return QueueListing(
                    queues=[QueueRecord(name=n, metadata=dict(_json_decode(m))) for n, m in rows]
                )

            return await self._read(plain)
        budget = rules.scan_window(self._scan_budget, limit)
        window = {"project": project, "marker": marker or "", "budget": budget}
        scan = {
            **window,
            "limit": limit,
            "name_contains": name_contains or None,
            "needles": _json_encode(rules.metadata_needles(metadata_equals)).decode(),
        }

        def work(db: sqlite3.Connection) -> QueueListing:
            db.execute("BEGIN")  # one snapshot for the scan and its window's end
            try:
                candidates = [(str(n), str(m)) for n, m in db.execute(Q["queue_scan"], scan)]
                end = None
                if len(candidates) < limit:
                    count, last = db.execute(Q["queue_window_end"], window).fetchone()
                    end = (int(count), last)
            finally:
                db.execute("COMMIT")
            return filtered_queue_page(candidates, limit, metadata_equals, end, budget)

        return await self._read(work)

    async def count(self, project: str) -> int:
        def work(db: sqlite3.Connection) -> int:
            return int(db.execute(Q["queue_count"], {"project": project}).fetchone()[0])

        return await self._read(work)

    async def volume(self) -> MessageVolume:
        """Every queue's messages, for health (``Storage.message_volume``)."""
        budget = self._scan_budget

        def work(db: sqlite3.Connection) -> MessageVolume:
            row = db.execute(Q["message_volume"], {"budget": budget}).fetchone()
            return volume_from_row(row, budget)

        return await self._read(work)

    async def stats(self, project: str, name: str, now: float) -> QueueStats:
        def work(db: sqlite3.Connection, key: str) -> QueueStats:
            params = {"project": project, "queue": key, "now": now, "budget": self._scan_budget}
            # Settled first, so no expired message lies at either end.
            total, claimed = db.execute(Q["queue_counts"], params).fetchone() or (0, 0)
            if not total:
                return QueueStats(total=0, claimed=0)
            oldest = db.execute(Q["queue_oldest"], params).fetchone()
            newest = db.execute(Q["queue_newest"], params).fetchone()
            (delayed,) = db.execute(Q["queue_delayed"], params).fetchone()
            return QueueStats(
                total=total,
                claimed=claimed,
                delayed=delayed,
                oldest=MessageSummary(id=oldest[0], created=oldest[1]) if oldest else None,
                newest=MessageSummary(id=newest[0], created=newest[1]) if newest else None,
            )

        return await self._read_settled(project, name, now, work, QueueStats(total=0, claimed=0))

    async def purge_messages(self, project: str, name: str) -> None:
        def work(db: sqlite3.Connection) -> None:
            key = _rows_key(db, project, name)
            if key is not None and _drop_contents(db, project, key, self._scan_budget):
                # What is left is filed under the retired key: new messages go elsewhere.
                db.execute(
                    Q["queue_rekey"], {"project": project, "name": name, "fresh": new_id()}
                )

        await self._write(work)


class SQLiteMessages(_Base):
    def __init__(self, executor: SQLiteExecutor, scan_budget: int, feed: SQLiteFeed) -> None:
        super().__init__(executor, scan_budget)
        self._feed = feed

    async def post(
        self,
        project: str,
        queue: str,
        prepare: PreparePost,
        client_id: str,
        now: float,
        notify: Audience = Audience.NOBODY,
        on_owed: Callable[[], None] | None = None,
    ) -> list[str]:
        def work(db: sqlite3.Connection) -> tuple[list[str], bool]:
            row = db.execute(Q["queue_for_post"], {"project": project, "name": queue}).fetchone()
            messages = prepare({} if row is None else dict(_json_decode(row[0])))
            key = _ensure_queue(db, project, queue, now) if row is None else str(row[1])
            ids = new_ids(len(messages))
            db.executemany(
                Q["message_insert"],
                [
                    {
                        "id": mid,
                        "project": project,
                        "queue": key,
                        "body": m.body,
                        "client_id": client_id,
                        "ttl": m.ttl,
                        "created": now,
                        "expires": now + m.ttl,
                        "delay_until": now + m.delay if m.delay else 0.0,
                        "claim_count": 0,
                    }
                    for mid, m in zip(ids, messages, strict=True)
                ],
            )
            owed = notify is not Audience.NOBODY and _fan_out(
                db, project, queue, ids, messages, notify, now
            )
            # Delayed ones too: a waiter sets its timer from next_ready.
            self._feed.record(db, project, queue)
            return ids, owed

        def committed(result: tuple[list[str], bool]) -> None:
            self._feed.signal([(project, queue)])
            if result[1] and on_owed is not None:
                on_owed()

        ids, _owed = await self._write(work, committed)
        return ids

    async def page(
        self,
        project: str,
        queue: str,
        *,
        marker: str | None,
        limit: int,
        exclude_client: str | None,
        include_claimed: bool,
        include_delayed: bool,
        now: float,
    ) -> MessageListing:
        budget = rules.scan_window(self._scan_budget, limit)
        kind = "all" if include_claimed else "unclaimed" if include_delayed else "due"

        def work(db: sqlite3.Connection, key: str) -> MessageListing:
            window = {
                "project": project,
                "queue": key,
                "marker": marker_seq(marker),
                "budget": budget,
            }
            params = {
                **window,
                "limit": limit,
                "exclude_client": exclude_client,
                "include_claimed": include_claimed,
                "include_delayed": include_delayed,
                "now": now,
            }
            # One snapshot for the scan and its windows' end.
            found = [message_from_row(r) for r in db.execute(Q[f"message_list_{kind}"], params)]
            end = None
            if len(found) < limit:
                ends = db.execute(Q[f"message_window_end_{kind}"], window).fetchall()
                end = _window_end(ends, budget)
            return budgeted_message_page(found, limit, end, budget)

        return await self._read_settled(project, queue, now, work, MessageListing(messages=[]))

    async def get(self, project: str, queue: str, ids: Sequence[str], now: float) -> list[Message]:
        def work(db: sqlite3.Connection) -> list[Message]:
            db.execute("BEGIN")  # one snapshot for the key and the messages
            try:
                key = _rows_key(db, project, queue)
                return [] if key is None else _messages_by_id(db, project, key, ids, now)
            finally:
                db.execute("COMMIT")

        return await self._read(work)

    async def delete(
        self, project: str, queue: str, message_id: str, claim_id: str | None, now: float
    ) -> None:
        def work(db: sqlite3.Connection) -> None:
            key = _rows_key(db, project, queue)
            found = [] if key is None else _messages_by_id(db, project, key, [message_id], now)
            if key is None or not found:
                return
            message = found[0]
            live = claim_id is not None and _claim_is_live(db, project, key, claim_id, now)
            rules.check_delete(message, claim_id, live, now)
            db.execute(Q["message_delete"], {"seq": int(message.marker)})

        await self._write(work)

    async def delete_many(
        self,
        project: str,
        queue: str,
        ids: Sequence[str],
        claim_ids: Sequence[str] | None,
        now: float,
    ) -> None:
        def work(db: sqlite3.Connection) -> None:
            key = _rows_key(db, project, queue)
            if key is None:
                return
            doomed = _messages_by_id(db, project, key, ids, now)
            if claim_ids is not None:
                allowed = set(claim_ids)
                for message in doomed:
                    reason = rules.message_not_held(message, allowed, now)
                    if reason:
                        raise UnableToDelete(reason)
            db.executemany(Q["message_delete"], [{"seq": int(m.marker)} for m in doomed])

        await self._write(work)

    async def pop(self, project: str, queue: str, limit: int, now: float) -> list[Message]:
        def work(db: sqlite3.Connection) -> list[Message]:
            key = _rows_key(db, project, queue)
            if key is None:
                return []
            popped = _claimable(db, project, key, limit, now, self._scan_budget)
            db.executemany(Q["message_delete"], [{"seq": int(m.marker)} for m in popped])
            return popped

        return await self._write(work)


def _messages_by_id(
    db: sqlite3.Connection, project: str, key: str, ids: Sequence[str], now: float
) -> list[Message]:
    """Live messages filed under ``key`` with these ids, in the order asked, once each."""
    found = []
    for mid in dict.fromkeys(ids):
        row = db.execute(
            Q["message_by_id"], {"id": mid, "project": project, "queue": key, "now": now}
        ).fetchone()
        if row is not None:
            found.append(message_from_row(row))
    return found


def _fan_out(
    db: sqlite3.Connection,
    project: str,
    source: str,
    ids: list[str],
    messages: Sequence[NewMessage],
    audience: Audience,
    now: float,
) -> bool:
    """Owe the notifications in the post's transaction; True when any was owed."""
    source_params = {"project": project, "source": source, "now": now}
    if db.execute(Q["source_has_subscriptions"], source_params).fetchone() is None:
        return False  # most queues have none: one lookup instead of one per message
    owed = db.executemany(
        Q["delivery_fan_out"],
        [
            {
                "project": project,
                "source": source,
                "message_id": mid,
                "ttl": m.ttl,
                "delay": m.delay,
                "due": now + m.delay,
                "now": now,
                "confirmed_only": audience is Audience.CONFIRMED,
            }
            for mid, m in zip(ids, messages, strict=True)
        ],
    )
    if owed.rowcount and messages:
        # Every message went to the same subscriptions: each body is stored once.
        db.executemany(
            Q["notification_body_insert"],
            [
                {"project": project, "source": source, "message_id": mid, "body": m.body}
                for mid, m in zip(ids, messages, strict=True)
            ],
        )
        _outbox_lower(db, project, now + min(m.delay for m in messages))
        return True
    return False


def _outbox_lower(db: sqlite3.Connection, project: str, due: float) -> None:
    """Make the outbox show ``project`` due no later than ``due``."""
    db.execute(Q["outbox_lower"], {"project": project, "due": due})


def _claim_is_live(
    db: sqlite3.Connection, project: str, key: str, claim_id: str, now: float
) -> bool:
    row = db.execute(
        Q["claim_get"], {"id": claim_id, "project": project, "queue": key, "now": now}
    ).fetchone()
    return row is not None


class SQLiteClaims(_Base):
    def __init__(self, executor: SQLiteExecutor, scan_budget: int, feed: SQLiteFeed) -> None:
        super().__init__(executor, scan_budget)
        self._feed = feed

    async def create(
        self,
        project: str,
        queue: str,
        request: ClaimRequest,
        now: float,
        dead_letter_from: DeadLetterRule | None = None,
    ) -> ClaimResult | None:
        claim_id = new_id()
        claim_ttl, grace = rules.bounded_claim(request.ttl, request.grace)
        claim_expires = now + claim_ttl
        moved: list[QueueKey] = []  # the dead-letter queue, once a message went there
        dead_lettered = 0

        def work(db: sqlite3.Connection) -> ClaimResult | None:
            nonlocal dead_lettered
            dead_letter = request.dead_letter
            if dead_letter_from is not None:  # in force now: read in the claim's transaction
                row = db.execute(Q["queue_metadata"], {"project": project, "name": queue})
                metadata = row.fetchone()
                if metadata is None:
                    return None
                dead_letter = dead_letter_from(dict(_json_decode(metadata[0])))
            key = _rows_key(db, project, queue)
            if key is None:
                return None
            found = _claimable(db, project, key, request.limit, now, self._scan_budget)
            claimed: list[Message] = []
            for message in found:
                if dead_letter and message.claim_count >= dead_letter.max_claim_count:
                    _move_to_dead_letter(
                        db, project, message, dead_letter.queue, dead_letter.message_ttl, now
                    )
                    dead_lettered += 1
                    if not moved:
                        self._feed.record(db, project, dead_letter.queue)
                        moved.append((project, dead_letter.queue))
                    continue
                expires, ttl = rules.claimed_lifetime(
                    message.expires, message.ttl, claim_expires, claim_ttl, grace
                )
                db.execute(
                    Q["message_claim"],
                    {
                        "seq": int(message.marker),
                        "claim_id": claim_id,
                        "claim_expires": claim_expires,
                        "expires": expires,
                        "ttl": ttl,
                    },
                )
                claimed.append(
                    msgspec.structs.replace(
                        message,
                        claim_id=claim_id,
                        claim_expires=claim_expires,
                        expires=expires,
                        ttl=ttl,
                        claim_count=message.claim_count + 1,
                    )
                )
            if not claimed:
                return None
            db.execute(
                Q["claim_insert"],
                {
                    "id": claim_id,
                    "project": project,
                    "queue": key,
                    "ttl": claim_ttl,
                    "grace": grace,
                    "now": now,
                    "expires": claim_expires,
                },
            )
            return ClaimResult(id=claim_id, messages=claimed)

        def committed(_result: ClaimResult | None) -> None:
            self._feed.signal(moved)
            metrics.messages_dead_lettered(dead_lettered)

        return await self._write(work, committed)

    async def get(self, project: str, queue: str, claim_id: str, now: float) -> Claim | None:
        def work(db: sqlite3.Connection) -> Claim | None:
            db.execute("BEGIN")
            try:
                key = _rows_key(db, project, queue)
                if key is None:
                    return None
                params = {"id": claim_id, "project": project, "queue": key, "now": now}
                row = db.execute(Q["claim_get"], params).fetchone()
                if row is None:
                    return None
                messages = [message_from_row(r) for r in db.execute(Q["claim_messages"], params)]
            finally:
                db.execute("COMMIT")
            cid, ttl, grace, updated, expires = row
            return Claim(
                id=cid,
                ttl=ttl,
                grace=grace,
                updated=updated,
                expires=expires,
                messages=messages,
            )

        return await self._read(work)

    async def renew(
        self, project: str, queue: str, claim_id: str, ttl: int, grace: int, now: float
    ) -> bool:
        ttl, grace = rules.bounded_claim(ttl, grace)
        claim_expires = now + ttl

        def work(db: sqlite3.Connection) -> bool:
            key = _rows_key(db, project, queue)
            if key is None:
                return False
            params = {"id": claim_id, "project": project, "queue": key, "now": now}
            held = [message_from_row(r) for r in db.execute(Q["claim_messages"], params)]
            cursor = db.execute(
                Q["claim_renew"],
                {**params, "ttl": ttl, "grace": grace, "expires": claim_expires},
            )
            if cursor.rowcount != 1:
                return False
            updates = []
            for message in held:
                expires, new_ttl = rules.claimed_lifetime(
                    message.expires, message.ttl, claim_expires, ttl, grace
                )
                updates.append(
                    {
                        "seq": int(message.marker),
                        "claim_expires": claim_expires,
                        "expires": expires,
                        "ttl": new_ttl,
                    }
                )
            db.executemany(Q["message_extend_claim"], updates)
            return True

        return await self._write(work)

    async def release(self, project: str, queue: str, claim_id: str, now: float) -> None:
        def work(db: sqlite3.Connection) -> bool:
            key = _rows_key(db, project, queue)
            if key is None:
                return False
            params = {"id": claim_id, "project": project, "queue": key}
            released = db.execute(Q["claim_release_messages"], params).rowcount > 0
            db.execute(Q["claim_delete"], params)
            if released:
                self._feed.record(db, project, queue)
            return released

        def signal(released: bool) -> None:
            if released:
                self._feed.signal([(project, queue)])

        await self._write(work, signal)


def _move_to_dead_letter(
    db: sqlite3.Connection,
    project: str,
    message: Message,
    dead_letter_queue: str,
    message_ttl: int | None,
    now: float,
) -> None:
    """Re-append the message at the tail of the dead-letter queue, unclaimed."""
    key = _ensure_queue(db, project, dead_letter_queue, now)
    db.execute(Q["message_delete"], {"seq": int(message.marker)})
    ttl = message_ttl if message_ttl else message.ttl
    expires = now + message_ttl if message_ttl else message.expires
    db.execute(
        Q["message_insert"],
        {
            "id": message.id,
            "project": project,
            "queue": key,
            "body": message.body,
            "client_id": message.client_id,
            "ttl": ttl,
            "created": message.created,
            "expires": expires,
            "delay_until": 0.0,
            "claim_count": message.claim_count,
        },
    )


class SQLiteSubscriptions(_Base):
    async def create(
        self,
        project: str,
        source: str,
        subscriber: str,
        ttl: int,
        options: dict[str, Any],
        now: float,
    ) -> tuple[Subscription, bool]:
        fresh = rules.new_subscription(source, subscriber, ttl, options, now)

        def work(db: sqlite3.Connection) -> tuple[Subscription, bool]:
            params = {"project": project, "source": source, "subscriber": subscriber, "now": now}
            row = db.execute(Q["subscription_by_subscriber"], params).fetchone()
            if row is not None:
                return subscription_from_row(row), False
            db.execute(
                Q["subscription_insert"],
                {
                    **params,
                    "id": fresh.id,
                    "ttl": ttl,
                    "options": _json_encode(options).decode(),
                    "expires": fresh.expires,
                },
            )
            return fresh, True

        return await self._write(work)

    async def get(
        self, project: str, source: str, subscription_id: str, now: float
    ) -> Subscription | None:
        params = {"id": subscription_id, "project": project, "source": source, "now": now}

        def work(db: sqlite3.Connection) -> Subscription | None:
            row = db.execute(Q["subscription_by_id"], params).fetchone()
            return None if row is None else subscription_from_row(row)

        return await self._read(work)

    async def page(
        self, project: str, source: str, *, marker: str | None, limit: int, now: float
    ) -> list[Subscription]:
        params = {
            "project": project,
            "source": source,
            "marker": marker or "",
            "limit": limit,
            "now": now,
        }

        def work(db: sqlite3.Connection) -> list[Subscription]:
            return [subscription_from_row(r) for r in db.execute(Q["subscription_page"], params)]

        return await self._read(work)

    async def update(
        self,
        project: str,
        source: str,
        subscription_id: str,
        now: float,
        *,
        subscriber: str | None = None,
        ttl: int | None = None,
        options: dict[str, Any] | None = None,
    ) -> Subscription | None:
        def work(db: sqlite3.Connection) -> Subscription | None:
            params = {"id": subscription_id, "project": project, "source": source, "now": now}
            row = db.execute(Q["subscription_by_id"], params).fetchone()
            if row is None:
                return None
            current = subscription_from_row(row)
            if subscriber is not None and subscriber != current.subscriber:
                taken = db.execute(
                    Q["subscription_by_subscriber"],
                    {"project": project, "source": source, "subscriber": subscriber, "now": now},
                ).fetchone()
                if taken is not None:
                    raise SubscriberTaken()
            changed = rules.changed_subscription(
                current, now, subscriber=subscriber, ttl=ttl, options=options
            )
            db.execute(
                Q["subscription_update"],
                {
                    "id": changed.id,
                    "subscriber": changed.subscriber,
                    "ttl": changed.ttl,
                    "options": _json_encode(changed.options).decode(),
                    "updated": changed.updated,
                    "expires": changed.expires,
                },
            )
            return changed

        return await self._write(work)

    async def confirm(
        self, project: str, source: str, subscription_id: str, confirmed: bool, now: float
    ) -> Subscription | None:
        params = {"id": subscription_id, "project": project, "source": source, "now": now}

        def work(db: sqlite3.Connection) -> Subscription | None:
            db.execute(Q["subscription_confirm"], {**params, "confirmed": int(confirmed)})
            row = db.execute(Q["subscription_by_id"], params).fetchone()
            return None if row is None else subscription_from_row(row)

        return await self._write(work)

    async def delete(self, project: str, source: str, subscription_id: str) -> None:
        def work(db: sqlite3.Connection) -> None:
            params = {"id": subscription_id, "project": project, "source": source}
            if db.execute(Q["subscription_delete"], params).rowcount:
                # What is owed dies with it (the project's outbox score may now be
                # early: that costs a visit, not a delivery).
                db.execute(Q["subscription_deliveries_delete"], {"id": subscription_id})
                db.execute(Q["subscription_failures_delete"], params)

        await self._write(work)

    async def purge(self, project: str, source: str) -> None:
        def work(db: sqlite3.Connection) -> None:
            params = {"project": project, "source": source}
            # Bodies first: then the deliveries' release trigger finds none to check.
            db.execute(Q["subscription_purge_bodies"], params)
            db.execute(Q["subscription_purge_deliveries"], params)
            db.execute(Q["subscription_purge_failures"], params)
            db.execute(Q["subscription_purge"], params)

        await self._write(work)


class SQLiteOutbox(_Base):
    async def enqueue(
        self,
        project: str,
        source: str,
        subscription_id: str,
        kind: DeliveryKind,
        payload: bytes,
        now: float,
    ) -> None:
        params = {
            "project": project,
            "source": source,
            "subscription_id": subscription_id,
            "kind": kind.value,
            "payload": payload,
            "now": now,
        }

        def work(db: sqlite3.Connection) -> None:
            db.execute(Q["delivery_insert"], params)
            _outbox_lower(db, project, now)

        await self._write(work)

    async def take(
        self,
        now: float,
        lease: float,
        limit: int,
        *,
        per_project: int | None = None,
        in_flight: Mapping[str, int] | None = None,
    ) -> list[Delivery]:
        shares = rules.TakeShares(limit, per_project, in_flight)
        skip = shares.saturated()
        candidates = {
            "now": now,
            "skip": _json_encode(skip).decode(),
            "limit": limit + TAKE_EXTRA_PROJECTS,
        }

        def work(db: sqlite3.Connection) -> list[Delivery]:
            taken: list[Delivery] = []
            for (project,) in db.execute(Q["outbox_due_projects"], candidates).fetchall():
                quota = shares.quota(project, len(taken))
                if quota <= 0:
                    break
                taken += _take_project(db, project, now, lease, quota)
            return taken

        return await self._write(work)

    async def done(self, delivery_id: str) -> None:
        await self._write(lambda db: db.execute(Q["delivery_delete"], {"id": int(delivery_id)}))

    async def done_many(self, delivery_ids: Sequence[str]) -> None:
        rows = [{"id": int(delivery_id)} for delivery_id in delivery_ids]
        if rows:
            await self._write(lambda db: db.executemany(Q["delivery_delete"], rows))

    async def retry(self, delivery_id: str, attempts: int, due: float) -> None:
        params = {"id": int(delivery_id), "attempts": attempts, "due": due}

        def work(db: sqlite3.Connection) -> None:
            row = db.execute(Q["delivery_retry"], params).fetchone()
            if row is not None:
                _outbox_lower(db, row[0], due)

        await self._write(work)

    async def fail(self, delivery: Delivery, attempts: int, error: str, now: float) -> None:
        owner = {
            "project": delivery.project,
            "source": delivery.source,
            "subscription_id": delivery.subscription_id,
        }

        def work(db: sqlite3.Connection) -> None:
            db.execute(Q["delivery_delete"], {"id": int(delivery.id)})
            db.execute(
                Q["failure_insert"],
                {
                    **owner,
                    "kind": delivery.kind.value,
                    "message_id": delivery.message_id,
                    "attempts": attempts,
                    "error": error,
                    "now": now,
                },
            )
            db.execute(Q["failure_trim"], {**owner, "keep": FAILURES_KEPT})

        await self._write(work)

    async def prune_failures(self, before: float) -> int:
        params = {"before": before, "chunk": FAILURE_PRUNE_CHUNK}
        return await self._write(lambda db: int(db.execute(Q["failure_prune"], params).rowcount))

    async def failures(
        self, project: str, source: str, subscription_id: str, limit: int
    ) -> list[DeliveryFailure]:
        params = {
            "project": project,
            "source": source,
            "subscription_id": subscription_id,
            "limit": limit,
        }

        def work(db: sqlite3.Connection) -> list[DeliveryFailure]:
            return [
                DeliveryFailure(
                    subscription_id=sid,
                    kind=DeliveryKind(kind),
                    message_id=message_id,
                    attempts=attempts,
                    error=error,
                    failed=failed,
                )
                for sid, kind, message_id, attempts, error, failed in db.execute(
                    Q["failure_page"], params
                )
            ]

        return await self._read(work)


def _take_project(
    db: sqlite3.Connection, project: str, now: float, lease: float, quota: int
) -> list[Delivery]:
    """Lease up to ``quota`` due deliveries of one project and re-score it."""
    taken: list[Delivery] = []
    dropped = 0
    # Rows of gone subscriptions are dropped as they come, up to TAKE_DROPS per take.
    while len(taken) < quota and dropped < TAKE_DROPS:
        want = quota - len(taken)
        params = {"project": project, "now": now, "limit": want}
        rows = db.execute(Q["delivery_due"], params).fetchall()
        before = dropped
        for row in rows:
            delivery, live = delivery_from_row(row)
            if live:
                db.execute(Q["delivery_lease"], {"id": int(delivery.id), "until": now + lease})
                taken.append(delivery)
            else:  # the subscription expired or was deleted
                db.execute(Q["delivery_delete"], {"id": int(delivery.id)})
                dropped += 1
        if dropped == before or len(rows) < want:
            break  # quota reached, or nothing more is due
    (next_due,) = db.execute(Q["outbox_next_due"], {"project": project}).fetchone()
    if next_due is None:
        db.execute(Q["outbox_forget"], {"project": project})
    else:
        db.execute(Q["outbox_rescore"], {"project": project, "due": next_due})
    return taken


class SQLiteStorage:
    """Storage over one SQLite file; any number of processes may share it."""

    def __init__(
        self, path: Path, busy_timeout: float = 5.0, scan_budget: int = SCAN_BUDGET
    ) -> None:
        self.path = path
        self._busy_timeout = busy_timeout
        self._scan_budget = scan_budget
        self._executor = SQLiteExecutor(self._connect)
        self._feed = SQLiteFeed(self._executor, self._connect)
        self.queues = SQLiteQueues(self._executor, scan_budget)
        self.messages = SQLiteMessages(self._executor, scan_budget, self._feed)
        self.claims = SQLiteClaims(self._executor, scan_budget, self._feed)
        self.subscriptions = SQLiteSubscriptions(self._executor)
        self.outbox = SQLiteOutbox(self._executor)
        self._catalog = SQLiteCatalog(self._executor)

    @classmethod
    def from_uri(cls, uri: str, settings: StorageSettings) -> SQLiteStorage:
        return cls(path_from_uri(uri), settings.busy_timeout, settings.scan_budget)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout,
            isolation_level=None,  # we issue BEGIN/COMMIT ourselves
            check_same_thread=False,
        )
        db.execute("PRAGMA journal_mode=WAL")
        # FULL: every commit is fsync'd before we acknowledge the write.
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=OFF")
        return db

    @property
    def feed(self) -> SQLiteFeed:
        return self._feed

    @property
    def catalog(self) -> SQLiteCatalog:
        return self._catalog

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._executor.start()
        try:
            await self._executor.write(_migrate)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open {self.path}: {exc}") from exc
        await self._feed.start()

    async def close(self) -> None:
        await self._feed.stop()
        await self._executor.close()

    async def ping(self) -> bool:
        try:
            await self._executor.read(lambda db: db.execute("SELECT 1").fetchone())
        except sqlite3.Error:
            return False
        return True

    async def status(self) -> StoreStatus:
        return StoreStatus(reachable=await self.ping())

    async def message_volume(self, now: float) -> MessageVolume:
        return await self.queues.volume()

    async def collect_garbage(self, now: float) -> int:
        removed = 0
        for job in (self._gc_subscriptions, self._gc_messages, self._gc_claims):
            # Each chunk is a short write job of its own; past GC_MAX_CHUNKS the rest
            # waits for the next run, so one call is bounded.
            for _ in range(GC_MAX_CHUNKS):
                affected = await self._gc_write(job, now)
                removed += affected
                if affected < GC_CHUNK:
                    break
        for _ in range(GC_MAX_CHUNKS):
            went, more = await self.remove_retired_chunk()
            removed += went
            if not more:
                break
        # The change feed's old rows go too, uncounted: they are not expired data.
        for name in ("gc_feed_events", "gc_feed_relay"):
            for _ in range(GC_MAX_CHUNKS):
                if await self._gc_feed(name, now - FEED_RETENTION) < GC_CHUNK:
                    break
        return removed

    async def remove_retired_chunk(self) -> tuple[int, bool]:
        """One short write job removing up to ``scan_budget`` messages (and as many
        claims) filed under a retired key (a deleted or purged deep queue's), one key
        after another; returns how many rows went, and whether there may be more."""

        def work(db: sqlite3.Connection) -> tuple[int, bool]:
            row = db.execute(Q["retired_next"]).fetchone()
            if row is None:
                return 0, False
            project, key, after = str(row[0]), str(row[1]), int(row[2])
            went, all_gone, last = _drop_rows(db, project, key, self._scan_budget, after)
            done = {"project": project, "queue": key, "after": last}
            db.execute(Q["retired_forget" if all_gone else "retired_progress"], done)
            return went, True

        try:
            return await self._executor.write(work)
        except sqlite3.Error as exc:
            raise StorageError(str(exc)) from exc

    @staticmethod
    def _gc_subscriptions(db: sqlite3.Connection, params: dict[str, float]) -> int:
        return int(db.execute(Q["gc_subscriptions"], params).rowcount)

    @staticmethod
    def _gc_messages(db: sqlite3.Connection, params: dict[str, float]) -> int:
        return int(db.execute(Q["gc_messages"], params).rowcount)

    async def _gc_feed(self, name: str, before: float) -> int:
        params = {"before": before, "chunk": GC_CHUNK}
        try:
            return await self._executor.write(lambda db: int(db.execute(Q[name], params).rowcount))
        except sqlite3.Error as exc:
            raise StorageError(str(exc)) from exc

    @staticmethod
    def _gc_claims(db: sqlite3.Connection, params: dict[str, float]) -> int:
        db.execute(Q["gc_claim_marks"], params)
        return int(db.execute(Q["gc_claims"], params).rowcount)

    async def _gc_write(
        self, job: Callable[[sqlite3.Connection, dict[str, float]], int], now: float
    ) -> int:
        params = {"now": now, "chunk": GC_CHUNK}
        try:
            return await self._executor.write(lambda db: job(db, params))
        except sqlite3.Error as exc:
            raise StorageError(str(exc)) from exc


def _migrate(db: sqlite3.Connection) -> int:
    """Apply migrations newer than ``PRAGMA user_version``; runs under the write lock."""
    current = int(db.execute("PRAGMA user_version").fetchone()[0])
    for version, script in MIGRATIONS:
        if version > current:
            for statement in _split_statements(script):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {int(version)}")
            current = version
    return current


def _split_statements(script: str) -> list[str]:
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    return [s for s in statements if s]
