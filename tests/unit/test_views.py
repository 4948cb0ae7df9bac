"""Wire shapes (views.py): what every transport renders, checked without a server."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import msgspec
import pytest

from tidings import views
from tidings.model import (
    DeliveryFailure,
    DeliveryKind,
    Message,
    MessageSummary,
    QueueStats,
    Subscription,
)

NOW = 1_700_000_000.5
CLAIM = "c0ffee00-0000-4000-8000-000000000000"


def message(body: bytes = b'{"event":"x"}', **changes: Any) -> Message:
    base = Message(
        id="m1", marker="7", body=body, ttl=300, created=NOW - 42.9, expires=NOW + 257,
        client_id="client", claim_count=2,
    )
    return msgspec.structs.replace(base, **changes)


def wire(view: dict[str, Any]) -> Any:
    """The view as a client receives it (bodies are embedded raw)."""
    return json.loads(msgspec.json.encode(view))


# -------------------------------------------------------------------------- age


@pytest.mark.parametrize(
    ("created", "now", "expected"),
    [
        (NOW, NOW, 0),
        (NOW - 0.999, NOW, 0),  # whole seconds, truncated
        (NOW - 1.0, NOW, 1),
        (NOW - 59.5, NOW, 59),
        (NOW + 5, NOW, 0),  # made by a node whose clock runs ahead: never negative
    ],
)
def test_age(created: float, now: float, expected: int) -> None:
    assert views.age(created, now) == expected


# --------------------------------------------------------------------- checksum


@pytest.mark.parametrize(
    "body",
    [
        b'{"event":"x"}',
        b'{"b":1,"a":[1,2.5,null,true]}',  # key order as posted, not sorted
        b'"caf\xc3\xa9"',  # non-ASCII: escaped as Python's json.dumps does
        b"[]",
        b"12345678901234567890",
        b'{"nested":{"x":{"y":"\\u2028"}}}',
    ],
)
def test_checksum_is_zaqars(body: bytes) -> None:
    rendered = json.dumps(json.loads(body))  # ", " and ": ", ensure_ascii
    expected = "MD5:" + hashlib.md5(rendered.encode()).hexdigest()
    assert views.checksum(body) == expected


def test_checksum_of_the_spec_example() -> None:
    assert views.checksum(b'{"event": "x"}') == "MD5:a8b8e614767ada136e158f48b517e2e6"


def test_checksum_ignores_the_posted_spacing() -> None:
    assert views.checksum(b'{ "event" :\n"x" }') == views.checksum(b'{"event":"x"}')


# ---------------------------------------------------------------------- messages


def test_message_view() -> None:
    assert wire(views.message(message(), "q", NOW)) == {
        "id": "m1", "href": "/v2/queues/q/messages/m1", "ttl": 300, "age": 42,
        "body": {"event": "x"},
    }


def test_message_body_is_embedded_verbatim() -> None:
    body = b'{"b":1,"a":2}'
    rendered = msgspec.json.encode(views.message(message(body), "q", NOW))
    assert body in rendered  # not re-ordered or re-encoded


def test_claimed_message_href_names_its_live_claim() -> None:
    live = message(claim_id=CLAIM, claim_expires=NOW + 1)
    assert views.message(live, "q", NOW)["href"] == f"/v2/queues/q/messages/m1?claim_id={CLAIM}"
    lapsed = message(claim_id=CLAIM, claim_expires=NOW)
    assert views.message(lapsed, "q", NOW)["href"] == "/v2/queues/q/messages/m1"


def test_topic_message_href() -> None:
    view = views.message(message(), "t", NOW, collection="topics")
    assert view["href"] == "/v2/topics/t/messages/m1"


def test_checksum_only_when_asked() -> None:
    assert "checksum" not in views.message(message(), "q", NOW)
    view = views.message(message(), "q", NOW, with_checksum=True)
    assert view["checksum"] == views.checksum(message().body)


def test_popped_message_has_no_href_and_no_claim() -> None:
    popped = message(claim_id=CLAIM, claim_expires=NOW + 60)
    assert wire(views.popped_message(popped, NOW)) == {
        "id": "m1", "age": 42, "ttl": 300, "body": {"event": "x"}, "claim_id": None,
        "claim_count": 2,
    }


# -------------------------------------------------------------------------- stats


def test_iso8601() -> None:
    assert views.iso8601(0) == "1970-01-01T00:00:00Z"
    assert views.iso8601(1_700_000_000.999) == "2023-11-14T22:13:20Z"  # truncated


def test_stats_of_an_empty_queue() -> None:
    assert views.stats(QueueStats(total=0, claimed=0), "q", NOW) == {
        "messages": {"claimed": 0, "free": 0, "total": 0}
    }


def test_stats_with_oldest_and_newest() -> None:
    stats = QueueStats(
        total=5, claimed=2,
        oldest=MessageSummary(id="a", created=NOW - 100),
        newest=MessageSummary(id="b", created=NOW - 1),
    )
    assert views.stats(stats, "t", NOW, collection="topics") == {
        "messages": {
            "claimed": 2, "free": 3, "total": 5,
            "oldest": {"age": 100, "created": views.iso8601(NOW - 100),
                       "href": "/v2/topics/t/messages/a"},
            "newest": {"age": 1, "created": views.iso8601(NOW - 1),
                       "href": "/v2/topics/t/messages/b"},
        }
    }


def test_stats_without_summaries_show_counts_only() -> None:
    # counted from indexes while the records are not found (yet): no oldest/newest
    stats = QueueStats(total=3, claimed=0, oldest=MessageSummary(id="a", created=NOW))
    assert set(views.stats(stats, "q", NOW)["messages"]) == {"claimed", "free", "total"}


# ------------------------------------------------------------ subscriptions, failures


def test_subscription_view_ages_from_its_last_ttl_change() -> None:
    sub = Subscription(
        id="s", source="q", subscriber="http://a", ttl=600, options={"k": [1]},
        confirmed=True, updated=NOW - 30, expires=NOW + 570,
    )
    assert views.subscription(sub, NOW) == {
        "id": "s", "source": "q", "subscriber": "http://a", "ttl": 600, "age": 30,
        "options": {"k": [1]}, "confirmed": True,
    }


def test_delivery_failure_view() -> None:
    failure = DeliveryFailure(
        subscription_id="s", kind=DeliveryKind.CONFIRMATION, message_id=None, attempts=4,
        error="HTTP 500", failed=0.5,
    )
    assert wire(views.delivery_failure(failure)) == {
        "kind": "confirmation", "message_id": None, "attempts": 4, "error": "HTTP 500",
        "failed": "1970-01-01T00:00:00Z",
    }


def test_hrefs() -> None:
    assert views.queue_href("q") == "/v2/queues/q"
    assert views.queue_href("t", "topics") == "/v2/topics/t"
    assert views.claim_href("q", CLAIM) == f"/v2/queues/q/claims/{CLAIM}"
    assert views.message_href("q", "m", CLAIM) == f"/v2/queues/q/messages/m?claim_id={CLAIM}"
    assert views.message_href("q", "m", "") == "/v2/queues/q/messages/m"


def test_popped_message_checksum_only_when_asked() -> None:
    assert "checksum" not in views.popped_message(message(), NOW)
    assert views.popped_message(message(), NOW, with_checksum=True)["checksum"] == \
        views.checksum(message().body)
