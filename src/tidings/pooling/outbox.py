"""The outbox in pooled mode: every pool's deliveries, served in turn.

A delivery's id names its pool (``<pool>/<id in the pool>``; pool names are URL path
segments, so they hold no ``/``), and done, retry and fail go back to that pool.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

import msgspec

from tidings.errors import StorageError
from tidings.model import Delivery, DeliveryFailure, DeliveryKind
from tidings.storage.base import FAILURE_PRUNE_CHUNK, OutboxStore, Storage

log = logging.getLogger("tidings.pooling")

SEPARATOR = "/"

# The store of a pool by key (StorageError when it is unavailable or gone).
PoolStore = Callable[[str], Awaitable[Storage]]
# The open pools as (key, store), in a stable order.
OpenPools = Callable[[], Awaitable[list[tuple[str, Storage]]]]
# The store a (project, source) is routed to, None when it lives nowhere.
SourceStore = Callable[[str, str], Awaitable[Storage | None]]


def pooled_id(pool: str, delivery_id: str) -> str:
    return f"{pool}{SEPARATOR}{delivery_id}"


def split_id(pooled: str) -> tuple[str, str]:
    """(pool key, the id in the pool); ValueError for an id this outbox did not give."""
    pool, sep, delivery_id = pooled.partition(SEPARATOR)
    if not sep:
        raise ValueError(f"not a pooled delivery id: {pooled!r}")
    return pool, delivery_id


class PooledOutbox:
    def __init__(self, pool_store: PoolStore, open_pools: OpenPools, source: SourceStore) -> None:
        self._pool_store = pool_store
        self._open_pools = open_pools
        self._source = source
        self._turn = 0  # where the next take starts, so no pool always goes first

    async def _outbox_of(self, pooled: str) -> tuple[OutboxStore, str]:
        pool, delivery_id = split_id(pooled)
        return (await self._pool_store(pool)).outbox, delivery_id

    async def enqueue(
        self,
        project: str,
        source: str,
        subscription_id: str,
        kind: DeliveryKind,
        payload: bytes,
        now: float,
    ) -> None:
        store = await self._source(project, source)
        if store is None:  # no pool holds the source, so no subscription of it lives
            return
        await store.outbox.enqueue(project, source, subscription_id, kind, payload, now)

    async def take(
        self,
        now: float,
        lease: float,
        limit: int,
        *,
        per_project: int | None = None,
        in_flight: Mapping[str, int] | None = None,
    ) -> list[Delivery]:
        """Each pool's own take in turn, starting one pool further each call, with what
        is left of ``limit`` and the project counts including what earlier pools gave."""
        pools = await self._open_pools()
        if not pools:
            return []
        start = self._turn % len(pools)
        self._turn = start + 1
        counts = dict(in_flight or {})
        taken: list[Delivery] = []
        failed: list[str] = []
        for key, store in pools[start:] + pools[:start]:
            if len(taken) >= limit:
                break
            try:
                batch = await store.outbox.take(
                    now,
                    lease,
                    limit - len(taken),
                    per_project=per_project,
                    in_flight=counts if per_project is not None else in_flight,
                )
            except StorageError as exc:  # a pool that is down delays only its own
                failed.append(key)
                log.warning("cannot read the outbox of pool %s: %s", key or "(virtual)", exc)
                continue
            for delivery in batch:
                counts[delivery.project] = counts.get(delivery.project, 0) + 1
                taken.append(msgspec.structs.replace(delivery, id=pooled_id(key, delivery.id)))
        if not taken and failed and len(failed) == len(pools):
            raise StorageError("no pool's outbox could be read")
        return taken

    async def done(self, delivery_id: str) -> None:
        outbox, inner = await self._outbox_of(delivery_id)
        await outbox.done(inner)

    async def done_many(self, delivery_ids: Sequence[str]) -> None:
        by_pool: dict[str, list[str]] = {}
        for pooled in delivery_ids:
            pool, inner = split_id(pooled)
            by_pool.setdefault(pool, []).append(inner)
        for pool, ids in by_pool.items():
            await (await self._pool_store(pool)).outbox.done_many(ids)

    async def retry(self, delivery_id: str, attempts: int, due: float) -> None:
        outbox, inner = await self._outbox_of(delivery_id)
        await outbox.retry(inner, attempts, due)

    async def fail(self, delivery: Delivery, attempts: int, error: str, now: float) -> None:
        outbox, inner = await self._outbox_of(delivery.id)
        await outbox.fail(msgspec.structs.replace(delivery, id=inner), attempts, error, now)

    async def prune_failures(self, before: float) -> int:
        """A bounded chunk from every pool. The count says a whole chunk went only when
        some pool removed a whole chunk (the caller repeats on that)."""
        total, full = 0, False
        for key, store in await self._open_pools():
            try:
                went = await store.outbox.prune_failures(before)
            except StorageError as exc:
                log.warning("cannot prune failures in pool %s: %s", key or "(virtual)", exc)
                continue
            total += went
            full = full or went >= FAILURE_PRUNE_CHUNK
        return total if full else min(total, FAILURE_PRUNE_CHUNK - 1)

    async def failures(
        self, project: str, source: str, subscription_id: str, limit: int
    ) -> list[DeliveryFailure]:
        store = await self._source(project, source)
        if store is None:
            return []
        return await store.outbox.failures(project, source, subscription_id, limit)
