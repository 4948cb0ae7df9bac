"""Deleting or purging a deep queue holds the SQLite writer, or a PostgreSQL transaction,
for one bounded chunk at a time.

With a scan budget of 100, the call removes a queue of at most 100 messages and 100
claims at once, and only retires a deeper one (its counters say how deep); each
garbage-collection step then removes at most one chunk of each, in a write job (a
transaction) of its own. Work is asserted by counting rows, never by timing. Redis
needs no chunks: its queue keys are unlinked, and freed off the main thread.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests import backends
from tests.contract.leftovers import stored_rows
from tidings.config import StorageSettings
from tidings.model import ClaimRequest, NewMessage
from tidings.storage.postgres.driver import PostgresStorage
from tidings.storage.sqlite.driver import SQLiteStorage

pytestmark = pytest.mark.anyio

BUDGET = 100
DEEP = 250
CLAIMS = 120  # one message each: more claims than a chunk too
P = "project-chunks"
Q = "deep"
T0 = 1_700_000_000.0
CLIENT = "44444444-4444-4444-4444-444444444444"
STEPS = 10

Store = SQLiteStorage | PostgresStorage


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        lite = SQLiteStorage(tmp_path / "chunks.db", scan_budget=BUDGET)
        await lite.open()
        try:
            yield lite
        finally:
            await lite.close()
        return
    schema = backends.unique_name("k")
    settings = StorageSettings(operation_timeout=10.0, scan_budget=BUDGET)
    pg = PostgresStorage.from_uri(backends.postgres_store_uri(schema), settings)
    await pg.open()
    try:
        yield pg
    finally:
        await pg.close()
        await backends.drop_postgres_schema(schema)


async def deep_queue(store: Store) -> None:
    """DEEP messages, CLAIMS of them held by as many claims."""
    batch = [NewMessage(body=f'"m{i}"'.encode(), ttl=3600) for i in range(DEEP)]
    await store.messages.post(P, Q, lambda _metadata: batch, CLIENT, T0)
    for _ in range(CLAIMS):
        held = await store.claims.create(P, Q, ClaimRequest(ttl=600, grace=60, limit=1), T0)
        assert held is not None


async def collect_in_steps(store: Store) -> list[tuple[int, int]]:
    """Run the retired-key clean-up one step at a time: (messages, claims) each removed."""
    removed: list[tuple[int, int]] = []
    for _ in range(STEPS):
        before = await stored_rows(store, P, [Q])
        went, more = await store.remove_retired_chunk()
        after = await stored_rows(store, P, [Q])
        step = (before[0] - after[0], before[1] - after[1])
        assert went == sum(step)
        removed.append(step)
        if not more:
            return removed
    raise AssertionError(f"the clean-up was not done after {STEPS} steps: {removed}")


async def test_a_deep_delete_removes_one_chunk_and_collection_one_per_step(store: Store) -> None:
    await deep_queue(store)
    await store.queues.delete(P, Q)
    # The call removed nothing of a queue that deep: it is all left to collection.
    assert await stored_rows(store, P, [Q]) == (DEEP, CLAIMS)
    fresh = [NewMessage(body=b'"new"', ttl=3600)] * 3
    await store.messages.post(P, Q, lambda _metadata: fresh, CLIENT, T0 + 1)

    steps = await collect_in_steps(store)
    assert all(messages <= BUDGET and claims <= BUDGET for messages, claims in steps)
    assert steps == [(BUDGET, BUDGET), (BUDGET, CLAIMS - BUDGET), (DEEP - 2 * BUDGET, 0), (0, 0)]
    # The queue made again meanwhile lost nothing.
    assert await stored_rows(store, P, [Q]) == (3, 0)
    assert (await store.queues.stats(P, Q, T0 + 2)).total == 3


async def test_a_deep_purge_removes_one_chunk_and_collection_one_per_step(store: Store) -> None:
    await deep_queue(store)
    await store.queues.purge_messages(P, Q)
    assert await stored_rows(store, P, [Q]) == (DEEP, CLAIMS)
    assert (await store.queues.stats(P, Q, T0 + 1)).total == 0
    fresh = [NewMessage(body=b'"new"', ttl=3600)] * 2
    await store.messages.post(P, Q, lambda _metadata: fresh, CLIENT, T0 + 1)

    steps = await collect_in_steps(store)
    assert steps == [(BUDGET, BUDGET), (BUDGET, CLAIMS - BUDGET), (DEEP - 2 * BUDGET, 0), (0, 0)]
    assert await stored_rows(store, P, [Q]) == (2, 0)
    assert (await store.queues.stats(P, Q, T0 + 2)).total == 2


async def test_a_small_queue_goes_at_once(store: Store) -> None:
    batch = [NewMessage(body=b'"m"', ttl=3600)] * (BUDGET - 1)
    await store.messages.post(P, Q, lambda _metadata: batch, CLIENT, T0)
    for _ in range(BUDGET - 1):
        assert await store.claims.create(P, Q, ClaimRequest(ttl=600, grace=60, limit=1), T0)
    await store.queues.delete(P, Q)
    assert await stored_rows(store, P, [Q]) == (0, 0)
    assert await store.remove_retired_chunk() == (0, False)  # nothing was left to collect
