"""The PostgreSQL schema is versioned and migrated once, by any node or by ``tidings db``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests import backends
from tidings.config import StorageSettings
from tidings.errors import StorageError
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
