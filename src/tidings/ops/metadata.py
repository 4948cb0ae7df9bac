"""Reserved queue metadata: validation, the defaults shown to clients, and its effects."""

from __future__ import annotations

from typing import Any

from tidings import encryption
from tidings.config import TransportSettings
from tidings.errors import BadRequest
from tidings.model import DeadLetterPolicy
from tidings.notify import retry
from tidings.ops.validation import MIN_MESSAGE_TTL, QUEUE_NAME, check_depth

DEFAULT_TTL = "_default_message_ttl"
DEFAULT_DELAY = "_default_message_delay"
MAX_POST_SIZE = "_max_messages_post_size"
DEAD_LETTER_QUEUE = "_dead_letter_queue"
DEAD_LETTER_TTL = "_dead_letter_queue_messages_ttl"
MAX_CLAIM_COUNT = "_max_claim_count"
ENCRYPT = "_enable_encrypt_messages"
RETRY_POLICY = "_retry_policy"
# Ours (Zaqar has no upper bound): past this a message is, in practice, never dead-lettered,
# and larger values only risk overflow in stores that count in doubles.
MAX_CLAIM_COUNT_LIMIT = 1_000_000

# Reserved keys whose value may legitimately be absent.
RESERVED = (
    MAX_POST_SIZE,
    DEFAULT_TTL,
    DEFAULT_DELAY,
    DEAD_LETTER_QUEUE,
    DEAD_LETTER_TTL,
    MAX_CLAIM_COUNT,
    ENCRYPT,
)
# Topics have no claims, so no dead-lettering: only these are theirs (as in Zaqar).
TOPIC_RESERVED = (MAX_POST_SIZE, DEFAULT_TTL, DEFAULT_DELAY)


def reserved_keys(collection: str) -> tuple[str, ...]:
    """The reserved keys of a ``queues`` or ``topics`` resource."""
    return TOPIC_RESERVED if collection == "topics" else RESERVED


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require_int(metadata: dict[str, Any], key: str) -> int | None:
    value = metadata.get(key)
    # Zaqar only type-checks truthy values; 0 and null pass.
    if value and not _is_int(value):
        raise BadRequest(f"{key} must be integer.")
    return value if _is_int(value) else None


def validate(metadata: dict[str, Any], limits: TransportSettings) -> None:
    """Raise on reserved keys with a wrong type or out of range, or nesting too deep."""
    check_depth(metadata, limits.max_metadata_depth, "Queue metadata")
    ttl = _require_int(metadata, DEFAULT_TTL)
    if ttl is not None and not MIN_MESSAGE_TTL <= ttl <= limits.max_message_ttl:
        raise BadRequest(
            f"{DEFAULT_TTL} can not exceed {limits.max_message_ttl} seconds, "
            f"and must be at least {MIN_MESSAGE_TTL} seconds long."
        )
    size = _require_int(metadata, MAX_POST_SIZE)
    if size is not None and not 0 < size <= limits.max_messages_post_size:
        raise BadRequest(
            f"{MAX_POST_SIZE} can not exceed {limits.max_messages_post_size},  "
            "and must be at least greater than 0."
        )
    delay = _require_int(metadata, DEFAULT_DELAY)
    if delay is not None and not 0 <= delay <= limits.max_message_delay:
        raise BadRequest(
            f"The TTL can not exceed {limits.max_message_delay} seconds, "
            "and must be at least 0 seconds long."
        )
    count = _require_int(metadata, MAX_CLAIM_COUNT)
    if count is not None and count < 0:
        raise BadRequest(f"{MAX_CLAIM_COUNT} must be at least 0.")
    if count is not None and count > MAX_CLAIM_COUNT_LIMIT:
        raise BadRequest(f"{MAX_CLAIM_COUNT} may not exceed {MAX_CLAIM_COUNT_LIMIT}.")
    dlq_ttl = _require_int(metadata, DEAD_LETTER_TTL)
    if dlq_ttl is not None and not MIN_MESSAGE_TTL <= dlq_ttl <= limits.max_message_ttl:
        raise BadRequest(
            f"The TTL for a message may not exceed {limits.max_message_ttl} seconds, "
            f"and must be at least {MIN_MESSAGE_TTL} seconds long."
        )
    dlq = metadata.get(DEAD_LETTER_QUEUE)
    if dlq and not (isinstance(dlq, str) and QUEUE_NAME.fullmatch(dlq)):
        raise BadRequest(f"{DEAD_LETTER_QUEUE} must be the name of a queue.")
    encrypt = metadata.get(ENCRYPT)
    if encrypt and not isinstance(encrypt, bool):
        raise BadRequest(f"{ENCRYPT} must be boolean.")
    if encrypt:
        encryption.require_key(encryption.keyring(limits))
    policy = metadata.get(RETRY_POLICY)
    if policy:
        retry.validate(policy)


def with_defaults(
    metadata: dict[str, Any], limits: TransportSettings, collection: str = "queues"
) -> dict[str, Any]:
    """Stored metadata with reserved defaults filled in where falsy or absent.

    Each default shown is the value in force: what the metadata shows is what applies.
    """
    defaults: dict[str, Any] = {
        MAX_POST_SIZE: limits.max_messages_post_size,
        DEFAULT_TTL: limits.default_message_ttl,
        DEFAULT_DELAY: limits.default_message_delay,
        DEAD_LETTER_QUEUE: None,
        DEAD_LETTER_TTL: None,
        MAX_CLAIM_COUNT: None,
        ENCRYPT: False,
    }
    shown = dict(metadata)
    for key in reserved_keys(collection):
        if not shown.get(key):
            shown[key] = defaults[key]
    return shown


def message_ttl_default(metadata: dict[str, Any], limits: TransportSettings) -> int:
    value = metadata.get(DEFAULT_TTL)
    return value if value and _is_int(value) else limits.default_message_ttl


def delay_default(metadata: dict[str, Any], limits: TransportSettings) -> int:
    """The queue's default delay, else ``[transport] default_message_delay``.

    0 means delays are off for this queue: per-message delays are ignored and listings
    include every message, as in Zaqar.
    """
    value = metadata.get(DEFAULT_DELAY)
    return value if value and _is_int(value) else limits.default_message_delay


def encrypts(metadata: dict[str, Any]) -> bool:
    """Whether new bodies posted to this queue are sealed (``_enable_encrypt_messages``)."""
    return metadata.get(ENCRYPT) is True


def post_size_limit(metadata: dict[str, Any], limits: TransportSettings) -> int:
    value = metadata.get(MAX_POST_SIZE)
    if value and _is_int(value):
        return int(min(value, limits.max_messages_post_size))
    return limits.max_messages_post_size


def dead_letter_policy(metadata: dict[str, Any]) -> DeadLetterPolicy | None:
    """Active only with both ``_max_claim_count`` and ``_dead_letter_queue`` set."""
    count = metadata.get(MAX_CLAIM_COUNT)
    queue = metadata.get(DEAD_LETTER_QUEUE)
    if not (count and _is_int(count) and queue and isinstance(queue, str)):
        return None
    ttl = metadata.get(DEAD_LETTER_TTL)
    return DeadLetterPolicy(
        max_claim_count=count, queue=queue, message_ttl=ttl if ttl and _is_int(ttl) else None
    )
