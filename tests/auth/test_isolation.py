"""Tenant isolation over every route, for every auth strategy (issue 9 item 5).

Project A owns a queue, a topic and a hidden queue, with messages, a claim, a
subscription on each source, and a pre-signed URL. Project B (an admin of its own
project, the strongest caller there is short of A itself) then calls every route the
Falcon router has (``tests/routes.py``: a new route is covered, and must be pinned
below, without editing the walk), with the path filled with A's real names and ids,
under ``noauth`` (``X-Project-ID``), ``tokens`` and ``keystone`` (a real Keystone,
the session's ``keystone`` fixture). For each route:

* B in its own project, naming A's queue, message, claim and subscription ids, gets
  the pinned answer, and the same answer (status and body, once the names and ids it
  sent are set aside) as for names and ids that exist nowhere: B cannot tell that A's
  exist. Zaqar's queues are per project and lazy, so where a route acts on B's own
  queue of that name (PUT creates it, GET shows its defaults, deletes are idempotent
  204s) the pin says so; every route that names one of A's ids answers as for a
  missing one.
* With a credential (``tokens``, ``keystone``), B naming A's project in
  ``X-Project-ID`` gets 403 "Not authorized" on every route but the versions document.
  ``noauth`` has no such case: there the header *is* the project (README, "Securing
  Tidings").
* A's signed URL presented with B's project is a 404, and A's signed URL on any path
  or method it does not grant is a 404 (the one it grants serves A's messages).
* No answer (body or headers) holds anything of A's that B did not send itself: queue
  names, message ids and bodies, claim ids, subscription ids and subscribers, queue
  metadata, A's project.
* A's data, read as A, is the same after the route as before the module started.

One server per strategy (module scope), SQLite: this is about admission and scoping,
which is the same code over every store (tests/contract covers the stores' own scoping).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.auth.isolation_world import (
    JSON,
    PURGE,
    SIGNED_METHODS,
    Deployment,
    World,
    clean_b,
    deploy,
    fill,
    normalized_text,
    without_ages,
)
from tests.routes import pooling_route, responders

# One Keystone for these tests: xdist (--dist loadgroup) keeps them on one worker.
pytestmark = pytest.mark.xdist_group("keystone")

STRATEGIES = ("noauth", "tokens", "keystone")
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
NOT_AUTHORIZED = {
    "title": "Not authorized",
    "description": "You are not authorized to complete this action.",
}
# What a request with a URL signature that does not hold gets, whatever else it names.
SIGNATURE_REFUSED = 404


# ---------------------------------------------------------------- the routes and pins


@dataclass(frozen=True)
class Variant:
    """One way of calling a route: query, body (templates over the fields below) and
    the status B gets in its own project when the fields are A's."""

    label: str
    status: int
    query: dict[str, str] = field(default_factory=dict)
    body: Any = None


def _v(
    status: int, label: str = "", query: dict[str, str] | None = None, body: Any = None
) -> Variant:
    return Variant(label, status, query or {}, body)


SUBSCRIBE = {"subscriber": "{subscriber}", "ttl": 3600}
METADATA_PATCH = [{"op": "add", "path": "/metadata/owner", "value": "b"}]

