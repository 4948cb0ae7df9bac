"""The PostgreSQL schema is versioned and migrated once, by any node or by ``tidings db``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests import backends
from tidings.config import StorageSettings
from tidings.errors import StorageError
from tidings.model import ClaimRequest, NewMessage
from tidings.storage.postgres.database import MIGRATIONS, VERSION_TABLE, parse_uri
from tidings.storage.postgres.driver import PostgresStorage

pytestmark = pytest.mark.anyio

SETTINGS = StorageSettings(operation_timeout=5.0)
LATEST = MIGRATIONS[-1][0]
# Nothing listens on port 1 of the loopback: connections are refused at once.
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/test"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    name = backends.unique_name("m")
    try:
        yield name
    finally:
        await backends.drop_postgres_schema(name)


async def applied(schema: str) -> list[int]:
    connection = await asyncpg.connect(backends.POSTGRES_DSN)
    try:
        rows = await connection.fetch(
            f'SELECT version FROM "{schema}".{VERSION_TABLE} ORDER BY version'
        )
    finally:
        await connection.close()
    return [row[0] for row in rows]


def store(schema: str, **settings: object) -> PostgresStorage:
    options = StorageSettings(operation_timeout=5.0, **settings)  # type: ignore[arg-type]
    return PostgresStorage.from_uri(backends.postgres_store_uri(schema), options)


async def test_open_creates_schema_and_applies_each_migration_once(schema: str) -> None:
    first = store(schema)
    await first.open()
    await first.queues.create("p", "q", {"k": 1}, 1.0)
    second = store(schema)  # another node starting on the same database
    await second.open()
    assert await second.queues.get_metadata("p", "q") == {"k": 1}
    await first.close()
    await second.close()
    assert await applied(schema) == [version for version, _ in MIGRATIONS]


async def test_upgrade_is_idempotent(schema: str) -> None:
    storage = store(schema)
    assert await storage.upgrade() == LATEST
    assert await storage.upgrade() == LATEST
    assert await applied(schema) == [version for version, _ in MIGRATIONS]


async def test_concurrent_migrations_take_turns(schema: str) -> None:
    nodes = [store(schema) for _ in range(4)]
    versions = await asyncio.gather(*(node.upgrade() for node in nodes))
    assert versions == [LATEST] * 4
    await asyncio.gather(*(node.open() for node in nodes))
    assert all(await asyncio.gather(*(node.ping() for node in nodes)))
    await asyncio.gather(*(node.close() for node in nodes))
    assert await applied(schema) == [version for version, _ in MIGRATIONS]


async def test_no_migration_at_start_when_disabled(schema: str) -> None:
    storage = store(schema, migrate_on_start=False)
    await storage.open()
    try:
        with pytest.raises(StorageError, match="db upgrade"):
            await storage.queues.count("p")
        assert await storage.upgrade() == LATEST
        assert await storage.queues.count("p") == 0
    finally:
        await storage.close()


async def test_open_survives_an_unreachable_server() -> None:
    storage = PostgresStorage.from_uri(f"{UNREACHABLE}?schema=nowhere", SETTINGS)
    await storage.open()  # warns, does not raise
    try:
        assert await storage.ping() is False
        assert (await storage.status()).reachable is False
        with pytest.raises(StorageError):
            await storage.queues.count("p")
    finally:
        await storage.close()


async def db_upgrade(store_uri: str) -> subprocess.CompletedProcess[str]:
    """Run ``tidings db upgrade`` in a process of its own, configured by environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env["TIDINGS_DRIVERS__MESSAGE_STORE"] = store_uri
    command = [sys.executable, "-m", "tidings.cli", "db", "upgrade"]
    return await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, timeout=60
    )


async def test_db_upgrade_command(schema: str) -> None:
    for _ in range(2):  # the second run finds nothing to do
        done = await db_upgrade(backends.postgres_store_uri(schema))
        assert done.returncode == 0, done.stderr
        assert f"version {LATEST}" in done.stdout
    assert await applied(schema) == [version for version, _ in MIGRATIONS]


