"""Pooled mode, feature by feature, through real pooled servers.

What tests/pooling/test_routing.py does not cover: push to WebSocket connections
relayed between nodes through the management store's feed, the virtual pool, a
deployment with no pool at all, dead letters moved across pools through the HTTP API,
topics, and python-zaqarclient against a pooled server.

The main deployment (one per module): pools on the shared Redis (a key prefix of its
own), a PostgreSQL schema and a SQLite file, and a PostgreSQL management store shared
by two nodes. Where a test needs a queue on a given pool it pins it with a flavor:
each pool is the only pool of one flavor (``on-<pool>``), made in the test's project.

The tests at the end pin faults found here (and fixed): pools added after a node read
the catalog take part in its health report and its delivery dispatcher.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from zaqarclient.queues import client as zaqar
from zaqarclient.queues.v2.client import Client

from tests import notify_listeners
from tests.backends import (
    drop_postgres_schema,
    drop_redis_prefix,
    postgres_store_uri,
    redis_store_uri,
    unique_name,
)
from tests.notify_listeners import WebhookListener
from tests.pooling.nodes import node_env as pooled_node_env
from tests.server import RESERVED_DEFAULTS, TidingsServer, wait_until
from tests.ws.push_client import ZaqarSocket, ws_url
from tests.ws.wire import Wire
from tidings.config import StorageSettings
from tidings.namespace import TOPIC_NAMESPACE
from tidings.pooling.router import shadow_queue
from tidings.storage import storage_for_uri

webhook_listener = notify_listeners.webhook_listener

ADMIN = {"X-Roles": "admin"}
SETTINGS = StorageSettings(operation_timeout=2.0)
POOLS = ("redis", "pg", "lite")
# Three groups, only to spread the servers over three workers (-n 3 --dist loadgroup):
# the main deployment; the other relaying deployments and the virtual pool; the node
# without a pool and the takeover of deliveries.
GROUP = pytest.mark.xdist_group("pooled-features")
RELAY_GROUP = pytest.mark.xdist_group("pooled-features-relay")
BARE_GROUP = pytest.mark.xdist_group("pooled-features-bare")
UNAVAILABLE = "Service temporarily unavailable"
# Queues may encrypt their messages at rest (``_enable_encrypt_messages``).
KEYS = json.dumps([{"id": "k1", "key": base64.b64encode(os.urandom(32)).decode()}])
SEALED = b'"tidings-aes256gcm-v1:'


def node_env(management: str, **extra: str) -> dict[str, str]:
    return pooled_node_env(management, TIDINGS_TRANSPORT__MESSAGE_ENCRYPTION_KEYS=KEYS, **extra)


@dataclass
class Deployment:
    nodes: list[TidingsServer]
    management: str
    uris: dict[str, str]  # pool name -> its store

    def client(self, node: int, project: str) -> httpx.Client:
        return self.nodes[node].client(project)

    def placement(self, project: str, queue: str) -> str | None:
        return asyncio.run(_placement(self.management, project, queue))


async def _placement(management: str, project: str, queue: str) -> str | None:
    store = storage_for_uri(management, SETTINGS)
    await store.open()
    try:
        return await store.catalog.placement_get(project, queue)
    finally:
        await store.close()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("pooled-features")
    prefix, schema, management_schema = unique_name("r"), unique_name("p"), unique_name("m")
    uris = {
        "redis": redis_store_uri(prefix),
        "pg": postgres_store_uri(schema),
        "lite": f"sqlite:///{root / 'lite.db'}",
    }
    management = postgres_store_uri(management_schema)
    nodes = [
        TidingsServer(root / "node-1", env=node_env(management)),
        # The second node's dispatcher wakes by itself only once a minute: a post on the
        # first node is delivered by the first node's dispatcher, so a push to a
        # connection held by the second is relayed through the management store.
        TidingsServer(
            root / "node-2", env=node_env(management, TIDINGS_NOTIFICATION__POLL_INTERVAL="60")
        ),
    ]
    try:
        nodes[0].start()
        with nodes[0].client("operator") as api:
            for name in POOLS:
                made = api.put(f"/pools/{name}", json={"uri": uris[name], "weight": 100},
                               headers=ADMIN)  # fmt: skip
                assert made.status_code == 201, made.text
        # Started once the pools exist, so that it has read them (see ``relaying``).
        nodes[1].start()
        yield Deployment(nodes, management, uris)
    finally:
        for node in nodes:
            node.stop()
        asyncio.run(drop_redis_prefix(prefix))
        for name in (schema, management_schema):
            asyncio.run(drop_postgres_schema(name))


def pinning(api: httpx.Client) -> None:
    """Flavors ``on-<pool>`` in the client's project, each of one pool."""
    for pool in POOLS:
        made = api.put(f"/flavors/on-{pool}", json={"pool_list": [pool]}, headers=ADMIN)
        assert made.status_code in (201, 204), made.text


