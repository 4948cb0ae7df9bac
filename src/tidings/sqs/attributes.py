"""Queue attributes: SQS's names over Tidings' queue metadata (owned by helper H3).

Where Zaqar has a reserved key, the attribute is that key (MessageRetentionPeriod is
``_default_message_ttl``, DelaySeconds ``_default_message_delay``, MaximumMessageSize
``_max_messages_post_size``, RedrivePolicy ``_dead_letter_queue`` + ``_max_claim_count``);
the rest live under one key of their own, ``_sqs``.
"""

from __future__ import annotations

from typing import Any

SQS_KEY = "_sqs"
DEFAULT_VISIBILITY_TIMEOUT = 30
DEFAULT_RECEIVE_WAIT = 0


def _own(metadata: dict[str, Any]) -> dict[str, Any]:
    own = metadata.get(SQS_KEY)
    return own if isinstance(own, dict) else {}


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def visibility_timeout(metadata: dict[str, Any]) -> int:
    """The queue's VisibilityTimeout: what a receive without one uses."""
    return _int(_own(metadata).get("VisibilityTimeout"), DEFAULT_VISIBILITY_TIMEOUT)


def receive_wait_time(metadata: dict[str, Any]) -> int:
    """The queue's ReceiveMessageWaitTimeSeconds: what a receive without one waits."""
    return _int(_own(metadata).get("ReceiveMessageWaitTimeSeconds"), DEFAULT_RECEIVE_WAIT)
