"""Tenant isolation over every WebSocket action: the counterpart of ``test_isolation``.

Project A owns what ``tests/auth/isolation_world.py`` makes over HTTP (a queue, a
topic and a hidden queue, with messages, a claim, a subscription on each source, a
pre-signed URL). Project B (an admin of its own project) then sends every action of
the WebSocket router (``tidings.ws.actions.ACTIONS``: a new action is covered, and
must be pinned below, without editing the walk) on one connection, its body filled
from the action's own ``fields`` with A's real names and ids, under ``noauth`` (B's
own ``X-Project-ID`` in every frame) and ``tokens`` (B's connection authenticated
with B's own token). Keystone admits the same way once ``authenticate`` has passed
(``test_keystone`` covers it over WebSocket). For each action:

* B in its own project, naming A's names and ids, gets the pinned status, and the same
  answer (status and body, once the names and ids it sent are set aside) as for
  values of the same shapes that exist nowhere: B cannot tell that A's exist.
* No frame B receives holds anything of A's that B did not send itself.
* With ``tokens``, B's frame naming A's project in ``X-Project-ID`` (with A's signature
  alongside, or not) is refused with 403 "Not authenticated.", for every action (the
  node-level ones too: the session checks the claimed project before it looks at the
  action), and the connection goes on serving B. Before ``authenticate``, A's
  signature on a frame naming B's project is refused for every action, and A's
  signature as issued serves only the actions it grants (GET on A's queue's
  messages) and refuses the rest.
* A's data, read as A over HTTP, is the same after every action that may change
  something as before the module started.

And B's connection, subscribed (push, no subscriber) to the names of A's queue and
topic, is pushed nothing of A's posts.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.auth.isolation_world import (
    PURGE,
    Deployment,
    clean_b,
    deploy,
    fill,
    normalized_text,
)
from tests.ws.wire import FRAME_BOUND, Wire, ws_url
from tidings.ws.actions import ACTIONS, WsAction

# One worker for the module where xdist groups tests (--dist loadgroup): two servers,
# not two per worker.
pytestmark = pytest.mark.xdist_group("ws-isolation")

STRATEGIES = ("noauth", "tokens")
AUTHENTIFIED = {"message": "Authentified."}
# A frame naming another project than the authenticated one (session.py).
NOT_AUTHENTICATED = {"error": "Not authenticated."}
# A frame before authenticate without a signature that holds for it (session.py).
NOT_AUTHENTIFIED = {"error": "Not authentified."}
# Frames not answering B's request (pushes) tolerated while waiting for an answer.
MAX_STRAY_FRAMES = 16
# Actions that change nothing (everything else is checked against A's snapshot).
READ_ONLY_SUFFIXES = ("_list", "_get", "_get_many", "_get_stats", "_failures")
NODE_LEVEL = frozenset({"get_home_doc", "ping_node", "check_node_health"})
# What A's signed URL grants over WebSocket: GET on its queue's messages.
SIGNED_GRANTS = frozenset({"message_list", "message_get", "message_get_many"})


# ---------------------------------------------------------------- the bodies and pins

# Each body field any action takes -> the value B sends (templates over World.fields,
# plus {marker}). A field an action gains fails test_every_field_has_a_value until
# given one here.
FILL: dict[str, Any] = {
    "marker": "{marker}",
    "limit": 10,
    "detailed": True,
    "with_count": True,
    "name": "{queue}",
    "echo": True,
    "include_claimed": True,
    "include_delayed": True,
    "metadata": {"owner": "b"},
    "resource_types": PURGE["resource_types"],
    "message_id": "{message_id}",
    "message_ids": ["{message_id}", "{message_id_2}"],
    "messages": [{"body": "b", "ttl": 300}],
    "claim_id": "{claim_id}",
    "claim_ids": ["{claim_id}"],
    "pop": 3,
    "ttl": 600,
    "grace": 60,
    "subscriber": "{subscriber}",
    "options": {"b": 1},
    "confirmed": True,
    "subscription_id": "{subscription_id}",
    # Pools and flavors (404 here: these servers are not pooled; tests/pooling covers them).
    "pool_name": "{queue}",
    "flavor_name": "{queue}",
    "uri": "sqlite:///never-made.db",
    "weight": 10,
    "flavor": "{queue}",
    "pool_list": ["{queue}"],
    "capabilities": {"b": 1},
    # Long polling: B waits a little in its own namespace, never on A's queue.
    "wait": 0.2,
}


@dataclass(frozen=True)
class Variant:
    """One way of sending an action: which of its fields (all by default), values that
    override FILL, the key naming the source, and the status B gets in its own project
    when the values are A's."""

    label: str
    status: int
    sent: tuple[str, ...] | None = None
    override: dict[str, Any] = field(default_factory=dict)
    source_key: str = "queue_name"