def make_queue(api: httpx.Client, name: str, pool: str, **metadata: Any) -> None:
    made = api.put(f"/queues/{name}", json={"_flavor": f"on-{pool}", **metadata})
    assert made.status_code == 201, made.text


def post(api: httpx.Client, queue: str, *bodies: Any, ttl: int = 3600) -> list[str]:
    posted = api.post(
        f"/queues/{queue}/messages", json={"messages": [{"body": b, "ttl": ttl} for b in bodies]}
    )
    assert posted.status_code == 201, posted.text
    return [href.rsplit("/", 1)[1] for href in posted.json()["resources"]]


def listed(api: httpx.Client, queue: str, collection: str = "queues") -> list[dict[str, Any]]:
    answer = api.get(
        f"/{collection}/{queue}/messages", params={"echo": "true", "include_claimed": "true"}
    )
    assert answer.status_code in (200, 204), answer.text
    return list(answer.json()["messages"]) if answer.status_code == 200 else []


def queue_names(api: httpx.Client, collection: str = "queues") -> list[str]:
    answer = api.get(f"/{collection}", params={"limit": 20})
    assert answer.status_code == 200, answer.text
    return [q["name"] for q in answer.json()[collection]]


def stats(api: httpx.Client, queue: str) -> dict[str, int]:
    """The counts of a queue's stats."""
    answer = api.get(f"/queues/{queue}/stats")
    assert answer.status_code == 200, answer.text
    found = answer.json()["messages"]
    return {key: found[key] for key in ("claimed", "free", "total")}


def new_project(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:8]}"


def stored(uri: str, project: str, queue: str) -> list[bytes]:
    """The bodies, as stored, that the store at ``uri`` holds for the queue."""

    async def read() -> list[bytes]:
        store = storage_for_uri(uri, SETTINGS)
        await store.open()
        try:
            page = await store.messages.page(
                project, queue, marker=None, limit=20, exclude_client=None,
                include_claimed=True, include_delayed=True, now=time.time(),
            )  # fmt: skip
        finally:
            await store.close()
        return [m.body for m in page.messages]

    return asyncio.run(read())


def stored_bodies(uri: str, project: str, queue: str) -> list[Any]:
    return [msgspec.json.decode(body) for body in stored(uri, project, queue)]


# ------------------------------------------------------------------ WebSocket push


