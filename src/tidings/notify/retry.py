"""Delivery retry policies with Zaqar's option names and back-off functions.

After the first attempt: ``retries_with_no_delay`` immediate retries, then
``minimum_delay_retries`` after ``minimum_delay`` seconds each, then the back-off
function's delays from ``minimum_delay`` towards ``maximum_delay``, then
``maximum_delay_retries`` after ``maximum_delay`` seconds each.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from tidings.errors import BadRequest

BACKOFF_STEP = 5
BACKOFF_FUNCTIONS = ("linear", "arithmetic", "exponential", "geometric")
INT_KEYS = (
    "retries_with_no_delay",
    "minimum_delay_retries",
    "minimum_delay",
    "maximum_delay",
    "maximum_delay_retries",
)
MIN_DELAY_SPAN = 10


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    retries_with_no_delay: int = 3
    minimum_delay_retries: int = 3
    minimum_delay: int = 5
    maximum_delay: int = 30
    maximum_delay_retries: int = 3
    retry_backoff_function: str = "linear"
    ignore_subscription_override: bool = False


DEFAULT_POLICY = RetryPolicy()


def validate(policy: Any) -> None:
    """Raise with Zaqar's texts when a ``_retry_policy`` value is malformed."""
    if not isinstance(policy, dict):
        raise BadRequest("retry_policy must be a dict.")
    for key in INT_KEYS:
        value = policy.get(key)
        # As in Zaqar, only truthy values are type-checked.
        if value and not isinstance(value, int):
            raise BadRequest(f"Retry policy: {key} must be a integer.")
        if isinstance(value, int) and value < 0:
            raise BadRequest(f"Retry policy: {key} must be at least 0.")
    function = policy.get("retry_backoff_function")
    if function is not None:
        if not isinstance(function, str):
            raise BadRequest("retry_backoff_function must be a string.")
        if function not in BACKOFF_FUNCTIONS:
            raise BadRequest("invalid retry_backoff_function.")
    ignore = policy.get("ignore_subscription_override")
    if ignore is not None and not isinstance(ignore, bool):
        raise BadRequest("ignore_subscription_override must be a boolean.")
    low = policy.get("minimum_delay") or DEFAULT_POLICY.minimum_delay
    high = policy.get("maximum_delay") or DEFAULT_POLICY.maximum_delay
    if high < low:
        raise BadRequest("minimum_delay must less than maximum_delay.")
    if high - low < MIN_DELAY_SPAN:
        raise BadRequest("invalid minimum_delay and maximum_delay.")


def _policy(raw: Any) -> RetryPolicy | None:
    if not isinstance(raw, dict) or not raw:
        return None
    known = {k: v for k, v in raw.items() if k in RetryPolicy.__struct_fields__ and v is not None}
    try:
        return msgspec.convert(known, RetryPolicy)
    except msgspec.ValidationError:
        return None  # validated on the way in; anything else falls back to the defaults


def effective(queue_policy: Any, subscription_policy: Any) -> RetryPolicy:
    """The queue's policy wins when either says ``ignore_subscription_override``."""
    queue = _policy(queue_policy)
    subscription = _policy(subscription_policy)
    if (queue and queue.ignore_subscription_override) or (
        subscription and subscription.ignore_subscription_override
    ):
        return queue or DEFAULT_POLICY
    return subscription or queue or DEFAULT_POLICY


def backoff(function: str, low: int, high: int, step: int = BACKOFF_STEP) -> list[int]:
    """The back-off phase's delays, in seconds."""
    count = int((high - low) / step)
    if function == "linear" or count < 2 or low <= 0:
        return list(range(low, high, step))
    ratio = math.pow(high / low, 1.0 / (count - 1))
    if function == "geometric":
        return [int(low * ratio ** (i - 1)) for i in range(1, count + 1)]
    if function == "exponential":
        return [int((low / ratio) * ratio**i) for i in range(1, count + 1)]
    spread = 2 * (high - low) / (count * (count - 1))
    return [int(low + (i - 1) * i * spread / 2) for i in range(1, count + 1)]


def schedule(policy: RetryPolicy) -> list[float]:
    """Seconds to wait before each retry; its length is the number of retries."""
    return [
        *[0.0] * policy.retries_with_no_delay,
        *[float(policy.minimum_delay)] * policy.minimum_delay_retries,
        *map(
            float,
            backoff(policy.retry_backoff_function, policy.minimum_delay, policy.maximum_delay),
        ),
        *[float(policy.maximum_delay)] * policy.maximum_delay_retries,
    ]