async def test_db_upgrade_command_reports_an_unreachable_server() -> None:
    done = await db_upgrade(UNREACHABLE)
    assert done.returncode == 1
    assert "migration failed" in done.stderr


def test_store_uri_parsing() -> None:
    target = parse_uri("postgresql://u@h:5432/db?schema=s1&sslmode=disable")
    assert (target.dsn, target.schema) == ("postgresql://u@h:5432/db?sslmode=disable", "s1")
    assert parse_uri("postgres://u@h/db").schema == "public"
    for bad in ("redis://x", "postgresql://u@h/db?schema="):
        with pytest.raises(ValueError):
            parse_uri(bad)


async def migrated_to(schema: str, version: int) -> asyncpg.Connection:
    """A schema with the migrations up to ``version`` applied, as an older release left it."""
    connection = await asyncpg.connect(backends.POSTGRES_DSN)
    await connection.execute(f'CREATE SCHEMA "{schema}"')
    await connection.execute(f'SET search_path TO "{schema}"')
    await connection.execute(f"CREATE TABLE {VERSION_TABLE} (version integer PRIMARY KEY)")
    for number, script in MIGRATIONS:
        if number <= version:
            await connection.execute(script)
            await connection.execute(f"INSERT INTO {VERSION_TABLE} VALUES ($1)", number)
    return connection


async def test_messages_stored_before_the_ready_index_keep_working(schema: str) -> None:
    t0 = 1_700_000_000.0
    held, lapsed = str(uuid.uuid4()), str(uuid.uuid4())
    old = await migrated_to(schema, 4)
    # name: (created, expires, delay_until, claim id, claim expiry), in post order. The
    # newest message was posted at t0: delays ending later may still run.
    messages = {
        "free": (t0 - 60, t0 + 900, 0.0, None, 0.0),
        "delayed": (t0 - 60, t0 + 900, t0 + 600, None, 0.0),
        "delay-over": (t0 - 900, t0 + 900, t0 - 300, None, 0.0),
        "delay-ending": (t0 - 60, t0 + 900, t0 + 1, None, 0.0),
        "held": (t0 - 60, t0 + 900, t0 - 30, held, t0 + 1000),
        "lapsed": (t0 - 60, t0 + 900, 0.0, lapsed, t0 - 5),
        "expired": (t0, t0 - 1, 0.0, None, 0.0),
    }
    try:
        for name, (created, expires, delay_until, claim_id, claim_expires) in messages.items():
            await old.execute(
                "INSERT INTO messages (id, project, queue, body, client_id, ttl, created,"
                " expires, delay_until, claim_id, claim_expires, claim_count)"
                " VALUES ($1, 'p', 'q', $2, 'c', 900, $3, $4, $5, $6, $7, $8)",
                uuid.uuid5(uuid.NAMESPACE_URL, name), f'"{name}"'.encode(), created, expires,
                delay_until, claim_id, claim_expires, int(claim_id is not None),
            )  # fmt: skip
        for claim_id, expires in ((held, t0 + 1000), (lapsed, t0 - 5)):
            await old.execute(
                "INSERT INTO claims VALUES ($1, 'p', 'q', 300, 60, $2, $3)",
                claim_id, t0 - 60, expires,
            )  # fmt: skip
        await old.execute("INSERT INTO queues VALUES ('p', 'q', '{}', $1)", t0 - 900)
    finally:
        await old.close()

    storage = store(schema, scan_budget=100)
    await storage.open()
    try:
        assert await applied(schema) == [version for version, _ in MIGRATIONS]
        connection = await asyncpg.connect(backends.POSTGRES_DSN)
        try:
            waiting = await connection.fetch(
                f"SELECT convert_from(body, 'UTF8') FROM \"{schema}\".messages WHERE delayed"
            )
        finally:
            await connection.close()
        # Only delays ending after the newest post wait to be settled, not the history.
        assert sorted(r[0] for r in waiting) == ['"delay-ending"', '"delayed"']
        now = t0 + 2

        async def names(**options: bool) -> list[str]:
            page = await storage.messages.page(
                "p", "q", marker=None, limit=20, exclude_client=None, now=now, **options
            )
            return [m.body.decode().strip('"') for m in page.messages]

        stats = await storage.queues.stats("p", "q", now)
        assert (stats.total, stats.claimed) == (6, 1)
        assert await names(include_claimed=False, include_delayed=False) == [
            "free", "delay-over", "delay-ending", "lapsed",
        ]  # fmt: skip
        assert await names(include_claimed=False, include_delayed=True) == [
            "free", "delayed", "delay-over", "delay-ending", "lapsed",
        ]  # fmt: skip
        assert await names(include_claimed=True, include_delayed=True) == [
            "free", "delayed", "delay-over", "delay-ending", "held", "lapsed",
        ]  # fmt: skip
        request = ClaimRequest(ttl=1000, grace=0, limit=10)
        taken = await storage.claims.create("p", "q", request, now)
        assert taken is not None
        assert [m.body for m in taken.messages] == [
            b'"free"', b'"delay-over"', b'"delay-ending"', b'"lapsed"',
        ]  # fmt: skip
        # The running delay ends in its turn; the old claim still holds its message.
        popped = await storage.messages.pop("p", "q", 10, t0 + 600)
        assert [m.body for m in popped] == [b'"delayed"']
        kept = await storage.claims.get("p", "q", held, t0 + 600)
        assert kept is not None and [m.body for m in kept.messages] == [b'"held"']
        message_id = kept.messages[0].id
        await storage.messages.delete("p", "q", message_id, held, t0 + 600)
        assert (await storage.queues.stats("p", "q", t0 + 600)).total == 4
    finally:
        await storage.close()


