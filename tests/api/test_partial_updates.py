"""Partial updates over real HTTP: a subscription PATCH with any subset of its fields, and
the reserved metadata a topic shows (Zaqar's topic resource: three keys, not a queue's
seven).

Subscribers here are in TEST-NET-1 (192.0.2.0/24, never routed) and no message is posted
to them, so nothing is ever delivered; the default server (loopback denied) serves.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import httpx
import pytest
from zaqarclient.queues.v2.subscription import Subscription

from tests.client.test_zaqarclient import make_client
from tests.server import RESERVED_DEFAULTS, TidingsServer

JSON_PATCH = "application/openstack-messaging-v2.0-json-patch"
TOPIC_RESERVED = ("_max_messages_post_size", "_default_message_ttl", "_default_message_delay")
TOPIC_DEFAULTS = {key: RESERVED_DEFAULTS[key] for key in TOPIC_RESERVED}
FIELDS = ("subscriber", "ttl", "options")


def hook(name: str) -> str:
    return f"http://192.0.2.1/{name}"


def subscribe(api: httpx.Client, source: str, collection: str = "queues") -> str:
    resp = api.post(
        f"/{collection}/{source}/subscriptions",
        json={"subscriber": hook("before"), "ttl": 3600, "options": {"keep": 1}},
    )
    assert resp.status_code == 201, resp.text
    sid: str = resp.json()["subscription_id"]
    return sid


def shown(api: httpx.Client, path: str) -> dict[str, Any]:
    resp = api.get(path)
    assert resp.status_code == 200, resp.text
    found: dict[str, Any] = resp.json()
    return {key: found[key] for key in FIELDS}


SUBSETS = [
    subset for size in (1, 2, 3) for subset in itertools.combinations(FIELDS, size)
]  # fmt: skip
CHANGED = {"subscriber": hook("after"), "ttl": 900, "options": {"changed": True}}


@pytest.mark.parametrize("collection", ["queues", "topics"])
def test_patch_changes_exactly_the_fields_given(api: httpx.Client, collection: str) -> None:
    """Every non-empty subset of subscriber, ttl and options, the rest left as it was."""
    for n, subset in enumerate(SUBSETS):
        source = f"s{n}"
        path = f"/{collection}/{source}/subscriptions/{subscribe(api, source, collection)}"
        before = shown(api, path)
        resp = api.patch(path, json={key: CHANGED[key] for key in subset})
        assert resp.status_code == 204, (subset, resp.text)
        assert shown(api, path) == {k: CHANGED[k] if k in subset else before[k] for k in FIELDS}


def test_null_fields_are_left_unchanged(api: httpx.Client) -> None:
    """What ``openstack messaging subscription update --ttl 900`` sends: nulls for the rest."""
    path = f"/queues/nulls/subscriptions/{subscribe(api, 'nulls')}"
    resp = api.patch(path, json={"subscriber": None, "ttl": 900, "options": None})
    assert resp.status_code == 204, resp.text
    assert shown(api, path) == {"subscriber": hook("before"), "ttl": 900, "options": {"keep": 1}}


def test_all_null_is_refused_like_an_empty_update(api: httpx.Client) -> None:
    sid = subscribe(api, "allnull")
    resp = api.patch(
        f"/queues/allnull/subscriptions/{sid}",
        json={"subscriber": None, "ttl": None, "options": None},
    )
    assert resp.status_code == 400
    assert resp.json() == {
        "title": "Unable to update subscription",
        "description": f"Subscription {sid} could not be updated.",
    }


def test_zaqarclient_update_as_the_cli_calls_it(server: TidingsServer) -> None:
    """python-zaqarclient's ``UpdateSubscription`` passes every option, unset ones as None
    (``--options`` defaults to {})."""
    client = make_client(server)
    created = client.subscription("cli", subscriber=hook("cli"), ttl=600, options={"a": 1})
    sub = Subscription(client, "cli", id=created.id, auto_create=False)
    sub.update({"subscriber": None, "ttl": 1200, "options": {}})
    again = client.subscription("cli", id=created.id)
    assert (again.subscriber, again.ttl, again.options) == (hook("cli"), 1200, {})


# ------------------------------------------------------------------------------ topics


def patch(api: httpx.Client, path: str, *ops: dict[str, Any]) -> httpx.Response:
    return api.patch(path, json=list(ops), headers={"Content-Type": JSON_PATCH})


def test_topic_get_shows_the_reserved_keys_topics_have(api: httpx.Client) -> None:
    assert api.put("/topics/news", json={"color": "red", "_default_message_ttl": 120}) \
        .status_code == 201  # fmt: skip
    assert api.get("/topics/news").json() == {
        **TOPIC_DEFAULTS, "color": "red", "_default_message_ttl": 120,
    }  # fmt: skip
    # a topic that does not exist shows the defaults, like a queue
    assert api.get(f"/topics/{uuid.uuid4().hex}").json() == TOPIC_DEFAULTS
    listed = api.get("/topics", params={"detailed": "true"}).json()["topics"]
    assert [t["metadata"] for t in listed] == [api.get("/topics/news").json()]


def test_topic_patch_answers_with_the_topic_reserved_keys(api: httpx.Client) -> None:
    api.put("/topics/upd", json={})
    resp = patch(
        api, "/topics/upd",
        {"op": "add", "path": "/metadata/key", "value": 1},
        {"op": "replace", "path": "/metadata/_default_message_ttl", "value": 300},
    )  # fmt: skip
    assert resp.status_code == 200, resp.text
    expected = {**TOPIC_DEFAULTS, "key": 1, "_default_message_ttl": 300}
    assert resp.json() == expected
    assert api.get("/topics/upd").json() == expected
    # removing a reserved key goes back to its default
    resp = patch(api, "/topics/upd", {"op": "remove", "path": "/metadata/_default_message_ttl"})
    assert resp.json() == {**TOPIC_DEFAULTS, "key": 1}
    # a queue-only key is no reserved key of a topic: replacing it when absent conflicts
    resp = patch(api, "/topics/upd", {"op": "replace", "path": "/metadata/_max_claim_count",
                                      "value": 2})  # fmt: skip
    assert resp.status_code == 409, resp.text


def test_queues_keep_all_their_reserved_keys(api: httpx.Client) -> None:
    api.put("/queues/plain", json={})
    assert api.get("/queues/plain").json() == RESERVED_DEFAULTS
    resp = patch(api, "/queues/plain", {"op": "replace", "path": "/metadata/_max_claim_count",
                                        "value": 2})  # fmt: skip
    assert resp.status_code == 200, resp.text
    assert resp.json() == {**RESERVED_DEFAULTS, "_max_claim_count": 2}
