"""The decisions every driver applies alike (storage/rules.py), without a store."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import pytest

from tidings.errors import ClaimedMessage, TidingsError, UnableToDelete
from tidings.model import Message, Subscription
from tidings.storage import rules

NOW = 1_000_000.0
CLAIM = "50772138-9add-486c-8c6e-775a20ff3643"  # fixed: xdist workers must collect the same ids
OTHER = "942a7a39-d3a4-4b3d-9ce7-ee8435342b4c"


def message(claim_id: str | None = None, claim_expires: float = 0.0) -> Message:
    return Message(
        id="m1", marker="1", body=b"1", ttl=300, created=NOW - 10, expires=NOW + 290,
        client_id="c", claim_id=claim_id, claim_expires=claim_expires,
    )


FREE = message()
CLAIMED = message(CLAIM, NOW + 60)
LAPSED = message(CLAIM, NOW)  # its claim expires right now: no longer claimed


# ------------------------------------------------------------------ deleting one


@pytest.mark.parametrize(
    ("target", "claim_id", "claim_is_live", "error", "description"),
    [
        # the table of api-v2-core §4.8
        (FREE, None, False, None, None),
        (LAPSED, None, False, None, None),
        (FREE, CLAIM, True, UnableToDelete, rules.NOT_CLAIMED),
        (LAPSED, CLAIM, False, UnableToDelete, rules.NOT_CLAIMED),
        (CLAIMED, None, False, ClaimedMessage, None),
        (CLAIMED, CLAIM, True, None, None),
        (CLAIMED, OTHER, False, UnableToDelete, rules.CLAIM_NOT_LIVE),  # unknown or expired
        (CLAIMED, OTHER, True, ClaimedMessage, None),  # another live claim
        # a malformed claim id is refused first, whatever the message's state
        (FREE, "not-a-uuid", False, UnableToDelete, rules.CLAIM_NOT_LIVE),
        (CLAIMED, "not-a-uuid", False, UnableToDelete, rules.CLAIM_NOT_LIVE),
    ],
)
def test_check_delete(
    target: Message,
    claim_id: str | None,
    claim_is_live: bool,
    error: type[TidingsError] | None,
    description: str | None,
) -> None:
    if error is None:
        rules.check_delete(target, claim_id, claim_is_live, NOW)
        return
    with pytest.raises(error) as refused:
        rules.check_delete(target, claim_id, claim_is_live, NOW)
    assert type(refused.value) is error
    if description is not None:
        assert refused.value.description == description
    assert refused.value.status == (403 if error is ClaimedMessage else 400)


@pytest.mark.parametrize(
    "claim_id",
    [CLAIM, CLAIM.upper(), CLAIM.replace("-", ""), "{" + CLAIM + "}", f"urn:uuid:{CLAIM}"],
)
def test_well_formed_claim_ids(claim_id: str) -> None:
    assert rules.well_formed_claim_id(claim_id)


@pytest.mark.parametrize("claim_id", ["", "abc", CLAIM[:-1], CLAIM + "0", "x" * 1000])
def test_malformed_claim_ids(claim_id: str) -> None:
    assert not rules.well_formed_claim_id(claim_id)


def test_message_not_held() -> None:
    assert rules.message_not_held(CLAIMED, {CLAIM}, NOW) is None
    assert rules.message_not_held(CLAIMED, {OTHER, CLAIM}, NOW) is None
    assert "held by a claim not listed" in (rules.message_not_held(CLAIMED, {OTHER}, NOW) or "")
    assert "not claimed" in (rules.message_not_held(FREE, {CLAIM}, NOW) or "")
    # a lapsed claim no longer holds its messages, even when named
    assert "not claimed" in (rules.message_not_held(LAPSED, {CLAIM}, NOW) or "")


# ------------------------------------------------------------------------ claims


@pytest.mark.parametrize(
    ("ttl", "grace", "stored"),
    [
        (60, 60, (60, 60)),
        (0, 0, (0, 0)),
        (-5, -(2**63), (0, 0)),  # a negative grace would expire messages early
        (2**63 - 1, 2**63, (rules.MAX_CLAIM_SECONDS, rules.MAX_CLAIM_SECONDS)),
        (rules.MAX_CLAIM_SECONDS, rules.MAX_CLAIM_SECONDS + 1,
         (rules.MAX_CLAIM_SECONDS, rules.MAX_CLAIM_SECONDS)),
    ],
)
def test_bounded_claim(ttl: int, grace: int, stored: tuple[int, int]) -> None:
    assert rules.bounded_claim(ttl, grace) == stored


def test_bounded_claim_fits_every_store() -> None:
    ttl, grace = rules.bounded_claim(2**63, 2**63)
    assert ttl < 2**31 and grace < 2**31  # PostgreSQL's integer columns
    now = 4_102_444_800.0  # the year 2100
    assert (now + ttl + grace) - now == ttl + grace  # still exact as a float


@pytest.mark.parametrize(
    ("expires", "claim_expires", "lifetime"),
    [
        (NOW + 10, NOW + 60, (NOW + 60 + 30, 60 + 30)),  # would expire first: outlives claim
        (NOW + 500, NOW + 60, (NOW + 500, 300)),  # outlives the claim anyway: unchanged
        (NOW + 60, NOW + 60, (NOW + 60, 300)),  # expires with the claim: unchanged
    ],
)
def test_claimed_lifetime(
    expires: float, claim_expires: float, lifetime: tuple[float, int]
) -> None:
    assert rules.claimed_lifetime(expires, 300, claim_expires, 60, 30) == lifetime


# ------------------------------------------------------------------ subscriptions


def subscription(**changes: Any) -> Subscription:
    base = Subscription(
        id="s1", source="q", subscriber="http://a", ttl=600, options={"a": 1},
        confirmed=True, updated=NOW - 100, expires=NOW + 500,
    )
    return msgspec.structs.replace(base, **changes)


def test_new_subscription() -> None:
    made = rules.new_subscription("q", "http://a", 600, {"k": 1}, NOW)
    again = rules.new_subscription("q", "http://a", 600, {"k": 1}, NOW)
    assert uuid.UUID(made.id).version == 4 and made.id != again.id
    assert (made.confirmed, made.updated, made.expires) == (False, NOW, NOW + 600)


def test_changing_nothing_changes_nothing() -> None:
    current = subscription()
    assert rules.changed_subscription(current, NOW) == current


def test_options_are_replaced_and_other_fields_kept() -> None:
    changed = rules.changed_subscription(subscription(), NOW, options={"b": 2})
    assert changed.options == {"b": 2}
    assert changed == subscription(options={"b": 2})  # ttl clock, confirmation untouched


def test_empty_options_replace_too() -> None:
    assert rules.changed_subscription(subscription(), NOW, options={}).options == {}


def test_a_new_ttl_restarts_the_clock() -> None:
    changed = rules.changed_subscription(subscription(), NOW, ttl=900)
    assert (changed.ttl, changed.updated, changed.expires) == (900, NOW, NOW + 900)
    # the same ttl again restarts it as well (the caller asked for a new lifetime)
    same = rules.changed_subscription(subscription(), NOW, ttl=600)
    assert (same.updated, same.expires) == (NOW, NOW + 600)


def test_a_new_subscriber_keeps_the_confirmation_and_the_clock() -> None:
    changed = rules.changed_subscription(subscription(), NOW, subscriber="http://b")
    assert changed == subscription(subscriber="http://b")


# ---------------------------------------------------------------- queue filters


@pytest.mark.parametrize(
    ("metadata", "wanted", "matches"),
    [
        ({"a": 1}, None, True),
        ({"a": 1}, {}, True),
        ({}, {"a": 1}, False),
        ({"a": 1, "b": "x"}, {"a": 1}, True),
        ({"a": 1, "b": "x"}, {"a": 1, "b": "x"}, True),
        ({"a": 1, "b": "y"}, {"a": 1, "b": "x"}, False),
        ({"a": "1"}, {"a": 1}, False),  # a string is not the number
        ({"a": None}, {"a": None}, True),  # present with null
        ({"b": None}, {"a": None}, False),  # absent is not null
        ({"a": {"b": 1}}, {"b": 1}, False),  # top-level keys only
    ],
)
def test_metadata_matches(metadata: dict[str, Any], wanted: dict[str, Any] | None,
                          matches: bool) -> None:
    assert rules.metadata_matches(metadata, wanted) is matches


@pytest.mark.parametrize(
    "metadata",
    [
        {"a": 1},
        {"x": [1, 2], "a": 1},
        {'quo"te': 1, "a": 1},
        {"é": "ü", "a": 1},
        {"back\\slash": 1, "a": 1},
        {"tab\t": 1, "a": 1},
        {"\u2028": 1, "a": 1},
    ],
)
def test_needles_never_drop_a_match(metadata: dict[str, Any]) -> None:
    """Every queue the filter matches contains every needle in its stored document."""
    stored = msgspec.json.encode(metadata).decode()
    wanted = dict(metadata)
    assert rules.metadata_matches(metadata, wanted)
    needles = rules.metadata_needles(wanted)
    assert len(needles) == len(wanted)
    assert all(needle in stored for needle in needles)


def test_needles_of_no_filter() -> None:
    assert rules.metadata_needles(None) == []
    assert rules.metadata_needles({}) == []


def test_a_needle_is_a_key_not_a_value() -> None:
    (needle,) = rules.metadata_needles({"a": 1})
    assert needle == '"a":'
    assert needle not in msgspec.json.encode({"b": "a"}).decode()


# ------------------------------------------------------------------- scan budgets


@pytest.mark.parametrize(
    ("budget", "limit", "window"), [(1000, 10, 1000), (5, 20, 20), (20, 20, 20), (0, 1, 1)]
)
def test_scan_window_never_below_the_page(budget: int, limit: int, window: int) -> None:
    assert rules.scan_window(budget, limit) == window


# ---------------------------------------------------------------- delivery shares


def test_take_shares_without_per_project_limit() -> None:
    shares = rules.TakeShares(10, None, None)
    assert shares.saturated() == []
    assert shares.quota("a", 0) == 10
    assert shares.quota("a", 7) == 3


def test_take_shares_per_project() -> None:
    shares = rules.TakeShares(10, 4, {"busy": 4, "half": 2, "over": 6})
    assert sorted(shares.saturated()) == ["busy", "over"]
    assert shares.quota("fresh", 0) == 4
    assert shares.quota("half", 0) == 2
    assert shares.quota("busy", 0) <= 0
    assert shares.quota("over", 0) <= 0
    assert shares.quota("fresh", 8) == 2  # never past what is left of the take


def test_take_shares_do_not_change_what_they_were_given() -> None:
    in_flight = {"a": 1}
    shares = rules.TakeShares(5, 2, in_flight)
    shares.busy["a"] = 2
    assert in_flight == {"a": 1}
