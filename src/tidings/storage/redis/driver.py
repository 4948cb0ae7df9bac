"""The Redis store: queues, messages and claims kept atomic by Lua scripts.

Layout (see ``keys.py`` and ``lua/queue_lib.lua``): each queue's keys share one hash
tag, so every per-queue script touches one cluster slot; each project's catalog (queue
names and metadata) has a hash tag of its own; a global set of projects lets garbage
collection find every queue without scanning the keyspace. Expiry is decided by the
scripts from the caller's ``now``, so nothing past its time is ever returned even when
garbage collection never runs. Free messages have an index of their own, brought up to
``now`` in bounded steps before it is read, so claims, pops and listings never walk past
claimed, delayed or expired messages (see ``lua/queue_lib.lua``).

Subscriptions and the notifications owed to them live in the slot of the queue of the
same name: see ``subscriptions.py``. The change feed (sharded pub/sub from the scripts)
is in ``feed.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import msgspec

from tidings.config import StorageSettings
from tidings.errors import StorageError, UnableToDelete
from tidings.ids import new_id, new_ids
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
from tidings.storage.redis.catalog import RedisCatalog
from tidings.storage.redis.connection import Backend, make_client, parse_uri
from tidings.storage.redis.feed import RedisFeed
from tidings.storage.redis.keys import KeySpace, slot_id, split_slot_id
from tidings.storage.redis.subscriptions import RedisOutbox, RedisSubscriptions, index_due
from tidings.storage.redis.volume import message_volume

log = logging.getLogger(__name__)

# Queue names one catalog script examines at most; a listing makes several calls, up
# to [storage] scan_budget names in all, so no single call holds Redis long.
CATALOG_SCAN = 200
GC_CHUNK = 500
# Backend calls one garbage collection run makes at most; the next run goes on from
# where it stopped (see RedisStorage.collect_garbage).
GC_CALLS_PER_RUN = 5000
# A dead-letter move whose second step has not happened after this long was cut short
# (the process died): garbage collection replays it.
OUTBOX_STALE_AFTER = 60.0
# Queues whose quarantine size this process remembers, so it logs each growth once.
QUARANTINE_SEEN_MAX = 10_000
MARKER_INTERVAL = 5.0
# Queue metadata a process keeps with the token it read it under (MetadataCache): the
# scripts check the token, so a change is seen at once; the age bound only limits how
# long a writer that died between its two steps (catalog, then token) can go unnoticed.
METADATA_CACHE_SIZE = 10_000
METADATA_MAX_AGE = 30.0
TOKEN_LIFETIME_MS = 86_400_000  # as lua/queue_lib.lua's
# Tries of a post or claim whose script found the metadata changed under it each time.
METADATA_ATTEMPTS = 4

_Record = tuple[str, int, str, int, float, float, str, str, float, int, float]
_ClaimRecord = tuple[int, int, float, float, list[str]]
_OutboxEntry = tuple[str, str, str, int, float, float, str, int, float]
_decode_record = msgspec.msgpack.Decoder(_Record).decode
_decode_claim = msgspec.msgpack.Decoder(_ClaimRecord).decode
_decode_outbox = msgspec.msgpack.Decoder(_OutboxEntry).decode
_json_encode = msgspec.json.encode
_json_decode = msgspec.json.decode


def _message(raw: bytes) -> Message:
    try:
        mid, seq, body, ttl, created, expires, client, claim, claim_exp, count, delay = (
            _decode_record(raw)
        )
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise StorageError(f"unreadable message record in Redis: {exc}") from exc
    return Message(
        id=mid,
        marker=str(seq),
        body=body.encode(),
        ttl=ttl,
        created=float(created),
        expires=float(expires),
        client_id=client,
        claim_id=claim or None,
        claim_expires=float(claim_exp),
        claim_count=count,
        delay_until=float(delay),
    )


def _messages(raws: Sequence[bytes], where: str) -> list[Message]:
    """Records a script returned; the scripts quarantine what the decoder would refuse, so
    a record skipped here is a bug, logged, never a failed request (a pop or claim has
    already taken its neighbours)."""
    found = []
    for raw in raws:
        try:
            found.append(_message(raw))
        except StorageError:
            log.exception("skipped an unreadable message record returned by %s", where)
    return found


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _marker_seq(marker: str | None) -> str | None:
    # Markers are the sequence numbers we hand out; a foreign one matches nothing after
    # it (as in Zaqar, an unknown marker yields an empty page).
    if marker is None:
        return "0"
    try:
        return str(int(marker))
    except ValueError:
        return None


def _scan_cap(backend: Backend, limit: int) -> int:
    return rules.scan_window(backend.scan_budget, limit)


def _flag(value: bool) -> str:
    return "1" if value else "0"


class _Known(NamedTuple):
    metadata: dict[str, Any] | None  # None: the queue did not exist
    token: str
    read_at: float  # time.monotonic()


async def _catalog_metadata(backend: Backend, project: str, queue: str) -> dict[str, Any] | None:
    """The queue's metadata as its project's catalog holds it (None: no such queue)."""
    key = backend.keys.catalog(project)[1]
    raw = await backend.call(lambda: backend.client.hget(key, queue))
    return None if raw is None else dict(_json_decode(raw))


class MetadataCache:
    """Queue metadata read by this process, each with the queue's token at that read.

    The token lives in the queue's slot (``lua/queue_lib.lua``) and is replaced after
    every metadata write and removed with the queue; it is read *before* the metadata,
    so a script that finds the same token knows no write finished since the metadata
    was read. Posts and claims send it and prepare again when their script refuses:
    one round trip while nothing changes.
    """

    def __init__(self, backend: Backend) -> None:
        self._b = backend
        self._known: dict[tuple[str, str], _Known] = {}

    def get(self, project: str, queue: str) -> _Known | None:
        known = self._known.get((project, queue))
        if known is None or time.monotonic() - known.read_at > METADATA_MAX_AGE:
            return None
        return known

    def forget(self, project: str, queue: str) -> None:
        self._known.pop((project, queue), None)

    async def read(self, project: str, queue: str) -> _Known:
        """The token (made when missing), then the metadata; remembered."""
        token = await self._b.script(
            "meta_token", [self._b.keys.meta_token(project, queue)], [new_id(), TOKEN_LIFETIME_MS]
        )
        return await self.read_after(project, queue, _text(token))

    async def read_after(self, project: str, queue: str, token: str) -> _Known:
        """The metadata, read after ``token`` was seen in the queue's slot; remembered."""
        known = _Known(await _catalog_metadata(self._b, project, queue), token, time.monotonic())
        if len(self._known) >= METADATA_CACHE_SIZE:
            self._known.clear()
        self._known[(project, queue)] = known
        return known

    async def current(self, project: str, queue: str) -> _Known:
        return self.get(project, queue) or await self.read(project, queue)

    async def changed(self, project: str, queue: str) -> str:
        """After a metadata write (or a create) in the catalog: a new token, so that
        every node reads the metadata again before its next post or claim; returned
        (``read_after`` may take it: it was in force once the write returned)."""
        self.forget(project, queue)
        key, token = self._b.keys.meta_token(project, queue), new_id()
        await self._b.call(lambda: self._b.client.set(key, token, px=TOKEN_LIFETIME_MS))
        return token


