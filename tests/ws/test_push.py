"""Push to a WebSocket connection (spec 8.5) on one server, over real connections.

``subscription_create`` without a subscriber subscribes the connection itself; a
message posted over HTTP then arrives as Zaqar's bare notification frame, in the
encoding of the frame that subscribed; closing the connection deletes the subscription.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.server import TidingsServer, wait_until
from tests.ws.push_client import ZaqarSocket, ws_url


def subscribers(api: httpx.Client, queue: str) -> list[str]:
    answer = api.get(f"/queues/{queue}/subscriptions")
    assert answer.status_code == 200, answer.text
    return [s["subscriber"] for s in answer.json()["subscriptions"]]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "msgpack"])
def test_a_post_over_http_is_pushed_to_the_connection(
    server: TidingsServer, api: httpx.Client, binary: bool
) -> None:
    project = str(api.headers["X-Project-ID"])
    queue = f"push-{uuid.uuid4().hex[:8]}"
    with ZaqarSocket(ws_url(server.url), project, binary=binary) as socket:
        socket.subscribe_self(queue, ttl=120)
        posted = api.post(
            f"/queues/{queue}/messages", json={"messages": [{"body": "from-http", "ttl": 120}]}
        )
        assert posted.status_code == 201, posted.text
        message_id = posted.json()["resources"][0].rsplit("/", 1)[1]
        # Not wrapped in a response envelope: the raw notification.
        assert socket.receive() == {
            "ttl": 120,
            "body": "from-http",
            "Message_Type": "Notification",
            "queue_name": queue,
            "message_id": message_id,
            "href": f"/v2/queues/{queue}/messages/{message_id}",
        }


def test_closing_the_connection_deletes_its_subscription(
    server: TidingsServer, api: httpx.Client
) -> None:
    project = str(api.headers["X-Project-ID"])
    queue = f"push-{uuid.uuid4().hex[:8]}"
    with ZaqarSocket(ws_url(server.url), project) as socket:
        socket.subscribe_self(queue)
        (subscriber,) = subscribers(api, queue)
        assert subscriber.startswith("websocket://")
        # The same connection subscribing again is a duplicate (Zaqar over WS: 409).
        status, body = socket.request("subscription_create", {"queue_name": queue})
        assert status == 409, body
    wait_until(lambda: not subscribers(api, queue), "the subscription to be deleted")


def test_nobody_names_a_websocket_subscriber(server: TidingsServer, api: httpx.Client) -> None:
    project = str(api.headers["X-Project-ID"])
    queue = f"push-{uuid.uuid4().hex[:8]}"
    forged = "websocket://some-node/some-connection"
    answer = api.post(f"/queues/{queue}/subscriptions", json={"subscriber": forged})
    assert answer.status_code == 400, answer.text
    with ZaqarSocket(ws_url(server.url), project) as socket:
        status, body = socket.request(
            "subscription_create", {"queue_name": queue, "subscriber": forged}
        )
    assert status == 400, body
    assert not subscribers(api, queue)
