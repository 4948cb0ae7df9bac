"""The SQLite schema is versioned and migrated automatically, once, by any process."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tidings.model import NewMessage
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