@GROUP
@pytest.mark.parametrize("pool", POOLS)
def test_a_push_reaches_a_connection_on_the_other_node(deployment: Deployment, pool: str) -> None:
    project = new_project("push")
    queue = f"pushed-{pool}"
    with deployment.client(0, project) as first, deployment.client(1, project) as second:
        pinning(first)
        make_queue(first, queue, pool)
        assert deployment.placement(project, queue) == pool
        with ZaqarSocket(ws_url(deployment.nodes[1].url), project) as socket:
            socket.subscribe_self(queue, ttl=300)
            (subscriber,) = [
                s["subscriber"]
                for s in first.get(f"/queues/{queue}/subscriptions").json()["subscriptions"]
            ]
            assert subscriber.startswith("websocket://")
            ids = post(first, queue, {"n": 1}, {"n": 2}, ttl=120)
            frames = [socket.receive(), socket.receive()]
            frames.sort(key=lambda f: f["body"]["n"])
            # Not wrapped in a response envelope: the raw notification, as on one node.
            assert frames == [
                {
                    "ttl": 120,
                    "body": {"n": n},
                    "Message_Type": "Notification",
                    "queue_name": queue,
                    "message_id": message_id,
                    "href": f"/v2/queues/{queue}/messages/{message_id}",
                }
                for n, message_id in zip((1, 2), ids, strict=True)
            ]
        # Closing the connection deletes its subscription (in the queue's pool); the
        # queue, still registered, stays placed.
        wait_until(
            lambda: not second.get(f"/queues/{queue}/subscriptions").json()["subscriptions"],
            "the connection's subscription to be deleted",
        )
    assert deployment.placement(project, queue) == pool


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def relaying(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[TidingsServer]]:
    """Two nodes sharing a management store of another driver (the main deployment's
    is PostgreSQL), over one SQLite pool; each node's dispatcher wakes by itself only
    once a minute, so a post is delivered by the node it was made on."""
    kind: str = request.param
    root = tmp_path_factory.mktemp(f"pooled-relay-{kind}")
    prefix = unique_name("m")
    management = redis_store_uri(prefix) if kind == "redis" else f"sqlite:///{root / 'm.db'}"
    slow = node_env(management, TIDINGS_NOTIFICATION__POLL_INTERVAL="60")
    nodes = [TidingsServer(root / f"node-{n}", env=slow) for n in (1, 2)]
    try:
        nodes[0].start()
        with nodes[0].client("operator") as api:
            pool = {"uri": f"sqlite:///{root / 'pool.db'}", "weight": 100}
            made = api.put("/pools/only", json=pool, headers=ADMIN)
            assert made.status_code == 201, made.text
        # Started once the pool exists. Started before, it may answer 503 ("pool only is
        # not in the catalog") when routed to the pool within 0.1 s of its last read of
        # the catalog (Router.store: the forced refresh is skipped under
        # FORCED_REFRESH_INTERVAL), which a test cannot provoke at will.
        nodes[1].start()
        yield nodes
    finally:
        for node in nodes:
            node.stop()
        if kind == "redis":
            asyncio.run(drop_redis_prefix(prefix))


@RELAY_GROUP
def test_pushes_are_relayed_both_ways(relaying: list[TidingsServer]) -> None:
    project = new_project("relay")
    queue = "both-ways"
    first, second = relaying
    with (
        first.client(project) as api_1,
        second.client(project) as api_2,
        ZaqarSocket(ws_url(first.url), project, binary=True) as on_1,
        ZaqarSocket(ws_url(second.url), project) as on_2,
    ):
        on_1.subscribe_self(queue, ttl=300)  # places the queue, from the first node
        on_2.subscribe_self(queue, ttl=300)
        (from_1,) = post(api_1, queue, "from node 1")
        (from_2,) = post(api_2, queue, "from node 2")
        for socket in (on_1, on_2):  # each gets both, whichever node posted
            got = sorted([socket.receive(), socket.receive()], key=lambda f: f["body"])
            assert [(f["body"], f["message_id"], f["queue_name"]) for f in got] == [
                ("from node 1", from_1, queue),
                ("from node 2", from_2, queue),
            ]


# ------------------------------------------------------------------ dead letters


def claim(api: httpx.Client, queue: str) -> httpx.Response:
    return api.post(f"/queues/{queue}/claims", json={"ttl": 60, "grace": 60})


