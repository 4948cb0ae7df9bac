"""Retry policies: the arithmetic schedule equals Zaqar's lists, every number is bounded."""

from __future__ import annotations

import itertools
import math
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


def test_huge_stored_counts_are_clamped() -> None:
    # Past the ranges (a policy stored before they existed): clamped, not trusted.
    policy = retry.resolve({"retries_with_no_delay": 2**63, "maximum_delay": 2**63,
                            "maximum_delay_retries": 2**31})
    assert policy.retries_with_no_delay == retry.MAX_RETRIES
    assert policy.maximum_delay == retry.MAX_DELAY
    assert policy.maximum_delay_retries == retry.MAX_RETRIES
    last = retry.retries(policy)
    assert retry.delay(policy, retry.MAX_RETRIES) == 0.0  # the last immediate retry
    assert retry.delay(policy, last) == retry.MAX_DELAY
    assert retry.delay(policy, last + 1) is None


def test_negative_stored_values_are_clamped_to_zero() -> None:
    policy = retry.resolve({"retries_with_no_delay": -3, "minimum_delay_retries": -1,
                            "minimum_delay": -5, "maximum_delay": 20})
    assert (policy.retries_with_no_delay, policy.minimum_delay_retries) == (0, 0)
    assert policy.minimum_delay == 0
    assert retry.delay(policy, 1) == 0.0  # the back-off from 0 (linear: 0, 5, 10, 15)
    assert [retry.delay(policy, n) for n in range(1, 5)] == [0.0, 5.0, 10.0, 15.0]


def test_the_shortest_schedule_zaqar_allows() -> None:
    """The policy the notification tests use: retries after 0, 1 and 6 s, then none."""
    raw = {"retries_with_no_delay": 1, "minimum_delay_retries": 0, "minimum_delay": 1,
           "maximum_delay": 11, "maximum_delay_retries": 0, "retry_backoff_function": "linear"}
    retry.validate(raw)
    policy = retry.resolve(raw)
    assert [retry.delay(policy, n) for n in range(1, 5)] == [0.0, 1.0, 6.0, None]
    assert retry.retries(policy) == 3
    # without the immediate retry (a queue's policy in those tests): after 1 s and 6 s
    later = retry.resolve({**raw, "retries_with_no_delay": 0})
    assert [retry.delay(later, n) for n in range(1, 4)] == [1.0, 6.0, None]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"retry_backoff_function": "cubic"}, "linear"),  # stored before validation
        ({"retry_backoff_function": 7}, "linear"),
        ({"retry_backoff_function": "geometric"}, "geometric"),
    ],
)
def test_resolve_falls_back_to_linear(raw: dict[str, Any], expected: str) -> None:
    assert retry.resolve(raw).retry_backoff_function == expected


def test_non_linear_back_off_without_room_is_linear() -> None:
    # Fewer than two steps of 5 between the delays (or a zero minimum): Zaqar's lists
    # fall back to range(low, high, 5) whatever the function.
    for function in retry.BACKOFF_FUNCTIONS:
        assert retry.backoff_length(function, 5, 14) == 2
        assert [retry.backoff_delay(function, 5, 14, i) for i in range(2)] == [5, 10]
        assert [retry.backoff_delay(function, 0, 30, i) for i in range(3)] == [0, 5, 10]


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
    assert retry.effective(queue, None).minimum_delay == 1
    assert retry.effective({**queue, "ignore_subscription_override": True}, mine).minimum_delay == 1
    # the subscription's own flag also defers to the queue, or to the defaults without one
    assert retry.effective(queue, {**mine, "ignore_subscription_override": True}) \
        .minimum_delay == 1
    assert retry.effective(None, {**mine, "ignore_subscription_override": True}) \
        == retry.DEFAULT_POLICY
    assert retry.effective(None, None) == retry.DEFAULT_POLICY


@pytest.mark.parametrize("empty", [None, {}, [], "x", 5])
def test_empty_or_foreign_policies_mean_none(empty: Any) -> None:
    assert retry.effective(empty, empty) == retry.DEFAULT_POLICY
    assert retry.effective(empty, {"minimum_delay": 2, "maximum_delay": 20}).minimum_delay == 2


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ([], "retry_policy must be a dict."),
        ("linear", "retry_policy must be a dict."),
        ({"retry_backoff_function": 1}, "retry_backoff_function must be a string."),
        ({"retry_backoff_function": "cubic"}, "invalid retry_backoff_function."),
        ({"ignore_subscription_override": "y"}, "ignore_subscription_override must be a boolean."),
        ({"ignore_subscription_override": 1}, "ignore_subscription_override must be a boolean."),
        ({"minimum_delay": 40, "maximum_delay": 35}, "minimum_delay must less than maximum_delay."),
        ({"minimum_delay": 10, "maximum_delay": 19}, "invalid minimum_delay and maximum_delay."),
        ({"retries_with_no_delay": "3"}, "Retry policy: retries_with_no_delay must be a integer."),
        ({"maximum_delay_retries": [1]}, "Retry policy: maximum_delay_retries must be a integer."),
    ],
)
def test_bad_policies_have_zaqars_texts(policy: Any, message: str) -> None:
    with pytest.raises(BadRequest) as refused:
        retry.validate(policy)
    assert refused.value.description == message


def test_falsy_values_are_not_type_checked_and_mean_the_default() -> None:
    # As in Zaqar: "", 0, None and False pass the type check; they stand for the default
    # (delays) or for zero (counts), in validation and in use alike.
    raw = {"retries_with_no_delay": "", "minimum_delay": None, "maximum_delay": False,
           "maximum_delay_retries": 0}
    retry.validate(raw)
    used = retry.resolve(raw)
    assert used.retries_with_no_delay == retry.DEFAULT_POLICY.retries_with_no_delay
    assert (used.minimum_delay, used.maximum_delay) == (5, 30)
    assert used.maximum_delay_retries == 0


def test_the_span_is_checked_on_the_policy_used() -> None:
    retry.validate({"minimum_delay": 10, "maximum_delay": 20})  # the smallest span
    with pytest.raises(BadRequest, match="invalid minimum_delay"):
        retry.validate({"minimum_delay": 0, "maximum_delay": 10})  # 0 means 5: span 5