class RedisQueues:
    def __init__(self, backend: Backend) -> None:
        self._b = backend
        self.known = MetadataCache(backend)

    async def create(self, project: str, name: str, metadata: dict[str, Any], now: float) -> bool:
        return await self.create_token(project, name, metadata) is not None

    async def create_token(self, project: str, name: str, metadata: dict[str, Any]) -> str | None:
        """``create``, returning the new queue's metadata token (None: it existed)."""
        keys = self._b.keys
        # Indexed before it exists, so garbage collection can never miss a queue, and
        # again after: a collector that saw the catalog empty and is dropping the project
        # (_forget_project) cannot leave the new queue unindexed.
        await self._b.call(lambda: self._b.client.sadd(keys.projects, project))
        created = await self._b.script(
            "catalog_create", keys.catalog(project), [name, _json_encode(metadata)]
        )
        if not created:
            return None
        token = await self.known.changed(project, name)
        await self._b.call(lambda: self._b.client.sadd(keys.projects, project))
        return token

    async def get_metadata(self, project: str, name: str) -> dict[str, Any] | None:
        return await _catalog_metadata(self._b, project, name)

    async def set_metadata(self, project: str, name: str, metadata: dict[str, Any]) -> bool:
        keys = self._b.keys.catalog(project)
        replaced = bool(await self._b.script("catalog_set", keys, [name, _json_encode(metadata)]))
        if replaced:  # the catalog first: whoever sees the new token reads the new metadata
            await self.known.changed(project, name)
        return replaced

    async def delete(self, project: str, name: str) -> None:
        left = await self._b.script("catalog_delete", self._b.keys.catalog(project), [name])
        self.known.forget(project, name)
        await self._b.script("purge", self._b.keys.queue(project, name), ["1"])  # token too
        if not int(left):
            await forget_project(self._b, project)

    async def page(
        self,
        project: str,
        *,
        marker: str | None,
        limit: int,
        name_contains: str | None = None,
        metadata_equals: dict[str, Any] | None = None,
    ) -> QueueListing:
        keys = self._b.keys.catalog(project)
        budget = _scan_cap(self._b, limit)
        needles = rules.metadata_needles(metadata_equals)
        found: list[QueueRecord] = []
        cursor, examined = marker or "", 0
        while len(found) < limit and examined < budget:
            cap = min(CATALOG_SCAN, budget - examined)
            args = [cursor, limit - len(found), name_contains or "", cap, *needles]
            reply = await self._b.script("catalog_page", keys, args)
            for name, raw in zip(reply[2::2], reply[3::2], strict=True):
                metadata = dict(_json_decode(raw))
                if rules.metadata_matches(metadata, metadata_equals):
                    found.append(QueueRecord(name=_text(name), metadata=metadata))
            cursor, examined = _text(reply[0]), examined + int(reply[1])
            if not cursor:  # the catalog is exhausted
                return QueueListing(queues=found)
        if len(found) >= limit:
            return QueueListing(queues=found)
        return QueueListing(queues=found, resume_after=cursor)

    async def count(self, project: str) -> int:
        key = self._b.keys.catalog(project)[0]
        return int(await self._b.call(lambda: self._b.client.zcard(key)))

    async def stats(self, project: str, name: str, now: float) -> QueueStats:
        total, claimed, oldest, newest, delayed = await self._b.script(
            "stats", self._b.keys.queue(project, name), [now, self._b.scan_budget]
        )
        return QueueStats(
            total=int(total),
            claimed=int(claimed),
            delayed=int(delayed),
            oldest=_summary(oldest),
            newest=_summary(newest),
        )

    async def purge_messages(self, project: str, name: str) -> None:
        await self._b.script("purge", self._b.keys.queue(project, name), ["0"])


