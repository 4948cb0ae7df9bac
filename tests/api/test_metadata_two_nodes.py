"""Two Tidings nodes on one Redis: a queue metadata change made through one is honoured
by the very next post and claim through the other (Redis posts and claims work from
metadata each node keeps, checked against a token in the queue's slot)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.backends import StoreNamespace
from tests.server import TidingsServer

pytestmark = pytest.mark.xdist_group("metadata-two-nodes")

JSON_PATCH = {"Content-Type": "application/openstack-messaging-v2.0-json-patch"}


def set_metadata(node: TidingsServer, client_id: str, **values: object) -> None:
    """Add or replace reserved keys of queue ``q`` through ``node`` (JSON patch)."""
    ops = [{"op": "add", "path": f"/metadata/{k}", "value": v} for k, v in values.items()]
    with node.client("fresh", client_id) as client:
        resp = client.patch("/queues/q", json=ops, headers=JSON_PATCH)
    assert resp.status_code == 200, resp.text


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TidingsServer, ...]]:
    data_dir: Path = tmp_path_factory.mktemp("two-nodes")
    namespace = StoreNamespace("redis", data_dir)
    servers = [TidingsServer(data_dir, store_uri=namespace.uri) for _ in range(2)]
    try:
        for srv in servers:
            srv.start()
        yield tuple(servers)
    finally:
        for srv in servers:
            srv.stop()
        namespace.drop()


def test_metadata_set_on_one_node_governs_the_next_post_and_claim_on_the_other(
    nodes: tuple[TidingsServer, TidingsServer],
) -> None:
    first, second = nodes
    client_id = str(uuid.uuid4())
    with first.client("fresh", client_id) as a, second.client("fresh", client_id) as b:
        _check(first, a, b, client_id)


def _check(first: TidingsServer, a: httpx.Client, b: httpx.Client, client_id: str) -> None:
    one = {"messages": [{"body": {"n": 1}}]}
    assert a.put("/queues/q", json={}).status_code == 201
    # The second node reads (and keeps) the metadata in force: no limit of the queue's.
    assert b.post("/queues/q/messages", json=one).status_code == 201
    set_metadata(first, client_id, _max_messages_post_size=8)
    refused = b.post("/queues/q/messages", json=one)
    assert refused.status_code == 400, refused.text
    assert "max size for current queue is 8" in refused.json()["description"]
    # Lifted again: the refusal the second node now remembers must not outlive it.

    patch = [{"op": "replace", "path": "/metadata/_default_message_ttl", "value": 120}]
    patched = a.patch(
        "/queues/q",
        json=[{"op": "remove", "path": "/metadata/_max_messages_post_size"}, *patch],
        headers=JSON_PATCH,
    )
    assert patched.status_code == 200, patched.text
    posted = b.post("/queues/q/messages", json=one)
    assert posted.status_code == 201, posted.text
    new_id = posted.json()["resources"][0].rsplit("/", 1)[1]
    assert b.get(f"/queues/q/messages/{new_id}").json()["ttl"] == 120

    # A dead-letter policy set through the first node applies to the second's next claim.
    claimed = b.post("/queues/q/claims?limit=10", json={"ttl": 60, "grace": 60})
    assert claimed.status_code == 201
    assert b.delete(claimed.headers["location"].removeprefix("/v2")).status_code == 204
    set_metadata(first, client_id, _max_claim_count=1, _dead_letter_queue="dead")
    moved = b.post("/queues/q/claims?limit=10", json={"ttl": 60, "grace": 60})
    assert moved.status_code == 204, moved.text  # every message went to the dead letters
    dead = a.get("/queues/dead/messages", params={"echo": "true"})
    assert dead.status_code == 200 and len(dead.json()["messages"]) == 2
