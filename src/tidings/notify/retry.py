"""Delivery retry policies with Zaqar's option names and back-off functions.

After the first attempt: ``retries_with_no_delay`` immediate retries, then
``minimum_delay_retries`` after ``minimum_delay`` seconds each, then the back-off
function's delays from ``minimum_delay`` towards ``maximum_delay``, then
``maximum_delay_retries`` after ``maximum_delay`` seconds each.

The delay before retry *n* is computed arithmetically (``delay``): nothing is
materialised, so a policy costs the same whatever its counts. Every number has a range
(``MAX_RETRIES``, ``MAX_DELAY``), and the policy that is validated is the one used
(``resolve``): as in Zaqar's validation, a falsy ``minimum_delay`` or ``maximum_delay``
means its default. The dispatcher adds ``[notification] min_retry_delay`` as a floor and
``max_delivery_attempts`` as a cap on top of any policy.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from tidings.errors import BadRequest

BACKOFF_STEP = 5
BACKOFF_FUNCTIONS = ("linear", "arithmetic", "exponential", "geometric")
COUNT_KEYS = ("retries_with_no_delay", "minimum_delay_retries", "maximum_delay_retries")
DELAY_KEYS = ("minimum_delay", "maximum_delay")
INT_KEYS = (
    "retries_with_no_delay",
    "minimum_delay_retries",
    "minimum_delay",
    "maximum_delay",
    "maximum_delay_retries",
)
MIN_DELAY_SPAN = 10
# Ours (Zaqar has no bounds): retries per phase, and seconds of any delay (one day).
MAX_RETRIES = 1000
MAX_DELAY = 86400


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
    """Raise with Zaqar's texts (and ours for the ranges) when a ``_retry_policy`` is bad."""
    if not isinstance(policy, dict):
        raise BadRequest("retry_policy must be a dict.")
    for key in INT_KEYS:
        value = policy.get(key)
        # As in Zaqar, only truthy values are type-checked.
        if value and not isinstance(value, int):
            raise BadRequest(f"Retry policy: {key} must be a integer.")
        if isinstance(value, int) and value < 0:
            raise BadRequest(f"Retry policy: {key} must be at least 0.")
        high = MAX_DELAY if key in DELAY_KEYS else MAX_RETRIES
        if isinstance(value, int) and value > high:
            raise BadRequest(f"Retry policy: {key} may not exceed {high}.")
    function = policy.get("retry_backoff_function")
    if function is not None:
        if not isinstance(function, str):
            raise BadRequest("retry_backoff_function must be a string.")
        if function not in BACKOFF_FUNCTIONS:
            raise BadRequest("invalid retry_backoff_function.")
    ignore = policy.get("ignore_subscription_override")
    if ignore is not None and not isinstance(ignore, bool):
        raise BadRequest("ignore_subscription_override must be a boolean.")
    used = resolve(policy)
    if used.maximum_delay < used.minimum_delay:
        raise BadRequest("minimum_delay must less than maximum_delay.")
    if used.maximum_delay - used.minimum_delay < MIN_DELAY_SPAN:
        raise BadRequest("invalid minimum_delay and maximum_delay.")


def _bounded(value: Any, default: int, high: int, *, falsy_is_default: bool) -> int:
    if not isinstance(value, int) or (falsy_is_default and not value):
        return default
    return min(max(int(value), 0), high)


def resolve(raw: dict[str, Any]) -> RetryPolicy:
    """The policy a stored ``_retry_policy`` stands for: defaults filled in, ranges enforced.

    Policies stored before the ranges existed are clamped into them rather than trusted.
    """
    counts = {
        key: _bounded(raw.get(key), getattr(DEFAULT_POLICY, key), MAX_RETRIES,
                      falsy_is_default=False)
        for key in COUNT_KEYS
    }  # fmt: skip
    delays = {
        key: _bounded(raw.get(key), getattr(DEFAULT_POLICY, key), MAX_DELAY,
                      falsy_is_default=True)
        for key in DELAY_KEYS
    }  # fmt: skip
    function = raw.get("retry_backoff_function")
    ignore = raw.get("ignore_subscription_override")
    return RetryPolicy(
        **counts,
        **delays,
        retry_backoff_function=function if function in BACKOFF_FUNCTIONS else "linear",
        ignore_subscription_override=ignore is True,
    )


def _policy(raw: Any) -> RetryPolicy | None:
    if not isinstance(raw, dict) or not raw:
        return None
    return resolve(raw)


def effective(queue_policy: Any, subscription_policy: Any) -> RetryPolicy:
    """The queue's policy wins when either says ``ignore_subscription_override``."""
    queue = _policy(queue_policy)
    subscription = _policy(subscription_policy)
    if (queue and queue.ignore_subscription_override) or (
        subscription and subscription.ignore_subscription_override
    ):
        return queue or DEFAULT_POLICY
    return subscription or queue or DEFAULT_POLICY


def _linear(function: str, low: int, high: int) -> bool:
    return function == "linear" or int((high - low) / BACKOFF_STEP) < 2 or low <= 0


def backoff_length(function: str, low: int, high: int) -> int:
    """How many delays the back-off phase has."""
    if _linear(function, low, high):
        return max(0, math.ceil((high - low) / BACKOFF_STEP))  # len(range(low, high, 5))
    return int((high - low) / BACKOFF_STEP)


def backoff_delay(function: str, low: int, high: int, index: int) -> int:
    """The back-off phase's delay number ``index`` (from 0), in seconds, as Zaqar's lists."""
    if _linear(function, low, high):
        return low + index * BACKOFF_STEP
    count = int((high - low) / BACKOFF_STEP)
    ratio = math.pow(high / low, 1.0 / (count - 1))
    if function == "geometric":
        return int(low * ratio**index)
    if function == "exponential":
        return int((low / ratio) * ratio ** (index + 1))
    spread = 2 * (high - low) / (count * (count - 1))
    return int(low + index * (index + 1) * spread / 2)


def retries(policy: RetryPolicy) -> int:
    """How many retries the policy allows after the first attempt."""
    return (
        policy.retries_with_no_delay
        + policy.minimum_delay_retries
        + backoff_length(policy.retry_backoff_function, policy.minimum_delay, policy.maximum_delay)
        + policy.maximum_delay_retries
    )


def delay(policy: RetryPolicy, retry: int) -> float | None:
    """Seconds to wait before retry number ``retry`` (from 1), or None past the last."""
    if retry < 1:
        return None
    left = retry
    if left <= policy.retries_with_no_delay:
        return 0.0
    left -= policy.retries_with_no_delay
    if left <= policy.minimum_delay_retries:
        return float(policy.minimum_delay)
    left -= policy.minimum_delay_retries
    function, low, high = policy.retry_backoff_function, policy.minimum_delay, policy.maximum_delay
    length = backoff_length(function, low, high)
    if left <= length:
        return float(min(backoff_delay(function, low, high, left - 1), MAX_DELAY))
    left -= length
    if left <= policy.maximum_delay_retries:
        return float(policy.maximum_delay)
    return None