# "METHOD TEMPLATE" -> the variants B sends. Templates under {c} stand for both
# /v2/queues and /v2/topics. A route of the router missing here fails
# test_every_route_is_pinned: pin it (what B gets in its own project) when adding it.
_COLLECTION_PINS: dict[str, list[Variant]] = {
    "GET /v2/{c}": [
        _v(200, "detailed", {"detailed": "true"}),
        _v(200, "marker", {"marker": "{queue}"}),
    ],
    "GET /v2/{c}/": [_v(400)],
    "HEAD /v2/{c}/": [_v(400)],
    "PUT /v2/{c}/": [_v(400, body={})],
    "PATCH /v2/{c}/": [_v(400, body=METADATA_PATCH)],
    "DELETE /v2/{c}/": [_v(400)],
    # Lazy queues: B's own queue of that name shows the defaults.
    "GET /v2/{c}/{queue}": [_v(200)],
    "HEAD /v2/{c}/{queue}": [_v(404)],
    "PUT /v2/{c}/{queue}": [_v(201, body={"_default_message_ttl": 300})],  # B's own queue
    "PATCH /v2/{c}/{queue}": [_v(404, body=METADATA_PATCH)],
    "DELETE /v2/{c}/{queue}": [_v(204)],
    "GET /v2/{c}/{queue}/stats": [_v(200)],
    "POST /v2/{c}/{queue}/purge": [_v(204, body=PURGE)],
    "GET /v2/{c}/{queue}/messages": [
        _v(200, "listing", {"echo": "true", "include_claimed": "true"}),
        _v(200, "marker", {"marker": "{message_id}", "echo": "true", "include_claimed": "true"}),
        _v(404, "ids", {"ids": "{message_ids}"}),
    ],
    "POST /v2/{c}/{queue}/messages": [_v(201, body={"messages": [{"body": "b"}]})],
    "DELETE /v2/{c}/{queue}/messages": [
        _v(204, "ids", {"ids": "{message_ids}"}),
        _v(204, "ids+claim_ids", {"ids": "{message_id}", "claim_ids": "{claim_id}"}),
        _v(200, "pop", {"pop": "3"}),
    ],
    "GET /v2/{c}/{queue}/messages/{message_id}": [_v(404)],
    "DELETE /v2/{c}/{queue}/messages/{message_id}": [
        _v(204),
        _v(204, "claim_id", {"claim_id": "{claim_id}"}),
    ],
    # B's own subscription, with A's subscriber: no conflict, and never A's id.
    "POST /v2/{c}/{queue}/subscriptions": [_v(201, body=SUBSCRIBE)],
    "GET /v2/{c}/{queue}/subscriptions": [
        _v(200),
        _v(200, "marker", {"marker": "{subscription_id}"}),
    ],
    "GET /v2/{c}/{queue}/subscriptions/{subscription_id}": [_v(404)],
    "PATCH /v2/{c}/{queue}/subscriptions/{subscription_id}": [_v(404, body={"ttl": 7200})],
    "DELETE /v2/{c}/{queue}/subscriptions/{subscription_id}": [_v(204)],
    "PUT /v2/{c}/{queue}/subscriptions/{subscription_id}/confirm": [
        _v(404, "confirm", body={"confirmed": True}),
        _v(404, "unsubscribe", body={"confirmed": False}),
    ],
    "GET /v2/{c}/{queue}/subscriptions/{subscription_id}/failures": [_v(404)],
}
# The trailing-slash messages routes take the same requests.
for _method in ("GET", "POST", "DELETE"):
    _COLLECTION_PINS[f"{_method} /v2/{{c}}/{{queue}}/messages/"] = _COLLECTION_PINS[
        f"{_method} /v2/{{c}}/{{queue}}/messages"
    ]

PINS: dict[str, list[Variant]] = {
    "GET /": [_v(300)],
    "GET /v2/": [_v(200)],
    "GET /v2/ping": [_v(204)],
    "GET /v2/openapi.json": [_v(200)],
    "HEAD /v2/ping": [_v(204)],
    "GET /v2/health": [_v(200)],  # B is an admin: its own self-test, nothing of A's
    "POST /v2/queues/{queue}/share": [
        _v(200, body={"paths": ["messages", "claims"], "methods": ["GET", "DELETE"]})
    ],
    "POST /v2/queues/{queue}/claims": [_v(204, body={"ttl": 300, "grace": 60})],
    "GET /v2/queues/{queue}/claims/{claim_id}": [_v(404)],
    "PATCH /v2/queues/{queue}/claims/{claim_id}": [_v(404, body={"ttl": 600})],
    "DELETE /v2/queues/{queue}/claims/{claim_id}": [_v(204)],
    **{
        template.replace("{c}", collection): variants
        for template, variants in _COLLECTION_PINS.items()
        for collection in ("queues", "topics")
    },
    # Pools and flavors exist only on a pooled server (tests/pooling/test_admin_api.py
    # checks them across projects there); these deployments are not pooled, so the
    # router answers 404 before anything else, whoever asks.
    "GET /v2/pools": [_v(404)],
    "GET /v2/pools/{pool}": [_v(404)],
    "PUT /v2/pools/{pool}": [_v(404, body={"uri": "sqlite:///never.db", "weight": 1})],
    "PATCH /v2/pools/{pool}": [_v(404, body={"weight": 2})],
    "DELETE /v2/pools/{pool}": [_v(404)],
    "GET /v2/flavors": [_v(404)],
    "GET /v2/flavors/{flavor}": [_v(404)],
    "PUT /v2/flavors/{flavor}": [_v(404, body={"pool_list": ["{queue}"]})],
    "PATCH /v2/flavors/{flavor}": [_v(404, body={"pool_list": ["{queue}"]})],
    "DELETE /v2/flavors/{flavor}": [_v(404)],
}


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    media_type: str
    needs_caller: bool
    # False for the pool and flavor routes, which these (unpooled) servers do not route.
    routed: bool = True

    @property
    def name(self) -> str:
        return f"{self.method} {self.template}"

    @property
    def collection(self) -> str:
        return "topics" if self.template.startswith("/v2/topics") else "queues"


