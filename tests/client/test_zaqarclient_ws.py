"""python-zaqarclient's WebSocket transport (``ws://``) end to end against Tidings.

zaqarclient picks the transport by the URL's scheme (``get_transport_for``: ``ws.v2``).
As its own docstring says, that transport sends only a request's ``content`` as the
frame's body and drops ``params``, so its higher-level ``Client`` cannot name a queue
over WebSocket (against Zaqar too); it is used through ``Request`` objects, the way the
transport documents. It authenticates first (``authenticate`` with ``X-Auth-Token``),
which a noauth server accepts.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from zaqarclient.transport import errors, get_transport_for
from zaqarclient.transport.base import Transport
from zaqarclient.transport.request import Request

from tests.server import TidingsServer


class WsClient:
    def __init__(self, server: TidingsServer) -> None:
        self.endpoint = "ws" + server.url.removeprefix("http") + "/"
        options = {
            "auth_opts": {
                "backend": "keystone",
                "options": {
                    "os_auth_token": "unused-under-noauth",
                    "os_project_id": f"zcws-{uuid.uuid4().hex[:12]}",
                },
            }
        }
        self.transport: Transport = get_transport_for(self.endpoint, version=2, options=options)

    def send(self, operation: str, body: dict[str, Any]) -> tuple[int, Any]:
        request = Request(self.endpoint, operation, content=json.dumps(body))
        response = self.transport.send(request)
        return int(response.status_code), response.deserialized_content


@pytest.fixture
def ws(server: TidingsServer) -> Iterator[WsClient]:
    client = WsClient(server)
    with client.transport:
        yield client


def test_queue_post_list_claim_delete(ws: WsClient) -> None:
    assert type(ws.transport).__name__ == "WebsocketTransport"
    q = {"queue_name": "zws1"}
    assert ws.send("queue_create", q) == (201, "Queue zws1 created.")
    assert ws.send("queue_list", {}) == (200, {"queues": [{"name": "zws1"}]})

    status, posted = ws.send(
        "message_post", {**q, "messages": [{"body": {"n": i}, "ttl": 300} for i in range(3)]}
    )
    assert status == 201
    ids = posted["message_ids"]
    assert len(ids) == 3

    status, listed = ws.send("message_list", {**q, "echo": True})
    assert status == 200
    assert [(m["id"], m["body"]) for m in listed["messages"]] == [
        (ids[i], {"n": i}) for i in range(3)
    ]

    status, claim = ws.send("claim_create", {**q, "limit": 2, "ttl": 60, "grace": 60})
    assert status == 201
    claim_id = claim["claim_id"]
    assert [m["id"] for m in claim["messages"]] == ids[:2]
    for message_id in ids[:2]:
        deleted = ws.send("message_delete", {**q, "message_id": message_id, "claim_id": claim_id})
        assert deleted == (204, {})
    assert ws.send("claim_delete", {**q, "claim_id": claim_id}) == (
        204,
        f"Claim {claim_id} deleted.",
    )
    status, rest = ws.send("message_list", {**q, "echo": True})
    assert [m["id"] for m in rest["messages"]] == ids[2:]

    assert ws.send("queue_delete", q) == (204, "Queue zws1 removed.")
    assert ws.send("queue_list", {}) == (200, {"queues": []})


def test_errors_become_zaqarclient_exceptions(ws: WsClient) -> None:
    with pytest.raises(errors.MalformedRequest):
        ws.send("queue_create", {})  # schema failure
    with pytest.raises(errors.MalformedRequest):
        ws.send("queue_create", {"queue_name": "bad name"})
    with pytest.raises(errors.ResourceNotFound):
        ws.send("message_get", {"queue_name": "zws2", "message_id": uuid.uuid4().hex})
    # The connection is still good after errors.
    assert ws.send("queue_create", {"queue_name": "zws2"})[0] == 201
