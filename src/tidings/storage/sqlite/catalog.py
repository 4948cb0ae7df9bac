"""The pooled-mode catalog on SQLite (``tidings.storage.catalog``; migration 0009).

Each write is one job of the writer thread, so it runs inside one ``BEGIN IMMEDIATE``
transaction: a check and the write it guards (a pool's URI, a pool's placements before
it is deleted or moved to another URI, a placement's pool) cannot be split by another
process writing the same file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import msgspec

from tidings.errors import StorageError
from tidings.model import FlavorRecord, PoolRecord
from tidings.storage.catalog import MAX_POOLS, PoolInUse, PoolUriTaken, TooManyPools
from tidings.storage.sql import load_queries
from tidings.storage.sqlite.executor import SQLiteExecutor

T = TypeVar("T")

C = load_queries(__package__ or "tidings.storage.sqlite", "catalog.sql")

_json_encode = msgspec.json.encode
_json_decode = msgspec.json.decode


def _page_limit(limit: int) -> int:
    return max(0, min(limit, MAX_POOLS))


def _pool(row: tuple[Any, ...]) -> PoolRecord:
    name, uri, weight, flavor, options = row
    return PoolRecord(
        name=str(name),
        uri=str(uri),
        weight=int(weight),
        flavor=None if flavor is None else str(flavor),
        options=dict(_json_decode(options)),
    )


class SQLiteCatalog:
    def __init__(self, executor: SQLiteExecutor) -> None:
        self._executor = executor

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return await self._executor.write(work)
        except sqlite3.Error as exc:
            raise StorageError(str(exc)) from exc

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return await self._executor.read(work)
        except sqlite3.Error as exc:
            raise StorageError(str(exc)) from exc

    # -- pools ----------------------------------------------------------------------------

    async def pool_put(self, pool: PoolRecord) -> bool:
        params = {
            "name": pool.name,
            "uri": pool.uri,
            "weight": pool.weight,
            "flavor": pool.flavor,
            "options": _json_encode(pool.options).decode(),
        }

        def work(db: sqlite3.Connection) -> bool:
            owner = db.execute(C["pool_uri_owner"], params).fetchone()
            if owner is not None:
                raise PoolUriTaken(pool.uri, str(owner[0]))
            old = db.execute(C["pool_uri"], params).fetchone()
            created = old is None
            if created and db.execute(C["pool_count"]).fetchone()[0] >= MAX_POOLS:
                raise TooManyPools(f"the catalog holds {MAX_POOLS} pools already")
            if not created and old[0] != pool.uri:
                (queues,) = db.execute(C["placement_count"], {"pool": pool.name}).fetchone()
                if queues:
                    raise PoolInUse(pool.name, int(queues))
            db.execute(C["pool_upsert"], params)
            return created

        return await self._write(work)

    async def pool_get(self, name: str) -> PoolRecord | None:
        def work(db: sqlite3.Connection) -> PoolRecord | None:
            row = db.execute(C["pool_get"], {"name": name}).fetchone()
            return None if row is None else _pool(row)

        return await self._read(work)

    async def pool_page(self, marker: str | None, limit: int) -> list[PoolRecord]:
        params = {"marker": marker or "", "limit": _page_limit(limit)}
        return await self._read(lambda db: [_pool(r) for r in db.execute(C["pool_page"], params)])

    async def pools(self) -> list[PoolRecord]:
        return await self.pool_page(None, MAX_POOLS)

    async def pool_delete(self, name: str) -> None:
        def work(db: sqlite3.Connection) -> None:
            (queues,) = db.execute(C["placement_count"], {"pool": name}).fetchone()
            if queues:
                raise PoolInUse(name, int(queues))
            db.execute(C["pool_delete"], {"name": name})

        await self._write(work)

    async def pools_set_flavor(self, names: Sequence[str], flavor: str | None) -> None:
        if not names:
            return
        params = {"names": _json_encode(list(names)).decode(), "flavor": flavor}
        await self._write(lambda db: db.execute(C["pools_set_flavor"], params).rowcount)

    # -- flavors --------------------------------------------------------------------------

    async def flavor_put(self, flavor: FlavorRecord) -> bool:
        params = {"project": flavor.project, "name": flavor.name}
        return await self._write(lambda db: db.execute(C["flavor_insert"], params).rowcount == 1)

    async def flavor_get(self, project: str, name: str) -> FlavorRecord | None:
        params = {"project": project, "name": name}
        row = await self._read(lambda db: db.execute(C["flavor_get"], params).fetchone())
        return None if row is None else FlavorRecord(project=project, name=str(row[0]))

    async def flavor_page(self, project: str, marker: str | None, limit: int) -> list[FlavorRecord]:
        params = {"project": project, "marker": marker or "", "limit": _page_limit(limit)}
        rows = await self._read(lambda db: db.execute(C["flavor_page"], params).fetchall())
        return [FlavorRecord(project=project, name=str(name)) for (name,) in rows]

    async def flavor_delete(self, project: str, name: str) -> None:
        params = {"project": project, "name": name}
        await self._write(lambda db: db.execute(C["flavor_delete"], params).rowcount)

    # -- placements -----------------------------------------------------------------------

    async def placement_get(self, project: str, queue: str) -> str | None:
        params = {"project": project, "queue": queue}
        row = await self._read(lambda db: db.execute(C["placement_get"], params).fetchone())
        return None if row is None else str(row[0])

    async def placement_put(self, project: str, queue: str, pool: str) -> str:
        params = {"project": project, "queue": queue, "pool": pool}

        def work(db: sqlite3.Connection) -> str:
            db.execute(C["placement_insert"], params)
            row = db.execute(C["placement_get"], params).fetchone()
            if row is None:  # not placed, and the pool does not exist
                raise LookupError(f"no pool named {pool!r}")
            return str(row[0])

        return await self._write(work)

    async def placement_move(self, project: str, queue: str, pool: str) -> None:
        params = {"project": project, "queue": queue, "pool": pool}

        def work(db: sqlite3.Connection) -> None:
            if db.execute(C["placement_move"], params).rowcount == 0:
                raise LookupError(f"no pool named {pool!r}")

        await self._write(work)

    async def placement_delete(self, project: str, queue: str) -> None:
        params = {"project": project, "queue": queue}
        await self._write(lambda db: db.execute(C["placement_delete"], params).rowcount)

    async def placement_count(self, pool: str) -> int:
        row = await self._read(
            lambda db: db.execute(C["placement_count"], {"pool": pool}).fetchone()
        )
        return int(row[0])
