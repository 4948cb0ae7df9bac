"""Each action's parameters as a typed request, decoded and checked in Zaqar's order."""

from __future__ import annotations

from typing import Any

import msgspec

from tidings.admission.params import Params, boolean, id_list, integer, seconds, text
from tidings.errors import BadRequest

# The queue listing's own parameters; any other one filters on a metadata key.
QUEUE_LIST_PARAMS = frozenset({"marker", "limit", "detailed", "with_count", "name"})


class QueueListing(msgspec.Struct, frozen=True, kw_only=True):
    detailed: bool
    marker: str | None
    limit: int | None
    with_count: bool
    name_contains: str | None
    metadata_equals: dict[str, Any]


class MessageListing(msgspec.Struct, frozen=True, kw_only=True):
    marker: str | None
    limit: int | None
    echo: bool
    include_claimed: bool
    include_delayed: bool
    # Long polling: seconds to wait for messages when there are none (None: answer now).
    wait: float | None = None


class MessageSelection(msgspec.Struct, frozen=True, kw_only=True):
    """Messages named by id (``ids``)."""

    ids: list[str]


class MessageDeletion(msgspec.Struct, frozen=True, kw_only=True):
    ids: list[str]
    claim_ids: list[str] | None


class MessagePop(msgspec.Struct, frozen=True, kw_only=True):
    count: int


class Page(msgspec.Struct, frozen=True, kw_only=True):
    marker: str | None
    limit: int | None


class AdminListing(msgspec.Struct, frozen=True, kw_only=True):
    """A page of pools or flavors."""

    marker: str | None
    limit: int | None
    detailed: bool


def _filter_value(raw: object) -> object:
    # Query strings carry text; a number-like value matches the number in metadata.
    if isinstance(raw, str):
        try:
            return int(raw)
        except ValueError:
            return raw
    return raw


def queue_listing(params: Params) -> QueueListing:
    detailed = boolean(params, "detailed")
    marker = text(params, "marker")
    limit = integer(params, "limit")
    return QueueListing(
        detailed=detailed,
        marker=marker,
        limit=limit,
        with_count=boolean(params, "with_count"),
        name_contains=text(params, "name"),
        # A repeated filter key is ambiguous and ignored.
        metadata_equals={
            k: _filter_value(v)
            for k, v in params.items()
            if k not in QUEUE_LIST_PARAMS and not isinstance(v, list)
        },
    )


def message_reading(params: Params) -> MessageSelection | MessageListing:
    """GET on a source's messages: the ones named by ``ids``, else a page of them."""
    ids = id_list(params, "ids")
    if ids is not None:
        return MessageSelection(ids=ids)
    return MessageListing(
        marker=text(params, "marker"),
        limit=integer(params, "limit"),
        echo=boolean(params, "echo"),
        include_claimed=boolean(params, "include_claimed"),
        include_delayed=boolean(params, "include_delayed"),
        wait=wait(params),
    )


def message_removal(params: Params) -> MessageDeletion | MessagePop:
    """DELETE on a source's messages: exactly one of ``ids`` and ``pop``."""
    ids = id_list(params, "ids")
    pop = integer(params, "pop")
    if ids is not None and pop is not None:
        raise BadRequest("pop and id params cannot be present together in the delete request.")
    if pop is not None:
        return MessagePop(count=pop)
    if ids is None:
        raise BadRequest(
            'The request should have either "ids" or "pop" parameter in the request, '
            "to be able to delete."
        )
    return MessageDeletion(ids=ids, claim_ids=id_list(params, "claim_ids"))


def claim_id(params: Params) -> str | None:
    """The claim a single message is deleted under."""
    return text(params, "claim_id")


def limit(params: Params) -> int | None:
    return integer(params, "limit")


def wait(params: Params) -> float | None:
    """Long polling's ``wait`` (claims and listings); its range is checked by the
    operation (``ops.waiting.check_wait``)."""
    return seconds(params, "wait")


def page(params: Params) -> Page:
    return Page(marker=text(params, "marker"), limit=integer(params, "limit"))


def admin_listing(params: Params) -> AdminListing:
    """Pool and flavor listings, checked in Zaqar's order: marker, limit, detailed."""
    return AdminListing(
        marker=text(params, "marker"),
        limit=integer(params, "limit"),
        detailed=boolean(params, "detailed"),
    )


def detailed(params: Params) -> bool:
    return boolean(params, "detailed")
