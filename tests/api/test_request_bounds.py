"""Client-supplied numbers and sizes that Zaqar leaves unbounded, bounded here (issue 7).

Each case was a way for one tenant to break a queue or load the server: a claim renewed
with a grace past 64 bits, metadata nested hundreds deep or grown by repeated patches,
posts of thousands of messages, an oversized project id on the health self-test.
"""

from __future__ import annotations

import httpx
import pytest

JSON_PATCH = {"Content-Type": "application/openstack-messaging-v2.0-json-patch"}
INVALID_REQUEST = "Invalid API request"
INVALID_BODY = "Invalid request body"


def _claim(api: httpx.Client, queue: str) -> str:
    posted = api.post(f"/queues/{queue}/messages", json={"messages": [{"body": 1}]})
    assert posted.status_code == 201
    answer = api.post(f"/queues/{queue}/claims", json={"ttl": 60, "grace": 60})
    assert answer.status_code == 201
    return str(answer.headers["location"].rsplit("/", 1)[1])


@pytest.mark.parametrize("grace", [9223372036854775807, 2**40, 43201, -1, -(2**62)])
def test_renew_refuses_grace_out_of_range_and_keeps_the_queue_working(
    api: httpx.Client, grace: int
) -> None:
    claim_id = _claim(api, "renewq")
    answer = api.patch(f"/queues/renewq/claims/{claim_id}", json={"ttl": 120, "grace": grace})
    assert answer.status_code == 400
    assert answer.json() == {
        "title": INVALID_REQUEST,
        "description": "The grace for a claim may not exceed 43200 seconds, "
        "and must be at least 0 seconds long.",
    }
    # The claim and its message are untouched, and the queue answers normally.
    claim = api.get(f"/queues/renewq/claims/{claim_id}")
    assert claim.status_code == 200
    assert len(claim.json()["messages"]) == 1
    assert api.get("/queues/renewq/stats").json()["messages"]["claimed"] == 1
    assert api.delete("/queues/renewq/messages", params={"pop": 5}).json() == {"messages": []}


def test_renew_accepts_grace_within_range(api: httpx.Client) -> None:
    claim_id = _claim(api, "renewok")
    for grace in (0, 43200):
        answer = api.patch(f"/queues/renewok/claims/{claim_id}", json={"ttl": 60, "grace": grace})
        assert answer.status_code == 204


def _nested(depth: int) -> object:
    value: object = "leaf"
    for _ in range(depth):
        value = {"k": value}
    return value


def test_metadata_nesting_is_bounded_on_put(api: httpx.Client) -> None:
    answer = api.put("/queues/deep", json={"x": _nested(500)})
    assert answer.status_code == 400
    assert "nested" in answer.json()["description"]
    assert api.put("/queues/deep", json={"x": _nested(20)}).status_code == 201


def test_metadata_nesting_is_bounded_on_patch(api: httpx.Client) -> None:
    assert api.put("/queues/deepp", json={"a": 1}).status_code == 201
    patch = [{"op": "add", "path": "/metadata/x", "value": _nested(500)}]
    answer = api.patch("/queues/deepp", json=patch, headers=JSON_PATCH)
    assert answer.status_code == 400
    assert answer.json()["title"] == INVALID_BODY
    # later patches still work
    patch = [{"op": "add", "path": "/metadata/y", "value": 2}]
    assert api.patch("/queues/deepp", json=patch, headers=JSON_PATCH).status_code == 200


def test_repeated_patches_cannot_grow_metadata_past_its_cap(api: httpx.Client) -> None:
    assert api.put("/queues/grow", json={}).status_code == 201
    chunk = "x" * 20_000
    refused = None
    for index in range(10):  # 10 x 20 kB would be 200 kB, past the 64 KiB cap
        patch = [{"op": "add", "path": f"/metadata/k{index}", "value": chunk}]
        answer = api.patch("/queues/grow", json=patch, headers=JSON_PATCH)
        if answer.status_code != 200:
            refused = answer
            break
    assert refused is not None, "metadata grew past max_queue_metadata"
    assert refused.status_code == 400
    assert refused.json() == {
        "title": INVALID_BODY,
        "description": "Queue metadata is too large. Max size: 65536",
    }
    stored = api.get("/queues/grow")
    assert len(stored.content) <= 65536 + 1024  # the cap, plus reserved defaults shown


def test_messages_per_post_are_bounded(api: httpx.Client) -> None:
    too_many = {"messages": [{"body": i} for i in range(101)]}
    answer = api.post("/queues/many/messages", json=too_many)
    assert answer.status_code == 400
    assert "max_messages_per_post" in answer.json()["description"]
    assert api.get("/queues/many/stats").json()["messages"]["total"] == 0
    allowed = api.post("/queues/many/messages", json={"messages": too_many["messages"][:100]})
    assert allowed.status_code == 201
    assert len(allowed.json()["resources"]) == 100
    assert len(allowed.headers["location"]) < 8192  # a header every client can take


def test_max_claim_count_is_bounded(api: httpx.Client) -> None:
    answer = api.put("/queues/dlq-src", json={"_max_claim_count": 2**62, "_dead_letter_queue": "d"})
    assert answer.status_code == 400
    assert api.put("/queues/dlq-src", json={"_max_claim_count": 5}).status_code == 201


def test_health_checks_the_project_id_length(api: httpx.Client) -> None:
    answer = api.get("/health", headers={"X-Roles": "admin", "X-Project-ID": "p" * 300})
    assert answer.status_code == 400
    assert answer.json()["title"] == "Invalid queue identification"
    assert api.get("/health", headers={"X-Roles": "admin"}).status_code == 200
