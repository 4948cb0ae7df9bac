"""The pooled-mode catalog every driver offers (``tidings.storage.catalog``)."""

from __future__ import annotations

import asyncio

import pytest

from tidings.model import FlavorRecord, PoolRecord
from tidings.storage.base import Storage
from tidings.storage.catalog import MAX_POOLS, PoolInUse, PoolUriTaken, TooManyPools

pytestmark = pytest.mark.anyio

P = "project-a"
OTHER = "project-b"


def pool(name: str, uri: str | None = None, weight: int = 100, **extra: object) -> PoolRecord:
    return PoolRecord(name=name, uri=uri or f"redis://h/{name}", weight=weight, **extra)  # type: ignore[arg-type]


async def names(storage: Storage) -> list[str]:
    return [p.name for p in await storage.catalog.pools()]


# --- pools --------------------------------------------------------------------------


async def test_pool_put_creates_then_replaces(storage: Storage) -> None:
    catalog = storage.catalog
    assert await catalog.pool_get("a") is None
    assert await catalog.pool_put(pool("a", "sqlite:///one.db", 10)) is True
    assert await catalog.pool_get("a") == pool("a", "sqlite:///one.db", 10)
    replaced = pool(
        "a",
        "sqlite:///two.db",
        20,
        flavor="gold",
        options={"pool_size": 5, "nested": {"x": [1, "y", None]}, "big": 2**40},
    )
    assert await catalog.pool_put(replaced) is False
    assert await catalog.pool_get("a") == replaced
    assert await catalog.pool_put(pool("a", "sqlite:///two.db", 20)) is False
    assert (await catalog.pool_get("a")) == pool("a", "sqlite:///two.db", 20)  # flavor gone
    assert await names(storage) == ["a"]


async def test_pools_page_in_name_order(storage: Storage) -> None:
    catalog = storage.catalog
    for name in ("p-c", "p-a", "p-d", "p-b"):
        await catalog.pool_put(pool(name))
    assert await names(storage) == ["p-a", "p-b", "p-c", "p-d"]
    first = await catalog.pool_page(None, 2)
    assert [p.name for p in first] == ["p-a", "p-b"]
    assert first[0] == pool("p-a")
    assert [p.name for p in await catalog.pool_page("p-b", 2)] == ["p-c", "p-d"]
    assert [p.name for p in await catalog.pool_page("p-bb", 10)] == ["p-c", "p-d"]
    assert await catalog.pool_page("p-d", 10) == []
    assert await catalog.pool_page(None, 0) == []


async def test_a_uri_belongs_to_one_pool(storage: Storage) -> None:
    catalog = storage.catalog
    await catalog.pool_put(pool("a", "redis://one"))
    with pytest.raises(PoolUriTaken) as taken:
        await catalog.pool_put(pool("b", "redis://one"))
    assert (taken.value.uri, taken.value.pool) == ("redis://one", "a")
    assert await catalog.pool_get("b") is None
    await catalog.pool_put(pool("b", "redis://two"))
    with pytest.raises(PoolUriTaken):  # replacing another pool with the URI
        await catalog.pool_put(pool("b", "redis://one", 5))
    assert await catalog.pool_get("b") == pool("b", "redis://two")
    # A pool that moves to another URI frees its old one.
    await catalog.pool_put(pool("a", "redis://three"))
    assert await catalog.pool_put(pool("c", "redis://one")) is True
    # So does a deleted pool.
    await catalog.pool_delete("a")
    assert await catalog.pool_put(pool("d", "redis://three")) is True


async def test_concurrent_creates_with_one_uri_admit_one(
    storage: Storage, twin_storage: Storage
) -> None:
    outcomes = await asyncio.gather(
        *(
            node.catalog.pool_put(pool(f"n{i}", "redis://shared"))
            for i, node in enumerate([storage, twin_storage] * 3)
        ),
        return_exceptions=True,
    )
    assert sorted(type(o).__name__ for o in outcomes) == ["PoolUriTaken"] * 5 + ["bool"]
    (winner,) = await storage.catalog.pools()
    assert all(o.pool == winner.name for o in outcomes if isinstance(o, PoolUriTaken))


