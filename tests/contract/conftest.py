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
from tidings.config import DriverSettings, PoolingCatalogSettings, Settings, StorageSettings
from tidings.model import PoolRecord
from tidings.pooling.router import PooledStorage
from tidings.storage import create_storage, storage_for_uri
from tidings.storage.base import Storage

SETTINGS = StorageSettings(operation_timeout=5.0)
# Yields the URI of a fresh namespace, and removes what it holds afterwards.
Opener = Callable[[pytest.FixtureRequest, Path], AbstractAsyncContextManager[str]]
# The "pooled" entry's URI: this prefix, then its management store's URI.
POOLED = "pooled+"


def storage_from_uri(uri: str, settings: StorageSettings = SETTINGS) -> Storage:
    """An unopened store on ``uri`` with the contract's settings (or others)."""
    if uri.startswith(POOLED):
        return PooledStorage(
            storage_for_uri(uri[len(POOLED) :], settings),
            storage_settings=settings,
            catalog_settings=PoolingCatalogSettings(),
        )
    return create_storage(
        Settings(drivers=DriverSettings(message_store=uri), storage=settings)
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


@asynccontextmanager
async def _pooled(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The router over three pools of different drivers (a SQLite file, a Redis prefix,
    a PostgreSQL schema), weighted, with a SQLite management store: each test's queues
    land wherever the weighted choice puts them, so runs cover every pairing over time."""
    prefix, schema = backends.unique_name("r"), backends.unique_name("p")
    pools = [
        PoolRecord(name="lite", uri=f"sqlite:///{tmp_path / 'pool.db'}", weight=30),
        PoolRecord(name="red", uri=backends.redis_store_uri(prefix), weight=30),
        PoolRecord(name="pg", uri=backends.postgres_store_uri(schema), weight=40),
    ]
    management = storage_for_uri(f"sqlite:///{tmp_path / 'management.db'}", SETTINGS)
    await management.open()
    try:
        for pool in pools:
            await management.catalog.pool_put(pool)
    finally:
        await management.close()
    try:
        yield f"{POOLED}sqlite:///{tmp_path / 'management.db'}"
    finally:
        await backends.drop_redis_prefix(prefix)
        await backends.drop_postgres_schema(schema)


DRIVERS: dict[str, Opener] = {
    "sqlite": _sqlite,
    "redis": _redis,
    "redis-cluster": _redis_cluster,
    "postgres": _postgres,
    "pooled": _pooled,
}

# Contract tests the pooled entry cannot run, and why.
POOLED_SKIPS = {
    "test_post_wakes_a_watcher_in_another_process": (
        "the child process opens one driver from the store URI, not a router"
    ),
    "test_dead_letter_move_is_complete": (
        "a dead letter forwarded to another pool gets a new id and claim count 0 "
        "(tests/pooling/test_router.py covers the cross-pool move)"
    ),
    "test_budget_bounds_the_queues_counted": (
        "the budget bounds each pool's count, and the queues spread over three pools"
    ),
    "test_old_failures_are_pruned": (
        "the test tells SQL stores from Redis by the store's type; pooled, it depends on "
        "the pool the queue lands on"
    ),
}
POOLED_SKIPPED_MODULES = {
    "test_catalog_contract.py": (
        "a pooled store's catalog is its management store's (SQLite, run by the sqlite "
        "entry), and it holds the entry's pools already"
    ),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or callspec.params.get("store_uri") != "pooled":
            continue
        name = getattr(item, "originalname", item.name)
        reason = POOLED_SKIPS.get(name) or POOLED_SKIPPED_MODULES.get(item.path.name)
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=f"pooled: {reason}"))


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
