"""Pooled mode end to end: Tidings nodes routing queues over pools of different stores.

One deployment for the module: two private Redis servers (tests/instances.py, so one
can be stopped), a PostgreSQL schema and a SQLite file as pools, made through the admin
API, and a SQLite management store shared by two nodes. The catalog is read directly
(the management store, opened here) to see where queues went; each pool's own store is
opened here to see that a queue's messages really are in the pool the catalog names.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import pytest

from tests.backends import drop_postgres_schema, postgres_store_uri, unique_name
from tests.instances import RedisInstance
from tests.notify_listeners import WebhookListener
from tests.pooling.nodes import node_env
from tests.server import TidingsServer, wait_until
from tidings.config import StorageSettings
from tidings.storage import storage_for_uri

pytestmark = pytest.mark.xdist_group("pooling-routing")

ADMIN = {"X-Roles": "admin"}
SETTINGS = StorageSettings(operation_timeout=2.0)
# Weighted pools (and one that takes no new queues).
WEIGHTS = {"redis-a": 200, "redis-b": 100, "pg": 100, "lite": 100, "idle": 0}
SPREAD = 60  # queues created to see the spread: a pool of weight 100 of 500 misses all
# of them with probability 0.8**60, about 1e-6


@dataclass
class Deployment:
    nodes: list[TidingsServer]
    uris: dict[str, str]  # pool name -> its store
    management: str
    redis: dict[str, RedisInstance]

    def client(self, node: int = 0, project: str | None = None) -> httpx.Client:
        return self.nodes[node].client(project or f"route-{uuid.uuid4().hex[:8]}")

    def placements(self, project: str, queues: list[str]) -> dict[str, str | None]:
        async def read() -> dict[str, str | None]:
            store = storage_for_uri(self.management, SETTINGS)
            await store.open()
            try:
                return {q: await store.catalog.placement_get(project, q) for q in queues}
            finally:
                await store.close()

        return asyncio.run(read())

    def in_pool(self, pool: str, project: str, queue: str) -> list[Any]:
        """The bodies the pool's own store holds for the queue."""

        async def read() -> list[Any]:
            store = storage_for_uri(self.uris[pool], SETTINGS)
            await store.open()
            try:
                page = await store.messages.page(
                    project, queue, marker=None, limit=20, exclude_client=None,
                    include_claimed=True, include_delayed=True, now=time.time(),
                )  # fmt: skip
            finally:
                await store.close()
            return [msgspec.json.decode(m.body) for m in page.messages]

        return asyncio.run(read())


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("pooling-routing")
    redis = {
        name: RedisInstance(root / name, appendonly=True).start() for name in ("redis-a", "redis-b")
    }
    schema = unique_name("p")
    uris = {
        "redis-a": redis["redis-a"].url,
        "redis-b": redis["redis-b"].url,
        "pg": postgres_store_uri(schema),
        "lite": f"sqlite:///{root / 'lite.db'}",
        "idle": f"sqlite:///{root / 'idle.db'}",
    }
    management = f"sqlite:///{root / 'management.db'}"
    nodes = [TidingsServer(root / f"node-{n}", env=node_env(management)) for n in (1, 2)]
    try:
        for node in nodes:
            node.start()
        with nodes[0].client("operator") as api:
            for name, weight in WEIGHTS.items():
                made = api.put(
                    f"/pools/{name}", json={"uri": uris[name], "weight": weight}, headers=ADMIN
                )
                assert made.status_code == 201, made.text
        yield Deployment(nodes, uris, management, redis)
    finally:
        for node in nodes:
            node.stop()
        for instance in redis.values():
            instance.stop()
        asyncio.run(drop_postgres_schema(schema))


def covering(
    deployment: Deployment, api: httpx.Client, project: str, prefix: str
) -> dict[str, str]:
    """Create queues until every pool of weight > 0 holds one; a queue per pool."""
    found: dict[str, str] = {}
    for n in range(200):
        name = f"{prefix}-{n}"
        assert api.put(f"/queues/{name}").status_code == 201
        pool = deployment.placements(project, [name])[name]
        assert pool is not None
        found.setdefault(pool, name)
        if len(found) == len([w for w in WEIGHTS.values() if w > 0]):
            return found
    raise AssertionError(f"200 queues covered only {sorted(found)}")