def claim_past_the_count(api: httpx.Client, queue: str, message_id: str) -> None:
    """Claim the message once (its count becomes 1) and release it; the next claim
    finds it at ``_max_claim_count`` 1 and moves it to the dead-letter queue."""
    first = claim(api, queue)
    assert first.status_code == 201, first.text
    assert [m["id"] for m in first.json()["messages"]] == [message_id]
    released = api.delete(first.headers["location"].removeprefix("/v2"))
    assert released.status_code == 204, released.text
    second = claim(api, queue)
    assert second.status_code == 204, second.text


@GROUP
@pytest.mark.parametrize(
    ("source_pool", "dead_pool", "encrypted"),
    [("redis", "pg", False), ("lite", "redis", True)],
    ids=["redis-to-pg", "lite-to-redis-encrypted"],
)
def test_dead_letters_move_to_a_queue_on_another_pool(
    deployment: Deployment, source_pool: str, dead_pool: str, encrypted: bool
) -> None:
    project = new_project("dlq")
    with deployment.client(0, project) as api, deployment.client(1, project) as other:
        pinning(api)
        make_queue(api, "dead", dead_pool)
        make_queue(api, "jobs", source_pool, _dead_letter_queue="dead", _max_claim_count=1,
                   _dead_letter_queue_messages_ttl=300,
                   _enable_encrypt_messages=encrypted)  # fmt: skip
        assert deployment.placement(project, "dead") == dead_pool
        assert deployment.placement(project, "jobs") == source_pool
        (message_id,) = post(api, "jobs", {"job": 7})
        claim_past_the_count(api, "jobs", message_id)

        assert listed(api, "jobs") == []
        assert stats(api, "jobs")["total"] == 0
        for client in (api, other):  # either node finds it in the other pool
            (moved,) = listed(client, "dead")
            assert moved["body"] == {"job": 7}
            assert moved["ttl"] == 300
        assert stats(api, "dead")["total"] == 1
        assert deployment.placement(project, "dead") == dead_pool
        # In the dead-letter queue's pool (still sealed, if it was), none left on the way.
        (at_rest,) = stored(deployment.uris[dead_pool], project, "dead")
        assert at_rest.startswith(SEALED) is encrypted
        assert stored(deployment.uris[source_pool], project, shadow_queue("dead")) == []
        # Only the two queues: the pool's staging of dead letters is no queue of the client.
        assert queue_names(api) == ["dead", "jobs"]
        taken = claim(other, "dead")
        assert taken.status_code == 201, taken.text
        assert [m["body"] for m in taken.json()["messages"]] == [{"job": 7}]


@GROUP
@pytest.mark.parametrize("made_first", [True, False], ids=["made", "unmade"])
def test_dead_letters_move_within_one_pool(deployment: Deployment, made_first: bool) -> None:
    """A dead-letter queue on the source's pool, made beforehand or first made by the
    move (then placed on the source's pool and listed)."""
    project = new_project("dlq-same")
    with deployment.client(0, project) as api:
        pinning(api)
        if made_first:
            make_queue(api, "dead", "lite")
        make_queue(api, "jobs", "lite", _dead_letter_queue="dead", _max_claim_count=1)
        (message_id,) = post(api, "jobs", {"job": 8})
        claim_past_the_count(api, "jobs", message_id)

        assert listed(api, "jobs") == []
        (moved,) = listed(api, "dead")
        assert (moved["id"], moved["body"]) == (message_id, {"job": 8})
        assert deployment.placement(project, "dead") == "lite"
        assert queue_names(api) == ["dead", "jobs"]
        popped = api.delete("/queues/dead/messages", params={"pop": 1}).json()["messages"]
        assert [(m["body"], m["claim_count"]) for m in popped] == [({"job": 8}, 1)]


# ------------------------------------------------------------------ topics


