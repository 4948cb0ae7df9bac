"""SQS queue operations over Tidings queues (owned by helper H3).

An SQS queue is the Tidings queue of the same name in the caller's project: these
operations go through ``tidings.ops.queues`` (so Zaqar's metadata rules apply once) and
reach the store directly only for listings SQS pages further than Zaqar does.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import msgspec

from tidings.ops import metadata as reserved
from tidings.ops import queues as ops
from tidings.ops.context import unavailable_as
from tidings.ops.validation import QUEUE_NAME
from tidings.sqs import attributes as attrs
from tidings.sqs.context import Params, Result, SqsCall
from tidings.sqs.errors import (
    InvalidAttributeName,
    InvalidParameterValue,
    MissingParameter,
    QueueDeletedRecently,
    QueueDoesNotExist,
    QueueNameExists,
    UnsupportedOperation,
    shown,
)
from tidings.sqs.params import optional_int, optional_list, optional_map, optional_str, required_str
from tidings.sqs.urls import queue_arn, queue_from_params, queue_url
from tidings.storage.base import QueueListing

SQS_QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")
TIDINGS_NAME_LIMIT = 64
LISTING_LIMIT = 1_000
MAX_TAGS = 50
TAG_KEY_LENGTH = (1, 128)
TAG_VALUE_LENGTH = (0, 256)
FIFO_SUFFIX = ".fifo"
PURGE_MESSAGES = {"resource_types": ["messages"]}


# Queues ------------------------------------------------------------------------------


async def create_queue(call: SqsCall, params: Params) -> Result:
    name = required_str(params, "QueueName")
    _check_new_name(name)
    requested = attrs.parse(call, _attribute_map(params, "Attributes"), creating=True)
    new_tags = _checked_tags(_attribute_map(params, "tags"), {}, name)
    redrive = requested.get(attrs.REDRIVE_POLICY)
    if redrive is not None:
        await _check_redrive_target(call, name, redrive)
    metadata = attrs.initial(call.svc.settings.transport, requested, new_tags, _now(call))
    ops.check_metadata_size(call.svc, len(msgspec.json.encode(metadata)))
    # The queue may go between a create that found it and the read that follows: then
    # the create is tried again (once; losing that race twice is answered as SQS answers
    # a create right after a delete).
    for _ in range(2):
        if await ops.queue_create(call.svc, call.caller, name, metadata):
            return {"QueueUrl": queue_url(call, name)}
        stored = await metadata_or_none(call, name)
        if stored is None:
            continue
        current = attrs.shown(call, stored)
        for attribute, value in requested.items():
            if attrs.as_text(call, attribute, value) != current.get(attribute):
                raise QueueNameExists(
                    "A queue already exists with the same name and a different value for "
                    f"attribute {attribute}."
                )
        return {"QueueUrl": queue_url(call, name)}
    raise QueueDeletedRecently(
        f"The queue {name} was being deleted while it was created; try again."
    )


async def get_queue_url(call: SqsCall, params: Params) -> Result:
    name = required_str(params, "QueueName")
    owner = optional_str(params, "QueueOwnerAWSAccountId")
    # Another project's queues are never resolved: its name answers as an absent queue.
    if owner is not None and owner != call.caller.project:
        raise QueueDoesNotExist()
    # Any Tidings name (a queue made through Zaqar's API may hold a dot) is looked up.
    if not QUEUE_NAME.fullmatch(name) or not await ops.queue_exists(call.svc, call.caller, name):
        raise QueueDoesNotExist()
    return {"QueueUrl": queue_url(call, name)}


async def list_queues(call: SqsCall, params: Params) -> Result:
    prefix = optional_str(params, "QueueNamePrefix") or ""
    limit = optional_int(params, "MaxResults", 1, LISTING_LIMIT)
    after = _token_marker(params)
    if prefix and not QUEUE_NAME.fullmatch(prefix):
        return {}  # no queue name starts with it
    marker = max(after or "", _before_prefix(prefix))
    listing = await _page(call, marker, (limit or LISTING_LIMIT) + 1)
    names: list[str] = []
    for queue in listing.queues:
        if not queue.name.startswith(prefix):
            break  # names are in byte order: those with the prefix are contiguous
        names.append(queue.name)
    return _url_page(call, names, limit, None)


async def delete_queue(call: SqsCall, params: Params) -> Result:
    name = queue_from_params(call, params)
    await _require(call, name)
    await ops.queue_delete(call.svc, call.caller, name)
    return {}


async def purge_queue(call: SqsCall, params: Params) -> Result:
    name = queue_from_params(call, params)
    await _require(call, name)
    # SQS purges messages only: the queue's subscriptions stay.
    await ops.queue_purge(call.svc, call.caller, name, PURGE_MESSAGES)
    return {}


# Attributes ----------------------------------------------------------------------------


async def get_queue_attributes(call: SqsCall, params: Params) -> Result:
    name = queue_from_params(call, params)
    wanted = _attribute_names(params)
    metadata = await queue_metadata(call, name)
    if not wanted:
        return {}
    values = attrs.shown(call, metadata)
    values[attrs.QUEUE_ARN] = queue_arn(call, name)
    if attrs.ALL in wanted or wanted & set(attrs.COUNTERS):
        stats, _ = await ops.queue_stats(call.svc, call.caller, name)
        values[attrs.VISIBLE] = str(max(0, stats.total - stats.claimed - stats.delayed))
        values[attrs.NOT_VISIBLE] = str(stats.claimed)
        values[attrs.DELAYED] = str(stats.delayed)
    if attrs.ALL not in wanted:
        values = {k: v for k, v in values.items() if k in wanted}
    return {"Attributes": values} if values else {}


async def set_queue_attributes(call: SqsCall, params: Params) -> Result:
    name = queue_from_params(call, params)
    raw = params.get("Attributes")
    if raw is None:
        raise MissingParameter("The request must contain the parameter Attributes.")
    requested = attrs.parse(call, _attribute_map(params, "Attributes"), creating=False)
    stored = await queue_metadata(call, name)
    if not requested:
        return {}
    redrive = requested.get(attrs.REDRIVE_POLICY)
    if redrive is not None:
        await _check_redrive_target(call, name, redrive)
    await _update(call, name, stored, attrs.applied(stored, requested, _now(call)))
    return {}


# Tags ------------------------------------------------------------------------------------


async def tag_queue(call: SqsCall, params: Params) -> Result:
    name = queue_from_params(call, params)
    added = _attribute_map(params, "Tags")
    if not added:
        raise MissingParameter("The request must contain the parameter Tags.")
    stored = await queue_metadata(call, name)
    current = attrs.tags(stored)
    merged = _checked_tags(added, current, name)
    await _update(call, name, stored, attrs.with_tags(stored, merged))
    return {}


async def untag_queue(call: SqsCall, params: Params) -> Result:
    name = queue_from_params(call, params)
    keys = optional_list(params, "TagKeys")
    if not keys:
        raise MissingParameter("The request must contain the parameter TagKeys.")
    for key in keys:
        if not isinstance(key, str) or not _fits(key, TAG_KEY_LENGTH):
            raise InvalidParameterValue(
                f"Tag keys must be between {TAG_KEY_LENGTH[0]} and {TAG_KEY_LENGTH[1]} "
                "characters in length."
            )
    stored = await queue_metadata(call, name)
    current = attrs.tags(stored)
    remaining = {k: v for k, v in current.items() if k not in set(keys)}
    if remaining != current:
        await _update(call, name, stored, attrs.with_tags(stored, remaining))
    return {}


async def list_queue_tags(call: SqsCall, params: Params) -> Result:
    name = queue_from_params(call, params)
    found = attrs.tags(await queue_metadata(call, name))
    return {"Tags": found} if found else {}


# Dead-letter sources ---------------------------------------------------------------------


async def list_dead_letter_source_queues(call: SqsCall, params: Params) -> Result:
    name = queue_from_params(call, params)
    limit = optional_int(params, "MaxResults", 1, LISTING_LIMIT)
    after = _token_marker(params)
    await _require(call, name)
    # A filtered listing examines at most [storage] scan_budget queues: past that the
    # page may be short (even empty) and still carry a NextToken to go on from.
    listing = await _page(
        call,
        after or "",
        (limit or LISTING_LIMIT) + 1,
        {reserved.DEAD_LETTER_QUEUE: name},
    )
    # Only queues that redrive (both keys set), as SQS lists RedrivePolicy's sources.
    redriving = {
        q.name for q in listing.queues if reserved.dead_letter_policy(q.metadata) is not None
    }
    candidates = [q.name for q in listing.queues]
    return _url_page(call, candidates, limit, listing.resume_after, keep=redriving, key="queueUrls")


# Helpers ---------------------------------------------------------------------------------


def _now(call: SqsCall) -> int:
    return int(call.svc.clock())


def _check_new_name(name: str) -> None:
    if name.endswith(FIFO_SUFFIX):
        raise UnsupportedOperation("FIFO queues are not supported by Tidings yet.")
    if not SQS_QUEUE_NAME.fullmatch(name):
        raise InvalidParameterValue(
            "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length"
        )
    if len(name) > TIDINGS_NAME_LIMIT:
        raise InvalidParameterValue(
            f"Value {name} for parameter QueueName is invalid. Reason: Tidings allows queue "
            f"names of at most {TIDINGS_NAME_LIMIT} characters (SQS allows 80)."
        )


def _attribute_map(params: Params, name: str) -> dict[str, Any]:
    value = optional_map(params, name)
    for key in value:
        if not isinstance(key, str):
            raise InvalidParameterValue(f"The keys of parameter {name} must be strings.")
    return value


def _attribute_names(params: Params) -> set[str]:
    names = optional_list(params, "AttributeNames")
    for item in names:
        if not isinstance(item, str) or item not in attrs.KNOWN:
            raise InvalidAttributeName(f"Unknown Attribute {shown(item)}.")
    return set(names)


def _fits(text: str, bounds: tuple[int, int]) -> bool:
    return bounds[0] <= len(text) <= bounds[1]


def _checked_tags(added: dict[str, Any], current: dict[str, str], queue: str) -> dict[str, str]:
    """``current`` with ``added`` over it, within SQS's tag limits."""
    for key, value in added.items():
        if not _fits(key, TAG_KEY_LENGTH):
            raise InvalidParameterValue(
                f"Tag keys must be between {TAG_KEY_LENGTH[0]} and {TAG_KEY_LENGTH[1]} "
                "characters in length."
            )
        if not isinstance(value, str) or not _fits(value, TAG_VALUE_LENGTH):
            raise InvalidParameterValue(
                f"Tag values must be strings of at most {TAG_VALUE_LENGTH[1]} characters."
            )
    merged = {**current, **added}
    if len(merged) > MAX_TAGS:
        raise InvalidParameterValue(
            f"Too many tags added for queue {queue}. A queue may have at most {MAX_TAGS}."
        )
    return merged


