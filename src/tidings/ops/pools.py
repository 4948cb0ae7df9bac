"""Pool administration (pooled mode): create or replace, list, get, update, delete.

Pools are global, an operator's resources; the routes exist only with ``admin_mode``
and ``pooling`` (Zaqar's rule), and policy keeps them for administrators. Bodies follow
Zaqar's schema (its jsonschema texts, first line only); Zaqar's faults are fixed: a
``uri`` another pool has is a 409 (not a 500), and a pool that holds queues can neither
be deleted nor pointed at another store (409 with the count: their messages would be
stranded).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
from typing import Any

import msgspec

from tidings.config import Settings, StorageSettings
from tidings.errors import BadRequest, Conflict, InvalidBody, NotFound
from tidings.model import PoolRecord
from tidings.ops.context import Services, unavailable_as
from tidings.ops.validation import EMPTY_BODY, check_page_limit
from tidings.pooling.poolset import pool_settings
from tidings.pooling.router import PooledStorage
from tidings.storage import storage_for_uri
from tidings.storage.catalog import CatalogStore, PoolInUse, PoolUriTaken, TooManyPools

log = logging.getLogger("tidings.pools")

POOLS_NOT_CONFIGURED = "Pools are not configured on this server."
# Names as in Zaqar's response schema, plus dots (as queue names allow).
NAME = re.compile(r"[a-zA-Z0-9_\-.]{1,64}")  # always fullmatch
MAX_URI_LENGTH = 255
MAX_FLAVOR_LENGTH = 255
MAX_WEIGHT = 2**32 - 1
FIELDS = ("uri", "weight", "flavor", "options")
DEFAULT_PAGE_SIZE = 10
STORAGE_OPTIONS = tuple(StorageSettings.__struct_fields__)
# The bound on checking that a new pool's store answers, beyond its own operation timeout
# (opening PostgreSQL may migrate a schema, SQLite creates its file).
PROBE_GRACE = 5.0
# ... and never longer than this plus the grace, whatever the pool's options say: the
# admin's request waits for it.
MAX_PROBE_WAIT = 30.0


class PoolPage(msgspec.Struct, frozen=True, kw_only=True):
    pools: list[PoolRecord]
    # The name to go on after; None for an empty page (Zaqar links from any other).
    next_marker: str | None


def catalog(svc: Services) -> CatalogStore:
    """The catalog, or 404 where pools and flavors are not offered (WebSocket asks; HTTP
    leaves their routes out)."""
    settings = svc.settings
    if svc.catalog is None or not (settings.admin_mode and settings.pooling):
        raise NotFound(POOLS_NOT_CONFIGURED)
    return svc.catalog


def check_name(name: str, noun: str) -> None:
    if not NAME.fullmatch(name):
        raise BadRequest(
            f"{noun} names may only contain ASCII letters, digits, underscores, dashes and "
            "dots, and be 1 to 64 characters long."
        )


def pool_not_found(name: str) -> NotFound:
    return NotFound(f"Pool {name} does not exist")


# -- bodies (Zaqar's jsonschema, with the first line of its texts) -------------------


def body_object(document: Any) -> dict[str, Any]:
    if document is None:
        raise InvalidBody(EMPTY_BODY)
    if not isinstance(document, dict):
        raise InvalidBody(f"{shown(document)} is not of type 'object'")
    return document


def shown(value: Any) -> str:
    """A value as jsonschema (so Zaqar) shows it in its texts: Python's repr, cut short."""
    text = repr(value)
    return text if len(text) <= 100 else text[:100] + "..."