def _summary(raw: bytes) -> MessageSummary | None:
    found = _messages([raw], "stats") if raw else []
    return MessageSummary(id=found[0].id, created=found[0].created) if found else None


class RedisMessages:
    def __init__(self, backend: Backend, queues: RedisQueues) -> None:
        self._b = backend
        self._queues = queues

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
        # The catalog lives in another slot than the queue: the batch is prepared from
        # the cached metadata and the script checks its token (MetadataCache), so a post
        # is one round trip unless the metadata changed or the queue is new.
        known = self._queues.known
        keys = self._b.keys.queue_and_source(project, queue)
        ids: list[str] = []
        # Prepared once per distinct metadata: a retry under unchanged metadata (a new
        # queue, a token that changed alone) reuses the batch.
        prepared_from: dict[str, Any] | None = None
        messages: Sequence[NewMessage] = ()
        for _ in range(METADATA_ATTEMPTS):
            current = await known.current(project, queue)
            metadata = {} if current.metadata is None else current.metadata
            if prepared_from is None or prepared_from != metadata:
                try:
                    messages, prepared_from = prepare(metadata), metadata
                except Exception:
                    # Refused by what this node keeps: final only if still in force.
                    fresh = await known.read(project, queue)
                    if fresh.token == current.token or fresh.metadata == current.metadata:
                        raise
                    continue
            if current.metadata is None:  # a new queue: prepared first (a refusal writes nothing)
                token = await self._queues.create_token(project, queue, {})
                if token is None:  # made elsewhere meanwhile: read it again
                    known.forget(project, queue)
                else:
                    await known.read_after(project, queue, token)
                continue
            if not messages:
                return []
            if len(ids) != len(messages):
                ids = new_ids(len(messages))
            args: list[Any] = [current.token, new_id(), now, client_id, notify.value]
            for mid, message in zip(ids, messages, strict=True):
                args += (mid, message.body, message.ttl, message.delay)
            stored, detail = await self._b.script("post", keys, args)
            if not int(stored):  # the metadata changed: read it under the token now in force
                await known.read_after(project, queue, _text(detail))
                continue
            if detail:  # notifications are owed: let takers find them
                await index_due(self._b, slot_id(project, queue), detail)
                if on_owed is not None:
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
        after = _marker_seq(marker)
        if after is None:
            return MessageListing(messages=[])
        args = [
            now, after, limit, _scan_cap(self._b, limit), exclude_client or "",
            _flag(include_claimed), _flag(include_delayed),
        ]  # fmt: skip
        resume, raws = await self._b.script("page", self._b.keys.queue(project, queue), args)
        return MessageListing(
            messages=_messages(raws, "page"),
            # Redis prints the seq score; as an integer below 2**53 it reads back exactly.
            resume_after=str(int(float(resume))) if resume else None,
        )

    async def get(self, project: str, queue: str, ids: Sequence[str], now: float) -> list[Message]:
        unique = list(dict.fromkeys(ids))
        if not unique:
            return []
        reply = await self._b.script("get", self._b.keys.queue(project, queue), [now, *unique])
        return _messages(reply, "get")

    async def delete(
        self, project: str, queue: str, message_id: str, claim_id: str | None, now: float
    ) -> None:
        malformed = claim_id is not None and not rules.well_formed_claim_id(claim_id)
        args = [now, message_id, _flag(claim_id is not None), claim_id or "", _flag(malformed)]
        reply = await self._b.script("delete", self._b.keys.queue(project, queue), args)
        if int(reply[0]) == 0:
            return
        # The script refused; the shared rules say why, from the same snapshot.
        message, claim_is_live = _message(reply[1]), bool(int(reply[2]))
        rules.check_delete(message, claim_id, claim_is_live, now)
        raise StorageError("the Redis delete script refused a delete the rules allow")

    async def delete_many(
        self,
        project: str,
        queue: str,
        ids: Sequence[str],
        claim_ids: Sequence[str] | None,
        now: float,
    ) -> None:
        unique = list(dict.fromkeys(ids))
        if not unique:
            return
        allowed = list(claim_ids or [])
        args = [now, _flag(claim_ids is not None), len(allowed), *allowed, *unique]
        reply = await self._b.script("delete_many", self._b.keys.queue(project, queue), args)
        if int(reply[0]) == 0:
            return
        reason = rules.message_not_held(_message(reply[1]), set(allowed), now)
        if reason is None:
            raise StorageError("the Redis delete script refused a delete the rules allow")
        raise UnableToDelete(reason)

    async def pop(self, project: str, queue: str, limit: int, now: float) -> list[Message]:
        args = [now, limit, _scan_cap(self._b, limit)]
        reply = await self._b.script("pop", self._b.keys.queue(project, queue), args)
        return _messages(reply, "pop")