async def _check_redrive_target(call: SqsCall, source: str, policy: attrs.RedrivePolicy) -> None:
    """SQS's rules for a dead-letter queue: it exists, is not the source, and lets it in."""

    def refused(reason: str) -> InvalidParameterValue:
        text = attrs.as_text(call, attrs.REDRIVE_POLICY, policy)
        return InvalidParameterValue(
            f"Value {text} for parameter RedrivePolicy is invalid. Reason: {reason}"
        )

    if policy.target == source:
        raise refused("A queue cannot be its own dead-letter queue.")
    target = await metadata_or_none(call, policy.target)
    if target is None:
        raise refused("Dead letter target does not exist.")
    allow = attrs.redrive_allow_policy(call, target)
    if allow is not None and not allow.allows(source):
        raise refused(
            f"The dead-letter queue's RedriveAllowPolicy does not allow "
            f"{queue_arn(call, source)} as a source queue."
        )


@unavailable_as("Queue metadata could not be retrieved.")
async def metadata_or_none(call: SqsCall, name: str) -> dict[str, Any] | None:
    """The queue's stored metadata, None when there is no such queue (read straight from
    the store: ops.queue_get shows defaults for an absent queue)."""
    return await call.svc.storage.queues.get_metadata(call.caller.project, name)


async def queue_metadata(call: SqsCall, name: str) -> dict[str, Any]:
    """The queue's stored metadata; QueueDoesNotExist when there is no such queue (also
    what SQS's sends and receives check first: Zaqar's post would create the queue)."""
    found = await metadata_or_none(call, name)
    if found is None:
        raise QueueDoesNotExist()
    return found


