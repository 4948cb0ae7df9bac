"""The router itself (``tidings.pooling.router.PooledStorage``) over SQLite pools.

What the storage contract cannot show: where queues go (weights, flavors, the virtual
pool), what reads leave in the catalog, dead letters between pools, a pool that cannot
be opened, and that a routed call needs no catalog read once its route is cached.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tidings.config import PoolingCatalogSettings, StorageSettings
from tidings.errors import BadRequest, Conflict, StorageError
from tidings.model import ClaimRequest, DeadLetterPolicy, FlavorRecord, NewMessage, PoolRecord
from tidings.pooling.placement import NoPoolFound
from tidings.pooling.router import PooledStorage, shadow_queue
from tidings.storage import storage_for_uri
from tidings.storage.base import PreparePost, Storage

pytestmark = pytest.mark.anyio

P = "project-r"
T0 = 1_700_000_000.0
CLIENT = "44444444-4444-4444-4444-444444444444"
SETTINGS = StorageSettings(operation_timeout=5.0)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def batch(*bodies: int, ttl: int = 300) -> PreparePost:
    messages = [NewMessage(body=str(b).encode(), ttl=ttl) for b in bodies]
    return lambda _metadata: messages


def claim(limit: int = 10, **kw: object) -> ClaimRequest:
    return ClaimRequest(ttl=60, grace=60, limit=limit, **kw)  # type: ignore[arg-type]


async def bodies(storage: Storage, queue: str, now: float = T0) -> list[bytes]:
    page = await storage.messages.page(
        P, queue, marker=None, limit=20, exclude_client=None,
        include_claimed=True, include_delayed=True, now=now,
    )  # fmt: skip
    return [m.body for m in page.messages]


@pytest.fixture
async def pooled(tmp_path: Path) -> AsyncIterator[Callable[..., PooledStorage]]:
    """Makes an open router whose pools are SQLite files named after the pools."""
    made: list[PooledStorage] = []

    async def make(
        pools: dict[str, tuple[int, str | None]],
        *,
        virtual: bool = False,
        seed: int = 7,
        uris: dict[str, str] | None = None,
    ) -> PooledStorage:
        management = storage_for_uri(f"sqlite:///{tmp_path / 'management.db'}", SETTINGS)
        await management.open()
        for name, (weight, flavor) in pools.items():
            uri = (uris or {}).get(name, f"sqlite:///{tmp_path / name}.db")
            await management.catalog.pool_put(
                PoolRecord(name=name, uri=uri, weight=weight, flavor=flavor)
            )
        await management.close()
        storage = PooledStorage(
            storage_for_uri(f"sqlite:///{tmp_path / 'management.db'}", SETTINGS),
            storage_settings=SETTINGS,
            catalog_settings=PoolingCatalogSettings(enable_virtual_pool=virtual),
            virtual_uri=f"sqlite:///{tmp_path / 'virtual.db'}",
            rng=random.Random(seed),
            clock=lambda: T0,  # the time the router itself reads (a flavor change's checks)
        )
        await storage.open()
        made.append(storage)
        return storage

    yield make  # type: ignore[misc]
    for storage in made:
        await storage.close()


async def placement(storage: PooledStorage, queue: str, project: str = P) -> str | None:
    return await storage.catalog.placement_get(project, queue)


# --- placement ----------------------------------------------------------------------


async def test_queues_spread_by_weight_never_on_a_weightless_pool(
    pooled: Callable[..., PooledStorage],
) -> None:
    storage = await pooled({"heavy": (300, None), "light": (100, None), "off": (0, None)})
    for n in range(200):
        assert await storage.queues.create(P, f"q{n}", {}, T0)
    spread = Counter([await placement(storage, f"q{n}") for n in range(200)])
    assert set(spread) == {"heavy", "light"}
    # 3:1 weights over 200 queues (seeded): well clear of an even split.
    assert spread["heavy"] > 2 * spread["light"]
    assert await storage.catalog.placement_count("off") == 0


async def test_reads_of_queues_that_never_existed_place_nothing(
    pooled: Callable[..., PooledStorage],
) -> None:
    storage = await pooled({"a": (100, None)})
    assert await bodies(storage, "ghost") == []
    assert await storage.messages.get(P, "ghost", ["x"], T0) == []
    assert await storage.messages.pop(P, "ghost", 5, T0) == []
    assert await storage.claims.create(P, "ghost", claim(), T0) is None
    assert await storage.claims.get(P, "ghost", "x", T0) is None
    assert (await storage.queues.stats(P, "ghost", T0)).total == 0
    assert await storage.subscriptions.page(P, "ghost", marker=None, limit=5, now=T0) == []
    assert await storage.feed.next_ready(P, "ghost", T0) is None
    await storage.messages.delete(P, "ghost", "x", None, T0)
    await storage.queues.purge_messages(P, "ghost")
    await storage.queues.delete(P, "ghost")
    assert await placement(storage, "ghost") is None
    assert await storage.catalog.placement_count("a") == 0


async def test_a_routed_call_needs_no_catalog_read_once_cached(
    pooled: Callable[..., PooledStorage],
) -> None:
    storage = await pooled({"a": (100, None), "b": (100, None)})
    await storage.messages.post(P, "q", batch(1), CLIENT, T0)
    here = await placement(storage, "q")
    elsewhere = "b" if here == "a" else "a"
    # Behind the router's back: a post and a claim that read the catalog or the
    # registry would see these changes; cache hits route as before.
    await storage.catalog.placement_move(P, "q", elsewhere)
    await storage.management.queues.delete(P, "q")
    await storage.messages.post(P, "q", batch(2), CLIENT, T0)
    taken = await storage.claims.create(P, "q", claim(), T0)
    assert taken is not None and [m.body for m in taken.messages] == [b"1", b"2"]
    assert await storage.management.queues.get_metadata(P, "q") is None
    pools = dict(storage.open_pools())
    assert await bodies(pools[elsewhere], "q") == []


async def test_a_queue_posted_to_is_registered_and_deleting_it_frees_the_pool(
    pooled: Callable[..., PooledStorage],
) -> None:
    storage = await pooled({"a": (100, None)})
    await storage.messages.post(P, "q", batch(1), CLIENT, T0)
    assert await storage.queues.get_metadata(P, "q") == {}
    assert [q.name for q in (await storage.queues.page(P, marker=None, limit=5)).queues] == ["q"]
    await storage.queues.delete(P, "q")
    assert await placement(storage, "q") is None
    assert await storage.catalog.placement_count("a") == 0


async def test_subscriptions_keep_their_queue_placed(pooled: Callable[..., PooledStorage]) -> None:
    storage = await pooled({"a": (100, None), "b": (100, None)})
    await storage.messages.post(P, "q", batch(1), CLIENT, T0)
    sub, _ = await storage.subscriptions.create(P, "q", "http://a", 600, {}, T0)
    pool = await placement(storage, "q")
    await storage.queues.delete(P, "q")
    assert await placement(storage, "q") == pool
    await storage.subscriptions.delete(P, "q", sub.id)
    assert await placement(storage, "q") is None


# --- flavors ------------------------------------------------------------------------


async def test_flavor_restricts_candidates_and_must_exist(
    pooled: Callable[..., PooledStorage],
) -> None:
    storage = await pooled({"plain": (100, None), "gold-1": (1, "gold"), "gold-2": (1, "gold")})
    with pytest.raises(BadRequest, match="Flavor gold does not exist"):
        await storage.queues.create(P, "q", {"_flavor": "gold"}, T0)
    assert await storage.queues.get_metadata(P, "q") is None
    await storage.catalog.flavor_put(FlavorRecord(project=P, name="gold"))
    for n in range(10):
        await storage.queues.create(P, f"g{n}", {"_flavor": "gold"}, T0)
    assert {await placement(storage, f"g{n}") for n in range(10)} <= {"gold-1", "gold-2"}
    # Flavors are per project.
    with pytest.raises(BadRequest):
        await storage.queues.create("other", "q", {"_flavor": "gold"}, T0)
    # A flavor whose pools are gone: 503 semantics, nothing created.
    await storage.catalog.flavor_put(FlavorRecord(project=P, name="empty"))
    with pytest.raises(NoPoolFound):
        await storage.queues.create(P, "e", {"_flavor": "empty"}, T0)
    assert await storage.queues.get_metadata(P, "e") is None


async def test_flavor_change_moves_an_empty_queue_and_refuses_a_full_one(
    pooled: Callable[..., PooledStorage],
) -> None:
    storage = await pooled({"plain": (100, None), "gold-1": (100, "gold")})
    await storage.catalog.flavor_put(FlavorRecord(project=P, name="gold"))
    await storage.queues.create(P, "empty", {"_flavor": None, "x": 1}, T0)
    await storage.queues.create(P, "full", {}, T0)
    await storage.catalog.placement_move(P, "empty", "plain")  # whatever the draw was
    await storage.catalog.placement_move(P, "full", "plain")
    fresh = await pooled({"plain": (100, None), "gold-1": (100, "gold")})  # nothing cached
    await fresh.messages.post(P, "full", batch(1), CLIENT, T0)
    assert await fresh.queues.set_metadata(P, "empty", {"_flavor": "gold", "x": 2}) is True
    assert await placement(fresh, "empty") == "gold-1"
    assert await fresh.queues.get_metadata(P, "empty") == {"_flavor": "gold", "x": 2}
    await fresh.messages.post(P, "empty", batch(2), CLIENT, T0)
    assert await bodies(fresh, "empty") == [b"2"]
    with pytest.raises(Conflict, match="holds messages or subscriptions"):
        await fresh.queues.set_metadata(P, "full", {"_flavor": "gold"})
    assert await placement(fresh, "full") == "plain"
    assert await fresh.queues.get_metadata(P, "full") == {}
    assert await bodies(fresh, "full") == [b"1"]
    # Dropping the flavor keeps the queue where it is (every pool is a candidate).
    assert await fresh.queues.set_metadata(P, "empty", {"x": 3}) is True
    assert await placement(fresh, "empty") == "gold-1"


# --- the virtual pool ----------------------------------------------------------------


async def test_virtual_pool_takes_queues_when_no_pool_can(
    pooled: Callable[..., PooledStorage],
) -> None:
    without = await pooled({})
    with pytest.raises(NoPoolFound):
        await without.queues.create(P, "q", {}, T0)
    with pytest.raises(NoPoolFound):
        await without.messages.post(P, "q", batch(1), CLIENT, T0)
    await without.close()
    storage = await pooled({}, virtual=True)
    assert await storage.queues.create(P, "q", {"m": 1}, T0)
    await storage.messages.post(P, "q", batch(1), CLIENT, T0)
    assert await bodies(storage, "q") == [b"1"]
    assert await placement(storage, "q") is None  # the virtual pool is no catalog pool
    assert [q.name for q in (await storage.queues.page(P, marker=None, limit=5)).queues] == ["q"]


# --- dead letters -------------------------------------------------------------------


async def test_a_dead_letter_queue_first_used_as_one_joins_its_source(
    pooled: Callable[..., PooledStorage],
) -> None:
    storage = await pooled({"a": (100, None), "b": (100, None)})
    policy = DeadLetterPolicy(max_claim_count=1, queue="dlq", message_ttl=120)
    await storage.messages.post(P, "q", batch(1), CLIENT, T0)
    first = await storage.claims.create(P, "q", claim(dead_letter=policy), T0)
    assert first is not None
    await storage.claims.release(P, "q", first.id, T0)
    assert await storage.claims.create(P, "q", claim(dead_letter=policy), T0 + 1) is None
    assert await placement(storage, "dlq") == await placement(storage, "q")
    moved = (await storage.messages.get(P, "dlq", [first.messages[0].id], T0 + 1))[0]
    assert (moved.body, moved.claim_count, moved.ttl) == (b"1", 1, 120)  # moved whole
    assert await storage.queues.get_metadata(P, "dlq") == {}  # listed once it holds some


async def test_dead_letters_are_forwarded_to_another_pool(
    pooled: Callable[..., PooledStorage],
) -> None:
    storage = await pooled({"a": (100, None), "b": (100, None)})
    await storage.queues.create(P, "dlq", {}, T0)
    await storage.queues.create(P, "q", {}, T0)
    await storage.catalog.placement_move(P, "dlq", "a")
    await storage.catalog.placement_move(P, "q", "b")
    storage = await pooled({"a": (100, None), "b": (100, None)})  # nothing cached
    policy = DeadLetterPolicy(max_claim_count=1, queue="dlq", message_ttl=120)
    await storage.messages.post(P, "dlq", batch(0), CLIENT, T0)
    await storage.messages.post(P, "q", batch(1, 2, ttl=1000), CLIENT, T0)
    first = await storage.claims.create(P, "q", claim(dead_letter=policy), T0)
    assert first is not None
    await storage.claims.release(P, "q", first.id, T0)
    assert await storage.claims.create(P, "q", claim(dead_letter=policy), T0 + 5) is None
    assert (await storage.queues.stats(P, "q", T0 + 5)).total == 0
    page = await storage.messages.page(
        P, "dlq", marker=None, limit=10, exclude_client=None,
        include_claimed=False, include_delayed=False, now=T0 + 5,
    )  # fmt: skip
    assert [m.body for m in page.messages] == [b"0", b"1", b"2"]
    assert [(m.ttl, m.expires, m.client_id) for m in page.messages[1:]] == [
        (120, T0 + 125, CLIENT)
    ] * 2
    pool_b = await storage.store_of(P, "q")
    assert pool_b is not None and await bodies(pool_b, shadow_queue("dlq"), T0 + 5) == []


async def test_dead_letters_wait_in_the_shadow_while_their_pool_is_down(
    pooled: Callable[..., PooledStorage], tmp_path: Path
) -> None:
    (tmp_path / "blocked").mkdir()
    storage = await pooled(
        {"a": (100, None), "down": (100, None)},
        uris={"down": f"sqlite:///{tmp_path / 'blocked'}"},  # a directory: cannot open
    )
    await storage.queues.create(P, "q", {}, T0)
    await storage.catalog.placement_move(P, "q", "a")
    await storage.catalog.placement_put(P, "dlq", "down")
    storage = await pooled(
        {"a": (100, None), "down": (100, None)},
        uris={"down": f"sqlite:///{tmp_path / 'blocked'}"},
    )  # nothing cached
    policy = DeadLetterPolicy(max_claim_count=0, queue="dlq")
    await storage.messages.post(P, "q", batch(1), CLIENT, T0)
    with pytest.raises(StorageError, match="pool down is unavailable"):
        await storage.messages.post(P, "dlq", batch(9), CLIENT, T0)
    # Its own queues fail; "q" keeps working, and holds the dead letter in its shadow.
    assert await storage.claims.create(P, "q", claim(dead_letter=policy), T0) is None
    assert (await storage.queues.stats(P, "q", T0)).total == 0
    pool_a = await storage.store_of(P, "q")
    assert pool_a is not None and await bodies(pool_a, shadow_queue("dlq")) == [b"1"]
    # The pool comes back (it is retried at most every REOPEN_INTERVAL): the next claim
    # of the source forwards what waited.
    (tmp_path / "blocked").rmdir()
    await eventually(lambda: storage.messages.post(P, "dlq", batch(9), CLIENT, T0), "pool up")
    assert await storage.claims.create(P, "q", claim(dead_letter=policy), T0 + 61) is None
    assert await bodies(storage, "dlq", T0 + 61) == [b"9", b"1"]
    assert await bodies(pool_a, shadow_queue("dlq"), T0 + 61) == []


async def eventually(attempt: Callable[[], Awaitable[object]], what: str) -> None:
    """Retry ``attempt`` while it raises StorageError, for 10 s at most."""
    deadline = time.monotonic() + 10
    while True:
        try:
            await attempt()
            return
        except StorageError:
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}") from None
            await asyncio.sleep(0.1)
