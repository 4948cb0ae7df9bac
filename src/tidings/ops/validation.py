"""Input checks shared by the operations, with Zaqar's exact error texts."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from tidings.config import TransportSettings
from tidings.errors import BadRequest, InvalidBody, InvalidQueueIdentification
from tidings.namespace import split_namespace

QUEUE_NAME = re.compile(r"[a-zA-Z0-9_\-.]{1,64}")  # always fullmatch: "$" passes a final newline
MAX_PROJECT_ID_LENGTH = 256
MIN_MESSAGE_TTL = 60
MIN_CLAIM_TTL = 60
MIN_CLAIM_GRACE = 60

EMPTY_BODY = "Request body can not be empty"
UNPARSABLE_BODY = "Request body could not be parsed."
WRONG_DOCUMENT_TYPE = "Document type not supported."
INT64_LIMIT = 2**63
# Every digit as "0" and everything else as " ": a run of 19 digits becomes a substring
# that bytes' C search finds ~8x faster than a regular expression scans for it.
_DIGITS_AS_ZEROS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_DIGIT_RUN = b"0" * 19


def check_queue_name(project: str, name: str) -> None:
    """Queue (or topic) names and project ids, with the noun the client used."""
    client, collection = split_namespace(project)
    if len(client) > MAX_PROJECT_ID_LENGTH or not QUEUE_NAME.fullmatch(name):
        raise InvalidQueueIdentification("topic" if collection == "topics" else "queue")


def check_page_limit(limit: int, maximum: int, *, queues: bool = False) -> None:
    if not 1 <= limit <= maximum:
        if queues:
            raise BadRequest(f"Limit must be at least 1 and no greater than {maximum}.")
        raise BadRequest(f"Limit must be at least 1 and may not be greater than {maximum}.")


def decode_json(raw: bytes) -> Any:
    """Parse a request body, with Zaqar's texts for empty and malformed documents.

    The one JSON decoder for request bodies: strict UTF-8 (no surrogates, no overlong
    forms), bounded nesting, integers within 64 bits. Only a zero-length body is
    "empty"; whitespace alone or a bare ``null`` cannot be parsed, as in Zaqar.
    """
    if not raw:
        raise InvalidBody(EMPTY_BODY)
    try:
        # ValidationError (a DecodeError) covers numbers too long to convert.
        document = msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError) as exc:  # deep nesting is refused too
        raise InvalidBody(UNPARSABLE_BODY) from exc
    if document is None:
        raise InvalidBody(UNPARSABLE_BODY)
    _reject_huge_integers(document)
    return document


def is_utf8(raw: bytes) -> bool:
    """Strict UTF-8 (no encoded surrogates or overlong forms), as decode_json requires."""
    if raw.isascii():  # the usual body, checked in C without decoding
        return True
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def may_hold_huge_integer(raw: bytes) -> bool:
    """Cheap pre-check: 19 digits in a row are needed to reach 2**63."""
    return _LONG_DIGIT_RUN in raw.translate(_DIGITS_AS_ZEROS)


def _reject_huge_integers(value: Any) -> None:
    # Zaqar stores documents with 64-bit integers; larger ones are refused up front.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, int) and not -INT64_LIMIT <= item < INT64_LIMIT:
            raise InvalidBody("JSON contains integer that is too large.")


def require_object(document: Any) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise InvalidBody(WRONG_DOCUMENT_TYPE)
    return document


def integer_field(document: dict[str, Any], name: str) -> int | None:
    """An optional integer field; booleans are not integers here.

    Absent means "use the default"; an explicit null is a wrong type, as in Zaqar.
    """
    if name not in document:
        return None
    value = document[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidBody(f'The value of the "{name}" field must be a int.')
    return value


def check_message_ttl(ttl: int, limits: TransportSettings) -> None:
    if not MIN_MESSAGE_TTL <= ttl <= limits.max_message_ttl:
        raise BadRequest(
            f"The TTL for a message may not exceed {limits.max_message_ttl} seconds, "
            f"and must be at least {MIN_MESSAGE_TTL} seconds long."
        )


def check_message_delay(delay: int, limits: TransportSettings) -> None:
    if not 0 <= delay <= limits.max_message_delay:
        raise BadRequest(
            f"The Delay TTL for a message may not exceed {limits.max_message_delay} "
            "seconds,and must be at least 0 seconds long."
        )


def check_claim_ttl(ttl: int, limits: TransportSettings) -> None:
    if not MIN_CLAIM_TTL <= ttl <= limits.max_claim_ttl:
        raise BadRequest(
            f"The TTL for a claim may not exceed {limits.max_claim_ttl} seconds, "
            f"and must be at least {MIN_CLAIM_TTL} seconds long."
        )


def check_claim_grace(
    grace: int, limits: TransportSettings, *, minimum: int = MIN_CLAIM_GRACE
) -> None:
    if not minimum <= grace <= limits.max_claim_grace:
        raise BadRequest(
            f"The grace for a claim may not exceed {limits.max_claim_grace} seconds, "
            f"and must be at least {minimum} seconds long."
        )


def check_depth(value: Any, maximum: int, what: str) -> None:
    """Refuse documents nested deeper than ``maximum`` (iteratively: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= maximum:
                raise BadRequest(f"{what} may not be nested more than {maximum} levels deep.")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


def check_size(size: int | None, maximum: int, message: str, *, title: str | None = None) -> None:
    if size is not None and size > maximum:
        raise BadRequest(message, title=title)
