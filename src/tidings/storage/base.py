"""The storage interface: small Protocols every driver implements.

Drivers turn every backend failure (connection refused or lost, timeout, server error)
into ``StorageError``, which operations report as 503; they never hang past
``[storage] operation_timeout`` and reconnect by themselves when the backend returns.
Domain outcomes (a claimed message, an unknown claim) follow ``storage.rules``.

Every time-dependent call receives ``now`` from the operation layer, so drivers stay
deterministic and tests can control time. Atomicity rules are part of the contract and
are checked by ``tests/contract`` against every driver:

* a message is held by at most one live claim;
* claiming skips expired, delayed and live-claimed messages;
* deleting a message checks its claim atomically with the delete.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import msgspec

from tidings.model import (
    Claim,
    ClaimRequest,
    ClaimResult,
    DeadLetterPolicy,
    Delivery,
    DeliveryFailure,
    DeliveryKind,
    Message,
    NewMessage,
    QueueRecord,
    QueueStats,
    Subscription,
)
from tidings.storage.catalog import CatalogStore
from tidings.storage.feed import ChangeFeed


class Audience(enum.Enum):
    """Which subscriptions a post notifies."""

    NOBODY = "nobody"
    ALL = "all"
    CONFIRMED = "confirmed"  # [notification] require_confirmation


PreparePost = Callable[[dict[str, Any]], Sequence[NewMessage]]
"""Builds the batch to store from the queue's current metadata ({} for a new queue).

Drivers call it inside the same atomic section that stores the batch, so limits and
defaults come from the metadata in force at that moment; if it raises, nothing is
stored and no queue is created."""


DeadLetterRule = Callable[[dict[str, Any]], DeadLetterPolicy | None]
"""Derives a queue's dead-letter policy from its metadata ({} never has one)."""


class QueueListing(msgspec.Struct, frozen=True, kw_only=True):
    """A page of queues, and where to go on when the scan budget ran out first."""

    queues: list[QueueRecord]
    # Set when a filtered listing examined ``[storage] scan_budget`` queues before its
    # page filled or the catalog ended: the name to continue after. The page may then
    # hold fewer queues than asked for, even none.
    resume_after: str | None = None


class MessageListing(msgspec.Struct, frozen=True, kw_only=True):
    """A page of messages, and where to go on when the scan budget ran out first."""

    messages: list[Message]
    # Set when the scan examined ``[storage] scan_budget`` messages before the page
    # filled: the marker of the last one examined (every returned message lies at or
    # before it). The page may then hold fewer messages than asked for, even none.
    resume_after: str | None = None


class QueueStore(Protocol):
    async def create(self, project: str, name: str, metadata: dict[str, Any], now: float) -> bool:
        """Create the queue; False if it already existed (metadata then untouched)."""

    async def get_metadata(self, project: str, name: str) -> dict[str, Any] | None:
        """Stored metadata, or None when the queue does not exist."""

    async def set_metadata(self, project: str, name: str, metadata: dict[str, Any]) -> bool:
        """Replace the metadata; False when the queue does not exist."""

    async def delete(self, project: str, name: str) -> None:
        """Remove the queue with all its messages and claims.

        They are gone for every reader at once, and a queue made again under the name
        starts empty. The store may hold its backend only for a bounded chunk of a deep
        queue's rows and leave the rest to ``Storage.collect_garbage``, which removes
        them in bounded chunks and never anything stored since.
        """

    async def page(
        self,
        project: str,
        *,
        marker: str | None,
        limit: int,
        name_contains: str | None = None,
        metadata_equals: dict[str, Any] | None = None,
    ) -> QueueListing:
        """Queues of the project sorted by name, after ``marker`` (exclusive).

        With a filter, at most ``[storage] scan_budget`` queues are examined (see
        ``QueueListing.resume_after``), however few of them match.
        """

    async def count(self, project: str) -> int:
        """Number of queues in the project."""

    async def stats(self, project: str, name: str, now: float) -> QueueStats:
        """Message counts, and the oldest and newest live message.

        Exact at ``now`` (expired messages are not counted, swept or not), at a cost that
        grows neither with the queue's depth nor with its messages in flight.
        """

    async def purge_messages(self, project: str, name: str) -> None:
        """Delete every message and claim of the queue, keeping the queue.

        As with ``delete``, a deep queue's rows may go later, in bounded chunks; what is
        posted after the purge is never among them.
        """


