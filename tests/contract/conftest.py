"""The storage contract: every driver runs these tests unchanged.

Each entry of ``DRIVERS`` opens a fresh, empty storage in a namespace of its own and
cleans it up afterwards. Tests pass ``now`` explicitly, so expiry is tested by moving
the clock, never by sleeping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from tests import backends
from tidings.config import StorageSettings
from tidings.storage.base import Storage

SETTINGS = StorageSettings(operation_timeout=5.0)
Opener = Callable[[pytest.FixtureRequest, Path], AbstractAsyncContextManager[Storage]]


@asynccontextmanager
async def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    from tidings.storage.sqlite.driver import SQLiteStorage

    yield SQLiteStorage(tmp_path / "contract.db")


@asynccontextmanager
async def _redis(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    from tidings.storage.redis.driver import RedisStorage

    prefix = backends.unique_name("r")
    try:
        yield RedisStorage.from_uri(backends.redis_store_uri(prefix), SETTINGS)
    finally:
        await backends.drop_redis_prefix(prefix)


@asynccontextmanager
async def _redis_cluster(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Storage]:
    from tidings.storage.redis.driver import RedisStorage

    cluster = request.getfixturevalue("redis_cluster")
    prefix = backends.unique_name("c")
    yield RedisStorage.from_uri(backends.redis_store_uri(prefix, cluster.uri), SETTINGS)


@asynccontextmanager
async def _postgres(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    from tidings.storage.postgres.driver import PostgresStorage

    schema = backends.unique_name("p")
    try:
        yield PostgresStorage.from_uri(backends.postgres_store_uri(schema), SETTINGS)
    finally:
        await backends.drop_postgres_schema(schema)


DRIVERS: dict[str, Opener] = {
    "sqlite": _sqlite,
    "redis": _redis,
    "redis-cluster": _redis_cluster,
    "postgres": _postgres,
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=sorted(DRIVERS))
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    async with DRIVERS[request.param](request, tmp_path) as store:
        await store.open()
        try:
            yield store
        finally:
            await store.close()
