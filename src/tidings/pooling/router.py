"""``PooledStorage``: the storage Protocols over a management store and the pools.

* The **management store** keeps the catalog (pools, flavors, placements) and the queue
  registry: its ordinary ``queues``, where queue listings, filters and metadata are read.
* Each queue's messages, claims, subscriptions and outbox live in one **pool**, chosen on
  the queue's first write (queue create, post, subscribe, or use as a dead-letter queue)
  by weighted random among the pools of its ``_flavor`` (all pools without one), and
  recorded with ``CatalogStore.placement_put`` (the first node to place it wins).
* Reads of a queue on no pool are answered as a single store answers for a queue that
  does not exist (empty pages, no claim, zero stats) without placing it, so reading
  names that were never created does not fill the catalog.
* Routes are cached per process (``[pooling_catalog] cache_ttl``/``cache_size``): a hit
  costs no round trip, and a node may route by a placement up to ``cache_ttl`` seconds
  old. So a queue deleted and made again on another pool, or moved by a ``_flavor``
  change, is still routed to its old pool by the other nodes until their entry expires:
  what they post there meanwhile stays in the old pool, unseen.
* The pool's copy of a queue's metadata mirrors the registry's, because the pool applies
  it atomically when it stores a post (``PreparePost``).
* A pool that is down fails only the calls routed to it (``StorageError``, a 503).

Dead-letter queues: a dead-letter queue first used as one is placed on its source's
pool, where the driver moves messages atomically. When it lives on another pool, the
source pool moves them into a shadow queue of its own (a name no client can make) and
the router forwards them: it claims them there, posts them to the dead-letter queue's
pool and deletes them from the shadow, so a failure on the way leaves them in the shadow
to be forwarded by a later claim (at least once, never lost). A forwarded message gets a
new id, its remaining lifetime as ttl, and a claim count of 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from tidings.config import PoolingCatalogSettings, Settings, StorageSettings
from tidings.errors import Conflict, StorageError, cause_chain
from tidings.model import (
    Claim,
    ClaimRequest,
    ClaimResult,
    Message,
    NewMessage,
    PoolRecord,
    QueueStats,
    Subscription,
)
from tidings.namespace import split_namespace
from tidings.pooling.feed import PooledFeed
from tidings.pooling.outbox import PooledOutbox
from tidings.pooling.placement import (
    VIRTUAL,
    NoPoolFound,
    Route,
    RouteCache,
    candidates,
    choose,
    flavor_missing,
    flavor_of,
)
from tidings.pooling.poolset import Instrument, Opener, PoolSet
from tidings.storage import storage_for_uri
from tidings.storage.base import (
    Audience,
    DeadLetterRule,
    MessageListing,
    MessageVolume,
    PreparePost,
    QueueListing,
    QueueStore,
    Storage,
    StoreStatus,
)
from tidings.storage.catalog import CatalogStore
from tidings.storage.feed import ChangeFeed

log = logging.getLogger("tidings.pooling")

# Shadow queues hold dead letters bound for another pool; "~" is no queue name's.
SHADOW_PREFIX = "~dead-letters~"
# Forwarding from a shadow: messages per round, rounds per claim, and the claim that
# keeps two forwarders apart (a forwarder that dies leaves them to the next one).
FORWARD_BATCH = 100
FORWARD_ROUNDS = 10
FORWARD_CLAIM_TTL = 60
FORWARD_CLAIM_GRACE = 60


def shadow_queue(dead_letter_queue: str) -> str:
    return f"{SHADOW_PREFIX}{dead_letter_queue}"


def _stored_flavor(metadata: dict[str, Any] | None) -> str | None:
    """``flavor_of`` for metadata already stored (a bad value counts as none)."""
    try:
        return flavor_of(metadata)
    except Exception:
        return None


class Router:
    """What the pooled stores share: the management store, the pools and the routes."""

    def __init__(
        self,
        management: Storage,
        pools: PoolSet,
        cache: RouteCache,
        *,
        virtual: bool,
        clock: Callable[[], float],
        rng: random.Random,
    ) -> None:
        self.management = management
        self.pools = pools
        self.cache = cache
        self.virtual = virtual
        self.clock = clock
        self._rng = rng

    @property
    def registry(self) -> QueueStore:
        return self.management.queues

    @property
    def catalog(self) -> CatalogStore:
        return self.management.catalog

    async def store(self, key: str) -> Storage:
        """The open store of a pool (or the virtual pool); ``StorageError`` when down."""
        handle = self.pools.get(key)
        if handle is None and key != VIRTUAL:
            await self.pools.refresh(force=True)  # placed on a pool added since
            handle = self.pools.get(key)
        if handle is None:
            raise StorageError(f"pool {key or '(virtual)'} is not in the catalog")
        return await handle.ready()

    async def route(self, project: str, queue: str) -> Route | None:
        """The queue's placement (cached, else read); None when it is on no pool."""
        route = self.cache.get((project, queue))
        if route is not None:
            return route
        pool = await self.catalog.placement_get(project, queue)
        if pool is None:
            return None
        route = Route(pool=pool)
        self.cache.put((project, queue), route)
        return route

    async def find(self, project: str, queue: str) -> tuple[str, Storage] | None:
        """Where a read goes, without placing: the queue's pool, else the virtual pool
        (when on), else None (the queue exists nowhere)."""
        route = await self.route(project, queue)
        if route is not None:
            return route.pool, await self.store(route.pool)
        if self.virtual:
            return VIRTUAL, await self.store(VIRTUAL)
        return None

    async def find_store(self, project: str, queue: str) -> Storage | None:
        found = await self.find(project, queue)
        return None if found is None else found[1]

    def cached_feed(self, project: str, queue: str) -> ChangeFeed | None:
        route = self.cache.get((project, queue))
        handle = None if route is None else self.pools.get(route.pool)
        if handle is None or handle.storage is None:
            return None
        return handle.storage.feed

    def open_feeds(self) -> list[ChangeFeed]:
        return [store.feed for _, store in self.pools.open_stores()]

    def open_pools(self) -> list[tuple[str, Storage]]:
        return [(handle.key, store) for handle, store in self.pools.open_stores()]

    async def current_pools(self) -> list[tuple[str, Storage]]:
        """The open pools, after reading the catalog's list if it is older than the cache
        ttl: so a node serves deliveries and sweeps of pools it has never routed to."""
        try:
            await self.pools.refresh()
        except StorageError as exc:  # the management store is down: the pools known
            log.warning("cannot read the pools, using those known: %s", exc)
        return self.open_pools()

    # -- placing --------------------------------------------------------------------------

    async def place(
        self,
        project: str,
        queue: str,
        *,
        prefer: str | None = None,
    ) -> tuple[Route, Storage]:
        """Where a write goes: the queue's pool, placing the queue first if it is on none.

        ``prefer`` is taken when it is a candidate (a dead-letter queue joins its source).
        """
        route = await self.place_route(project, queue, prefer=prefer)
        return route, await self.store(route.pool)

    async def place_route(self, project: str, queue: str, *, prefer: str | None = None) -> Route:
        """``place`` without opening the pool: where the queue is, or is now placed."""
        route = await self.route(project, queue)
        if route is None:
            route = await self._place_new(project, queue, prefer)
        return route

    async def _place_new(self, project: str, queue: str, prefer: str | None) -> Route:
        metadata = await self.registry.get_metadata(project, queue)
        if metadata is not None and self.virtual:
            # It exists on no pool: it was made in the virtual pool, and stays there.
            route = Route(pool=VIRTUAL, registered=True)
            self.cache.put((project, queue), route)
            return route
        flavor = _stored_flavor(metadata)
        chosen = await self.choose(flavor, prefer)
        pool = await self.put_placement(project, queue, chosen, flavor)
        if metadata and pool == chosen:
            store = await self.store(pool)
            await mirror(store, project, queue, metadata, self.clock())
        route = Route(pool=pool, registered=metadata is not None)
        self.cache.put((project, queue), route)
        return route

    async def choose(self, flavor: str | None, prefer: str | None = None) -> str:
        """A pool for a new queue: weighted random among the candidates (those that
        opened, when any did); the virtual pool when none; else ``NoPoolFound``."""
        await self.pools.refresh()
        found = self._candidates(flavor)
        if not found:
            # Perhaps a pool was added since the last read (e.g. on this very node).
            await self.pools.refresh(force=True)
            found = self._candidates(flavor)
        if prefer is not None and (
            any(p.name == prefer for p in found) or (prefer == VIRTUAL and flavor is None)
        ):
            return prefer
        up = [p for p in found if not self._down(p.name)]
        chosen = choose(up or found, self._rng)
        if chosen is not None:
            return chosen.name
        if self.virtual:
            return VIRTUAL
        what = f"of flavor {flavor}" if flavor else "at all"
        raise NoPoolFound(f"no pool {what} can take a new queue")

    def _candidates(self, flavor: str | None) -> list[PoolRecord]:
        return candidates([h.record for h in self.pools.pools() if h.record is not None], flavor)

    def _down(self, name: str) -> bool:
        handle = self.pools.get(name)
        return handle is not None and handle.down

    async def put_placement(self, project: str, queue: str, pool: str, flavor: str | None) -> str:
        """Record the placement unless one exists; the pool the queue is on."""
        if pool == VIRTUAL:
            return VIRTUAL  # the virtual pool is where queues on no pool live
        try:
            return await self.catalog.placement_put(project, queue, pool)
        except LookupError:  # the pool was deleted since this node read the catalog
            await self.pools.refresh(force=True)
            pool = await self.choose(flavor)
            if pool == VIRTUAL:
                return VIRTUAL
            try:
                return await self.catalog.placement_put(project, queue, pool)
            except LookupError as exc:
                raise NoPoolFound(f"pool {pool} went away while placing {queue}") from exc

    async def check_flavor(self, project: str, flavor: str) -> None:
        """400 unless the flavor exists in the caller's project (flavors are per project)."""
        client_project = split_namespace(project)[0]
        if await self.catalog.flavor_get(client_project, flavor) is None:
            raise flavor_missing(flavor)

    async def register(self, project: str, queue: str, route: Route, now: float) -> None:
        """Make sure the registry lists a queue a write just made in its pool."""
        await self.registry.create(project, queue, {}, now)
        self.cache.put((project, queue), Route(pool=route.pool, registered=True))

    async def forget_if_unused(self, project: str, queue: str, store: Storage) -> None:
        """Drop the placement of a queue that is gone from the registry and has no
        subscriptions left (they outlive their queue, so they keep it placed)."""
        key = (project, queue)
        if await self.registry.get_metadata(project, queue) is not None:
            return
        # now=0: any subscription stored, live or not yet collected, keeps the placement.
        if await store.subscriptions.page(project, queue, marker=None, limit=1, now=0.0):
            route = self.cache.get(key)
            if route is not None:  # still placed, no longer registered
                self.cache.put(key, Route(pool=route.pool))
            return
        await self.catalog.placement_delete(project, queue)
        self.cache.forget(key)