def _v(
    status: int,
    label: str = "",
    sent: tuple[str, ...] | None = None,
    override: dict[str, Any] | None = None,
) -> Variant:
    return Variant(label, status, sent, override or {})


# Queue actions, also offered on topics (topic_<name without queue_>). Zaqar's queues
# are per project and lazy: where B's action acts on B's own queue of that name
# (creates it, shows its defaults, deletes idempotently) the pin says so; an action
# naming one of A's ids answers as for a missing one.
_FAMILY: dict[str, list[Variant]] = {
    "queue_list": [
        _v(200),
        _v(200, "no name filter", ("marker", "limit", "detailed", "with_count")),
    ],
    "queue_create": [_v(201)],  # B's own queue
    "queue_get": [_v(200)],  # B's own (lazy) queue: the defaults
    "queue_delete": [_v(204)],
    "queue_get_stats": [_v(200)],
    "queue_purge": [_v(204)],
    "message_list": [_v(200)],
    "message_get": [_v(404)],
    "message_get_many": [_v(404)],
    "message_post": [_v(201)],  # into B's own queue
    "message_delete": [_v(204), _v(204, "no claim_id", ("message_id",))],
    "message_delete_many": [
        _v(204, "ids", ("message_ids",)),
        _v(204, "ids+claim_ids", ("message_ids", "claim_ids")),
        _v(200, "pop", ("pop",)),
    ],
    # B's own subscriptions, to A's subscriber or to B's connection: never A's id.
    "subscription_list": [_v(200)],
    "subscription_create": [
        _v(201, "webhook"),
        _v(201, "connection", ("ttl", "options")),
    ],
    "subscription_get": [_v(404)],
    "subscription_update": [_v(404)],
    "subscription_delete": [_v(204)],
    "subscription_confirm": [
        _v(404, "confirm"),
        _v(404, "unsubscribe", override={"confirmed": False}),
    ],
    "subscription_failures": [_v(404)],
}
_QUEUES_ONLY: dict[str, list[Variant]] = {
    "claim_create": [_v(204)],  # B's own (empty) queue: nothing to claim
    "claim_get": [_v(404)],
    "claim_update": [_v(404)],
    "claim_delete": [_v(204)],
}
_NODE: dict[str, list[Variant]] = {
    "get_home_doc": [_v(200)],
    "ping_node": [_v(204)],
    "check_node_health": [_v(200)],  # B is an admin: its own self-test
    **{
        f"{kind}_{verb}": [_v(404)]  # they pass policy (B is an admin), then: no pooling
        for kind in ("pool", "flavor")
        for verb in ("list", "create", "get", "update", "delete")
    },
}
PINS: dict[str, list[Variant]] = {
    **_FAMILY,
    **{"topic_" + name.removeprefix("queue_"): variants for name, variants in _FAMILY.items()},
    **_QUEUES_ONLY,
    **_NODE,
}
# B's authenticated frame naming A's project: refused before the action, whatever it
# is (the node-level actions too, unlike HTTP's versions document). An action answered
# otherwise is listed here.
FOREIGN_PROJECT: dict[str, tuple[int, Any]] = {}


def _cases() -> list[Any]:
    cases = []
    for name in sorted(ACTIONS):
        entry = ACTIONS[name]
        variants = PINS.get(name, [Variant("unpinned", 0)])
        if entry.collection == "topics" and entry.names_source:
            # Topic actions also take the topic's name as topic_name.
            first = variants[0]
            label = f"{first.label}, topic_name" if first.label else "topic_name"
            variants = [
                *variants,
                Variant(label, first.status, first.sent, first.override, "topic_name"),
            ]
        for variant in variants:
            suffix = f" [{variant.label}]" if variant.label else ""
            cases.append(pytest.param(name, variant, id=f"{name}{suffix}"))
    return cases


CASES = _cases()


def test_every_action_is_pinned() -> None:
    """The pins and the WebSocket router name the same actions: a new one needs its pin."""
    assert set(ACTIONS) - set(PINS) == set(), "actions without a pin in PINS"
    assert set(PINS) - set(ACTIONS) == set(), "pins for actions the router no longer has"
    assert set(FOREIGN_PROJECT) <= set(ACTIONS)


def test_every_field_has_a_value_and_is_sent() -> None:
    """Every body field of every action gets a value B sends, in one of its variants."""
    for name, entry in ACTIONS.items():
        assert set(entry.fields) <= set(FILL), f"{name}: give its new fields a value in FILL"
        sent = set()
        for variant in PINS.get(name, []):
            sent |= set(entry.fields if variant.sent is None else variant.sent)
            assert set(variant.sent or ()) <= set(entry.fields), (name, variant)
        assert sent == set(entry.fields), f"{name}: fields no variant sends"