class MessageStore(Protocol):
    async def post(
        self,
        project: str,
        queue: str,
        prepare: PreparePost,
        client_id: str,
        now: float,
        notify: Audience = Audience.NOBODY,
        on_owed: Callable[[], None] | None = None,
    ) -> list[str]:
        """Store what ``prepare`` builds, atomically, creating the queue if needed.

        In the same atomic step, owe every live subscription of the queue that
        ``notify`` admits one notification per message, due when the message's delay
        ends; call ``on_owed`` once the batch is stored if any was owed (never
        otherwise, so a queue without subscriptions costs the dispatcher nothing).
        Returns the new ids in batch order.
        """

    async def page(
        self,
        project: str,
        queue: str,
        *,
        marker: str | None,
        limit: int,
        exclude_client: str | None,
        include_claimed: bool,
        include_delayed: bool,
        now: float,
    ) -> MessageListing:
        """Live messages in post order, after ``marker`` (exclusive), filtered.

        At most ``[storage] scan_budget`` messages it cannot return (delayed, expired,
        claimed, the excluded client's) are examined; see ``MessageListing.resume_after``.
        """

    async def get(self, project: str, queue: str, ids: Sequence[str], now: float) -> list[Message]:
        """Live messages with these ids (claim, delay and echo state ignored)."""

    async def delete(
        self, project: str, queue: str, message_id: str, claim_id: str | None, now: float
    ) -> None:
        """Delete one message, enforcing the claim rules; missing messages are no error."""

    async def delete_many(
        self,
        project: str,
        queue: str,
        ids: Sequence[str],
        claim_ids: Sequence[str] | None,
        now: float,
    ) -> None:
        """Delete these messages; with ``claim_ids`` each must be held by one of them."""

    async def pop(self, project: str, queue: str, limit: int, now: float) -> list[Message]:
        """Atomically remove and return up to ``limit`` claimable messages.

        Like ``ClaimStore.create`` and ``page``, it examines a bounded number of messages
        that it cannot return (delayed, expired, claimed), so a queue whose head holds
        more of them than ``[storage] scan_budget`` may answer with fewer than exist.
        """


class SubscriptionStore(Protocol):
    """Subscriptions of a source (a queue, or a topic in its own namespace).

    A subscription is live until ``updated + ttl``; expired ones are never returned.
    Subscribers are unique per (project, source) among live subscriptions.
    """

    async def create(
        self,
        project: str,
        source: str,
        subscriber: str,
        ttl: int,
        options: dict[str, Any],
        now: float,
    ) -> tuple[Subscription, bool]:
        """A new unconfirmed subscription (True), or the live one with that subscriber (False)."""

    async def get(
        self, project: str, source: str, subscription_id: str, now: float
    ) -> Subscription | None: ...

    async def page(
        self, project: str, source: str, *, marker: str | None, limit: int, now: float
    ) -> list[Subscription]:
        """Live subscriptions ordered by id, after ``marker`` (exclusive)."""

    async def update(
        self,
        project: str,
        source: str,
        subscription_id: str,
        now: float,
        *,
        subscriber: str | None = None,
        ttl: int | None = None,
        options: dict[str, Any] | None = None,
    ) -> Subscription | None:
        """Change the given fields (a new ttl restarts the clock); None when not live.

        Raises ``SubscriberTaken`` when another live subscription has that subscriber.
        """

    async def confirm(
        self, project: str, source: str, subscription_id: str, confirmed: bool, now: float
    ) -> Subscription | None:
        """Set ``confirmed``; None when not live."""

    async def delete(self, project: str, source: str, subscription_id: str) -> None: ...

    async def purge(self, project: str, source: str) -> None:
        """Delete every subscription of the source (and what is owed to them)."""


# Failures kept per subscription, newest first; older ones are dropped as new ones come.
FAILURES_KEPT = 1000
# Failures one prune_failures call removes at most.
FAILURE_PRUNE_CHUNK = 1000
# A take visits this many due projects (Redis: and sources of one project) beyond its
# limit, since stale scores cost a visit, and drops at most this many deliveries of gone
# subscriptions per project visited.
TAKE_EXTRA_PROJECTS = 10
TAKE_DROPS = 100