class RedisClaims:
    def __init__(self, backend: Backend, queues: RedisQueues) -> None:
        self._b = backend
        self._queues = queues

    async def create(
        self,
        project: str,
        queue: str,
        request: ClaimRequest,
        now: float,
        dead_letter_from: DeadLetterRule | None = None,
    ) -> ClaimResult | None:
        claim_id = new_id()
        ttl, grace = rules.bounded_claim(request.ttl, request.grace)
        keys = self._b.keys.queue(project, queue)
        known = self._queues.known
        for _ in range(METADATA_ATTEMPTS):
            # With dead_letter_from the policy comes from the cached metadata and the
            # script checks its token (as for posts): one round trip while nothing changes.
            token, absent, policy = "-", False, request.dead_letter
            if dead_letter_from is not None:
                current = await known.current(project, queue)
                token, absent = current.token, current.metadata is None
                policy = None if absent else dead_letter_from(current.metadata or {})
            args = [
                token, new_id(), _flag(absent), now, claim_id, ttl, grace, request.limit,
                _scan_cap(self._b, request.limit),
                policy.max_claim_count if policy else 0,
                policy.queue if policy else "",
                (policy.message_ttl or 0) if policy else 0,
            ]  # fmt: skip
            reply = await self._b.script("claim", keys, args)
            if int(reply[0]):
                break
            await known.read_after(project, queue, _text(reply[1]))
        else:
            raise StorageError(f"the metadata of queue {queue!r} kept changing under the claim")
        claimed, moved = reply[1], reply[2]
        if moved:
            # Out of the source queue now; GC finishes a move cut short after this.
            metrics.messages_dead_lettered(len(moved))
            await deliver_dead_letters(self._b, self._queues, project, queue, moved, now)
        messages = _messages(claimed, "claim")
        if not messages:
            return None
        return ClaimResult(id=claim_id, messages=messages)

    async def get(self, project: str, queue: str, claim_id: str, now: float) -> Claim | None:
        reply = await self._b.script(
            "claim_get", self._b.keys.queue(project, queue), [now, claim_id]
        )
        if not reply:
            return None
        ttl, grace, updated, expires, _ids = _decode_claim(reply[0])
        return Claim(
            id=claim_id,
            ttl=ttl,
            grace=grace,
            updated=float(updated),
            expires=float(expires),
            messages=_messages(reply[1], "claim_get"),
        )

    async def renew(
        self, project: str, queue: str, claim_id: str, ttl: int, grace: int, now: float
    ) -> bool:
        keys = self._b.keys.queue(project, queue)
        ttl, grace = rules.bounded_claim(ttl, grace)
        return bool(await self._b.script("renew", keys, [now, claim_id, ttl, grace]))

    async def release(self, project: str, queue: str, claim_id: str, now: float) -> None:
        await self._b.script("release", self._b.keys.queue(project, queue), [claim_id])