async def test_queues_stored_before_the_counters_count_right(schema: str) -> None:
    t0 = 1_700_000_000.0
    old = await migrated_to(schema, 5)
    # queue: [(expires, claim_id, claim_expires)]; "o" has no queue row.
    live, lapsed = str(uuid.uuid4()), str(uuid.uuid4())
    stored = {
        "q": [(t0 + 900, None, 0.0)] * 3
        + [(t0 + 900, live, t0 + 300)] * 2
        + [(t0 + 900, lapsed, t0 - 5), (t0 - 1, None, 0.0)],
        "o": [(t0 + 900, None, 0.0)] * 2,
    }
    try:
        await old.execute("INSERT INTO queues VALUES ('p', 'q', '{}', $1)", t0 - 900)
        for queue, rows in stored.items():
            for expires, claim_id, claim_expires in rows:
                await old.execute(
                    "INSERT INTO messages (id, project, queue, body, client_id, ttl, created,"
                    " expires, claim_id, claim_expires) VALUES ($1, 'p', $2, '1', 'c', 900, $3,"
                    " $4, $5, $6)",
                    uuid.uuid4(), queue, t0 - 60, expires, claim_id, claim_expires,
                )  # fmt: skip
    finally:
        await old.close()

    storage = store(schema, scan_budget=100)
    await storage.open()
    try:
        connection = await asyncpg.connect(backends.POSTGRES_DSN)
        try:
            await connection.execute(f'SET search_path TO "{schema}"')
            sums = "SELECT queue, sum(total), sum(marked) FROM queue_counters GROUP BY queue"
            # Counted as stored (expired and lapsed included: stats subtract those).
            assert sorted(tuple(r) for r in await connection.fetch(sums)) == [
                ("o", 2, 0), ("q", 7, 3),
            ]  # fmt: skip
            keys = "SELECT name, rows_key FROM queues ORDER BY name"
            assert [tuple(r) for r in await connection.fetch(keys)] == [("o", "o"), ("q", "q")]
            stats = await storage.queues.stats("p", "q", t0)
            assert (stats.total, stats.claimed) == (6, 2)
            assert (await storage.queues.stats("p", "o", t0)).total == 2
            batch = [NewMessage(body=b"2", ttl=60)]
            await storage.messages.post("p", "q", lambda _metadata: batch, "c", t0)
            assert (await storage.queues.stats("p", "q", t0)).total == 7
            await storage.queues.delete("p", "q")
            left = await connection.fetch("SELECT DISTINCT queue FROM queue_counters")
            assert [r[0] for r in left] == ["o"]
        finally:
            await connection.close()
    finally:
        await storage.close()
