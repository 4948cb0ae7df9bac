"""The storage contract: every driver runs these tests unchanged.

Each entry of ``DRIVERS`` names a fresh, empty namespace of its own (as a store URI)
and cleans it up afterwards; ``storage`` is an open store on it, ``twin_storage`` a
second, independent store on the same namespace (another node, as far as the change
feed can tell). Tests pass ``now`` explicitly, so expiry is tested by moving the clock,
never by sleeping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from tests import backends
from tidings.config import DriverSettings, Settings, StorageSettings
from tidings.storage import create_storage
from tidings.storage.base import Storage

SETTINGS = StorageSettings(operation_timeout=5.0)
# Yields the URI of a fresh namespace, and removes what it holds afterwards.
Opener = Callable[[pytest.FixtureRequest, Path], AbstractAsyncContextManager[str]]


def storage_from_uri(uri: str) -> Storage:
    """An unopened store on ``uri`` with the contract's settings."""
    return create_storage(
        Settings(drivers=DriverSettings(message_store=uri), storage=SETTINGS)
    )


@asynccontextmanager
async def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    yield f"sqlite:///{tmp_path / 'contract.db'}"


@asynccontextmanager
async def _redis(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    prefix = backends.unique_name("r")
    try:
        yield backends.redis_store_uri(prefix)
    finally:
        await backends.drop_redis_prefix(prefix)


@asynccontextmanager
async def _redis_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    cluster = request.getfixturevalue("redis_cluster")
    prefix = backends.unique_name("c")
    yield backends.redis_store_uri(prefix, cluster.uri)


@asynccontextmanager
async def _postgres(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    schema = backends.unique_name("p")
    try:
        yield backends.postgres_store_uri(schema)
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
async def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URI of a fresh namespace of one driver (removed after the test)."""
    async with DRIVERS[request.param](request, tmp_path) as uri:
        yield uri


@asynccontextmanager
async def _opened(uri: str) -> AsyncIterator[Storage]:
    store = storage_from_uri(uri)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def storage(store_uri: str) -> AsyncIterator[Storage]:
    async with _opened(store_uri) as store:
        yield store


@pytest.fixture
async def twin_storage(storage: Storage, store_uri: str) -> AsyncIterator[Storage]:
    """A second store on ``storage``'s namespace: same file, prefix or schema, its own
    connections and change feed (opened after ``storage``, so it finds the schema)."""
    async with _opened(store_uri) as store:
        yield store