async def mirror(
    store: Storage, project: str, queue: str, metadata: dict[str, Any], now: float
) -> None:
    """Give the pool's copy of the queue this metadata (creating it if need be)."""
    if not await store.queues.create(project, queue, metadata, now):
        await store.queues.set_metadata(project, queue, metadata)


class PooledQueues:
    def __init__(self, router: Router) -> None:
        self._r = router

    async def create(self, project: str, name: str, metadata: dict[str, Any], now: float) -> bool:
        r = self._r
        flavor = flavor_of(metadata)
        if flavor is not None:
            await r.check_flavor(project, flavor)
        route = await r.route(project, name)
        # Chosen before anything is written: no pool for it means a 503 that leaves nothing.
        chosen = None if route is not None else await r.choose(flavor)
        if not await r.registry.create(project, name, metadata, now):
            return False
        try:
            pool = route.pool if route is not None else None
            if pool is None:
                assert chosen is not None
                pool = await r.put_placement(project, name, chosen, flavor)
            await mirror(await r.store(pool), project, name, metadata, now)
        except Exception:
            # Not created after all (the client gets a 503): the registry forgets it.
            with contextlib.suppress(Exception):
                await r.registry.delete(project, name)
            raise
        r.cache.put((project, name), Route(pool=pool, registered=True))
        return True

    async def get_metadata(self, project: str, name: str) -> dict[str, Any] | None:
        # The pool's copy first: the one its posts apply, and on a cached route the one
        # round trip a single store makes (claims read it for their dead-letter policy);
        # the registry's for a queue on no pool, or one the pool holds no copy of.
        found = await self._r.find(project, name)
        if found is not None:
            metadata = await found[1].queues.get_metadata(project, name)
            if metadata is not None:
                return metadata
        return await self._r.registry.get_metadata(project, name)

    async def set_metadata(self, project: str, name: str, metadata: dict[str, Any]) -> bool:
        r = self._r
        stored = await r.registry.get_metadata(project, name)
        if stored is None:
            return False
        flavor, before = flavor_of(metadata), _stored_flavor(stored)
        if flavor is not None and flavor != before:
            await r.check_flavor(project, flavor)
        if flavor != before:
            r.cache.forget((project, name))  # whether to move it is decided on the catalog
        found = await r.find(project, name)
        if found is not None:
            pool, store = found
            if flavor != before and await self._must_move(pool, flavor):
                assert flavor is not None
                return await self._move(project, name, metadata, pool, store, flavor)
            # The pool first: if it fails, nothing changed (the client gets a 503).
            await mirror(store, project, name, metadata, r.clock())
        return await r.registry.set_metadata(project, name, metadata)

    async def _must_move(self, pool: str, flavor: str | None) -> bool:
        """Whether a queue on ``pool`` must move to be of ``flavor`` (None: any pool)."""
        if flavor is None:
            return False
        if pool == VIRTUAL:
            return True
        await self._r.pools.refresh()
        handle = self._r.pools.get(pool)
        return handle is None or handle.record is None or handle.record.flavor != flavor

    async def _move(
        self,
        project: str,
        name: str,
        metadata: dict[str, Any],
        old_pool: str,
        old_store: Storage,
        flavor: str,
    ) -> bool:
        """Re-place an empty queue on a pool of its new flavor; 409 when it holds
        messages or subscriptions (moving them is not done: they would be stranded)."""
        r = self._r
        now = r.clock()
        stats = await old_store.queues.stats(project, name, now)
        subscribed = await old_store.subscriptions.page(
            project, name, marker=None, limit=1, now=0.0
        )
        if stats.total or subscribed:
            raise Conflict(
                f"Queue {name} holds messages or subscriptions, so it cannot move to a "
                f"pool of flavor {flavor}. Purge it first, or use a new queue."
            )
        new_pool = await r.choose(flavor)
        if new_pool == old_pool:
            await mirror(old_store, project, name, metadata, now)
            return await r.registry.set_metadata(project, name, metadata)
        await mirror(await r.store(new_pool), project, name, metadata, now)
        if old_pool == VIRTUAL:
            new_pool = await r.put_placement(project, name, new_pool, flavor)
        elif new_pool == VIRTUAL:
            await r.catalog.placement_delete(project, name)
        else:
            await r.catalog.placement_move(project, name, new_pool)
        r.cache.put((project, name), Route(pool=new_pool, registered=True))
        await old_store.queues.delete(project, name)
        return await r.registry.set_metadata(project, name, metadata)

    async def delete(self, project: str, name: str) -> None:
        r = self._r
        found = await r.find(project, name)
        if found is not None:
            await found[1].queues.delete(project, name)
        await r.registry.delete(project, name)
        if found is not None and found[0] != VIRTUAL:
            await r.forget_if_unused(project, name, found[1])
        else:
            r.cache.forget((project, name))

    async def page(
        self,
        project: str,
        *,
        marker: str | None,
        limit: int,
        name_contains: str | None = None,
        metadata_equals: dict[str, Any] | None = None,
    ) -> QueueListing:
        return await self._r.registry.page(
            project,
            marker=marker,
            limit=limit,
            name_contains=name_contains,
            metadata_equals=metadata_equals,
        )

    async def count(self, project: str) -> int:
        return await self._r.registry.count(project)

    async def stats(self, project: str, name: str, now: float) -> QueueStats:
        store = await self._r.find_store(project, name)
        if store is None:
            return QueueStats(total=0, claimed=0)
        return await store.queues.stats(project, name, now)

    async def purge_messages(self, project: str, name: str) -> None:
        store = await self._r.find_store(project, name)
        if store is not None:
            await store.queues.purge_messages(project, name)


