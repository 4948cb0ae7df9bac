"""Wire shapes of the HTTP API as msgspec types: what ``tidings.http.openapi`` publishes.

Request bodies the server decodes with a Struct are described by that Struct
(``ops.messages._PostDocument`` and ``MessageIn``, ``config.StorageSettings`` for pool
options). The others are decoded as JSON and checked field by field by the operations;
they are described here with the constraints those checks apply (the bounds that
depend on settings are set by the document builder).

Responses built from these Structs (errors, versions, the home document, queue,
pool and flavor listings and views, posted messages, new subscriptions) cannot drift
from them. The views still built as dicts, because the WebSocket transport and
tests/unit/test_views.py use them as dicts (message, popped message, claim, stats,
subscription, delivery failure, health), are checked two ways:
tests/api/test_openapi.py proves that each view encodes exactly as its Struct, and
response Structs forbid unknown fields, so that a field added to a view but not here
fails tests/api/test_openapi_live.py.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, Raw, Struct, UnsetType, field

from tidings.config import StorageSettings
from tidings.ops.validation import MIN_CLAIM_GRACE, MIN_CLAIM_TTL, MIN_MESSAGE_TTL, QUEUE_NAME

QueueName = Annotated[str, Meta(pattern=f"^{QUEUE_NAME.pattern}$")]
Seconds = Annotated[int, Meta(ge=0)]
Count = Annotated[int, Meta(ge=0)]
Href = Annotated[str, Meta(pattern="^/v2/")]

# -- errors ---------------------------------------------------------------------------


class Error(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Zaqar's error body: every 4xx and 5xx but 406 (which has none) carries one."""

    title: str
    description: str | UnsetType = UNSET


# -- versions and the home document -----------------------------------------------------


