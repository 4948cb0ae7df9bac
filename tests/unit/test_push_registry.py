"""Push to WebSocket connections (``tidings.notify.push``) over a real SQLite store.

The outbox, the dispatcher and the store are real; the connection is a small in-test
``PushTarget`` that collects its frames (real WebSocket connections are tested end to
end in tests/ws/test_push.py and tests/reliability/test_push_nodes.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import msgspec
import pytest

from tests.unit.push_nodes import Connection, Node, caller, node
from tidings.errors import BadRequest, TidingsError
from tidings.model import Subscription
from tidings.notify.dispatcher import host_of
from tidings.notify.push import (
    parse_subscriber,
    subscribe_connection,
)
from tidings.ops import messages, subscriptions
from tidings.ops.context import Caller, Services

pytestmark = pytest.mark.anyio

Q = "pushed"
# Seconds a push may take before the test fails: bounds a loaded machine, not speed.
BOUND = 10.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def post(svc: Services, who: Caller, body: str, queue: str = Q) -> str:
    raw = json.dumps({"messages": [{"body": body, "ttl": 120}]}).encode()
    ids = await messages.message_post(svc, who, queue, raw, len(raw))
    return ids[0]


async def frames_of(connection: Connection, count: int) -> list[str | bytes]:
    async with asyncio.timeout(BOUND):
        while len(connection.frames) < count:
            await asyncio.sleep(0.01)
    return connection.frames


async def stored(n: Node, who: Caller, subscription_id: str, now: float) -> Subscription | None:
    return await n.storage.subscriptions.get(who.project, Q, subscription_id, now)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "msgpack"])
async def test_a_post_is_pushed_as_the_raw_notification(tmp_path: Path, binary: bool) -> None:
    async with node(tmp_path / "push.db") as n:
        connection, who = Connection(), caller()
        n.registry.register(connection)
        await subscribe_connection(n.svc, who, Q, None, None, connection, binary)
        message_id = await post(n.svc, caller(who.project), "hello")
        (frame,) = await frames_of(connection, 1)
    if binary:
        assert isinstance(frame, bytes)
        document = msgspec.msgpack.decode(frame)
    else:
        assert isinstance(frame, str)
        document = json.loads(frame)
    # Zaqar's notification, not wrapped in a response envelope (plus id and href).
    assert document == {
        "ttl": 120,
        "body": "hello",
        "Message_Type": "Notification",
        "queue_name": Q,
        "message_id": message_id,
        "href": f"/v2/queues/{Q}/messages/{message_id}",
    }


async def test_the_subscription_is_the_connections_own(tmp_path: Path) -> None:
    async with node(tmp_path / "push.db", lease=60) as n:
        connection, who = Connection(), caller()
        n.registry.register(connection)
        require = n.svc.settings  # confirmation is off by default; the op confirms anyway
        assert not require.notification.require_confirmation
        view, created = await subscribe_connection(
            n.svc, who, Q, 3600, {"k": "v"}, connection, False
        )
        assert created
        assert view.ttl == 3600  # what the client asked for
        assert parse_subscriber(view.subscriber) == (n.registry.node_id, connection.connection_id)
        found = await stored(n, who, view.id, time.time())
        assert found is not None and found.confirmed and found.options == {"k": "v"}
        assert found.ttl == 60  # stored for a lease, renewed while the connection lives
        # A second subscribe of the same connection to the same queue is a duplicate.
        again, created = await subscribe_connection(n.svc, who, Q, None, None, connection, True)
        assert not created and again.id == view.id
        assert n.registry.held(connection.connection_id) == {view.id: Q}


async def test_closing_the_connection_deletes_its_subscriptions(tmp_path: Path) -> None:
    async with node(tmp_path / "push.db") as n:
        connection, other, who = Connection(), Connection(), caller()
        for c in (connection, other):
            n.registry.register(c)
        mine, _ = await subscribe_connection(n.svc, who, Q, None, None, connection, False)
        theirs, _ = await subscribe_connection(n.svc, who, Q, None, None, other, False)
        n.registry.connection_closed(connection.connection_id)
        async with asyncio.timeout(BOUND):
            while await stored(n, who, mine.id, time.time()) is not None:
                await asyncio.sleep(0.01)
        assert await stored(n, who, theirs.id, time.time()) is not None
        # A closed connection cannot subscribe (nothing would read or delete it).
        with pytest.raises(TidingsError) as raised:
            await subscribe_connection(n.svc, who, Q, None, None, connection, False)
        assert raised.value.status == 503


async def test_the_lease_is_renewed_only_while_the_node_lives(tmp_path: Path) -> None:
    now = [1_700_000_000.0]
    async with node(tmp_path / "push.db", lease=60, clock=lambda: now[0], dispatch=False) as n:
        connection, who = Connection(), caller()
        n.registry.register(connection)
        long, _ = await subscribe_connection(n.svc, who, Q, 3600, None, connection, False)
        short, _ = await subscribe_connection(n.svc, who, "short", 100, None, connection, False)
        start = now[0]
        now[0] = start + 50
        await n.registry.renew()
        renewed = await stored(n, who, long.id, now[0])
        assert renewed is not None and renewed.expires == start + 50 + 60
        # Never past the ttl the client asked for.
        capped = await n.storage.subscriptions.get(who.project, "short", short.id, now[0])
        assert capped is not None and capped.expires == start + 100
        # A node that stops renewing (it died) leaks them for at most a lease.
        assert await stored(n, who, long.id, start + 50 + 61) is None


async def test_a_push_reaches_only_what_the_connection_holds(tmp_path: Path) -> None:
    async with node(tmp_path / "push.db", dispatch=False) as n:
        connection, who = Connection(project="p1"), caller("p1")
        n.registry.register(connection)
        view, _ = await subscribe_connection(n.svc, who, Q, None, None, connection, False)
        document = b'{"body": 1}'
        n.registry.deliver(connection.connection_id, view.id, "p2", document)  # other tenant
        n.registry.deliver(connection.connection_id, "not-held", "p1", document)
        n.registry.deliver("no-such-connection", view.id, "p1", document)
        assert connection.frames == []
        n.registry.deliver(connection.connection_id, view.id, "p1", document)
        assert connection.frames == ['{"body": 1}']


async def test_a_push_is_relayed_to_the_node_holding_the_connection(tmp_path: Path) -> None:
    async with (
        node(tmp_path / "shared.db") as a,
        node(tmp_path / "shared.db", dispatch=False) as b,
    ):
        assert a.registry.node_id != b.registry.node_id
        connection, who = Connection(), caller()
        b.registry.register(connection)
        await subscribe_connection(b.svc, who, Q, None, None, connection, True)
        await post(a.svc, caller(who.project), "via-a")  # only A dispatches
        (frame,) = await frames_of(connection, 1)
    assert isinstance(frame, bytes)
    assert msgspec.msgpack.decode(frame)["body"] == "via-a"


async def test_nobody_names_a_websocket_subscriber(tmp_path: Path) -> None:
    async with node(tmp_path / "push.db", dispatch=False) as n:
        who = caller()
        for subscriber in ("websocket://node/connection", "WebSocket://node/connection"):
            with pytest.raises(BadRequest):
                await subscriptions.subscription_create(n.svc, who, Q, {"subscriber": subscriber})
        hook, _ = await subscriptions.subscription_create(
            n.svc, who, Q, {"subscriber": "http://example.invalid/hook"}
        )
        with pytest.raises(BadRequest):
            await subscriptions.subscription_update(
                n.svc, who, Q, hook, {"subscriber": "websocket://node/connection"}
            )
        # A connection's own subscription: neither its subscriber nor its ttl changes.
        connection = Connection()
        n.registry.register(connection)
        view, _ = await subscribe_connection(n.svc, who, "q2", None, None, connection, False)
        for change in ({"ttl": 600}, {"subscriber": "http://example.invalid/x"}):
            with pytest.raises(TidingsError) as raised:
                await subscriptions.subscription_update(n.svc, who, "q2", view.id, change)
            assert raised.value.status == 400


def test_slots_are_counted_per_connection() -> None:
    assert host_of("websocket://node1/conn-a") != host_of("websocket://node1/conn-b")
    assert host_of("http://example.com/a") == host_of("http://example.com:80/b")
