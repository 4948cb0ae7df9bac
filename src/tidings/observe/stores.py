"""Store call metrics: a thin wrapper timing every awaited call of a driver's stores.

Only built with metrics on (otherwise the drivers are used bare). Each wrapped method
holds its own tallies, found once when the wrapper is built, so a call costs a
coroutine frame, two clock reads and an addition. The change feed is not wrapped: its
waits last as long as nothing happens.

Labels: ``store`` is the driver (``sqlite``, ``redis``, ``postgres``); ``pool`` is ``""``
for the one store of an unpooled server and, in pooled mode, the pool's name,
``(virtual)`` for the virtual pool and ``(management)`` for the management store (the
catalog and queue registry; ``tidings.pooling`` names them); ``operation`` is the store
and method, e.g. ``messages.post``. A call that raises ``StorageError`` (the store could not answer)
counts in ``tidings_store_errors_total``.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from tidings.config import Settings
from tidings.errors import StorageError
from tidings.observe import metrics
from tidings.storage import driver_name, storage_for_uri
from tidings.storage.base import (
    ClaimStore,
    MessageStore,
    MessageVolume,
    OutboxStore,
    QueueStore,
    Storage,
    StoreStatus,
    SubscriptionStore,
)
from tidings.storage.catalog import CatalogStore
from tidings.storage.feed import ChangeFeed

UNPOOLED = ""


def store_kind(uri: str) -> str:
    """The ``store`` label of a store URI: its driver's name."""
    return driver_name(uri) or "unknown"  # a URI no driver takes is refused before this


def build_storage(settings: Settings) -> Storage:
    """The server's storage with every driver's calls timed (pooled or not)."""
    if not settings.pooling:
        uri = settings.drivers.message_store
        return instrument(storage_for_uri(uri, settings.storage), store_kind(uri), UNPOOLED)
    from tidings.pooling.router import PooledStorage

    def label(store: Storage, uri: str, pool: str) -> Storage:
        return instrument(store, store_kind(uri), pool)

    # The pooled router itself is not wrapped: its calls are its pools' calls.
    return PooledStorage.from_settings(settings, instrument=label)


def instrument(storage: Storage, store: str, pool: str) -> Storage:
    """``storage`` with its calls timed under these labels."""
    return cast(Storage, InstrumentedStorage(storage, store, pool))


def _timed(method: Callable[..., Awaitable[Any]], timings: metrics.Timings) -> Any:
    clock = time.perf_counter
    observe = timings.observe
    errors = timings.errors

    async def call(*args: Any, **kwargs: Any) -> Any:
        start = clock()
        try:
            return await method(*args, **kwargs)
        except StorageError:
            errors.pending += 1
            raise
        finally:
            observe(clock() - start)

    return call


class _TimedStore:
    """One of a driver's stores (queues, messages, ...) with its coroutine methods timed;
    anything else is the store's own."""

    def __init__(self, inner: Any, group: str, store: str, pool: str) -> None:
        self._inner = inner
        for name, _ in inspect.getmembers(type(inner), inspect.iscoroutinefunction):
            if not name.startswith("_"):
                timings = metrics.store_timings(store, pool, f"{group}.{name}")
                setattr(self, name, _timed(getattr(inner, name), timings))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class InstrumentedStorage:
    """A ``Storage`` whose stores' calls are timed (see the module's docstring)."""

    def __init__(self, inner: Storage, store: str, pool: str) -> None:
        self._inner = inner
        self._labels = (store, pool)
        self.queues = cast(QueueStore, _TimedStore(inner.queues, "queues", store, pool))
        self.messages = cast(MessageStore, _TimedStore(inner.messages, "messages", store, pool))
        self.claims = cast(ClaimStore, _TimedStore(inner.claims, "claims", store, pool))
        self.subscriptions = cast(
            SubscriptionStore, _TimedStore(inner.subscriptions, "subscriptions", store, pool)
        )
        self.outbox = cast(OutboxStore, _TimedStore(inner.outbox, "outbox", store, pool))
        self._catalog: tuple[Any, CatalogStore] | None = None
        self._ping = _timed(inner.ping, metrics.store_timings(store, pool, "ping"))
        self._status = _timed(inner.status, metrics.store_timings(store, pool, "status"))
        self._volume = _timed(
            inner.message_volume, metrics.store_timings(store, pool, "message_volume")
        )
        self._gc = _timed(
            inner.collect_garbage, metrics.store_timings(store, pool, "collect_garbage")
        )

    @property
    def inner(self) -> Storage:
        return self._inner

    @property
    def catalog(self) -> CatalogStore:
        found = self._inner.catalog
        if self._catalog is None or self._catalog[0] is not found:
            wrapped = cast(CatalogStore, _TimedStore(found, "catalog", *self._labels))
            self._catalog = (found, wrapped)
        return self._catalog[1]

    @property
    def feed(self) -> ChangeFeed:
        return self._inner.feed

    async def open(self) -> None:
        await self._inner.open()

    async def close(self) -> None:
        await self._inner.close()

    async def ping(self) -> bool:
        return bool(await self._ping())

    async def status(self) -> StoreStatus:
        found: StoreStatus = await self._status()
        return found

    async def message_volume(self, now: float) -> MessageVolume:
        found: MessageVolume = await self._volume(now)
        return found

    async def collect_garbage(self, now: float) -> int:
        return int(await self._gc(now))

    def __getattr__(self, name: str) -> Any:
        # Driver extras that tools and tests reach for (e.g. SQLite's remove_retired_chunk).
        return getattr(self._inner, name)