def post(api: httpx.Client, queue: str, *bodies: Any) -> httpx.Response:
    return api.post(f"/queues/{queue}/messages", json={"messages": [{"body": b} for b in bodies]})


def listed(api: httpx.Client, queue: str) -> list[Any]:
    answer = api.get(
        f"/queues/{queue}/messages", params={"echo": "true", "include_claimed": "true"}
    )
    assert answer.status_code in (200, 204), answer.text
    return [m["body"] for m in answer.json()["messages"]] if answer.status_code == 200 else []


# ------------------------------------------------------------------------- placement


def test_queues_spread_over_the_pools_by_weight(deployment: Deployment) -> None:
    project = f"spread-{uuid.uuid4().hex[:8]}"
    names = [f"q{n:03}" for n in range(SPREAD)]
    with deployment.client(0, project) as api:
        for name in names:
            assert api.put(f"/queues/{name}").status_code == 201
        # Listing comes from the management store, whatever pool each queue is on.
        listed_names: list[str] = []
        params: dict[str, Any] = {"limit": 20}
        while True:
            page = api.get("/queues", params=params).json()
            listed_names += [q["name"] for q in page["queues"]]
            if not page["queues"]:
                break
            params["marker"] = page["queues"][-1]["name"]
    assert listed_names == names
    spread = Counter(deployment.placements(project, names).values())
    assert set(spread) == {"redis-a", "redis-b", "pg", "lite"}, spread
    assert sum(spread.values()) == SPREAD


# ------------------------------------------------------------------------- operations


def test_every_operation_goes_to_the_queues_pool(deployment: Deployment) -> None:
    project = f"ops-{uuid.uuid4().hex[:8]}"
    with deployment.client(0, project) as api:
        for pool, queue in sorted(covering(deployment, api, project, "ops").items()):
            posted = post(api, queue, {"n": 1}, {"n": 2}, {"n": 3}, {"n": 4})
            assert posted.status_code == 201, posted.text
            ids = [href.rsplit("/", 1)[1] for href in posted.json()["resources"]]
            assert listed(api, queue) == [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]
            assert deployment.in_pool(pool, project, queue) == [{"n": n} for n in (1, 2, 3, 4)]
            assert api.get(f"/queues/{queue}/messages/{ids[0]}").json()["body"] == {"n": 1}

            claimed = api.post(f"/queues/{queue}/claims", json={"ttl": 60, "grace": 60},
                               params={"limit": 2})  # fmt: skip
            assert claimed.status_code == 201, claimed.text
            claim_id = claimed.headers["location"].rsplit("/", 1)[1]
            held = [m["body"] for m in claimed.json()["messages"]]
            assert held == [{"n": 1}, {"n": 2}]
            assert api.get(f"/queues/{queue}/claims/{claim_id}").status_code == 200
            gone = api.delete(f"/queues/{queue}/messages/{ids[0]}", params={"claim_id": claim_id})
            assert gone.status_code == 204
            assert api.delete(f"/queues/{queue}/claims/{claim_id}").status_code == 204
            assert (
                api.delete(f"/queues/{queue}/messages", params={"ids": ids[1]}).status_code == 204
            )
            popped = api.delete(f"/queues/{queue}/messages", params={"pop": 1})
            assert [m["body"] for m in popped.json()["messages"]] == [{"n": 3}]
            stats = api.get(f"/queues/{queue}/stats").json()["messages"]
            assert (stats["total"], stats["claimed"]) == (1, 0)

            subscribed = api.post(
                f"/queues/{queue}/subscriptions",
                json={"subscriber": "http://subscriber.invalid/hook", "ttl": 3600},
            )
            assert subscribed.status_code == 201, subscribed.text
            assert len(api.get(f"/queues/{queue}/subscriptions").json()["subscriptions"]) == 1
            purged = api.post(f"/queues/{queue}/purge", json={"resource_types": ["messages"]})
            assert purged.status_code == 204
            assert listed(api, queue) == []
            assert len(api.get(f"/queues/{queue}/subscriptions").json()["subscriptions"]) == 1

            assert api.delete(f"/queues/{queue}").status_code == 204
            # Its subscription outlives it, so it stays placed until that goes too.
            assert deployment.placements(project, [queue]) == {queue: pool}
            api.post(f"/queues/{queue}/purge", json={"resource_types": ["subscriptions"]})
            assert deployment.placements(project, [queue]) == {queue: None}


