"""Subscription operations: create, list, get, update, delete, confirm, failures."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import getaddresses
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import msgspec

from tidings import signing
from tidings.config import Settings
from tidings.errors import BadRequest, Conflict, NotFound, TidingsError
from tidings.model import DeliveryFailure, DeliveryKind, Subscription
from tidings.notify import destinations, payloads, retry
from tidings.ops.context import Caller, Services, noun, split_namespace, unavailable_as
from tidings.ops.validation import check_depth, check_page_limit, check_queue_name, require_object

# The latest moment Zaqar can represent; subscriptions may not outlive it.
LATEST_EXPIRY = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()
MIN_SUBSCRIPTION_TTL = 60
UPDATABLE = ("subscriber", "ttl", "options")
# The scheme of subscriptions held by a WebSocket connection (tidings.notify.push).
PUSH_SCHEME = "websocket"
# Ours (Zaqar has none): bounds on what a subscription's options may hold. post_data has
# settings of its own; everything else together is bounded by MAX_OPTIONS_SIZE.
MAX_OPTIONS_SIZE = 16384
MAX_POST_HEADERS = 50
MAX_POST_HEADERS_SIZE = 8192
# RFC 9110 token characters: anything else is not a header name.
HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Headers that frame the request: a subscription setting them could smuggle requests.
FRAMING_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer"}
)


class UnableToUpdate(TidingsError):
    status = 400
    title = "Unable to update subscription"


class SubscriptionExists(Conflict):
    """A duplicate of a confirmed subscription (Zaqar's text has no space after the period)."""

    def __init__(self) -> None:
        super().__init__(
            "Such subscription already exists."
            "Subscriptions are unique by project + queue + subscriber URI."
        )


def not_found(subscription_id: str) -> NotFound:
    return NotFound(f"Subscription {subscription_id} does not exist")


def max_document_size(settings: Settings) -> int:
    """The largest subscription request body worth reading (JSON escaping included)."""
    options = 2 * (settings.notification.max_post_data_size + MAX_OPTIONS_SIZE)
    return max(65536, settings.transport.max_subscriber_length + options + 1024)


def _check_subscriber(svc: Services, subscriber: Any) -> str:
    if not subscriber or not isinstance(subscriber, str):
        raise BadRequest("Missing parameter subscriber in body.")
    limit = svc.settings.transport.max_subscriber_length
    if len(subscriber) > limit:
        raise BadRequest(
            f"The subscriber may not be longer than {limit} characters "
            "([transport] max_subscriber_length)."
        )
    allowed = svc.settings.transport.subscriber_types
    if subscriber.lower().startswith(PUSH_SCHEME + ":"):
        # Only the server makes these, for the connection that asked (no subscriber).
        raise BadRequest(
            "A websocket: subscriber cannot be given; send subscription_create over "
            "WebSocket without a subscriber to subscribe the connection itself."
        )
    if _has_control(subscriber):
        # A line break would let a subscriber inject mail or HTTP headers.
        raise BadRequest("The subscriber may not contain control characters.")
    try:
        parts = urlsplit(subscriber)
        parts.hostname, parts.port  # noqa: B018 - parse host and port: malformed ones raise
    except ValueError:
        raise BadRequest(f"The subscriber {subscriber!r} is not a valid URI.") from None
    if parts.scheme not in allowed:
        raise BadRequest(
            f"The subscriber type of subscription must be supported in the list {list(allowed)!r}."
        )
    # Zaqar checks only the scheme; a subscriber we could never reach is refused here.
    if parts.scheme == "mailto":
        _check_mailto(parts.path, parts.query)
    if parts.scheme in ("http", "https") and not parts.hostname:
        raise BadRequest("A webhook subscriber needs a host, e.g. https://example.com/hook.")
    return subscriber


def _check_mailto(path: str, query: str) -> None:
    """Exactly one recipient, and nothing that could become a mail header line."""
    address = unquote(path)
    recipients = getaddresses([address])
    if (
        "@" not in address
        or any(c in address for c in ",;")
        or len(recipients) != 1
        or "@" not in recipients[0][1]
    ):
        raise BadRequest(
            "A mailto: subscriber names exactly one address, e.g. mailto:ops@example.com."
        )
    fields = parse_qs(query)
    if any(name.lower() in ("to", "cc", "bcc") for name in fields):
        raise BadRequest("A mailto: subscriber may not add recipients (to, cc or bcc).")
    if _has_control(address) or any(_has_control(v) for vs in fields.values() for v in vs):
        raise BadRequest("The subscriber may not contain control characters.")


async def _check_destination(svc: Services, subscriber: str) -> None:
    """Webhooks into a denied network, or at this server, are refused (request forgery)."""
    try:
        await destinations.check_subscriber_destination(
            subscriber,
            destinations.deny_list(svc.settings),
            svc.settings.notification.delivery_timeout,
        )
    except (destinations.UnresolvedDestination, destinations.LookupsBusy):
        # Nothing to judge yet (a name with no address, as Zaqar's own tests subscribe,
        # or no lookup slot free): every connection is checked again when it is made.
        pass
    except destinations.DeniedDestination as exc:
        raise BadRequest(str(exc)) from None


async def _check_room(svc: Services, caller: Caller, source: str, subscriber: str) -> None:
    """Refuse a new subscriber past ``max_subscriptions_per_queue`` (reads at most that many)."""
    maximum = svc.settings.transport.max_subscriptions_per_queue
    live = await svc.storage.subscriptions.page(
        caller.project, source, marker=None, limit=maximum, now=svc.clock()
    )
    if len(live) >= maximum and all(s.subscriber != subscriber for s in live):
        raise BadRequest(
            f"The {noun(caller)} {source} already has {maximum} subscriptions, the most "
            "allowed ([transport] max_subscriptions_per_queue); delete one first."
        )


def _check_ttl(ttl: Any, now: float) -> int:
    if isinstance(ttl, bool) or not isinstance(ttl, int):
        raise BadRequest("TTL must be an integer.")
    if ttl < MIN_SUBSCRIPTION_TTL:  # Zaqar lets 0 through and then fails with a 500
        raise BadRequest(
            f"The TTL for a subscription must be at least {MIN_SUBSCRIPTION_TTL} seconds long."
        )
    if now + ttl >= LATEST_EXPIRY:
        raise BadRequest(
            "The TTL seconds for a subscription plus current time must be less than "
            "9999-12-31 23:59:59.999999."
        )
    return ttl


def _check_options(svc: Services, options: Any) -> dict[str, Any]:
    if not options:
        return {}
    if not isinstance(options, dict):
        raise BadRequest("Options must be a dict.")
    check_depth(options, svc.settings.transport.max_metadata_depth, "Subscription options")
    others = {k: v for k, v in options.items() if k != "post_data"}
    if len(msgspec.json.encode(others)) > MAX_OPTIONS_SIZE:
        raise BadRequest(
            f"Subscription options other than post_data may not exceed {MAX_OPTIONS_SIZE} "
            "bytes as JSON."
        )
    policy = options.get("_retry_policy")
    if policy:
        retry.validate(policy)
    _check_post_headers(options.get("post_headers"))
    _check_post_data(svc, options.get("post_data"))
    for name in ("subject", "from"):
        value = options.get(name)
        if value is not None and not (isinstance(value, str) and not _has_control(value)):
            raise BadRequest(f"Options {name} must be text without control characters.")
    return options


def _check_post_headers(headers: Any) -> None:
    if headers is None:
        return
    if not (
        isinstance(headers, dict)
        and all(
            HEADER_NAME.fullmatch(k)
            and isinstance(v, str | int | float)
            and not _has_control(str(v))
            for k, v in headers.items()
        )
    ):
        raise BadRequest(
            "Options post_headers must map header names to text or number values, "
            "without control characters."
        )
    if len(headers) > MAX_POST_HEADERS:
        raise BadRequest(f"Options post_headers may hold at most {MAX_POST_HEADERS} headers.")
    if sum(len(k) + len(str(v)) for k, v in headers.items()) > MAX_POST_HEADERS_SIZE:
        raise BadRequest(
            f"Options post_headers may hold at most {MAX_POST_HEADERS_SIZE} characters in all."
        )
    framing = sorted(k for k in headers if k.lower() in FRAMING_HEADERS)
    if framing:
        raise BadRequest(
            f"Options post_headers may not set {', '.join(framing)}: the request's framing "
            "is the server's."
        )


def _check_post_data(svc: Services, post_data: Any) -> None:
    if post_data is None:
        return
    if not isinstance(post_data, str):
        raise BadRequest("Options post_data must be a string.")
    problem = payloads.post_data_problem(post_data, svc.settings.notification)
    if problem is not None:
        raise BadRequest(problem)


def _has_control(text: str) -> bool:
    return any(ord(c) < 0x20 or c == "\x7f" for c in text)


@unavailable_as("Subscription could not be created.")
async def subscription_create(
    svc: Services, caller: Caller, source: str, document: Any
) -> tuple[str, bool]:
    """(the subscription id, whether it was new); re-sends confirmation for duplicates."""
    check_queue_name(caller.project, source)
    body = require_object(document if document is not None else {})
    now = svc.clock()
    subscriber = _check_subscriber(svc, body.get("subscriber"))
    options = _check_options(svc, body.get("options"))
    ttl = body.get("ttl")
    ttl = svc.settings.transport.default_subscription_ttl if ttl is None else _check_ttl(ttl, now)
    await _check_destination(svc, subscriber)
    await _check_room(svc, caller, source, subscriber)
    # Created only once the request is valid (Zaqar creates it first).
    await svc.storage.queues.create(caller.project, source, {}, now)
    subscription, created = await svc.storage.subscriptions.create(
        caller.project, source, subscriber, ttl, options, now
    )
    if not created and subscription.confirmed:
        raise SubscriptionExists()
    if svc.settings.notification.require_confirmation:
        await _owe_confirmation(svc, caller.project, subscription, DeliveryKind.CONFIRMATION, now)
    return subscription.id, created


@unavailable_as("Subscription could not be created.")
async def push_subscription_create(
    svc: Services,
    caller: Caller,
    source: str,
    *,
    subscriber: str,
    ttl: Any,
    options: Any,
    lease: int,
) -> tuple[Subscription, bool, int]:
    """A connection's own subscription: (it, whether it was new, the ttl asked for).

    Created confirmed (a connection needs no confirmation), stored with its ttl capped
    to ``lease`` seconds, which the caller renews while the connection lives. The
    subscriber is the server's (``tidings.notify.push``), never the client's.
    """
    check_queue_name(caller.project, source)
    now = svc.clock()
    checked = _check_options(svc, options)
    ttl = svc.settings.transport.default_subscription_ttl if ttl is None else _check_ttl(ttl, now)
    await _check_room(svc, caller, source, subscriber)
    await svc.storage.queues.create(caller.project, source, {}, now)
    subscription, created = await svc.storage.subscriptions.create(
        caller.project, source, subscriber, min(ttl, lease), checked, now
    )
    if created:
        confirmed = await svc.storage.subscriptions.confirm(
            caller.project, source, subscription.id, True, now
        )
        subscription = confirmed or subscription
    return subscription, created, ttl


@unavailable_as("Subscriptions could not be listed.")
async def subscription_list(
    svc: Services, caller: Caller, source: str, *, marker: str | None, limit: int | None
) -> tuple[list[Subscription], float]:
    check_queue_name(caller.project, source)
    maximum = svc.settings.transport.max_subscriptions_per_page
    limit = min(10, maximum) if limit is None else limit
    check_page_limit(limit, maximum)
    now = svc.clock()
    page = await svc.storage.subscriptions.page(
        caller.project, source, marker=marker, limit=limit, now=now
    )
    return page, now


@unavailable_as("Subscription could not be retrieved.")
async def subscription_get(
    svc: Services, caller: Caller, source: str, subscription_id: str
) -> tuple[Subscription, float]:
    check_queue_name(caller.project, source)
    now = svc.clock()
    found = await svc.storage.subscriptions.get(caller.project, source, subscription_id, now)
    if found is None:
        raise not_found(subscription_id)
    return found, now


@unavailable_as("Subscription could not be updated.")
async def subscription_update(
    svc: Services, caller: Caller, source: str, subscription_id: str, document: Any
) -> None:
    check_queue_name(caller.project, source)
    body = require_object(document if document is not None else {})
    if not body:
        raise BadRequest("No subscription to create.")
    # Any subset may be given; null leaves a field as it is (python-zaqarclient's
    # `subscription update` sends null for every option not on its command line).
    given = {key: body[key] for key in UPDATABLE if body.get(key) is not None}
    if not given:
        raise UnableToUpdate(f"Subscription {subscription_id} could not be updated.")
    now = svc.clock()
    changes: dict[str, Any] = {}
    if "subscriber" in given:
        changes["subscriber"] = _check_subscriber(svc, given["subscriber"])
    if "ttl" in given:
        changes["ttl"] = _check_ttl(given["ttl"], now)
    if "options" in given:
        changes["options"] = _check_options(svc, given["options"])
    if "subscriber" in changes:
        await _check_destination(svc, changes["subscriber"])
    if "subscriber" in changes or "ttl" in changes:
        # A connection's subscription lives as long as the connection: its server renews
        # it and deletes it at the end, so neither may be changed by hand.
        current = await svc.storage.subscriptions.get(caller.project, source, subscription_id, now)
        if current is None:
            raise not_found(subscription_id)
        if current.subscriber.startswith(PUSH_SCHEME + ":"):
            raise UnableToUpdate(
                f"Subscription {subscription_id} belongs to a WebSocket connection: its "
                "subscriber and ttl cannot be changed."
            )
    updated = await svc.storage.subscriptions.update(
        caller.project, source, subscription_id, now, **changes
    )
    if updated is None:
        raise not_found(subscription_id)


@unavailable_as("Subscription could not be deleted.")
async def subscription_delete(
    svc: Services, caller: Caller, source: str, subscription_id: str
) -> None:
    check_queue_name(caller.project, source)
    await svc.storage.subscriptions.delete(caller.project, source, subscription_id)


@unavailable_as("Subscription could not be confirmed.")
async def subscription_confirm(
    svc: Services, caller: Caller, source: str, subscription_id: str, document: Any
) -> None:
    check_queue_name(caller.project, source)
    body = require_object(document if document is not None else {})
    confirmed = body.get("confirmed")
    if not isinstance(confirmed, bool):
        raise BadRequest("The 'confirmed' should be boolean.")
    now = svc.clock()
    subscription = await svc.storage.subscriptions.confirm(
        caller.project, source, subscription_id, confirmed, now
    )
    if subscription is None:
        raise not_found(subscription_id)
    if not confirmed and svc.settings.notification.require_confirmation:
        await _owe_confirmation(svc, caller.project, subscription, DeliveryKind.UNSUBSCRIBE, now)


@unavailable_as("Subscription failures could not be listed.")
async def subscription_failures(
    svc: Services, caller: Caller, source: str, subscription_id: str, limit: int | None
) -> list[DeliveryFailure]:
    """Deliveries to this subscription that exhausted their retries, newest first."""
    await subscription_get(svc, caller, source, subscription_id)
    limit = 20 if limit is None else limit
    check_page_limit(limit, 100)
    return await svc.storage.outbox.failures(caller.project, source, subscription_id, limit)


def confirmation_document(
    svc: Services, project: str, subscription: Subscription, kind: DeliveryKind, now: float
) -> bytes:
    """The signed (un)subscribe request a subscriber receives, as Zaqar words it."""
    client_project, collection = split_namespace(project)
    secret = svc.settings.signed_url.secret_key
    assert secret is not None  # enforced at start-up when confirmation is required
    path = f"/v2/{collection}/{subscription.source}/subscriptions/{subscription.id}/confirm"
    # Zaqar signs the unsubscribe link for the default ttl, not the subscription's.
    lifetime = (
        subscription.ttl
        if kind is DeliveryKind.CONFIRMATION
        else svc.settings.transport.default_subscription_ttl
    )
    signed = signing.create(
        secret,
        [path],
        ["PUT"],
        client_project,
        datetime.fromtimestamp(now + lifetime, UTC).replace(tzinfo=None),
    )
    noun = "queue" if collection == "queues" else "topic"
    if kind is DeliveryKind.CONFIRMATION:
        message_type = "SubscriptionConfirmation"
        text = f"You have chosen to subscribe to the {noun}: {subscription.source}"
    else:
        message_type = "UnsubscribeConfirmation"
        text = (
            f"You have unsubscribed successfully to the {noun}: {subscription.source}, "
            "you can resubscribe it by using confirmed=True."
        )
    return msgspec.json.encode(
        {
            "Message_Type": message_type,
            "Message": text,
            "URL-Signature": signed.signature,
            "URL-Methods": "PUT",
            "URL-Paths": path,
            "X-Project-ID": client_project,
            "URL-Expires": signed.expires,
            "SubscribeBody": {"confirmed": True},
            "UnsubscribeBody": {"confirmed": False},
            f"{noun}_name": subscription.source,
        }
    )


async def _owe_confirmation(
    svc: Services, project: str, subscription: Subscription, kind: DeliveryKind, now: float
) -> None:
    document = confirmation_document(svc, project, subscription, kind, now)
    await svc.storage.outbox.enqueue(
        project, subscription.source, subscription.id, kind, document, now
    )
    if svc.wake_dispatcher is not None:
        svc.wake_dispatcher()
