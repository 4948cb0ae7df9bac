"""The pooled-mode catalog on PostgreSQL (``tidings.storage.catalog``; migration 0009).

Writes to pools take the schema's catalog lock, so a URI check or a pool count and the
write it guards are one step. Placing a queue share-locks its pool's row; deleting a
pool, or moving it to another URI, locks that row for update before counting the pool's
placements: a queue is never placed on a pool that is going away or against a URI that
is being replaced, and no placement is missed by the count.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from tidings.model import FlavorRecord, PoolRecord
from tidings.storage.catalog import MAX_POOLS, PoolInUse, PoolUriTaken, TooManyPools
from tidings.storage.postgres.database import SINGLE, WRITE, Connection, Database, Row
from tidings.storage.sql import load_queries

C = load_queries(__package__ or "tidings.storage.postgres", "catalog.sql")

# A placement found taken, then gone when read (deleted meanwhile): place again.
PLACE_ATTEMPTS = 3

_json_encode = msgspec.json.encode
_json_decode = msgspec.json.decode


def _page_limit(limit: int) -> int:
    return max(0, min(limit, MAX_POOLS))


def _pool(row: Row) -> PoolRecord:
    name, uri, weight, flavor, options = row
    return PoolRecord(
        name=name,
        uri=uri,
        weight=int(weight),
        flavor=flavor,
        options=dict(_json_decode(options)),
    )


class PostgresCatalog:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- pools ----------------------------------------------------------------------------

    async def pool_put(self, pool: PoolRecord) -> bool:
        options = _json_encode(pool.options).decode()

        async def work(connection: Connection) -> bool:
            await connection.execute(C["pools_lock"])
            owner = await connection.fetchval(C["pool_uri_owner"], pool.uri, pool.name)
            if owner is not None:
                raise PoolUriTaken(pool.uri, owner)
            # The URI stays as read until this transaction ends: every write to pools
            # holds the catalog lock.
            old_uri = await connection.fetchval(C["pool_uri"], pool.name)
            created = old_uri is None
            if created and await connection.fetchval(C["pool_count"]) >= MAX_POOLS:
                raise TooManyPools(f"the catalog holds {MAX_POOLS} pools already")
            if not created and old_uri != pool.uri:
                # As for a delete: wait for placements being made on the pool, keep new
                # ones out until the new URI is committed, then count.
                await connection.fetchval(C["pool_lock_row"], pool.name)
                queues = int(await connection.fetchval(C["placement_count"], pool.name))
                if queues:
                    raise PoolInUse(pool.name, queues)
            await connection.execute(
                C["pool_upsert"], pool.name, pool.uri, pool.weight, pool.flavor, options
            )
            return created

        return await self._db.run(work, WRITE)

    async def pool_get(self, name: str) -> PoolRecord | None:
        async def work(connection: Connection) -> PoolRecord | None:
            row = await connection.fetchrow(C["pool_get"], name)
            return None if row is None else _pool(row)

        return await self._db.run(work, SINGLE)

    async def pool_page(self, marker: str | None, limit: int) -> list[PoolRecord]:
        async def work(connection: Connection) -> list[PoolRecord]:
            rows = await connection.fetch(C["pool_page"], marker or "", _page_limit(limit))
            return [_pool(row) for row in rows]

        return await self._db.run(work, SINGLE)

    async def pools(self) -> list[PoolRecord]:
        return await self.pool_page(None, MAX_POOLS)

    async def pool_delete(self, name: str) -> None:
        async def work(connection: Connection) -> None:
            await connection.execute(C["pools_lock"])
            if await connection.fetchval(C["pool_lock_row"], name) is None:
                return
            queues = int(await connection.fetchval(C["placement_count"], name))
            if queues:
                raise PoolInUse(name, queues)
            await connection.execute(C["pool_delete"], name)

        await self._db.run(work, WRITE)

    async def pools_set_flavor(self, names: Sequence[str], flavor: str | None) -> None:
        if not names:
            return

        async def work(connection: Connection) -> None:
            await connection.execute(C["pools_lock"])
            await connection.execute(C["pools_set_flavor"], list(names), flavor)

        await self._db.run(work, WRITE)

    # -- flavors --------------------------------------------------------------------------

    async def flavor_put(self, flavor: FlavorRecord) -> bool:
        async def work(connection: Connection) -> bool:
            status = await connection.execute(C["flavor_insert"], flavor.project, flavor.name)
            return bool(status == "INSERT 0 1")

        return await self._db.run(work, SINGLE)

    async def flavor_get(self, project: str, name: str) -> FlavorRecord | None:
        async def work(connection: Connection) -> FlavorRecord | None:
            found = await connection.fetchval(C["flavor_get"], project, name)
            return None if found is None else FlavorRecord(project=project, name=found)

        return await self._db.run(work, SINGLE)

    async def flavor_page(self, project: str, marker: str | None, limit: int) -> list[FlavorRecord]:
        async def work(connection: Connection) -> list[FlavorRecord]:
            rows = await connection.fetch(
                C["flavor_page"], project, marker or "", _page_limit(limit)
            )
            return [FlavorRecord(project=project, name=row[0]) for row in rows]

        return await self._db.run(work, SINGLE)

    async def flavor_delete(self, project: str, name: str) -> None:
        async def work(connection: Connection) -> None:
            await connection.execute(C["flavor_delete"], project, name)

        await self._db.run(work, SINGLE)

    # -- placements -----------------------------------------------------------------------

    async def placement_get(self, project: str, queue: str) -> str | None:
        async def work(connection: Connection) -> str | None:
            found = await connection.fetchval(C["placement_get"], project, queue)
            return None if found is None else str(found)

        return await self._db.run(work, SINGLE)

    async def placement_put(self, project: str, queue: str, pool: str) -> str:
        async def work(connection: Connection) -> str:
            for _ in range(PLACE_ATTEMPTS):
                # Each statement sees what committed before it began (READ COMMITTED):
                # the insert waits for a concurrent placement of the queue to commit,
                # and the read that follows sees it.
                placed = await connection.fetchval(C["placement_insert"], project, queue, pool)
                if placed is None:
                    placed = await connection.fetchval(C["placement_get"], project, queue)
                if placed is not None:
                    return str(placed)
                if await connection.fetchval(C["pool_exists"], pool) is None:
                    break
            raise LookupError(f"no pool named {pool!r}")

        return await self._db.run(work, WRITE)

    async def placement_move(self, project: str, queue: str, pool: str) -> None:
        async def work(connection: Connection) -> None:
            if await connection.fetchval(C["placement_move"], project, queue, pool) is None:
                raise LookupError(f"no pool named {pool!r}")

        await self._db.run(work, WRITE)

    async def placement_delete(self, project: str, queue: str) -> None:
        async def work(connection: Connection) -> None:
            await connection.execute(C["placement_delete"], project, queue)

        await self._db.run(work, SINGLE)

    async def placement_count(self, pool: str) -> int:
        async def work(connection: Connection) -> int:
            return int(await connection.fetchval(C["placement_count"], pool))

        return await self._db.run(work, SINGLE)