def _mutates(name: str) -> bool:
    return not (name in NODE_LEVEL or name.endswith(READ_ONLY_SUFFIXES))


def _marker(name: str, fields: dict[str, str]) -> str:
    """A listing's marker: the id of what it lists."""
    if "subscription" in name:
        return fields["subscription_id"]
    if "message" in name:
        return fields["message_id"]
    return fields["queue"]


def _body(name: str, entry: WsAction, variant: Variant, fields: dict[str, str]) -> dict[str, Any]:
    values = {**fields, "marker": _marker(name, fields)}
    chosen = entry.fields if variant.sent is None else variant.sent
    body: dict[str, Any] = {key: fill(FILL[key], values) for key in chosen}
    body.update(fill(variant.override, values))
    if entry.names_source:
        body[variant.source_key] = fields["queue"]
    return body


# ---------------------------------------------------------------- the deployments


@dataclass
class Answer:
    status: int
    body: Any
    sent: str  # the frame B sent, as sent
    seen: list[str]  # every frame received up to and with the answer, as received


@dataclass
class WsDeployment:
    dep: Deployment
    wire: Wire  # B's connection (authenticated under tokens)
    headers: dict[str, str]  # B's frame headers
    # Under tokens, a connection of B's that never authenticates (for signed frames).
    anonymous: Wire | None = None

    def exchange(
        self,
        action: str,
        body: dict[str, Any],
        headers: dict[str, str] | None = None,
        wire: Wire | None = None,
    ) -> Answer:
        """Send one frame and read up to its answer (pushes on the way are kept too)."""
        wire = wire or self.wire
        document = {"action": action, "headers": headers or self.headers, "body": body}
        sent = json.dumps(document)
        wire.ws.send(sent)
        seen = []
        for _ in range(MAX_STRAY_FRAMES):
            raw = wire.ws.recv(timeout=FRAME_BOUND)
            assert isinstance(raw, str), raw
            seen.append(raw)
            answer = json.loads(raw)
            echo = answer.get("request") if isinstance(answer, dict) else None
            # (authenticate is echoed without its headers and body: they hold the token)
            expected = {**document, "api": "v2"}
            if action == "authenticate":
                expected.update(headers={}, body={})
            if echo == expected:
                return Answer(int(answer["headers"]["status"]), answer["body"], sent, seen)
        raise AssertionError(f"no answer to {action} among {seen}")


def assert_learns_nothing(d: WsDeployment, answer: Answer, what: str) -> None:
    """Nothing of A's in any frame B received, but for what B's frame carried."""
    secrets = d.dep.world.secrets(d.dep.project_a)
    for frame in answer.seen:
        leaked = [n for n, value in secrets.items() if value in frame and value not in answer.sent]
        assert not leaked, f"{what}: the frame reveals {leaked}: {frame[:600]}"


@pytest.fixture(scope="module", params=STRATEGIES)
def ws_deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WsDeployment]:
    strategy: str = request.param
    data_dir = tmp_path_factory.mktemp(f"ws-isolation-{strategy}")
    # B sends frames back to back: no rate limit in the way.
    env = {"TIDINGS_WEBSOCKET__MAX_FRAMES_PER_SECOND": "100000"}
    with deploy(strategy, data_dir, env=env) as dep:
        headers = {"Client-ID": dep.b["Client-ID"], "X-Project-ID": dep.project_b}
        if not dep.authenticated:
            headers["X-Roles"] = dep.b["X-Roles"]
        url = ws_url(dep.server.url)
        with Wire(url, project=dep.project_b) as wire, Wire(url) as anonymous:
            d = WsDeployment(dep, wire, headers)
            if dep.authenticated:
                d.anonymous = anonymous
                authenticate = {**headers, "X-Auth-Token": dep.b["X-Auth-Token"]}
                done = d.exchange("authenticate", {}, authenticate)
                assert (done.status, done.body) == (200, AUTHENTIFIED)
            yield d


# ---------------------------------------------------------------- the checks


