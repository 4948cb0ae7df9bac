"""The storage contract: every driver runs these tests unchanged.

Drivers are listed in ``DRIVERS``; each entry builds a fresh, empty storage. Tests pass
``now`` explicitly, so expiry is tested by moving the clock, never by sleeping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tidings.storage.base import Storage
from tidings.storage.sqlite.driver import SQLiteStorage

StorageFactory = Callable[[Path], Awaitable[Storage]]


async def _sqlite(tmp_path: Path) -> Storage:
    return SQLiteStorage(tmp_path / "contract.db")


DRIVERS: dict[str, StorageFactory] = {"sqlite": _sqlite}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=sorted(DRIVERS))
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    store = await DRIVERS[request.param](tmp_path)
    await store.open()
    try:
        yield store
    finally:
        await store.close()
