"""The PostgreSQL store: any number of nodes share one database.

Every multi-step change runs in one transaction; claims lock rows with
``FOR UPDATE SKIP LOCKED`` so concurrent claimers never share a message nor wait for
each other. Decisions about claims and deletes come from ``storage.rules``.

Claims, pops and listings read the READY index (unclaimed, undelayed messages in post
order) of a queue they have first settled (see ``_settle``), so their cost does not
grow with the messages in flight, delayed or expired at the head of the queue.

A queue's messages and claims are filed under its rows key (migration 0006): deleting
or purging a deep queue retires the key in one short transaction, and garbage
collection removes what was filed under it a chunk per transaction; a new queue of the
same name, filed under another key, starts empty and loses nothing to that clean-up.
Stats read counters kept by triggers in the same transactions as the changes.
Whatever makes messages ready signals the change feed (``feed``): a post once it has
committed, the rest in their transaction.

A post is one round trip (a call of the SQL function post_messages, migration 0010), and
so are a claim without a dead-letter policy (one statement) and a message delete (a call
of delete_message). Posts and claims are given the version of the queue metadata this
node keeps (``metadata``), which they check as they run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

import msgspec

from tidings.config import StorageSettings
from tidings.errors import StorageError, UnableToDelete
from tidings.ids import is_canonical, new_id, new_ids
from tidings.model import (
    Claim,
    ClaimRequest,
    ClaimResult,
    Message,
    MessageSummary,
    NewMessage,
    QueueRecord,
    QueueStats,
)
from tidings.observe import metrics
from tidings.storage import rules
from tidings.storage.base import (
    Audience,
    DeadLetterRule,
    MessageListing,
    MessageVolume,
    PreparePost,
    QueueListing,
    StoreStatus,
)
from tidings.storage.postgres.catalog import PostgresCatalog
from tidings.storage.postgres.database import (
    SINGLE,
    SNAPSHOT,
    WRITE,
    Connection,
    Database,
    Row,
    parse_uri,
)
from tidings.storage.postgres.feed import (
    RELAY_KEPT,
    F,
    PostgresFeed,
    channels,
    ready_payload,
)
from tidings.storage.postgres.metadata import ABSENT, Known, MetadataCache
from tidings.storage.postgres.subscriptions import (
    PostgresOutbox,
    PostgresSubscriptions,
    S,
)
from tidings.storage.rows import (
    budgeted_message_page,
    filtered_queue_page,
    marker_seq,
    message_from_row,
    volume_from_row,
)
from tidings.storage.sql import load_queries

Q = load_queries(__package__ or "tidings.storage.postgres", "queries.sql")

GC_CHUNK = 1000
# Bounds one collect_garbage call; whatever is left goes at the next run.
GC_MAX_CHUNKS = 1000
# Bounds one settle (chunks of scan_budget rows): thousands of lapsed claims, ended
# delays or expired messages go at once, a million never hold a caller for long.
SETTLE_MAX_CHUNKS = 10
# Tries of a post or claim that found the queue's metadata changed under it each time.
METADATA_ATTEMPTS = 4

_json_encode = msgspec.json.encode
_json_decode = msgspec.json.decode


def _uuids(values: Iterable[str]) -> list[str]:
    return [v for v in dict.fromkeys(values) if is_canonical(v)]


Tid = tuple[int, int]
"""A row's ctid: where a row this transaction has locked can be found again."""


def _locked(rows: Iterable[Row]) -> list[tuple[Message, Tid]]:
    """Messages from rows selected with their ctid last."""
    return [(message_from_row(row[:-1]), row[-1]) for row in rows]


class _Base:
    def __init__(self, db: Database, known: MetadataCache, feed: PostgresFeed) -> None:
        self._db = db
        # The queue metadata this node keeps (metadata.py), shared by the three stores.
        self._known = known
        self._feed = feed
        # Where statements that make messages ready signal it (feed.py).
        self._channel = channels(db.target.schema)[0]


async def _insert_queue(
    connection: Connection, project: str, name: str, metadata: str, now: float
) -> int | None:
    """Create the queue unless it exists; returns the new queue's metadata version."""
    version = await connection.fetchval(Q["queue_insert"], project, name, metadata, now, new_id())
    return None if version is None else int(version)