def _routes() -> list[Route]:
    return sorted(
        (
            Route(
                method,
                template,
                getattr(resource, "media_types", {}).get(method, JSON),
                getattr(resource, "needs_caller", True),
                not pooling_route(template),
            )
            for method, template, resource in responders()
        ),
        key=lambda r: r.name,
    )


ROUTES = _routes()
CASES = [
    pytest.param(route, variant, id=f"{route.name}{f' [{variant.label}]' if variant.label else ''}")
    for route in ROUTES
    for variant in PINS.get(route.name, [Variant("unpinned", 0)])
]


def test_every_route_is_pinned() -> None:
    """The pins and the router name the same routes: a new route needs its pin."""
    routed = {route.name for route in ROUTES}
    assert routed - set(PINS) == set(), "routes without a pin in PINS"
    assert set(PINS) - routed == set(), "pins for routes the router no longer has"


# ---------------------------------------------------------------- the deployments
# (A's world, its server and B's credentials: tests/auth/isolation_world.py)


@pytest.fixture(scope="module", params=STRATEGIES)
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    strategy: str = request.param
    data_dir = tmp_path_factory.mktemp(f"isolation-{strategy}")
    with deploy(strategy, data_dir, keystone=lambda: request.getfixturevalue("keystone")) as dep:
        yield dep


# ---------------------------------------------------------------- the checks


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    media_type: str

    def text(self, headers: dict[str, str]) -> str:
        """Everything the request carries, to tell an echo from a leak."""
        return "\n".join(
            [
                self.method,
                self.path,
                json.dumps(self.query),
                json.dumps(self.body),
                *headers.values(),
            ]
        )


def _request(route: Route, variant: Variant, fields: dict[str, str]) -> Request:
    values = {**fields, "message_ids": f"{fields['message_id']},{fields['message_id_2']}"}
    path = route.template
    while True:  # a field a future route adds gets an id that names nothing
        try:
            path = route.template.format_map(values)
            break
        except KeyError as exc:
            values[str(exc.args[0])] = str(uuid.uuid4())
    return Request(
        route.method,
        path,
        fill(variant.query, values),
        fill(variant.body, values),
        route.media_type,
    )


def _send(dep: Deployment, request: Request, headers: dict[str, str]) -> httpx.Response:
    return dep.send(
        request.method,
        request.path,
        headers,
        query=request.query,
        body=request.body,
        media_type=request.media_type,
    )


def _seen(response: httpx.Response) -> str:
    headers = [
        f"{k}: {v}" for k, v in response.headers.items() if k.lower() != "x-openstack-request-id"
    ]
    return "\n".join([response.text, *headers])


def assert_learns_nothing(dep: Deployment, response: httpx.Response, sent: str, what: str) -> None:
    """Nothing of A's in the answer, but for what the request itself carried."""
    seen = _seen(response)
    leaked = [
        name
        for name, value in dep.world.secrets(dep.project_a).items()
        if value in seen and value not in sent
    ]
    assert not leaked, f"{what}: the answer reveals {leaked}: {seen[:600]}"


