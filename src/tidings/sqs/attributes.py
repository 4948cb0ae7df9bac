"""Queue attributes: SQS's names over Tidings' queue metadata (owned by helper H3).

Where Zaqar has a reserved key, the attribute is that key (MessageRetentionPeriod is
``_default_message_ttl``, DelaySeconds ``_default_message_delay``, MaximumMessageSize
``_max_messages_post_size``, RedrivePolicy ``_dead_letter_queue`` + ``_max_claim_count``);
the rest live under one key of their own, ``_sqs`` (an object a Zaqar client sees too):
VisibilityTimeout, ReceiveMessageWaitTimeSeconds, RedriveAllowPolicy (its JSON text),
CreatedTimestamp, LastModifiedTimestamp (epoch seconds) and ``tags``.

What GetQueueAttributes shows is what is in force, read through the same helpers the
engine uses (``ops.metadata``), so a queue made through Zaqar's API shows its defaults.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from tidings.config import TransportSettings
from tidings.ops import metadata as reserved
from tidings.sqs.context import SqsCall
from tidings.sqs.errors import (
    InvalidAttributeName,
    InvalidAttributeValue,
    InvalidParameterValue,
    UnsupportedOperation,
)
from tidings.sqs.errors import shown as shown_value
from tidings.sqs.urls import queue_arn, queue_from_arn

SQS_KEY = "_sqs"
TAGS_KEY = "tags"
DEFAULT_VISIBILITY_TIMEOUT = 30
DEFAULT_RECEIVE_WAIT = 0
DEFAULT_RETENTION = 345_600

# SQS's own ranges (Tidings' [transport] limits may narrow the last three).
VISIBILITY_RANGE = (0, 43_200)
RECEIVE_WAIT_RANGE = (0, 20)
RETENTION_RANGE = (60, 1_209_600)
DELAY_RANGE = (0, 900)
MESSAGE_SIZE_RANGE = (1_024, 1_048_576)
RECEIVE_COUNT_RANGE = (1, 1_000)
MAX_SOURCE_QUEUE_ARNS = 10
# Ours: the largest policy text (10 source ARNs fit many times over).
MAX_POLICY_LENGTH = 16_384

VISIBILITY_TIMEOUT = "VisibilityTimeout"
RECEIVE_WAIT = "ReceiveMessageWaitTimeSeconds"
RETENTION = "MessageRetentionPeriod"
DELAY = "DelaySeconds"
MESSAGE_SIZE = "MaximumMessageSize"
REDRIVE_POLICY = "RedrivePolicy"
REDRIVE_ALLOW_POLICY = "RedriveAllowPolicy"
CREATED = "CreatedTimestamp"
LAST_MODIFIED = "LastModifiedTimestamp"
QUEUE_ARN = "QueueArn"
VISIBLE = "ApproximateNumberOfMessages"
NOT_VISIBLE = "ApproximateNumberOfMessagesNotVisible"
DELAYED = "ApproximateNumberOfMessagesDelayed"

WRITABLE = (
    VISIBILITY_TIMEOUT,
    RECEIVE_WAIT,
    RETENTION,
    DELAY,
    MESSAGE_SIZE,
    REDRIVE_POLICY,
    REDRIVE_ALLOW_POLICY,
)
COUNTERS = (VISIBLE, NOT_VISIBLE, DELAYED)
READ_ONLY = (CREATED, LAST_MODIFIED, QUEUE_ARN, *COUNTERS)
# SQS's, not (yet) Tidings': accepted only with the value that means "off", never shown.
NOT_SUPPORTED = ("Policy", "KmsMasterKeyId", "KmsDataKeyReusePeriodSeconds", "SqsManagedSseEnabled")
FIFO_QUEUE = "FifoQueue"
# FIFO queues' own: SQS does not know them on a standard queue either.
FIFO_ONLY = ("ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit")
ALL = "All"
KNOWN = frozenset((ALL, *WRITABLE, *READ_ONLY, *NOT_SUPPORTED, FIFO_QUEUE, *FIFO_ONLY))

_INTEGER = re.compile(r"-?[0-9]{1,19}")
_REDRIVE_KEYS = frozenset({"deadLetterTargetArn", "maxReceiveCount"})
_PERMISSIONS = ("allowAll", "denyAll", "byQueue")


class RedrivePolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Where messages go after ``max_receive_count`` receives: a queue of this project."""

    target: str
    max_receive_count: int


class RedriveAllowPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Which source queues may name this queue as their dead-letter queue."""

    permission: str
    sources: tuple[str, ...] = ()  # queue names (byQueue only)

    def allows(self, source: str) -> bool:
        if self.permission == "denyAll":
            return False
        return self.permission == "allowAll" or source in self.sources


Requested = dict[str, Any]
"""Writable attributes a request sets, by SQS name: ints, a ``RedrivePolicy``, the
normalised RedriveAllowPolicy text, or None (RedrivePolicy / RedriveAllowPolicy "":
removed)."""


# Reading -------------------------------------------------------------------------------


def _own(metadata: dict[str, Any]) -> dict[str, Any]:
    own = metadata.get(SQS_KEY)
    return own if isinstance(own, dict) else {}


def _int(value: Any, default: int, bounds: tuple[int, int] | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        return default
    # ``_sqs`` is open to Zaqar clients too: a value out of SQS's range is not in force.
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        return default
    return value


def visibility_timeout(metadata: dict[str, Any]) -> int:
    """The queue's VisibilityTimeout: what a receive without one uses."""
    value = _own(metadata).get(VISIBILITY_TIMEOUT)
    return _int(value, DEFAULT_VISIBILITY_TIMEOUT, VISIBILITY_RANGE)


def receive_wait_time(metadata: dict[str, Any]) -> int:
    """The queue's ReceiveMessageWaitTimeSeconds: what a receive without one waits."""
    return _int(_own(metadata).get(RECEIVE_WAIT), DEFAULT_RECEIVE_WAIT, RECEIVE_WAIT_RANGE)


def tags(metadata: dict[str, Any]) -> dict[str, str]:
    found = _own(metadata).get(TAGS_KEY)
    if not isinstance(found, dict):
        return {}
    return {k: v for k, v in found.items() if isinstance(v, str)}


def redrive_allow_policy(call: SqsCall, metadata: dict[str, Any]) -> RedriveAllowPolicy | None:
    """The queue's RedriveAllowPolicy, None when it has none (or one no longer valid)."""
    text = _own(metadata).get(REDRIVE_ALLOW_POLICY)
    if not isinstance(text, str):
        return None
    try:
        return _parse_redrive_allow_policy(call, text)
    except InvalidParameterValue:
        return None


def shown(call: SqsCall, metadata: dict[str, Any]) -> dict[str, str]:
    """Every attribute the queue's metadata answers (the counters are the caller's)."""
    limits = call.svc.settings.transport
    own = _own(metadata)
    values: dict[str, str] = {
        VISIBILITY_TIMEOUT: str(visibility_timeout(metadata)),
        DELAY: str(reserved.delay_default(metadata, limits)),
        RETENTION: str(reserved.message_ttl_default(metadata, limits)),
        MESSAGE_SIZE: str(reserved.post_size_limit(metadata, limits)),
        RECEIVE_WAIT: str(receive_wait_time(metadata)),
    }
    # Zaqar keeps no creation time: a queue made through its API shows none.
    for name in (CREATED, LAST_MODIFIED):
        stamp = _int(own.get(name), -1)
        if stamp >= 0:
            values[name] = str(stamp)
    dead_letter = reserved.dead_letter_policy(metadata)
    if dead_letter is not None:
        policy = RedrivePolicy(
            target=dead_letter.queue, max_receive_count=dead_letter.max_claim_count
        )
        values[REDRIVE_POLICY] = _redrive_text(call, policy)
    allow = own.get(REDRIVE_ALLOW_POLICY)
    if isinstance(allow, str):
        values[REDRIVE_ALLOW_POLICY] = allow
    return values


def as_text(call: SqsCall, name: str, value: Any) -> str | None:
    """A requested value as GetQueueAttributes would show it (None: not shown)."""
    if value is None:
        return None
    if isinstance(value, RedrivePolicy):
        return _redrive_text(call, value)
    return str(value)


def _redrive_text(call: SqsCall, policy: RedrivePolicy) -> str:
    document = {
        "deadLetterTargetArn": queue_arn(call, policy.target),
        "maxReceiveCount": policy.max_receive_count,
    }
    return msgspec.json.encode(document).decode()


# Requests ------------------------------------------------------------------------------


def parse(call: SqsCall, raw: dict[str, Any], *, creating: bool) -> Requested:
    """Validate CreateQueue's or SetQueueAttributes' ``Attributes`` map, with SQS's codes."""
    limits = call.svc.settings.transport
    requested: Requested = {}
    for name, value in raw.items():
        if not isinstance(name, str) or name not in KNOWN or name == ALL:
            raise InvalidAttributeName(f"Unknown Attribute {shown_value(name)}.")
        if name in READ_ONLY:
            raise InvalidAttributeName(f"Unknown Attribute {name}. (It is read-only.)")
        if name in FIFO_ONLY:
            raise InvalidAttributeName(
                f"Unknown Attribute {name}. (It applies to FIFO queues, which Tidings "
                "does not support yet.)"
            )
        if not isinstance(value, str):
            raise InvalidAttributeValue(f"Invalid value for the parameter {name}.")
        if name == FIFO_QUEUE:
            _check_fifo_queue(value, creating)
        elif name in NOT_SUPPORTED:
            _check_not_supported(name, value)
        else:
            requested[name] = _parse_one(call, name, value, limits)
    return requested



