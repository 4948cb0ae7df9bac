"""SQS message operations over Tidings messages and claims.

One engine: a send is ``ops.messages.message_post`` (limits, encryption, subscriptions
and the change feed apply), a receive is a claim (``ops.claims.claim_messages``: the
dead-letter policy and change-feed long polling apply), a receipt handle names the
message and the claim, a delete is a delete under that claim and a visibility change
restarts (or, at 0, releases) the claim.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import msgspec

from tidings.errors import ClaimedMessage, UnableToDelete
from tidings.model import ClaimRequest, Message
from tidings.observe import metrics
from tidings.ops import claims as claim_ops
from tidings.ops import messages as message_ops
from tidings.ops import metadata as reserved
from tidings.ops.context import unavailable_as
from tidings.sqs import attributes as queue_attributes
from tidings.sqs import bodies
from tidings.sqs.context import Params, Result, SqsCall
from tidings.sqs.errors import (
    BatchEntryIdsNotDistinct,
    BatchRequestTooLong,
    EmptyBatchRequest,
    InvalidAttributeName,
    InvalidBatchEntryId,
    InvalidParameterValue,
    MessageNotInflight,
    SqsError,
    TooManyEntriesInBatchRequest,
    shown,
)
from tidings.sqs.params import optional_int, optional_list, required_int
from tidings.sqs.queues import queue_metadata
from tidings.sqs.urls import queue_from_params
from tidings.storage import rules

MAX_DELAY = 900
MAX_VISIBILITY = 43200
MAX_WAIT = 20
MAX_RECEIVE = 10
MAX_BATCH = 10
MAX_BATCH_PAYLOAD = 262144
_BATCH_ENTRY_ID = re.compile(r"[A-Za-z0-9_\-]{1,80}")

# What ReceiveMessage answers among the names it is asked for (AttributeNames or
# MessageSystemAttributeNames); the FIFO-only names are accepted and never present.
SYSTEM_NAMES = frozenset(
    {
        "SenderId",
        "SentTimestamp",
        "ApproximateReceiveCount",
        "ApproximateFirstReceiveTimestamp",
        "AWSTraceHeader",
    }
)
_ACCEPTED_NAMES = SYSTEM_NAMES | {
    "All",
    "SequenceNumber",
    "MessageDeduplicationId",
    "MessageGroupId",
    "DeadLetterQueueSourceArn",
}


# Queue ----------------------------------------------------------------------------------


@unavailable_as("The message could not be read.")
async def _message(call: SqsCall, queue: str, message_id: str) -> tuple[Message | None, float]:
    now = call.svc.clock()
    found = await call.svc.storage.messages.get(call.caller.project, queue, [message_id], now)
    return (found[0] if found else None), now


# Batches --------------------------------------------------------------------------------


def _batch_entries(params: Params, entry_shape: str) -> list[dict[str, Any]]:
    """The Entries of a batch request, checked as a whole (count, ids)."""
    entries = optional_list(params, "Entries")
    if not entries:
        raise EmptyBatchRequest(f"There should be at least one {entry_shape} in the request.")
    if len(entries) > MAX_BATCH:
        raise TooManyEntriesInBatchRequest(
            f"Maximum number of entries per request are {MAX_BATCH}. You have sent {len(entries)}."
        )
    seen: set[str] = set()
    for entry in entries:
        if not isinstance(entry, dict):
            raise InvalidParameterValue(f"Each {entry_shape} must be a map.")
        entry_id = entry.get("Id")
        if not isinstance(entry_id, str) or not _BATCH_ENTRY_ID.fullmatch(entry_id):
            raise InvalidBatchEntryId(
                "A batch entry id can only contain alphanumeric characters, hyphens and "
                "underscores. It can be at most 80 letters long."
            )
        if entry_id in seen:
            raise BatchEntryIdsNotDistinct(f"Id {entry_id} repeated.")
        seen.add(entry_id)
    return entries


def _failure(entry_id: str, error: SqsError) -> dict[str, Any]:
    return {
        "Id": entry_id,
        "SenderFault": error.sender,
        "Code": error.code,
        "Message": error.message,
    }


def _batch_result(successful: list[dict[str, Any]], failed: list[dict[str, Any]]) -> Result:
    return {"Successful": successful, "Failed": failed}


# Send -----------------------------------------------------------------------------------


class _Outgoing(msgspec.Struct, frozen=True, kw_only=True):
    stored: bytes
    delay: int | None
    result: dict[str, str]


def _outgoing(call: SqsCall, source: Params, size_limit: int) -> _Outgoing:
    """One message to send, checked: body, attributes, delay and size."""
    text = bodies.check_body(source.get("MessageBody"))
    max_delay = min(MAX_DELAY, call.svc.settings.transport.max_message_delay)
    delay = optional_int(source, "DelaySeconds", 0, max_delay)
    if source.get("MessageDeduplicationId") is not None:
        raise InvalidParameterValue(
            "The request include parameter MessageDeduplicationId that is not valid for "
            "this queue type."
        )
    attributes = bodies.check_attributes(source.get("MessageAttributes"))
    system = bodies.check_system_attributes(source.get("MessageSystemAttributes"))
    size = len(text.encode()) + bodies.attributes_size(attributes)
    if size > size_limit:
        raise InvalidParameterValue(
            "One or more parameters are invalid. Reason: Message must be shorter than "
            f"{size_limit} bytes."
        )
    result = {"MD5OfMessageBody": bodies.md5_of_text(text)}
    if attributes:
        result["MD5OfMessageAttributes"] = bodies.md5_of_attributes(attributes)
    if system:
        result["MD5OfMessageSystemAttributes"] = bodies.md5_of_attributes(
            {name: {"DataType": "String", "StringValue": v} for name, v in system.items()}
        )
    return _Outgoing(
        stored=bodies.stored_body(text, attributes, system), delay=delay, result=result
    )


def _payload_size(entry: Params) -> int:
    """An entry's size as SQS counts it toward a batch's limit (whatever its validity)."""
    size = 0
    body = entry.get("MessageBody")
    if isinstance(body, str):
        size += len(body.encode())
    attributes = entry.get("MessageAttributes")
    if isinstance(attributes, dict):
        for name, value in attributes.items():
            size += len(str(name).encode())
            if isinstance(value, dict):
                for key in ("DataType", "StringValue"):
                    if isinstance(value.get(key), str):
                        size += len(value[key].encode())
                if isinstance(value.get("BinaryValue"), str):
                    size += len(value["BinaryValue"]) * 3 // 4  # base64 text: the bytes
    return size


async def _post(call: SqsCall, queue: str, outgoing: list[_Outgoing]) -> list[str]:
    items = [
        message_ops.MessageIn(
            msgspec.Raw(item.stored),
            delay=msgspec.UNSET if item.delay is None else item.delay,
        )
        for item in outgoing
    ]
    # Retention is the queue's default TTL; a message without DelaySeconds gets the
    # queue's delay; size was checked here against MaximumMessageSize, message by message.
    return await message_ops.message_post(call.svc, call.caller, queue, items, None, any_delay=True)


async def send_message(call: SqsCall, params: Params) -> Result:
    queue = queue_from_params(call, params)
    metadata = await queue_metadata(call, queue)
    limit = reserved.post_size_limit(metadata, call.svc.settings.transport)
    outgoing = _outgoing(call, params, limit)
    (message_id,) = await _post(call, queue, [outgoing])
    return {"MessageId": message_id, **outgoing.result}


async def send_message_batch(call: SqsCall, params: Params) -> Result:
    queue = queue_from_params(call, params)
    metadata = await queue_metadata(call, queue)
    entries = _batch_entries(params, "SendMessageBatchRequestEntry")
    total = sum(_payload_size(entry) for entry in entries)
    if total > MAX_BATCH_PAYLOAD:
        raise BatchRequestTooLong(
            f"Batch requests cannot be longer than {MAX_BATCH_PAYLOAD} bytes. You have sent "
            f"{total} bytes."
        )
    limit = reserved.post_size_limit(metadata, call.svc.settings.transport)
    valid: list[tuple[str, _Outgoing]] = []
    failed: list[dict[str, Any]] = []
    for entry in entries:
        try:
            valid.append((entry["Id"], _outgoing(call, entry, limit)))
        except SqsError as exc:
            failed.append(_failure(entry["Id"], exc))
    successful: list[dict[str, Any]] = []
    if valid:
        ids = await _post(call, queue, [item for _, item in valid])
        for (entry_id, item), message_id in zip(valid, ids, strict=True):
            successful.append({"Id": entry_id, "MessageId": message_id, **item.result})
    return _batch_result(successful, failed)


# Receive --------------------------------------------------------------------------------


def _names(params: Params, name: str) -> list[str]:
    values = optional_list(params, name)
    if not all(isinstance(value, str) for value in values):
        raise InvalidParameterValue(f"Value for parameter {name} must be a list of strings.")
    return values


def _system_names(params: Params) -> frozenset[str]:
    """The system attributes asked for (AttributeNames, the older parameter, counts too)."""
    asked = _names(params, "AttributeNames") + _names(params, "MessageSystemAttributeNames")
    for name in asked:
        # Older SDKs model AttributeNames with the queue's attribute names: SQS
        # accepts them there (and answers none of them on a message).
        if name not in _ACCEPTED_NAMES and name not in queue_attributes.KNOWN:
            raise InvalidAttributeName(f"Unknown Attribute {shown(name)}.")
    if "All" in asked:
        return SYSTEM_NAMES
    return frozenset(asked) & SYSTEM_NAMES


class _AttributeFilter(msgspec.Struct, frozen=True):
    """MessageAttributeNames: "All" or ".*" for every one, names, and "prefix.*"."""

    everything: bool
    names: frozenset[str]
    prefixes: tuple[str, ...]

    def wants(self, name: str) -> bool:
        return self.everything or name in self.names or name.startswith(self.prefixes)


def _attribute_filter(params: Params) -> _AttributeFilter:
    asked = _names(params, "MessageAttributeNames")
    everything = any(name in ("All", ".*") for name in asked)
    prefixes = tuple(name[:-1] for name in asked if name.endswith(".*") and name != ".*")
    names = frozenset(name for name in asked if not name.endswith(".*"))
    return _AttributeFilter(everything, names, prefixes)


def _millis(seconds: float) -> str:
    return str(int(seconds * 1000))


def _system_attributes(
    message: Message, stored: bodies.Stored, wanted: frozenset[str], claimed_at: float
) -> dict[str, str]:
    values: dict[str, str] = {}
    if "SenderId" in wanted:
        values["SenderId"] = message.client_id
    if "SentTimestamp" in wanted:
        values["SentTimestamp"] = _millis(message.created)
    if "ApproximateReceiveCount" in wanted:
        values["ApproximateReceiveCount"] = str(message.claim_count)
    if "ApproximateFirstReceiveTimestamp" in wanted:
        # The store keeps no first receive time: a first receive is this one; after it,
        # the time the message first became receivable (sent, plus its delay) stands
        # in, which is never later than the true first receive.
        first = max(message.created, message.delay_until)
        if message.claim_count <= 1:
            first = claimed_at
        values["ApproximateFirstReceiveTimestamp"] = _millis(first)
    if "AWSTraceHeader" in wanted and "AWSTraceHeader" in stored.system:
        values["AWSTraceHeader"] = stored.system["AWSTraceHeader"]
    return values


def _received(
    queue: str,
    claim_id: str,
    message: Message,
    system_names: frozenset[str],
    attribute_filter: _AttributeFilter,
    claimed_at: float,
) -> dict[str, Any]:
    stored = bodies.read_body(message.body)
    answer: dict[str, Any] = {
        "MessageId": message.id,
        "ReceiptHandle": bodies.receipt_handle(queue, message.id, claim_id),
        "MD5OfBody": bodies.md5_of_text(stored.text),
        "Body": stored.text,
    }
    system = _system_attributes(message, stored, system_names, claimed_at)
    if system:
        answer["Attributes"] = system
    chosen = {name: v for name, v in stored.attributes.items() if attribute_filter.wants(name)}
    if chosen:
        answer["MD5OfMessageAttributes"] = bodies.md5_of_attributes(chosen)
        answer["MessageAttributes"] = chosen
    return answer


async def receive_message(call: SqsCall, params: Params) -> Result:
    queue = queue_from_params(call, params)
    limit = optional_int(params, "MaxNumberOfMessages", 1, MAX_RECEIVE) or 1
    visibility = optional_int(params, "VisibilityTimeout", 0, MAX_VISIBILITY)
    wait = optional_int(params, "WaitTimeSeconds", 0, MAX_WAIT)
    system_names = _system_names(params)
    attribute_filter = _attribute_filter(params)
    metadata = await queue_metadata(call, queue)
    if visibility is None:
        visibility = min(queue_attributes.visibility_timeout(metadata), MAX_VISIBILITY)
    if wait is None:
        wait = min(queue_attributes.receive_wait_time(metadata), MAX_WAIT)
    # A receive is a claim: VisibilityTimeout is its ttl, with no grace (an SQS message
    # is visible again the moment its timeout ends).
    request = ClaimRequest(ttl=visibility, grace=0, limit=limit)
    claimed, claimed_at = await claim_ops.claim_messages(
        call.svc, call.caller, queue, request, float(wait) if wait > 0 else None
    )
    if claimed is None or not claimed.messages:
        return {}
    return {
        "Messages": [
            _received(queue, claimed.id, message, system_names, attribute_filter, claimed_at)
            for message in claimed.messages
        ]
    }


# Delete ---------------------------------------------------------------------------------


async def _delete(call: SqsCall, queue: str, message_id: str, claim_id: str) -> None:
    """Delete the message the handle names, as SQS does: under the handle's claim; when
    no claim holds it now, only if no other receive has taken it since; a stale handle
    whose message another receive holds (or held last) succeeds without deleting it."""
    svc, caller = call.svc, call.caller
    try:
        await message_ops.message_delete(svc, caller, queue, message_id, claim_id)
        return
    except ClaimedMessage:
        return  # another live claim holds it: received again since
    except UnableToDelete as exc:
        if exc.description != rules.NOT_CLAIMED:
            return  # the handle's claim lapsed and another holds the message now
    # No claim holds it now (the visibility timeout ended). The store may have let go of
    # the last claim's mark; when it has not, a mark of another claim means that someone
    # received the message after this handle was given out.
    message, _ = await _message(call, queue, message_id)
    if message is None or message.claim_id not in (None, claim_id):
        return
    try:
        await message_ops.message_delete(svc, caller, queue, message_id, None)
    except ClaimedMessage:
        return  # received again in between


@unavailable_as("Messages could not be deleted.")
async def _delete_held(call: SqsCall, queue: str, held: list[tuple[str, str]]) -> bool:
    """Delete the messages at once if every one is held by the one claim named with
    them; False (nothing deleted) when any is not."""
    try:
        await call.svc.storage.messages.delete_many(
            call.caller.project,
            queue,
            [message_id for message_id, _ in held],
            sorted({claim_id for _, claim_id in held}),
            call.svc.clock(),
        )
    except UnableToDelete:
        return False
    metrics.messages_deleted(len(held))
    return True


async def delete_message(call: SqsCall, params: Params) -> Result:
    queue = queue_from_params(call, params)
    await queue_metadata(call, queue)
    message_id, claim_id = bodies.parse_receipt_handle(params.get("ReceiptHandle"), queue)
    await _delete(call, queue, message_id, claim_id)
    return {}


async def delete_message_batch(call: SqsCall, params: Params) -> Result:
    queue = queue_from_params(call, params)
    await queue_metadata(call, queue)
    entries = _batch_entries(params, "DeleteMessageBatchRequestEntry")
    handles: list[tuple[str, str] | SqsError] = []
    for entry in entries:
        try:
            handles.append(bodies.parse_receipt_handle(entry.get("ReceiptHandle"), queue))
        except SqsError as exc:
            handles.append(exc)
    held = [handle for handle in handles if not isinstance(handle, SqsError)]
    # The usual batch (what one receive got, every message still held by its claim) is
    # one atomic bulk delete, one round trip; otherwise each entry by SQS's rules.
    one_claim = len({claim_id for _, claim_id in held}) == 1
    bulk_done = one_claim and await _delete_held(call, queue, held)
    if not bulk_done:
        await asyncio.gather(*(_delete(call, queue, *handle) for handle in held))
    return _batch_result(
        [
            {"Id": e["Id"]}
            for e, h in zip(entries, handles, strict=True)
            if not isinstance(h, SqsError)
        ],
        [
            _failure(e["Id"], h)
            for e, h in zip(entries, handles, strict=True)
            if isinstance(h, SqsError)
        ],
    )


# Visibility -----------------------------------------------------------------------------


async def _change_visibility(
    call: SqsCall, queue: str, handle: str, message_id: str, claim_id: str, timeout: int
) -> None:
    """Restart the handle's claim with ``timeout`` (0 releases it). The claim covers every
    message of its receive: they all change (a documented difference from SQS)."""
    message, now = await _message(call, queue, message_id)
    if message is None:
        raise InvalidParameterValue(
            f"Value {handle} for parameter ReceiptHandle is invalid. Reason: Message does "
            "not exist or is not available for visibility timeout change."
        )
    if message.claim_id != claim_id or not message.claimed(now):
        raise MessageNotInflight("The message referred to isn't in flight.")
    if timeout == 0:
        # A release, not a zero-second claim: it signals the change feed, so that long
        # polls waiting on the queue wake and take the message.
        await claim_ops.claim_release(call.svc, call.caller, queue, claim_id)
        return
    if not await claim_ops.claim_extend(call.svc, call.caller, queue, claim_id, timeout):
        raise MessageNotInflight("The message referred to isn't in flight.")


async def change_message_visibility(call: SqsCall, params: Params) -> Result:
    queue = queue_from_params(call, params)
    await queue_metadata(call, queue)
    handle = params.get("ReceiptHandle")
    message_id, claim_id = bodies.parse_receipt_handle(handle, queue)
    timeout = required_int(params, "VisibilityTimeout", 0, MAX_VISIBILITY)
    await _change_visibility(call, queue, str(handle), message_id, claim_id, timeout)
    return {}


async def change_message_visibility_batch(call: SqsCall, params: Params) -> Result:
    queue = queue_from_params(call, params)
    await queue_metadata(call, queue)
    entries = _batch_entries(params, "ChangeMessageVisibilityBatchRequestEntry")
    successful: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    # In order: entries whose messages share a claim change it one after the other.
    for entry in entries:
        try:
            handle = entry.get("ReceiptHandle")
            message_id, claim_id = bodies.parse_receipt_handle(handle, queue)
            timeout = required_int(entry, "VisibilityTimeout", 0, MAX_VISIBILITY)
            await _change_visibility(call, queue, str(handle), message_id, claim_id, timeout)
        except SqsError as exc:
            failed.append(_failure(entry["Id"], exc))
        else:
            successful.append({"Id": entry["Id"]})
    return _batch_result(successful, failed)