async def _ensure_queue(connection: Connection, project: str, name: str, now: float) -> str:
    """Create the queue unless it exists; returns its key, share-locked until the
    transaction ends (a delete or purge waits)."""
    await _insert_queue(connection, project, name, "{}", now)
    return str(await connection.fetchval(Q["queue_key_for_share"], project, name))


async def _drop_rows(
    connection: Connection, project: str, key: str, chunk: int, after: int
) -> tuple[int, bool, int]:
    """Remove up to ``chunk`` messages (those after seq ``after``) and ``chunk`` claims
    filed under ``key``.

    Returns how many rows went, whether that was all of them, and the last seq removed.
    """
    messages = await connection.fetchrow(Q["queue_drop_messages"], project, key, chunk, after)
    claims = await connection.fetchrow(Q["queue_drop_claims"], project, key, chunk)
    found_m, gone_m, last = messages or (0, 0, after)
    found_c, gone_c = claims or (0, 0)
    return int(gone_m) + int(gone_c), found_m < chunk and found_c < chunk, int(last)


async def _drop_contents(connection: Connection, project: str, key: str, chunk: int) -> bool:
    """Remove a small queue's rows at once (at most ``chunk`` of each kind), or retire
    a deep one's key (garbage collection removes its rows). True when it was retired.
    The key's counters go either way (the caller no longer files rows under it)."""
    stored = int(await connection.fetchval(Q["queue_rows"], project, key))
    last, all_gone = 0, False
    if stored <= chunk:
        _, all_gone, last = await _drop_rows(connection, project, key, chunk, 0)
    if not all_gone:
        await connection.execute(Q["queue_retire"], project, key, last)
    await connection.execute(Q["queue_drop_counters"], project, key)
    return not all_gone


class PostgresQueues(_Base):
    async def create(self, project: str, name: str, metadata: dict[str, Any], now: float) -> bool:
        encoded = _json_encode(metadata).decode()

        async def work(connection: Connection) -> int | None:
            return await _insert_queue(connection, project, name, encoded, now)

        version = await self._db.run(work, SINGLE)
        if version is not None:
            self._known.learn(project, name, version, encoded)
        return version is not None

    async def get_metadata(self, project: str, name: str) -> dict[str, Any] | None:
        async def work(connection: Connection) -> str | None:
            raw = await connection.fetchval(Q["queue_metadata"], project, name)
            return None if raw is None else str(raw)

        raw = await self._db.run(work, SINGLE)
        return None if raw is None else dict(_json_decode(raw))

    async def set_metadata(self, project: str, name: str, metadata: dict[str, Any]) -> bool:
        encoded = _json_encode(metadata).decode()

        async def work(connection: Connection) -> int | None:
            version = await connection.fetchval(Q["queue_set_metadata"], project, name, encoded)
            return None if version is None else int(version)

        version = await self._db.run(work, SINGLE)
        if version is None:
            return False
        self._known.learn(project, name, version, encoded)
        return True

    async def delete(self, project: str, name: str) -> None:
        async def work(connection: Connection) -> None:
            # The queue row first: a concurrent post (which share-locks it) then waits
            # for the delete instead of adding messages under a key that goes.
            key = await connection.fetchval(Q["queue_delete"], project, name)
            if key is not None:
                await _drop_contents(connection, project, str(key), self._db.scan_budget)

        await self._db.run(work, WRITE)
        self._known.forget(project, name)

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

            async def plain(connection: Connection) -> QueueListing:
                rows = await connection.fetch(Q["queue_list"], project, marker or "", limit, None)
                return QueueListing(
                    queues=[QueueRecord(name=n, metadata=dict(_json_decode(m))) for n, m in rows]
                )

            return await self._db.run(plain, SINGLE)
        budget = rules.scan_window(self._db.scan_budget, limit)
        after = marker or ""
        needles = rules.metadata_needles(metadata_equals)

        async def work(connection: Connection) -> QueueListing:
            rows = await connection.fetch(
                Q["queue_scan"], project, after, budget, limit, name_contains or None, needles
            )
            candidates = [(str(name), str(raw)) for name, raw in rows]
            end = None
            if len(candidates) < limit:
                count, last = await connection.fetchrow(
                    Q["queue_window_end"], project, after, budget
                ) or (0, None)
                end = (int(count), last)
            return filtered_queue_page(candidates, limit, metadata_equals, end, budget)

        return await self._db.run(work, SNAPSHOT)  # one snapshot for the scan and its end

    async def count(self, project: str) -> int:
        async def work(connection: Connection) -> int:
            return int(await connection.fetchval(Q["queue_count"], project))

        return await self._db.run(work, SINGLE)

    async def stats(self, project: str, name: str, now: float) -> QueueStats:
        budget = self._db.scan_budget

        async def work(connection: Connection) -> QueueStats:
            # Settled first (when needed), so that no expired message lies at either end.
            rows = await _fetch_settled(
                connection, Q["queue_stats"], (project, name, now, budget), now, budget
            )
            _, total, claimed, oldest, oldest_at, newest, newest_at, delayed = rows[0]
            if not total:
                return QueueStats(total=0, claimed=0)
            return QueueStats(
                total=int(total),
                claimed=int(claimed),
                delayed=int(delayed),
                oldest=None if oldest is None else MessageSummary(id=oldest, created=oldest_at),
                newest=None if newest is None else MessageSummary(id=newest, created=newest_at),
            )

        return await self._db.run(work, SINGLE)  # the counts and ends come from one statement

    async def purge_messages(self, project: str, name: str) -> None:
        async def work(connection: Connection) -> None:
            key = await connection.fetchval(Q["queue_lock"], project, name)
            if key is not None and await _drop_contents(
                connection, project, str(key), self._db.scan_budget
            ):
                # What is left is filed under the retired key: new messages go elsewhere.
                await connection.execute(Q["queue_rekey"], project, name, new_id())

        await self._db.run(work, WRITE)


