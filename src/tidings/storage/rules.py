"""Decisions every driver applies the same way inside its own atomic section."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import msgspec

from tidings.errors import ClaimedMessage, UnableToDelete
from tidings.ids import new_id
from tidings.model import Message, Subscription

CLAIM_NOT_LIVE = "The specified claim does not exist or has expired."
NOT_CLAIMED = "A claim was specified, but the message is not currently claimed."


def well_formed_claim_id(claim_id: str) -> bool:
    """Claim ids are UUIDs; anything else is refused before any lookup."""
    try:
        uuid.UUID(claim_id)
    except ValueError:
        return False
    return True


def check_delete(message: Message, claim_id: str | None, claim_is_live: bool, now: float) -> None:
    """Raise unless ``message`` may be deleted by a caller presenting ``claim_id``.

    ``claim_is_live`` tells whether ``claim_id`` names a live claim of the same queue.
    A malformed claim id is refused before anything else, as Zaqar does.
    """
    if claim_id is not None and not well_formed_claim_id(claim_id):
        raise UnableToDelete(CLAIM_NOT_LIVE)
    if not message.claimed(now):
        if claim_id is not None:
            raise UnableToDelete(NOT_CLAIMED)
        return
    if claim_id == message.claim_id:
        return
    if claim_id is None or claim_is_live:
        raise ClaimedMessage()
    raise UnableToDelete(CLAIM_NOT_LIVE)


def message_not_held(message: Message, claim_ids: set[str], now: float) -> str | None:
    """Why a bulk delete that names ``claim_ids`` may not delete ``message``, if it may not."""
    if not message.claimed(now):
        return f"Message {message.id} is not claimed, so claim_ids cannot cover it."
    if message.claim_id not in claim_ids:
        return f"Message {message.id} is held by a claim not listed in claim_ids."
    return None


# Longest claim ttl or grace a store keeps (about 31 years): past any configurable
# limit, and small enough that now + ttl + grace stays exact and fits every store's
# integer columns (PostgreSQL's are 32-bit).
MAX_CLAIM_SECONDS = 10**9


def bounded_claim(ttl: int, grace: int) -> tuple[int, int]:
    """A claim's ttl and grace as stored: clamped to [0, MAX_CLAIM_SECONDS].

    Operations range-check both; drivers clamp as well, so a value that slipped past
    (a negative grace would expire claimed messages early, a huge one overflow the
    store's numbers) can never make a queue unreadable.
    """
    return (
        min(max(int(ttl), 0), MAX_CLAIM_SECONDS),
        min(max(int(grace), 0), MAX_CLAIM_SECONDS),
    )


def claimed_lifetime(
    expires: float, ttl: int, claim_expires: float, claim_ttl: int, grace: int
) -> tuple[float, int]:
    """A claimed message outlives its claim by ``grace``: (new expiry, reported ttl)."""
    if expires < claim_expires:
        return claim_expires + grace, claim_ttl + grace
    return expires, ttl


def changed_subscription(
    current: Subscription,
    now: float,
    *,
    subscriber: str | None = None,
    ttl: int | None = None,
    options: dict[str, Any] | None = None,
) -> Subscription:
    """The subscription after an update: options are replaced, a new ttl restarts the clock."""
    changes: dict[str, Any] = {}
    if subscriber is not None:
        changes["subscriber"] = subscriber
    if options is not None:
        changes["options"] = options
    if ttl is not None:
        changes.update(ttl=ttl, updated=now, expires=now + ttl)
    return msgspec.structs.replace(current, **changes)


def new_subscription(
    source: str, subscriber: str, ttl: int, options: dict[str, Any], now: float
) -> Subscription:
    """A subscription as created: fresh id, unconfirmed, live for ``ttl`` from now."""
    return Subscription(
        id=new_id(),
        source=source,
        subscriber=subscriber,
        ttl=ttl,
        options=options,
        confirmed=False,
        updated=now,
        expires=now + ttl,
    )


def metadata_needles(wanted: dict[str, Any] | None) -> list[str]:
    """Text every stored metadata document matching ``wanted`` contains: ``"key":``.

    Stores keep metadata as msgspec's compact JSON, so a SQL or Lua scan can drop most
    non-matching queues without decoding them; ``metadata_matches`` still decides.
    """
    return [msgspec.json.encode(key).decode() + ":" for key in wanted or {}]


def metadata_matches(metadata: dict[str, Any], wanted: dict[str, Any] | None) -> bool:
    """The queue-listing filter: every wanted key present with an equal value."""
    return not wanted or all(
        key in metadata and metadata[key] == value for key, value in wanted.items()
    )


def scan_window(budget: int, limit: int) -> int:
    """Rows a budgeted scan may examine: the budget, never fewer than the page asked for."""
    return max(budget, limit)


class TakeShares:
    """How many deliveries one ``take`` may lease from each project: the project's
    share less what it has in flight, within what is left of the take's limit."""

    def __init__(self, limit: int, per_project: int | None, in_flight: Mapping[str, int] | None):
        self.limit = limit
        self.share = limit if per_project is None else per_project
        self.busy = dict(in_flight or {})

    def saturated(self) -> list[str]:
        """Projects at their share: a take leases nothing of theirs."""
        return [project for project, count in self.busy.items() if count >= self.share]

    def quota(self, project: str, taken: int) -> int:
        return min(self.share - self.busy.get(project, 0), self.limit - taken)