async def test_pools_set_flavor(storage: Storage) -> None:
    catalog = storage.catalog
    for name in ("a", "b", "c"):
        await catalog.pool_put(pool(name))
    await catalog.pools_set_flavor(["a", "c", "missing"], "gold")
    assert [p.flavor for p in await catalog.pools()] == ["gold", None, "gold"]
    assert await catalog.pool_get("missing") is None
    await catalog.pools_set_flavor(["c"], None)
    await catalog.pools_set_flavor([], "silver")
    assert [p.flavor for p in await catalog.pools()] == ["gold", None, None]
    assert (await catalog.pool_get("a")) == pool("a", flavor="gold")


async def test_pool_delete_refused_while_queues_are_placed(storage: Storage) -> None:
    catalog = storage.catalog
    await catalog.pool_put(pool("a"))
    await catalog.pool_put(pool("b"))
    await catalog.pool_delete("never-created")  # nothing to do
    for queue in ("q1", "q2", "q3"):
        await catalog.placement_put(P, queue, "a")
    await catalog.placement_put(OTHER, "q1", "a")
    with pytest.raises(PoolInUse) as in_use:
        await catalog.pool_delete("a")
    assert (in_use.value.pool, in_use.value.queues) == ("a", 4)
    assert await catalog.pool_get("a") == pool("a")
    await catalog.placement_delete(P, "q1")
    await catalog.placement_move(P, "q2", "b")
    await catalog.placement_delete(OTHER, "q1")
    with pytest.raises(PoolInUse) as in_use:
        await catalog.pool_delete("a")
    assert in_use.value.queues == 1
    await catalog.placement_move(P, "q3", "b")
    await catalog.pool_delete("a")
    assert await catalog.pool_get("a") is None
    assert await names(storage) == ["b"]
    assert await catalog.placement_count("a") == 0
    with pytest.raises(PoolInUse):
        await catalog.pool_delete("b")


async def test_pool_uri_cannot_change_while_queues_are_placed(storage: Storage) -> None:
    catalog = storage.catalog
    await catalog.pool_put(pool("a", "redis://one"))
    await catalog.pool_put(pool("b", "redis://two"))
    for queue in ("q1", "q2"):
        await catalog.placement_put(P, queue, "a")
    await catalog.placement_put(OTHER, "q1", "a")
    with pytest.raises(PoolInUse) as in_use:
        await catalog.pool_put(pool("a", "redis://elsewhere", 5, flavor="gold"))
    assert (in_use.value.pool, in_use.value.queues) == ("a", 3)
    assert await catalog.pool_get("a") == pool("a", "redis://one")  # nothing changed
    # The refused URI was not claimed either.
    assert await catalog.pool_put(pool("c", "redis://elsewhere")) is True
    await catalog.pool_delete("c")
    # Same URI: weight, flavor and options may change while queues are placed.
    same = pool("a", "redis://one", 7, flavor="gold", options={"pool_size": 3})
    assert await catalog.pool_put(same) is False
    assert await catalog.pool_get("a") == same
    assert await catalog.placement_count("a") == 3
    # Fewer queues: still refused, with the count.
    await catalog.placement_move(P, "q1", "b")
    await catalog.placement_delete(P, "q2")
    with pytest.raises(PoolInUse) as in_use:
        await catalog.pool_put(pool("a", "redis://elsewhere"))
    assert in_use.value.queues == 1
    # No queue left: the URI may change, and the old one is free again.
    await catalog.placement_delete(OTHER, "q1")
    assert await catalog.pool_put(pool("a", "redis://elsewhere")) is False
    assert await catalog.pool_get("a") == pool("a", "redis://elsewhere")
    assert await catalog.pool_put(pool("c", "redis://one")) is True
    # Placed again under its new URI, it is pinned to that one.
    await catalog.placement_put(P, "q3", "a")
    with pytest.raises(PoolInUse):
        await catalog.pool_put(pool("a", "redis://three"))
    assert await catalog.pool_get("a") == pool("a", "redis://elsewhere")


