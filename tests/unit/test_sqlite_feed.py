"""The SQLite change feed's own rules: what goes into ``feed_events`` and ``feed_relay``,
how they are pruned, the bound on what one look reads, and index probes for
``next_ready``. (The behaviour every driver shares is in tests/contract/test_feed.py.)
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tidings.model import ClaimRequest, NewMessage
from tidings.storage.base import PreparePost
from tidings.storage.sqlite import feed
from tidings.storage.sqlite.driver import SQLiteStorage

pytestmark = pytest.mark.anyio

P = "project-a"
Q = "queue-1"
T0 = 1_700_000_000.0
CLIENT = "11111111-1111-1111-1111-111111111111"
SIGNAL_BOUND = 10.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStorage]:
    opened = SQLiteStorage(tmp_path / "feed.db")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def batch(*bodies: int, delay: int = 0) -> PreparePost:
    messages = [NewMessage(body=str(b).encode(), ttl=300, delay=delay) for b in bodies]
    return lambda _metadata: messages


def rows(store: SQLiteStorage, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(store.path) as db:
        return list(db.execute(sql))


async def test_events_name_the_queue_once_per_change(store: SQLiteStorage) -> None:
    await store.messages.post(P, Q, batch(1, 2, 3), CLIENT, T0)
    await store.claims.release(P, Q, "00000000-0000-0000-0000-000000000000", T0)  # none
    result = await store.claims.create(P, Q, ClaimRequest(ttl=60, grace=60, limit=1), T0)
    assert result is not None
    await store.claims.release(P, Q, result.id, T0)
    events = rows(store, "SELECT node, project, queue FROM feed_events ORDER BY seq")
    assert events == [(store.feed.node_id, P, Q)] * 2  # the post, the real release


async def test_a_deleted_queue_recreated_is_signalled_by_name(store: SQLiteStorage) -> None:
    # Rows of a queue may be filed under another key (migration 0007); events never are.
    await store.messages.post(P, Q, batch(*range(5)), CLIENT, T0)
    await store.queues.purge_messages(P, Q)
    await store.messages.post(P, Q, batch(1), CLIENT, T0)
    assert {q for (q,) in rows(store, "SELECT queue FROM feed_events")} == {Q}


async def test_garbage_collection_prunes_old_feed_rows_only(store: SQLiteStorage) -> None:
    now = time.time()  # feed rows are stamped with the clock
    await store.messages.post(P, Q, batch(1), CLIENT, now)
    await store.messages.post(P, Q, batch(2), CLIENT, now)
    await store.feed.relay("gone-node", b"never taken")
    # Not counted: collect_garbage reports expired data, and nothing expired.
    assert await store.collect_garbage(now) == 0
    assert len(rows(store, "SELECT seq FROM feed_events")) == 2
    assert len(rows(store, "SELECT seq FROM feed_relay")) == 1
    await store.collect_garbage(now + feed.FEED_RETENTION + 1)
    # The newest event stays, so seq never restarts below what pollers saw.
    assert len(rows(store, "SELECT seq FROM feed_events")) == 1
    assert rows(store, "SELECT seq FROM feed_relay") == []


async def test_more_events_than_a_look_reads_wake_every_watcher(
    store: SQLiteStorage, tmp_path: Path
) -> None:
    other = SQLiteStorage(store.path)
    await other.open()
    try:
        async with other.feed.watch(P, Q) as watch:
            # Another process's burst touching other queues only: past the bound, the
            # poller wakes every watcher rather than read on.
            with sqlite3.connect(store.path) as db:
                db.executemany(
                    "INSERT INTO feed_events (node, project, queue, at) VALUES (?, ?, ?, ?)",
                    [("elsewhere", P, f"q{n}", time.time()) for n in range(feed.EVENT_BOUND + 1)],
                )
            assert await watch.wait(SIGNAL_BOUND) is True
    finally:
        await other.close()


async def test_many_relays_all_arrive(store: SQLiteStorage) -> None:
    other = SQLiteStorage(store.path)
    await other.open()
    count = feed.RELAY_CHUNK * feed.RELAY_ROUNDS + 10  # more than one look takes
    arrived: list[bytes] = []
    done = asyncio.Event()

    def handler(payload: bytes) -> None:
        arrived.append(payload)
        if len(arrived) == count:
            done.set()

    try:
        other.feed.on_relay(handler)
        await asyncio.gather(
            *(store.feed.relay(other.feed.node_id, b"%d" % n) for n in range(count))
        )
        await asyncio.wait_for(done.wait(), SIGNAL_BOUND)
    finally:
        await other.close()
    assert sorted(arrived) == sorted(b"%d" % n for n in range(count))
    assert rows(store, "SELECT seq FROM feed_relay") == []  # taken means deleted


def test_next_ready_probes_indexes() -> None:
    with sqlite3.connect(":memory:") as db:
        from tidings.storage.sqlite.driver import MIGRATIONS, _split_statements

        for _, script in MIGRATIONS:
            for statement in _split_statements(script):
                db.execute(statement)
        params = {"project": P, "queue": Q}
        for name in ("feed_next_claim_expiry", "feed_next_delay_end"):
            plan = [r[3] for r in db.execute("EXPLAIN QUERY PLAN " + feed.Q[name], params)]
            assert len(plan) == 1 and plan[0].startswith("SEARCH messages USING"), plan
            assert "(project=? AND queue=?)" in plan[0], plan  # ordered by the index: LIMIT 1