@GROUP
def test_a_topics_subscriber_gets_its_messages(deployment: Deployment) -> None:
    project = new_project("topic")
    listener = WebhookListener().start()
    try:
        with deployment.client(0, project) as api, deployment.client(1, project) as other:
            pinning(api)
            made = api.put("/topics/news", json={"color": "red", "_flavor": "on-pg"})
            assert made.status_code == 201, made.text
            # Placed by its flavor, in the project's namespace of topics.
            assert deployment.placement(project + TOPIC_NAMESPACE, "news") == "pg"
            assert deployment.placement(project, "news") is None
            hook = listener.new_path("news")
            subscribed = api.post(
                "/topics/news/subscriptions", json={"subscriber": listener.url(hook), "ttl": 600}
            )
            assert subscribed.status_code == 201, subscribed.text
            posted = api.post("/topics/news/messages", json={"messages": [{"body": {"n": 1}}]})
            assert posted.status_code == 201, posted.text
            (got,) = listener.wait_for(hook, 1)
            assert got.json()["body"] == {"n": 1}
            assert got.json()["topic_name"] == "news"
            # Topics and queues are listed apart, from the shared registry, on either node.
            assert queue_names(other, "topics") == ["news"]
            assert queue_names(other) == []
            assert other.get("/topics/news").json()["color"] == "red"
            assert [m["body"] for m in listed(other, "news", "topics")] == [{"n": 1}]
            assert stored_bodies(deployment.uris["pg"], project + TOPIC_NAMESPACE, "news") == [
                {"n": 1}
            ]
    finally:
        listener.stop()


# ------------------------------------------------------------------ python-zaqarclient


@GROUP
def test_zaqarclient_queue_operations(deployment: Deployment) -> None:
    project = new_project("zc")
    conf = {"auth_opts": {"backend": "noauth", "options": {"os_project_id": project}}}
    client: Client = zaqar.Client(deployment.nodes[0].url, version=2, conf=conf)
    names = ["alpha", "bravo", "charlie"]
    queues = [client.queue(name, force_create=True) for name in names]
    assert all(q.exists() for q in queues)
    assert not client.queue("never", auto_create=False).exists()
    listed_queues, count = client.queues(with_count=True)
    assert ([q.name for q in listed_queues], count) == (names, 3)
    assert {deployment.placement(project, name) for name in names} <= set(POOLS)

    queue = queues[0]
    queue.metadata(new_meta={"description": "orders", "_default_message_ttl": 120})
    assert queue.metadata(force_reload=True)["description"] == "orders"
    result = queue.post([{"body": {"n": n}} for n in range(3)])
    ids = [href.rsplit("/", 1)[1] for href in result["resources"]]
    assert [m.body for m in queue.messages(echo=True)] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert queue.message(ids[0]).ttl == 120
    claimed = queue.claim(ttl=60, grace=60, limit=2)
    held = list(claimed)
    assert [m.body for m in held] == [{"n": 0}, {"n": 1}]
    assert {k: queue.stats["messages"][k] for k in ("claimed", "free", "total")} == {
        "claimed": 2,
        "free": 1,
        "total": 3,
    }
    held[0].delete()
    claimed.delete()
    queue.delete_messages(ids[2])
    assert [m.body for m in queue.messages(echo=True)] == [{"n": 1}]

    # Reads through the other node, sharing the management store.
    other = zaqar.Client(deployment.nodes[1].url, version=2, conf=conf)
    assert [m.body for m in other.queue("alpha", auto_create=False).messages(echo=True)] == [
        {"n": 1}
    ]
    queues[1].delete()
    assert [q.name for q in other.queues()[0]] == ["alpha", "charlie"]


# ------------------------------------------------------------------ no pools


def bare_server(root: Path, **extra: str) -> TidingsServer:
    """A pooled node with its default management store (``management.db`` beside its
    own message store) and no pool."""
    return TidingsServer(
        root,
        env={
            "TIDINGS_POOLING": "true",
            "TIDINGS_ADMIN_MODE": "true",
            "TIDINGS_POOLING_CATALOG__CACHE_TTL": "0.5",
            **extra,
        },
    )


