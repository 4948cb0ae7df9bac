"""Immutable domain records passed between operations and storage drivers.

Times are POSIX seconds as floats; the API reports whole seconds.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec


class NewMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A message accepted for posting: body as raw JSON, lifetimes already resolved."""

    body: bytes
    ttl: int
    delay: int = 0


class Message(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    marker: str
    body: bytes
    ttl: int
    created: float
    expires: float
    client_id: str
    claim_id: str | None = None
    claim_expires: float = 0.0
    claim_count: int = 0
    delay_until: float = 0.0

    def claimed(self, now: float) -> bool:
        return self.claim_id is not None and self.claim_expires > now


class QueueRecord(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    metadata: dict[str, Any]


class PoolRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A store that queues may be placed on (pooled mode; pools are global)."""

    name: str
    uri: str
    weight: int
    flavor: str | None = None
    # Overrides of [storage] settings for this pool's connections.
    options: dict[str, Any] = msgspec.field(default_factory=dict)


class FlavorRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A named set of pools (those whose ``flavor`` names it), per project as in Zaqar."""

    project: str
    name: str


class MessageSummary(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    created: float


class QueueStats(msgspec.Struct, frozen=True, kw_only=True):
    total: int
    claimed: int
    # Of total, those still delayed (not shown to clients: Zaqar's stats have no such
    # field; metrics' queue gauges use it). SQL stores count at most scan_budget of them.
    delayed: int = 0
    oldest: MessageSummary | None = None
    newest: MessageSummary | None = None


class Claim(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    ttl: int
    grace: int
    updated: float
    expires: float
    messages: list[Message]


class DeadLetterPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Where messages go once claimed ``max_claim_count`` times."""

    max_claim_count: int
    queue: str
    message_ttl: int | None = None


class ClaimRequest(msgspec.Struct, frozen=True, kw_only=True):
    ttl: int
    grace: int
    limit: int
    dead_letter: DeadLetterPolicy | None = None


class ClaimResult(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    messages: list[Message]


class Subscription(msgspec.Struct, frozen=True, kw_only=True):
    """Where messages posted to a queue (or topic) are pushed."""

    id: str
    source: str
    subscriber: str
    ttl: int
    options: dict[str, Any]
    confirmed: bool
    updated: float  # creation or last ttl change; age counts from here
    expires: float


class DeliveryKind(enum.StrEnum):
    NOTIFICATION = "notification"
    CONFIRMATION = "confirmation"
    UNSUBSCRIBE = "unsubscribe"


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """One push owed to one subscription, as taken from the outbox.

    ``payload`` is the message body (notifications) or the whole document to send
    (confirmations). ``subscriber`` and ``options`` are the subscription's current ones.
    """

    id: str
    project: str
    source: str
    subscription_id: str
    kind: DeliveryKind
    message_id: str | None
    payload: bytes
    ttl: int
    delay: int
    attempts: int
    subscriber: str
    options: dict[str, Any]


class DeliveryFailure(msgspec.Struct, frozen=True, kw_only=True):
    """A delivery that exhausted its retries, kept where an operator can see it."""

    subscription_id: str
    kind: DeliveryKind
    message_id: str | None
    attempts: int
    error: str
    failed: float
