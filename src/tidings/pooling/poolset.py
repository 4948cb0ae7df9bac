"""The pools this process has open: one ``Storage`` per pool of the catalog.

The set follows ``CatalogStore.pools`` with bounded staleness (``[pooling_catalog]
cache_ttl``): a refresh opens the pools that appeared, reopens those whose URI or options
changed and closes those that went. A pool opens in the background; one that fails to
open is retried at most every ``REOPEN_INTERVAL`` seconds, and until then only the
calls routed to it fail (``StorageError``, a 503), never those of other pools.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import msgspec

from tidings.config import StorageSettings
from tidings.errors import StorageError, cause_chain
from tidings.model import PoolRecord
from tidings.pooling.placement import VIRTUAL
from tidings.storage.base import Storage
from tidings.storage.catalog import CatalogStore

log = logging.getLogger("tidings.pooling")

Opener = Callable[[str, StorageSettings], Storage]
# Wraps a store as it is opened: (the store, its URI, the pool's name or "(virtual)").
# Metrics use it to time the calls of each pool (``tidings.observe.stores``).
Instrument = Callable[[Storage, str, str], Storage]

# Seconds between attempts to open a pool that failed to open.
REOPEN_INTERVAL = 1.0
# A forced refresh (a placement names a pool this process does not know, or no pool
# can take a new queue) reads the catalog at most this often, so a burst of such
# requests makes one read, not one each.
FORCED_REFRESH_INTERVAL = 0.1
# Bound on opening one pool (PostgreSQL migrates its schema when it opens).
OPEN_TIMEOUT = 60.0

_SETTING_NAMES = frozenset(StorageSettings.__struct_fields__)


def pool_settings(base: StorageSettings, options: dict[str, Any]) -> StorageSettings:
    """``base`` with the pool's options applied (those that name a ``[storage]`` setting;
    raises ``ValueError`` on a value the setting does not accept)."""
    overrides = {k: v for k, v in options.items() if k in _SETTING_NAMES}
    if not overrides:
        return base
    try:
        return msgspec.convert(
            {**msgspec.structs.asdict(base), **overrides}, StorageSettings, strict=False
        )
    except msgspec.ValidationError as exc:
        raise ValueError(f"invalid pool options: {exc}") from exc


class PoolHandle:
    """One pool's store, opened lazily and reopened after a failure."""

    def __init__(
        self, key: str, record: PoolRecord | None, uri: str, settings: StorageSettings,
        opener: Opener, instrument: Instrument | None = None,
    ) -> None:  # fmt: skip
        self.key = key  # the pool's name, or VIRTUAL
        self.record = record  # None for the virtual pool
        self.uri = uri
        self.options: dict[str, Any] = dict(record.options) if record else {}
        self._settings = settings
        self._opener = opener
        self._instrument = instrument
        self.storage: Storage | None = None
        self.error: str | None = None
        self._failed_at = -math.inf
        self._task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.key or "(virtual)"

    @property
    def down(self) -> bool:
        """It failed to open and has not opened since."""
        return self.storage is None and self.error is not None

    def start(self) -> None:
        """Begin opening (in the background) unless open or opening."""
        if self.storage is None and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._open(), name=f"tidings-pool-{self.name}")

    async def _open(self) -> None:
        try:
            store = self._opener(self.uri, pool_settings(self._settings, self.options))
            if self._instrument is not None:
                store = self._instrument(store, self.uri, self.name)
        except Exception as exc:  # a bad URI or options: reported on every routed call
            self._failed(exc)
            return
        try:
            await asyncio.wait_for(store.open(), OPEN_TIMEOUT)
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await store.close()
            if not isinstance(exc, Exception):
                raise
            self._failed(exc)
            return
        self.storage, self.error = store, None
        log.info("pool %s is open (%s)", self.name, _redacted(self.uri))

    def _failed(self, exc: BaseException) -> None:
        self.error = cause_chain(exc)
        self._failed_at = time.monotonic()
        log.warning("pool %s cannot be opened: %s", self.name, self.error)

    async def ready(self) -> Storage:
        """The open store; ``StorageError`` while the pool cannot be opened."""
        if self.storage is not None:
            return self.storage
        if self._task is None or self._task.done():
            if time.monotonic() - self._failed_at < REOPEN_INTERVAL:
                raise StorageError(f"pool {self.name} is unavailable: {self.error}")
            self.start()
        assert self._task is not None
        # Shielded: a request that gives up must not cancel the opening others wait on.
        await asyncio.shield(self._task)
        if self.storage is None:
            raise StorageError(f"pool {self.name} is unavailable: {self.error}")
        return self.storage

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        store, self.storage = self.storage, None
        if store is not None:
            try:
                await store.close()
            except Exception as exc:
                log.warning("pool %s did not close cleanly: %s", self.name, cause_chain(exc))