def _normalized(response: httpx.Response, fields: dict[str, str]) -> tuple[int, str]:
    """Status and body with the request's own names and ids, fresh ids, signatures,
    times and durations replaced by placeholders."""
    return response.status_code, normalized_text(response.text, fields)


def _granted(request: Request, world: World) -> bool:
    """Whether A's signed URL covers this request: its method, and the queue's messages
    path or that path with one more segment (README, "Pre-signed URLs")."""
    prefix = f"/v2/queues/{world.queue}/messages"
    rest = request.path[len(prefix) + 1 :]
    return request.method in SIGNED_METHODS and (
        request.path == prefix or (request.path.startswith(prefix + "/") and "/" not in rest)
    )


@pytest.mark.parametrize(("route", "variant"), CASES)
def test_project_b_cannot_reach_project_a(
    deployment: Deployment, route: Route, variant: Variant
) -> None:
    dep = deployment
    assert variant.label != "unpinned", f"{route.name}: pin it in PINS (see its comment)"
    fields, control = dep.world.fields(route.collection), dep.world.control(route.collection)
    own, other = _request(route, variant, fields), _request(route, variant, control)

    # B in its own project, naming A's names and ids: the pinned answer, nothing of A's.
    answer = _send(dep, own, dep.b)
    what = f"{dep.strategy}: B's {own.method} {own.path} {own.query}"
    assert answer.status_code == variant.status, f"{what}: {answer.text[:600]}"
    assert_learns_nothing(dep, answer, own.text(dep.b), what)
    # ... the same as for names and ids that exist nowhere.
    unknown = _send(dep, other, dep.b)
    assert _normalized(answer, fields) == _normalized(unknown, control), what
    if route.method in MUTATING:
        clean_b(dep, [(route.collection, fields["queue"]), (route.collection, control["queue"])])

    # B's credential naming A's project.
    if dep.authenticated:
        headers = {**dep.b, "X-Project-ID": dep.project_a}
        refused = _send(dep, own, headers)
        what = f"{dep.strategy}: B naming A's project, {own.method} {own.path}"
        if not route.needs_caller or not route.routed:
            assert refused.status_code == variant.status, f"{what}: {refused.text[:600]}"
        else:
            assert refused.status_code == 403, f"{what}: {refused.text[:600]}"
            if route.method != "HEAD":
                assert refused.json() == NOT_AUTHORIZED, what
        assert_learns_nothing(dep, refused, own.text(headers), what)

    # A's signed URL with B's project (and B's credential): refused.
    headers = {
        **dep.b,
        **{k: v for k, v in dep.signed.items() if k != "Client-ID"},
        "X-Project-ID": dep.project_b,
    }
    forged = _send(dep, own, headers)
    what = f"{dep.strategy}: A's signature with B's project, {own.method} {own.path}"
    expected = SIGNATURE_REFUSED if route.needs_caller else variant.status
    assert forged.status_code == expected, f"{what}: {forged.text[:600]}"
    assert_learns_nothing(dep, forged, own.text(headers), what)

    # A's signed URL as signed: it serves what it grants, and nothing else.
    signed = _send(dep, own, dep.signed)
    what = f"{dep.strategy}: A's signed URL on {own.method} {own.path} {own.query}"
    if route.needs_caller and _granted(own, dep.world):
        # Granted: exactly what A gets with its own credential.
        assert signed.status_code == 200, f"{what}: {signed.text[:600]}"
        as_a = _send(dep, own, dep.a)
        assert without_ages(signed.json()) == without_ages(as_a.json()), what
    else:
        assert signed.status_code == expected, f"{what}: {signed.text[:600]}"
        assert_learns_nothing(dep, signed, own.text(dep.signed), what)

    # A's data, read as A, is as it was.
    assert dep.snapshot() == dep.baseline, f"{dep.strategy}: {route.name} changed A's data"


# ---------------------------------------------------------------- signed URLs in depth


