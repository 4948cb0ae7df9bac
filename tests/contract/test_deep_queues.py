"""Consumers never starve: free messages behind a deep head of unclaimable ones.

5,000 messages at the head of a queue are held in live claims, delayed, or expired but
not yet swept; 100 free messages are posted behind them. Every free message must still
be claimable, listable (without ``include_claimed``) and poppable, none of the 5,000
may come back, and no call may stop short because it walked past the head: the stores
keep an index of free, due messages instead of scanning.

Stats stay exact through claims, deletes, pops and expiry without counting the queue,
and a deep queue deleted or purged is gone at once while its rows may go later: a
queue made again under the same name starts empty and keeps what is posted to it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from tests.contract.leftovers import stored_rows
from tidings.model import ClaimRequest, NewMessage
from tidings.storage.base import Storage

pytestmark = pytest.mark.anyio

P = "project-deep"
Q = "deep"
T0 = 1_700_000_000.0
CLIENT = "33333333-3333-3333-3333-333333333333"
HEAD = 5_000
FREE = 100
STEP = 20
POST_BATCH = 1_000
LONG_TTL = 3_600
CLAIM = ClaimRequest(ttl=60, grace=60, limit=STEP)
FREE_BODIES = [f"free-{i}" for i in range(FREE)]


async def post(storage: Storage, bodies: list[str], now: float, ttl: int, delay: int = 0) -> None:
    for start in range(0, len(bodies), POST_BATCH):
        chunk = [
            NewMessage(body=body.encode(), ttl=ttl, delay=delay)
            for body in bodies[start : start + POST_BATCH]
        ]
        await storage.messages.post(P, Q, lambda _metadata, c=chunk: c, CLIENT, now)


async def held_head(storage: Storage) -> float:
    """5,000 messages in one live claim (one call takes them all on every store)."""
    await post(storage, [f"head-{i}" for i in range(HEAD)], T0, LONG_TTL)
    held = await storage.claims.create(P, Q, ClaimRequest(ttl=600, grace=60, limit=HEAD), T0)
    assert held is not None and len(held.messages) == HEAD
    await post(storage, FREE_BODIES, T0, LONG_TTL)
    return T0 + 1


async def delayed_head(storage: Storage) -> float:
    await post(storage, [f"head-{i}" for i in range(HEAD)], T0, LONG_TTL, delay=600)
    await post(storage, FREE_BODIES, T0, LONG_TTL)
    return T0 + 1


async def expired_head(storage: Storage) -> float:
    # Expired at T0 + 60; read at T0 + 120 without running the garbage collection.
    await post(storage, [f"head-{i}" for i in range(HEAD)], T0, 60)
    await post(storage, FREE_BODIES, T0, LONG_TTL)
    return T0 + 120


HEADS: dict[str, Callable[[Storage], Awaitable[float]]] = {
    "claimed": held_head,
    "delayed": delayed_head,
    "expired": expired_head,
}


@pytest.mark.parametrize("head", sorted(HEADS))
async def test_free_messages_behind_a_deep_head_are_claimable(
    storage: Storage, head: str
) -> None:
    now = await HEADS[head](storage)
    found: list[str] = []
    for _ in range(FREE // STEP):
        result = await storage.claims.create(P, Q, CLAIM, now)
        assert result is not None, f"claim found nothing after {len(found)} of {FREE}"
        found += [m.body.decode() for m in result.messages]
    assert found == FREE_BODIES
    assert await storage.claims.create(P, Q, CLAIM, now) is None


@pytest.mark.parametrize("head", sorted(HEADS))
async def test_free_messages_behind_a_deep_head_are_listable(storage: Storage, head: str) -> None:
    now = await HEADS[head](storage)
    found: list[str] = []
    marker: str | None = None
    for _ in range(FREE // STEP + 1):
        page = await storage.messages.page(
            P, Q, marker=marker, limit=STEP, exclude_client=None,
            include_claimed=False, include_delayed=False, now=now,
        )  # fmt: skip
        # Nothing walked past: every page is complete, never an empty "go on from here".
        assert page.resume_after is None, f"listing stopped short after {len(found)}"
        found += [m.body.decode() for m in page.messages]
        if len(page.messages) < STEP:
            break
        marker = page.messages[-1].marker
    assert found == FREE_BODIES


@pytest.mark.parametrize("head", sorted(HEADS))
async def test_free_messages_behind_a_deep_head_are_poppable(storage: Storage, head: str) -> None:
    now = await HEADS[head](storage)
    found: list[str] = []
    for _ in range(FREE // STEP):
        popped = await storage.messages.pop(P, Q, STEP, now)
        assert popped, f"pop found nothing after {len(found)} of {FREE}"
        found += [m.body.decode() for m in popped]
    assert found == FREE_BODIES
    assert await storage.messages.pop(P, Q, STEP, now) == []


# Stats behind each head: (total, claimed, body of the oldest, body of the newest).
HEAD_STATS = {
    "claimed": (HEAD + FREE, HEAD, "head-0", FREE_BODIES[-1]),
    "delayed": (HEAD + FREE, 0, "head-0", FREE_BODIES[-1]),
    "expired": (FREE, 0, FREE_BODIES[0], FREE_BODIES[-1]),
}


@pytest.mark.parametrize("head", sorted(HEADS))
async def test_stats_behind_a_deep_head_are_exact(storage: Storage, head: str) -> None:
    now = await HEADS[head](storage)
    stats = await storage.queues.stats(P, Q, now)
    assert stats.oldest is not None and stats.newest is not None
    ends = await storage.messages.get(P, Q, [stats.oldest.id, stats.newest.id], now)
    bodies = tuple(m.body.decode() for m in ends)
    assert (stats.total, stats.claimed, *bodies) == HEAD_STATS[head]


# --- stats, delete and purge: no cost grows with the queue, nothing is lost ----------

SP = "project-stats"
# More messages than one chunk of the default scan budget: a store that removes a deep
# queue's rows in chunks leaves some of these to its garbage collection.
DEEP = 1_500
GC_CALLS = 100


async def post_to(
    storage: Storage, bodies: list[str], now: float, ttl: int = LONG_TTL, delay: int = 0
) -> list[str]:
    ids: list[str] = []
    for start in range(0, len(bodies), POST_BATCH):
        chunk = [
            NewMessage(body=body.encode(), ttl=ttl, delay=delay)
            for body in bodies[start : start + POST_BATCH]
        ]
        ids += await storage.messages.post(SP, Q, lambda _metadata, c=chunk: c, CLIENT, now)
    return ids


async def counts(storage: Storage, now: float) -> tuple[int, int]:
    stats = await storage.queues.stats(SP, Q, now)
    return stats.total, stats.claimed


async def listed(storage: Storage, now: float) -> list[str]:
    page = await storage.messages.page(
        SP, Q, marker=None, limit=STEP, exclude_client=None,
        include_claimed=True, include_delayed=True, now=now,
    )  # fmt: skip
    return [m.body.decode() for m in page.messages]


async def collect_all(storage: Storage, now: float) -> None:
    """Run garbage collection until it finds nothing left to remove (bounded)."""
    for _ in range(GC_CALLS):
        if not await storage.collect_garbage(now):
            return
    raise AssertionError(f"garbage collection still busy after {GC_CALLS} calls")


async def test_stats_stay_exact_through_claims_deletes_pops_and_expiry(storage: Storage) -> None:
    assert await counts(storage, T0) == (0, 0)
    short = await post_to(storage, [f"short-{i}" for i in range(10)], T0, ttl=60)
    long = await post_to(storage, [f"long-{i}" for i in range(10)], T0)
    delayed = await post_to(storage, [f"delayed-{i}" for i in range(5)], T0, delay=100)
    assert await counts(storage, T0) == (25, 0)

    held = await storage.claims.create(SP, Q, ClaimRequest(ttl=30, grace=0, limit=5), T0 + 1)
    assert held is not None and [m.id for m in held.messages] == short[:5]
    assert await counts(storage, T0 + 2) == (25, 5)
    await storage.messages.delete_many(SP, Q, short[:2], [held.id], T0 + 2)
    assert await counts(storage, T0 + 2) == (23, 3)
    popped = await storage.messages.pop(SP, Q, 2, T0 + 2)
    assert [m.id for m in popped] == short[5:7]
    assert await counts(storage, T0 + 2) == (21, 3)
    await storage.messages.delete(SP, Q, short[7], None, T0 + 2)
    assert await counts(storage, T0 + 2) == (20, 3)

    # The claim lapsed at T0 + 31: its three messages are free again.
    assert await counts(storage, T0 + 40) == (20, 0)
    # The short ones expired at T0 + 60 and no sweep has run: they no longer count.
    assert await counts(storage, T0 + 61) == (15, 0)
    stats = await storage.queues.stats(SP, Q, T0 + 61)
    assert stats.oldest is not None and stats.oldest.id == long[0]
    assert stats.newest is not None and stats.newest.id == delayed[-1]

    again = await storage.claims.create(SP, Q, ClaimRequest(ttl=600, grace=0, limit=3), T0 + 61)
    assert again is not None and [m.id for m in again.messages] == long[:3]
    assert await counts(storage, T0 + 61) == (15, 3)
    assert await counts(storage, T0 + 200) == (15, 3)  # the delays ended meanwhile
    await storage.claims.release(SP, Q, again.id, T0 + 200)
    assert await counts(storage, T0 + 200) == (15, 0)
    await collect_all(storage, T0 + 200)
    assert await counts(storage, T0 + 200) == (15, 0)
    assert await counts(storage, T0 + LONG_TTL + 1) == (0, 0)

    await post_to(storage, ["after"], T0 + 200)
    await storage.queues.delete(SP, Q)
    assert await counts(storage, T0 + 200) == (0, 0)


async def test_a_queue_made_again_after_deleting_a_deep_one_starts_empty(storage: Storage) -> None:
    old = await post_to(storage, [f"old-{i}" for i in range(DEEP)], T0)
    held = await storage.claims.create(SP, Q, ClaimRequest(ttl=600, grace=60, limit=STEP), T0)
    assert held is not None
    await storage.queues.delete(SP, Q)
    assert await storage.queues.get_metadata(SP, Q) is None
    assert await counts(storage, T0 + 1) == (0, 0)
    assert await listed(storage, T0 + 1) == []
    assert await storage.messages.get(SP, Q, old[:3], T0 + 1) == []

    # Made again at once, before any clean-up: none of the old queue shows.
    await post_to(storage, ["new-0", "new-1", "new-2"], T0 + 1)
    assert await listed(storage, T0 + 1) == ["new-0", "new-1", "new-2"]
    assert await counts(storage, T0 + 1) == (3, 0)
    assert await storage.messages.get(SP, Q, old[:3], T0 + 1) == []
    assert await storage.claims.get(SP, Q, held.id, T0 + 1) is None

    # The old rows go with garbage collection; nothing of the new queue goes with them.
    await collect_all(storage, T0 + 2)
    assert await stored_rows(storage, SP, [Q]) == (3, 0)
    assert await listed(storage, T0 + 2) == ["new-0", "new-1", "new-2"]
    assert await counts(storage, T0 + 2) == (3, 0)
    taken = await storage.claims.create(SP, Q, CLAIM, T0 + 2)
    assert taken is not None and [m.body for m in taken.messages] == [b"new-0", b"new-1", b"new-2"]


async def test_purging_a_deep_queue_keeps_the_queue_and_what_comes_after(
    storage: Storage,
) -> None:
    await storage.queues.create(SP, Q, {"m": 1}, T0)
    await post_to(storage, [f"old-{i}" for i in range(DEEP)], T0)
    held = await storage.claims.create(SP, Q, ClaimRequest(ttl=600, grace=60, limit=STEP), T0)
    assert held is not None
    await storage.queues.purge_messages(SP, Q)
    assert await storage.queues.get_metadata(SP, Q) == {"m": 1}
    assert await counts(storage, T0 + 1) == (0, 0)
    assert await listed(storage, T0 + 1) == []
    assert await storage.claims.get(SP, Q, held.id, T0 + 1) is None

    await post_to(storage, ["new-0", "new-1"], T0 + 1)
    assert await listed(storage, T0 + 1) == ["new-0", "new-1"]
    await collect_all(storage, T0 + 2)
    assert await stored_rows(storage, SP, [Q]) == (2, 0)
    assert await listed(storage, T0 + 2) == ["new-0", "new-1"]
    assert await counts(storage, T0 + 2) == (2, 0)
    # A second purge, of a small queue now, and a delete leave nothing either.
    await storage.queues.purge_messages(SP, Q)
    assert await counts(storage, T0 + 2) == (0, 0)
    await post_to(storage, ["last"], T0 + 2)
    await storage.queues.delete(SP, Q)
    await collect_all(storage, T0 + 3)
    assert await stored_rows(storage, SP, [Q]) == (0, 0)
