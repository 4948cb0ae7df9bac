"""The SQLite schema is versioned and migrated automatically, once, by any process."""

from __future__ import annotations

import sqlite3
import time
import uuid
from pathlib import Path

import pytest

from tidings.model import ClaimRequest, NewMessage
from tidings.storage.sqlite import driver
from tidings.storage.sqlite.driver import MIGRATIONS, SQLiteStorage, path_from_uri

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


async def test_new_file_is_migrated_to_latest(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "t.db"
    store = SQLiteStorage(path)
    await store.open()
    await store.close()
    assert user_version(path) == MIGRATIONS[-1][0]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"queues", "messages", "claims"} <= tables


async def test_reopening_keeps_data_and_does_not_migrate_twice(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    first = SQLiteStorage(path)
    await first.open()
    await first.queues.create("p", "q", {"k": 1}, 1.0)
    second = SQLiteStorage(path)  # a second process opening the same file
    await second.open()
    assert await second.queues.get_metadata("p", "q") == {"k": 1}
    await first.close()
    await second.close()
    assert user_version(path) == MIGRATIONS[-1][0]


def test_store_uri_parsing() -> None:
    assert path_from_uri("sqlite:///var/lib/t.db") == Path("/var/lib/t.db")
    assert path_from_uri("sqlite://rel.db") == Path("rel.db")
    for bad in ("sqlite://", "sqlite:///", "redis://x"):
        with pytest.raises(ValueError):
            path_from_uri(bad)


async def test_garbage_collection_works_in_chunks(tmp_path: Path) -> None:
    store = SQLiteStorage(tmp_path / "t.db")
    await store.open()
    batch = [NewMessage(body=b"1", ttl=60)] * (driver.GC_CHUNK * 2 + 5)
    await store.messages.post("p", "q", lambda _metadata: batch, "c", 0.0)
    assert await store.collect_garbage(61.0) == len(batch)
    assert (await store.queues.stats("p", "q", 0.0)).total == 0
    await store.close()


def migrated_to(path: Path, version: int) -> sqlite3.Connection:
    """A file with the migrations up to ``version`` applied, as an older release left it."""
    db = sqlite3.connect(path, isolation_level=None)
    for number, script in MIGRATIONS:
        if number <= version:
            for statement in driver._split_statements(script):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {number}")
    return db


async def test_messages_stored_before_the_ready_index_keep_working(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    now = time.time()  # the upgrade judges running delays by the real clock
    claim_id, lapsed_id = str(uuid.uuid4()), str(uuid.uuid4())
    old = migrated_to(path, 5)
    # name: (expires, delay_until, claim_id, claim_expires), in post order
    messages = {
        "free": (now + 900, 0.0, None, 0.0),
        "delayed": (now + 900, now + 600, None, 0.0),
        "delay-over": (now + 900, now - 10, None, 0.0),
        "held": (now + 900, 0.0, claim_id, now + 300),
        "lapsed": (now + 900, 0.0, lapsed_id, now - 5),
        "expired": (now - 1, 0.0, None, 0.0),
    }
    for name, (expires, delay_until, held_by, claim_expires) in messages.items():
        old.execute(
            "INSERT INTO messages (id, project, queue, body, client_id, ttl, created, expires,"
            " delay_until, claim_id, claim_expires, claim_count)"
            " VALUES (?, 'p', 'q', ?, 'c', 900, ?, ?, ?, ?, ?, ?)",
            (name, f'"{name}"'.encode(), now - 60, expires, delay_until, held_by,
             claim_expires, int(held_by is not None)),
        )  # fmt: skip
    for cid, expires in ((claim_id, now + 300), (lapsed_id, now - 5)):
        old.execute(
            "INSERT INTO claims VALUES (?, 'p', 'q', 300, 60, ?, ?)", (cid, now - 60, expires)
        )
    old.close()

    store = SQLiteStorage(path, scan_budget=100)
    await store.open()
    try:
        with sqlite3.connect(path) as db:
            waiting = [r[0] for r in db.execute("SELECT id FROM messages WHERE ready = 0")]
        assert waiting == ["delayed"]  # only a delay still running waits to be settled
        stats = await store.queues.stats("p", "q", now)
        assert (stats.total, stats.claimed) == (5, 1)
        assert stats.oldest is not None and stats.oldest.id == "free"
        page = await store.messages.page(
            "p", "q", marker=None, limit=10, exclude_client=None,
            include_claimed=False, include_delayed=True, now=now,
        )  # fmt: skip
        assert [m.id for m in page.messages] == ["free", "delayed", "delay-over", "lapsed"]
        taken = await store.claims.create("p", "q", ClaimRequest(ttl=60, grace=0, limit=10), now)
        assert taken is not None
        assert [m.id for m in taken.messages] == ["free", "delay-over", "lapsed"]
        # Delay and claims over: everything that was stored comes back, in post order.
        later = await store.messages.pop("p", "q", 10, now + 601)
        assert [m.id for m in later] == ["free", "delayed", "delay-over", "held", "lapsed"]
    finally:
        await store.close()


# Queries that read messages and the indexes each must use: none may scan the table.
PLANS = {
    "queue_unsettled": {"messages_expiring", "messages_marked", "messages_delay_ends"},
    "settle_expired": {"messages_expiring"},
    "settle_lapsed": {"messages_marked"},
    "settle_delays": {"messages_delay_ends"},
    "message_list_due": {"messages_ready", "messages_delay_ends", "messages_marked"},
    "message_list_unclaimed": {"messages_ready", "messages_delayed", "messages_marked"},
    "message_window_end_due": {"messages_ready"},
    "message_window_end_unclaimed": {"messages_ready", "messages_delayed"},
    "queue_counts": {"messages_expiring", "messages_marked"},
    "message_list_all": {"messages_by_queue"},
    "queue_drop_messages": {"messages_by_queue"},
    "queue_oldest": {"messages_by_queue"},
    "queue_newest": {"messages_by_queue"},
    "claim_messages": {"messages_by_claim"},
    "claim_release_messages": {"messages_by_claim"},
}
COVERING = {"messages_ready", "messages_delayed", "messages_delay_ends", "messages_expiring"}


async def test_reads_of_free_messages_search_their_indexes(tmp_path: Path) -> None:
    store = SQLiteStorage(tmp_path / "plans.db")
    await store.open()
    await store.close()
    params = {
        "project": "p", "queue": "q", "name": "q", "now": 1.0, "marker": 0, "budget": 100,
        "limit": 10, "chunk": 100, "exclude_client": None, "include_delayed": False, "after": 0,
        "id": "c",
    }  # fmt: skip
    with sqlite3.connect(store.path) as db:
        for name, indexes in PLANS.items():
            plan = [row[3] for row in db.execute("EXPLAIN QUERY PLAN " + driver.Q[name], params)]
            used = {step.split(" INDEX ")[1].split()[0] for step in plan if " INDEX " in step}
            assert used == indexes, (name, plan)
            assert not [step for step in plan if step.startswith("SCAN messages")], (name, plan)
            # Rechecking or passing over an entry of these reads no table row.
            for step in plan:
                index = step.split(" INDEX ")[1].split()[0] if " INDEX " in step else None
                if index in COVERING:
                    assert "COVERING INDEX" in step, (name, step)


async def test_queues_stored_before_the_counters_count_right(tmp_path: Path) -> None:
    path = tmp_path / "counted.db"
    now = time.time()
    old = migrated_to(path, 6)
    old.execute("INSERT INTO queues VALUES ('p', 'q', '{}', ?)", (now - 900,))
    # queue: [(expires, claim_id, claim_expires)]; "o" has no queue row.
    stored = {
        "q": [(now + 900, None, 0.0)] * 3
        + [(now + 900, "live", now + 300)] * 2
        + [(now + 900, "lapsed", now - 5), (now - 1, None, 0.0)],
        "o": [(now + 900, None, 0.0)] * 2,
    }
    for queue, rows in stored.items():
        for n, (expires, claim_id, claim_expires) in enumerate(rows):
            old.execute(
                "INSERT INTO messages (id, project, queue, body, client_id, ttl, created,"
                " expires, claim_id, claim_expires)"
                " VALUES (?, 'p', ?, x'31', 'c', 900, ?, ?, ?, ?)",
                (f"{queue}-{n}", queue, now - 60, expires, claim_id, claim_expires),
            )
    old.close()

    store = SQLiteStorage(path, scan_budget=100)
    await store.open()
    try:
        with sqlite3.connect(path) as db:
            counters = db.execute("SELECT * FROM queue_counters ORDER BY queue").fetchall()
            keys = db.execute("SELECT name, rows_key FROM queues ORDER BY name").fetchall()
        # Counted as stored (expired and lapsed included: stats subtract those).
        assert counters == [("p", "o", 2, 0), ("p", "q", 7, 3)]
        assert keys == [("o", "o"), ("q", "q")]  # the messages without a queue kept one
        stats = await store.queues.stats("p", "q", now)
        assert (stats.total, stats.claimed) == (6, 2)
        assert (await store.queues.stats("p", "o", now)).total == 2
        await store.messages.post("p", "q", lambda _m: [NewMessage(body=b"2", ttl=60)], "c", now)
        assert (await store.queues.stats("p", "q", now)).total == 7
        await store.queues.delete("p", "q")
        with sqlite3.connect(path) as db:
            assert db.execute("SELECT queue FROM queue_counters").fetchall() == [("o",)]
    finally:
        await store.close()
