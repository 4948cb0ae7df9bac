"""The SQLite store's free, due index: settling is bounded, reads never walk the head.

The store runs with ``scan_budget`` at 100, so a few hundred rows show what a deep
queue would: a claim or listing examines messages_ready alone, and settling (deleting
expired messages, releasing lapsed claims, readying ended delays) moves at most
``SETTLE_CHUNKS`` chunks of the budget per kind and call. Work is checked by counting
rows and commits, never by timing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tidings.model import ClaimRequest, ClaimResult, Message, NewMessage
from tidings.storage.base import MessageListing, PreparePost
from tidings.storage.sqlite import driver
from tidings.storage.sqlite.driver import SQLiteStorage

pytestmark = pytest.mark.anyio

BUDGET = 100
P = "project-a"
Q = "queue-1"
T0 = 1_700_000_000.0
CLIENT = "11111111-1111-1111-1111-111111111111"
OTHER = "22222222-2222-2222-2222-222222222222"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStorage]:
    opened = SQLiteStorage(tmp_path / "settle.db", scan_budget=BUDGET)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def batch(*bodies: int, ttl: int = 300, delay: int = 0) -> PreparePost:
    messages = [NewMessage(body=str(b).encode(), ttl=ttl, delay=delay) for b in bodies]
    return lambda _metadata: messages


def claim(limit: int = 10, ttl: int = 60) -> ClaimRequest:
    return ClaimRequest(ttl=ttl, grace=60, limit=limit)


async def page(store: SQLiteStorage, now: float = T0, **options: Any) -> MessageListing:
    params: dict[str, Any] = {
        "marker": None, "limit": 20, "exclude_client": None,
        "include_claimed": False, "include_delayed": False, "now": now,
    }  # fmt: skip
    params.update(options)
    return await store.messages.page(P, Q, **params)


def bodies(found: MessageListing | ClaimResult | list[Message] | None) -> list[str]:
    if found is None:
        return []
    messages = found if isinstance(found, list) else found.messages
    return [m.body.decode() for m in messages]


def rows(store: SQLiteStorage, where: str = "1") -> int:
    with sqlite3.connect(store.path) as db:
        return int(db.execute(f"SELECT count(*) FROM messages WHERE {where}").fetchone()[0])


def data_version(db: sqlite3.Connection) -> int:
    """Changes when another connection commits to the file."""
    return int(db.execute("PRAGMA data_version").fetchone()[0])


async def test_a_delayed_head_is_never_walked(store: SQLiteStorage) -> None:
    await store.messages.post(P, Q, batch(*range(BUDGET + 50), delay=30), CLIENT, T0)
    await store.messages.post(P, Q, batch(-1, -2, -3), CLIENT, T0)
    assert bodies(await page(store)) == ["-1", "-2", "-3"]
    assert bodies(await store.messages.pop(P, Q, 1, T0)) == ["-1"]
    assert bodies(await store.claims.create(P, Q, claim(), T0)) == ["-2", "-3"]
    # Listed with delayed ones, the queue is in post order, page after page.
    marker, seen = None, []
    for _ in range(20):  # bounded: 150 messages take 8 pages of 20
        found = await page(store, include_delayed=True, marker=marker)
        seen += bodies(found)
        if not found.messages:
            break
        marker = found.resume_after or found.messages[-1].marker
    assert seen == [str(n) for n in range(BUDGET + 50)]
    # Once the delay is over, they are claimed oldest first and leave the delayed index.
    result = await store.claims.create(P, Q, claim(limit=3), T0 + 30)
    assert bodies(result) == ["0", "1", "2"]
    assert rows(store, "ready = 0") == 0


async def test_an_expired_head_is_deleted_by_the_claim_that_meets_it(
    store: SQLiteStorage,
) -> None:
    await store.messages.post(P, Q, batch(*range(BUDGET + 50), ttl=60), CLIENT, T0)
    await store.messages.post(P, Q, batch(-1), CLIENT, T0)
    assert bodies(await store.claims.create(P, Q, claim(), T0 + 61)) == ["-1"]
    assert rows(store) == 1  # the sweep has nothing left to do in this queue
    assert await store.collect_garbage(T0 + 61) == 0


async def test_lapsed_claims_come_back_in_queue_order(store: SQLiteStorage) -> None:
    await store.messages.post(P, Q, batch(*range(BUDGET + 50)), CLIENT, T0)
    await store.messages.post(P, Q, batch(-1, -2), CLIENT, T0)
    for _ in range(3):
        assert await store.claims.create(P, Q, claim(limit=50, ttl=30), T0) is not None
    assert bodies(await page(store)) == ["-1", "-2"]
    # The claims lapsed: their messages are free again, before the never-claimed ones.
    assert bodies(await store.claims.create(P, Q, claim(limit=2), T0 + 31)) == ["0", "1"]
    assert bodies(await page(store, now=T0 + 31, limit=3)) == ["2", "3", "4"]
    assert (await store.queues.stats(P, Q, T0 + 31)).claimed == 2


async def test_each_settle_is_bounded_and_the_next_call_goes_on(store: SQLiteStorage) -> None:
    most = BUDGET * driver.SETTLE_CHUNKS
    await store.messages.post(P, Q, batch(*range(most + 150), ttl=60), CLIENT, T0)
    await store.messages.post(P, Q, batch(-1), CLIENT, T0)
    # One call deletes at most SETTLE_CHUNKS chunks; what it leaves fills the read's
    # window, so it finds nothing yet (and returns nothing wrong).
    assert await store.claims.create(P, Q, claim(), T0 + 61) is None
    assert rows(store) == 150 + 1
    assert bodies(await store.claims.create(P, Q, claim(), T0 + 61)) == ["-1"]
    assert rows(store) == 1


async def test_listing_writes_only_when_something_is_due(store: SQLiteStorage) -> None:
    await store.messages.post(P, Q, batch(1, 2, ttl=60), CLIENT, T0)
    await store.messages.post(P, Q, batch(3, delay=30), CLIENT, T0)
    await store.messages.post(P, Q, batch(4, ttl=300), CLIENT, T0)
    with sqlite3.connect(store.path) as observer:
        before = data_version(observer)
        assert bodies(await page(store, now=T0 + 10)) == ["1", "2", "4"]
        assert (await store.queues.stats(P, Q, T0 + 10)).total == 4
        assert data_version(observer) == before  # nothing to settle: no write
        # Delay over and two expired: the listing settles them (one write), then reads.
        assert bodies(await page(store, now=T0 + 61)) == ["3", "4"]
        assert data_version(observer) != before
        assert rows(store) == 2 and rows(store, "ready = 0") == 0


async def test_a_full_window_of_own_delayed_messages_skips_nothing(
    store: SQLiteStorage,
) -> None:
    # Echo off: the caller's own delayed messages fill the delayed window, while the
    # ready window reaches messages past it. The page must stop at the full window's
    # end, or the others' delayed messages in between would be skipped.
    await store.messages.post(P, Q, batch(*range(BUDGET + 50), delay=30), CLIENT, T0)
    await store.messages.post(P, Q, batch(-1, -2, delay=30), OTHER, T0)
    await store.messages.post(P, Q, batch(-3, -4), OTHER, T0)
    options: dict[str, Any] = {"exclude_client": CLIENT, "include_delayed": True}
    first = await page(store, **options)
    assert bodies(first) == [] and first.resume_after is not None
    second = await page(store, marker=first.resume_after, **options)
    assert bodies(second) == ["-1", "-2", "-3", "-4"]


async def test_stats_see_past_an_expired_head(store: SQLiteStorage) -> None:
    await store.messages.post(P, Q, batch(*range(BUDGET + 50), ttl=60), CLIENT, T0)
    ids = await store.messages.post(P, Q, batch(-1, -2), CLIENT, T0)
    stats = await store.queues.stats(P, Q, T0 + 61)
    assert (stats.total, stats.claimed) == (2, 0)
    assert stats.oldest is not None and stats.oldest.id == ids[0]
    assert stats.newest is not None and stats.newest.id == ids[1]
