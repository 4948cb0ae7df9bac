"""Wire shapes of the WebSocket answers (Zaqar's: messages carry no href, a claim_id).

Message bodies stay ``msgspec.Raw`` JSON for JSON frames (copied into the frame as
they are) and are decoded for MessagePack frames, which cannot embed JSON text.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tidings import views
from tidings.model import Claim, DeliveryFailure, Message, QueueStats, Subscription


def body(raw: bytes, binary: bool) -> Any:
    return msgspec.json.decode(raw) if binary else msgspec.Raw(raw)


def message(
    m: Message,
    now: float,
    *,
    binary: bool,
    with_checksum: bool,
    claim_id: str | None = None,
) -> dict[str, Any]:
    """A message as Zaqar's WebSocket API shows it; ``claim_id`` defaults to its live one."""
    if claim_id is None and m.claimed(now):
        claim_id = m.claim_id
    view: dict[str, Any] = {
        "id": m.id,
        "claim_id": claim_id,
        "ttl": m.ttl,
        "age": views.age(m.created, now),
        "body": body(m.body, binary),
    }
    if with_checksum:
        view["checksum"] = views.checksum(m.body)
    return view


def popped(m: Message, now: float, *, binary: bool, with_checksum: bool) -> dict[str, Any]:
    view = views.popped_message(m, now, with_checksum=with_checksum)
    view["body"] = body(m.body, binary)
    return view


def claim(c: Claim, now: float, *, binary: bool, with_checksum: bool) -> dict[str, Any]:
    return {
        "age": views.age(c.updated, now),
        "ttl": c.ttl,
        "messages": [
            message(m, now, binary=binary, with_checksum=with_checksum, claim_id=c.id)
            for m in c.messages
        ],
    }


def stats(s: QueueStats, queue: str, now: float, collection: str) -> dict[str, Any]:
    return views.stats(s, queue, now, collection)


def subscription(s: Subscription, now: float) -> dict[str, Any]:
    return views.subscription(s, now)


def failure(f: DeliveryFailure) -> dict[str, Any]:
    return views.delivery_failure(f)
