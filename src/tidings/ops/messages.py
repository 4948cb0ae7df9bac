"""Message operations: post, list, get, get many, delete, delete many, pop."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import msgspec

from tidings import encryption
from tidings.config import TransportSettings
from tidings.errors import BadRequest, InvalidBody, NotFound, TidingsError
from tidings.model import Message, NewMessage
from tidings.observe import metrics
from tidings.ops import metadata as reserved
from tidings.ops import waiting
from tidings.ops.context import (
    Caller,
    Services,
    client_project,
    noun,
    source_not_found,
    unavailable_as,
)
from tidings.ops.validation import (
    WRONG_DOCUMENT_TYPE,
    check_message_delay,
    check_message_ttl,
    check_page_limit,
    check_queue_name,
    check_size,
    decode_json,
    integer_field,
    is_utf8,
    may_hold_huge_integer,
)
from tidings.storage.base import Audience

NO_MESSAGES = "No messages were found in the request body."


Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class MessageIn(msgspec.Struct, frozen=True):
    """One posted message as received; unknown fields are dropped.

    An absent ttl or delay is UNSET (the queue's default applies); an explicit null is
    not an integer, so the typed path refuses it and decode_json's answer (400) follows.
    """

    body: msgspec.Raw
    ttl: Int64 | msgspec.UnsetType = msgspec.UNSET
    delay: Int64 | msgspec.UnsetType = msgspec.UNSET


class _PostDocument(msgspec.Struct, frozen=True):
    messages: list[MessageIn]


_post_decoder = msgspec.json.Decoder(_PostDocument)


def parse_post_body(raw: bytes) -> list[MessageIn]:
    """Decode a POST body: a typed fast path, and exact error texts when it fails."""
    # The typed path leaves text inside the Raw bodies unchecked: it is only taken for
    # valid UTF-8, and anything else gets decode_json's answer.
    if not may_hold_huge_integer(raw) and is_utf8(raw):
        try:
            return _post_decoder.decode(raw).messages
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
            pass
    return messages_from_document(decode_json(raw))


def messages_from_document(document: Any) -> list[MessageIn]:
    """Check an already-decoded ``{"messages": [...]}`` document (used by every transport)."""
    if not isinstance(document, dict) or "messages" not in document:
        raise BadRequest(NO_MESSAGES)
    items = document["messages"]
    if not isinstance(items, list):
        raise InvalidBody(WRONG_DOCUMENT_TYPE)
    parsed = []
    for item in items:
        if not isinstance(item, dict):
            raise InvalidBody('Each message must be a JSON object with a "body" field.')
        if "body" not in item:
            raise InvalidBody('Missing "body" field.')
        parsed.append(
            MessageIn(
                msgspec.Raw(msgspec.json.encode(item["body"])),
                _unset_if_none(integer_field(item, "ttl")),
                _unset_if_none(integer_field(item, "delay")),
            )
        )
    return parsed


def _unset_if_none(value: int | None) -> int | msgspec.UnsetType:
    return msgspec.UNSET if value is None else value


def _keyring(svc: Services) -> encryption.Keyring:
    return encryption.keyring(svc.settings.transport)


async def _queue_metadata(svc: Services, caller: Caller, queue: str) -> dict[str, Any]:
    return await svc.storage.queues.get_metadata(caller.project, queue) or {}


def _check_post_size(size: int | None, metadata: dict[str, Any], limits: TransportSettings) -> None:
    limit = reserved.post_size_limit(metadata, limits)
    if reserved.MAX_POST_SIZE in metadata:
        text = (
            f"Message collection size is too large. The max size for current queue is {limit}. "
            "It is calculated by max size = min(max_messages_post_size_config: "
            f"{limits.max_messages_post_size}, max_messages_post_size_queue: "
            f"{metadata[reserved.MAX_POST_SIZE]})."
        )
    else:
        text = f"Message collection size is too large. Max size {limit}"
    check_size(size, limit, text)


def _build_batch(
    items: list[MessageIn],
    metadata: dict[str, Any],
    limits: TransportSettings,
    project: str,
    any_delay: bool = False,
) -> list[NewMessage]:
    if not items:
        raise BadRequest("No messages to enqueu.")
    if len(items) > limits.max_messages_per_post:
        raise BadRequest(
            f"Too many messages in one post: {len(items)}. At most "
            f"{limits.max_messages_per_post} may be posted at once "
            "([transport] max_messages_per_post)."
        )
    default_ttl = reserved.message_ttl_default(metadata, limits)
    default_delay = reserved.delay_default(metadata, limits)
    keyring = encryption.keyring(limits)
    seal = reserved.encrypts(metadata)
    if seal:
        encryption.require_key(keyring)
    batch = []
    for item in items:
        ttl = default_ttl if item.ttl is msgspec.UNSET else item.ttl
        check_message_ttl(ttl, limits)
        delay = 0
        # Zaqar counts per-message delays only on queues that delay; SQS on any queue.
        if default_delay or any_delay:
            delay = default_delay if item.delay is msgspec.UNSET else item.delay
            check_message_delay(delay, limits)
        body = bytes(item.body)
        encryption.check_plain(body)
        if seal:
            body = keyring.seal(body, project)
        batch.append(NewMessage(body=body, ttl=ttl, delay=delay))
    return batch


@unavailable_as("Messages could not be enqueued.")
async def message_post(
    svc: Services,
    caller: Caller,
    queue: str,
    raw_messages: bytes | list[MessageIn],
    size: int | None,
    *,
    any_delay: bool = False,
) -> list[str]:
    """Store a batch (all or nothing), creating the queue if needed; returns the ids.

    The body is parsed here, off the store's critical section; the checks that depend
    on the queue's metadata run inside it, in Zaqar's order (size before body errors).
    ``any_delay`` honours each message's own delay on every queue (SQS's DelaySeconds),
    not only on queues with a default delay (Zaqar's rule).
    """
    check_queue_name(caller.project, queue)
    limits = svc.settings.transport
    items: list[MessageIn] = []
    parse_error: TidingsError | None = None
    if isinstance(raw_messages, bytes):
        try:
            items = parse_post_body(raw_messages)
        except TidingsError as exc:
            parse_error = exc
    else:
        items = raw_messages

    def prepare(metadata: dict[str, Any]) -> list[NewMessage]:
        _check_post_size(size, metadata, limits)
        if parse_error is not None:
            raise parse_error
        return _build_batch(items, metadata, limits, caller.project, any_delay)

    audience = (
        Audience.CONFIRMED if svc.settings.notification.require_confirmation else Audience.ALL
    )
    # The dispatcher is woken only when the post owed notifications.
    ids = await svc.storage.messages.post(
        caller.project, queue, prepare, caller.client_id, svc.clock(), audience,
        svc.wake_dispatcher,
    )  # fmt: skip
    metrics.messages_posted(len(ids))
    return ids


class MessagePage(msgspec.Struct, frozen=True, kw_only=True):
    messages: list[Message]
    now: float
    # True when the queue does not delay, so every next link may include delayed ones.
    delays_off: bool
    # Where the next page starts; None when there is nothing to go on to. A listing that
    # ran out of its scan budget sets it even on a short or empty page.
    next_marker: str | None = None


@unavailable_as("Messages could not be listed.")
async def message_list(
    svc: Services,
    caller: Caller,
    queue: str,
    *,
    marker: str | None = None,
    limit: int | None = None,
    echo: bool = False,
    include_claimed: bool = False,
    include_delayed: bool = False,
    wait: float | None = None,
) -> MessagePage:
    """A page of messages. With ``wait`` (seconds), an empty page waits for messages to
    list, up to then (``ops.waiting``)."""
    check_queue_name(caller.project, queue)
    limits = svc.settings.transport
    if limit is None:
        limit = min(10, limits.max_messages_per_page)
    check_page_limit(limit, limits.max_messages_per_page)
    waiting.check_wait(wait)
    page_limit = limit

    async def attempt() -> MessagePage:
        metadata = await _queue_metadata(svc, caller, queue)
        delays_off = not reserved.delay_default(metadata, limits)
        now = svc.clock()
        listing = await svc.storage.messages.page(
            caller.project,
            queue,
            marker=marker,
            limit=page_limit,
            exclude_client=None if echo else caller.client_id,
            include_claimed=include_claimed,
            include_delayed=include_delayed or delays_off,
            now=now,
        )
        messages = _keyring(svc).open_messages(listing.messages, caller.project)
        # As in Zaqar, any non-empty page links onward (the next one may be empty).
        next_marker = listing.resume_after or (messages[-1].marker if messages else None)
        return MessagePage(
            messages=messages, now=now, delays_off=delays_off, next_marker=next_marker
        )

    # An empty page with a marker (the scan budget ran out) is an answer: page on.
    return await waiting.wait_for(
        svc,
        caller.project,
        queue,
        waiting.Kind.LIST,
        wait,
        attempt,
        found=lambda page: bool(page.messages) or page.next_marker is not None,
    )


@unavailable_as("Message could not be retrieved.")
async def message_get(
    svc: Services, caller: Caller, queue: str, message_id: str
) -> tuple[Message, float]:
    check_queue_name(caller.project, queue)
    now = svc.clock()
    found = await svc.storage.messages.get(caller.project, queue, [message_id], now)
    if not found:
        if await svc.storage.queues.get_metadata(caller.project, queue) is None:
            raise source_not_found(caller, queue)
        raise NotFound(
            f"Message {message_id} does not exist in {noun(caller)} {queue} "
            f"for project {client_project(caller)}"
        )
    return _keyring(svc).open_message(found[0], caller.project), now


@unavailable_as("Messages could not be listed.")
async def message_get_many(
    svc: Services, caller: Caller, queue: str, ids: Sequence[str]
) -> tuple[list[Message], float]:
    check_queue_name(caller.project, queue)
    check_page_limit(len(ids), svc.settings.transport.max_messages_per_page)
    now = svc.clock()
    found = await svc.storage.messages.get(caller.project, queue, ids, now)
    if not found:
        raise NotFound(
            f"No messages with IDs: {list(ids)!r} found in the {noun(caller)} {queue} "
            f"for project {client_project(caller)}."
        )
    return _keyring(svc).open_messages(found, caller.project), now


@unavailable_as("Message could not be deleted.")
async def message_delete(
    svc: Services, caller: Caller, queue: str, message_id: str, claim_id: str | None
) -> None:
    check_queue_name(caller.project, queue)
    await svc.storage.messages.delete(caller.project, queue, message_id, claim_id, svc.clock())
    metrics.messages_deleted(1)


@unavailable_as("Messages could not be deleted.")
async def message_delete_many(
    svc: Services,
    caller: Caller,
    queue: str,
    ids: Sequence[str],
    claim_ids: Sequence[str] | None = None,
) -> None:
    check_queue_name(caller.project, queue)
    maximum = svc.settings.transport.max_messages_per_page
    if not 1 <= len(ids) <= maximum:
        raise BadRequest(
            f"ids parameter should have at least 1 and not greater than {maximum} values."
        )
    if not svc.settings.transport.message_delete_with_claim_id:
        claim_ids = None  # only honoured when the operator asks for claim checks
    elif not claim_ids:
        raise BadRequest(
            'The request should have both "ids" and "claim_ids" parameter in the request '
            "when message_delete_with_claim_id is True."
        )
    await svc.storage.messages.delete_many(
        caller.project, queue, ids, claim_ids or None, svc.clock()
    )
    metrics.messages_deleted(len(ids))


@unavailable_as("Messages could not be popped.")
async def message_pop(
    svc: Services, caller: Caller, queue: str, count: int
) -> tuple[list[Message], float]:
    check_queue_name(caller.project, queue)
    maximum = svc.settings.transport.max_messages_per_claim_or_pop
    if not 1 <= count <= maximum:
        raise BadRequest(f"Pop value must be at least 1 and may not be greater than {maximum}.")
    now = svc.clock()
    popped = await svc.storage.messages.pop(caller.project, queue, count, now)
    metrics.messages_deleted(len(popped))
    return _keyring(svc).open_messages(popped, caller.project), now
