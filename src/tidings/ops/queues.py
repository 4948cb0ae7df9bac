"""Queue operations: create, get, list, update (JSON patch), delete, stats, purge."""

from __future__ import annotations

from typing import Any

import jsonpatch
import jsonpointer
import msgspec

from tidings.errors import BadRequest, Conflict, InvalidBody
from tidings.model import QueueRecord, QueueStats
from tidings.ops import metadata as reserved
from tidings.ops.context import (
    Caller,
    Services,
    source_not_found,
    split_namespace,
    unavailable_as,
)
from tidings.ops.validation import (
    check_page_limit,
    check_queue_name,
    check_size,
    require_object,
)

PATCH_OPS = ("add", "remove", "replace")
PURGEABLE = frozenset({"messages", "subscriptions"})


class QueuePage(msgspec.Struct, frozen=True, kw_only=True):
    queues: list[QueueRecord]
    count: int | None = None
    # Where the next page starts; None when there is nothing to go on to. A filtered
    # listing that ran out of its scan budget sets it even on a short or empty page.
    next_marker: str | None = None


def check_metadata_size(svc: Services, size: int | None, *, patch: bool = False) -> None:
    maximum = svc.settings.transport.max_queue_metadata
    check_size(
        size,
        maximum,
        f"Queue metadata is too large. Max size: {maximum}",
        title=InvalidBody.title if patch else None,
    )


@unavailable_as("Queue could not be created.")
async def queue_create(svc: Services, caller: Caller, name: str, document: Any) -> bool:
    """Create the queue; False when it existed (its metadata is then left as it was)."""
    check_queue_name(caller.project, name)
    metadata = {} if document is None else require_object(document)
    reserved.validate(metadata, svc.settings.transport)
    return await svc.storage.queues.create(caller.project, name, metadata, svc.clock())


@unavailable_as("Queue metadata could not be retrieved.")
async def queue_get(svc: Services, caller: Caller, name: str) -> dict[str, Any]:
    check_queue_name(caller.project, name)
    stored = await svc.storage.queues.get_metadata(caller.project, name)
    # A missing queue shows the defaults, as Zaqar does (clients rely on it).
    return reserved.with_defaults(stored or {}, svc.settings.transport, _collection(caller))


@unavailable_as("Queue metadata could not be retrieved.")
async def queue_exists(svc: Services, caller: Caller, name: str) -> bool:
    check_queue_name(caller.project, name)
    return await svc.storage.queues.get_metadata(caller.project, name) is not None


@unavailable_as("Queues could not be listed.")
async def queue_list(
    svc: Services,
    caller: Caller,
    *,
    marker: str | None = None,
    limit: int | None = None,
    with_count: bool = False,
    name_contains: str | None = None,
    metadata_equals: dict[str, Any] | None = None,
) -> QueuePage:
    limits = svc.settings.transport
    if limit is None:
        limit = min(10, limits.max_queues_per_page)
    check_page_limit(limit, limits.max_queues_per_page, queues=True)
    listing = await svc.storage.queues.page(
        caller.project,
        marker=marker,
        limit=limit,
        name_contains=name_contains or None,
        metadata_equals=metadata_equals or None,
    )
    queues = listing.queues
    # As in Zaqar, any non-empty page links onward (the next one may be empty).
    next_marker = listing.resume_after or (queues[-1].name if queues else None)
    count = await svc.storage.queues.count(caller.project) if with_count else None
    return QueuePage(queues=queues, count=count, next_marker=next_marker)


def _patch_key(change: dict[str, Any]) -> str:
    path = change.get("path")
    if path is None:
        raise InvalidBody("Unable to find 'path' in JSON Schema change")
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidBody(f'Pointer `{path}` does not start with "/".')
    if path.endswith("/"):
        raise InvalidBody(f'Pointer `{path}` end with "/".')
    try:
        parts = jsonpointer.JsonPointer(path).parts
    except jsonpointer.JsonPointerException as exc:
        raise InvalidBody(str(exc)) from exc
    if len(parts) != 2:
        raise InvalidBody(f"Invalid JSON pointer for this resource: '{path}, e.g /metadata/key'")
    if parts[0] != "metadata":
        raise InvalidBody("The root of path must be metadata, e.g /metadata/key.")
    return str(parts[1])


def _collection(caller: Caller) -> str:
    return split_namespace(caller.project)[1]