class Link(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    rel: str
    href: str


class MediaTypes(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    base: str
    type: str


class VersionLink(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    href: str
    rel: str


class Version(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    id: str
    status: str
    updated: str
    media_types: list[MediaTypes] = field(name="media-types")
    links: list[VersionLink]


class Versions(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    versions: list[Version]


class HomeHints(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    allow: list[str]
    formats: dict[str, dict[str, Any]]
    accept_post: list[str] | UnsetType = field(name="accept-post", default=UNSET)


class HomeResource(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A JSON-Home resource: an ``href``, or an ``href-template`` and its variables."""

    href_template: str | UnsetType = field(name="href-template", default=UNSET)
    href: str | UnsetType = UNSET
    href_vars: dict[str, str] | UnsetType = field(name="href-vars", default=UNSET)
    hints: HomeHints


class HomeDocument(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    resources: dict[str, HomeResource]


# -- queues and topics -------------------------------------------------------------------


class RetryPolicy(Struct, frozen=True, kw_only=True):
    """Zaqar's ``_retry_policy``: how failed webhook deliveries are retried."""

    retries_with_no_delay: Annotated[int, Meta(ge=0, le=1000)] | UnsetType = UNSET
    minimum_delay_retries: Annotated[int, Meta(ge=0, le=1000)] | UnsetType = UNSET
    minimum_delay: Annotated[int, Meta(ge=0, le=86400)] | UnsetType = UNSET
    maximum_delay: Annotated[int, Meta(ge=0, le=86400)] | UnsetType = UNSET
    maximum_delay_retries: Annotated[int, Meta(ge=0, le=1000)] | UnsetType = UNSET
    retry_backoff_function: (
        Literal["linear", "arithmetic", "exponential", "geometric"] | UnsetType
    ) = UNSET
    ignore_subscription_override: bool | UnsetType = UNSET


class QueueMetadata(Struct, frozen=True, kw_only=True):
    """A queue's (or topic's) metadata: any JSON object; keys starting with ``_`` are
    reserved (these), the others are the client's. Reading it shows every reserved key of
    the collection with the value in force (null: none)."""

    max_messages_post_size: Annotated[int, Meta(ge=1)] | UnsetType = field(
        name="_max_messages_post_size", default=UNSET
    )
    default_message_ttl: Annotated[int, Meta(ge=MIN_MESSAGE_TTL)] | UnsetType = field(
        name="_default_message_ttl", default=UNSET
    )
    default_message_delay: Seconds | UnsetType = field(name="_default_message_delay", default=UNSET)
    dead_letter_queue: QueueName | UnsetType | None = field(
        name="_dead_letter_queue", default=UNSET
    )
    dead_letter_queue_messages_ttl: Annotated[int, Meta(ge=MIN_MESSAGE_TTL)] | UnsetType | None = (
        field(name="_dead_letter_queue_messages_ttl", default=UNSET)
    )
    max_claim_count: Annotated[int, Meta(ge=0, le=1000000)] | UnsetType | None = field(
        name="_max_claim_count", default=UNSET
    )
    enable_encrypt_messages: bool | UnsetType = field(
        name="_enable_encrypt_messages", default=UNSET
    )
    retry_policy: RetryPolicy | UnsetType = field(name="_retry_policy", default=UNSET)


class MetadataChange(Struct, frozen=True, kw_only=True):
    """One operation of Zaqar's restricted JSON patch (RFC 6902) of a queue's metadata."""

    op: Literal["add", "remove", "replace"]
    path: Annotated[str, Meta(pattern="^/metadata/[^/]+$")]
    # Required by add and replace.
    value: Any = UNSET


MetadataPatch = list[MetadataChange]


class QueueEntry(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A queue (or topic) in a listing; ``metadata`` with ``detailed=true``."""

    name: str
    metadata: dict[str, Any] | UnsetType = UNSET
    href: str | UnsetType = UNSET


class QueueListing(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    queues: list[QueueEntry]
    links: list[Link]
    count: int | UnsetType = UNSET


class TopicListing(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    topics: list[QueueEntry]
    links: list[Link]
    count: int | UnsetType = UNSET


class MessageSummary(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    age: Seconds
    created: str
    href: Href


class MessageCounts(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    claimed: Count
    free: Count
    total: Count
    oldest: MessageSummary | UnsetType = UNSET
    newest: MessageSummary | UnsetType = UNSET


class QueueStats(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    messages: MessageCounts


class PurgeRequest(Struct, frozen=True, kw_only=True):
    resource_types: list[Literal["messages", "subscriptions"]]


class ShareRequest(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What to sign (defaults: the messages, GET, a day); the answer is ``SignedUrl``."""

    paths: list[Literal["messages", "subscriptions", "claims"]] | UnsetType = UNSET
    methods: list[str] | UnsetType = UNSET
    # An ISO 8601 time in the future (naive: UTC).
    expires: str | UnsetType = UNSET


# -- messages and claims ------------------------------------------------------------------


class Message(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A message; ``href`` names its live claim, if any; ``checksum`` with
    ``enable_checksum``."""

    id: str
    href: Href
    ttl: int
    age: Seconds
    body: Raw
    checksum: str | UnsetType = UNSET


class PoppedMessage(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    id: str
    age: Seconds
    ttl: int
    body: Raw
    claim_id: None
    claim_count: Count
    checksum: str | UnsetType = UNSET


class MessageListing(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A page of messages (with ``links``), or those named by ``ids`` (without)."""

    messages: list[Message]
    links: list[Link] | UnsetType = UNSET


class PoppedMessages(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    messages: list[PoppedMessage]


class PostedMessages(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    resources: list[Href]


class ClaimRequest(Struct, frozen=True, kw_only=True):
    """A claim's lifetimes (defaults: ``default_claim_ttl``, ``default_claim_grace``)."""

    ttl: Annotated[int, Meta(ge=MIN_CLAIM_TTL)] | UnsetType = UNSET
    grace: Annotated[int, Meta(ge=MIN_CLAIM_GRACE)] | UnsetType = UNSET


class ClaimRenewal(Struct, frozen=True, kw_only=True):
    ttl: Annotated[int, Meta(ge=MIN_CLAIM_TTL)] | UnsetType = UNSET
    grace: Seconds | UnsetType = UNSET


class ClaimedMessages(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    messages: list[Message]


class Claim(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    age: Seconds
    ttl: int
    messages: list[Message]
    href: Href


# -- subscriptions ------------------------------------------------------------------------


class SubscriptionRequest(Struct, frozen=True, kw_only=True):
    """A new subscription (``ttl`` defaults to ``default_subscription_ttl``)."""

    subscriber: str
    ttl: Annotated[int, Meta(ge=60)] | UnsetType = UNSET
    options: dict[str, Any] | UnsetType = UNSET


class SubscriptionUpdate(Struct, frozen=True, kw_only=True):
    """Any of the fields (null: left as it is), at least one."""

    subscriber: str | UnsetType | None = UNSET
    ttl: Annotated[int, Meta(ge=60)] | UnsetType | None = UNSET
    options: dict[str, Any] | UnsetType | None = UNSET


class SubscriptionConfirmation(Struct, frozen=True, kw_only=True):
    confirmed: bool


class SubscriptionCreated(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    subscription_id: str


class Subscription(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    id: str
    source: str
    subscriber: str
    ttl: int
    age: Seconds
    options: dict[str, Any]
    confirmed: bool


class SubscriptionListing(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    subscriptions: list[Subscription]
    links: list[Link]


class DeliveryFailure(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A delivery that exhausted its retries (ours: Zaqar drops them silently)."""

    kind: Literal["notification", "confirmation", "unsubscribe"]
    message_id: str | None
    attempts: int
    error: str
    failed: str


class DeliveryFailures(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    failures: list[DeliveryFailure]


# -- health -----------------------------------------------------------------------------------


class StepStatus(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    succeeded: bool
    seconds: float
    ref: str | None


class MessageVolume(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    free: int
    claimed: int
    total: int


class StoreHealth(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A store's health: Zaqar's self-test and message volume, and ``problems`` (ours)."""

    storage_reachable: bool
    operation_status: dict[str, StepStatus] | UnsetType = UNSET
    message_volume: MessageVolume | UnsetType = UNSET
    message_volume_complete: bool | UnsetType = UNSET
    problems: list[str]


# -- pools and flavors -------------------------------------------------------------------------

PoolUri = Annotated[str, Meta(max_length=255)]
PoolWeight = Annotated[int, Meta(ge=0, le=2**32 - 1)]
FlavorName = Annotated[str, Meta(max_length=255)]


class PoolRequest(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A pool: a store's URI (it must answer), its weight, flavor and ``[storage]``
    overrides (``options``: any of ``StorageSettings``)."""

    uri: PoolUri
    weight: PoolWeight
    flavor: FlavorName | UnsetType | None = UNSET
    options: StorageSettings | UnsetType = UNSET


class PoolUpdate(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Any of a pool's fields, at least one."""

    uri: PoolUri | UnsetType = UNSET
    weight: PoolWeight | UnsetType = UNSET
    flavor: FlavorName | UnsetType | None = UNSET
    options: StorageSettings | UnsetType = UNSET


class Pool(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A pool; ``options`` when detailed; no ``href`` over WebSocket."""

    name: str
    uri: str
    weight: int
    flavor: str | None
    # The overrides as given (a subset of StorageSettings).
    options: dict[str, Any] | UnsetType = UNSET
    href: str | UnsetType = UNSET


class PoolListing(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    links: list[Link]
    pools: list[Pool]


class FlavorRequest(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The pools of a flavor; ``capabilities`` are accepted and ignored (they follow from
    the pools' drivers), as in Zaqar."""

    pool_list: Annotated[list[str], Meta(min_length=1, max_length=1000)]
    capabilities: dict[str, Any] | UnsetType = UNSET


class Flavor(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    capabilities: list[str]
    pool_list: list[str]
    href: str | UnsetType = UNSET


class FlavorEntry(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A flavor in a listing: ``pool_list`` when not empty, ``capabilities`` when
    detailed."""

    name: str
    href: str | UnsetType = UNSET
    pool_list: list[str] | UnsetType = UNSET
    capabilities: list[str] | UnsetType = UNSET


class FlavorListing(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    links: list[Link]
    flavors: list[FlavorEntry]