class OutboxStore(Protocol):
    """Pushes owed to subscribers, kept in the store so that none is lost on a restart.

    Notifications enter with the messages (``MessageStore.post`` with ``notify``);
    confirmations through ``enqueue``. A taken delivery is leased: unless it is marked
    done, retried or failed before ``lease`` seconds pass, it is taken again.
    """

    async def enqueue(
        self,
        project: str,
        source: str,
        subscription_id: str,
        kind: DeliveryKind,
        payload: bytes,
        now: float,
    ) -> None:
        """Owe one push of ``payload`` to the subscription, due now."""

    async def take(
        self,
        now: float,
        lease: float,
        limit: int,
        *,
        per_project: int | None = None,
        in_flight: Mapping[str, int] | None = None,
    ) -> list[Delivery]:
        """Up to ``limit`` due deliveries, leased, earliest due first project by project.

        At most ``per_project`` minus ``in_flight[project]`` come from any one project
        (none from a project at its share; a negative count grants a project more than
        ``per_project``, as the dispatcher does for pushes), and a project's backlog is
        never scanned to find another's: cost follows what is taken, not what is owed.
        Taking counts an attempt in the store (``Delivery.attempts`` includes this one),
        so a delivery whose worker dies mid-way still uses up its tries. Deliveries whose
        subscription is gone are dropped instead.
        """

    async def done(self, delivery_id: str) -> None:
        """The push succeeded: forget it."""

    async def done_many(self, delivery_ids: Sequence[str]) -> None:
        """Several pushes succeeded: forget them all (one round trip where the store
        allows; ids already gone are passed over)."""

    async def retry(self, delivery_id: str, attempts: int, due: float) -> None:
        """Due again at ``due``, with ``attempts`` tries counted so far (a deferred
        delivery gives back the try its take counted)."""

    async def fail(self, delivery: Delivery, attempts: int, error: str, now: float) -> None:
        """The push failed for good: move it to the subscription's failures (the
        newest ``FAILURES_KEPT`` of each subscription are kept)."""

    async def prune_failures(self, before: float) -> int:
        """Remove a bounded chunk of failures recorded before ``before``; returns how many
        went (the caller repeats while a whole chunk went)."""

    async def failures(
        self, project: str, source: str, subscription_id: str, limit: int
    ) -> list[DeliveryFailure]:
        """The most recent failed pushes of the subscription, newest first."""


class ClaimStore(Protocol):
    async def create(
        self,
        project: str,
        queue: str,
        request: ClaimRequest,
        now: float,
        dead_letter_from: DeadLetterRule | None = None,
    ) -> ClaimResult | None:
        """Claim up to ``request.limit`` messages; None when nothing was claimable.

        With ``dead_letter_from``, ``request.dead_letter`` is ignored: the policy is what
        it derives from the queue's metadata in force at the claim (a metadata change
        made anywhere before the claim began is honoured), and a queue that does not
        exist yields None.
        """

    async def get(self, project: str, queue: str, claim_id: str, now: float) -> Claim | None:
        """The live claim with the messages it still holds, or None."""

    async def renew(
        self, project: str, queue: str, claim_id: str, ttl: int, grace: int, now: float
    ) -> bool:
        """Restart the claim with a new ttl; False when it is not live."""

    async def release(self, project: str, queue: str, claim_id: str, now: float) -> None:
        """End the claim; its messages become claimable at once."""


class StoreStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What health checks report about the backend."""

    reachable: bool
    # Conditions an operator must know about, e.g. a Redis that restarted empty.
    problems: list[str] = msgspec.field(default_factory=list)


class MessageVolume(msgspec.Struct, frozen=True, kw_only=True):
    """Live messages across a store's queues, as health reports them."""

    total: int
    claimed: int
    # False when the store holds more queues than one count examines (``[storage]
    # scan_budget``): the figures then cover only the queues examined.
    complete: bool = True

    @property
    def free(self) -> int:
        return self.total - self.claimed


class Storage(Protocol):
    """A connected backend: the stores plus lifecycle and housekeeping."""

    @property
    def subscriptions(self) -> SubscriptionStore: ...

    @property
    def outbox(self) -> OutboxStore: ...

    @property
    def queues(self) -> QueueStore: ...

    @property
    def messages(self) -> MessageStore: ...

    @property
    def claims(self) -> ClaimStore: ...

    @property
    def catalog(self) -> CatalogStore:
        """Pools, flavors and placements: used where this store is the management store
        (pooled mode, ``tidings.storage.catalog``)."""

    @property
    def feed(self) -> ChangeFeed:
        """Readiness signals and node-to-node relay; live between ``open`` and ``close``."""

    async def open(self) -> None:
        """Connect and bring the schema up to date."""

    async def close(self) -> None:
        """Release connections and threads."""

    async def ping(self) -> bool:
        """True when the backend answers (bounded in time; never raises)."""

    async def status(self) -> StoreStatus:
        """Reachability plus any detected problem (such as lost data); never raises."""

    async def message_volume(self, now: float) -> MessageVolume:
        """Messages and claimed messages across the store, from counters and indexes,
        never a walk of messages: at most ``[storage] scan_budget`` queues are counted.
        Raises ``StorageError`` when the store cannot answer."""

    async def collect_garbage(self, now: float) -> int:
        """Physically remove expired messages and claims, and what deleted or purged
        queues left behind; returns how many rows went.

        One call does a bounded amount of work, in steps that each hold the backend
        briefly; what is left is taken up where it stopped by the next call.
        """