async def _require(call: SqsCall, name: str) -> None:
    if not await ops.queue_exists(call.svc, call.caller, name):
        raise QueueDoesNotExist()


async def _update(
    call: SqsCall, name: str, stored: dict[str, Any], updated: dict[str, Any]
) -> None:
    """Write the changed top-level keys through Zaqar's metadata patch (its rules apply,
    and keys changed meanwhile by someone else are left as they are)."""
    patch: list[dict[str, Any]] = []
    for key, value in updated.items():
        if key not in stored or stored[key] != value:
            patch.append({"op": "add", "path": f"/metadata/{_pointer(key)}", "value": value})
    for key in stored.keys() - updated.keys():
        patch.append({"op": "remove", "path": f"/metadata/{_pointer(key)}"})
    if patch:
        await ops.queue_update(call.svc, call.caller, name, patch)


def _pointer(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


@unavailable_as("Queues could not be listed.")
async def _page(
    call: SqsCall, marker: str, limit: int, metadata_equals: dict[str, Any] | None = None
) -> QueueListing:
    # SQS pages up to 1000 queues, past Zaqar's [transport] max_queues_per_page.
    return await call.svc.storage.queues.page(
        call.caller.project,
        marker=marker or None,
        limit=limit,
        metadata_equals=metadata_equals,
    )


def _before_prefix(prefix: str) -> str:
    """A marker just before every name starting with ``prefix`` (listings start after
    their marker): the prefix's last character one lower, then one above any a name may
    hold (names are ASCII below DEL)."""
    if not prefix:
        return ""
    return prefix[:-1] + chr(ord(prefix[-1]) - 1) + "\x7f"


def _token(after: str) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode({"after": after})).decode()


