"""Consumers never starve: free messages behind a deep head of unclaimable ones.

5,000 messages at the head of a queue are held in live claims, delayed, or expired but
not yet swept; 100 free messages are posted behind them. Every free message must still
be claimable, listable (without ``include_claimed``) and poppable, none of the 5,000
may come back, and no call may stop short because it walked past the head: the stores
keep an index of free, due messages instead of scanning.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

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