class PooledMessages:
    def __init__(self, router: Router) -> None:
        self._r = router

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
        # A post its prepare refuses leaves a new queue placed but not created (the
        # placement goes with a delete of the queue): undoing it could strand a post
        # that another node routed by it meanwhile.
        route, store = await self._r.place(project, queue)
        ids = await store.messages.post(project, queue, prepare, client_id, now, notify, on_owed)
        if not route.registered:
            await self._r.register(project, queue, route, now)
        return ids

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
        store = await self._r.find_store(project, queue)
        if store is None:
            return MessageListing(messages=[])
        return await store.messages.page(
            project,
            queue,
            marker=marker,
            limit=limit,
            exclude_client=exclude_client,
            include_claimed=include_claimed,
            include_delayed=include_delayed,
            now=now,
        )

    async def get(self, project: str, queue: str, ids: Sequence[str], now: float) -> list[Message]:
        store = await self._r.find_store(project, queue)
        return [] if store is None else await store.messages.get(project, queue, ids, now)

    async def delete(
        self, project: str, queue: str, message_id: str, claim_id: str | None, now: float
    ) -> None:
        store = await self._r.find_store(project, queue)
        if store is not None:
            await store.messages.delete(project, queue, message_id, claim_id, now)

    async def delete_many(
        self,
        project: str,
        queue: str,
        ids: Sequence[str],
        claim_ids: Sequence[str] | None,
        now: float,
    ) -> None:
        store = await self._r.find_store(project, queue)
        if store is not None:
            await store.messages.delete_many(project, queue, ids, claim_ids, now)

    async def pop(self, project: str, queue: str, limit: int, now: float) -> list[Message]:
        store = await self._r.find_store(project, queue)
        return [] if store is None else await store.messages.pop(project, queue, limit, now)


