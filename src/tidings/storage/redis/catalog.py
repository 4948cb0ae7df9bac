"""The pooled-mode catalog on Redis (``tidings.storage.catalog``).

Every key of it shares one hash tag (``KeySpace.pools``, ``flavors``, ``placements``),
so each Lua script (``lua/pool_*.lua``, ``lua/placement_*.lua``) checks and changes it in
one atomic step, on a cluster too: a pool's URI stays unique, a pool is deleted or
moved to another URI only while no queue is placed on it, and a placement names a pool
that exists. Each pool's
placements are counted in ``pool-queues`` by the scripts that add, move and remove
them, so counting never reads the placements themselves.

Pools are few (``MAX_POOLS``) and flavors small, but every placement lives in that one
slot too: on a cluster the catalog is held by one node.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from tidings.errors import StorageError
from tidings.model import FlavorRecord, PoolRecord
from tidings.storage.catalog import MAX_POOLS, PoolInUse, PoolUriTaken, TooManyPools
from tidings.storage.redis.connection import Backend

# {uri, weight, options (JSON)}; the flavor is kept apart (pools_set_flavor changes it).
_PoolRecord = tuple[str, int, str]
_decode_pool = msgspec.msgpack.Decoder(_PoolRecord).decode
_encode = msgspec.msgpack.encode
_json_encode = msgspec.json.encode
_json_decode = msgspec.json.decode


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _page_limit(limit: int) -> int:
    return max(0, min(limit, MAX_POOLS))


def _pool(name: Any, raw: Any, flavor: Any) -> PoolRecord:
    try:
        uri, weight, options = _decode_pool(raw)
        decoded = dict(_json_decode(options))
    except (msgspec.DecodeError, TypeError, ValueError) as exc:
        raise StorageError(f"unreadable pool record in Redis: {exc}") from exc
    return PoolRecord(
        name=_text(name),
        uri=uri,
        weight=weight,
        flavor=None if flavor is None else _text(flavor),
        options=decoded,
    )


def _flavor_args(flavor: str | None) -> list[str]:
    return ["0", ""] if flavor is None else ["1", flavor]


class RedisCatalog:
    def __init__(self, backend: Backend) -> None:
        self._b = backend
        self._pools = backend.keys.pools()

    # -- pools ----------------------------------------------------------------------------

    async def pool_put(self, pool: PoolRecord) -> bool:
        record = _encode((pool.uri, pool.weight, _json_encode(pool.options).decode()))
        args = [pool.name, pool.uri, record, *_flavor_args(pool.flavor), MAX_POOLS]
        outcome = await self._b.script("pool_put", self._pools, args)
        verdict = _text(outcome[0])
        if verdict == "taken":
            raise PoolUriTaken(pool.uri, _text(outcome[1]))
        if verdict == "full":
            raise TooManyPools(f"the catalog holds {MAX_POOLS} pools already")
        if verdict == "in_use":
            raise PoolInUse(pool.name, int(outcome[1]))
        return int(outcome[1]) == 1

    async def pool_get(self, name: str) -> PoolRecord | None:
        found = await self._b.script("pool_get", self._pools, [name])
        return None if found is None else _pool(name, found[0], found[1])

    async def pool_page(self, marker: str | None, limit: int) -> list[PoolRecord]:
        limit = _page_limit(limit)
        if limit == 0:
            return []
        flat = await self._b.script("pool_page", self._pools, [marker or "", limit])
        return [_pool(*flat[i : i + 3]) for i in range(0, len(flat), 3)]

    async def pools(self) -> list[PoolRecord]:
        return await self.pool_page(None, MAX_POOLS)

    async def pool_delete(self, name: str) -> None:
        queues = int(await self._b.script("pool_delete", self._pools, [name]))
        if queues:
            raise PoolInUse(name, queues)

    async def pools_set_flavor(self, names: Sequence[str], flavor: str | None) -> None:
        if names:
            await self._b.script("pools_set_flavor", self._pools, [*_flavor_args(flavor), *names])

    # -- flavors --------------------------------------------------------------------------

    async def flavor_put(self, flavor: FlavorRecord) -> bool:
        key = self._b.keys.flavors(flavor.project)
        added = await self._b.call(lambda: self._b.client.zadd(key, {flavor.name: 0}, nx=True))
        return bool(added)

    async def flavor_get(self, project: str, name: str) -> FlavorRecord | None:
        key = self._b.keys.flavors(project)
        score = await self._b.call(lambda: self._b.client.zscore(key, name))
        return None if score is None else FlavorRecord(project=project, name=name)

    async def flavor_page(self, project: str, marker: str | None, limit: int) -> list[FlavorRecord]:
        limit = _page_limit(limit)
        if limit == 0:
            return []
        key = self._b.keys.flavors(project)
        low = f"({marker}" if marker else "-"
        names = await self._b.call(
            lambda: self._b.client.zrangebylex(key, low, "+", start=0, num=limit)
        )
        return [FlavorRecord(project=project, name=_text(n)) for n in names]

    async def flavor_delete(self, project: str, name: str) -> None:
        key = self._b.keys.flavors(project)
        await self._b.call(lambda: self._b.client.zrem(key, name))

    # -- placements -----------------------------------------------------------------------

    async def placement_get(self, project: str, queue: str) -> str | None:
        key = self._b.keys.placements(project)
        found = await self._b.call(lambda: self._b.client.hget(key, queue))
        return None if found is None else _text(found)

    async def placement_put(self, project: str, queue: str, pool: str) -> str:
        keys = [*self._pools, self._b.keys.placements(project)]
        placed = await self._b.script("placement_put", keys, [queue, pool])
        if placed is None:
            raise LookupError(f"no pool named {pool!r}")
        return _text(placed)

    async def placement_move(self, project: str, queue: str, pool: str) -> None:
        keys = [*self._pools, self._b.keys.placements(project)]
        if not int(await self._b.script("placement_move", keys, [queue, pool])):
            raise LookupError(f"no pool named {pool!r}")

    async def placement_delete(self, project: str, queue: str) -> None:
        keys = [*self._pools, self._b.keys.placements(project)]
        await self._b.script("placement_delete", keys, [queue])

    async def placement_count(self, pool: str) -> int:
        key = self._pools[4]  # pool-queues
        found = await self._b.call(lambda: self._b.client.hget(key, pool))
        return 0 if found is None else int(found)
