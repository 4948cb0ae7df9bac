"""Flavor administration (pooled mode): create, list, get, update, delete.

A flavor belongs to a project (Zaqar's rule: another project sees a 404), and is the
set of pools whose ``flavor`` names it; pools are global and record only that name.
Its capabilities are what all of its pools' drivers guarantee
(``tidings.pooling.capabilities``); capabilities a client sends are ignored, as in
Zaqar.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tidings.errors import BadRequest, InvalidBody, NotFound
from tidings.model import FlavorRecord, PoolRecord
from tidings.ops.context import Caller, Services, unavailable_as
from tidings.ops.pools import (
    DEFAULT_PAGE_SIZE,
    body_object,
    catalog,
    check_name,
    pools_changed,
    shown,
    unexpected_keys,
)
from tidings.ops.validation import check_page_limit
from tidings.pooling.capabilities import shared
from tidings.storage.catalog import MAX_POOLS, CatalogStore

FIELDS = ("pool_list", "capabilities")


class FlavorView(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    pool_list: list[str]
    capabilities: list[str]


class FlavorPage(msgspec.Struct, frozen=True, kw_only=True):
    flavors: list[FlavorView]
    next_marker: str | None


def flavor_not_found(name: str) -> NotFound:
    return NotFound(f"Flavor {name} does not exist")


def _view(name: str, pools: list[PoolRecord]) -> FlavorView:
    members = [p for p in pools if p.flavor == name]
    return FlavorView(
        name=name,
        pool_list=[p.name for p in members],
        capabilities=shared(p.uri for p in members),
    )


def _pool_list(body: dict[str, Any]) -> list[str]:
    """The pools a create or update body lists (at least one), each once, in its order;
    its ``capabilities`` are checked for shape, then ignored: capabilities follow from
    the pools' drivers."""
    value = body["pool_list"]
    if not isinstance(value, list):
        raise InvalidBody(f"{shown(value)} is not of type 'array'")
    for item in value:
        if not isinstance(item, str):
            raise InvalidBody(f"{shown(item)} is not of type 'string'")
    if len(value) > MAX_POOLS:
        raise InvalidBody(f"`pool_list` may name at most {MAX_POOLS} pools")
    if "capabilities" in body and not isinstance(body["capabilities"], dict):
        raise InvalidBody(f"{shown(body['capabilities'])} is not of type 'object'")
    if not value:
        raise BadRequest("Bad Request", title="Unable to create")
    return list(dict.fromkeys(value))


def _missing_pool(pool_list: list[str], pools: list[PoolRecord]) -> str | None:
    known = {p.name for p in pools}
    return next((name for name in pool_list if name not in known), None)


@unavailable_as("Flavor could not be created.")
async def flavor_put(svc: Services, caller: Caller, name: str, document: Any) -> bool:
    """Create the flavor on the listed pools (taken from any flavor they were in), or
    give an existing one exactly these pools; True when it was created."""
    store = catalog(svc)
    check_name(name, "Flavor")
    body = body_object(document)
    unexpected_keys(body, FIELDS)
    if "pool_list" not in body:
        raise InvalidBody("'pool_list' is a required property")
    pool_list = _pool_list(body)
    pools = await store.pools()
    missing = _missing_pool(pool_list, pools)
    if missing is not None:
        raise BadRequest(
            f"Flavor {name} could not be created, error:Pool {missing} does not exist",
            title="Unable to create",
        )
    created = await store.flavor_put(FlavorRecord(project=caller.project, name=name))
    if created:
        await store.pools_set_flavor(pool_list, name)
    else:  # a PUT replaces this project's flavor
        await _assign(store, name, pools, pool_list)
    pools_changed(svc)
    return created


@unavailable_as("Flavor could not be retrieved.")
async def flavor_get(svc: Services, caller: Caller, name: str) -> FlavorView:
    store = catalog(svc)
    if await store.flavor_get(caller.project, name) is None:
        raise flavor_not_found(name)
    return _view(name, await store.pools())


@unavailable_as("Flavors could not be listed.")
async def flavor_list(
    svc: Services, caller: Caller, *, marker: str | None, limit: int | None
) -> FlavorPage:
    store = catalog(svc)
    maximum = svc.settings.transport.max_flavors_per_page
    if limit is None:
        limit = min(DEFAULT_PAGE_SIZE, maximum)
    check_page_limit(limit, maximum, queues=True)
    page = await store.flavor_page(caller.project, marker, limit)
    pools = await store.pools() if page else []
    return FlavorPage(
        flavors=[_view(f.name, pools) for f in page],
        next_marker=page[-1].name if page else None,
    )


@unavailable_as("Flavor could not be updated.")
async def flavor_update(svc: Services, caller: Caller, name: str, document: Any) -> FlavorView:
    """Give the flavor exactly the listed pools; the flavor as it is now."""
    store = catalog(svc)
    body = body_object(document)
    if "pool_list" not in body:
        raise InvalidBody("`pool_list` needs to be specified")
    unexpected_keys(body, FIELDS)
    pool_list = _pool_list(body)
    if await store.flavor_get(caller.project, name) is None:
        raise flavor_not_found(name)
    pools = await store.pools()
    missing = _missing_pool(pool_list, pools)
    if missing is not None:
        raise BadRequest(
            f"Flavor {name} cant be updated, error:Pool {missing} does not exist",
            title="updatefail",
        )
    await _assign(store, name, pools, pool_list)
    pools_changed(svc)
    return _view(name, await store.pools())


@unavailable_as("Flavor could not be deleted.")
async def flavor_delete(svc: Services, caller: Caller, name: str) -> None:
    """Remove the flavor and take its pools out of it (their queues stay where they are);
    nothing when this project has no such flavor."""
    store = catalog(svc)
    if await store.flavor_get(caller.project, name) is None:
        return
    pools = await store.pools()
    await store.pools_set_flavor([p.name for p in pools if p.flavor == name], None)
    await store.flavor_delete(caller.project, name)
    pools_changed(svc)


async def _assign(
    store: CatalogStore, name: str, pools: list[PoolRecord], pool_list: list[str]
) -> None:
    """Give the flavor exactly ``pool_list``: the pools it no longer lists leave it."""
    await store.pools_set_flavor(pool_list, name)
    keep = set(pool_list)
    await store.pools_set_flavor(
        [p.name for p in pools if p.flavor == name and p.name not in keep], None
    )
