"""The pool and flavor admin API (spec api-v2-extended.md section 4) against a real
pooled server, over HTTP and WebSocket.

One ``tidings serve`` (module scope) with admin mode and pooling, its management store
a SQLite file, serves every test; pools point at real stores: SQLite files, a Redis key
prefix and a PostgreSQL schema (those in ``tests.backends.STORE_KINDS``), removed
afterwards. Pools are global, so every test names its pools and flavors with a tag of
its own. Zaqar's bodies, status codes and texts, with its faults fixed (issue 11): a
duplicate ``uri`` is a 409, a pool that holds queues can be neither deleted nor pointed
at another store (409 with the count), flavor capabilities follow from the pools'
drivers. The malformed-body cases of ``tests/api/test_malformed_bodies.py`` and the
cross-project checks of ``tests/auth/test_isolation.py`` (whose servers are not
pooled, so these routes answer 404 there) run here for the pool and flavor routes.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.test_malformed_bodies import (
    LENGTH_LIES,
    LYING_BODY,
    MALFORMED,
    Route,
    Server,
    _body_routes,
    assert_refused,
)
from tests.backends import (
    STORE_KINDS,
    drop_postgres_schema,
    drop_redis_prefix,
    postgres_store_uri,
    redis_store_uri,
    unique_name,
)
from tests.server import TidingsServer, free_port, wait_until
from tests.ws.wire import Wire, ws_url

ADMIN = {"X-Roles": "admin"}
NOT_AUTHORIZED = {
    "title": "Not authorized",
    "description": "You are not authorized to complete this action.",
}
SQLITE_CAPABILITIES = ["FIFO", "CLAIMS", "DURABILITY", "AOD"]
REDIS_CAPABILITIES = ["FIFO", "CLAIMS", "AOD", "HIGH_THROUGHPUT"]
BODY_TIMEOUT = 1.0  # [server] body_timeout: how long a lying Content-Length is waited on


def invalid_body(description: str) -> dict[str, str]:
    return {"title": "Invalid request body", "description": description}


@dataclass
class Pooled:
    """The module's server and the stores its pools may use."""

    server: TidingsServer
    data_dir: Path
    redis_prefixes: list[str] = field(default_factory=list)
    postgres_schemas: list[str] = field(default_factory=list)

    def client(self, project: str | None = None, *, admin: bool = True) -> httpx.Client:
        client = self.server.client(project or f"pools-{uuid.uuid4().hex[:8]}")
        if admin:
            client.headers.update(ADMIN)
        return client

    def store(self, kind: str) -> str:
        """A fresh, empty store of ``kind`` (sqlite, redis or postgres) for a pool."""
        if kind == "sqlite":
            return f"sqlite:///{self.data_dir / (unique_name('s') + '.db')}"
        if kind == "redis":
            prefix = unique_name("r")
            self.redis_prefixes.append(prefix)
            return redis_store_uri(prefix)
        schema = unique_name("p")
        self.postgres_schemas.append(schema)
        return postgres_store_uri(schema)


@pytest.fixture(scope="module")
def pooled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pooled]:
    data_dir = tmp_path_factory.mktemp("pools-admin")
    server = TidingsServer(
        data_dir,
        env={
            "TIDINGS_ADMIN_MODE": "true",
            "TIDINGS_POOLING": "true",
            "TIDINGS_DRIVERS__MANAGEMENT_STORE": f"sqlite:///{data_dir / 'management.db'}",
            # New pools take part in placement soon after they are made.
            "TIDINGS_POOLING_CATALOG__CACHE_TTL": "0.2",
            "TIDINGS_SERVER__BODY_TIMEOUT": str(BODY_TIMEOUT),
        },
    )
    server.start()
    found = Pooled(server, data_dir)
    try:
        yield found
    finally:
        server.stop()
        for prefix in found.redis_prefixes:
            asyncio.run(drop_redis_prefix(prefix))
        for schema in found.postgres_schemas:
            asyncio.run(drop_postgres_schema(schema))


def tag() -> str:
    return uuid.uuid4().hex[:8]


def create_pool(api: httpx.Client, name: str, uri: str, weight: int = 100, **extra: Any) -> None:
    made = api.put(f"/pools/{name}", json={"uri": uri, "weight": weight, **extra})
    assert made.status_code == 201, made.text