async def _post(args: tuple[Any, ...], connection: Connection) -> tuple[bool, Any, Any, bool]:
    """One call of post_messages: (stored, version and metadata in force, owed)."""
    row = await connection.fetchrow(Q["message_post"], *args)
    assert row is not None  # a function call returns one row
    return bool(row[0]), row[1], row[2], bool(row[3])


async def _settle(connection: Connection, project: str, queue: str, now: float, chunk: int) -> None:
    """Bring the queue's READY index up to ``now`` (see ``message_settle``), boundedly.

    Each chunk is a statement of its own: outside a transaction it commits at once, so
    its row locks are held only while it runs. Settling changes nothing any read can
    see, so a caller that stops short (budget spent, rows locked by others) stays right.
    """
    for _ in range(SETTLE_MAX_CHUNKS):
        fullest = await connection.fetchval(Q["message_settle"], project, queue, now, chunk)
        if int(fullest) < chunk:
            return


async def _fetch_settled(
    connection: Connection, query: str, args: tuple[Any, ...], now: float, chunk: int
) -> list[Row]:
    """Rows of a statement reading a settled queue: ``args`` start with (project, queue),
    the statement's last parameter says whether to check, its first column is "pending".

    Such a statement reads nothing when the queue needs settling, and says so: the queue
    is settled then, and the statement run again without the check. A settled queue,
    the usual case, costs one round trip.
    """
    rows = await connection.fetch(query, *args, True)
    if rows and rows[0][0]:
        await _settle(connection, args[0], args[1], now, chunk)
        rows = await connection.fetch(query, *args, False)
    return rows


async def _claimable(
    connection: Connection, project: str, queue: str, limit: int, now: float, budget: int
) -> list[tuple[Message, Tid]]:
    """Lock and return the oldest ``limit`` claimable messages nobody else has locked."""
    window = rules.scan_window(budget, limit)
    return _locked(
        await connection.fetch(Q["message_claimable"], project, queue, now, limit, window)
    )


