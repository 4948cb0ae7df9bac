"""Subscriptions and the notification outbox over Redis.

The subscriptions of (project, source) and the deliveries owed to them live in the
slot of the queue of that name (``keys.SOURCE_KINDS``, ``lua/source_lib.lua``), so the
post script owes notifications in the same atomic step that stores the messages.

Takers find due work through a global index of two levels under one hash tag
(``lua/outbox_lower.lua``, ``lua/outbox_rescore.lua``): ``projects`` scores each project
by (at most) the earliest due time it owes, and one sorted set per project scores its
source slot ids the same way. A take visits projects earliest first, skipping those at
their share of slots without reading anything of theirs, then that project's sources.
The index lives in another slot than the sources, so it is updated after each script,
not with it:

* whatever makes a delivery due sooner (post, enqueue, retry) lowers both scores after
  its script (``ZADD LT``) and bumps the source's ``notify-seq`` within it;
* ``take`` sets the source's score to what its script saw as the earliest due time left
  (or drops it) and the project's to its earliest source, then reads ``notify-seq``
  again: if it moved, something became due since, and the scores are lowered to match;
* garbage collection re-indexes every outbox it finds non-empty, so a crash between a
  script and its index update only delays a delivery, never loses it.

A stale score is always too low, never too high: it costs a visit, not a delivery.
A delivery id is ``<slot id>|<number>``, so done, retry and fail go straight to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

import msgspec

from tidings.errors import StorageError, SubscriberTaken
from tidings.model import Delivery, DeliveryFailure, DeliveryKind, Subscription
from tidings.storage import rules
from tidings.storage.base import FAILURES_KEPT, TAKE_EXTRA_PROJECTS
from tidings.storage.redis.connection import Backend
from tidings.storage.redis.keys import slot_id, split_slot_id

# Subscriptions a page script examines at most per call (expired ones are skipped).
PAGE_SCAN = 1000
# Deliveries a take script examines at most per call, beyond the limit.
TAKE_SCAN = 1000
TAKE_EXTRA_SLOTS = 10
# An update re-reads and retries this often when the subscription keeps changing.
UPDATE_ATTEMPTS = 10

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


def _index_keys(backend: Backend, project: str) -> list[str]:
    """The outbox index: every project's score, and this project's sources' scores."""
    return [backend.keys.outbox_projects, backend.keys.outbox_sources(project)]


async def index_due(backend: Backend, slot: str, due: Any) -> None:
    """Make the index show ``slot`` (and its project) due no later than ``due``."""
    try:
        project, _ = split_slot_id(slot)
    except ValueError:  # not ours; never written by this driver
        return
    score = repr(float(_text(due)))
    await backend.script("outbox_lower", _index_keys(backend, project), [project, slot, score])


async def _index_rescore(backend: Backend, project: str, slot: str, head: str) -> None:
    keys = _index_keys(backend, project)
    await backend.script("outbox_rescore", keys, [project, slot, head])


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
            # Again after: garbage collection may have dropped an empty source meanwhile
            # (driver.forget_source).
            await self._b.call(lambda: self._b.client.sadd(sources, slot))
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
        skip = set(shares.saturated())
        index = self._b.keys.outbox_projects
        count = len(skip) + limit + TAKE_EXTRA_PROJECTS
        due = await self._b.call(
            lambda: self._b.client.zrangebyscore(index, "-inf", now, start=0, num=count)
        )
        taken: list[Delivery] = []
        for project in map(_text, due):
            if project in skip:
                continue
            quota = shares.quota(project, len(taken))
            if quota <= 0:
                break
            taken += await self._take_project(project, now, lease, quota)
        return taken

    async def _take_project(
        self, project: str, now: float, lease: float, quota: int
    ) -> list[Delivery]:
        key = self._b.keys.outbox_sources(project)
        count = quota + TAKE_EXTRA_SLOTS
        due = await self._b.call(
            lambda: self._b.client.zrangebyscore(key, "-inf", now, start=0, num=count)
        )
        if not due:  # the project's score was stale
            await _index_rescore(self._b, project, "", "")
            return []
        taken: list[Delivery] = []
        for slot in map(_text, due):
            taken += await self._take_slot(project, slot, now, lease, quota - len(taken))
            if len(taken) >= quota:
                break
        return taken

    async def _take_slot(
        self, project: str, slot: str, now: float, lease: float, limit: int
    ) -> list[Delivery]:
        try:
            owner, source = split_slot_id(slot)
        except ValueError:
            owner, source = "", ""
        if owner != project:  # not ours; never written by this driver
            await _index_rescore(self._b, project, slot, "")
            return []
        keys = self._b.keys.source_of(slot)
        entries, head, seq = await self._b.script(
            "notify_take", keys, [now, lease, limit, limit + TAKE_SCAN]
        )
        await self._reindex(project, slot, keys, _text(head), _text(seq))
        return [_delivery(slot, project, source, entry) for entry in entries]

    async def _reindex(self, project: str, slot: str, keys: list[str], head: str, seq: str) -> None:
        """Score ``slot`` by the earliest due time its take saw, then catch up with
        anything that became due sooner since that take."""
        await _index_rescore(self._b, project, slot, head)
        now_seq, now_head = await self._b.script("notify_head", keys, [])
        if _text(now_seq) != seq and _text(now_head):
            await index_due(self._b, slot, now_head)

    async def done(self, delivery_id: str) -> None:
        where = _split_delivery_id(delivery_id)
        if where is not None:
            slot, number = where
            await self._b.script("notify_done", self._b.keys.source_of(slot), [number])

    async def done_many(self, delivery_ids: Sequence[str]) -> None:
        by_slot: dict[str, list[str]] = {}
        for delivery_id in delivery_ids:
            where = _split_delivery_id(delivery_id)
            if where is not None:
                by_slot.setdefault(where[0], []).append(where[1])
        # One script per source slot (a cluster runs each on the slot's node).
        await asyncio.gather(
            *(
                self._b.script("notify_done", self._b.keys.source_of(slot), numbers)
                for slot, numbers in by_slot.items()
            )
        )

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

    async def prune_failures(self, before: float) -> int:
        # Redis keeps the newest FAILURES_KEPT per subscription (notify_fail.lua) and
        # drops a subscription's failures with it; age plays no part.
        return 0

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
