"""Subscriptions and the notification outbox over Redis.

The subscriptions of (project, source) and the deliveries owed to them live in the
slot of the queue of that name (``keys.SOURCE_KINDS``, ``lua/source_lib.lua``), so the
post script owes notifications in the same atomic step that stores the messages.

Takers find due work through one global index, ``<prefix>:outbox-due``: a sorted set
of source slot ids scored by (at most) the earliest due time each owes. It lives in
another slot, so it is updated after each script, not with it:

* whatever makes a delivery due sooner (post, enqueue, retry) lowers the score after
  its script (``ZADD LT``) and bumps the source's ``notify-seq`` within it;
* ``take`` sets the score to what its script saw as the earliest due time left (or
  drops the entry), then reads ``notify-seq`` again: if it moved, something became due
  since, and the score is lowered to match;
* garbage collection re-indexes every outbox it finds non-empty, so a crash between a
  script and its index update only delays a delivery, never loses it.

A stale score is always too low, never too high: it costs a visit, not a delivery.
A delivery id is ``<slot id>|<number>``, so done, retry and fail go straight to it.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import msgspec

from tidings.errors import StorageError, SubscriberTaken
from tidings.model import Delivery, DeliveryFailure, DeliveryKind, Subscription
from tidings.storage import rules
from tidings.storage.redis.connection import Backend
from tidings.storage.redis.keys import slot_id, split_slot_id

# Subscriptions a page script examines at most per call (expired ones are skipped).
PAGE_SCAN = 1000
# Deliveries a take script examines at most per call, beyond the limit.
TAKE_SCAN = 1000
# Source outboxes one take visits at most, beyond the limit.
TAKE_SLOTS = 100
# Failures kept per subscription, newest first.
FAILURES_KEPT = 1000
# An update re-reads and retries this often when the subscription keeps changing.
UPDATE_ATTEMPTS = 10
GC_CHUNK = 500
GC_MAX_ROUNDS = 1000

# {id, subscriber, ttl, options (JSON), confirmed, updated, expires}
_SubRecord = tuple[str, str, int, str, bool, float, float]
# {kind, message id ('' for none), attempts, error, failed}
_FailureRecord = tuple[str, str, int, str, float]
_decode_sub = msgspec.msgpack.Decoder(_SubRecord).decode
_decode_failure = msgspec.msgpack.Decoder(_FailureRecord).decode
_encode = msgspec.msgpack.encode
_json_encode = msgspec.json.encode
_json_decode = msgspec.json.decode
# What follows '<subscription id>|' in a failure member before its record: 15 digits, '|'.
_FAILURE_ORDER = 16


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _record(subscription: Subscription) -> bytes:
    s = subscription
    options = _json_encode(s.options).decode()
    return _encode((s.id, s.subscriber, s.ttl, options, s.confirmed, s.updated, s.expires))


def _subscription(source: str, raw: bytes) -> Subscription:
    try:
        sid, subscriber, ttl, options, confirmed, updated, expires = _decode_sub(raw)
        decoded = dict(_json_decode(options))
    except msgspec.DecodeError as exc:
        raise StorageError(f"unreadable subscription record in Redis: {exc}") from exc
    return Subscription(
        id=sid,
        source=source,
        subscriber=subscriber,
        ttl=ttl,
        options=decoded,
        confirmed=confirmed,
        updated=float(updated),
        expires=float(expires),
    )


def _delivery_id(slot: str, number: Any) -> str:
    return f"{slot}|{_text(number)}"


def _split_delivery_id(delivery_id: str) -> tuple[str, str] | None:
    """(slot id, number), or None for an id this driver never handed out."""
    slot, sep, number = delivery_id.rpartition("|")
    if not sep or not number.isdigit():
        return None
    try:
        split_slot_id(slot)
    except ValueError:
        return None
    return slot, number


async def index_due(backend: Backend, slot: str, due: Any) -> None:
    """Make the global index show ``slot`` due no later than ``due``."""
    key, score = backend.keys.outbox_due, float(_text(due))
    await backend.call(lambda: backend.client.zadd(key, {slot: score}, lt=True))


class RedisSubscriptions:
    def __init__(self, backend: Backend) -> None:
        self._b = backend

    def _script(self, name: str, project: str, source: str, args: list[Any]) -> Awaitable[Any]:
        return self._b.script(name, self._b.keys.source(project, source), args)

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
        # Indexed before it exists, so garbage collection can never miss it.
        sources, slot = self._b.keys.sources, slot_id(project, source)
        await self._b.call(lambda: self._b.client.sadd(sources, slot))
        args = [now, fresh.id, subscriber, fresh.expires, _record(fresh)]
        created, raw = await self._script("sub_create", project, source, args)
        if int(created):
            return fresh, True
        return _subscription(source, raw), False

    async def get(
        self, project: str, source: str, subscription_id: str, now: float
    ) -> Subscription | None:
        found = await self._read(project, source, subscription_id, now)
        return None if found is None else found[0]

    async def _read(
        self, project: str, source: str, subscription_id: str, now: float
    ) -> tuple[Subscription, bytes] | None:
        key = self._b.keys.source(project, source)[0]
        found = await self._b.call(lambda: self._b.client.hget(key, subscription_id))
        if found is None:
            return None
        raw = _bytes(found)
        subscription = _subscription(source, raw)
        return (subscription, raw) if subscription.expires > now else None

    async def page(
        self, project: str, source: str, *, marker: str | None, limit: int, now: float
    ) -> list[Subscription]:
        found: list[Subscription] = []
        cursor = marker or ""
        while len(found) < limit:
            reply = await self._script(
                "sub_page", project, source, [now, cursor, limit - len(found), PAGE_SCAN]
            )
            found += [_subscription(source, raw) for raw in reply[1:]]
            cursor = _text(reply[0])
            if not cursor:
                break
        return found

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
        # Read, apply the shared rule, and write only if nothing changed in between.
        for _ in range(UPDATE_ATTEMPTS):
            found = await self._read(project, source, subscription_id, now)
            if found is None:
                return None
            current, raw = found
            changed = rules.changed_subscription(
                current, now, subscriber=subscriber, ttl=ttl, options=options
            )
            args = [now, subscription_id, raw, _record(changed)]
            outcome = int(await self._script("sub_update", project, source, args))
            if outcome == 1:
                return changed
            if outcome == 0:
                return None
            if outcome == -2:
                raise SubscriberTaken()
        raise StorageError(
            f"subscription {subscription_id} changed under {UPDATE_ATTEMPTS} updates in a row"
        )

    async def confirm(
        self, project: str, source: str, subscription_id: str, confirmed: bool, now: float
    ) -> Subscription | None:
        args = [now, subscription_id, "1" if confirmed else "0"]
        raw = await self._script("sub_confirm", project, source, args)
        return None if raw is None else _subscription(source, raw)

    async def delete(self, project: str, source: str, subscription_id: str) -> None:
        # What is still owed to it is dropped when taken.
        await self._script("sub_delete", project, source, [subscription_id])

    async def purge(self, project: str, source: str) -> None:
        await self._script("sub_purge", project, source, [])


class RedisOutbox:
    def __init__(self, backend: Backend) -> None:
        self._b = backend

    async def enqueue(
        self,
        project: str,
        source: str,
        subscription_id: str,
        kind: DeliveryKind,
        payload: bytes,
        now: float,
    ) -> None:
        slot = slot_id(project, source)
        args = [now, subscription_id, kind.value, payload]
        await self._b.script("notify_enqueue", self._b.keys.source_of(slot), args)
        await index_due(self._b, slot, now)

    async def take(self, now: float, lease: float, limit: int) -> list[Delivery]:
        taken: list[Delivery] = []
        visited: set[str] = set()
        # Slots are visited earliest due first; each visit re-scores its slot, so a
        # slot still due afterwards had more than the limit (or the scan cap) owed.
        while len(taken) < limit and len(visited) < limit + TAKE_SLOTS:
            due = await self._due_slots(now, limit - len(taken) + len(visited))
            slots = [s for s in map(_text, due) if s not in visited]
            if not slots:
                break
            for slot in slots:
                visited.add(slot)
                taken += await self._take_slot(slot, now, lease, limit - len(taken))
                if len(taken) >= limit:
                    break
        return taken

    async def _due_slots(self, now: float, count: int) -> list[Any]:
        key = self._b.keys.outbox_due
        return await self._b.call(
            lambda: self._b.client.zrangebyscore(key, "-inf", now, start=0, num=count)
        )

    async def _take_slot(self, slot: str, now: float, lease: float, limit: int) -> list[Delivery]:
        try:
            project, source = split_slot_id(slot)
        except ValueError:  # not ours; never written by this driver
            await self._b.call(lambda: self._b.client.zrem(self._b.keys.outbox_due, slot))
            return []
        keys = self._b.keys.source_of(slot)
        entries, head, seq = await self._b.script(
            "notify_take", keys, [now, lease, limit, limit + TAKE_SCAN]
        )
        await self._reindex(slot, keys, _text(head), _text(seq))
        return [_delivery(slot, project, source, entry) for entry in entries]

    async def _reindex(self, slot: str, keys: list[str], head: str, seq: str) -> None:
        """Score ``slot`` by the earliest due time its take saw, then catch up with
        anything that became due sooner since that take."""
        client, index = self._b.client, self._b.keys.outbox_due
        if head:
            await self._b.call(lambda: client.zadd(index, {slot: float(head)}))
        else:
            await self._b.call(lambda: client.zrem(index, slot))
        now_seq, now_head = await self._b.script("notify_head", keys, [])
        if _text(now_seq) != seq and _text(now_head):
            await index_due(self._b, slot, now_head)

    async def done(self, delivery_id: str) -> None:
        where = _split_delivery_id(delivery_id)
        if where is not None:
            slot, number = where
            await self._b.script("notify_done", self._b.keys.source_of(slot), [number])

    async def retry(self, delivery_id: str, attempts: int, due: float) -> None:
        where = _split_delivery_id(delivery_id)
        if where is None:
            return
        slot, number = where
        keys = self._b.keys.source_of(slot)
        if int(await self._b.script("notify_retry", keys, [number, attempts, due])):
            await index_due(self._b, slot, due)

    async def fail(self, delivery: Delivery, attempts: int, error: str, now: float) -> None:
        where = _split_delivery_id(delivery.id)
        if where is None:
            return
        slot, number = where
        failure = _encode((delivery.kind.value, delivery.message_id or "", attempts, error, now))
        args = [number, delivery.subscription_id, failure, FAILURES_KEPT]
        await self._b.script("notify_fail", self._b.keys.source_of(slot), args)

    async def failures(
        self, project: str, source: str, subscription_id: str, limit: int
    ) -> list[DeliveryFailure]:
        key = self._b.keys.source(project, source)[7]
        prefix = f"{subscription_id}|".encode()
        members = await self._b.call(
            lambda: self._b.client.zrangebylex(
                key, b"[" + prefix, b"[" + prefix + b"\xff", start=0, num=limit
            )
        )
        found = []
        for member in members:
            try:
                kind, message_id, attempts, error, failed = _decode_failure(
                    _bytes(member)[len(prefix) + _FAILURE_ORDER :]
                )
            except msgspec.DecodeError as exc:
                raise StorageError(f"unreadable delivery failure in Redis: {exc}") from exc
            found.append(
                DeliveryFailure(
                    subscription_id=subscription_id,
                    kind=DeliveryKind(kind),
                    message_id=message_id or None,
                    attempts=attempts,
                    error=error,
                    failed=float(failed),
                )
            )
        return found


def _delivery(slot: str, project: str, source: str, entry: list[Any]) -> Delivery:
    number, sid, kind, message_id, payload, ttl, delay, attempts, subscriber, options = entry
    return Delivery(
        id=_delivery_id(slot, number),
        project=project,
        source=source,
        subscription_id=_text(sid),
        kind=DeliveryKind(_text(kind)),
        message_id=_text(message_id) or None,
        payload=bytes(payload),
        ttl=int(ttl),
        delay=int(delay),
        attempts=int(attempts),
        subscriber=_text(subscriber),
        options=dict(_json_decode(options)),
    )


async def collect_sources(backend: Backend, now: float) -> int:
    """Remove expired subscriptions of every source; re-index every non-empty outbox."""
    removed = 0
    cursor = 0
    while True:  # SSCAN chunks, so Redis is never held long
        cursor, chunk = await _sscan(backend, backend.keys.sources, cursor)
        for slot in chunk:
            removed += await _collect_source(backend, slot, now)
        if cursor == 0:
            return removed


async def _sscan(backend: Backend, key: str, cursor: int) -> tuple[int, list[str]]:
    after, chunk = await backend.call(lambda: backend.client.sscan(key, cursor, count=GC_CHUNK))
    return int(after), [_text(member) for member in chunk]


async def _collect_source(backend: Backend, slot: str, now: float) -> int:
    try:
        split_slot_id(slot)
    except ValueError:
        return 0
    keys = backend.keys.source_of(slot)
    removed, head = 0, ""
    for _ in range(GC_MAX_ROUNDS):  # each round removes a chunk; the rest waits a run
        count, more, head = await backend.script("source_gc", keys, [now, GC_CHUNK])
        removed += int(count)
        if not int(more):
            break
    if _text(head):
        await index_due(backend, slot, head)
    return removed
