"""Behaviour of the v2 API over real HTTP, per /work/shared/spec/api-v2-core.md.

Every test runs in a project of its own (the ``api`` fixture), so fixed queue names are safe
under pytest-xdist. Nothing here waits for a TTL to expire (the minimum TTL is 60 s).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.server import RESERVED_DEFAULTS, TidingsServer, age_bound, wait_until

JSON_PATCH = "application/openstack-messaging-v2.0-json-patch"
REQUEST_ID = re.compile(
    r"^req-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
)
ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
CLIENT_ID_REQUIRED = {
    "title": "Missing header value",
    "description": 'The "Client-Id" header is required.',
}


# --------------------------------------------------------------------------- helpers


def project_of(client: httpx.Client) -> str:
    return str(client.headers["X-Project-ID"])


@pytest.fixture
def peer(server: TidingsServer, api: httpx.Client) -> Iterator[httpx.Client]:
    """Another client (different Client-ID) in the same project as ``api``."""
    with server.client(project=project_of(api)) as client:
        yield client


def post(client: httpx.Client, queue: str, *messages: dict[str, Any]) -> list[str]:
    resp = client.post(f"/queues/{queue}/messages", json={"messages": list(messages)})
    assert resp.status_code == 201, resp.text
    return [href.rsplit("/", 1)[1] for href in resp.json()["resources"]]


def put_queue(client: httpx.Client, queue: str, metadata: dict[str, Any] | None = None) -> None:
    resp = client.put(f"/queues/{queue}", json=metadata or {})
    assert resp.status_code == 201, resp.text  # a new queue: every test has its own project


def claim(
    client: httpx.Client,
    queue: str,
    body: dict[str, Any] | None = None,
    limit: int | None = None,
) -> tuple[str, list[dict[str, Any]]]:
    params = {"limit": limit} if limit is not None else {}
    resp = client.post(f"/queues/{queue}/claims", params=params, json=body or {})
    assert resp.status_code == 201, resp.text
    return resp.headers["location"].rsplit("/", 1)[1], resp.json()["messages"]


def listed_ids(client: httpx.Client, queue: str, **params: Any) -> list[str]:
    resp = client.get(f"/queues/{queue}/messages", params=params)
    assert resp.status_code == 200, resp.text
    return [m["id"] for m in resp.json()["messages"]]


def next_link(resp: httpx.Response) -> str:
    links = resp.json()["links"]
    assert len(links) == 1 and links[0]["rel"] == "next", links
    href = links[0]["href"]
    assert isinstance(href, str)
    return href


def split_href(href: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(href)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    return parts.path, query


def follow(client: httpx.Client, href: str) -> httpx.Response:
    assert href.startswith("/v2/")
    return client.get(href[len("/v2") :])


def stats(client: httpx.Client, queue: str) -> dict[str, Any]:
    resp = client.get(f"/queues/{queue}/stats")
    assert resp.status_code == 200, resp.text
    messages = resp.json()["messages"]
    assert isinstance(messages, dict)
    return messages


def patch_queue(client: httpx.Client, queue: str, ops: Any) -> httpx.Response:
    return client.patch(
        f"/queues/{queue}", json=ops, headers={"Content-Type": JSON_PATCH}
    )


# --------------------------------------------------------------------------- queues


def test_put_queue_201_then_204_with_relative_location(api: httpx.Client) -> None:
    created = api.put("/queues/fizbit", json={"_default_message_ttl": 300, "description": "t"})
    assert created.status_code == 201
    assert created.headers["location"] == "/v2/queues/fizbit"
    assert created.content == b""
    assert created.headers["content-type"].startswith("application/json")

    again = api.put("/queues/fizbit", json={"x": 1})
    assert again.status_code == 204
    assert again.headers["location"] == "/v2/queues/fizbit"
    assert again.content == b""


def test_put_existing_queue_does_not_update_metadata(api: httpx.Client) -> None:
    put_queue(api, "keep", {"_default_message_ttl": 300, "description": "test queue"})
    assert api.put("/queues/keep", json={"x": 1, "description": "other"}).status_code == 204
    got = api.get("/queues/keep").json()
    assert got == {**RESERVED_DEFAULTS, "_default_message_ttl": 300, "description": "test queue"}


def test_put_queue_without_body_creates_empty_metadata(api: httpx.Client) -> None:
    resp = api.put("/queues/nobody")
    assert resp.status_code == 201
    assert api.get("/queues/nobody").json() == RESERVED_DEFAULTS


def test_put_queue_name_with_dot_dash_underscore(api: httpx.Client) -> None:
    assert api.put("/queues/q_1.a-B").status_code == 201
    assert api.put(f"/queues/{'a' * 64}").status_code == 201


def test_get_queue_fills_reserved_defaults(api: httpx.Client) -> None:
    put_queue(api, "fizbit", {"_default_message_ttl": 300, "description": "test queue"})
    resp = api.get("/queues/fizbit")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.json() == {
        **RESERVED_DEFAULTS, "_default_message_ttl": 300, "description": "test queue"
    }


def test_get_missing_queue_returns_defaults(api: httpx.Client) -> None:
    resp = api.get("/queues/nosuch")
    assert resp.status_code == 200
    assert resp.json() == RESERVED_DEFAULTS


def test_list_queues_empty_project(api: httpx.Client) -> None:
    resp = api.get("/queues")
    assert resp.status_code == 200
    assert resp.json() == {"queues": [], "links": []}


def test_list_queues_sorted_paged_with_next_links(api: httpx.Client) -> None:
    for name in ("delta", "alpha", "charlie", "bravo", "echo"):
        put_queue(api, name)
    first = api.get("/queues", params={"limit": 2})
    assert first.status_code == 200
    assert first.json()["queues"] == [
        {"name": "alpha", "href": "/v2/queues/alpha"},
        {"name": "bravo", "href": "/v2/queues/bravo"},
    ]
    path, query = split_href(next_link(first))
    assert path == "/v2/queues"
    assert query == {"limit": "2", "marker": "bravo"}

    second = follow(api, next_link(first))
    assert [q["name"] for q in second.json()["queues"]] == ["charlie", "delta"]
    third = follow(api, next_link(second))
    assert [q["name"] for q in third.json()["queues"]] == ["echo"]
    # A next link is returned even when nothing follows; the next page is empty.
    last = follow(api, next_link(third))
    assert last.json() == {"queues": [], "links": []}


def test_list_queues_marker_is_exclusive(api: httpx.Client) -> None:
    for name in ("a1", "a2", "a3"):
        put_queue(api, name)
    resp = api.get("/queues", params={"marker": "a1"})
    assert [q["name"] for q in resp.json()["queues"]] == ["a2", "a3"]
    resp = api.get("/queues", params={"marker": "a15"})
    assert [q["name"] for q in resp.json()["queues"]] == ["a2", "a3"]


def test_list_queues_default_limit_is_10_and_max_20(api: httpx.Client) -> None:
    for i in range(21):
        put_queue(api, f"q{i:02d}")
    assert len(api.get("/queues").json()["queues"]) == 10
    assert len(api.get("/queues", params={"limit": 20}).json()["queues"]) == 20


def test_list_queues_detailed_includes_metadata_with_defaults(api: httpx.Client) -> None:
    put_queue(api, "d1", {"color": "red", "_default_message_ttl": 120})
    resp = api.get("/queues", params={"detailed": "true", "limit": 5})
    (item,) = resp.json()["queues"]
    assert item == {
        "name": "d1",
        "href": "/v2/queues/d1",
        "metadata": {**RESERVED_DEFAULTS, "color": "red", "_default_message_ttl": 120},
    }
    _, query = split_href(next_link(resp))
    assert query == {"limit": "5", "marker": "d1", "detailed": "true"}

    plain = api.get("/queues").json()["queues"]
    assert plain == [{"name": "d1", "href": "/v2/queues/d1"}]


def test_list_queues_with_count_is_integer_total(api: httpx.Client) -> None:
    assert "count" not in api.get("/queues", params={"with_count": "true"}).json()
    for name in ("c1", "c2", "c3"):
        put_queue(api, name)
    body = api.get("/queues", params={"with_count": "true", "limit": 1}).json()
    assert body["count"] == 3
    assert type(body["count"]) is int
    assert len(body["queues"]) == 1
    _, query = split_href(body["links"][0]["href"])
    assert query["with_count"] == "true"
    assert "count" not in api.get("/queues").json()


def test_list_queues_name_filter_is_substring(api: httpx.Client) -> None:
    for name in ("orders", "orders-dlq", "payments", "xorderx"):
        put_queue(api, name)
    resp = api.get("/queues", params={"name": "order"})
    assert [q["name"] for q in resp.json()["queues"]] == ["orders", "orders-dlq", "xorderx"]
    _, query = split_href(next_link(resp))
    assert query["name"] == "order"
    assert api.get("/queues", params={"name": "zzz"}).json() == {"queues": [], "links": []}


def test_list_queues_metadata_equality_filter(api: httpx.Client) -> None:
    put_queue(api, "m1", {"tier": 1})
    put_queue(api, "m2", {"tier": 2})
    put_queue(api, "m3", {"tier": "gold"})
    assert [q["name"] for q in api.get("/queues", params={"tier": "1"}).json()["queues"]] == [
        "m1"
    ]
    gold = api.get("/queues", params={"tier": "gold"}).json()["queues"]
    assert [q["name"] for q in gold] == ["m3"]


def test_patch_queue_add_replace_remove(api: httpx.Client) -> None:
    put_queue(api, "pq", {"key1": "v1", "gone": True})
    resp = patch_queue(api, "pq", [
        {"op": "add", "path": "/metadata/key2", "value": "v2"},
        {"op": "replace", "path": "/metadata/key1", "value": 5},
        {"op": "replace", "path": "/metadata/_default_message_ttl", "value": 120},
        {"op": "remove", "path": "/metadata/gone"},
    ])
    assert resp.status_code == 200, resp.text
    expected = {**RESERVED_DEFAULTS, "key1": 5, "key2": "v2", "_default_message_ttl": 120}
    assert resp.json() == expected
    assert api.get("/queues/pq").json() == expected


def test_patch_queue_add_overwrites_and_pointer_escapes(api: httpx.Client) -> None:
    put_queue(api, "pq", {"k": 1})
    resp = patch_queue(api, "pq", [
        {"op": "add", "path": "/metadata/k", "value": {"nested": [1, 2]}},
        {"op": "add", "path": "/metadata/a~1b~0c", "value": "esc"},
    ])
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["k"] == {"nested": [1, 2]}
    assert body["a/b~c"] == "esc"


def test_patch_queue_empty_array_is_noop(api: httpx.Client) -> None:
    put_queue(api, "pq", {"k": 1})
    resp = patch_queue(api, "pq", [])
    assert resp.status_code == 200
    assert resp.json() == {**RESERVED_DEFAULTS, "k": 1}


def test_patch_queue_reserved_metadata_takes_effect(api: httpx.Client) -> None:
    put_queue(api, "pq")
    assert patch_queue(api, "pq", [
        {"op": "add", "path": "/metadata/_default_message_ttl", "value": 90},
    ]).status_code == 200
    (mid,) = post(api, "pq", {"body": 1})
    assert api.get(f"/queues/pq/messages/{mid}").json()["ttl"] == 90


def test_patch_queue_replace_missing_key_409(api: httpx.Client) -> None:
    put_queue(api, "pq")
    resp = patch_queue(api, "pq", [{"op": "replace", "path": "/metadata/nokey", "value": 1}])
    assert resp.status_code == 409
    assert resp.json() == {
        "title": "Resource conflict",
        "description": "Can't replace non-existent object nokey.",
    }


def test_patch_queue_remove_missing_key_409(api: httpx.Client) -> None:
    put_queue(api, "pq")
    resp = patch_queue(api, "pq", [{"op": "remove", "path": "/metadata/nokey"}])
    assert resp.status_code == 409
    assert resp.json() == {
        "title": "Resource conflict",
        "description": "Can't remove non-existent object nokey.",
    }


def test_patch_queue_remove_absent_reserved_key_is_noop(api: httpx.Client) -> None:
    put_queue(api, "pq", {"k": 1})
    resp = patch_queue(api, "pq", [{"op": "remove", "path": "/metadata/_max_claim_count"}])
    assert resp.status_code == 200
    assert resp.json() == {**RESERVED_DEFAULTS, "k": 1}


def test_patch_queue_conflict_applies_nothing(api: httpx.Client) -> None:
    put_queue(api, "pq", {"k": 1})
    resp = patch_queue(api, "pq", [
        {"op": "add", "path": "/metadata/k", "value": 2},
        {"op": "replace", "path": "/metadata/nokey", "value": 1},
    ])
    assert resp.status_code == 409
    assert api.get("/queues/pq").json()["k"] == 1


@pytest.mark.parametrize("content_type", ["application/json", "application/json-patch+json"])
def test_patch_queue_wrong_media_type_415(api: httpx.Client, content_type: str) -> None:
    put_queue(api, "pq")
    resp = api.patch(
        "/queues/pq",
        json=[{"op": "add", "path": "/metadata/k", "value": 1}],
        headers={"Content-Type": content_type},
    )
    assert resp.status_code == 415
    assert resp.json() == {
        "title": "415 Unsupported Media Type",
        "description": "Accepted media type for PATCH: "
        "{'Accept-Patch': 'application/openstack-messaging-v2.0-json-patch'}.",
    }


def test_patch_missing_queue_404(api: httpx.Client) -> None:
    resp = patch_queue(api, "nosuch", [{"op": "add", "path": "/metadata/k", "value": 1}])
    assert resp.status_code == 404
    assert resp.json() == {
        "title": "Not found",
        "description": f"Queue nosuch does not exist for project {project_of(api)}",
    }


def test_delete_queue_removes_messages_and_claims(api: httpx.Client) -> None:
    put_queue(api, "dq", {"k": 1})
    post(api, "dq", {"body": 1}, {"body": 2})
    cid, _ = claim(api, "dq", limit=1)
    resp = api.delete("/queues/dq")
    assert resp.status_code == 204
    assert resp.content == b""
    assert api.get("/queues").json()["queues"] == []
    assert api.get(f"/queues/dq/claims/{cid}").status_code == 404
    assert stats(api, "dq") == {"claimed": 0, "free": 0, "total": 0}
    # Re-created queue is empty and has fresh metadata.
    assert api.put("/queues/dq").status_code == 201
    assert api.get("/queues/dq").json() == RESERVED_DEFAULTS
    assert listed_ids(api, "dq", echo="true", include_claimed="true") == []


def test_delete_missing_queue_204(api: httpx.Client) -> None:
    assert api.delete("/queues/nosuch").status_code == 204


def test_stats_empty_and_missing_queue(api: httpx.Client) -> None:
    assert stats(api, "nosuch") == {"claimed": 0, "free": 0, "total": 0}
    put_queue(api, "empty")
    assert stats(api, "empty") == {"claimed": 0, "free": 0, "total": 0}


def test_stats_counts_and_oldest_newest_shape(api: httpx.Client) -> None:
    posted = time.monotonic()
    ids = post(api, "sq", {"body": 1}, {"body": 2}, {"body": 3})
    claim(api, "sq", limit=2)
    got = stats(api, "sq")
    assert (got["claimed"], got["free"], got["total"]) == (2, 1, 3)
    for key, mid in (("oldest", ids[0]), ("newest", ids[2])):
        entry = got[key]
        assert set(entry) == {"age", "created", "href"}, entry
        assert entry["href"] == f"/v2/queues/sq/messages/{mid}"
        assert ISO_UTC.match(entry["created"])
        assert isinstance(entry["age"], int) and 0 <= entry["age"] <= age_bound(posted)


def test_purge_deletes_all_messages_keeps_queue(api: httpx.Client) -> None:
    put_queue(api, "pg", {"k": 1})
    post(api, "pg", {"body": 1}, {"body": 2}, {"body": 3})
    claim(api, "pg", limit=1)
    resp = api.post("/queues/pg/purge")
    assert resp.status_code == 204
    assert resp.content == b""
    assert stats(api, "pg") == {"claimed": 0, "free": 0, "total": 0}
    assert api.get("/queues/pg").json()["k"] == 1
    assert [q["name"] for q in api.get("/queues").json()["queues"]] == ["pg"]


@pytest.mark.parametrize(
    "body", [{"resource_types": ["messages"]}, {"resource_types": ["messages", "subscriptions"]}]
)
def test_purge_with_resource_types(api: httpx.Client, body: dict[str, Any]) -> None:
    post(api, "pg", {"body": 1})
    assert api.post("/queues/pg/purge", json=body).status_code == 204
    assert stats(api, "pg")["total"] == 0


def test_purge_subscriptions_only_keeps_messages(api: httpx.Client) -> None:
    post(api, "pg", {"body": 1})
    resp = api.post("/queues/pg/purge", json={"resource_types": ["subscriptions"]})
    assert resp.status_code == 204
    assert stats(api, "pg")["total"] == 1


# --------------------------------------------------------------------------- messages


def test_post_messages_location_and_resources_in_order(api: httpx.Client) -> None:
    posted = time.monotonic()
    resp = api.post("/queues/mq/messages", json={"messages": [
        {"ttl": 300, "body": {"event": "BackupStarted"}},
        {"body": "second", "ttl": 60},
        {"body": [1, 2, 3]},
    ]})
    assert resp.status_code == 201
    resources = resp.json()["resources"]
    assert len(resources) == 3
    ids = [r.rsplit("/", 1)[1] for r in resources]
    assert resources == [f"/v2/queues/mq/messages/{i}" for i in ids]
    assert len(set(ids)) == 3
    assert resp.headers["location"] == f"/v2/queues/mq/messages?ids={','.join(ids)}"

    listed = api.get("/queues/mq/messages", params={"echo": "true"}).json()["messages"]
    assert [m["id"] for m in listed] == ids
    assert [m["body"] for m in listed] == [{"event": "BackupStarted"}, "second", [1, 2, 3]]
    assert [m["ttl"] for m in listed] == [300, 60, 3600]
    for m, mid in zip(listed, ids, strict=True):
        assert set(m) == {"id", "href", "ttl", "age", "body"}
        assert m["href"] == f"/v2/queues/mq/messages/{mid}"
        assert 0 <= m["age"] <= age_bound(posted)


def test_post_creates_queue_lazily(api: httpx.Client) -> None:
    post(api, "lazy", {"body": None})
    assert [q["name"] for q in api.get("/queues").json()["queues"]] == ["lazy"]


@pytest.mark.parametrize(
    "body", [{"a": {"b": [1, 2.5, None]}}, [1, "x"], "text", 42, 3.25, True, False, None, "héllo ✓"]
)
def test_message_body_any_json_roundtrips(api: httpx.Client, body: Any) -> None:
    (mid,) = post(api, "bq", {"body": body})
    assert api.get(f"/queues/bq/messages/{mid}").json()["body"] == body


def test_unknown_message_fields_dropped(api: httpx.Client) -> None:
    (mid,) = post(api, "uq", {"body": 1, "extra": "x", "claim_id": "nope"})
    assert set(api.get(f"/queues/uq/messages/{mid}").json()) == {"id", "href", "ttl", "age", "body"}


def test_non_ascii_emitted_as_utf8(api: httpx.Client) -> None:
    (mid,) = post(api, "uq", {"body": "héllo ✓"})
    resp = api.get(f"/queues/uq/messages/{mid}")
    assert "héllo ✓".encode() in resp.content


def test_list_echo_filters_own_messages(api: httpx.Client, peer: httpx.Client) -> None:
    mine = post(api, "eq", {"body": "mine"})
    theirs = post(peer, "eq", {"body": "theirs"})
    assert api.get("/queues/eq/messages").json()["messages"][0]["id"] == theirs[0]
    assert listed_ids(api, "eq") == theirs
    assert listed_ids(peer, "eq") == mine
    assert listed_ids(api, "eq", echo="true") == mine + theirs


@pytest.mark.parametrize("value", ["true", "True", "yes", "on", "1"])
def test_boolean_query_truthy_spellings(api: httpx.Client, value: str) -> None:
    ids = post(api, "bq", {"body": 1})
    assert listed_ids(api, "bq", echo=value) == ids


@pytest.mark.parametrize("value", ["false", "False", "no", "off", "0"])
def test_boolean_query_falsy_spellings(api: httpx.Client, value: str) -> None:
    post(api, "bq", {"body": 1})
    assert listed_ids(api, "bq", echo=value) == []


def test_list_own_messages_empty_without_echo(api: httpx.Client) -> None:
    post(api, "eq", {"body": 1})
    assert api.get("/queues/eq/messages").json() == {"messages": [], "links": []}


def test_list_missing_queue_200_empty(api: httpx.Client) -> None:
    resp = api.get("/queues/nosuch/messages")
    assert resp.status_code == 200
    assert resp.json() == {"messages": [], "links": []}


def test_list_include_claimed(api: httpx.Client) -> None:
    ids = post(api, "cq", {"body": 1}, {"body": 2}, {"body": 3})
    cid, _ = claim(api, "cq", limit=2)
    assert listed_ids(api, "cq", echo="true") == ids[2:]
    resp = api.get("/queues/cq/messages", params={"echo": "true", "include_claimed": "true"})
    msgs = resp.json()["messages"]
    assert [m["id"] for m in msgs] == ids
    assert [m["href"] for m in msgs] == [
        f"/v2/queues/cq/messages/{ids[0]}?claim_id={cid}",
        f"/v2/queues/cq/messages/{ids[1]}?claim_id={cid}",
        f"/v2/queues/cq/messages/{ids[2]}",
    ]
    _, query = split_href(next_link(resp))
    assert query["include_claimed"] == "true"


def test_list_include_claimed_with_marker_first_message(api: httpx.Client) -> None:
    ids = post(api, "cq", {"body": 1}, {"body": 2}, {"body": 3})
    claim(api, "cq", limit=1)
    first = api.get("/queues/cq/messages", params={
        "echo": "true", "include_claimed": "true", "limit": 1,
    })
    assert [m["id"] for m in first.json()["messages"]] == ids[:1]
    second = follow(api, next_link(first))
    assert [m["id"] for m in second.json()["messages"]] == ids[1:2]


def test_list_paging_marker_limit_next_links(api: httpx.Client) -> None:
    ids = post(api, "pm", *({"body": i} for i in range(5)))
    first = api.get("/queues/pm/messages", params={"limit": 2, "echo": "true"})
    assert [m["id"] for m in first.json()["messages"]] == ids[:2]
    href = next_link(first)
    path, query = split_href(href)
    assert path == "/v2/queues/pm/messages"
    assert query["limit"] == "2"
    assert query["echo"] == "true"
    assert query["include_delayed"] == "true"  # queue has no _default_message_delay
    assert "marker" in query

    seen = [m["id"] for m in first.json()["messages"]]
    resp = follow(api, href)
    while resp.json()["messages"]:
        page = [m["id"] for m in resp.json()["messages"]]
        assert len(page) <= 2
        seen += page
        resp = follow(api, next_link(resp))
    assert seen == ids
    assert resp.json() == {"messages": [], "links": []}


def test_list_messages_default_limit_10_and_max_20(api: httpx.Client) -> None:
    post(api, "lm", *({"body": i} for i in range(22)))
    assert len(listed_ids(api, "lm", echo="true")) == 10
    assert len(listed_ids(api, "lm", echo="true", limit=20)) == 20


def test_get_message_by_id(api: httpx.Client) -> None:
    (mid,) = post(api, "gq", {"body": {"k": "v"}, "ttl": 120})
    resp = api.get(f"/queues/gq/messages/{mid}")
    assert resp.status_code == 200
    msg = resp.json()
    assert msg["id"] == mid
    assert msg["href"] == f"/v2/queues/gq/messages/{mid}"
    assert msg["ttl"] == 120
    assert msg["body"] == {"k": "v"}
    assert set(msg) == {"id", "href", "ttl", "age", "body"}


def test_get_claimed_message_href_has_claim_id(api: httpx.Client) -> None:
    (mid,) = post(api, "gq", {"body": 1})
    cid, _ = claim(api, "gq")
    msg = api.get(f"/queues/gq/messages/{mid}").json()
    assert msg["href"] == f"/v2/queues/gq/messages/{mid}?claim_id={cid}"


def test_get_message_missing_queue_404(api: httpx.Client) -> None:
    mid = str(uuid.uuid4())
    resp = api.get(f"/queues/nosuch/messages/{mid}")
    assert resp.status_code == 404
    assert resp.json() == {
        "title": "Not found",
        "description": f"Queue nosuch does not exist for project {project_of(api)}",
    }


@pytest.mark.parametrize("mid", ["new", "not-a-valid-id", "0" * 24])
def test_get_message_missing_404(api: httpx.Client, mid: str) -> None:
    post(api, "gq", {"body": 1})
    mid = str(uuid.uuid4()) if mid == "new" else mid
    resp = api.get(f"/queues/gq/messages/{mid}")
    assert resp.status_code == 404
    assert resp.json() == {
        "title": "Not found",
        "description": f"Message {mid} does not exist in queue gq for project {project_of(api)}",
    }


def test_get_messages_by_ids(api: httpx.Client) -> None:
    ids = post(api, "iq", {"body": 1}, {"body": 2}, {"body": 3})
    cid, _ = claim(api, "iq", limit=1)
    resp = api.get("/queues/iq/messages", params={"ids": f"{ids[0]},{ids[2]},{uuid.uuid4()}"})
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"messages"}
    by_id = {m["id"]: m for m in body["messages"]}
    assert set(by_id) == {ids[0], ids[2]}
    assert by_id[ids[0]]["href"] == f"/v2/queues/iq/messages/{ids[0]}?claim_id={cid}"
    assert by_id[ids[2]]["body"] == 3


def test_get_messages_by_ids_none_found_404(api: httpx.Client) -> None:
    post(api, "iq", {"body": 1})
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    resp = api.get("/queues/iq/messages", params={"ids": f"{a},{b}"})
    assert resp.status_code == 404
    assert resp.json() == {
        "title": "Not found",
        "description": f"No messages with IDs: ['{a}', '{b}'] found in the queue iq "
        f"for project {project_of(api)}.",
    }
    missing = api.get("/queues/nosuch/messages", params={"ids": a})
    assert missing.status_code == 404
    assert missing.json()["description"] == (
        f"No messages with IDs: ['{a}'] found in the queue nosuch for project {project_of(api)}."
    )


def test_get_messages_blank_ids_is_listing(api: httpx.Client) -> None:
    ids = post(api, "iq", {"body": 1})
    resp = api.get("/queues/iq/messages?ids=&echo=true")
    assert resp.status_code == 200
    assert [m["id"] for m in resp.json()["messages"]] == ids
    assert "links" in resp.json()


# ---- delete one: every row of the §4.8 table


def test_delete_message_missing_204(api: httpx.Client) -> None:
    post(api, "dm", {"body": 1})
    assert api.delete(f"/queues/dm/messages/{uuid.uuid4()}").status_code == 204
    assert api.delete(f"/queues/nosuch/messages/{uuid.uuid4()}").status_code == 204
    cid = str(uuid.uuid4())
    assert api.delete(
        f"/queues/dm/messages/{uuid.uuid4()}", params={"claim_id": cid}
    ).status_code == 204


def test_delete_unclaimed_message_without_claim_id(api: httpx.Client) -> None:
    ids = post(api, "dm", {"body": 1}, {"body": 2})
    resp = api.delete(f"/queues/dm/messages/{ids[0]}")
    assert resp.status_code == 204
    assert resp.content == b""
    assert api.get(f"/queues/dm/messages/{ids[0]}").status_code == 404
    assert listed_ids(api, "dm", echo="true") == ids[1:]


def test_delete_unclaimed_message_with_claim_id_400(api: httpx.Client) -> None:
    (mid,) = post(api, "dm", {"body": 1})
    other, _ = claim(api, "dm")
    api.delete(f"/queues/dm/claims/{other}")
    for cid in (other, str(uuid.uuid4())):
        resp = api.delete(f"/queues/dm/messages/{mid}", params={"claim_id": cid})
        assert resp.status_code == 400
        assert resp.json() == {
            "title": "Unable to delete",
            "description": "A claim was specified, but the message is not currently claimed.",
        }
    assert api.get(f"/queues/dm/messages/{mid}").status_code == 200


def test_delete_claimed_message_without_claim_id_403(api: httpx.Client) -> None:
    (mid,) = post(api, "dm", {"body": 1})
    claim(api, "dm")
    resp = api.delete(f"/queues/dm/messages/{mid}")
    assert resp.status_code == 403
    assert resp.json() == {
        "title": "Unable to delete",
        "description": "This message is claimed; it cannot be deleted without a valid claim ID.",
    }
    assert api.get(f"/queues/dm/messages/{mid}").status_code == 200


def test_delete_claimed_message_with_its_claim(api: httpx.Client) -> None:
    ids = post(api, "dm", {"body": 1}, {"body": 2})
    cid, _ = claim(api, "dm")
    resp = api.delete(f"/queues/dm/messages/{ids[0]}", params={"claim_id": cid})
    assert resp.status_code == 204
    assert api.get(f"/queues/dm/messages/{ids[0]}").status_code == 404
    remaining = api.get(f"/queues/dm/claims/{cid}").json()["messages"]
    assert [m["id"] for m in remaining] == ids[1:]


@pytest.mark.parametrize("bad", ["not-a-claim", "00000000-0000-0000-0000-000000000000", "new"])
def test_delete_claimed_message_with_unknown_claim_400(api: httpx.Client, bad: str) -> None:
    (mid,) = post(api, "dm", {"body": 1})
    claim(api, "dm")
    cid = str(uuid.uuid4()) if bad == "new" else bad
    resp = api.delete(f"/queues/dm/messages/{mid}", params={"claim_id": cid})
    assert resp.status_code == 400
    assert resp.json() == {
        "title": "Unable to delete",
        "description": "The specified claim does not exist or has expired.",
    }
    assert api.get(f"/queues/dm/messages/{mid}").status_code == 200


def test_delete_claimed_message_with_released_claim_400(api: httpx.Client) -> None:
    ids = post(api, "dm", {"body": 1}, {"body": 2})
    first, _ = claim(api, "dm", limit=1)
    second, _ = claim(api, "dm", limit=1)
    api.delete(f"/queues/dm/claims/{first}")
    # ids[1] is claimed by `second`; `first` no longer exists.
    resp = api.delete(f"/queues/dm/messages/{ids[1]}", params={"claim_id": first})
    assert resp.status_code == 400
    assert resp.json()["description"] == "The specified claim does not exist or has expired."
    assert second


def test_delete_claimed_message_with_other_live_claim_403(api: httpx.Client) -> None:
    ids = post(api, "dm", {"body": 1}, {"body": 2})
    first, _ = claim(api, "dm", limit=1)
    second, _ = claim(api, "dm", limit=1)
    resp = api.delete(f"/queues/dm/messages/{ids[0]}", params={"claim_id": second})
    assert resp.status_code == 403
    assert resp.json() == {
        "title": "Unable to delete",
        "description": "This message is claimed; it cannot be deleted without a valid claim ID.",
    }
    assert api.get(f"/queues/dm/messages/{ids[0]}").status_code == 200
    assert first


def test_delete_message_of_released_claim_without_claim_id(api: httpx.Client) -> None:
    (mid,) = post(api, "dm", {"body": 1})
    cid, _ = claim(api, "dm")
    api.delete(f"/queues/dm/claims/{cid}")
    assert api.delete(f"/queues/dm/messages/{mid}").status_code == 204
    assert api.get(f"/queues/dm/messages/{mid}").status_code == 404


# ---- bulk delete and pop


def test_bulk_delete_by_ids_even_if_claimed(api: httpx.Client) -> None:
    ids = post(api, "bd", {"body": 1}, {"body": 2}, {"body": 3})
    claim(api, "bd", limit=1)
    resp = api.delete("/queues/bd/messages", params={"ids": f"{ids[0]},{ids[1]},{uuid.uuid4()}"})
    assert resp.status_code == 204
    assert resp.content == b""
    assert listed_ids(api, "bd", echo="true", include_claimed="true") == ids[2:]


def test_bulk_delete_missing_queue_204(api: httpx.Client) -> None:
    resp = api.delete("/queues/nosuch/messages", params={"ids": str(uuid.uuid4())})
    assert resp.status_code == 204


def test_pop_returns_oldest_without_href(api: httpx.Client) -> None:
    ids = post(api, "pq", {"body": 1}, {"body": 2, "ttl": 120}, {"body": 3})
    resp = api.delete("/queues/pq/messages", params={"pop": 2})
    assert resp.status_code == 200
    popped = resp.json()["messages"]
    assert [m["id"] for m in popped] == ids[:2]
    for m in popped:
        assert set(m) == {"id", "age", "ttl", "body", "claim_id", "claim_count"}
        assert m["claim_count"] == 0
    assert [m["body"] for m in popped] == [1, 2]
    assert [m["ttl"] for m in popped] == [3600, 120]
    assert listed_ids(api, "pq", echo="true") == ids[2:]
    assert api.get(f"/queues/pq/messages/{ids[0]}").status_code == 404


def test_pop_skips_claimed_messages(api: httpx.Client) -> None:
    ids = post(api, "pq", {"body": 1}, {"body": 2})
    claim(api, "pq", limit=1)
    popped = api.delete("/queues/pq/messages", params={"pop": 5}).json()["messages"]
    assert [m["id"] for m in popped] == ids[1:]
    assert stats(api, "pq")["total"] == 1


@pytest.mark.parametrize("queue", ["empty", "nosuch"])
def test_pop_empty_or_missing_queue(api: httpx.Client, queue: str) -> None:
    put_queue(api, "empty")
    resp = api.delete(f"/queues/{queue}/messages", params={"pop": 3})
    assert resp.status_code == 200
    assert resp.json() == {"messages": []}


def test_checksum_when_enabled(make_server: type[TidingsServer], tmp_path: Any) -> None:
    srv = make_server(tmp_path, env={"TIDINGS_ENABLE_CHECKSUM": "true"}).start()
    with srv.client() as client:
        (mid,) = post(client, "ck", {"body": {"event": "x"}})
        msg = client.get(f"/queues/ck/messages/{mid}").json()
        assert msg["checksum"] == "MD5:a8b8e614767ada136e158f48b517e2e6"
        listed = client.get("/queues/ck/messages", params={"echo": "true"}).json()["messages"]
        assert listed[0]["checksum"] == "MD5:a8b8e614767ada136e158f48b517e2e6"


def test_no_checksum_by_default(api: httpx.Client) -> None:
    (mid,) = post(api, "ck", {"body": {"event": "x"}})
    assert "checksum" not in api.get(f"/queues/ck/messages/{mid}").json()


def test_bulk_delete_requires_claim_ids_when_configured(
    make_server: type[TidingsServer], tmp_path: Any
) -> None:
    srv = make_server(
        tmp_path, env={"TIDINGS_TRANSPORT__MESSAGE_DELETE_WITH_CLAIM_ID": "true"}
    ).start()
    with srv.client() as client:
        ids = post(client, "wc", {"body": 1}, {"body": 2}, {"body": 3})
        resp = client.delete("/queues/wc/messages", params={"ids": ids[0]})
        assert resp.status_code == 400
        assert resp.json() == {
            "title": "Invalid API request",
            "description": 'The request should have both "ids" and "claim_ids" parameter in '
            "the request when message_delete_with_claim_id is True.",
        }
        cid, _ = claim(client, "wc", limit=2)
        resp = client.delete(
            "/queues/wc/messages", params={"ids": f"{ids[0]},{ids[1]}", "claim_ids": cid}
        )
        assert resp.status_code == 204
        assert listed_ids(client, "wc", echo="true", include_claimed="true") == ids[2:]
        # Unclaimed message with a claim id that does not own it: must not be deleted.
        # (Zaqar's Redis driver raises here and answers 503: spec §4.6.)
        other, _ = claim(client, "wc", limit=1)
        client.delete(f"/queues/wc/claims/{other}")
        resp = client.delete("/queues/wc/messages", params={"ids": ids[2], "claim_ids": other})
        assert resp.status_code == 400, resp.text
        assert resp.json() == {
            "title": "Unable to delete",
            "description": f"Message {ids[2]} is not claimed, so claim_ids cannot cover it.",
        }
        assert listed_ids(client, "wc", echo="true") == ids[2:]


# --------------------------------------------------------------------------- claims


def test_claim_create_with_ttl_grace_limit(api: httpx.Client) -> None:
    ids = post(api, "cl", {"ttl": 300, "body": {"e": 1}}, {"body": "second", "ttl": 60},
               {"body": 3})
    resp = api.post("/queues/cl/claims", params={"limit": 2}, json={"ttl": 120, "grace": 60})
    assert resp.status_code == 201
    location = resp.headers["location"]
    assert location.startswith("/v2/queues/cl/claims/")
    cid = location.rsplit("/", 1)[1]
    uuid.UUID(cid)
    msgs = resp.json()["messages"]
    assert [m["id"] for m in msgs] == ids[:2]
    for m in msgs:
        assert set(m) == {"id", "href", "ttl", "age", "body"}
        assert m["href"] == f"/v2/queues/cl/messages/{m['id']}?claim_id={cid}"
    assert msgs[0]["ttl"] == 300  # outlives the claim: untouched
    assert msgs[1]["ttl"] == 180  # extended to claim ttl + grace
    assert msgs[1]["body"] == "second"


def test_claim_defaults_and_limit_10(api: httpx.Client) -> None:
    post(api, "cl", *({"body": i} for i in range(12)))
    resp = api.post("/queues/cl/claims")
    assert resp.status_code == 201
    assert len(resp.json()["messages"]) == 10
    cid = resp.headers["location"].rsplit("/", 1)[1]
    got = api.get(f"/queues/cl/claims/{cid}").json()
    assert got["ttl"] == 300
    # default message ttl 3600 outlives the default claim: untouched
    assert {m["ttl"] for m in got["messages"]} == {3600}


def test_claim_empty_body_object_uses_defaults(api: httpx.Client) -> None:
    post(api, "cl", {"body": 1, "ttl": 60})
    cid, msgs = claim(api, "cl", {})
    assert msgs[0]["ttl"] == 360  # 300 + 60
    assert api.get(f"/queues/cl/claims/{cid}").json()["ttl"] == 300


def test_claim_missing_field_defaults(api: httpx.Client) -> None:
    post(api, "cl", {"body": 1, "ttl": 60})
    cid, msgs = claim(api, "cl", {"ttl": 100})
    assert msgs[0]["ttl"] == 160
    post(api, "cl2", {"body": 1, "ttl": 60})
    cid2, msgs2 = claim(api, "cl2", {"grace": 100})
    assert msgs2[0]["ttl"] == 400
    assert api.get(f"/queues/cl2/claims/{cid2}").json()["ttl"] == 300
    assert cid


def test_claim_ignores_echo(api: httpx.Client) -> None:
    ids = post(api, "cl", {"body": 1})
    _, msgs = claim(api, "cl")
    assert [m["id"] for m in msgs] == ids


def test_claim_is_fifo_and_exclusive(api: httpx.Client, peer: httpx.Client) -> None:
    ids = post(api, "cl", *({"body": i} for i in range(5)))
    _, first = claim(api, "cl", limit=2)
    _, second = claim(peer, "cl", limit=2)
    _, third = claim(api, "cl", limit=2)
    assert [m["id"] for m in first] == ids[0:2]
    assert [m["id"] for m in second] == ids[2:4]
    assert [m["id"] for m in third] == ids[4:]
    assert api.post("/queues/cl/claims").status_code == 204


@pytest.mark.parametrize("queue", ["empty", "nosuch"])
def test_claim_empty_or_missing_queue_204(api: httpx.Client, queue: str) -> None:
    put_queue(api, "empty")
    resp = api.post(f"/queues/{queue}/claims", json={"ttl": 60})
    assert resp.status_code == 204
    assert resp.content == b""
    assert "location" not in resp.headers


def test_claim_without_body(api: httpx.Client) -> None:
    post(api, "cl", {"body": 1})
    resp = api.post("/queues/cl/claims")
    assert resp.status_code == 201


def test_get_claim(api: httpx.Client) -> None:
    ids = post(api, "gc", {"body": "a"}, {"body": "b"})
    claimed = time.monotonic()
    cid, _ = claim(api, "gc", {"ttl": 120, "grace": 60})
    resp = api.get(f"/queues/gc/claims/{cid}")
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"age", "ttl", "messages", "href"}
    assert body["ttl"] == 120
    assert 0 <= body["age"] <= age_bound(claimed)
    assert body["href"] == f"/v2/queues/gc/claims/{cid}"
    assert [m["id"] for m in body["messages"]] == ids
    assert body["messages"][0]["href"] == f"/v2/queues/gc/messages/{ids[0]}?claim_id={cid}"


@pytest.mark.parametrize("cid", ["new", "not-a-claim"])
def test_get_unknown_claim_404(api: httpx.Client, cid: str) -> None:
    post(api, "gc", {"body": 1})
    cid = str(uuid.uuid4()) if cid == "new" else cid
    resp = api.get(f"/queues/gc/claims/{cid}")
    assert resp.status_code == 404
    assert resp.json() == {
        "title": "Not found",
        "description": f"Claim {cid} does not exist in queue gc for project {project_of(api)}",
    }
    assert api.get(f"/queues/nosuch/claims/{cid}").status_code == 404


def test_renew_claim_extends_ttls(api: httpx.Client) -> None:
    ids = post(api, "rc", {"body": 1, "ttl": 60}, {"body": 2, "ttl": 3600})
    cid, _ = claim(api, "rc", {"ttl": 120, "grace": 60})
    resp = api.patch(f"/queues/rc/claims/{cid}", json={"ttl": 300, "grace": 100})
    assert resp.status_code == 204
    assert resp.content == b""
    got = api.get(f"/queues/rc/claims/{cid}").json()
    assert got["ttl"] == 300
    assert got["age"] <= 1
    by_id = {m["id"]: m["ttl"] for m in got["messages"]}
    assert by_id == {ids[0]: 400, ids[1]: 3600}


def test_renew_claim_empty_object_resets_ttl(api: httpx.Client) -> None:
    post(api, "rc", {"body": 1})
    cid, _ = claim(api, "rc", {"ttl": 1000})
    assert api.patch(f"/queues/rc/claims/{cid}", json={}).status_code == 204
    assert api.get(f"/queues/rc/claims/{cid}").json()["ttl"] == 300


def test_renew_claim_grace_not_validated(api: httpx.Client) -> None:
    post(api, "rc", {"body": 1})
    cid, _ = claim(api, "rc")
    assert api.patch(f"/queues/rc/claims/{cid}", json={"ttl": 60, "grace": 10}).status_code == 204


def test_renew_unknown_claim_404(api: httpx.Client) -> None:
    post(api, "rc", {"body": 1})
    cid = str(uuid.uuid4())
    resp = api.patch(f"/queues/rc/claims/{cid}", json={"ttl": 120})
    assert resp.status_code == 404
    assert resp.json()["title"] == "Not found"


def test_release_claim(api: httpx.Client) -> None:
    ids = post(api, "rl", {"body": 1, "ttl": 60}, {"body": 2})
    cid, _ = claim(api, "rl", {"ttl": 120, "grace": 60}, limit=1)
    assert listed_ids(api, "rl", echo="true") == ids[1:]
    resp = api.delete(f"/queues/rl/claims/{cid}")
    assert resp.status_code == 204
    assert resp.content == b""
    listed = api.get("/queues/rl/messages", params={"echo": "true"}).json()["messages"]
    assert [m["id"] for m in listed] == ids
    assert listed[0]["ttl"] == 180  # the extended ttl stays
    assert listed[0]["href"] == f"/v2/queues/rl/messages/{ids[0]}"
    assert api.delete(f"/queues/rl/claims/{cid}").status_code == 204
    assert api.get(f"/queues/rl/claims/{cid}").status_code == 404
    _, again = claim(api, "rl", limit=1)
    assert [m["id"] for m in again] == ids[:1]


def test_release_unknown_claim_204(api: httpx.Client) -> None:
    assert api.delete(f"/queues/nosuch/claims/{uuid.uuid4()}").status_code == 204
    assert api.delete("/queues/nosuch/claims/garbage").status_code == 204


def test_claimed_message_counted_in_stats(api: httpx.Client) -> None:
    post(api, "sc", {"body": 1}, {"body": 2})
    cid, _ = claim(api, "sc", limit=1)
    assert stats(api, "sc")["claimed"] == 1
    api.delete(f"/queues/sc/claims/{cid}")
    assert stats(api, "sc")["claimed"] == 0


# --------------------------------------------------------------------------- reserved metadata


def test_default_message_ttl_precedence(api: httpx.Client) -> None:
    put_queue(api, "tq", {"_default_message_ttl": 300})
    ids = post(api, "tq", {"body": 1}, {"body": 2, "ttl": 120})
    assert [api.get(f"/queues/tq/messages/{i}").json()["ttl"] for i in ids] == [300, 120]
    (other,) = post(api, "plain", {"body": 1})
    assert api.get(f"/queues/plain/messages/{other}").json()["ttl"] == 3600


def test_default_message_delay_hides_messages(api: httpx.Client) -> None:
    put_queue(api, "dq", {"_default_message_delay": 30})
    ids = post(api, "dq", {"body": "d-default"}, {"body": "d0", "delay": 0},
               {"body": "d5", "delay": 5})
    resp = api.get("/queues/dq/messages", params={"echo": "true", "limit": 1})
    assert [m["body"] for m in resp.json()["messages"]] == ["d0"]
    _, query = split_href(next_link(resp))
    assert "include_delayed" not in query
    all_three = listed_ids(api, "dq", echo="true", include_delayed="true")
    assert all_three == ids
    assert stats(api, "dq")["total"] == 3
    # get-by-id ignores delay
    assert api.get(f"/queues/dq/messages/{ids[0]}").status_code == 200
    got = api.get("/queues/dq/messages", params={"ids": ",".join(ids)}).json()["messages"]
    assert {m["id"] for m in got} == set(ids)


def test_delayed_messages_never_claimed(api: httpx.Client) -> None:
    put_queue(api, "dq", {"_default_message_delay": 30})
    ids = post(api, "dq", {"body": "d0", "delay": 0}, {"body": "d-default"},
               {"body": "d5", "delay": 5}, {"body": "d0b", "delay": 0})
    _, msgs = claim(api, "dq", limit=20)
    assert [m["id"] for m in msgs] == [ids[0], ids[3]]
    assert api.post("/queues/dq/claims", params={"limit": 20}).status_code == 204


def test_delayed_messages_never_popped(api: httpx.Client) -> None:
    put_queue(api, "dq", {"_default_message_delay": 30})
    ids = post(api, "dq", {"body": "d-default"}, {"body": "d0", "delay": 0},
               {"body": "d5", "delay": 5})
    popped = api.delete("/queues/dq/messages", params={"pop": 20}).json()["messages"]
    assert [m["id"] for m in popped] == [ids[1]]
    assert api.delete("/queues/dq/messages", params={"pop": 20}).json() == {"messages": []}
    assert stats(api, "dq")["total"] == 2


def test_delay_ignored_without_queue_delay(api: httpx.Client) -> None:
    ids = post(api, "nd", {"body": 1, "delay": 5}, {"body": 2, "delay": 5000})
    assert listed_ids(api, "nd", echo="true") == ids
    _, msgs = claim(api, "nd", limit=5)
    assert [m["id"] for m in msgs] == ids


def test_max_messages_post_size_per_queue(api: httpx.Client) -> None:
    put_queue(api, "sz", {"_max_messages_post_size": 100})
    assert api.post("/queues/sz/messages", json={"messages": [{"body": 1}]}).status_code == 201
    resp = api.post("/queues/sz/messages", json={"messages": [{"body": "x" * 200}]})
    assert resp.status_code == 400
    assert stats(api, "sz")["total"] == 1


def dlq_setup(api: httpx.Client, dlq_ttl: int | None = 120) -> str:
    meta: dict[str, Any] = {"_max_claim_count": 2, "_dead_letter_queue": "dlq"}
    if dlq_ttl is not None:
        meta["_dead_letter_queue_messages_ttl"] = dlq_ttl
    put_queue(api, "src", meta)
    (mid,) = post(api, "src", {"body": {"job": 7}, "ttl": 3600})
    for _ in range(2):
        cid, msgs = claim(api, "src", {"ttl": 60, "grace": 60})
        assert [m["id"] for m in msgs] == [mid]
        assert api.delete(f"/queues/src/claims/{cid}").status_code == 204
    third = api.post("/queues/src/claims", json={"ttl": 60, "grace": 60})
    assert third.status_code == 204, third.text
    return mid


def test_dead_letter_move_is_immediately_listable(api: httpx.Client) -> None:
    dlq_setup(api)
    assert stats(api, "src")["total"] == 0
    assert listed_ids(api, "src", echo="true", include_claimed="true") == []
    assert stats(api, "dlq")["total"] == 1
    listed = api.get("/queues/dlq/messages", params={"echo": "true"}).json()["messages"]
    assert len(listed) == 1
    assert listed[0]["body"] == {"job": 7}
    assert listed[0]["ttl"] == 120
    assert "claim_id" not in listed[0]["href"]


def test_dead_letter_move_is_immediately_claimable(api: httpx.Client) -> None:
    dlq_setup(api)
    resp = api.post("/queues/dlq/claims", json={"ttl": 60, "grace": 60})
    assert resp.status_code == 201, resp.text
    (msg,) = resp.json()["messages"]
    assert msg["body"] == {"job": 7}


def test_dead_letter_keeps_claim_count(api: httpx.Client) -> None:
    dlq_setup(api)
    popped = api.delete("/queues/dlq/messages", params={"pop": 1}).json()["messages"]
    assert len(popped) == 1
    assert popped[0]["claim_count"] == 2
    assert popped[0]["ttl"] == 120
    assert popped[0]["body"] == {"job": 7}


def test_dead_letter_without_dlq_ttl_keeps_ttl(api: httpx.Client) -> None:
    dlq_setup(api, dlq_ttl=None)
    listed = api.get("/queues/dlq/messages", params={"echo": "true"}).json()["messages"]
    assert len(listed) == 1
    assert listed[0]["ttl"] == 3600


def test_claim_count_tracked_in_pop(api: httpx.Client) -> None:
    put_queue(api, "cc")
    post(api, "cc", {"body": 1})
    for _ in range(2):
        cid, _ = claim(api, "cc")
        api.delete(f"/queues/cc/claims/{cid}")
    popped = api.delete("/queues/cc/messages", params={"pop": 1}).json()["messages"]
    assert popped[0]["claim_count"] == 2


def test_max_claim_count_without_dlq_does_not_move(api: httpx.Client) -> None:
    put_queue(api, "nodlq", {"_max_claim_count": 1})
    (mid,) = post(api, "nodlq", {"body": 1})
    for _ in range(3):
        cid, msgs = claim(api, "nodlq")
        assert [m["id"] for m in msgs] == [mid]
        api.delete(f"/queues/nodlq/claims/{cid}")
    assert stats(api, "nodlq")["total"] == 1


# --------------------------------------------------------------------------- headers


def test_missing_client_id_400(server: TidingsServer) -> None:
    for path in ("/v2/queues", "/v2/ping", "/v2/", "/v2/queues/q/stats"):
        resp = httpx.get(server.url + path, headers={"X-Project-ID": "p"})
        assert resp.status_code == 400, path
        assert resp.json() == CLIENT_ID_REQUIRED
    resp = httpx.delete(server.url + "/v2/queues/q", headers={"X-Project-ID": "p"})
    assert resp.json() == CLIENT_ID_REQUIRED


def test_malformed_client_id_400(server: TidingsServer) -> None:
    resp = httpx.get(
        server.url + "/v2/queues", headers={"Client-ID": "not-a-uuid", "X-Project-ID": "p"}
    )
    assert resp.status_code == 400
    assert resp.json() == {
        "title": "Wrong UUID value", "description": "Malformed hexadecimal UUID."
    }


@pytest.mark.parametrize("form", ["hex", "braces", "urn", "upper"])
def test_client_id_uuid_forms_accepted(server: TidingsServer, form: str) -> None:
    value = uuid.uuid4()
    client_id = {
        "hex": value.hex,
        "braces": "{" + str(value) + "}",
        "urn": value.urn,
        "upper": str(value).upper(),
    }[form]
    resp = httpx.get(
        server.url + "/v2/queues", headers={"Client-ID": client_id, "X-Project-ID": "p-forms"}
    )
    assert resp.status_code == 200


def test_missing_project_id_400(server: TidingsServer) -> None:
    resp = httpx.get(server.url + "/v2/queues", headers={"Client-ID": str(uuid.uuid4())})
    assert resp.status_code == 400
    assert resp.json() == {
        "title": "Project-Id Missing",
        "description": "The header X-PROJECT-ID was missing",
    }


def test_empty_project_id_400(server: TidingsServer) -> None:
    resp = httpx.get(
        server.url + "/v2/queues", headers={"Client-ID": str(uuid.uuid4()), "X-Project-ID": ""}
    )
    assert resp.status_code == 400
    assert resp.json() == {
        "title": "Empty project header not allowed",
        "description": "X-PROJECT-ID cannot be an empty string. Specify the right header "
        "X-PROJECT-ID and retry.",
    }


@pytest.mark.parametrize("accept", ["text/plain", "application/xml", "text/html"])
def test_accept_excluding_json_406_empty_body(api: httpx.Client, accept: str) -> None:
    resp = api.get("/queues", headers={"Accept": accept})
    assert resp.status_code == 406
    assert resp.content == b""


@pytest.mark.parametrize(
    "accept", ["*/*", "application/*", "application/json", "text/plain, application/json"]
)
def test_accept_admitting_json_ok(api: httpx.Client, accept: str) -> None:
    assert api.get("/queues", headers={"Accept": accept}).status_code == 200


def test_form_urlencoded_body_400(api: httpx.Client) -> None:
    resp = api.post(
        "/queues/fq/messages",
        content=b"a=b",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status_code == 400
    assert resp.json() == {
        "title": "Invalid Content-Type",
        "description": "Endpoint does not accept `application/x-www-form-urlencoded` content; "
        "currently supported media type is `application/json`; specify proper client-side "
        'media type with the "Content-Type" header.',
    }


def test_content_type_ignored_for_json_body(api: httpx.Client) -> None:
    resp = api.post(
        "/queues/ct/messages",
        content=b'{"messages": [{"body": 1}]}',
        headers={"Content-Type": "text/plain"},
    )
    assert resp.status_code == 201


def test_client_id_off_mode(make_server: type[TidingsServer], tmp_path: Any) -> None:
    srv = make_server(tmp_path, env={"TIDINGS_TRANSPORT__CLIENT_ID_UUID_SAFE": "off"}).start()
    for good in ("abcdefghij", "x" * 36, "not-a-uuid-but-fine"):
        with srv.client(client_id=good) as client:
            assert client.get("/queues").status_code == 200, good
    for bad in ("short", "x" * 9, "x" * 37):
        with srv.client(client_id=bad) as client:
            resp = client.get("/queues")
            assert resp.status_code == 400, bad
            assert resp.json() == {
                "title": "Length of client id must be at least 10 and no greater than 36."
            }


# --------------------------------------------------------------------------- system routes


def test_versions_document(server: TidingsServer) -> None:
    resp = httpx.get(server.url + "/")
    assert resp.status_code == 300
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.json() == {"versions": [{
        "id": "2",
        "status": "CURRENT",
        "updated": "2014-9-24T04:06:47Z",
        "media-types": [{
            "base": "application/json",
            "type": "application/vnd.openstack.messaging-v2+json",
        }],
        "links": [{"href": "/v2/", "rel": "self"}],
    }]}


def test_home_document(api: httpx.Client) -> None:
    resp = api.get("/")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json-home")
    assert resp.headers["cache-control"] == "max-age=86400"
    resources = resp.json()["resources"]
    expected = {
        "rel/queues": ("/v2/queues{?marker,limit,detailed}", ["GET"]),
        "rel/queue": ("/v2/queues/{queue_name}", ["GET", "PUT", "DELETE", "PATCH"]),
        "rel/queue_stats": ("/v2/queues/{queue_name}/stats", ["GET"]),
        "rel/queue_purge": ("/v2/queues/{queue_name}/purge", ["POST"]),
        "rel/messages": (
            "/v2/queues/{queue_name}/messages{?marker,limit,echo,include_claimed}", ["GET"]
        ),
        "rel/post_messages": ("/v2/queues/{queue_name}/messages", ["POST"]),
        "rel/messages_delete": ("/v2/queues/{queue_name}/messages{?ids,pop}", ["DELETE"]),
        "rel/message_delete": (
            "/v2/queues/{queue_name}/messages/{message_id}{?claim}", ["DELETE"]
        ),
        "rel/message_get": ("/v2/queues/{queue_name}/messages/{message_id}", ["GET"]),
        "rel/claim": ("/v2/queues/{queue_name}/claims/{claim_id}", ["GET"]),
        "rel/post_claim": ("/v2/queues/{queue_name}/claims{?limit}", ["POST"]),
        "rel/patch_claim": ("/v2/queues/{queue_name}/claims/{claim_id}", ["PATCH"]),
        "rel/delete_claim": ("/v2/queues/{queue_name}/claims/{claim_id}", ["DELETE"]),
        "rel/ping": ("/v2/ping", ["GET"]),
    }
    for rel, (template, allow) in expected.items():
        assert rel in resources, rel
        assert resources[rel]["href-template"] == template, rel
        assert sorted(resources[rel]["hints"]["allow"]) == sorted(allow), rel
        assert resources[rel]["hints"]["formats"] == {"application/json": {}}, rel
    assert resources["rel/post_messages"]["hints"]["accept-post"] == ["application/json"]
    assert resources["rel/queues"]["href-vars"]["limit"] == "param/queue_limit"
    assert resources["rel/queue"]["href-vars"]["queue_name"] == "param/queue_name"
    # admin mode adds health
    assert resources["rel/health"]["href"] == "/v2/health"
    # pretty printed with 4-space indent
    assert b'\n    "resources"' in resp.content


def test_v2_without_trailing_slash_404(api: httpx.Client, server: TidingsServer) -> None:
    resp = httpx.get(server.url + "/v2", headers=dict(api.headers))
    assert resp.status_code == 404


def test_ping(api: httpx.Client) -> None:
    got = api.get("/ping")
    assert got.status_code == 204
    assert got.content == b""
    head = api.head("/ping")
    assert head.status_code == 204


def test_ping_requires_headers(server: TidingsServer) -> None:
    assert httpx.head(server.url + "/v2/ping").status_code == 400
    assert httpx.get(server.url + "/v2/ping").status_code == 400


def test_health_requires_admin_role(api: httpx.Client) -> None:
    resp = api.get("/health")
    assert resp.status_code == 403
    assert resp.json() == {
        "title": "Not authorized",
        "description": "You are not authorized to complete this action.",
    }
    resp = api.get("/health", headers={"X-Roles": "member"})
    assert resp.status_code == 403


def test_health_admin(api: httpx.Client) -> None:
    resp = api.get("/health", headers={"X-Roles": "admin"})
    assert resp.status_code == 200
    body = resp.json()
    assert body["storage_reachable"] is True
    ops = body["operation_status"]
    for op in ("create_queue", "post_messages", "claim_messages", "list_messages",
               "delete_messages", "delete_claim", "bulk_delete_messages", "delete_queue"):
        assert ops[op]["succeeded"] is True, op
        assert ops[op]["ref"] is None
        assert isinstance(ops[op]["seconds"], int | float)
    # the self-test leaves nothing behind in the caller's project
    assert api.get("/queues").json()["queues"] == []


def test_health_counts_messages(api: httpx.Client) -> None:
    queue = f"volume-{uuid.uuid4().hex[:8]}"
    posted = api.post(f"/queues/{queue}/messages", json={"messages": [{"body": 1}, {"body": 2}]})
    assert posted.status_code == 201
    claimed = api.post(f"/queues/{queue}/claims?limit=1", json={"ttl": 60, "grace": 60})
    assert claimed.status_code == 201
    # The report is reused for a few seconds: wait for one taken after the post.
    report = wait_until(
        lambda: (h := api.get("/health", headers={"X-Roles": "admin"}).json())[
            "message_volume"
        ]["claimed"]
        >= 1
        and h,
        "health counting the new messages",
    )
    volume = report["message_volume"]
    assert set(volume) == {"free", "claimed", "total"}
    assert volume["total"] >= 2 and volume["free"] == volume["total"] - volume["claimed"]
    assert report["message_volume_complete"] is True
    api.delete(f"/queues/{queue}")


def test_health_not_routed_without_admin_mode(
    make_server: type[TidingsServer], tmp_path: Any
) -> None:
    srv = make_server(tmp_path).start()
    with srv.client() as client:
        resp = client.get("/health", headers={"X-Roles": "admin"})
        assert resp.status_code == 404
        assert "rel/health" not in client.get("/").json()["resources"]


def test_unknown_path_404_shape(api: httpx.Client, server: TidingsServer) -> None:
    for path in ("/nope", "/queues/q/nope", "/queues/q/messages/m/x"):
        resp = api.get(path)
        assert resp.status_code == 404, path
        assert resp.json() == {"title": "404 Not Found"}
    resp = httpx.get(server.url + "/v1.1/queues", headers=dict(api.headers))
    assert resp.status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("POST", "/queues", {"GET"}),
        ("POST", "/queues/q", {"GET", "HEAD", "PUT", "PATCH", "DELETE"}),
        ("PUT", "/queues/q/messages", {"GET", "POST", "DELETE"}),
        ("GET", "/queues/q/purge", {"POST"}),
        ("POST", "/queues/q/stats", {"GET"}),
        ("GET", "/queues/q/claims", {"POST"}),
        ("POST", "/queues/q/claims/c", {"GET", "PATCH", "DELETE"}),
        ("PUT", "/queues/q/messages/m", {"GET", "DELETE"}),
    ],
)
def test_method_not_allowed_405(
    api: httpx.Client, method: str, path: str, allowed: set[str]
) -> None:
    resp = api.request(method, path)
    assert resp.status_code == 405
    assert resp.json() == {"title": "405 Method Not Allowed"}
    allow = {m.strip() for m in resp.headers["allow"].split(",")}
    assert allow == allowed | {"OPTIONS"}


def test_head_queue_tells_whether_it_exists(api: httpx.Client) -> None:
    # Zaqar answers 405 here, so python-zaqarclient's exists() is always true there.
    assert api.head("/queues/headq").status_code == 404
    assert api.put("/queues/headq").status_code == 201
    found = api.head("/queues/headq")
    assert (found.status_code, found.content) == (204, b"")
    assert api.head("/queues/bad name").status_code == 400


def test_request_id_header_everywhere(api: httpx.Client, server: TidingsServer) -> None:
    responses = [
        api.get("/queues"),
        api.put("/queues/rq"),
        api.get("/queues/rq/messages"),
        api.get("/nope"),
        api.get("/queues", params={"limit": "abc"}),
        api.get("/queues", headers={"Accept": "text/plain"}),
        api.get("/ping"),
        httpx.get(server.url + "/"),
        httpx.get(server.url + "/v2/queues"),
    ]
    seen = set()
    for resp in responses:
        rid = resp.headers.get("x-openstack-request-id", "")
        assert REQUEST_ID.match(rid), (resp.request.url, rid)
        seen.add(rid)
    assert len(seen) == len(responses)


def test_error_responses_json_and_vary(api: httpx.Client) -> None:
    resp = api.get("/queues", params={"limit": "abc"})
    assert resp.status_code == 400
    assert resp.headers["content-type"].startswith("application/json")
    assert "accept" in resp.headers.get("vary", "").lower()


# --------------------------------------------------------------------------- isolation


def test_project_isolation_of_queues(server: TidingsServer) -> None:
    with server.client() as a, server.client() as b:
        put_queue(a, "shared", {"owner": "a"})
        put_queue(a, "only-a")
        assert b.get("/queues").json() == {"queues": [], "links": []}
        assert b.get("/queues/shared").json() == RESERVED_DEFAULTS
        put_queue(b, "shared", {"owner": "b"})
        assert a.get("/queues/shared").json()["owner"] == "a"
        assert [q["name"] for q in b.get("/queues").json()["queues"]] == ["shared"]
        assert b.get("/queues", params={"with_count": "true"}).json()["count"] == 1


def test_project_isolation_of_messages_and_claims(server: TidingsServer) -> None:
    with server.client() as a, server.client() as b:
        (mid,) = post(a, "shared", {"body": "secret"})
        post(b, "shared", {"body": "theirs"})
        resp = b.get(f"/queues/shared/messages/{mid}")
        assert resp.status_code == 404
        assert b.get("/queues/shared/messages", params={"ids": mid}).status_code == 404
        assert mid not in listed_ids(b, "shared", echo="true", include_claimed="true")
        assert b.delete(f"/queues/shared/messages/{mid}").status_code == 204
        assert b.delete("/queues/shared/messages", params={"ids": mid}).status_code == 204
        assert a.get(f"/queues/shared/messages/{mid}").status_code == 200

        cid, msgs = claim(a, "shared")
        assert [m["id"] for m in msgs] == [mid]
        assert b.get(f"/queues/shared/claims/{cid}").status_code == 404
        assert b.patch(f"/queues/shared/claims/{cid}", json={"ttl": 60}).status_code == 404
        assert b.delete(f"/queues/shared/claims/{cid}").status_code == 204
        assert a.get(f"/queues/shared/claims/{cid}").status_code == 200
        assert stats(b, "shared")["total"] == 1
        assert stats(a, "shared")["claimed"] == 1


def test_message_id_not_resolvable_through_other_queue(api: httpx.Client) -> None:
    (mid,) = post(api, "qa", {"body": 1})
    put_queue(api, "qb")
    assert api.get(f"/queues/qb/messages/{mid}").status_code == 404
    assert api.delete(f"/queues/qb/messages/{mid}").status_code == 204
    assert api.get(f"/queues/qa/messages/{mid}").status_code == 200