def default_management(server: TidingsServer) -> str:
    return f"sqlite:///{server.data_dir / 'management.db'}"


def add_pool(api: httpx.Client, name: str, uri: str) -> None:
    made = api.put(f"/pools/{name}", json={"uri": uri, "weight": 100}, headers=ADMIN)
    assert made.status_code == 201, made.text


@pytest.fixture
def virtual(tmp_path: Path) -> Iterator[TidingsServer]:
    server = bare_server(tmp_path / "node", TIDINGS_POOLING_CATALOG__ENABLE_VIRTUAL_POOL="true")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def poolless(tmp_path: Path) -> Iterator[TidingsServer]:
    server = bare_server(tmp_path / "node")
    server.start()
    yield server
    server.stop()


@RELAY_GROUP
def test_the_virtual_pool_takes_queues_when_there_is_no_pool(
    virtual: TidingsServer, tmp_path: Path
) -> None:
    project = new_project("virtual")
    with virtual.client(project) as api:
        assert api.get("/pools", headers=ADMIN).json()["pools"] == []
        assert api.put("/queues/first", json={"description": "unpooled"}).status_code == 201
        ids = post(api, "first", {"n": 1}, {"n": 2})
        post(api, "lazy", {"lazy": True})  # made by its first post
        assert queue_names(api) == ["first", "lazy"]
        assert [m["body"] for m in listed(api, "first")] == [{"n": 1}, {"n": 2}]
        claimed = claim(api, "first")
        assert claimed.status_code == 201, claimed.text
        claim_id = claimed.headers["location"].rsplit("/", 1)[1]
        assert [m["id"] for m in claimed.json()["messages"]] == ids
        gone = api.delete(f"/queues/first/messages/{ids[0]}", params={"claim_id": claim_id})
        assert gone.status_code == 204, gone.text
        assert stats(api, "first") == {"claimed": 1, "free": 0, "total": 1}
        assert api.get("/queues/first").json()["description"] == "unpooled"
        # In [drivers] message_store itself; the catalog places nothing there.
        assert stored_bodies(virtual.store_uri, project, "first") == [{"n": 2}]
        management = default_management(virtual)
        assert asyncio.run(_placement(management, project, "first")) is None

        # A pool added later takes new queues (once this node has read the catalog
        # again: up to cache_ttl later); those made in the virtual pool stay there.
        pool_uri = f"sqlite:///{tmp_path / 'pool.db'}"
        add_pool(api, "real", pool_uri)
        made = iter(range(100))

        def placed_on_the_pool() -> str | None:
            name = f"second-{next(made)}"
            assert api.put(f"/queues/{name}").status_code == 201
            return name if asyncio.run(_placement(management, project, name)) else None

        second = wait_until(placed_on_the_pool, "a new queue placed on the new pool")
        post(api, second, {"pooled": True})
        assert stored_bodies(pool_uri, project, second) == [{"pooled": True}]
        post(api, "first", {"n": 3})
        assert [m["body"] for m in listed(api, "first")] == [{"n": 2}, {"n": 3}]
        assert stored_bodies(virtual.store_uri, project, "first") == [{"n": 2}, {"n": 3}]
        assert api.delete("/queues/first").status_code == 204
        assert "first" not in queue_names(api)
        assert {"lazy", second} <= set(queue_names(api))