async def test_uri_change_racing_placements_strands_nothing(
    storage: Storage, twin_storage: Storage
) -> None:
    """A pool moved to another URI while queues are being placed on it. Each placer reads
    the pool's URI right after its placement returned: a placer that saw the old URI
    holds a placement made against it, which existed before the new URI (if any) was
    committed, so the change must have been refused. When the change went through,
    every placement came after it and every placer saw the new URI.

    The placers start a few event-loop turns after the change, a different number each
    round, so some placements are in flight while the change checks the pool (with the
    check and the write split apart, PostgreSQL fails this in most runs)."""
    nodes = [storage, twin_storage]
    for attempt in range(10):
        name, old, new = f"a{attempt}", f"redis://old/{attempt}", f"redis://new/{attempt}"
        await storage.catalog.pool_put(pool(name, old))

        async def place(node: Storage, queue: str, turns: int, name: str = name) -> str:
            for _ in range(turns):  # stagger, not a wait for anything
                await asyncio.sleep(0)
            assert await node.catalog.placement_put(P, queue, name) == name
            found = await node.catalog.pool_get(name)
            assert found is not None
            return found.uri

        placers = [place(nodes[i % 2], f"{name}-q{i}", attempt + i) for i in range(8)]
        changed, *seen = await asyncio.gather(
            nodes[attempt % 2].catalog.pool_put(pool(name, new)),
            *placers,
            return_exceptions=True,
        )
        assert all(isinstance(o, str) for o in seen), seen
        assert await storage.catalog.placement_count(name) == len(placers)
        if changed is False:
            assert seen == [new] * len(placers)
            assert await storage.catalog.pool_get(name) == pool(name, new)
        else:
            assert isinstance(changed, PoolInUse), changed
            assert 0 < changed.queues <= len(placers)
            assert seen == [old] * len(placers)
            assert await storage.catalog.pool_get(name) == pool(name, old)


async def test_too_many_pools(storage: Storage) -> None:
    catalog = storage.catalog
    # Ten at a time: a thousand at once would queue for the store's connections past
    # the operation timeout on a loaded machine.
    for start in range(0, MAX_POOLS, 10):
        chunk = range(start, min(start + 10, MAX_POOLS))
        await asyncio.gather(*(catalog.pool_put(pool(f"p{i:04}")) for i in chunk))
    with pytest.raises(TooManyPools):
        await catalog.pool_put(pool("one-more"))
    # Replacing one is no new pool; and pools() holds them all, in order.
    assert await catalog.pool_put(pool("p0000", weight=1)) is False
    found = await catalog.pools()
    assert [p.name for p in found] == [f"p{i:04}" for i in range(MAX_POOLS)]
    assert len(await catalog.pool_page(None, MAX_POOLS + 10)) == MAX_POOLS
    await catalog.pool_delete("p0500")
    assert await catalog.pool_put(pool("one-more")) is True


# --- flavors ------------------------------------------------------------------------


async def test_flavors_belong_to_a_project(storage: Storage) -> None:
    catalog = storage.catalog
    assert await catalog.flavor_put(FlavorRecord(project=P, name="gold")) is True
    assert await catalog.flavor_put(FlavorRecord(project=P, name="gold")) is False
    assert await catalog.flavor_get(P, "gold") == FlavorRecord(project=P, name="gold")
    assert await catalog.flavor_get(OTHER, "gold") is None
    assert await catalog.flavor_page(OTHER, None, 10) == []
    assert await catalog.flavor_put(FlavorRecord(project=OTHER, name="gold")) is True
    for name in ("silver", "bronze"):
        await catalog.flavor_put(FlavorRecord(project=P, name=name))

    async def page(marker: str | None, limit: int) -> list[str]:
        return [f.name for f in await catalog.flavor_page(P, marker, limit)]

    assert await page(None, 10) == ["bronze", "gold", "silver"]
    assert await page(None, 2) == ["bronze", "gold"]
    assert await page("gold", 2) == ["silver"]
    assert await page(None, 0) == []
    await catalog.flavor_delete(P, "gold")
    await catalog.flavor_delete(P, "never-created")
    assert await catalog.flavor_get(P, "gold") is None
    assert await catalog.flavor_get(OTHER, "gold") == FlavorRecord(project=OTHER, name="gold")
    assert await page(None, 10) == ["bronze", "silver"]


# --- placements ---------------------------------------------------------------------


async def test_placement_is_insert_if_absent(storage: Storage) -> None:
    catalog = storage.catalog
    await catalog.pool_put(pool("a"))
    await catalog.pool_put(pool("b"))
    assert await catalog.placement_get(P, "q") is None
    assert await catalog.placement_put(P, "q", "a") == "a"
    assert await catalog.placement_put(P, "q", "b") == "a"
    assert await catalog.placement_get(P, "q") == "a"
    # Projects are apart: the same queue name elsewhere is placed on its own.
    assert await catalog.placement_get(OTHER, "q") is None
    assert await catalog.placement_put(OTHER, "q", "b") == "b"
    assert (await catalog.placement_count("a"), await catalog.placement_count("b")) == (1, 1)
    assert await catalog.placement_count("never-created") == 0


