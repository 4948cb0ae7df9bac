"""Every WebSocket action (spec 8.3 and ours) over real connections to a real server.

Statuses and bodies are Zaqar's, as captured from Zaqar 23.0.1's WebSocket transport:
sentences for queue create/delete and claim/subscription changes, ``{"messages": ...}``
around message reads (even a single one), no paging links, and the schema failure
``{"error": "Schema validation failed."}``. Each flow runs with JSON text frames and
with MessagePack binary frames.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.server import TidingsServer

# Seconds a frame may take to arrive before the test fails (bounds a loaded machine).
FRAME_BOUND = 20.0
ENCODINGS = pytest.mark.parametrize("binary", [False, True], ids=["json", "msgpack"])
SCHEMA_FAILED = {"error": "Schema validation failed."}


class Socket:
    """One connection in a project of its own; JSON frames, or MessagePack if ``binary``."""

    def __init__(self, ws: ClientConnection, *, binary: bool) -> None:
        self.ws = ws
        self.binary = binary
        self.headers = {
            "Client-ID": str(uuid.uuid4()),
            "X-Project-ID": f"ws-{uuid.uuid4().hex[:12]}",
        }

    def request(
        self, action: str, body: dict[str, Any] | None = None, **headers: str
    ) -> tuple[int, Any]:
        """(headers.status, body) of the response to one frame."""
        frame: dict[str, Any] = {"action": action, "headers": {**self.headers, **headers}}
        if body is not None:
            frame["body"] = body
        self.ws.send(msgspec.msgpack.encode(frame) if self.binary else json.dumps(frame))
        raw = self.ws.recv(timeout=FRAME_BOUND)
        assert isinstance(raw, bytes if self.binary else str), raw
        answer = msgspec.msgpack.decode(raw) if self.binary else json.loads(raw)
        assert answer["request"]["action"] == action, answer
        return int(answer["headers"]["status"]), answer["body"]

    def ok(self, status: int, action: str, body: dict[str, Any] | None = None) -> Any:
        """The body of a response that must have ``status``."""
        found, answer = self.request(action, body)
        assert found == status, (action, found, answer)
        return answer


@pytest.fixture(scope="module")
def ws_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TidingsServer]:
    data_dir: Path = tmp_path_factory.mktemp("ws-actions")
    srv = TidingsServer(
        data_dir,
        env={
            "TIDINGS_ADMIN_MODE": "true",
            # Webhook subscribers on loopback, never called (nothing is posted to them).
            "TIDINGS_NOTIFICATION__SUBSCRIBER_DENY_NETWORKS": "[]",
        },
    )
    srv.start()
    yield srv
    srv.stop()


@contextmanager
def open_socket(server: TidingsServer, binary: bool) -> Iterator[Socket]:
    url = "ws" + server.url.removeprefix("http") + "/"
    with connect(url, open_timeout=FRAME_BOUND, max_size=None) as ws:
        yield Socket(ws, binary=binary)


@ENCODINGS
def test_queue_actions(ws_server: TidingsServer, binary: bool) -> None:
    with open_socket(ws_server, binary) as s:
        assert s.ok(201, "queue_create", {"queue_name": "wq1"}) == "Queue wq1 created."
        # Zaqar: 204 (with the same sentence) when it existed.
        assert s.ok(204, "queue_create", {"queue_name": "wq1"}) == "Queue wq1 created."
        s.ok(201, "queue_create", {"queue_name": "wq2", "metadata": {"colour": "blue"}})
        metadata = s.ok(200, "queue_get", {"queue_name": "wq2"})
        assert metadata["colour"] == "blue"
        assert metadata["_default_message_ttl"] == 3600  # defaults shown, as over HTTP
        assert s.ok(200, "queue_list") == {"queues": [{"name": "wq1"}, {"name": "wq2"}]}
        page = s.ok(200, "queue_list", {"limit": 1, "detailed": True})
        assert [q["name"] for q in page["queues"]] == ["wq1"]
        assert "links" not in page  # no paging links over WebSocket
        assert page["queues"][0]["metadata"]["_max_messages_post_size"] == 262144
        after = s.ok(200, "queue_list", {"marker": "wq1"})
        assert after == {"queues": [{"name": "wq2"}]}
        stats = s.ok(200, "queue_get_stats", {"queue_name": "wq1"})
        assert stats == {"messages": {"claimed": 0, "free": 0, "total": 0}}
        assert s.ok(204, "queue_purge", {"queue_name": "wq2"}) == {}
        s.ok(204, "queue_purge", {"queue_name": "wq2", "resource_types": ["messages"]})
        assert s.ok(204, "queue_delete", {"queue_name": "wq1"}) == "Queue wq1 removed."
        assert s.ok(200, "queue_list") == {"queues": [{"name": "wq2"}]}


@ENCODINGS
def test_message_and_claim_actions(ws_server: TidingsServer, binary: bool) -> None:
    q = {"queue_name": "wm1"}
    with open_socket(ws_server, binary) as s:
        posted = s.ok(
            201,
            "message_post",
            {**q, "messages": [{"body": {"n": 1}, "ttl": 300}, {"body": "two"}]},
        )
        ids = posted["message_ids"]
        assert list(posted) == ["message_ids"] and len(ids) == 2
        # Own messages are hidden unless echo, as over HTTP.
        assert s.ok(200, "message_list", q) == {"messages": []}
        listed = s.ok(200, "message_list", {**q, "echo": True})
        assert [(m["id"], m["body"], m["ttl"], m["claim_id"]) for m in listed["messages"]] == [
            (ids[0], {"n": 1}, 300, None),
            (ids[1], "two", 3600, None),
        ]
        assert set(listed["messages"][0]) == {"id", "claim_id", "ttl", "age", "body"}
        assert "links" not in listed
        # One message comes wrapped in "messages" too (Zaqar's shape).
        one = s.ok(200, "message_get", {**q, "message_id": ids[0]})
        assert one["messages"]["id"] == ids[0] and one["messages"]["body"] == {"n": 1}
        many = s.ok(200, "message_get_many", {**q, "message_ids": ids})
        assert sorted(m["id"] for m in many["messages"]) == sorted(ids)
        stats = s.ok(200, "queue_get_stats", q)["messages"]
        assert (stats["total"], stats["free"], stats["claimed"]) == (2, 2, 0)

        claim = s.ok(201, "claim_create", {**q, "limit": 1, "ttl": 60, "grace": 60})
        claim_id = claim["claim_id"]
        assert [(m["id"], m["claim_id"]) for m in claim["messages"]] == [(ids[0], claim_id)]
        shown = s.ok(200, "claim_get", {**q, "claim_id": claim_id})
        assert shown["ttl"] == 60 and [m["id"] for m in shown["messages"]] == [ids[0]]
        assert (
            s.ok(204, "claim_update", {**q, "claim_id": claim_id, "ttl": 120})
            == f"Claim {claim_id} updated."
        )
        assert s.ok(200, "claim_get", {**q, "claim_id": claim_id})["ttl"] == 120
        # A claimed message needs its claim to be deleted: a domain error (403).
        status, refused = s.request("message_delete", {**q, "message_id": ids[0]})
        assert status == 403 and refused["error"] is None, refused
        assert "claimed" in refused["exception"]
        s.ok(204, "message_delete", {**q, "message_id": ids[0], "claim_id": claim_id})
        assert s.ok(204, "claim_delete", {**q, "claim_id": claim_id}) == (
            f"Claim {claim_id} deleted."
        )
        status, missing = s.request("claim_get", {**q, "claim_id": claim_id})
        assert status == 404 and missing["error"] is None, missing

        popped = s.ok(200, "message_delete_many", {**q, "pop": 1})
        assert [(m["id"], m["body"]) for m in popped["messages"]] == [(ids[1], "two")]
        assert s.ok(204, "claim_create", q) == {"claim_id": None}  # nothing to claim

        more = s.ok(201, "message_post", {**q, "messages": [{"body": 3}, {"body": 4}]})
        assert s.ok(204, "message_delete_many", {**q, "message_ids": more["message_ids"]}) == {}
        assert s.ok(200, "queue_get_stats", q)["messages"]["total"] == 0


@ENCODINGS
def test_subscription_actions(ws_server: TidingsServer, binary: bool) -> None:
    q = {"queue_name": "wq5"}
    hook = {**q, "subscriber": "http://127.0.0.1:9/hook", "ttl": 3600, "options": {"a": 1}}
    with open_socket(ws_server, binary) as s:
        created = s.ok(201, "subscription_create", hook)
        subscription_id = created["subscription_id"]
        assert created == {
            "subscription_id": subscription_id,
            "message": "Subscription wq5 created.",
        }
        # Zaqar's WebSocket API answers every duplicate 409 with a sentence.
        assert s.ok(409, "subscription_create", hook) == "Subscription wq5 not created."
        ref = {**q, "subscription_id": subscription_id}
        shown = s.ok(200, "subscription_get", ref)
        assert (shown["id"], shown["source"], shown["subscriber"], shown["options"]) == (
            subscription_id,
            "wq5",
            "http://127.0.0.1:9/hook",
            {"a": 1},
        )
        assert s.ok(200, "subscription_list", q) == {"subscriptions": [shown]}
        assert s.ok(204, "subscription_update", {**ref, "ttl": 7200}) == (
            f"Subscription {subscription_id} updated."
        )
        assert s.ok(200, "subscription_get", ref)["ttl"] == 7200
        assert s.ok(204, "subscription_confirm", {**ref, "confirmed": True}) == (
            f"Subscription {subscription_id} confirmed."
        )
        assert s.ok(200, "subscription_get", ref)["confirmed"] is True
        assert s.ok(200, "subscription_failures", ref) == {"failures": []}
        assert s.ok(204, "subscription_delete", ref) == (
            f"Subscription {subscription_id} removed."
        )
        status, missing = s.request("subscription_get", ref)
        assert (status, missing) == (
            404,
            {"exception": f"Subscription {subscription_id} does not exist", "error": None},
        )
        # Without a subscriber the connection itself is subscribed (notify.push).
        pushed = s.ok(201, "subscription_create", {**q, "ttl": 120})
        assert pushed["message"] == "Subscription wq5 created."
        (held,) = s.ok(200, "subscription_list", q)["subscriptions"]
        assert held["id"] == pushed["subscription_id"]
        assert held["subscriber"].startswith("websocket://")
        # A user may not name a websocket subscriber.
        status, refused = s.request("subscription_create", {**q, "subscriber": held["subscriber"]})
        assert status == 400, refused


def test_topic_actions(ws_server: TidingsServer) -> None:
    t = {"topic_name": "wt1"}
    with open_socket(ws_server, False) as s:
        assert s.ok(201, "topic_create", t) == "Topic wt1 created."
        # A topic is not a queue of the same name.
        assert s.ok(200, "queue_list") == {"queues": []}
        assert s.ok(200, "topic_list") == {"topics": [{"name": "wt1"}]}
        posted = s.ok(201, "topic_message_post", {**t, "messages": [{"body": "hi"}]})
        listed = s.ok(200, "topic_message_list", {**t, "echo": True})
        assert [m["id"] for m in listed["messages"]] == posted["message_ids"]
        # queue_name names the topic too.
        stats = s.ok(200, "topic_get_stats", {"queue_name": "wt1"})["messages"]
        assert stats["total"] == 1 and stats["oldest"]["href"].startswith("/v2/topics/wt1/")
        sub = s.ok(201, "topic_subscription_create", {**t, "subscriber": "http://127.0.0.1:9/t"})
        assert sub["message"] == "Subscription wt1 created."
        assert len(s.ok(200, "topic_subscription_list", t)["subscriptions"]) == 1
        assert s.ok(200, "topic_get", t)["_default_message_ttl"] == 3600
        s.ok(204, "topic_purge", t)
        assert s.ok(200, "topic_get_stats", t)["messages"]["total"] == 0
        assert s.ok(204, "topic_delete", t) == "Topic wt1 removed."
        assert s.ok(200, "topic_list") == {"topics": []}
        # Topics have no claims.
        status, answer = s.request("topic_claim_create", t)
        assert (status, answer) == (400, {"error": "topic_claim_create is not a valid action"})


@pytest.mark.parametrize(
    ("action", "body"),
    [
        ("queue_create", {}),
        ("queue_create", {"queue_name": 5}),
        ("message_list", {"queue_name": "q", "limit": "2"}),
        ("message_get", {"queue_name": "q"}),
        ("message_post", {"queue_name": "q"}),
        ("message_post", {"queue_name": "q", "messages": {"body": 1}}),
        ("message_delete_many", {"queue_name": "q", "pop": True}),
        ("claim_create", {"queue_name": "q", "ttl": 1.5}),
        ("claim_update", {"queue_name": "q", "ttl": 60}),
        ("subscription_create", {"queue_name": "q", "options": []}),
        ("subscription_delete", {"queue_name": "q"}),
        ("topic_create", {"queue_name": None}),
    ],
    ids=[
        "create-no-name",
        "create-name-not-string",
        "list-limit-string",
        "get-no-id",
        "post-no-messages",
        "post-messages-object",
        "pop-boolean",
        "claim-ttl-float",
        "claim-update-no-id",
        "subscribe-options-array",
        "unsubscribe-no-id",
        "topic-null-name",
    ],
)
def test_a_body_that_misses_the_schema_is_refused(
    ws_server: TidingsServer, action: str, body: dict[str, Any]
) -> None:
    with open_socket(ws_server, False) as s:
        assert s.request(action, body) == (400, SCHEMA_FAILED)


def test_domain_errors_come_as_zaqar_renders_them(ws_server: TidingsServer) -> None:
    with open_socket(ws_server, False) as s:
        status, answer = s.request("queue_create", {"queue_name": "bad name"})
        assert status == 400 and answer["error"] is None, answer
        assert "queue name" in answer["exception"]
        assert s.request("message_post", {"queue_name": "q", "messages": []}) == (
            400,
            {"exception": "No messages to enqueu.", "error": None},
        )
        assert s.request("message_post", {"queue_name": "q", "messages": [{"ttl": 60}]}) == (
            400,
            {"exception": 'Missing "body" field.', "error": None},
        )
        status, answer = s.request("message_delete_many", {"queue_name": "q"})
        assert status == 400 and '"ids" or "pop"' in answer["exception"], answer
        status, answer = s.request("queue_list", {"limit": 0})
        assert status == 400 and answer["exception"].startswith("Limit must be"), answer


def test_server_actions(ws_server: TidingsServer) -> None:
    with open_socket(ws_server, False) as s:
        home = s.ok(200, "get_home_doc")
        assert "rel/queues" in home["resources"]
        assert s.ok(204, "ping_node") == {}
        # Health is for administrators (policy health:get), as over HTTP.
        assert s.request("check_node_health")[0] == 403
        status, report = s.request("check_node_health", None, **{"X-Roles": "admin"})
        assert status == 200 and report["storage_reachable"] is True, report
        # Pools and flavors: policy first (pools are admin-only), then not configured.
        assert s.request("pool_create", {"pool_name": "p"})[0] == 403
        not_configured = {"exception": "Pools are not configured on this server.", "error": None}
        assert s.request("flavor_list", {}) == (404, not_configured)
        for action in ("pool_list", "pool_get", "flavor_create"):
            assert s.request(action, {}, **{"X-Roles": "admin"}) == (404, not_configured)