class PooledClaims:
    def __init__(self, router: Router, messages: PooledMessages) -> None:
        self._r = router
        self._messages = messages

    async def create(
        self,
        project: str,
        queue: str,
        request: ClaimRequest,
        now: float,
        dead_letter_from: DeadLetterRule | None = None,
    ) -> ClaimResult | None:
        r = self._r
        found = await r.find(project, queue)
        if found is None:
            return None
        pool, store = found
        if dead_letter_from is not None:
            # Routing the dead letters needs the policy first (as PooledQueues.get_metadata).
            metadata = await store.queues.get_metadata(project, queue)
            if metadata is None:
                metadata = await r.registry.get_metadata(project, queue)
            if metadata is None:
                return None
            request = msgspec.structs.replace(request, dead_letter=dead_letter_from(metadata))
        dead_letter = request.dead_letter
        if dead_letter is None:
            return await store.claims.create(project, queue, request, now)
        # Only where it lives: its pool being down must not stop the source's claims.
        target = await r.place_route(project, dead_letter.queue, prefer=pool)
        if target.pool == pool:
            result = await store.claims.create(project, queue, request, now)
            # The driver made the dead-letter queue in the pool if a message went there.
            if (
                not target.registered
                and _short(result, request)
                and await store.queues.get_metadata(project, dead_letter.queue) is not None
            ):
                await r.register(project, dead_letter.queue, target, now)
            return result
        shadow = msgspec.structs.replace(dead_letter, queue=shadow_queue(dead_letter.queue))
        result = await store.claims.create(
            project, queue, msgspec.structs.replace(request, dead_letter=shadow), now
        )
        if _short(result, request):
            await self._forward(project, store, dead_letter.queue, now)
        return result

    async def _forward(self, project: str, source: Storage, queue: str, now: float) -> None:
        """Move what the source pool's shadow holds into the dead-letter queue's pool."""
        shadow = shadow_queue(queue)
        try:
            for _ in range(FORWARD_ROUNDS):
                listing = await source.messages.page(
                    project, shadow, marker=None, limit=FORWARD_BATCH, exclude_client=None,
                    include_claimed=False, include_delayed=True, now=now,
                )  # fmt: skip
                if not listing.messages:
                    return
                # As moved (the claim below lengthens the lives of short-lived ones).
                moved = {m.id: m for m in listing.messages}
                held = await source.claims.create(
                    project,
                    shadow,
                    ClaimRequest(
                        ttl=FORWARD_CLAIM_TTL, grace=FORWARD_CLAIM_GRACE, limit=FORWARD_BATCH
                    ),
                    now,
                )
                if held is None:
                    return
                by_client: dict[str, list[NewMessage]] = {}
                for message in held.messages:
                    original = moved.get(message.id, message)
                    ttl = _remaining_ttl(original, now)
                    if ttl is not None:
                        batch = by_client.setdefault(original.client_id, [])
                        batch.append(NewMessage(body=original.body, ttl=ttl))
                for client_id, batch in by_client.items():
                    await self._messages.post(project, queue, _fixed(batch), client_id, now)
                ids = [m.id for m in held.messages]
                await source.messages.delete_many(project, shadow, ids, [held.id], now)
                if len(held.messages) < FORWARD_BATCH:
                    return
        except StorageError as exc:
            # Left in the shadow (claimed until the claim lapses): a later claim goes on.
            log.warning(
                "dead letters for %s could not be forwarded yet: %s", queue, cause_chain(exc)
            )

    async def get(self, project: str, queue: str, claim_id: str, now: float) -> Claim | None:
        store = await self._r.find_store(project, queue)
        return None if store is None else await store.claims.get(project, queue, claim_id, now)

    async def renew(
        self, project: str, queue: str, claim_id: str, ttl: int, grace: int, now: float
    ) -> bool:
        store = await self._r.find_store(project, queue)
        if store is None:
            return False
        return await store.claims.renew(project, queue, claim_id, ttl, grace, now)

    async def release(self, project: str, queue: str, claim_id: str, now: float) -> None:
        store = await self._r.find_store(project, queue)
        if store is not None:
            await store.claims.release(project, queue, claim_id, now)


