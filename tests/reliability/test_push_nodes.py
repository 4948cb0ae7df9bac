"""Push across nodes: two server processes on one store (Redis, PostgreSQL, SQLite file).

A message posted over HTTP on node A reaches a WebSocket connection held by node B
(A's dispatcher takes the delivery and relays it through the store's change feed); the
connection's subscription lives as long as the connection, renewed lease by lease, and
when B is killed (SIGKILL: no shutdown code runs) it expires within a lease.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx

from tests.server import TidingsServer, wait_until
from tests.ws.push_client import ZaqarSocket, ws_url

LEASE = 2  # seconds: [websocket] push_lease, short so that a dead node's subscriptions lapse
NODE = {"TIDINGS_WEBSOCKET__PUSH_LEASE": str(LEASE)}
# B's dispatcher, idle, waits this long between rounds (nothing on B rings it), so the
# deliveries of A's posts are taken by A's dispatcher: what reaches B is A's relay.
QUIET = {**NODE, "TIDINGS_NOTIFICATION__POLL_INTERVAL": "300"}


def live_subscribers(api: httpx.Client, queue: str) -> list[str]:
    answer = api.get(f"/queues/{queue}/subscriptions")
    assert answer.status_code == 200, answer.text
    return [s["subscriber"] for s in answer.json()["subscriptions"]]


def test_post_on_one_node_reaches_a_connection_on_another(
    make_server: type[TidingsServer], tmp_path: Path
) -> None:
    a = make_server(tmp_path, env=NODE)
    a.start()
    b = make_server(tmp_path, env=QUIET, store_uri=a.store_uri)
    b.start()
    project, queue = f"push-{uuid.uuid4().hex[:8]}", "across"
    with a.client(project) as api, ZaqarSocket(ws_url(b.url), project, binary=True) as socket:
        socket.subscribe_self(queue)
        for n in range(3):
            posted = api.post(f"/queues/{queue}/messages", json={"messages": [{"body": n}]})
            assert posted.status_code == 201, posted.text
        bodies = {socket.receive()["body"] for _ in range(3)}
        assert bodies == {0, 1, 2}

        # Alive for several leases while the connection lives: B renews it.
        subscribed = time.monotonic()

        def renewed_for_three_leases() -> bool:
            (subscriber,) = live_subscribers(api, queue)  # fails at once if it lapsed
            assert subscriber.startswith("websocket://")
            return time.monotonic() - subscribed > 3 * LEASE

        wait_until(renewed_for_three_leases, "three leases to pass", interval=0.2)

        b.kill()  # no shutdown code: nothing deletes the subscription, it must lapse
        wait_until(lambda: not live_subscribers(api, queue), "the dead node's subscription")