async def test_placing_on_an_unknown_pool_fails(storage: Storage) -> None:
    catalog = storage.catalog
    with pytest.raises(LookupError):
        await catalog.placement_put(P, "q", "missing")
    assert await catalog.placement_get(P, "q") is None
    await catalog.pool_put(pool("a"))
    await catalog.placement_put(P, "q", "a")
    # Placed already: the answer is where it is, whatever pool was asked for.
    assert await catalog.placement_put(P, "q", "missing") == "a"
    with pytest.raises(LookupError):
        await catalog.placement_move(P, "q", "missing")
    assert await catalog.placement_get(P, "q") == "a"
    assert await catalog.placement_count("a") == 1
    assert await catalog.placement_count("missing") == 0


async def test_move_and_delete_keep_counts(storage: Storage) -> None:
    catalog = storage.catalog
    await catalog.pool_put(pool("a"))
    await catalog.pool_put(pool("b"))
    for queue in ("q1", "q2", "q3"):
        await catalog.placement_put(P, queue, "a")
    await catalog.placement_move(P, "q1", "b")
    await catalog.placement_move(P, "q1", "b")  # already there
    await catalog.placement_move(P, "fresh", "b")  # never placed: placed now
    assert await catalog.placement_get(P, "q1") == "b"
    assert await catalog.placement_get(P, "fresh") == "b"
    assert (await catalog.placement_count("a"), await catalog.placement_count("b")) == (2, 2)
    await catalog.placement_delete(P, "q2")
    await catalog.placement_delete(P, "q2")  # gone already
    await catalog.placement_delete(P, "never-placed")
    assert await catalog.placement_get(P, "q2") is None
    assert (await catalog.placement_count("a"), await catalog.placement_count("b")) == (1, 2)
    # A deleted placement can be made again, on another pool.
    assert await catalog.placement_put(P, "q2", "b") == "b"
    assert (await catalog.placement_count("a"), await catalog.placement_count("b")) == (1, 3)


async def test_concurrent_placements_agree(storage: Storage, twin_storage: Storage) -> None:
    """Two nodes placing the same new queues at once agree on one pool for each."""
    await storage.catalog.pool_put(pool("a"))
    await storage.catalog.pool_put(pool("b"))
    queues = [f"q{i}" for i in range(10)]
    first = asyncio.gather(*(storage.catalog.placement_put(P, q, "a") for q in queues))
    second = asyncio.gather(*(twin_storage.catalog.placement_put(P, q, "b") for q in queues))
    third = asyncio.gather(*(storage.catalog.placement_put(P, q, "b") for q in queues))
    answers = await asyncio.gather(first, second, third)
    for i, queue in enumerate(queues):
        placed = await storage.catalog.placement_get(P, queue)
        assert [answer[i] for answer in answers] == [placed] * 3
    counts = [await storage.catalog.placement_count(p) for p in ("a", "b")]
    assert sum(counts) == len(queues)


async def test_delete_racing_placements_strands_nothing(
    storage: Storage, twin_storage: Storage
) -> None:
    """A pool deleted while queues are being placed on it: either the delete is refused,
    or every placement on it failed; no placement names a pool that is gone."""
    await storage.catalog.pool_put(pool("a"))
    queues = [f"q{i}" for i in range(6)]
    places = [twin_storage.catalog.placement_put(P, q, "a") for q in queues]
    outcomes = await asyncio.gather(
        *places[:3], storage.catalog.pool_delete("a"), *places[3:], return_exceptions=True
    )
    deleted = outcomes.pop(3)
    assert all(o == "a" or isinstance(o, LookupError) for o in outcomes), outcomes
    placed = {q for q, o in zip(queues, outcomes, strict=True) if o == "a"}
    count = await storage.catalog.placement_count("a")
    if deleted is None:
        assert await storage.catalog.pool_get("a") is None
        assert placed == set() and count == 0
    else:
        assert isinstance(deleted, PoolInUse), deleted
        assert await storage.catalog.pool_get("a") == pool("a")
        assert count == len(placed) >= deleted.queues > 0
    for queue in queues:
        expected = "a" if queue in placed else None
        assert await storage.catalog.placement_get(P, queue) == expected
