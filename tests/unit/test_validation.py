"""Input checks (ops/validation.py) with Zaqar's texts, checked without a server."""

from __future__ import annotations

from typing import Any

import pytest

from tidings.config import TransportSettings
from tidings.errors import BadRequest, InvalidBody, InvalidQueueIdentification
from tidings.namespace import TOPIC_NAMESPACE
from tidings.ops import validation as v

LIMITS = TransportSettings()
SMALL = TransportSettings(max_message_ttl=600, max_message_delay=30, max_claim_ttl=120,
                          max_claim_grace=90)


def refused(error: type[BadRequest], call: Any, *args: Any, **kwargs: Any) -> BadRequest:
    with pytest.raises(error) as caught:
        call(*args, **kwargs)
    assert isinstance(caught.value, error)
    return caught.value


# ------------------------------------------------------------------ names and ids


@pytest.mark.parametrize("name", ["a", "a" * 64, "A-z_0.9", ".", "..", "-", "_"])
def test_good_queue_names(name: str) -> None:
    v.check_queue_name("p", name)


@pytest.mark.parametrize(
    "name", ["", "a" * 65, "a b", "a/b", "a:b", "é", "a\x00", "\nabc", "a\tb", "%41"]
)
def test_bad_queue_names(name: str) -> None:
    error = refused(InvalidQueueIdentification, v.check_queue_name, "p", name)
    assert error.title == "Invalid queue identification"
    assert error.description == (
        "The format of the submitted queue name or project id is not valid."
    )


def test_a_trailing_newline_is_not_part_of_a_good_name() -> None:
    refused(InvalidQueueIdentification, v.check_queue_name, "p", "abc\n")


def test_project_id_length_counts_the_client_project_only() -> None:
    v.check_queue_name("p" * 256, "q")
    v.check_queue_name("p" * 256 + TOPIC_NAMESPACE, "q")  # a topic of the same project
    refused(InvalidQueueIdentification, v.check_queue_name, "p" * 257, "q")


def test_topics_are_named_as_topics() -> None:
    error = refused(InvalidQueueIdentification, v.check_queue_name, "p" + TOPIC_NAMESPACE, "")
    assert error.title == "Invalid topic identification"
    assert error.description == (
        "The format of the submitted topic name or project id is not valid."
    )


@pytest.mark.parametrize(("limit", "ok"), [(0, False), (1, True), (20, True), (21, False),
                                           (-1, False)])
def test_page_limits(limit: int, ok: bool) -> None:
    if ok:
        v.check_page_limit(limit, 20)
        v.check_page_limit(limit, 20, queues=True)
        return
    # Zaqar words the two limits differently
    assert refused(BadRequest, v.check_page_limit, limit, 20).description == (
        "Limit must be at least 1 and may not be greater than 20."
    )
    assert refused(BadRequest, v.check_page_limit, limit, 20, queues=True).description == (
        "Limit must be at least 1 and no greater than 20."
    )


# ----------------------------------------------------------------------- bodies


@pytest.mark.parametrize(
    ("raw", "document"),
    [
        (b"{}", {}),
        (b' {"a": [1, "x", null]} \n', {"a": [1, "x", None]}),
        (b"[]", []),
        (b'"caf\xc3\xa9"', "café"),
        (b"9223372036854775807", 2**63 - 1),
        (b"-9223372036854775808", -(2**63)),
        (b"0.1e-400", 0.0),
    ],
)
def test_decode_json_accepts(raw: bytes, document: Any) -> None:
    assert v.decode_json(raw) == document


def test_decode_json_empty() -> None:
    assert refused(InvalidBody, v.decode_json, b"").description == v.EMPTY_BODY


@pytest.mark.parametrize(
    "raw",
    [
        b" ",  # whitespace only is unparsable, not empty (as Zaqar)
        b"\n\t ",
        b"null",
        b" null ",
        b"{",
        b'{"a": 1} trailing',
        b'{"a": 1}{"b": 2}',
        b"NaN",
        b"[Infinity]",
        b"1e400",  # past a double
        b'{"a": "\xff"}',  # invalid UTF-8
        b'"\xed\xa0\x80"',  # an encoded surrogate
        b'"\xc0\xaf"',  # an overlong form
        b'"\\ud800"',  # an escaped lone surrogate
        b"\xef\xbb\xbf{}",  # a byte order mark
        b'{"a": 1, "a\x00": 2',  # truncated with NUL
        b"[" * 100_000 + b"]" * 100_000,  # deep nesting: refused, no RecursionError
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        b"'single'",
    ],
)
def test_decode_json_unparsable(raw: bytes) -> None:
    assert refused(InvalidBody, v.decode_json, raw).description == v.UNPARSABLE_BODY


@pytest.mark.parametrize(
    "raw",
    [
        b"9223372036854775808",
        b"-9223372036854775809",
        b'{"a": [1, {"b": 18446744073709551616}]}',
        b"1" * 400,
        b'{"messages": [{"body": ' + b"9" * 400 + b"}]}",
    ],
)
def test_integers_past_64_bits(raw: bytes) -> None:
    error = refused(InvalidBody, v.decode_json, raw)
    assert error.description == "JSON contains integer that is too large."
    assert error.title == "Invalid request body"
    assert v.may_hold_huge_integer(raw)  # the pre-check never misses one


@pytest.mark.parametrize(
    ("raw", "may"),
    [
        (b"922337203685477580", False),  # 18 digits: below 2**63 whatever they are
        (b"1000000000000000000", True),  # 19: may be (it is not)
        (b'{"a": 1.2345678901234567890}', True),  # over-approximates: a cheap pre-check
        (b"123456789 123456789", False),
        (b"", False),
    ],
)
def test_may_hold_huge_integer(raw: bytes, may: bool) -> None:
    assert v.may_hold_huge_integer(raw) is may