def _redacted(uri: str) -> str:
    """The URI without a password (logs never show one)."""
    scheme, sep, rest = uri.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return uri
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}"


class PoolSet:
    """The catalog's pools as open stores, plus the virtual pool when it is on."""

    def __init__(
        self,
        catalog: CatalogStore,
        settings: StorageSettings,
        ttl: float,
        *,
        virtual_uri: str | None = None,
        opener: Opener,
        instrument: Instrument | None = None,
    ) -> None:
        self._catalog = catalog
        self._settings = settings
        self._ttl = ttl
        self._opener = opener
        self._instrument = instrument
        self._handles: dict[str, PoolHandle] = {}
        self.virtual = (
            PoolHandle(VIRTUAL, None, virtual_uri, settings, opener, instrument)
            if virtual_uri
            else None
        )
        self._loaded = -math.inf
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()

    def get(self, key: str) -> PoolHandle | None:
        return self.virtual if key == VIRTUAL else self._handles.get(key)

    def pools(self) -> list[PoolHandle]:
        """The catalog's pools as last read, in name order (the virtual pool not among them)."""
        return [self._handles[name] for name in sorted(self._handles)]

    def every(self) -> list[PoolHandle]:
        """Every pool, the virtual one last."""
        return [*self.pools(), *([self.virtual] if self.virtual else [])]

    def open_stores(self) -> list[tuple[PoolHandle, Storage]]:
        return [(h, h.storage) for h in self.every() if h.storage is not None]

    async def refresh(self, *, force: bool = False) -> None:
        """Read the catalog's pools if the last read is older than the cache ttl.

        With ``force`` (a placement names a pool this node does not know, or no pool can
        take a queue), read unless a read has started since this call began: a forced
        read comes at most every ``FORCED_REFRESH_INTERVAL``, waiting out the rest of the
        interval rather than answering from a list that may miss a pool just made.
        """
        asked = time.monotonic()
        if not force and not self._stale():
            return
        async with self._lock:
            if self._loaded >= asked or (not force and not self._stale()):
                return  # another task read the catalog meanwhile
            if force:
                wait = self._loaded + FORCED_REFRESH_INTERVAL - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            started = time.monotonic()
            records = await self._catalog.pools()
            self._apply(records)
            self._loaded = started  # what changed before this read began is in it

    def invalidate(self) -> None:
        """The catalog's pools changed (through this node): read them on the next use."""
        self._loaded = -math.inf

    def _stale(self) -> bool:
        return time.monotonic() - self._loaded >= self._ttl

    def _apply(self, records: list[PoolRecord]) -> None:
        names = set()
        for record in records:
            names.add(record.name)
            handle = self._handles.get(record.name)
            if handle is not None and handle.uri == record.uri and handle.options == record.options:
                handle.record = record  # weight and flavor only matter to placing
                continue
            fresh = PoolHandle(
                record.name, record, record.uri, self._settings, self._opener, self._instrument
            )
            fresh.start()
            self._handles[record.name] = fresh
            if handle is not None:
                self._retire(handle)
        for name in set(self._handles) - names:
            self._retire(self._handles.pop(name))

    def _retire(self, handle: PoolHandle) -> None:
        task = asyncio.create_task(handle.close(), name=f"tidings-pool-close-{handle.name}")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def open(self) -> None:
        """Read the catalog and open every pool (and the virtual one); a pool that fails
        to open is reported by the calls routed to it, not here."""
        if self.virtual is not None:
            self.virtual.start()
        try:
            await self.refresh(force=True)
        except StorageError as exc:  # a management store that serves 503s until it is up
            log.warning("cannot read the pools yet, will retry: %s", exc)
        await asyncio.gather(*(h.ready() for h in self.every()), return_exceptions=True)

    async def close(self) -> None:
        handles = self.every()
        self._handles.clear()
        await asyncio.gather(*(h.close() for h in handles), *self._retiring)
        self._loaded = -math.inf