class PostgresMessages(_Base):
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
        # One call of post_messages (migration 0010), one round trip: the batch is
        # prepared from the metadata this node keeps, and the call stores it only under
        # that metadata's version; otherwise it returns the metadata in force.
        known = await self._known.current(project, queue)
        ids: list[str] = []
        # Prepared once per distinct metadata: a retry under unchanged metadata (a new
        # queue made elsewhere meanwhile, say) reuses the batch.
        prepared_from: dict[str, Any] | None = None
        messages: Sequence[NewMessage] = ()
        for _ in range(METADATA_ATTEMPTS):
            if prepared_from is None or prepared_from != known.metadata:
                try:
                    messages, prepared_from = prepare(known.metadata), known.metadata
                except Exception:
                    # Refused by what this node keeps: final only if still in force.
                    fresh = await self._known.read(project, queue)
                    if fresh.version == known.version:
                        raise
                    known = fresh
                    continue
            if len(ids) != len(messages):
                ids = new_ids(len(messages))
            args = (
                project, queue, known.version if known.exists else None, new_id(), client_id,
                now, ids, [m.body for m in messages], [m.ttl for m in messages],
                [m.delay for m in messages], notify.value,
            )  # fmt: skip
            stored, version, raw, owed = await self._db.run(partial(_post, args), SINGLE)
            if not stored:
                known = self._known.learn(project, queue, version, raw)
                continue
            if not known.exists:  # made by this post, with no metadata
                self._known.learn(project, queue, version, "{}")
            # Committed (the call returns after its commit): watchers may look now, and
            # the dispatcher when notifications are owed.
            if messages:  # delayed ones too: a waiter sets its timer
                self._feed.signal(project, queue)
            if owed and on_owed is not None:
                on_owed()
            return ids
        raise StorageError(f"the metadata of queue {queue!r} kept changing under the post")

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
        chunk = self._db.scan_budget
        budget = rules.scan_window(chunk, limit)
        args: tuple[Any, ...] = (project, queue, marker_seq(marker), limit, now, exclude_client)
        if include_claimed:
            query, args = Q["message_list_all"], (*args, include_delayed, budget)
        elif include_delayed:
            query, args = Q["message_list_unclaimed"], (*args, budget)
        else:
            query, args = Q["message_list_ready"], (*args, budget)

        async def work(connection: Connection) -> MessageListing:
            rows = await _fetch_settled(connection, query, args, now, chunk)
            # Each row: pending, the window's (rows in it, last seq), a message (or NULLs).
            found = [message_from_row(r[3:]) for r in rows if r[3] is not None]
            end = (int(rows[0][1]), rows[0][2]) if len(found) < limit else None
            return budgeted_message_page(found, limit, end, budget)

        return await self._db.run(work, SINGLE)

    async def get(self, project: str, queue: str, ids: Sequence[str], now: float) -> list[Message]:
        wanted = _uuids(ids)
        if not wanted:
            return []

        async def work(connection: Connection) -> list[Message]:
            rows = await connection.fetch(Q["message_by_ids"], project, queue, wanted, now)
            return [message_from_row(r) for r in rows]

        return await self._db.run(work, SINGLE)

    async def delete(
        self, project: str, queue: str, message_id: str, claim_id: str | None, now: float
    ) -> None:
        if not is_canonical(message_id):
            return
        if claim_id is None or is_canonical(claim_id):
            await self._delete_at_once(project, queue, message_id, claim_id, now)
            return

        # Any other claim id can name no claim: the rules refuse it (if the message is
        # there), as the transaction below finds.
        async def work(connection: Connection) -> None:
            rows = await connection.fetch(
                Q["message_by_ids_for_update"], project, queue, [message_id], now
            )
            if not rows:
                return
            [(message, tid)] = _locked(rows)
            live = claim_id is not None and await _claim_is_live(
                connection, project, queue, claim_id, now
            )
            rules.check_delete(message, claim_id, live, now)
            await connection.execute(Q["message_delete"], [tid])

        await self._db.run(work, WRITE)

    async def _delete_at_once(
        self, project: str, queue: str, message_id: str, claim_id: str | None, now: float
    ) -> None:
        """One call of delete_message (migration 0010): it deletes when the caller may;
        otherwise the rules say why, from the message it locked."""

        async def work(connection: Connection) -> Row | None:
            return await connection.fetchrow(
                Q["message_delete_held"], project, queue, message_id, claim_id, now
            )

        row = await self._db.run(work, SINGLE)
        if row is None or row[0]:
            return
        rules.check_delete(message_from_row(row[2:]), claim_id, bool(row[1]), now)
        raise StorageError("delete_message refused a delete the rules allow")

    async def delete_many(
        self,
        project: str,
        queue: str,
        ids: Sequence[str],
        claim_ids: Sequence[str] | None,
        now: float,
    ) -> None:
        wanted = _uuids(ids)
        if not wanted:
            return

        async def unchecked(connection: Connection) -> None:
            await connection.execute(Q["message_delete_by_ids"], project, queue, wanted, now)

        async def checked(connection: Connection) -> None:
            rows = await connection.fetch(
                Q["message_by_ids_for_update"], project, queue, wanted, now
            )
            doomed = _locked(rows)
            allowed = set(claim_ids or ())
            for message, _ in doomed:
                reason = rules.message_not_held(message, allowed, now)
                if reason:
                    raise UnableToDelete(reason)
            if doomed:
                await connection.execute(Q["message_delete"], [tid for _, tid in doomed])

        if claim_ids is None:
            # One statement: its own transaction, one round trip.
            await self._db.run(unchecked, SINGLE)
        else:
            await self._db.run(checked, WRITE)

    async def pop(self, project: str, queue: str, limit: int, now: float) -> list[Message]:
        budget = self._db.scan_budget
        args = (project, queue, now, limit, rules.scan_window(budget, limit))

        async def work(connection: Connection) -> list[Message]:
            rows = await _fetch_settled(connection, Q["message_pop"], args, now, budget)
            return [message_from_row(r[1:]) for r in rows if r[1] is not None]

        return await self._db.run(work, SINGLE)  # each statement on its own is atomic