@BARE_GROUP
def test_without_a_pool_nothing_can_be_created(poolless: TidingsServer, tmp_path: Path) -> None:
    project = new_project("poolless")
    with poolless.client(project) as api:
        made = api.put("/queues/orders")
        assert made.status_code == 503, made.text
        assert made.json() == {
            "title": UNAVAILABLE,
            "description": "Queue could not be created. Please try again in a few seconds.",
        }
        posted = api.post("/queues/orders/messages", json={"messages": [{"body": 1}]})
        assert posted.status_code == 503, posted.text
        assert posted.json() == {
            "title": UNAVAILABLE,
            "description": "Messages could not be enqueued. Please try again in a few seconds.",
        }
        hook = "http://subscriber.invalid/hook"
        subscribed = api.post("/queues/orders/subscriptions", json={"subscriber": hook})
        assert subscribed.status_code == 503, subscribed.text
        assert subscribed.json() == {
            "title": UNAVAILABLE,
            "description": "Subscription could not be created. Please try again in a few seconds.",
        }
        # Nothing was left behind; reads answer as for a queue that does not exist.
        assert queue_names(api) == []
        assert api.get("/queues/orders").json() == RESERVED_DEFAULTS
        assert listed(api, "orders") == []
        assert stats(api, "orders")["total"] == 0
        assert asyncio.run(_placement(default_management(poolless), project, "orders")) is None

        # Over WebSocket, the same refusal.
        with Wire(ws_url(poolless.url), project=project) as wire:
            assert wire.call("queue_create", {"queue_name": "orders"}) == (
                503,
                {
                    "error": UNAVAILABLE,
                    "exception": "Queue could not be created. Please try again in a few seconds.",
                },
            )

        # The first pool takes queues (once this node has read the catalog again).
        pool_uri = f"sqlite:///{tmp_path / 'pool.db'}"
        add_pool(api, "first", pool_uri)
        wait_until(lambda: api.put("/queues/orders").status_code == 201, "orders to be created")
        post(api, "orders", {"at": "last"})
        assert stored_bodies(pool_uri, project, "orders") == [{"at": "last"}]


# ------------------------------------------------------------------ pools added later


@GROUP
def test_health_lists_a_pool_added_since_the_last_placement(
    deployment: Deployment, tmp_path: Path
) -> None:
    name = f"idle-{uuid.uuid4().hex[:6]}"
    with deployment.client(0, "operator") as api:
        # Weight 0: no queue goes there, so no other test is touched by it.
        idle = {"uri": f"sqlite:///{tmp_path / 'idle.db'}", "weight": 0}
        made = api.put(f"/pools/{name}", json=idle, headers=ADMIN)
        assert made.status_code == 201, made.text
        # Bounded staleness: cache_ttl is 0.5 s; allow many times that.
        wait_until(
            lambda: name in api.get("/health", headers=ADMIN).json(),
            "health to list the new pool",
        )


@BARE_GROUP
def test_a_surviving_node_takes_over_deliveries_of_a_pool_added_since_it_started(
    tmp_path: Path, webhook_listener: WebhookListener
) -> None:
    env = node_env(
        f"sqlite:///{tmp_path / 'management.db'}",
        # A delivery the first node took and never finished is taken again soon.
        TIDINGS_NOTIFICATION__LEASE="1",
        TIDINGS_NOTIFICATION__DELIVERY_TIMEOUT="0.5",
    )
    first, second = (TidingsServer(tmp_path / f"node-{n}", env=env) for n in (1, 2))
    hook = webhook_listener.new_path("takeover")
    webhook_listener.tarpit(hook, times=1)  # the first attempt never ends
    try:
        first.start()
        second.start()
        with first.client("takeover") as api:
            add_pool(api, "late", f"sqlite:///{tmp_path / 'late.db'}")
            subscribed = api.post(
                "/queues/jobs/subscriptions", json={"subscriber": webhook_listener.url(hook)}
            )
            assert subscribed.status_code == 201, subscribed.text
            post(api, "jobs", {"job": 1})
        wait_until(lambda: webhook_listener.requests(hook), "the first node's attempt")
        first.kill()
        # The lease runs out within 1 s; the second node polls every 0.5 s.
        (_, again) = webhook_listener.wait_for(hook, 2, timeout=4.0)
        assert again.json()["body"] == {"job": 1}
    finally:
        first.stop()
        second.stop()