async def deliver_dead_letters(
    backend: Backend,
    queues: RedisQueues,
    project: str,
    source: str,
    entries: Sequence[bytes],
    now: float,
) -> None:
    """Second step of a dead-letter move: append to the target queue, then ack.

    The target queue is in another slot, so the claim script can only stage the moved
    messages in the source queue's outbox. Appending is idempotent (by message id), so
    a move cut short is replayed safely by garbage collection.
    """
    by_target: dict[str, list[tuple[str, bytes]]] = {}
    for entry in entries:
        try:
            target, message_id = _decode_outbox(entry)[:2]
        except (msgspec.DecodeError, UnicodeDecodeError):
            # gc.lua quarantines what it cannot read; anything else is a bug: say so.
            log.exception("skipped an unreadable dead-letter move staged in %s/%s", project, source)
            continue
        by_target.setdefault(target, []).append((message_id, entry))
    for target, staged in by_target.items():
        await queues.create(project, target, {}, now)
        await backend.script("adopt", backend.keys.queue(project, target), [e for _, e in staged])
        await _ack_outbox(backend, project, source, [mid for mid, _ in staged])


async def _ack_outbox(backend: Backend, project: str, queue: str, ids: list[str]) -> None:
    outbox = backend.keys.queue(project, queue)[6]
    await backend.call(lambda: backend.client.hdel(outbox, *ids))


class _Calls:
    """How many more backend calls a garbage collection run may make."""

    def __init__(self, budget: int) -> None:
        self.left = budget

    def spend(self, calls: int = 1) -> None:
        self.left = max(0, self.left - calls)


class _SetWalk:
    """A walk over a Redis set in SSCAN chunks that goes on across runs.

    SSCAN returns every member present for the whole walk at least once, however the
    set changes meanwhile, and holds Redis for one chunk at a time.
    """

    def __init__(self, key: str) -> None:
        self._key = key
        self._cursor = 0
        self._pending: list[str] = []
        self._started = False

    async def next(self, backend: Backend, calls: _Calls) -> str | None:
        """The next member; None once round (the next call starts a new round)."""
        while not self._pending:
            if self._started and self._cursor == 0:
                self._started = False
                return None
            if not calls.left:
                return None
            after, chunk = await self._sscan(backend)
            calls.spend()
            self._started, self._cursor = True, int(after)
            self._pending = [_text(member) for member in chunk]
        return self._pending.pop()

    async def _sscan(self, backend: Backend) -> tuple[Any, list[Any]]:
        key, cursor = self._key, self._cursor
        result: tuple[Any, list[Any]] = await backend.call(
            lambda: backend.client.sscan(key, cursor, count=GC_CHUNK)
        )
        return result


async def forget_project(backend: Backend, project: str) -> None:
    """Drop a project whose catalog is empty from the set garbage collection walks.

    Re-added if its catalog is not empty afterwards: a queue created meanwhile is added
    to the catalog before its creator re-adds the project (RedisQueues.create), so one
    of the two always leaves the project in the set.
    """
    projects, names = backend.keys.projects, backend.keys.catalog(project)[0]
    await backend.call(lambda: backend.client.srem(projects, project))
    if await backend.call(lambda: backend.client.exists(names)):
        await backend.call(lambda: backend.client.sadd(projects, project))