def _token_marker(params: Params) -> str | None:
    token = optional_str(params, "NextToken")
    if not token:
        return None
    try:
        document = msgspec.json.decode(base64.urlsafe_b64decode(token.encode("ascii")))
    except (UnicodeEncodeError, binascii.Error, ValueError, msgspec.DecodeError, RecursionError):
        document = None  # RecursionError: msgspec's answer to deep nesting
    after = document.get("after") if isinstance(document, dict) else None
    if not isinstance(after, str) or not QUEUE_NAME.fullmatch(after):
        raise InvalidParameterValue("Invalid NextToken value.")
    return after


def _url_page(
    call: SqsCall,
    candidates: list[str],
    limit: int | None,
    resume_after: str | None,
    *,
    keep: set[str] | None = None,
    key: str = "QueueUrls",
) -> Result:
    """A page of queue URLs from ``candidates`` (fetched one past the page; only those in
    ``keep`` shown, when given), with a NextToken when more may follow: as in SQS only
    when MaxResults was given, unless the scan budget (``resume_after``) ran out first."""
    page_size = limit or LISTING_LIMIT
    page = candidates[:page_size]
    result: Result = {}
    shown = [n for n in page if keep is None or n in keep]
    if shown:
        result[key] = [queue_url(call, n) for n in shown]
    next_after = resume_after
    if len(candidates) > page_size:
        next_after = page[-1] if limit is not None else None
    if next_after is not None:
        result["NextToken"] = _token(next_after)
    return result
