"""The PostgreSQL change feed's channel names and readiness payloads."""

from __future__ import annotations

import pytest

from tidings.namespace import TOPIC_NAMESPACE
from tidings.storage.postgres.feed import (
    NOTIFY_LIMIT,
    WAKE_ALL,
    channels,
    parse_ready,
    ready_payload,
)


@pytest.mark.parametrize(
    "schema", ["public", "t" * 63, 'we"ird sch\u00e9ma; DROP', "\U0001f600" * 63]
)
def test_channels_are_short_identifiers_of_their_own(schema: str) -> None:
    ready, relay = channels(schema)
    for name in (ready, relay):
        assert len(name.encode()) <= 63 and name.isascii() and name.replace("_", "").isalnum()
    assert ready != relay
    assert channels(schema) == (ready, relay)
    assert channels(schema + "x")[0] != ready


@pytest.mark.parametrize(
    ("project", "queue"),
    [
        ("p", "q"),
        ("", "q"),
        ("12:3", "4:5"),
        ("a:b:c", "queue_name-1"),
        ("proj\u00e9\U0001f600 \t\n*", "q"),
        ("p" + TOPIC_NAMESPACE, "topic"),
        ("x" * 256, "y" * 64),
    ],
    ids=["plain", "empty-project", "digits-and-colons", "colons", "unicode", "topic", "longest"],
)
def test_ready_payloads_round_trip(project: str, queue: str) -> None:
    assert parse_ready(ready_payload(project, queue)) == (project, queue)


def test_a_payload_too_long_for_notify_wakes_everyone() -> None:
    payload = ready_payload("\U0001f600" * (NOTIFY_LIMIT // 4), "q")
    assert payload == WAKE_ALL and parse_ready(payload) is None


@pytest.mark.parametrize("payload", ["", "*", "x:pq", "-1:pq", "\u0663:pq", "9:pq", ":"])
def test_payloads_naming_no_queue(payload: str) -> None:
    assert parse_ready(payload) is None
