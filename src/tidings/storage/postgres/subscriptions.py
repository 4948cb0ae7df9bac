"""Subscriptions and the notification outbox on PostgreSQL."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from tidings.errors import SubscriberTaken
from tidings.ids import is_canonical
from tidings.model import Delivery, DeliveryFailure, DeliveryKind, Subscription
from tidings.storage import rules
from tidings.storage.base import (
    FAILURE_PRUNE_CHUNK,
    FAILURES_KEPT,
    TAKE_DROPS,
    TAKE_EXTRA_PROJECTS,
)
from tidings.storage.postgres.database import (
    SINGLE,
    WRITE,
    Connection,
    Database,
    Row,
    Work,
)
from tidings.storage.rows import delivery_from_row, subscription_from_row
from tidings.storage.sql import load_queries

S = load_queries(__package__ or "tidings.storage.postgres", "subscriptions.sql")


_json_encode = msgspec.json.encode
_json_decode = msgspec.json.decode


async def outbox_lower(connection: Connection, project: str, due: float) -> None:
    """Make the outbox show ``project`` due no later than ``due`` (in the caller's
    transaction, whose commit a taker of that project then waits for)."""
    await connection.execute(S["outbox_share"], project)
    await connection.execute(S["outbox_lower"], project, due)


async def _live_subscriber(
    connection: Connection, project: str, source: str, subscriber: str, now: float
) -> Row | None:
    await connection.execute(S["source_lock"], project, source)
    return await connection.fetchrow(
        S["subscription_by_subscriber"], project, source, subscriber, now
    )


class PostgresSubscriptions:
    def __init__(self, db: Database) -> None:
        self._db = db

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

        async def work(connection: Connection) -> tuple[Subscription, bool]:
            row = await _live_subscriber(connection, project, source, subscriber, now)
            if row is not None:
                return subscription_from_row(row), False
            await connection.execute(
                S["subscription_insert"],
                fresh.id,
                project,
                source,
                subscriber,
                ttl,
                _json_encode(options).decode(),
                now,
                fresh.expires,
            )
            return fresh, True

        return await self._db.run(work, WRITE)

    async def get(
        self, project: str, source: str, subscription_id: str, now: float
    ) -> Subscription | None:
        if not is_canonical(subscription_id):
            return None

        async def work(connection: Connection) -> Subscription | None:
            row = await connection.fetchrow(
                S["subscription_by_id"], subscription_id, project, source, now
            )
            return None if row is None else subscription_from_row(row)

        return await self._db.run(work, SINGLE)

    async def page(
        self, project: str, source: str, *, marker: str | None, limit: int, now: float
    ) -> list[Subscription]:
        async def work(connection: Connection) -> list[Subscription]:
            rows = await connection.fetch(
                S["subscription_page"], project, source, marker or "", now, limit
            )
            return [subscription_from_row(r) for r in rows]

        return await self._db.run(work, SINGLE)

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
        if not is_canonical(subscription_id):
            return None

        async def work(connection: Connection) -> Subscription | None:
            await connection.execute(S["source_lock"], project, source)
            row = await connection.fetchrow(
                S["subscription_by_id"], subscription_id, project, source, now
            )
            if row is None:
                return None
            current = subscription_from_row(row)
            if subscriber is not None and subscriber != current.subscriber:
                taken = await connection.fetchrow(
                    S["subscription_by_subscriber"], project, source, subscriber, now
                )
                if taken is not None:
                    raise SubscriberTaken()
            changed = rules.changed_subscription(
                current, now, subscriber=subscriber, ttl=ttl, options=options
            )
            await connection.execute(
                S["subscription_update"],
                changed.id,
                changed.subscriber,
                changed.ttl,
                _json_encode(changed.options).decode(),
                changed.updated,
                changed.expires,
            )
            return changed

        return await self._db.run(work, WRITE)

    async def confirm(
        self, project: str, source: str, subscription_id: str, confirmed: bool, now: float
    ) -> Subscription | None:
        if not is_canonical(subscription_id):
            return None

        async def work(connection: Connection) -> Subscription | None:
            row = await connection.fetchrow(
                S["subscription_confirm"], subscription_id, project, source, now, confirmed
            )
            return None if row is None else subscription_from_row(row)

        return await self._db.run(work, WRITE)

    async def delete(self, project: str, source: str, subscription_id: str) -> None:
        if not is_canonical(subscription_id):
            return

        async def work(connection: Connection) -> None:
            await connection.execute(S["subscription_delete"], subscription_id, project, source)

        await self._db.run(work, WRITE)

    async def purge(self, project: str, source: str) -> None:
        async def work(connection: Connection) -> None:
            await connection.execute(S["source_purge_bodies"], project, source)
            await connection.execute(S["source_purge_deliveries"], project, source)
            await connection.execute(S["source_purge_failures"], project, source)
            await connection.execute(S["source_purge"], project, source)

        await self._db.run(work, WRITE)


class PostgresOutbox:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def enqueue(
        self,
        project: str,
        source: str,
        subscription_id: str,
        kind: DeliveryKind,
        payload: bytes,
        now: float,
    ) -> None:
        async def work(connection: Connection) -> None:
            await connection.execute(
                S["delivery_insert"], project, source, subscription_id, kind.value, payload, now
            )
            await outbox_lower(connection, project, now)

        await self._db.run(work, WRITE)

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

        async def due_projects(connection: Connection) -> list[str]:
            rows = await connection.fetch(
                S["outbox_due_projects"], now, skip, limit + TAKE_EXTRA_PROJECTS
            )
            return [row[0] for row in rows]

        def from_project(project: str, quota: int) -> Work[list[Delivery]]:
            return lambda connection: _take_project(connection, project, now, lease, quota)

        taken: list[Delivery] = []
        # One short transaction per project: a taker holds one project row at a time.
        for project in await self._db.run(due_projects, SINGLE):
            quota = shares.quota(project, len(taken))
            if quota <= 0:
                break
            taken += await self._db.run(from_project(project, quota), WRITE)
        return taken

    async def done(self, delivery_id: str) -> None:
        async def work(connection: Connection) -> None:
            await connection.execute(S["delivery_drop"], [int(delivery_id)])

        await self._db.run(work, WRITE)

    async def done_many(self, delivery_ids: Sequence[str]) -> None:
        ids = [int(delivery_id) for delivery_id in delivery_ids]
        if not ids:
            return

        async def work(connection: Connection) -> None:
            await connection.execute(S["delivery_drop"], ids)

        await self._db.run(work, WRITE)

    async def retry(self, delivery_id: str, attempts: int, due: float) -> None:
        async def work(connection: Connection) -> None:
            project = await connection.fetchval(
                S["delivery_retry"], int(delivery_id), attempts, due
            )
            if project is not None:
                await outbox_lower(connection, project, due)

        await self._db.run(work, WRITE)

    async def fail(self, delivery: Delivery, attempts: int, error: str, now: float) -> None:
        owner = (delivery.project, delivery.source, delivery.subscription_id)

        async def work(connection: Connection) -> None:
            await connection.execute(S["delivery_drop"], [int(delivery.id)])
            await connection.execute(
                S["failure_insert"],
                *owner,
                delivery.kind.value,
                delivery.message_id,
                attempts,
                error,
                now,
            )
            await connection.execute(S["failure_trim"], *owner, FAILURES_KEPT)

        await self._db.run(work, WRITE)

    async def prune_failures(self, before: float) -> int:
        async def work(connection: Connection) -> int:
            return int(await connection.fetchval(S["failure_prune"], before, FAILURE_PRUNE_CHUNK))

        return await self._db.run(work, WRITE)

    async def failures(
        self, project: str, source: str, subscription_id: str, limit: int
    ) -> list[DeliveryFailure]:
        if not is_canonical(subscription_id):
            return []

        async def work(connection: Connection) -> list[DeliveryFailure]:
            rows = await connection.fetch(
                S["failure_page"], project, source, subscription_id, limit
            )
            return [
                DeliveryFailure(
                    subscription_id=sid,
                    kind=DeliveryKind(kind),
                    message_id=message_id,
                    attempts=attempts,
                    error=error,
                    failed=failed,
                )
                for sid, kind, message_id, attempts, error, failed in rows
            ]

        return await self._db.run(work, SINGLE)


async def _take_project(
    connection: Connection, project: str, now: float, lease: float, quota: int
) -> list[Delivery]:
    """Lease up to ``quota`` due deliveries of one project and re-score it."""
    taken: list[Delivery] = []
    dropped = 0
    # Rows of gone subscriptions are dropped as they come, up to TAKE_DROPS per take.
    while len(taken) < quota and dropped < TAKE_DROPS:
        want = quota - len(taken)
        rows = await connection.fetch(S["delivery_lease_due"], project, now, want, now + lease)
        found = [delivery_from_row(r) for r in rows]
        gone = [int(d.id) for d, live in found if not live]
        taken += [d for d, live in found if live]
        if gone:  # the subscription expired or was deleted
            await connection.execute(S["delivery_drop"], gone)
            dropped += len(gone)
        if not gone or len(rows) < want:
            break  # quota reached, or nothing more is due
    # Raising the score is safe only while no writer of this project is in flight:
    # one that is holds the lock shared, and may owe something this take cannot see.
    if await connection.fetchval(S["outbox_try_exclusive"], project):
        await connection.execute(S["outbox_rescore"], project)
    return taken