async def forget_source(backend: Backend, slot: str) -> None:
    """Drop a source with no subscription and nothing owed from the set of sources
    (re-added if one appeared meanwhile, as in ``forget_project``)."""
    sources, keys = backend.keys.sources, backend.keys.source_of(slot)
    await backend.call(lambda: backend.client.srem(sources, slot))
    if await backend.call(lambda: backend.client.exists(keys[0], keys[6])):
        await backend.call(lambda: backend.client.sadd(sources, slot))


class RedisStorage:
    """Storage over a Redis server or cluster, all keys under ``<prefix>:``."""

    def __init__(self, backend: Backend) -> None:
        self._b = backend
        self.queues = RedisQueues(backend)
        self.messages = RedisMessages(backend, self.queues)
        self.claims = RedisClaims(backend, self.queues)
        self.subscriptions = RedisSubscriptions(backend)
        self.outbox = RedisOutbox(backend)
        self._catalog = RedisCatalog(backend)
        self._instance = new_id()
        self._marker_seen: bytes | None = None
        self._problems: list[str] = []
        self._watchdog: asyncio.Task[None] | None = None
        self._marker_lock = asyncio.Lock()  # the watchdog and status() may race
        # Garbage collection's place in its walk, kept from one run to the next.
        self._project_walk = _SetWalk(backend.keys.projects)
        self._source_walk = _SetWalk(backend.keys.sources)
        self._gc_project: str | None = None
        self._gc_after = "-"
        self._quarantine_seen: dict[str, int] = {}
        self._feed = RedisFeed(backend)

    @property
    def feed(self) -> RedisFeed:
        return self._feed

    @property
    def catalog(self) -> RedisCatalog:
        return self._catalog

    @classmethod
    def from_uri(cls, uri: str, settings: StorageSettings) -> RedisStorage:
        target = parse_uri(uri)
        client = make_client(target, settings)
        return cls(Backend(client, KeySpace(target.prefix), settings))

    async def open(self) -> None:
        try:
            await self._check_marker()
        except StorageError as exc:
            # Connections are made lazily and retried per call; serve 503s until it is up.
            log.warning("Redis is not reachable yet (%s); will keep trying", exc)
        self._watchdog = asyncio.create_task(self._watch(), name="tidings-redis-marker")
        await self._feed.start()

    async def close(self) -> None:
        await self._feed.stop()
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        with contextlib.suppress(Exception):
            await self._b.client.aclose()

    async def ping(self) -> bool:
        try:
            return bool(await self._b.call(self._b.client.ping))
        except StorageError:
            return False

    async def status(self) -> StoreStatus:
        reachable = await self.ping()
        if reachable:
            with contextlib.suppress(StorageError):
                await self._check_marker()
        return StoreStatus(reachable=reachable, problems=list(self._problems))

    async def message_volume(self, now: float) -> MessageVolume:
        return await message_volume(self._b, now)

    async def collect_garbage(self, now: float) -> int:
        """Visit queues, then sources, each for at most GC_CALLS_PER_RUN backend calls.

        The walk over the project and source sets resumes where the previous run
        stopped and ends a run at the latest when it has gone once round; every step is
        one short script or command, so Redis is never held long.
        """
        queue_calls = _Calls(GC_CALLS_PER_RUN)
        removed = await self._collect_queues(now, queue_calls)
        return removed + await self._collect_sources(now, _Calls(GC_CALLS_PER_RUN))

    async def _collect_queues(self, now: float, calls: _Calls) -> int:
        removed = 0
        while calls.left:
            if self._gc_project is None:
                project = await self._project_walk.next(self._b, calls)
                if project is None:  # once round: the rest is for the next run
                    return removed
                self._gc_project, self._gc_after = project, "-"
            project = self._gc_project
            names = await self._queue_names(project, self._gc_after)
            calls.spend()
            if not names:
                if self._gc_after == "-":  # the project has no queue left
                    await forget_project(self._b, project)
                    calls.spend(2)
                self._gc_project = None
                continue
            for name in names:
                if not calls.left:
                    return removed
                removed += await self._collect_queue(project, name, now, calls)
                self._gc_after = f"({name}"
        return removed

    async def _queue_names(self, project: str, low: str) -> list[str]:
        key = self._b.keys.catalog(project)[0]
        names = await self._b.call(
            lambda: self._b.client.zrangebylex(key, low, "+", start=0, num=GC_CHUNK)
        )
        return [_text(name) for name in names]

    async def _collect_queue(self, project: str, name: str, now: float, calls: _Calls) -> int:
        keys = self._b.keys.queue(project, name)
        removed = 0
        while calls.left:  # each round removes a chunk; the rest waits a run
            count, more, stale, quarantined = await self._b.script(
                "gc", keys, [now, GC_CHUNK, now - OUTBOX_STALE_AFTER]
            )
            calls.spend()
            removed += int(count)
            self._report_quarantine(project, name, int(quarantined))
            if stale:
                await deliver_dead_letters(self._b, self.queues, project, name, stale, now)
            if not int(more):
                break
        return removed

    def _report_quarantine(self, project: str, name: str, count: int) -> None:
        """Log once (per process) each time a queue's quarantine grows."""
        slot = slot_id(project, name)
        seen = self._quarantine_seen.pop(slot, 0)
        if count > seen:
            log.error(
                "%d unreadable record(s) of queue %r of project %r were moved aside to %s; "
                "the queue works on without them",
                count - seen,
                name,
                project,
                self._b.keys.queue(project, name)[-1],
            )
        if count:
            if len(self._quarantine_seen) >= QUARANTINE_SEEN_MAX:
                self._quarantine_seen.clear()
            self._quarantine_seen[slot] = count

    async def _collect_sources(self, now: float, calls: _Calls) -> int:
        removed = 0
        while calls.left:
            slot = await self._source_walk.next(self._b, calls)
            if slot is None:
                return removed
            removed += await self._collect_source(slot, now, calls)
        return removed

    async def _collect_source(self, slot: str, now: float, calls: _Calls) -> int:
        try:
            split_slot_id(slot)
        except ValueError:
            log.warning("dropped %r from the set of sources: not a source", slot)
            await self._b.call(lambda: self._b.client.srem(self._b.keys.sources, slot))
            return 0
        keys = self._b.keys.source_of(slot)
        removed, head, empty = 0, "", 0
        while calls.left:  # each round removes a chunk; the rest waits a run
            count, more, head, empty = await self._b.script("source_gc", keys, [now, GC_CHUNK])
            calls.spend()
            removed += int(count)
            if not int(more):
                break
        if _text(head):
            await index_due(self._b, slot, head)
        if int(empty):
            await forget_source(self._b, slot)
            calls.spend(2)
        return removed

    # --- lost-data detection ------------------------------------------------------
    # A marker key written once per Redis dataset: if it vanishes (or is replaced by
    # another instance after it vanished), Redis restarted without its data. In a
    # cluster the marker lives on the one node owning its slot, so only that node's
    # data loss is detected.

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(MARKER_INTERVAL)
            try:
                await self._check_marker()
            except StorageError as exc:
                log.debug("Redis marker check failed: %s", exc)
            except Exception:  # a bug must not end the watch: say so and go on
                log.exception("Redis marker check failed unexpectedly; will check again")

    async def _check_marker(self) -> None:
        """Compare the marker with the one seen last; re-create it when missing."""
        async with self._marker_lock:
            await self._check_marker_once()

    async def _check_marker_once(self) -> None:
        client, key = self._b.client, self._b.keys.marker
        value: Any = await self._b.call(lambda: client.get(key))
        if value is None:
            fresh = f"{self._instance} {time.time():.3f}".encode()
            await self._b.call(lambda: client.set(key, fresh, nx=True))
            value = await self._b.call(lambda: client.get(key))
            if value is None:
                raise StorageError("Redis did not keep the marker key just written")
        if self._marker_seen is not None and value != self._marker_seen:
            self._report_loss(self._marker_seen)
        self._marker_seen = value

    def _report_loss(self, seen: bytes) -> None:
        written = _marker_time(seen)
        problem = (
            f"Redis lost its data: marker written at {written} is gone; "
            "messages stored before may be lost"
        )
        log.error("%s", problem)
        self._problems.append(problem)


def _marker_time(value: bytes) -> str:
    try:
        stamp = float(value.split()[-1])
    except (ValueError, IndexError):
        return "an unknown time"
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds")