def test_the_home_document_lists_pools_and_flavors(pooled: Pooled) -> None:
    with pooled.server.client("home") as api:
        resources = api.get("/").json()["resources"]
    assert resources["rel/pools"]["href-template"] == "/v2/pools{?detailed,limit,marker}"
    assert resources["rel/pool"]["href-template"] == "/v2/pools/{pool_name}"
    assert resources["rel/flavors"]["href-template"] == "/v2/flavors{?detailed,limit,marker}"
    assert resources["rel/flavor"]["href-template"] == "/v2/flavors/{flavor_name}"


# ---------------------------------------------------------------- pools


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_pool_lifecycle(pooled: Pooled, kind: str) -> None:
    """Create, show, list, update, replace and delete a pool on each kind of store."""
    name, uri = f"life-{kind}-{tag()}", pooled.store(kind)
    options = {"operation_timeout": 3.0} if kind != "sqlite" else {"busy_timeout": 2.0}
    with pooled.client() as api:
        made = api.put(f"/pools/{name}", json={"uri": uri, "weight": 100, "options": options})
        assert (made.status_code, made.text) == (201, "")
        assert made.headers["location"] == f"/v2/pools/{name}"

        href = f"/v2/pools/{name}"
        shown = api.get(f"/pools/{name}")
        assert shown.json() == {
            "name": name,
            "uri": uri,
            "weight": 100,
            "flavor": None,
            "href": href,
        }
        detailed = api.get(f"/pools/{name}", params={"detailed": "true"}).json()
        assert detailed == {
            "name": name,
            "uri": uri,
            "weight": 100,
            "flavor": None,
            "options": options,
            "href": href,
        }
        listed = api.get("/pools", params={"marker": name[:-1], "limit": 1, "detailed": True})
        assert listed.json()["pools"] == [detailed]

        patched = api.patch(f"/pools/{name}", json={"weight": 7, "flavor": "gold"})
        assert patched.status_code == 200, patched.text
        assert patched.json() == {
            "name": name,
            "uri": uri,
            "weight": 7,
            "flavor": "gold",
            "href": href,
        }
        # PUT over an existing pool replaces it (Zaqar's 201 again); no queues live there.
        replaced = api.put(f"/pools/{name}", json={"uri": uri, "weight": 3})
        assert replaced.status_code == 201, replaced.text
        assert api.get(f"/pools/{name}", params={"detailed": True}).json() == {
            "name": name,
            "uri": uri,
            "weight": 3,
            "flavor": None,
            "options": {},
            "href": href,
        }

        assert api.delete(f"/pools/{name}").status_code == 204
        gone = api.get(f"/pools/{name}")
        assert (gone.status_code, gone.json()) == (
            404,
            {"title": "Not found", "description": f"Pool {name} does not exist"},
        )
        assert api.delete(f"/pools/{name}").status_code == 204  # unknown: 204 too
        missing = api.patch(f"/pools/{name}", json={"weight": 1})
        assert missing.status_code == 404, missing.text


def test_pool_bodies_are_checked(pooled: Pooled) -> None:
    name, uri = f"body-{tag()}", pooled.store("sqlite")
    nobody = free_port()  # nothing listens there
    cases: list[tuple[Any, int, dict[str, str]]] = [
        ({"uri": uri}, 400, invalid_body("'weight' is a required property")),
        ({"weight": 1}, 400, invalid_body("'uri' is a required property")),
        ({"uri": uri, "weight": "x"}, 400, invalid_body("'x' is not of type 'integer'")),
        ({"uri": uri, "weight": True}, 400, invalid_body("True is not of type 'integer'")),
        ({"uri": uri, "weight": -1}, 400, invalid_body("-1 is less than the minimum of 0")),
        (
            {"uri": uri, "weight": 2**32},
            400,
            invalid_body("4294967296 is greater than the maximum of 4294967295"),
        ),
        (
            {"uri": uri, "weight": 1, "bogus": 1, "other": 2},
            400,
            invalid_body(
                "Additional properties are not allowed ('bogus', 'other' were unexpected)"
            ),
        ),
        ({"uri": 5, "weight": 1}, 400, invalid_body("5 is not of type 'string'")),
        (
            {"uri": "sqlite:///" + "x" * 250, "weight": 1},
            400,
            invalid_body("The value of `uri` is too long (at most 255 characters)"),
        ),
        ({"uri": uri, "weight": 1, "flavor": 3}, 400, invalid_body("3 is not of type 'string'")),
        ({"uri": uri, "weight": 1, "options": []}, 400, invalid_body("[] is not of type 'object'")),
        (
            {"uri": uri, "weight": 1, "options": {"pool_sizes": 3}},
            400,
            invalid_body(
                "Unknown pool options: 'pool_sizes'; a pool's options override [storage] "
                "settings: gc_interval, busy_timeout, operation_timeout, pool_size, "
                "migrate_on_start, scan_budget"
            ),
        ),
        (
            {"uri": uri, "weight": 1, "options": {"pool_size": 0}},
            400,
            invalid_body("Invalid pool options: Expected `int` >= 1 - at `$.pool_size`"),
        ),
        ([], 400, invalid_body("[] is not of type 'object'")),
        # Zaqar's 400 for a store it cannot reach, or a driver it does not have.
        (
            {"uri": f"redis://127.0.0.1:{nobody}", "weight": 1},
            400,
            invalid_body(f"cannot connect to redis://127.0.0.1:{nobody}"),
        ),
        (
            {"uri": "mongodb://127.0.0.1:27017", "weight": 1},
            400,
            invalid_body("cannot connect to mongodb://127.0.0.1:27017"),
        ),
        ({"uri": "no scheme", "weight": 1}, 400, invalid_body("cannot connect to no scheme")),
    ]
    with pooled.client() as api:
        for body, status, answer in cases:
            refused = api.put(f"/pools/{name}", json=body)
            assert (refused.status_code, refused.json()) == (status, answer), body
        empty = api.put(f"/pools/{name}")
        assert empty.json() == invalid_body("Request body can not be empty")
        bad_name = api.put("/pools/no%20spaces", json={"uri": uri, "weight": 1})
        assert bad_name.status_code == 400
        assert "Pool names may only contain" in bad_name.json()["description"]
        assert api.get(f"/pools/{name}").status_code == 404  # nothing was made