def unexpected_keys(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(k for k in body if k not in allowed)
    if unknown:
        names = ", ".join(repr(k) for k in unknown)
        verb = "was" if len(unknown) == 1 else "were"
        raise InvalidBody(f"Additional properties are not allowed ({names} {verb} unexpected)")


def _string(body: dict[str, Any], name: str, maximum: int) -> str:
    value = body[name]
    if not isinstance(value, str):
        raise InvalidBody(f"{shown(value)} is not of type 'string'")
    if len(value) > maximum:
        raise InvalidBody(f"The value of `{name}` is too long (at most {maximum} characters)")
    if "\x00" in value:
        raise InvalidBody(f"The value of `{name}` may not contain NUL")
    return value


def _weight(body: dict[str, Any]) -> int:
    value = body["weight"]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidBody(f"{shown(value)} is not of type 'integer'")
    if value < 0:
        raise InvalidBody(f"{value} is less than the minimum of 0")
    if value > MAX_WEIGHT:
        raise InvalidBody(f"{value} is greater than the maximum of {MAX_WEIGHT}")
    return value


def _flavor(body: dict[str, Any]) -> str | None:
    """A flavor name, or None for none (null or "", which Zaqar writes when it clears one)."""
    if body["flavor"] is None:
        return None
    return _string(body, "flavor", MAX_FLAVOR_LENGTH) or None


def _options(body: dict[str, Any], base: StorageSettings) -> dict[str, Any]:
    """The pool's overrides of ``[storage]`` settings, checked as the router applies them."""
    value = body["options"]
    if not isinstance(value, dict):
        raise InvalidBody(f"{shown(value)} is not of type 'object'")
    unknown = sorted(k for k in value if k not in STORAGE_OPTIONS)
    if unknown:
        raise InvalidBody(
            f"Unknown pool options: {', '.join(repr(k) for k in unknown)}; a pool's options "
            f"override [storage] settings: {', '.join(STORAGE_OPTIONS)}"
        )
    for key, option in value.items():
        if isinstance(option, float) and not math.isfinite(option):
            raise InvalidBody(f"Invalid pool options: `{key}` must be a finite number")
    try:
        # Strictly typed here (the router's pool_settings also reads text, for files).
        msgspec.convert({**msgspec.structs.asdict(base), **value}, StorageSettings)
    except msgspec.ValidationError as exc:
        raise InvalidBody(f"Invalid pool options: {exc}") from exc
    return value


def _uri(body: dict[str, Any]) -> str:
    return _string(body, "uri", MAX_URI_LENGTH)


# -- the store behind a pool -----------------------------------------------------------


async def reachable(uri: str, settings: StorageSettings) -> bool:
    """Whether the store ``uri`` names opens and answers a ping, within a bound.

    Never raises: an unsupported scheme, a malformed URI or a store that is down are all
    "no" (Zaqar answers them all with one 400).
    """
    try:
        store = storage_for_uri(uri, settings)
    except Exception as exc:  # its text may quote the URI, password included: not logged
        log.info("pool store URI refused by its driver: %s", type(exc).__name__)
        return False
    bound = min(settings.operation_timeout, MAX_PROBE_WAIT) + PROBE_GRACE
    try:
        async with asyncio.timeout(bound):
            await store.open()
            return await store.ping()
    except Exception as exc:  # TimeoutError, StorageError, what a driver raises opening
        log.info("pool store did not answer: %s: %s", type(exc).__name__, exc)
        return False
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(bound):
                await store.close()


async def _check_reachable(uri: str, options: dict[str, Any], settings: Settings) -> None:
    if not await reachable(uri, pool_settings(settings.storage, options)):
        raise InvalidBody(f"cannot connect to {uri}")


def _uri_taken(exc: PoolUriTaken) -> Conflict:
    return Conflict(f"Pool {exc.pool} already uses {exc.uri}: two pools may not share one store.")


def _in_use(exc: PoolInUse, doing: str) -> Conflict:
    return Conflict(
        f"Pool {exc.pool} holds {exc.queues} queue(s); it cannot be {doing} while it "
        "holds any (their messages would be stranded). Delete those queues first."
    )


# -- operations --------------------------------------------------------------------------


@unavailable_as("Pool could not be created.")
async def pool_put(svc: Services, name: str, document: Any) -> bool:
    """Create the pool, or replace it (Zaqar's PUT overwrites); True when created.

    A pool that holds queues may be replaced only with the same ``uri``.
    """
    store = catalog(svc)
    check_name(name, "Pool")
    body = body_object(document)
    unexpected_keys(body, FIELDS)
    for required in ("uri", "weight"):
        if required not in body:
            raise InvalidBody(f"'{required}' is a required property")
    uri, weight = _uri(body), _weight(body)
    flavor = _flavor(body) if "flavor" in body else None
    options = _options(body, svc.settings.storage) if "options" in body else {}
    record = PoolRecord(name=name, uri=uri, weight=weight, flavor=flavor, options=options)
    # The cheap refusals first: no point in connecting for a pool that cannot be.
    old = await store.pool_get(name)
    if old is not None and old.uri != uri:
        await _refuse_if_in_use(store, name, "pointed at another store")
    _refuse_if_reserved(svc.settings, uri)
    await _refuse_if_taken(store, name, uri)
    await _check_reachable(uri, options, svc.settings)
    created = await _write(store, record, "pointed at another store")
    pools_changed(svc)
    return created


@unavailable_as("Pools could not be listed.")
async def pool_list(svc: Services, *, marker: str | None, limit: int | None) -> PoolPage:
    store = catalog(svc)
    maximum = svc.settings.transport.max_pools_per_page
    if limit is None:
        limit = min(DEFAULT_PAGE_SIZE, maximum)
    check_page_limit(limit, maximum, queues=True)
    pools = await store.pool_page(marker, limit)
    return PoolPage(pools=pools, next_marker=pools[-1].name if pools else None)


@unavailable_as("Pool could not be retrieved.")
async def pool_get(svc: Services, name: str) -> PoolRecord:
    found = await catalog(svc).pool_get(name)
    if found is None:
        raise pool_not_found(name)
    return found


@unavailable_as("Pool could not be updated.")
async def pool_update(svc: Services, name: str, document: Any) -> PoolRecord:
    """Change some of ``uri``, ``weight``, ``flavor`` and ``options``; the pool as it is now.

    A new ``uri`` must answer, and is refused while the pool holds queues.
    """
    store = catalog(svc)
    body = body_object(document)
    if not any(field in body for field in FIELDS):
        raise InvalidBody("One of `uri`, `weight`, `flavor`, or `options` needs to be specified")
    unexpected_keys(body, FIELDS)
    changes: dict[str, Any] = {}
    if "uri" in body:
        changes["uri"] = _uri(body)
    if "weight" in body:
        changes["weight"] = _weight(body)
    if "flavor" in body:
        changes["flavor"] = _flavor(body)
    if "options" in body:
        changes["options"] = _options(body, svc.settings.storage)
    old = await store.pool_get(name)
    if old is None:
        raise pool_not_found(name)
    updated = msgspec.structs.replace(old, **changes)
    if updated.uri != old.uri:
        await _refuse_if_in_use(store, name, "pointed at another store")
        _refuse_if_reserved(svc.settings, updated.uri)
        await _refuse_if_taken(store, name, updated.uri)
    if "uri" in body:  # as Zaqar: a uri given is checked, changed or not
        await _check_reachable(updated.uri, updated.options, svc.settings)
    await _write(store, updated, "pointed at another store")
    pools_changed(svc)
    return updated


@unavailable_as("Pool could not be deleted.")
async def pool_delete(svc: Services, name: str) -> None:
    """Remove the pool (nothing when there is none); refused while it holds queues."""
    try:
        await catalog(svc).pool_delete(name)
    except PoolInUse as exc:
        raise _in_use(exc, "deleted") from None
    pools_changed(svc)


def pools_changed(svc: Services) -> None:
    """This node places by the new pool list at once (others within the cache ttl)."""
    if isinstance(svc.storage, PooledStorage):
        svc.storage.pools_changed()


async def _refuse_if_in_use(store: CatalogStore, name: str, doing: str) -> None:
    queues = await store.placement_count(name)
    if queues:
        raise _in_use(PoolInUse(name, queues), doing)


def _refuse_if_reserved(settings: Settings, uri: str) -> None:
    """The management store, and the virtual pool's store, are not for a pool to share."""
    drivers = settings.drivers
    if uri == drivers.management_uri():
        raise Conflict(f"{uri} is the management store: a pool needs a store of its own.")
    if settings.pooling_catalog.enable_virtual_pool and uri == drivers.message_store:
        raise Conflict(
            f"{uri} is the virtual pool's store ([drivers] message_store): a pool needs a "
            "store of its own."
        )


async def _refuse_if_taken(store: CatalogStore, name: str, uri: str) -> None:
    for pool in await store.pools():
        if pool.uri == uri and pool.name != name:
            raise _uri_taken(PoolUriTaken(uri, pool.name))


async def _write(store: CatalogStore, record: PoolRecord, doing: str) -> bool:
    # The catalog checks again, atomically: another node may have acted meanwhile.
    try:
        return await store.pool_put(record)
    except PoolUriTaken as exc:
        raise _uri_taken(exc) from None
    except PoolInUse as exc:
        raise _in_use(exc, doing) from None
    except TooManyPools as exc:
        raise Conflict(f"No more pools can be created: {exc}. Delete one first.") from None
