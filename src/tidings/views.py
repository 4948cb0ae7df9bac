"""Wire shapes of domain records, shared by the HTTP and WebSocket transports.

Views that return a Struct of ``tidings.http.schemas`` are what the OpenAPI document
describes. Those still returning dicts (the WebSocket transport edits some, and
tests/unit/test_views.py reads them as dicts) encode exactly as their Structs there:
tests/api/test_openapi.py checks it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
from msgspec import UNSET

from tidings.http import schemas as wire
from tidings.model import (
    DeliveryFailure,
    Message,
    MessageSummary,
    PoolRecord,
    QueueRecord,
    QueueStats,
    Subscription,
)
from tidings.ops.metadata import with_defaults

if TYPE_CHECKING:
    from tidings.config import TransportSettings
    from tidings.ops.flavors import FlavorView

API_PREFIX = "/v2"


def queue_href(queue: str, collection: str = "queues") -> str:
    """A queue's (or, with ``collection="topics"``, a topic's) path."""
    return f"{API_PREFIX}/{collection}/{queue}"


def queue_entries(
    queues: Iterable[QueueRecord],
    *,
    detailed: bool,
    limits: TransportSettings,
    collection: str,
    with_href: bool,
) -> list[wire.QueueEntry]:
    """A queue listing's items as both transports render them (WebSocket's carry no href)."""
    return [
        wire.QueueEntry(
            name=queue.name,
            metadata=with_defaults(queue.metadata, limits, collection) if detailed else UNSET,
            href=queue_href(queue.name, collection) if with_href else UNSET,
        )
        for queue in queues
    ]


def message_href(
    queue: str, message_id: str, claim_id: str | None = None, collection: str = "queues"
) -> str:
    href = f"{API_PREFIX}/{collection}/{queue}/messages/{message_id}"
    return f"{href}?claim_id={claim_id}" if claim_id else href


def claim_href(queue: str, claim_id: str) -> str:
    return f"{API_PREFIX}/queues/{queue}/claims/{claim_id}"


def age(created: float, now: float) -> int:
    return max(0, int(now - created))


def checksum(body: bytes) -> str:
    # Zaqar hashes the body as Python's json.dumps renders it (", " and ": ").
    rendered = json.dumps(msgspec.json.decode(body))
    return "MD5:" + hashlib.md5(rendered.encode(), usedforsecurity=False).hexdigest()


def message(
    m: Message, queue: str, now: float, *, with_checksum: bool = False, collection: str = "queues"
) -> dict[str, Any]:
    # message_href, Message.claimed and age inlined: this runs for every message of
    # every claim and listing.
    href = f"{API_PREFIX}/{collection}/{queue}/messages/{m.id}"
    if m.claim_id and m.claim_expires > now:
        href = f"{href}?claim_id={m.claim_id}"
    created = m.created
    view: dict[str, Any] = {
        "id": m.id,
        "href": href,
        "ttl": m.ttl,
        "age": int(now - created) if now > created else 0,
        "body": msgspec.Raw(m.body),
    }
    if with_checksum:
        view["checksum"] = checksum(m.body)
    return view


def popped_message(m: Message, now: float, *, with_checksum: bool = False) -> dict[str, Any]:
    """Popped messages have no href (they no longer exist) and no throw-away claim."""
    view: dict[str, Any] = {
        "id": m.id,
        "age": age(m.created, now),
        "ttl": m.ttl,
        "body": msgspec.Raw(m.body),
        "claim_id": None,
        "claim_count": m.claim_count,
    }
    if with_checksum:  # as Zaqar, whose pop returns what its claim did
        view["checksum"] = checksum(m.body)
    return view


def iso8601(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _summary(s: MessageSummary, queue: str, now: float, collection: str) -> dict[str, Any]:
    return {
        "age": age(s.created, now),
        "created": iso8601(s.created),
        "href": message_href(queue, s.id, collection=collection),
    }


def stats(s: QueueStats, queue: str, now: float, collection: str = "queues") -> dict[str, Any]:
    counts: dict[str, Any] = {"claimed": s.claimed, "free": s.total - s.claimed, "total": s.total}
    if s.total and s.oldest and s.newest:
        counts["oldest"] = _summary(s.oldest, queue, now, collection)
        counts["newest"] = _summary(s.newest, queue, now, collection)
    return {"messages": counts}


def subscription(s: Subscription, now: float) -> dict[str, Any]:
    return {
        "id": s.id,
        "source": s.source,
        "subscriber": s.subscriber,
        "ttl": s.ttl,
        "age": age(s.updated, now),
        "options": s.options,
        "confirmed": s.confirmed,
    }


def delivery_failure(f: DeliveryFailure) -> dict[str, Any]:
    return {
        "kind": f.kind.value,
        "message_id": f.message_id,
        "attempts": f.attempts,
        "error": f.error,
        "failed": iso8601(f.failed),
    }


def pool_href(name: str) -> str:
    return f"{API_PREFIX}/pools/{name}"


def flavor_href(name: str) -> str:
    return f"{API_PREFIX}/flavors/{name}"


def pool_view(pool: PoolRecord, *, detailed: bool, with_href: bool = True) -> wire.Pool:
    """Zaqar's pool: ``options`` only when detailed."""
    return wire.Pool(
        name=pool.name,
        uri=pool.uri,
        weight=pool.weight,
        flavor=pool.flavor,
        options=pool.options if detailed else UNSET,
        href=pool_href(pool.name) if with_href else UNSET,
    )


def flavor_view(flavor: FlavorView, *, with_href: bool = True) -> wire.Flavor:
    """Zaqar's flavor, as GET shows one."""
    return wire.Flavor(
        name=flavor.name,
        capabilities=flavor.capabilities,
        pool_list=flavor.pool_list,
        href=flavor_href(flavor.name) if with_href else UNSET,
    )


def flavor_entry(flavor: FlavorView, *, detailed: bool, with_href: bool = True) -> wire.FlavorEntry:
    """Zaqar's flavor in a listing: ``pool_list`` only when not empty, ``capabilities``
    only when detailed."""
    return wire.FlavorEntry(
        name=flavor.name,
        href=flavor_href(flavor.name) if with_href else UNSET,
        pool_list=flavor.pool_list if flavor.pool_list else UNSET,
        capabilities=flavor.capabilities if detailed else UNSET,
    )