def test_pool_updates_are_checked(pooled: Pooled) -> None:
    name, uri = f"patch-{tag()}", pooled.store("sqlite")
    nobody = free_port()
    one_of = invalid_body("One of `uri`, `weight`, `flavor`, or `options` needs to be specified")
    with pooled.client() as api:
        create_pool(api, name, uri, flavor="silver")
        for body, answer in (
            ({}, one_of),
            ({"bogus": 1}, one_of),
            (
                {"weight": 2, "bogus": 1},
                invalid_body("Additional properties are not allowed ('bogus' was unexpected)"),
            ),
            ({"weight": None}, invalid_body("None is not of type 'integer'")),
            (
                {"uri": f"redis://127.0.0.1:{nobody}"},
                invalid_body(f"cannot connect to redis://127.0.0.1:{nobody}"),
            ),
        ):
            refused = api.patch(f"/pools/{name}", json=body)
            assert (refused.status_code, refused.json()) == (400, answer), body
        # A null (or empty) flavor takes the pool out of any flavor.
        cleared = api.patch(f"/pools/{name}", json={"flavor": None})
        assert cleared.json()["flavor"] is None
        # A new uri (that answers) is taken while the pool holds no queue.
        moved_to = pooled.store("sqlite")
        moved = api.patch(f"/pools/{name}", json={"uri": moved_to, "options": {"scan_budget": 500}})
        assert moved.status_code == 200, moved.text
        detailed = api.get(f"/pools/{name}", params={"detailed": "true"}).json()
        assert (detailed["uri"], detailed["options"]) == (moved_to, {"scan_budget": 500})
        assert api.delete(f"/pools/{name}").status_code == 204


def test_a_duplicate_uri_is_a_conflict(pooled: Pooled) -> None:
    """Zaqar answers 500; two pools on one store would share its data."""
    first, second, uri = f"dup-a-{tag()}", f"dup-b-{tag()}", pooled.store("sqlite")
    other = pooled.store("sqlite")
    conflict = {
        "title": "Resource conflict",
        "description": f"Pool {first} already uses {uri}: two pools may not share one store.",
    }
    with pooled.client() as api:
        create_pool(api, first, uri)
        taken = api.put(f"/pools/{second}", json={"uri": uri, "weight": 1})
        assert (taken.status_code, taken.json()) == (409, conflict)
        create_pool(api, second, other)
        patched = api.patch(f"/pools/{second}", json={"uri": uri})
        assert (patched.status_code, patched.json()) == (409, conflict)
        for name in (first, second):
            assert api.delete(f"/pools/{name}").status_code == 204
        # Nor may a pool share the management store.
        management = f"sqlite:///{pooled.data_dir / 'management.db'}"
        shared = api.put(f"/pools/{first}", json={"uri": management, "weight": 1})
        assert (shared.status_code, shared.json()) == (
            409,
            {
                "title": "Resource conflict",
                "description": f"{management} is the management store: a pool needs a store "
                "of its own.",
            },
        )