@pytest.mark.parametrize(
    ("raw", "ok"),
    [
        (b"", True),
        (b"plain", True),
        ("é€😀".encode(), True),
        (b"\xff", False),
        (b"\xed\xa0\x80", False),  # surrogate
        (b"\xc0\x80", False),  # overlong NUL
        (b"\xe2\x82", False),  # truncated
    ],
)
def test_is_utf8(raw: bytes, ok: bool) -> None:
    assert v.is_utf8(raw) is ok


@pytest.mark.parametrize("document", [[], "x", 1, 1.5, True, None, [{}]])
def test_require_object_refuses_other_types(document: Any) -> None:
    error = refused(InvalidBody, v.require_object, document)
    assert error.description == "Document type not supported."


def test_require_object_passes_objects_through() -> None:
    document = {"a": 1}
    assert v.require_object(document) is document


@pytest.mark.parametrize(("document", "value"), [({}, None),
                                                 ({"ttl": 0}, 0), ({"ttl": -5}, -5),
                                                 ({"ttl": 2**63 - 1}, 2**63 - 1)])
def test_integer_field(document: dict[str, Any], value: int | None) -> None:
    assert v.integer_field(document, "ttl") == value


@pytest.mark.parametrize("value", [None, True, False, 60.0, "60", [60], {"n": 60}])
def test_integer_field_refuses_non_integers(value: Any) -> None:
    error = refused(InvalidBody, v.integer_field, {"grace": value}, "grace")
    assert error.description == 'The value of the "grace" field must be a int.'


# ----------------------------------------------------------------------- ranges


def range_cases(low: int, high: int) -> list[tuple[int, bool]]:
    return [(low - 1, False), (low, True), (high, True), (high + 1, False),
            (-(2**63), False), (2**63 - 1, False)]


@pytest.mark.parametrize(("ttl", "ok"), range_cases(60, 600))
def test_message_ttl(ttl: int, ok: bool) -> None:
    if ok:
        v.check_message_ttl(ttl, SMALL)
    else:
        assert refused(BadRequest, v.check_message_ttl, ttl, SMALL).description == (
            "The TTL for a message may not exceed 600 seconds, and must be at least 60 "
            "seconds long."
        )


@pytest.mark.parametrize(("delay", "ok"), range_cases(0, 30))
def test_message_delay(delay: int, ok: bool) -> None:
    if ok:
        v.check_message_delay(delay, SMALL)
    else:
        # Zaqar's text, missing space and all
        assert refused(BadRequest, v.check_message_delay, delay, SMALL).description == (
            "The Delay TTL for a message may not exceed 30 seconds,and must be at least 0 "
            "seconds long."
        )


@pytest.mark.parametrize(("ttl", "ok"), range_cases(60, 120))
def test_claim_ttl(ttl: int, ok: bool) -> None:
    if ok:
        v.check_claim_ttl(ttl, SMALL)
    else:
        assert refused(BadRequest, v.check_claim_ttl, ttl, SMALL).description == (
            "The TTL for a claim may not exceed 120 seconds, and must be at least 60 "
            "seconds long."
        )


@pytest.mark.parametrize(("grace", "ok"), range_cases(60, 90))
def test_claim_grace(grace: int, ok: bool) -> None:
    if ok:
        v.check_claim_grace(grace, SMALL)
    else:
        assert refused(BadRequest, v.check_claim_grace, grace, SMALL).description == (
            "The grace for a claim may not exceed 90 seconds, and must be at least 60 "
            "seconds long."
        )


def test_claim_grace_with_a_lower_minimum() -> None:
    v.check_claim_grace(0, SMALL, minimum=0)
    error = refused(BadRequest, v.check_claim_grace, -1, SMALL, minimum=0)
    assert error.description is not None and "at least 0 seconds" in error.description


def test_default_limits_are_zaqars() -> None:
    v.check_message_ttl(1209600, LIMITS)
    refused(BadRequest, v.check_message_ttl, 1209601, LIMITS)
    v.check_message_delay(900, LIMITS)
    refused(BadRequest, v.check_message_delay, 901, LIMITS)
    v.check_claim_ttl(43200, LIMITS)
    v.check_claim_grace(43200, LIMITS)


# ---------------------------------------------------------------- depth and size


def nested(levels: int, leaf: Any = 1) -> Any:
    """``levels`` containers inside each other (lists and objects in turn)."""
    value = leaf
    for n in range(levels):
        value = [value] if n % 2 else {"k": value}
    return value


@pytest.mark.parametrize("levels", [0, 1, 5])
def test_depth_within_the_bound(levels: int) -> None:
    v.check_depth(nested(levels), 5, "Metadata")


@pytest.mark.parametrize("levels", [6, 100_000])  # far past any recursion limit too
def test_depth_past_the_bound(levels: int) -> None:
    error = refused(BadRequest, v.check_depth, nested(levels), 5, "Metadata")
    assert error.description == "Metadata may not be nested more than 5 levels deep."


def test_depth_counts_the_deepest_branch() -> None:
    wide = {"a": 1, "b": [1, 2, 3], "c": {"d": nested(3)}}  # 1 + 1 + 3 containers deep
    v.check_depth(wide, 5, "Metadata")
    refused(BadRequest, v.check_depth, wide, 4, "Metadata")


@pytest.mark.parametrize(("size", "ok"), [(None, True), (0, True), (100, True), (101, False)])
def test_check_size(size: int | None, ok: bool) -> None:
    if ok:
        v.check_size(size, 100, "too large")
        return
    error = refused(BadRequest, v.check_size, size, 100, "too large", title="Invalid request body")
    assert (error.title, error.description) == ("Invalid request body", "too large")