async def _claim_is_live(
    connection: Connection, project: str, queue: str, claim_id: str, now: float
) -> bool:
    if not is_canonical(claim_id):
        return False
    row = await connection.fetchrow(Q["claim_get"], claim_id, project, queue, now)
    return row is not None


async def _move_to_dead_letter(
    connection: Connection,
    project: str,
    message: Message,
    tid: Tid,
    dead_letter_queue: str,
    message_ttl: int | None,
    now: float,
    channel: str,
) -> None:
    """Re-append the (locked) message at the tail of the dead-letter queue, unclaimed,
    and signal the dead-letter queue's watchers on ``channel``."""
    key = await _ensure_queue(connection, project, dead_letter_queue, now)
    await connection.execute(Q["message_delete"], [tid])
    ttl = message_ttl if message_ttl else message.ttl
    expires = now + message_ttl if message_ttl else message.expires
    await connection.execute(
        Q["message_insert"],
        message.id,
        project,
        key,
        message.body,
        message.client_id,
        ttl,
        message.created,
        expires,
        message.claim_count,
        channel,
        ready_payload(project, dead_letter_queue),
    )


def _claimed(
    message: Message, claim_id: str, claim_expires: float, request: ClaimRequest
) -> Message:
    expires, ttl = rules.claimed_lifetime(
        message.expires, message.ttl, claim_expires, request.ttl, request.grace
    )
    return msgspec.structs.replace(
        message,
        claim_id=claim_id,
        claim_expires=claim_expires,
        expires=expires,
        ttl=ttl,
        claim_count=message.claim_count + 1,
    )


