"""Retry policies: the arithmetic schedule equals Zaqar's lists, every number is bounded."""

from __future__ import annotations

import itertools
import math
import time
from typing import Any

import pytest

from tidings.errors import BadRequest
from tidings.notify import retry
from tidings.notify.retry import RetryPolicy


def zaqar_backoff(function: str, low: int, high: int, step: int = 5) -> list[int]:
    """Zaqar's back-off lists, written out (the reference the arithmetic must match)."""
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


def zaqar_schedule(policy: RetryPolicy) -> list[float]:
    return [
        *[0.0] * policy.retries_with_no_delay,
        *[float(policy.minimum_delay)] * policy.minimum_delay_retries,
        *map(float, zaqar_backoff(policy.retry_backoff_function, policy.minimum_delay,
                                  policy.maximum_delay)),
        *[float(policy.maximum_delay)] * policy.maximum_delay_retries,
    ]


@pytest.mark.parametrize(
    ("function", "low", "high"),
    list(itertools.product(retry.BACKOFF_FUNCTIONS, (0, 1, 5, 7), (11, 30, 61, 600))),
)
def test_delays_match_the_listed_schedule(function: str, low: int, high: int) -> None:
    policy = RetryPolicy(retries_with_no_delay=2, minimum_delay_retries=1, minimum_delay=low,
                         maximum_delay=high, maximum_delay_retries=2,
                         retry_backoff_function=function)
    expected = zaqar_schedule(policy)
    assert [retry.delay(policy, n) for n in range(1, len(expected) + 1)] == expected
    assert retry.retries(policy) == len(expected)
    assert retry.delay(policy, len(expected) + 1) is None
    assert retry.delay(policy, 0) is None


def test_the_default_policy_schedule() -> None:
    policy = retry.DEFAULT_POLICY
    assert [retry.delay(policy, n) for n in range(1, 16)] == [
        0, 0, 0, 5, 5, 5, 5, 10, 15, 20, 25, 30, 30, 30, None]


def test_huge_counts_cost_nothing() -> None:
    # Past the ranges (a policy stored before they existed): clamped, never materialised.
    policy = retry.resolve({"retries_with_no_delay": 2**63, "maximum_delay": 2**63,
                            "maximum_delay_retries": 2**31})
    assert policy.retries_with_no_delay == retry.MAX_RETRIES
    assert policy.maximum_delay == retry.MAX_DELAY
    started = time.process_time()
    last = retry.retries(policy)
    assert retry.delay(policy, last) == retry.MAX_DELAY
    assert retry.delay(policy, last + 1) is None
    assert time.process_time() - started < 1.0  # generous: it is a few additions


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"retries_with_no_delay": 2147483648}, "retries_with_no_delay may not exceed 1000"),
        ({"minimum_delay_retries": 2**63}, "minimum_delay_retries may not exceed 1000"),
        ({"maximum_delay_retries": 1001}, "maximum_delay_retries may not exceed 1000"),
        ({"maximum_delay": 2**63 - 1}, "maximum_delay may not exceed 86400"),
        ({"minimum_delay": 86401, "maximum_delay": 90000}, "minimum_delay may not exceed"),
        ({"minimum_delay": -1}, "minimum_delay must be at least 0"),
        ({"minimum_delay": 1.5}, "minimum_delay must be a integer"),
    ],
)
def test_out_of_range_values_are_refused(policy: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest) as refused:
        retry.validate(policy)
    assert message in str(refused.value.description)


def test_the_largest_valid_values_are_accepted() -> None:
    retry.validate({"retries_with_no_delay": 1000, "minimum_delay_retries": 1000,
                    "maximum_delay_retries": 1000, "minimum_delay": 86000,
                    "maximum_delay": 86400, "retry_backoff_function": "geometric"})


def test_the_validated_policy_is_the_one_used() -> None:
    # As Zaqar validates: a zero delay means its default, in validation and in use alike.
    raw = {"minimum_delay": 0, "maximum_delay": 0, "retries_with_no_delay": 0}
    retry.validate(raw)
    used = retry.effective(None, raw)
    assert (used.minimum_delay, used.maximum_delay) == (5, 30)
    assert used.retries_with_no_delay == 0  # a zero count is zero
    with pytest.raises(BadRequest, match="invalid minimum_delay"):
        retry.validate({"minimum_delay": 25})  # against the default maximum 30
    assert retry.effective({"minimum_delay": 25}, None).maximum_delay == 30


def test_effective_policy_precedence() -> None:
    queue = {"minimum_delay": 1, "maximum_delay": 11}
    mine = {"minimum_delay": 2, "maximum_delay": 20}
    assert retry.effective(queue, mine).minimum_delay == 2
    assert retry.effective({**queue, "ignore_subscription_override": True}, mine).minimum_delay == 1
    assert retry.effective(None, None) == retry.DEFAULT_POLICY
