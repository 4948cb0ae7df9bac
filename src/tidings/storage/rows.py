"""Row shapes shared by the SQL drivers (SQLite and PostgreSQL select the same columns)."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from tidings.model import Delivery, DeliveryKind, Message, QueueRecord, Subscription
from tidings.storage import rules
from tidings.storage.base import MessageListing, MessageVolume, QueueListing

END_OF_QUEUE = 2**63 - 1
_MARKER = re.compile(r"[0-9]{1,19}")


def message_from_row(row: tuple[Any, ...] | Any) -> Message:
    """A message from ``seq, id, body, ttl, created, expires, client_id, claim_id,
    claim_expires, claim_count, delay_until``."""
    (
        seq,
        mid,
        body,
        ttl,
        created,
        expires,
        client_id,
        claim_id,
        claim_expires,
        claim_count,
        delay_until,
    ) = row
    return Message(
        id=str(mid),
        marker=str(seq),
        body=bytes(body),
        ttl=ttl,
        created=created,
        expires=expires,
        client_id=client_id,
        claim_id=None if claim_id is None else str(claim_id),
        claim_expires=claim_expires,
        claim_count=claim_count,
        delay_until=delay_until,
    )


def marker_seq(marker: str | None) -> int:
    """The sequence after which a page starts.

    Markers are the sequence numbers we hand out; a foreign one matches nothing after it
    (as in Zaqar, an unknown marker yields an empty page).
    """
    if marker is None:
        return 0
    if not _MARKER.fullmatch(marker):
        return END_OF_QUEUE
    return min(int(marker), END_OF_QUEUE)


def subscription_from_row(row: tuple[Any, ...] | Any) -> Subscription:
    """A subscription from ``id, source, subscriber, ttl, options, confirmed, updated,
    expires`` (options as JSON text)."""
    sid, source, subscriber, ttl, options, confirmed, updated, expires = row
    return Subscription(
        id=str(sid),
        source=source,
        subscriber=subscriber,
        ttl=ttl,
        options=dict(msgspec.json.decode(options)),
        confirmed=bool(confirmed),
        updated=updated,
        expires=expires,
    )


def delivery_from_row(row: tuple[Any, ...] | Any) -> tuple[Delivery, bool]:
    """A delivery, and whether its subscription is live, from ``id, project, source,
    subscription_id, kind, message_id, payload, ttl, delay, attempts, subscriber,
    options, live``."""
    (
        did,
        project,
        source,
        sid,
        kind,
        message_id,
        payload,
        ttl,
        delay,
        attempts,
        subscriber,
        options,
        live,
    ) = row
    delivery = Delivery(
        id=str(did),
        project=project,
        source=source,
        subscription_id=str(sid),
        kind=DeliveryKind(kind),
        message_id=message_id,
        payload=bytes(payload),
        ttl=ttl,
        delay=delay,
        attempts=attempts,
        subscriber=subscriber or "",
        options=dict(msgspec.json.decode(options)) if options else {},
    )
    return delivery, bool(live)


def filtered_queue_page(
    candidates: list[tuple[str, str]],
    limit: int,
    metadata_equals: dict[str, Any] | None,
    window_end: tuple[int, str | None] | None,
    budget: int,
) -> QueueListing:
    """A listing from a budgeted scan (``queue_scan`` in both SQL drivers).

    ``candidates`` are the (name, metadata) rows the scan's prefilter kept, at most
    ``limit``; ``window_end`` is (rows examined, last name examined), read only when the
    scan came back short of ``limit``.
    """
    found = []
    for name, raw in candidates:
        metadata = dict(msgspec.json.decode(raw))
        if rules.metadata_matches(metadata, metadata_equals):
            found.append(QueueRecord(name=name, metadata=metadata))
    resume_after = None
    if len(candidates) >= limit:
        if len(found) < limit:  # the prefilter let through some that did not match
            resume_after = candidates[-1][0]
    elif window_end is not None and window_end[0] >= budget:
        resume_after = window_end[1]
    return QueueListing(queues=found, resume_after=resume_after)


def budgeted_message_page(
    messages: list[Message], limit: int, window_end: tuple[int, int | None] | None, budget: int
) -> MessageListing:
    """A listing from a budgeted scan (``message_list_*`` in both SQL drivers).

    ``window_end`` is (rows the scan's window holds, last seq in it), read only when the
    page came back short of ``limit``. When the window was full, the listing resumes
    after it; messages found past it (lapsed claims, read from their own index) are left
    to the page that starts there, so none is returned twice.
    """
    if len(messages) >= limit or window_end is None or window_end[0] < budget:
        return MessageListing(messages=messages)
    last = window_end[1]
    if last is None:
        return MessageListing(messages=messages)
    return MessageListing(
        messages=[m for m in messages if int(m.marker) <= last], resume_after=str(last)
    )


def volume_from_row(row: tuple[Any, ...] | Any, budget: int) -> MessageVolume:
    """Health's volume from ``message_volume``: queues (up to budget + 1), total, marked."""
    queues, total, marked = row
    return MessageVolume(total=int(total), claimed=int(marked), complete=int(queues) <= budget)