def _fixed(batch: list[NewMessage]) -> PreparePost:
    """A post of exactly these messages, whatever the queue's metadata says (a move)."""
    return lambda _metadata: batch


def _short(result: ClaimResult | None, request: ClaimRequest) -> bool:
    """Fewer messages than asked for: some may have been dead-lettered instead."""
    return result is None or len(result.messages) < request.limit


def _remaining_ttl(message: Message, now: float) -> int | None:
    """The ttl that keeps the message's expiry (None when it has expired)."""
    left = message.expires - now
    if left <= 0:
        return None
    if abs(left - message.ttl) < 1:
        return message.ttl
    return max(1, math.ceil(left))


class PooledSubscriptions:
    def __init__(self, router: Router) -> None:
        self._r = router

    async def create(
        self,
        project: str,
        source: str,
        subscriber: str,
        ttl: int,
        options: dict[str, Any],
        now: float,
    ) -> tuple[Subscription, bool]:
        _, store = await self._r.place(project, source)
        return await store.subscriptions.create(project, source, subscriber, ttl, options, now)

    async def get(
        self, project: str, source: str, subscription_id: str, now: float
    ) -> Subscription | None:
        store = await self._r.find_store(project, source)
        if store is None:
            return None
        return await store.subscriptions.get(project, source, subscription_id, now)

    async def page(
        self, project: str, source: str, *, marker: str | None, limit: int, now: float
    ) -> list[Subscription]:
        store = await self._r.find_store(project, source)
        if store is None:
            return []
        return await store.subscriptions.page(project, source, marker=marker, limit=limit, now=now)

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
        store = await self._r.find_store(project, source)
        if store is None:
            return None
        return await store.subscriptions.update(
            project, source, subscription_id, now, subscriber=subscriber, ttl=ttl, options=options
        )

    async def confirm(
        self, project: str, source: str, subscription_id: str, confirmed: bool, now: float
    ) -> Subscription | None:
        store = await self._r.find_store(project, source)
        if store is None:
            return None
        return await store.subscriptions.confirm(project, source, subscription_id, confirmed, now)

    async def delete(self, project: str, source: str, subscription_id: str) -> None:
        found = await self._r.find(project, source)
        if found is None:
            return
        await found[1].subscriptions.delete(project, source, subscription_id)
        if found[0] != VIRTUAL:
            await self._r.forget_if_unused(project, source, found[1])

    async def purge(self, project: str, source: str) -> None:
        found = await self._r.find(project, source)
        if found is None:
            return
        await found[1].subscriptions.purge(project, source)
        if found[0] != VIRTUAL:
            await self._r.forget_if_unused(project, source, found[1])