def test_a_pool_that_holds_queues_stays(pooled: Pooled) -> None:
    """Deleting a pool that holds queues, or pointing it at another store, is a 409 with
    the count (Zaqar deleted it and orphaned the messages); the placement is made by the
    API itself: a queue of a flavor whose only pool this is."""
    name, flavor, uri = f"busy-{tag()}", f"only-{tag()}", pooled.store("sqlite")
    project = f"busy-{tag()}"
    with pooled.client(project) as api:
        create_pool(api, name, uri)
        assert api.put(f"/flavors/{flavor}", json={"pool_list": [name]}).status_code == 201

        def placed() -> bool:
            made = api.put("/queues/held", json={"_flavor": flavor})
            assert made.status_code in (201, 503), made.text  # 503: not routed to it yet
            return made.status_code == 201

        wait_until(placed, "the queue placed on the new pool")
        posted = api.post("/queues/held/messages", json={"messages": [{"body": "kept"}]})
        assert posted.status_code == 201, posted.text

        def in_use(doing: str) -> dict[str, str]:
            return {
                "title": "Resource conflict",
                "description": f"Pool {name} holds 1 queue(s); it cannot be {doing} while it "
                "holds any (their messages would be stranded). Delete those queues first.",
            }

        refused = api.delete(f"/pools/{name}")
        assert (refused.status_code, refused.json()) == (409, in_use("deleted"))
        other = pooled.store("sqlite")
        for answer in (
            api.patch(f"/pools/{name}", json={"uri": other}),
            api.put(f"/pools/{name}", json={"uri": other, "weight": 1}),
        ):
            assert (answer.status_code, answer.json()) == (409, in_use("pointed at another store"))
        # The same store: a replacement is fine, and the messages are still there.
        assert api.put(f"/pools/{name}", json={"uri": uri, "weight": 5}).status_code == 201
        listed = api.get("/queues/held/messages", params={"echo": "true"}).json()
        assert [m["body"] for m in listed["messages"]] == ["kept"]

        assert api.delete("/queues/held").status_code == 204
        assert api.delete(f"/pools/{name}").status_code == 204
        assert api.delete(f"/flavors/{flavor}").status_code == 204


def test_pool_listing(pooled: Pooled) -> None:
    prefix = f"list-{tag()}"
    names = [f"{prefix}-{n}" for n in ("a", "b", "c")]
    limit_text = {
        "title": "Invalid API request",
        "description": "Limit must be at least 1 and no greater than 20.",
    }
    with pooled.client() as api:
        for name in names:
            create_pool(api, name, pooled.store("sqlite"))
        first = api.get("/pools", params={"marker": prefix, "limit": 2})
        assert first.status_code == 200, first.text
        assert first.headers["content-location"] == f"/v2/pools?marker={prefix}&limit=2"
        page = first.json()
        assert [p["name"] for p in page["pools"]] == names[:2]
        assert all(set(p) == {"name", "uri", "weight", "flavor", "href"} for p in page["pools"])
        assert page["links"] == [{"rel": "next", "href": f"/v2/pools?limit=2&marker={names[1]}"}]
        second = api.get(page["links"][0]["href"].removeprefix("/v2")).json()
        assert second["pools"][0]["name"] == names[2]
        after_all = api.get("/pools", params={"marker": "~"}).json()
        assert after_all == {"links": [], "pools": []}
        for params, answer in (
            ({"limit": 0}, limit_text),
            ({"limit": 21}, limit_text),
            (
                {"limit": "x"},
                {
                    "title": "Invalid parameter",
                    "description": 'The "limit" parameter is invalid. The value must be an '
                    "integer.",
                },
            ),
            (
                {"detailed": "maybe"},
                {
                    "title": "Invalid parameter",
                    "description": 'The "detailed" parameter is invalid. The value of the '
                    'parameter must be "true" or "false".',
                },
            ),
        ):
            refused = api.get("/pools", params=params)
            assert (refused.status_code, refused.json()) == (400, answer), params
        for name in names:
            assert api.delete(f"/pools/{name}").status_code == 204