def _check_fifo_queue(value: str, creating: bool) -> None:
    if value.lower() == "true":
        raise UnsupportedOperation("FIFO queues are not supported by Tidings yet.")
    if value.lower() != "false":
        raise InvalidAttributeValue(f"Invalid value for the parameter {FIFO_QUEUE}.")
    if not creating:  # SQS: the queue type cannot change after creation
        raise InvalidAttributeName(f"Unknown Attribute {FIFO_QUEUE}. (It is set at creation.)")


def _check_not_supported(name: str, value: str) -> None:
    off = "false" if name == "SqsManagedSseEnabled" else ""
    if value.lower() != off:
        raise UnsupportedOperation(f"Tidings does not support the queue attribute {name} yet.")


def _parse_one(call: SqsCall, name: str, value: str, limits: TransportSettings) -> Any:
    if name == REDRIVE_POLICY:
        return _parse_redrive_policy(call, value) if value else None
    if name == REDRIVE_ALLOW_POLICY:
        if not value:
            return None
        policy = _parse_redrive_allow_policy(call, value)
        document: dict[str, Any] = {"redrivePermission": policy.permission}
        if policy.sources:
            document["sourceQueueArns"] = [queue_arn(call, s) for s in policy.sources]
        return msgspec.json.encode(document).decode()
    low, high = {
        VISIBILITY_TIMEOUT: VISIBILITY_RANGE,
        RECEIVE_WAIT: RECEIVE_WAIT_RANGE,
        RETENTION: RETENTION_RANGE,
        DELAY: DELAY_RANGE,
        MESSAGE_SIZE: MESSAGE_SIZE_RANGE,
    }[name]
    number = int(value) if _INTEGER.fullmatch(value) else None
    if number is None or not low <= number <= high:
        raise InvalidAttributeValue(
            f"Invalid value for the parameter {name}. Reason: must be an integer from "
            f"{low} to {high}."
        )
    ceiling = {
        RETENTION: limits.max_message_ttl,
        DELAY: limits.max_message_delay,
        MESSAGE_SIZE: limits.max_messages_post_size,
    }.get(name)
    if ceiling is not None and number > ceiling:
        raise InvalidAttributeValue(
            f"Invalid value for the parameter {name}. Reason: this Tidings server allows "
            f"at most {ceiling}."
        )
    return number


def _json_object(name: str, text: str) -> dict[str, Any]:
    if len(text) > MAX_POLICY_LENGTH:
        raise _policy_error(name, text, f"it is longer than {MAX_POLICY_LENGTH} characters.")
    try:
        document = msgspec.json.decode(text)
    except (msgspec.DecodeError, RecursionError):  # deep nesting is refused too
        document = None
    if not isinstance(document, dict):
        raise _policy_error(name, text, "it is not a valid JSON map.")
    return document


def _policy_error(name: str, text: str, reason: str) -> InvalidParameterValue:
    shown = text if len(text) <= 1024 else text[:1024] + "..."
    return InvalidParameterValue(f"Value {shown} for parameter {name} is invalid. Reason: {reason}")


def _parse_redrive_policy(call: SqsCall, text: str) -> RedrivePolicy:
    document = _json_object(REDRIVE_POLICY, text)
    missing = sorted(_REDRIVE_KEYS - document.keys())
    if missing:
        raise _policy_error(
            REDRIVE_POLICY,
            text,
            f"Redrive policy does not contain mandatory attribute: {missing[0]}.",
        )
    if document.keys() - _REDRIVE_KEYS:
        raise _policy_error(
            REDRIVE_POLICY,
            text,
            "Only following attributes are supported: [deadLetterTargetArn, maxReceiveCount].",
        )
    arn, count = document["deadLetterTargetArn"], document["maxReceiveCount"]
    # SQS takes the count as a number or as its text.
    if isinstance(count, str) and _INTEGER.fullmatch(count):
        count = int(count)
    low, high = RECEIVE_COUNT_RANGE
    if isinstance(count, bool) or not isinstance(count, int) or not low <= count <= high:
        raise _policy_error(
            REDRIVE_POLICY,
            text,
            f"Invalid value for maxReceiveCount: {count}, valid values are from {low} to "
            f"{high} both inclusive.",
        )
    if not isinstance(arn, str):
        raise _policy_error(REDRIVE_POLICY, text, "deadLetterTargetArn must be a string.")
    try:
        target = queue_from_arn(call, arn)
    except InvalidParameterValue:
        raise _policy_error(REDRIVE_POLICY, text, "Dead letter target does not exist.") from None
    return RedrivePolicy(target=target, max_receive_count=count)


