"""The management store's catalog (pooled mode): pools, flavors and where each queue lives.

Every driver offers it as ``Storage.catalog``; in pooled mode the store named by
``[drivers] management_store`` keeps it, beside the queue registry (its ordinary
``queues``: names and metadata, which queue listings and filters read).

Pools are global and few (an operator creates them); flavors belong to a project, as in
Zaqar, and a pool names at most one flavor. A placement maps (project, queue) to a pool;
``project`` is the storage project, so topics (``<project>:topics``, see
``tidings.namespace``) are placed like queues.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from tidings.model import FlavorRecord, PoolRecord

# Pools one catalog holds at most: every pool is opened by every node, and the router
# reads them all at once (``pools``), so the count must stay small.
MAX_POOLS = 1000


class PoolUriTaken(Exception):
    """Another pool already has this URI (two pools on one store would share its data)."""

    def __init__(self, uri: str, pool: str) -> None:
        super().__init__(f"pool {pool} already uses {uri}")
        self.uri = uri
        self.pool = pool


class PoolInUse(Exception):
    """Queues are still placed on the pool: deleting it, or moving it to another URI,
    would strand their messages."""

    def __init__(self, pool: str, queues: int) -> None:
        super().__init__(f"pool {pool} holds {queues} queue(s)")
        self.pool = pool
        self.queues = queues


class TooManyPools(Exception):
    """The catalog already holds ``MAX_POOLS`` pools."""


class CatalogStore(Protocol):
    # -- pools (global) -----------------------------------------------------------------

    async def pool_put(self, pool: PoolRecord) -> bool:
        """Create or replace the pool named ``pool.name``; True when it was created.

        Raises ``PoolUriTaken`` when another pool has the same ``uri``, ``TooManyPools``
        past ``MAX_POOLS``, and ``PoolInUse`` (with the number of queues) when it would
        replace a pool whose ``uri`` differs from ``pool.uri`` while queues are placed on
        it: their data stays on the old URI. Replacing a pool in use with its own ``uri``
        (weight, flavor, options) is allowed. Each check and the write are one atomic
        step: no placement made against the old URI survives a change of URI (a
        ``placement_put`` or ``placement_move`` either comes first, and the change is
        refused, or comes after it and sees the new URI).
        """
        ...

    async def pool_get(self, name: str) -> PoolRecord | None: ...

    async def pool_page(self, marker: str | None, limit: int) -> list[PoolRecord]:
        """Pools after ``marker`` (exclusive) in name order, at most ``limit``."""
        ...

    async def pools(self) -> list[PoolRecord]:
        """Every pool (at most ``MAX_POOLS``), in name order: what the router places on."""
        ...

    async def pool_delete(self, name: str) -> None:
        """Remove the pool; nothing when it does not exist.

        Raises ``PoolInUse`` (with the number of queues) while any placement names it;
        the check and the delete are one atomic step, so no queue is placed on a pool
        that is going away.
        """
        ...

    async def pools_set_flavor(self, names: Sequence[str], flavor: str | None) -> None:
        """Set ``flavor`` on the named pools (those that exist)."""
        ...

    # -- flavors (per project) ----------------------------------------------------------

    async def flavor_put(self, flavor: FlavorRecord) -> bool:
        """Create the flavor, or keep it; True when it was created."""
        ...

    async def flavor_get(self, project: str, name: str) -> FlavorRecord | None: ...

    async def flavor_page(
        self, project: str, marker: str | None, limit: int
    ) -> list[FlavorRecord]: ...

    async def flavor_delete(self, project: str, name: str) -> None: ...

    # -- placements -----------------------------------------------------------------------

    async def placement_get(self, project: str, queue: str) -> str | None:
        """The pool the queue lives on, or None when it was never placed."""
        ...

    async def placement_put(self, project: str, queue: str, pool: str) -> str:
        """Place the queue on ``pool`` unless it is placed already; the pool it is on.

        Insert-if-absent, atomically: two nodes placing the same new queue at once agree
        on one pool (the first write wins, both get its answer). Raises ``LookupError``
        when ``pool`` does not exist (deleted meanwhile).
        """
        ...

    async def placement_move(self, project: str, queue: str, pool: str) -> None:
        """Place the queue on ``pool`` whatever it was on (the caller moved its data).

        Raises ``LookupError`` when ``pool`` does not exist.
        """
        ...

    async def placement_delete(self, project: str, queue: str) -> None: ...

    async def placement_count(self, pool: str) -> int:
        """How many queues are placed on ``pool`` (an index count, not a scan of queues)."""
        ...