def test_only_administrators_see_pools(pooled: Pooled) -> None:
    """Pools are global operator resources: any admin sees every pool; others get 403
    on every pool route and on flavor writes (flavor reads are open, as in Zaqar)."""
    name, flavor = f"guard-{tag()}", f"guard-{tag()}"
    with pooled.client("owner") as owner, pooled.client(admin=False) as member:
        create_pool(owner, name, pooled.store("sqlite"))
        with pooled.client("another-admin") as other:
            assert other.get(f"/pools/{name}").status_code == 200
        for method, path, body in (
            ("GET", "/pools", None),
            ("GET", f"/pools/{name}", None),
            ("PUT", f"/pools/{name}", {"uri": "sqlite:///x.db", "weight": 1}),
            ("PATCH", f"/pools/{name}", {"weight": 1}),
            ("DELETE", f"/pools/{name}", None),
            ("PUT", f"/flavors/{flavor}", {"pool_list": [name]}),
            ("PATCH", f"/flavors/{flavor}", {"pool_list": [name]}),
            ("DELETE", f"/flavors/{flavor}", None),
        ):
            refused = member.request(method, path, json=body)
            assert (refused.status_code, refused.json()) == (403, NOT_AUTHORIZED), (method, path)
        assert member.get("/flavors").json() == {"links": [], "flavors": []}
        assert member.get(f"/flavors/{flavor}").status_code == 404
        assert owner.get(f"/pools/{name}").json()["weight"] == 100
        assert owner.delete(f"/pools/{name}").status_code == 204


# ---------------------------------------------------------------- flavors


def test_flavor_lifecycle(pooled: Pooled) -> None:
    t = tag()
    sqlite_a, sqlite_b, redis_pool = f"fl-a-{t}", f"fl-b-{t}", f"fl-r-{t}"
    flavor = f"gold-{t}"
    href = f"/v2/flavors/{flavor}"
    with pooled.client() as api:
        create_pool(api, sqlite_a, pooled.store("sqlite"))
        create_pool(api, sqlite_b, pooled.store("sqlite"))
        mixed = "redis" in STORE_KINDS
        if mixed:
            create_pool(api, redis_pool, pooled.store("redis"))

        made = api.put(
            f"/flavors/{flavor}",
            json={"pool_list": [sqlite_a], "capabilities": {"FIFO": False, "anything": 1}},
        )
        assert (made.status_code, made.text) == (201, "")
        assert made.headers["location"] == href
        # Capabilities follow from the pools' drivers; those sent are ignored.
        assert api.get(f"/flavors/{flavor}").json() == {
            "name": flavor,
            "capabilities": SQLITE_CAPABILITIES,
            "pool_list": [sqlite_a],
            "href": href,
        }
        assert api.get(f"/pools/{sqlite_a}").json()["flavor"] == flavor

        # PATCH gives it exactly the listed pools: sqlite_a leaves it.
        members = [sqlite_b, redis_pool] if mixed else [sqlite_b]
        patched = api.patch(f"/flavors/{flavor}", json={"pool_list": members})
        assert patched.status_code == 200, patched.text
        expected = {
            "name": flavor,
            # A flavor promises what every one of its pools offers.
            "capabilities": ["FIFO", "CLAIMS", "AOD"] if mixed else SQLITE_CAPABILITIES,
            "pool_list": sorted(members),
            "href": href,
        }
        assert patched.json() == expected
        assert api.get(f"/flavors/{flavor}").json() == expected
        assert api.get(f"/pools/{sqlite_a}").json()["flavor"] is None

        if mixed:
            # PUT on an existing flavor replaces its pools too.
            assert (
                api.put(f"/flavors/{flavor}", json={"pool_list": [redis_pool]}).status_code == 201
            )
            assert api.get(f"/flavors/{flavor}").json()["capabilities"] == REDIS_CAPABILITIES
            assert api.get(f"/pools/{sqlite_b}").json()["flavor"] is None

        listed = api.get("/flavors", params={"detailed": "true"}).json()
        entry = next(f for f in listed["flavors"] if f["name"] == flavor)
        assert entry == {
            "name": flavor,
            "href": href,
            "pool_list": api.get(f"/flavors/{flavor}").json()["pool_list"],
            "capabilities": api.get(f"/flavors/{flavor}").json()["capabilities"],
        }
        plain = api.get("/flavors").json()
        assert "capabilities" not in plain["flavors"][0]
        assert plain["links"][0]["href"].startswith("/v2/flavors?marker=")

        # Delete: 204, its pools leave it (they stay), and 204 again.
        current = api.get(f"/flavors/{flavor}").json()["pool_list"]
        assert api.delete(f"/flavors/{flavor}").status_code == 204
        assert api.get(f"/flavors/{flavor}").status_code == 404
        assert all(api.get(f"/pools/{p}").json()["flavor"] is None for p in current)
        assert api.delete(f"/flavors/{flavor}").status_code == 204

        # A flavor whose pools were all deleted shows nothing.
        assert api.put(f"/flavors/{flavor}", json={"pool_list": [sqlite_a]}).status_code == 201
        for pool in (sqlite_a, sqlite_b, redis_pool):
            assert api.delete(f"/pools/{pool}").status_code == 204
        assert api.get(f"/flavors/{flavor}").json() == {
            "name": flavor,
            "capabilities": [],
            "pool_list": [],
            "href": href,
        }
        assert api.delete(f"/flavors/{flavor}").status_code == 204