class PostgresClaims(_Base):
    async def create(
        self,
        project: str,
        queue: str,
        request: ClaimRequest,
        now: float,
        dead_letter_from: DeadLetterRule | None = None,
    ) -> ClaimResult | None:
        if dead_letter_from is not None:
            # The policy comes from the metadata this node keeps (metadata.py): while
            # that has none, the claim is one statement, which checks its version.
            known = await self._known.current(project, queue)
            for _ in range(METADATA_ATTEMPTS):
                if dead_letter_from(known.metadata) is not None:
                    break
                claimed, changed = await self._claim_at_once(
                    project, queue, request, now, known.version
                )
                if changed is None:
                    return claimed
                known = changed
            else:
                raise StorageError(f"the metadata of queue {queue!r} kept changing under the claim")
            # Dead-lettering moves messages in a transaction of several statements; its
            # policy is read just before (as any caller would), not under its locks.
            known = await self._known.read(project, queue)
            if not known.exists:
                return None
            policy = dead_letter_from(known.metadata)
            request = msgspec.structs.replace(request, dead_letter=policy)
        if request.dead_letter is None:
            return (await self._claim_at_once(project, queue, request, now, None))[0]
        claim_id = new_id()
        ttl, grace = rules.bounded_claim(request.ttl, request.grace)
        request = msgspec.structs.replace(request, ttl=ttl, grace=grace)
        claim_expires = now + request.ttl
        dead_letter = request.dead_letter
        chunk = self._db.scan_budget
        budget = rules.scan_window(chunk, request.limit)

        dead_lettered = 0  # by the attempt that committed (a retried one starts over)

        async def work(connection: Connection) -> ClaimResult | None:
            nonlocal dead_lettered
            dead_lettered = 0
            # The queue's key cannot change before this transaction ends (a delete or
            # purge waits), so every statement below reads the same one.
            if await connection.fetchval(Q["queue_key_for_share"], project, queue) is None:
                return None
            await _settle(connection, project, queue, now, chunk)
            candidates = await _claimable(connection, project, queue, request.limit, now, budget)
            claimed: list[Message] = []
            tids: list[Tid] = []
            for message, tid in candidates:
                if dead_letter and message.claim_count >= dead_letter.max_claim_count:
                    await _move_to_dead_letter(
                        connection,
                        project,
                        message,
                        tid,
                        dead_letter.queue,
                        dead_letter.message_ttl,
                        now,
                        self._channel,
                    )
                    dead_lettered += 1
                    continue
                claimed.append(_claimed(message, claim_id, claim_expires, request))
                tids.append(tid)
            if not claimed:
                return None
            await connection.execute(
                Q["message_claim"],
                claim_id,
                project,
                queue,
                request.ttl,
                request.grace,
                now,
                claim_expires,
                tids,
                [m.expires for m in claimed],
                [m.ttl for m in claimed],
            )
            return ClaimResult(id=claim_id, messages=claimed)

        result = await self._db.run(work, WRITE)
        metrics.messages_dead_lettered(dead_lettered)
        return result

    async def _claim_at_once(
        self, project: str, queue: str, request: ClaimRequest, now: float, version: int | None
    ) -> tuple[ClaimResult | None, Known | None]:
        """A claim without a dead-letter policy, whole in one statement (claim_create).

        With a ``version`` (ABSENT: the caller believes there is no queue), it claims only
        while the queue's metadata has that version; otherwise it claims nothing and
        returns the metadata in force, learned (a queue gone meanwhile has nothing to
        claim: that is no change to report).
        """
        claim_id = new_id()
        ttl, grace = rules.bounded_claim(request.ttl, request.grace)
        claim_expires = now + ttl
        chunk = self._db.scan_budget
        args = (
            project, queue, claim_id, now, request.limit, claim_expires, ttl, grace,
            rules.scan_window(chunk, request.limit), version,
        )  # fmt: skip

        async def work(connection: Connection) -> list[Row]:
            return await _fetch_settled(connection, Q["claim_create"], args, now, chunk)

        rows = await self._db.run(work, SINGLE)
        # Each row: pending, the metadata version in force (and the metadata when it is
        # not the one asked for), then a claimed message (or NULLs).
        in_force, raw = rows[0][1], rows[0][2]
        if version is not None and (in_force or ABSENT) != version:
            known = self._known.learn(project, queue, in_force, raw)
            return None, known if known.exists else None
        messages = [message_from_row(r[3:]) for r in rows if r[3] is not None]
        return (ClaimResult(id=claim_id, messages=messages) if messages else None), None

    async def get(self, project: str, queue: str, claim_id: str, now: float) -> Claim | None:
        if not is_canonical(claim_id):
            return None
        args = (claim_id, project, queue, now)

        async def work(connection: Connection) -> Claim | None:
            row = await connection.fetchrow(Q["claim_get"], *args)
            if row is None:
                return None
            messages = [
                message_from_row(r) for r in await connection.fetch(Q["claim_messages"], *args)
            ]
            cid, ttl, grace, updated, expires = row
            return Claim(
                id=cid, ttl=ttl, grace=grace, updated=updated, expires=expires, messages=messages
            )

        return await self._db.run(work, SNAPSHOT)

    async def renew(
        self, project: str, queue: str, claim_id: str, ttl: int, grace: int, now: float
    ) -> bool:
        if not is_canonical(claim_id):
            return False
        ttl, grace = rules.bounded_claim(ttl, grace)
        claim_expires = now + ttl
        args = (claim_id, project, queue, now)

        async def work(connection: Connection) -> bool:
            status = await connection.execute(Q["claim_renew"], *args, ttl, grace, claim_expires)
            if status != "UPDATE 1":
                return False
            held = _locked(await connection.fetch(Q["claim_messages_for_update"], *args))
            lifetimes = [
                rules.claimed_lifetime(m.expires, m.ttl, claim_expires, ttl, grace) for m, _ in held
            ]
            await connection.execute(
                Q["message_extend_claim"],
                claim_expires,
                [tid for _, tid in held],
                [expires for expires, _ in lifetimes],
                [new_ttl for _, new_ttl in lifetimes],
            )
            if any(m.claim_expires > claim_expires for m, _ in held):
                # Shortened: a waiter's timer set from next_ready would fire too late.
                await connection.execute(
                    F["feed_signal"], self._channel, ready_payload(project, queue)
                )
            return True

        return await self._db.run(work, WRITE)

    async def release(self, project: str, queue: str, claim_id: str, now: float) -> None:
        if not is_canonical(claim_id):
            return
        args = (claim_id, project, queue)

        signal = (self._channel, ready_payload(project, queue))

        async def work(connection: Connection) -> None:
            await connection.execute(Q["claim_delete"], *args)
            await connection.execute(Q["claim_release_messages"], *args, *signal)

        await self._db.run(work, WRITE)


