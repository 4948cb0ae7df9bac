"""Where a queue lives: routes, their per-process cache, and the weighted choice of a pool."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any

import cachetools
import msgspec

from tidings.errors import BadRequest, StorageError
from tidings.model import PoolRecord

# The key of the virtual pool ([drivers] message_store with enable_virtual_pool): never a
# catalog name (pool names are non-empty), so it never collides with a pool.
VIRTUAL = ""
FLAVOR = "_flavor"

QueueKey = tuple[str, str]  # (stored project, queue)


class NoPoolFound(StorageError):
    """No pool can take a new queue (none, none of its flavor, all weighted 0) and the
    virtual pool is off; the operation answers 503, as Zaqar's ``NoPoolFound``."""


class Route(msgspec.Struct, frozen=True, kw_only=True):
    """Where one queue lives, as this process knows it."""

    pool: str  # a pool name, or VIRTUAL
    # True when the queue is known to be in the management store's registry (so a post
    # need not register it); False means "not known", never "known absent".
    registered: bool = False


class RouteCache:
    """Routes by (project, queue), each trusted for ``ttl`` seconds at most (bounded
    staleness across nodes), the least recently used dropped past ``size``."""

    def __init__(self, size: int, ttl: float) -> None:
        self._routes: cachetools.TTLCache[QueueKey, Route] = cachetools.TTLCache(
            maxsize=size, ttl=ttl, timer=time.monotonic
        )

    def get(self, key: QueueKey) -> Route | None:
        return self._routes.get(key)

    def put(self, key: QueueKey, route: Route) -> None:
        self._routes[key] = route

    def forget(self, key: QueueKey) -> None:
        self._routes.pop(key, None)

    def clear(self) -> None:
        self._routes.clear()


def flavor_of(metadata: dict[str, Any] | None) -> str | None:
    """The queue's ``_flavor`` (None when unset or empty); 400 when it is not a name."""
    if not metadata:
        return None
    value = metadata.get(FLAVOR)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{FLAVOR} must be the name of a flavor.")
    return value


def flavor_missing(flavor: str) -> BadRequest:
    return BadRequest(f"Flavor {flavor} does not exist")


def candidates(pools: Sequence[PoolRecord], flavor: str | None) -> list[PoolRecord]:
    """Pools a new queue may go to: those of its flavor (all without one), weight > 0."""
    return [p for p in pools if p.weight > 0 and (flavor is None or p.flavor == flavor)]


def choose(pools: Sequence[PoolRecord], rng: random.Random) -> PoolRecord | None:
    """Weighted random: P(pool) = weight / sum of weights (weights <= 0 never chosen)."""
    weighted = [p for p in pools if p.weight > 0]
    if not weighted:
        return None
    return rng.choices(weighted, weights=[p.weight for p in weighted])[0]
