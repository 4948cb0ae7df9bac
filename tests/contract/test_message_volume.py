"""Health's message volume: every driver counts live and claimed messages across its
queues from counters and indexes, and says when its queue budget cut the count short."""

from __future__ import annotations

import pytest

from tests.contract.conftest import SETTINGS, storage_from_uri
from tests.contract.test_storage_contract import CLIENT, T0, batch, claim
from tidings.storage.base import Audience, Storage

pytestmark = pytest.mark.anyio

SMALL_BUDGET = 100  # the least [storage] scan_budget allows


async def post(storage: Storage, project: str, queue: str, count: int) -> list[str]:
    return await storage.messages.post(
        project, queue, batch(*range(count)), CLIENT, T0, Audience.NOBODY
    )


async def test_counts_messages_across_queues_and_projects(storage: Storage) -> None:
    empty = await storage.message_volume(T0)
    assert (empty.total, empty.claimed, empty.free, empty.complete) == (0, 0, 0, True)

    await post(storage, "project-a", "q1", 3)
    await post(storage, "project-a", "q2", 2)
    await post(storage, "project-b", "q1", 4)
    held = await storage.claims.create("project-b", "q1", claim(limit=3), T0)
    assert held is not None and len(held.messages) == 3

    volume = await storage.message_volume(T0 + 1)
    assert (volume.total, volume.claimed, volume.free, volume.complete) == (9, 3, 6, True)

    await storage.claims.release("project-b", "q1", held.id, T0 + 2)
    first = held.messages[0].id
    await storage.messages.delete("project-b", "q1", first, None, T0 + 2)
    await storage.queues.delete("project-a", "q2")
    volume = await storage.message_volume(T0 + 3)
    assert (volume.total, volume.claimed, volume.free) == (6, 0, 6)


async def test_budget_bounds_the_queues_counted(store_uri: str) -> None:
    store = storage_from_uri(
        store_uri, SETTINGS.__class__(operation_timeout=5.0, scan_budget=SMALL_BUDGET)
    )
    await store.open()
    try:
        for n in range(SMALL_BUDGET):
            await store.queues.create("project-a", f"q{n:03d}", {}, T0)
        await post(store, "project-a", "q000", 2)
        exact = await store.message_volume(T0)
        assert (exact.total, exact.complete) == (2, True)

        await store.queues.create("project-b", "one-too-many", {}, T0)
        partial = await store.message_volume(T0)
        assert not partial.complete
        assert partial.total <= 2
    finally:
        await store.close()