@pytest.mark.parametrize(("name", "variant"), CASES)
def test_project_b_cannot_reach_project_a(
    ws_deployment: WsDeployment, name: str, variant: Variant
) -> None:
    d, dep = ws_deployment, ws_deployment.dep
    assert variant.label != "unpinned", f"{name}: pin it in PINS (see its comment)"
    entry = ACTIONS[name]
    fields, control = dep.world.fields(entry.collection), dep.world.control(entry.collection)
    own, other = _body(name, entry, variant, fields), _body(name, entry, variant, control)

    # B in its own project, naming A's names and ids: the pinned answer, nothing of A's.
    answer = d.exchange(name, own)
    what = f"{dep.strategy}: B's {name} {own}"
    assert answer.status == variant.status, f"{what}: {answer.body}"
    assert_learns_nothing(d, answer, what)
    # ... the same as for names and ids that exist nowhere.
    unknown = d.exchange(name, other)
    assert_learns_nothing(d, unknown, f"{what} (control)")
    assert (answer.status, normalized_text(json.dumps(answer.body), fields)) == (
        unknown.status,
        normalized_text(json.dumps(unknown.body), control),
    ), what
    if _mutates(name) and entry.names_source:
        clean_b(dep, [(entry.collection, fields["queue"]), (entry.collection, control["queue"])])

    if d.anonymous is not None:
        # B's token naming A's project (A's signature alongside, or not): refused, and
        # the connection goes on serving B.
        signed = {**dep.signed, "Client-ID": d.headers["Client-ID"]}
        expected = FOREIGN_PROJECT.get(name, (403, NOT_AUTHENTICATED))
        for headers in ({**d.headers, "X-Project-ID": dep.project_a}, {**d.headers, **signed}):
            refused = d.exchange(name, own, headers)
            what = f"{dep.strategy}: B naming A's project, {name} {own} {headers}"
            assert (refused.status, refused.body) == expected, what
            assert_learns_nothing(d, refused, what)
            pong = d.exchange("ping_node", {})
            assert pong.status == 204, pong.body

        # Before authenticate, A's signature: with B's project refused, as issued it
        # serves only what it grants.
        for project in (dep.project_b, dep.project_a):
            forged = d.exchange(name, own, {**signed, "X-Project-ID": project}, d.anonymous)
            what = f"{dep.strategy}: A's signature in {project}, {name} {own}"
            if project == dep.project_a and name in SIGNED_GRANTS:
                assert forged.status == 200, f"{what}: {forged.body}"
            else:
                assert (forged.status, forged.body) == (403, NOT_AUTHENTIFIED), what
                assert_learns_nothing(d, forged, what)

    # A's data, read as A, is as it was.
    if _mutates(name):
        assert dep.snapshot() == dep.baseline, f"{dep.strategy}: {name} changed A's data"


def test_b_is_pushed_nothing_of_a(ws_deployment: WsDeployment) -> None:
    """B's connection, subscribed to B's own queue and topic of A's names, gets a push
    for B's post there, and none for A's post to A's own."""
    d, dep, w = ws_deployment, ws_deployment.dep, ws_deployment.dep.world
    with Wire(ws_url(dep.server.url), project=dep.project_b) as wire:
        if dep.authenticated:
            authenticate = {**d.headers, "X-Auth-Token": dep.b["X-Auth-Token"]}
            done = d.exchange("authenticate", {}, authenticate, wire)
            assert (done.status, done.body) == (200, AUTHENTIFIED)
        for collection, source, prefix in (
            ("queues", w.queue, ""),
            ("topics", w.topic, "topic_"),
        ):
            subscribed = d.exchange(
                f"{prefix}subscription_create", {"queue_name": source, "ttl": 600}, wire=wire
            )
            assert subscribed.status == 201, subscribed.body
            # A posts to its own, then B to its own of the same name.
            a_marker = f"{w.body_marker}-push"
            posted = dep.as_a(
                "POST",
                f"/v2/{collection}/{source}/messages",
                {"messages": [{"body": {"secret": a_marker}, "ttl": 600}]},
            )
            assert posted.status_code == 201, posted.text
            b_marker = f"b-push-{uuid.uuid4().hex[:8]}"
            mine = d.exchange(
                f"{prefix}message_post",
                {"queue_name": source, "messages": [{"body": b_marker, "ttl": 600}]},
                wire=wire,
            )
            assert mine.status == 201, mine.body
            pushes = list(mine.seen)
            while not any(b_marker in frame for frame in pushes):
                assert len(pushes) < MAX_STRAY_FRAMES, pushes
                raw = wire.ws.recv(timeout=FRAME_BOUND)
                assert isinstance(raw, str), raw
                pushes.append(raw)
            a_id = posted.json()["resources"][0].rsplit("/", 1)[1]
            for frame in pushes:
                assert a_marker not in frame and a_id not in frame, frame[:600]
            assert_learns_nothing(
                d,
                Answer(0, None, "\n".join([mine.sent, source]), pushes),
                f"{dep.strategy}: pushes on {collection}",
            )
            # A's data as it was: A's post taken back, B's queue and subscription gone.
            removed = dep.as_a("DELETE", f"/v2/{collection}/{source}/messages/{a_id}")
            assert removed.status_code == 204, removed.text
            clean_b(dep, [(collection, source)])
    assert dep.snapshot() == dep.baseline, f"{dep.strategy}: pushes changed A's data"