def _parse_redrive_allow_policy(call: SqsCall, text: str) -> RedriveAllowPolicy:
    name = REDRIVE_ALLOW_POLICY
    document = _json_object(name, text)
    if document.keys() - {"redrivePermission", "sourceQueueArns"}:
        raise _policy_error(
            name,
            text,
            "Only following attributes are supported: [redrivePermission, sourceQueueArns].",
        )
    permission = document.get("redrivePermission")
    if permission not in _PERMISSIONS:
        raise _policy_error(
            name, text, "redrivePermission must be one of allowAll, denyAll, byQueue."
        )
    arns = document.get("sourceQueueArns")
    if permission != "byQueue":
        if arns is not None:
            raise _policy_error(
                name, text, "sourceQueueArns may only be given when redrivePermission is byQueue."
            )
        return RedriveAllowPolicy(permission=permission)
    if (
        not isinstance(arns, list)
        or not 1 <= len(arns) <= MAX_SOURCE_QUEUE_ARNS
        or not all(isinstance(a, str) for a in arns)
    ):
        raise _policy_error(
            name, text, f"byQueue needs sourceQueueArns: 1 to {MAX_SOURCE_QUEUE_ARNS} queue ARNs."
        )
    sources: list[str] = []
    for arn in arns:
        try:
            source = queue_from_arn(call, arn)
        except InvalidParameterValue:
            raise _policy_error(
                name, text, f"{shown_value(arn)} is not the ARN of a queue of this account."
            ) from None
        if source not in sources:
            sources.append(source)
    return RedriveAllowPolicy(permission=permission, sources=tuple(sources))


# Writing -------------------------------------------------------------------------------


def initial(
    limits: TransportSettings, requested: Requested, new_tags: dict[str, str], now: int
) -> dict[str, Any]:
    """A new queue's metadata: SQS's defaults stored explicitly, then what was asked."""
    metadata: dict[str, Any] = {
        reserved.DEFAULT_TTL: min(DEFAULT_RETENTION, limits.max_message_ttl),
        reserved.DEFAULT_DELAY: 0,
        reserved.MAX_POST_SIZE: min(MESSAGE_SIZE_RANGE[1], limits.max_messages_post_size),
        SQS_KEY: {
            VISIBILITY_TIMEOUT: DEFAULT_VISIBILITY_TIMEOUT,
            RECEIVE_WAIT: DEFAULT_RECEIVE_WAIT,
            CREATED: now,
        },
    }
    if new_tags:
        metadata[SQS_KEY][TAGS_KEY] = dict(new_tags)
    return applied(metadata, requested, now)


def applied(metadata: dict[str, Any], requested: Requested, now: int) -> dict[str, Any]:
    """The metadata with the requested attributes set (and LastModifiedTimestamp now)."""
    updated = dict(metadata)
    own = dict(_own(metadata))
    for name, value in requested.items():
        if name in (VISIBILITY_TIMEOUT, RECEIVE_WAIT, REDRIVE_ALLOW_POLICY):
            if value is None:
                own.pop(name, None)
            else:
                own[name] = value
        elif name == RETENTION:
            updated[reserved.DEFAULT_TTL] = value
        elif name == DELAY:
            updated[reserved.DEFAULT_DELAY] = value
        elif name == MESSAGE_SIZE:
            updated[reserved.MAX_POST_SIZE] = value
        elif name == REDRIVE_POLICY:
            if value is None:
                updated.pop(reserved.DEAD_LETTER_QUEUE, None)
                updated.pop(reserved.MAX_CLAIM_COUNT, None)
            else:
                updated[reserved.DEAD_LETTER_QUEUE] = value.target
                updated[reserved.MAX_CLAIM_COUNT] = value.max_receive_count
    own[LAST_MODIFIED] = now
    updated[SQS_KEY] = own
    return updated


def with_tags(metadata: dict[str, Any], new_tags: dict[str, str]) -> dict[str, Any]:
    """The metadata with its tags replaced by ``new_tags``."""
    own = dict(_own(metadata))
    if new_tags:
        own[TAGS_KEY] = new_tags
    else:
        own.pop(TAGS_KEY, None)
    return {**metadata, SQS_KEY: own}