def test_flavor_bodies_are_checked(pooled: Pooled) -> None:
    pool, flavor = f"fb-{tag()}", f"fb-{tag()}"
    unable = {"title": "Unable to create", "description": "Bad Request"}
    with pooled.client() as api:
        create_pool(api, pool, pooled.store("sqlite"))
        for body, answer in (
            ({}, invalid_body("'pool_list' is a required property")),
            ({"pool_list": pool}, invalid_body(f"'{pool}' is not of type 'array'")),
            ({"pool_list": [1]}, invalid_body("1 is not of type 'string'")),
            (
                {"pool_list": [pool], "pool": "x"},
                invalid_body("Additional properties are not allowed ('pool' was unexpected)"),
            ),
            ({"pool_list": [pool], "capabilities": []}, invalid_body("[] is not of type 'object'")),
            ({"pool_list": []}, unable),
            (
                {"pool_list": [pool, "nope"]},
                {
                    "title": "Unable to create",
                    "description": f"Flavor {flavor} could not be created, error:Pool nope "
                    "does not exist",
                },
            ),
        ):
            refused = api.put(f"/flavors/{flavor}", json=body)
            assert (refused.status_code, refused.json()) == (400, answer), body
        assert api.get(f"/flavors/{flavor}").status_code == 404

        missing = api.patch(f"/flavors/{flavor}", json={"pool_list": [pool]})
        assert (missing.status_code, missing.json()) == (
            404,
            {"title": "Not found", "description": f"Flavor {flavor} does not exist"},
        )
        assert api.put(f"/flavors/{flavor}", json={"pool_list": [pool]}).status_code == 201
        for body, answer in (
            ({}, invalid_body("`pool_list` needs to be specified")),
            ({"capabilities": {}}, invalid_body("`pool_list` needs to be specified")),
            ({"pool_list": []}, unable),
            (
                {"pool_list": ["nope"]},
                {
                    "title": "updatefail",
                    "description": f"Flavor {flavor} cant be updated, error:Pool nope does not "
                    "exist",
                },
            ),
        ):
            refused = api.patch(f"/flavors/{flavor}", json=body)
            assert (refused.status_code, refused.json()) == (400, answer), body
        assert api.get(f"/flavors/{flavor}").json()["pool_list"] == [pool]
        assert api.delete(f"/flavors/{flavor}").status_code == 204
        assert api.delete(f"/pools/{pool}").status_code == 204


def _normalized(response: httpx.Response, names: dict[str, str]) -> tuple[int, str]:
    text = response.text
    for placeholder, value in names.items():
        text = text.replace(value, f"<{placeholder}>")
    return response.status_code, text


def test_flavors_belong_to_their_project(pooled: Pooled) -> None:
    """The cross-project checks of tests/auth/test_isolation.py on the flavor routes:
    B (an admin of its own project) naming A's flavor gets what it gets for a flavor
    that exists nowhere, learns nothing of A's, and changes nothing of A's."""
    pool, flavor, control = f"iso-{tag()}", f"iso-a-{tag()}", f"iso-c-{tag()}"
    project_a, project_b = f"proj-a-{tag()}", f"proj-b-{tag()}"
    with pooled.client(project_a) as a, pooled.client(project_b) as b:
        create_pool(a, pool, pooled.store("sqlite"))
        assert a.put(f"/flavors/{flavor}", json={"pool_list": [pool]}).status_code == 201
        before = a.get(f"/flavors/{flavor}").json()
        for method, body, status in (
            ("GET", None, 404),
            ("PATCH", {"pool_list": [pool]}, 404),
            ("DELETE", None, 204),
        ):
            own = b.request(method, f"/flavors/{flavor}", json=body)
            unknown = b.request(method, f"/flavors/{control}", json=body)
            assert own.status_code == status, (method, own.text)
            assert _normalized(own, {"flavor": flavor}) == _normalized(
                unknown, {"flavor": control}
            ), method
            assert project_a not in own.text
            assert a.get(f"/flavors/{flavor}").json() == before, method
        listed = b.get("/flavors", params={"detailed": "true"}).json()
        assert listed == {"links": [], "flavors": []}
        assert a.get("/flavors").json()["flavors"] == [
            {"name": flavor, "href": f"/v2/flavors/{flavor}", "pool_list": [pool]}
        ]
        assert a.delete(f"/flavors/{flavor}").status_code == 204
        assert a.delete(f"/pools/{pool}").status_code == 204