class PostgresStorage:
    """Storage in one PostgreSQL schema; any number of nodes may share it."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._feed = PostgresFeed(db)
        known = MetadataCache(db)
        self.queues = PostgresQueues(db, known, self._feed)
        self.messages = PostgresMessages(db, known, self._feed)
        self.claims = PostgresClaims(db, known, self._feed)
        self.subscriptions = PostgresSubscriptions(db)
        self.outbox = PostgresOutbox(db)
        self._catalog = PostgresCatalog(db)

    @classmethod
    def from_uri(cls, uri: str, settings: StorageSettings) -> PostgresStorage:
        """``postgresql://user@host:port/db[?schema=NAME]`` (``postgres://`` too)."""
        return cls(Database(parse_uri(uri), settings))

    @property
    def schema(self) -> str:
        return self._db.target.schema

    @property
    def feed(self) -> PostgresFeed:
        return self._feed

    @property
    def catalog(self) -> PostgresCatalog:
        return self._catalog

    async def open(self) -> None:
        await self._db.open()
        self._feed.start()

    async def close(self) -> None:
        await self._feed.stop()
        await self._db.close()

    async def upgrade(self) -> int:
        """Apply pending schema migrations; returns the version reached."""
        return await self._db.upgrade()

    async def ping(self) -> bool:
        return await self._db.ping()

    async def status(self) -> StoreStatus:
        return StoreStatus(reachable=await self.ping())

    async def message_volume(self, now: float) -> MessageVolume:
        budget = self._db.scan_budget

        async def work(connection: Connection) -> MessageVolume:
            return volume_from_row(await connection.fetchrow(Q["message_volume"], budget), budget)

        return await self._db.run(work, SINGLE)

    async def collect_garbage(self, now: float) -> int:
        removed = 0
        chunked = (
            (Q["gc_messages"], now),
            (Q["gc_claims"], now),
            (S["gc_subscriptions"], now),
            (F["relay_gc"], now - RELAY_KEPT),
        )
        for query, before in chunked:
            for _ in range(GC_MAX_CHUNKS):
                affected = await self._gc_chunk(query, before)
                removed += affected
                if affected < GC_CHUNK:
                    break
        for _ in range(GC_MAX_CHUNKS):
            went, more = await self.remove_retired_chunk()
            removed += went
            if not more:
                break
        return removed

    async def remove_retired_chunk(self) -> tuple[int, bool]:
        """One short transaction removing up to ``scan_budget`` messages (and as many
        claims) filed under a retired key (a deleted or purged deep queue's), one key
        after another; returns how many rows went, and whether there may be more."""
        chunk = self._db.scan_budget

        async def work(connection: Connection) -> tuple[int, bool]:
            row = await connection.fetchrow(Q["retired_next"])
            if row is None:
                return 0, False
            project, key, after = str(row[0]), str(row[1]), int(row[2])
            went, all_gone, last = await _drop_rows(connection, project, key, chunk, after)
            if all_gone:
                await connection.execute(Q["queue_drop_counters"], project, key)
                await connection.execute(Q["retired_forget"], project, key)
            else:
                await connection.execute(Q["retired_progress"], project, key, last)
            return went, True

        return await self._db.run(work, WRITE)

    async def _gc_chunk(self, query: str, now: float) -> int:
        async def work(connection: Connection) -> int:
            return int(await connection.fetchval(query, now, GC_CHUNK))

        return await self._db.run(work, WRITE)