def test_signed_url_serves_its_project_path_and_method_only(deployment: Deployment) -> None:
    dep, w = deployment, deployment.world
    base = f"/v2/queues/{w.queue}/messages"
    listed = dep.send("GET", base, dep.signed, query={"echo": "true"})
    assert listed.status_code == 200, listed.text
    assert {m["body"]["secret"] for m in listed.json()["messages"]} == {w.body_marker}

    def refused(method: str, path: str, **changes: str) -> None:
        headers = {**dep.signed, **changes}
        response = dep.send(
            method, path, headers, body={"messages": [{"body": 1}]} if method == "POST" else None
        )
        what = f"{dep.strategy}: {method} {path} with {changes}"
        assert response.status_code == SIGNATURE_REFUSED, f"{what}: {response.text[:600]}"
        assert_learns_nothing(dep, response, "\n".join([path, *headers.values()]), what)

    b_project = dep.project_b
    # Another project: B's, an unknown one, B's credential alongside.
    refused("GET", base, **{"X-Project-ID": b_project})
    refused("GET", base, **{"X-Project-ID": "someone-else"})
    b_credential = {k: v for k, v in dep.b.items() if k != "Client-ID"}
    refused("GET", base, **{**b_credential, "X-Project-ID": b_project})
    # Another path: the queue's other resources, a look-alike, A's other queue, the topic.
    for path in (
        f"/v2/queues/{w.queue}/stats",
        f"/v2/queues/{w.queue}/claims/{w.claim}",
        f"/v2/queues/{w.queue}/subscriptions",
        f"/v2/queues/{w.queue}",
        f"{base}X",
        f"{base}/{w.queue_messages[0]}/more",
        f"/v2/queues/{w.hidden}/messages",
        f"/v2/topics/{w.topic}/messages",
        "/v2/queues",
    ):
        refused("GET", path)
    # Another method on the granted path.
    for method in ("POST", "DELETE", "PUT", "PATCH", "HEAD"):
        refused(method, base)
    refused("DELETE", f"{base}/{w.queue_messages[2]}")
    # Headers changed after signing: paths, methods, expiry.
    hidden = f"/v2/queues/{w.hidden}/messages"
    refused("GET", hidden, **{"URL-Paths": hidden})
    refused("DELETE", base, **{"URL-Methods": "DELETE,GET"})
    refused("GET", base, **{"URL-Expires": "2999-01-01T00:00:00"})

    # B's own signed URL for a queue of the same name: B's (empty) queue, never A's.
    shared = dep.as_b("POST", f"/v2/queues/{w.queue}/share", {"methods": ["GET"]})
    assert shared.status_code == 200, shared.text
    grant = shared.json()
    b_signed = {
        "Client-ID": dep.b["Client-ID"],
        "X-Project-ID": grant["project"],
        "URL-Signature": grant["signature"],
        "URL-Expires": grant["expires"],
        "URL-Methods": ",".join(grant["methods"]),
        "URL-Paths": ",".join(grant["paths"]),
    }
    own = dep.send("GET", base, b_signed, query={"echo": "true"})
    assert own.status_code == 200, own.text
    assert own.json()["messages"] == []
    moved = dep.send("GET", base, {**b_signed, "X-Project-ID": dep.project_a})
    assert moved.status_code == SIGNATURE_REFUSED, moved.text
    assert_learns_nothing(
        dep,
        moved,
        "\n".join([base, *b_signed.values(), dep.project_a]),
        "B's signed URL with A's project",
    )

    assert dep.snapshot() == dep.baseline


def test_b_lists_nothing_of_a(deployment: Deployment) -> None:
    """B's listings, whatever they filter on, hold none of A's queues or topics."""
    dep, w = deployment, deployment.world
    for path in (
        "/v2/queues?detailed=true",
        "/v2/topics?detailed=true",
        f"/v2/queues?name={w.queue[:6]}",
        f"/v2/queues?owner={w.metadata_marker}",
        "/v2/queues?with_count=true",
    ):
        listed = dep.as_b("GET", path)
        assert listed.status_code == 200, listed.text
        document = listed.json()
        assert document.get("queues", document.get("topics")) == [], (path, document)
        assert document.get("count", 0) == 0, (path, document)
        assert_learns_nothing(dep, listed, path, f"{dep.strategy}: B's GET {path}")