# ---------------------------------------------------------------- malformed bodies

POOL_BODY_ROUTES = _body_routes(pooling=True)


class AdminBodies(Server):
    """tests/api/test_malformed_bodies.py's sender, as an administrator."""

    def headers(self, route: Route) -> dict[str, str]:
        return {**super().headers(route), **ADMIN}


@pytest.fixture(scope="module")
def admin_bodies(pooled: Pooled) -> Iterator[AdminBodies]:
    pool, flavor = f"mal-{tag()}", f"mal-{tag()}"
    with pooled.client() as api:
        create_pool(api, pool, pooled.store("sqlite"))
        assert api.put(f"/flavors/{flavor}", json={"pool_list": [pool]}).status_code == 201
    target = AdminBodies(pooled.server)
    target.fields = {"pool": pool, "flavor": flavor}
    yield target
    target.close()


def test_the_pool_and_flavor_body_routes_are_found() -> None:
    assert sorted(r.name for r in POOL_BODY_ROUTES) == [
        "PATCH /v2/flavors/{flavor}",
        "PATCH /v2/pools/{pool}",
        "PUT /v2/flavors/{flavor}",
        "PUT /v2/pools/{pool}",
    ]


@pytest.fixture(scope="module")
def late_answers(admin_bodies: AdminBodies) -> dict[str, list[tuple[int, bytes]]]:
    """Each route's answers to a body shorter than its Content-Length, waited on once."""
    declared = len(LYING_BODY) + 64
    with ThreadPoolExecutor(max_workers=len(POOL_BODY_ROUTES)) as pool:
        futures = {r.name: pool.submit(admin_bodies.lie, r, declared) for r in POOL_BODY_ROUTES}
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("case", [*MALFORMED, *LENGTH_LIES])
@pytest.mark.parametrize("route", POOL_BODY_ROUTES, ids=lambda r: r.name)
def test_malformed_body_is_refused_with_a_4xx(
    route: Route, case: str, admin_bodies: AdminBodies, request: pytest.FixtureRequest
) -> None:
    what = f"{route.name} with {case}"
    if case == "length-longer-than-body":
        answers = request.getfixturevalue("late_answers")[route.name]
    elif case == "length-shorter-than-body":
        answers = admin_bodies.lie(route, 5)
    else:
        answers = [admin_bodies.send(route, MALFORMED[case])]
    assert answers, f"{what}: the server closed without answering"
    for status, body in answers:
        assert_refused(status, body, what)


# ---------------------------------------------------------------- WebSocket