def test_reads_of_a_queue_never_made_place_nothing(deployment: Deployment) -> None:
    project = f"ghost-{uuid.uuid4().hex[:8]}"
    with deployment.client(0, project) as api:
        assert listed(api, "ghost") == []
        assert api.get("/queues/ghost/stats").json()["messages"]["total"] == 0
        assert api.get("/queues/ghost/messages/" + "0" * 24).status_code == 404
        assert api.post("/queues/ghost/claims", json={}).status_code == 204
    assert deployment.placements(project, ["ghost"]) == {"ghost": None}


def test_flavors_choose_the_pools_and_a_full_queue_keeps_its_pool(
    deployment: Deployment,
) -> None:
    project = f"flavor-{uuid.uuid4().hex[:8]}"
    with deployment.client(0, project) as api:
        made = api.put("/flavors/fast", json={"pool_list": ["redis-a", "redis-b"]}, headers=ADMIN)
        assert made.status_code == 201, made.text
        missing = api.put("/queues/nope", json={"_flavor": "other"})
        assert missing.status_code == 400
        assert missing.json()["description"] == "Flavor other does not exist"
        names = [f"fast-{n}" for n in range(10)]
        for name in names:
            # The node may read the pools' new flavor a moment after the flavor exists.
            wait_until(
                lambda n=name: api.put(f"/queues/{n}", json={"_flavor": "fast"}).status_code == 201,
                f"queue {name} placed by flavor",
            )
        assert set(deployment.placements(project, names).values()) <= {"redis-a", "redis-b"}

        # A queue on another pool: moved when empty, refused (409) while it holds messages.
        queues = covering(deployment, api, project, "plain")
        patch = {"Content-Type": "application/openstack-messaging-v2.0-json-patch"}
        to_fast = [{"op": "add", "path": "/metadata/_flavor", "value": "fast"}]
        empty, full = queues["pg"], queues["lite"]
        assert post(api, full, {"kept": True}).status_code == 201
        refused = api.patch(f"/queues/{full}", json=to_fast, headers=patch)
        assert refused.status_code == 409, refused.text
        assert deployment.placements(project, [full]) == {full: "lite"}
        assert listed(api, full) == [{"kept": True}]
        moved = api.patch(f"/queues/{empty}", json=to_fast, headers=patch)
        assert moved.status_code == 200, moved.text
        assert deployment.placements(project, [empty])[empty] in {"redis-a", "redis-b"}
        assert post(api, empty, {"moved": True}).status_code == 201
        assert listed(api, empty) == [{"moved": True}]


def test_every_pools_notifications_are_delivered(deployment: Deployment) -> None:
    """Each pool owes its own queues' notifications; each node's dispatcher serves all."""
    project = f"notify-{uuid.uuid4().hex[:8]}"
    listener = WebhookListener().start()
    try:
        with deployment.client(0, project) as api, deployment.client(1, project) as other:
            queues = covering(deployment, api, project, "notify")
            hooks = {}
            for pool, queue in queues.items():
                hooks[pool] = listener.new_path(pool)
                subscribed = api.post(
                    f"/queues/{queue}/subscriptions",
                    json={"subscriber": listener.url(hooks[pool]), "ttl": 3600},
                )
                assert subscribed.status_code == 201, subscribed.text
            for pool, queue in queues.items():
                assert post(api, queue, {"pool": pool, "node": 1}).status_code == 201
                assert post(other, queue, {"pool": pool, "node": 2}).status_code == 201
            for pool, hook in hooks.items():
                got = listener.wait_for(hook, 2)
                assert sorted(r.json()["body"]["node"] for r in got) == [1, 2]
                assert {r.json()["body"]["pool"] for r in got} == {pool}
    finally:
        listener.stop()