class PooledStorage:
    """One Tidings over many stores (pooled mode): the ``Storage`` Protocols, routed."""

    def __init__(
        self,
        management: Storage,
        *,
        storage_settings: StorageSettings,
        catalog_settings: PoolingCatalogSettings,
        virtual_uri: str | None = None,
        opener: Opener = storage_for_uri,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        instrument: Instrument | None = None,
    ) -> None:
        self._management = management
        pools = PoolSet(
            management.catalog,
            storage_settings,
            catalog_settings.cache_ttl,
            virtual_uri=virtual_uri if catalog_settings.enable_virtual_pool else None,
            opener=opener,
            instrument=instrument,
        )
        self._router = Router(
            management,
            pools,
            RouteCache(catalog_settings.cache_size, catalog_settings.cache_ttl),
            virtual=pools.virtual is not None,
            clock=clock,
            rng=rng or random.Random(),
        )
        self.queues = PooledQueues(self._router)
        self.messages = PooledMessages(self._router)
        self.claims = PooledClaims(self._router, self.messages)
        self.subscriptions = PooledSubscriptions(self._router)
        self.outbox = PooledOutbox(
            self._router.store, self._router.current_pools, self._router.find_store
        )
        self._feed = PooledFeed(
            management.feed, self._router.cached_feed, self._router.open_feeds, self._next_ready
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        opener: Opener = storage_for_uri,
        instrument: Instrument | None = None,
    ) -> PooledStorage:
        """The pooled store ``settings`` describe (unopened): the management store at
        ``[drivers] management_store``, the virtual pool at ``message_store`` if on.
        ``instrument`` wraps each store, the management store as ``(management)``."""
        uri = settings.drivers.management_uri()
        management = opener(uri, settings.storage)
        if instrument is not None:
            management = instrument(management, uri, "(management)")
        return cls(
            management,
            storage_settings=settings.storage,
            catalog_settings=settings.pooling_catalog,
            virtual_uri=settings.drivers.message_store,
            opener=opener,
            instrument=instrument,
        )

    @property
    def management(self) -> Storage:
        return self._management

    @property
    def catalog(self) -> CatalogStore:
        return self._management.catalog

    @property
    def feed(self) -> PooledFeed:
        return self._feed

    async def _next_ready(self, project: str, queue: str, now: float) -> float | None:
        store = await self._router.find_store(project, queue)
        return None if store is None else await store.feed.next_ready(project, queue, now)

    async def store_of(self, project: str, queue: str) -> Storage | None:
        """The pool store a queue's data is in (None: on no pool), for tools and tests."""
        return await self._router.find_store(project, queue)

    def open_pools(self) -> list[tuple[str, Storage]]:
        """The pools open now, by key (the virtual pool's is ``""``)."""
        return self._router.open_pools()

    async def open(self) -> None:
        await self._management.open()
        try:
            await self._router.pools.open()
        except BaseException:
            await self._management.close()
            raise

    async def close(self) -> None:
        try:
            await self._router.pools.close()
        finally:
            self._router.cache.clear()
            await self._management.close()

    async def ping(self) -> bool:
        return await self._management.ping()

    def pools_changed(self) -> None:
        """Pools or flavors were changed through this node: place by them at once."""
        self._router.pools.invalidate()

    async def pool_statuses(self) -> dict[str, StoreStatus]:
        """Each pool's status by name (the virtual pool's name is ``""``); never raises."""
        await self._router.current_pools()  # pools made or removed since the last read
        handles = self._router.pools.every()

        async def status(handle_key: str) -> StoreStatus:
            handle = self._router.pools.get(handle_key)
            if handle is None:
                return StoreStatus(reachable=False, problems=["the pool is gone"])
            try:
                store = await handle.ready()  # a pool read just now may still be opening
            except StorageError:
                problem = f"the pool cannot be opened: {handle.error or 'opening'}"
                return StoreStatus(reachable=False, problems=[problem])
            return await store.status()

        found = await asyncio.gather(*(status(h.key) for h in handles))
        return {h.key: s for h, s in zip(handles, found, strict=True)}

    async def status(self) -> StoreStatus:
        """The management store's reachability; every problem of the pools besides."""
        management = await self._management.status()
        problems = list(management.problems)
        for key, pool in (await self.pool_statuses()).items():
            name = key or "(virtual)"
            if not pool.reachable:
                problems.append(f"pool {name} is not reachable")
            problems.extend(f"pool {name}: {p}" for p in pool.problems)
        return StoreStatus(reachable=management.reachable, problems=problems)

    async def message_volume(self, now: float) -> MessageVolume:
        """The pools' volumes added up (health reports each pool's own)."""
        pools = await self._router.current_pools()
        volumes = [await store.message_volume(now) for _, store in pools]
        return MessageVolume(
            total=sum(v.total for v in volumes),
            claimed=sum(v.claimed for v in volumes),
            complete=all(v.complete for v in volumes),
        )

    async def collect_garbage(self, now: float) -> int:
        """The management store's sweep and each open pool's; a pool that fails is
        logged and swept next time, without holding up the others."""
        removed = await self._management.collect_garbage(now)
        for key, store in await self._router.current_pools():
            try:
                removed += await store.collect_garbage(now)
            except StorageError as exc:
                log.warning("garbage collection failed in pool %s: %s", key or "(virtual)", exc)
        return removed