def test_pools_and_flavors_over_websocket(pooled: Pooled) -> None:
    """Zaqar's WebSocket bodies (pool_name, flavor_name ...) on the same operations."""
    t = tag()
    pool, flavor, uri = f"ws-{t}", f"ws-{t}", pooled.store("sqlite")
    with Wire(ws_url(pooled.server.url)) as ws:

        def call(action: str, body: dict[str, Any], **headers: str) -> tuple[int, Any]:
            return ws.call(action, body, **{**ADMIN, **headers})

        assert call("pool_create", {"pool_name": pool, "uri": uri, "weight": 10}) == (
            201,
            f"Pool {pool} created.",
        )
        view = {"name": pool, "uri": uri, "weight": 10, "flavor": None}
        assert call("pool_get", {"pool_name": pool}) == (200, view)
        assert call("pool_get", {"pool_name": pool, "detailed": True}) == (
            200,
            {**view, "options": {}},
        )
        status, listed = call("pool_list", {"marker": pool[:-1], "limit": 1})
        assert (status, listed) == (200, {"pools": [view]})
        assert call("pool_update", {"pool_name": pool, "weight": 20}) == (
            200,
            {**view, "weight": 20},
        )
        # Zaqar's schema names one pool in flavor_create; pool_list works too.
        assert call("flavor_create", {"flavor_name": flavor, "pool_name": pool}) == (
            201,
            f"Flavor {flavor} created.",
        )
        shown = {"name": flavor, "capabilities": SQLITE_CAPABILITIES, "pool_list": [pool]}
        assert call("flavor_get", {"flavor_name": flavor}) == (200, shown)
        assert call("flavor_update", {"flavor_name": flavor, "pool_list": [pool]}) == (200, shown)
        assert call("flavor_list", {"detailed": True}) == (
            200,
            {
                "flavors": [
                    {"name": flavor, "pool_list": [pool], "capabilities": SQLITE_CAPABILITIES}
                ]
            },
        )

        # Errors are Zaqar's error frames.
        assert call("pool_create", {"pool_name": pool, "uri": uri}) == (
            400,
            {"exception": "'weight' is a required property", "error": None},
        )
        assert call("pool_get", {}) == (400, {"error": "Schema validation failed."})
        assert call("pool_create", {"pool_name": pool, "weight": "x"}) == (
            400,
            {"error": "Schema validation failed."},
        )
        assert call("flavor_update", {"flavor_name": flavor}) == (
            400,
            {"exception": "`pool_list` needs to be specified", "error": None},
        )
        assert ws.call("pool_list", {}) == (  # no admin role
            403,
            {"exception": NOT_AUTHORIZED["description"], "error": None},
        )

        assert call("flavor_delete", {"flavor_name": flavor}) == (204, f"Flavor {flavor} removed.")
        assert call("flavor_get", {"flavor_name": flavor}) == (
            404,
            {"exception": f"Flavor {flavor} does not exist", "error": None},
        )
        assert call("pool_delete", {"pool_name": pool}) == (204, f"Pool {pool} removed.")
        assert call("pool_get", {"pool_name": pool})[0] == 404


def test_pool_names_in_paths_that_match_nothing(pooled: Pooled) -> None:
    """Names no pool can have (they are checked on create) simply match nothing."""
    with pooled.client() as api:
        for path in ("/pools/a%00b", "/pools/" + "x" * 300, "/flavors/%C3%A9t%C3%A9"):
            assert api.get(path).status_code == 404, path
            assert api.delete(path).status_code == 204, path
        refused = api.put("/flavors/" + "x" * 65, json={"pool_list": ["x"]})
        assert refused.status_code == 400
        assert re.match(r"Flavor names may only contain", refused.json()["description"])


def test_hostile_admin_frames_get_4xx(pooled: Pooled) -> None:
    """Frames a JSON client cannot send (MessagePack NaN and infinity, 64-bit integers)
    and other junk in pool and flavor fields: each a 4xx error frame, never a 5xx."""
    uri = pooled.store("sqlite")
    hostile: list[tuple[str, dict[str, Any]]] = [
        ("pool_create", {"pool_name": "h", "uri": uri, "weight": 1, "options": {"gc_interval": x}})
        for x in (float("nan"), float("inf"), -1.0, True, "30", [], {"a": 1})
    ]
    hostile += [
        ("pool_create", {"pool_name": "h", "uri": uri, "weight": 2**64 - 1}),
        ("pool_create", {"pool_name": "h", "uri": "sqlite:///\udc80", "weight": 1}),
        ("pool_create", {"pool_name": "h\x00", "uri": uri, "weight": 1}),
        ("pool_create", {"pool_name": "", "uri": uri, "weight": 1}),
        ("pool_create", {"pool_name": "h", "uri": "redis://[::1", "weight": 1}),
        ("pool_create", {"pool_name": "h", "uri": "postgresql://x:y@/%zz", "weight": 1}),
        ("pool_update", {"pool_name": "nope", "options": {"pool_size": 2**64 - 1}}),
        ("pool_list", {"limit": 2**64 - 1}),
        ("flavor_create", {"flavor_name": "h", "pool_list": [["nested"]]}),
        ("flavor_create", {"flavor_name": "h", "pool_list": ["x"] * 1001}),
        ("flavor_update", {"flavor_name": "h", "pool_list": [None]}),
    ]
    for binary in (False, True):
        with Wire(ws_url(pooled.server.url), binary=binary) as ws:
            for action, body in hostile:
                if binary and any(isinstance(v, str) and "\udc80" in v for v in body.values()):
                    continue  # only JSON can carry an unpaired surrogate (escaped)
                status, answer = ws.call(action, body, **ADMIN)
                what = f"{action} {body!r:.200} ({'msgpack' if binary else 'json'})"
                assert 400 <= status < 500, (what, status, answer)
            assert ws.call("pool_get", {"pool_name": "h"}, **ADMIN)[0] == 404