# ------------------------------------------------------------------------- faults


def test_a_stopped_pool_fails_only_its_own_queues(deployment: Deployment) -> None:
    project = f"down-{uuid.uuid4().hex[:8]}"
    with deployment.client(0, project) as api:
        queues = covering(deployment, api, project, "down")
        for queue in queues.values():
            assert post(api, queue, {"before": True}).status_code == 201
        deployment.redis["redis-b"].stop()
        try:
            wait_until(
                lambda: post(api, queues["redis-b"], {"during": True}).status_code == 503,
                "503s from the stopped pool's queue",
            )
            for pool, queue in queues.items():
                if pool != "redis-b":
                    assert post(api, queue, {"during": True}).status_code == 201
                    assert listed(api, queue) == [{"before": True}, {"during": True}]
            assert api.get("/queues").status_code == 200  # the registry is elsewhere
            # Health names the pool that is down, and self-tests the others.
            health = wait_until(
                lambda: (h := api.get("/health", headers=ADMIN).json())["redis-b"][
                    "storage_reachable"
                ]
                is False
                and h,
                "health to see the stopped pool",
            )
            assert health["catalog_reachable"] is True
            assert "operation_status" not in health["redis-b"]
            for pool in ("redis-a", "pg", "lite", "idle"):
                assert health[pool]["storage_reachable"] is True, health
                steps = health[pool]["operation_status"]
                assert all(step["succeeded"] for step in steps.values()), (pool, steps)
                assert "post_messages" in steps and "claim_messages" in steps
                volume = health[pool]["message_volume"]
                assert volume["free"] + volume["claimed"] == volume["total"], (pool, volume)
        finally:
            deployment.redis["redis-b"].start()  # same port, same append-only file
        wait_until(
            lambda: post(api, queues["redis-b"], {"after": True}).status_code == 201,
            "the restarted pool serving again",
        )
        assert listed(api, queues["redis-b"]) == [{"before": True}, {"after": True}]


def test_a_pool_that_holds_queues_cannot_be_deleted(deployment: Deployment) -> None:
    project = f"keep-{uuid.uuid4().hex[:8]}"
    with deployment.client(0, project) as api:
        covering(deployment, api, project, "keep")
        refused = api.delete("/pools/lite", headers=ADMIN)
        assert refused.status_code == 409, refused.text
        assert api.get("/pools/lite", headers=ADMIN).status_code == 200


# ------------------------------------------------------------------------- two nodes


def test_two_nodes_share_the_placements(deployment: Deployment) -> None:
    project = f"nodes-{uuid.uuid4().hex[:8]}"
    with deployment.client(0, project) as first, deployment.client(1, project) as second:
        mine = covering(deployment, first, project, "first")
        for pool, queue in mine.items():
            # The second node routes to the pool the first placed the queue on.
            assert post(second, queue, {"via": 2}).status_code == 201
            assert listed(first, queue) == [{"via": 2}]
            assert deployment.in_pool(pool, project, queue) == [{"via": 2}]
        theirs = [f"second-{n}" for n in range(8)]
        for queue in theirs:
            assert post(second, queue, {"from": 2}).status_code == 201
        placed = deployment.placements(project, theirs)
        for queue in theirs:
            assert listed(first, queue) == [{"from": 2}]
            assert deployment.in_pool(str(placed[queue]), project, queue) == [{"from": 2}]
        # Listed by the first node (the registry is shared): every page, since covering()
        # may have made more "first-" queues than one page holds.
        names: set[str] = set()
        params: dict[str, Any] = {"limit": 20}
        for _ in range(20):  # at most 200 + 8 queues
            page = first.get("/queues", params=params).json()["queues"]
            if not page:
                break
            names |= {q["name"] for q in page}
            params["marker"] = page[-1]["name"]
        assert set(theirs) <= names