def _normalised_patch(
    document: Any, stored: dict[str, Any], reserved_keys: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Zaqar's restricted JSON patch as a plain RFC 6902 patch over ``{"metadata": ...}``.

    Reserved keys always "exist" (they have defaults), so replacing an absent reserved
    key adds it and removing one is a no-op.
    """
    if document is None:
        raise InvalidBody("PATCH body could not be empty for update.")
    if not isinstance(document, list):
        raise InvalidBody("Request body must be a JSON array of operation objects.")
    present = set(stored)
    patch = []
    for change in document:
        if not isinstance(change, dict):
            raise InvalidBody("Operations must be JSON objects.")
        op = change.get("op")
        if op is None:
            raise InvalidBody(
                "Unable to find `op` in JSON Schema change. "
                "It must be one of the following: add, remove, replace."
            )
        if op not in PATCH_OPS:
            raise InvalidBody(
                f"Invalid operation: `{op}`. It must be one of the following: add, remove, replace."
            )
        key = _patch_key(change)
        pointer = jsonpointer.JsonPointer.from_parts(["metadata", key]).path
        if op == "remove":
            if key not in present:
                if key in reserved_keys:
                    continue
                raise Conflict(f"Can't remove non-existent object {key}.")
            present.discard(key)
            patch.append({"op": "remove", "path": pointer})
            continue
        if "value" not in change:
            raise InvalidBody(f'Operation "{op}" requires a member named "value".')
        if op == "replace" and key not in present:
            if key not in reserved_keys:
                raise Conflict(f"Can't replace non-existent object {key}.")
            op = "add"
        present.add(key)
        patch.append({"op": op, "path": pointer, "value": change["value"]})
    return patch


@unavailable_as("Queue could not be updated.")
async def queue_update(svc: Services, caller: Caller, name: str, document: Any) -> dict[str, Any]:
    """Apply a metadata patch; returns the resulting metadata with defaults filled in."""
    check_queue_name(caller.project, name)
    stored = await svc.storage.queues.get_metadata(caller.project, name)
    if stored is None:
        raise source_not_found(caller, name)
    collection = _collection(caller)
    patch = _normalised_patch(document, stored, reserved.reserved_keys(collection))
    try:
        updated = jsonpatch.apply_patch({"metadata": stored}, patch)["metadata"]
    except jsonpatch.JsonPatchConflict as exc:
        raise Conflict(str(exc)) from exc
    except RecursionError as exc:  # metadata stored deep before depth was bounded
        raise InvalidBody(
            f"Queue metadata may not be nested more than "
            f"{svc.settings.transport.max_metadata_depth} levels deep."
        ) from exc
    try:
        reserved.validate(updated, svc.settings.transport)
    except BadRequest as exc:  # Zaqar words these as body errors on PATCH
        raise InvalidBody(exc.description) from exc
    # Zaqar bounds only the PATCH body, so repeated patches grew metadata without limit;
    # what is stored obeys the same cap as a PUT.
    check_metadata_size(svc, len(msgspec.json.encode(updated)), patch=True)
    if not await svc.storage.queues.set_metadata(caller.project, name, updated):
        raise source_not_found(caller, name)
    return reserved.with_defaults(updated, svc.settings.transport, collection)


@unavailable_as("Queue could not be deleted.")
async def queue_delete(svc: Services, caller: Caller, name: str) -> None:
    check_queue_name(caller.project, name)
    await svc.storage.queues.delete(caller.project, name)


@unavailable_as("Queue stats could not be read.")
async def queue_stats(svc: Services, caller: Caller, name: str) -> tuple[QueueStats, float]:
    """The stats and the time they were taken (ages are relative to it)."""
    check_queue_name(caller.project, name)
    now = svc.clock()
    return await svc.storage.queues.stats(caller.project, name, now), now


@unavailable_as("Queue could not be purged.")
async def queue_purge(svc: Services, caller: Caller, name: str, document: Any) -> None:
    check_queue_name(caller.project, name)
    types: Any = PURGEABLE
    if document is not None:
        body = require_object(document)
        if "resource_types" not in body:
            raise BadRequest('Post body must contain key "resource_types".')
        types = body["resource_types"]
        if not (
            isinstance(types, list)
            and all(isinstance(t, str) for t in types)
            and set(types) <= PURGEABLE
        ):
            raise BadRequest("Resource types must be a sub set of {'messages', 'subscriptions'}.")
    if "messages" in types:
        await svc.storage.queues.purge_messages(caller.project, name)
    if "subscriptions" in types:
        await svc.storage.subscriptions.purge(caller.project, name)
