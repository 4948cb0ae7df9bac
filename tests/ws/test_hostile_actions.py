"""Every WebSocket action refuses hostile input with a clear error frame (issue 8, WS side).

The WebSocket counterpart of ``tests/api/test_malformed_bodies.py``. The actions come
from the router itself (``tidings.ws.actions.ACTIONS``), and each action's hostile
frames from its own field table (``WsAction.fields``, ``.required``, ``.names_source``,
``.collection``): a new action, or a new field of one, is covered without editing this
file. The frames: a body that is not an object; each field (and the queue or topic
name) set to a value of every wrong JSON type, to null, to out-of-range integers, to
over-long, NUL-bearing, unpaired-surrogate or otherwise invalid strings, to arrays of
junk, to 200-level nesting and to nesting deeper than a frame may hold; required fields
left out; unknown fields added, and the fields of other actions; the ids of another
queue's resources; and bad headers (Client-ID and X-Project-ID missing, malformed,
over-long or not strings).

Each answer must arrive within ``FRAME_BOUND``, be a well-formed response frame for its
request (spec 8.2: ``request`` echoed, or Zaqar's undecoded echo for a frame that could
not be read; ``headers.status``; Zaqar's error body), have a status below 500 (400
"Schema validation failed." for a body that misses the schema, a 4xx for other
malformed input, anything below 500 where the input may well be valid and the action
simply succeeds or finds nothing), hold no Python traceback or exception repr, and leave
the connection open.

One SQLite server (admin mode, and admin roles on every frame, so that pool, flavor and
health actions get past policy) serves the module; one connection per action and
encoding carries all of that action's hostile frames in turn, against resources of its
own (a queue or topic with messages, a claim, a subscription), so that the valid parts
of a frame name real things. All connections act in one project that also holds a
sentinel queue and topic: no hostile frame may change them. The frame rate limit is
raised out of the way; ``tests/ws/test_limits.py`` checks its 429 error frames.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

import msgpack
import msgspec
import pytest
from websockets.exceptions import ConnectionClosed

from tests.server import TidingsServer
from tests.ws.wire import FRAME_BOUND, UNDECODED, Wire, ws_url
from tidings.ws.actions import ACTIONS, Kind, WsAction
from tidings.ws.frames import MAX_DEPTH
from tidings.ws.session import NODE_ACTIONS

ACTION_NAMES = sorted(ACTIONS)
PROJECT = f"hostile-ws-{uuid.uuid4().hex[:8]}"
SENTINEL = "sentinel"
SENTINEL_MESSAGES = 2
SCHEMA_FAILED = {"error": "Schema validation failed."}
# On every frame: pools, flavors and health are for administrators (admin mode is on).
ROLES = {"X-Roles": "admin"}
# The set-up's webhook subscribers (a closed loopback port: deliveries fail at once).
HOOK = "http://127.0.0.1:9/hostile"

LONG = 70 * 1024  # an over-long string: far past any name or id, well within a frame
DEPTH = 200  # nesting a frame may hold
# Nesting no frame may hold: past what the JSON decoder reads, short of MessagePack's own
# limit (1024), so that only the server's own bound refuses a MessagePack frame.
TOO_DEEP = 1000
MSGPACK_MAX = 2**64 - 1  # MessagePack carries no larger integer
SURROGATE = "\ud800"  # unpaired: JSON can escape it, UTF-8 (and MessagePack) cannot hold it

# What a traceback or an exception's repr looks like in a frame.
LEAKS = re.compile(r"Traceback|File \"|\b[A-Za-z_]\w*(?:Error|Exception)\(|<class '|object at 0x")
# The one error whose body is a sentence (spec 8.3: a duplicate subscription).
DUPLICATE = re.compile(r"Subscription \S+ not created\.")
# The error of a frame that could not be read (spec 8.3).
UNREADABLE = re.compile(r"Can't decode (text \(JSON\)|binary \(MessagePack\)) request\. .+")


class Expect(Enum):
    SCHEMA = "400 Schema validation failed."
    REFUSED = "a 4xx"
    NO_FAULT = "a status below 500"


@dataclass(frozen=True)
class Deep:
    """A value nested ``depth`` levels: client libraries cannot encode it (recursion), so
    it is written into the frame's bytes by hand."""

    kind: Kind  # OBJECT or ARRAY
    depth: int

    def json(self) -> str:
        if self.kind is Kind.OBJECT:
            return '{"n":' * self.depth + "1" + "}" * self.depth
        return "[" * self.depth + "1" + "]" * self.depth

    def msgpack(self) -> bytes:
        level = b"\x81\xa1n" if self.kind is Kind.OBJECT else b"\x91"  # {"n": ...} / [...]
        return level * self.depth + b"\x01"


@dataclass(frozen=True)
class Variant:
    """A hostile value and what the answer to it must be."""

    label: str
    value: Any
    expect: Expect
    json_only: bool = False  # MessagePack cannot carry it
    unreadable: bool = False  # the frame cannot be read at all: the undecoded echo


@dataclass(frozen=True)
class Case:
    name: str
    document: dict[str, Any]  # the request frame
    expect: Expect
    json_only: bool = False
    unreadable: bool = False


def case(name: str, action: str, headers: Any, body: Any, variant: Variant) -> Case:
    return Case(
        name,
        {"action": action, "headers": headers, "body": body},
        variant.expect,
        variant.json_only,
        variant.unreadable,
    )


# -- hostile values ----------------------------------------------------------------------

# One value of each JSON type, by the name ``Kind`` gives it ("number": no Kind is).
TYPED_VALUES: dict[str, Any] = {
    "string": "hostile",
    "integer": 7,
    "number": 1.5,
    "boolean": True,
    "array": [1, "a"],
    "object": {"a": 1},
}
# For a NUMBER field (long polling's "wait", seconds): out of range is refused; a valid
# one is short, since the frame waits that long on an empty queue.
NUMBERS = [
    Variant("-1", -1, Expect.REFUSED),
    Variant("0", 0, Expect.REFUSED),
    Variant("1e308", 1e308, Expect.REFUSED),
    Variant("2**70", 2**70, Expect.REFUSED, json_only=True),
    Variant("10**400", 10**400, Expect.REFUSED, json_only=True),
    Variant("0.01", 0.01, Expect.NO_FAULT),
]
# The kinds the generators below know; a new kind must be taught to them.
KNOWN_KINDS = frozenset(Kind)


def nested_object(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"n": value}
    return value


def nested_array(depth: int) -> list[Any]:
    value: list[Any] = ["leaf"]
    for _ in range(depth - 1):
        value = [value]
    return value


# For an INTEGER field: every integer field of Zaqar (limit, ttl, grace, pop) refuses
# negatives and numbers past 64 bits; 0 is valid for some (grace).
INTEGERS = [
    Variant("-1", -1, Expect.REFUSED),
    Variant("0", 0, Expect.NO_FAULT),
    Variant("2**63", 2**63, Expect.REFUSED),
    Variant("2**64-1", MSGPACK_MAX, Expect.REFUSED),
    Variant("2**70", 2**70, Expect.REFUSED, json_only=True),
    Variant("10**100", 10**100, Expect.REFUSED, json_only=True),
    Variant("-2**70", -(2**70), Expect.REFUSED, json_only=True),
]
# For a STRING field that is not a name (ids, markers, subscribers): each may name
# nothing, or be refused.
STRINGS = [
    Variant("70KB", "s" * LONG, Expect.NO_FAULT),
    Variant("nul", "a\x00b", Expect.NO_FAULT),
    Variant("empty", "", Expect.NO_FAULT),
    Variant("non-ascii", "\u00fc\u00e9\u2603\U0001f600", Expect.NO_FAULT),
    Variant("control", "\x01\x1b[31m\r\n", Expect.NO_FAULT),
    Variant("surrogate", SURROGATE, Expect.REFUSED, json_only=True, unreadable=True),
]
# Queue (and topic) names every action must refuse, among them names that a careless
# normalisation would turn into the sentinel's.
BAD_NAMES = [
    Variant(label, name, Expect.REFUSED)
    for label, name in [
        ("slash", "a/b"),
        ("65-chars", "q" * 65),
        ("300-chars", "q" * 300),
        ("70KB", "q" * LONG),
        ("non-ascii", "q\u00fc\u00e9"),
        ("empty", ""),
        ("space", "a b"),
        ("newline", "q\n"),
        ("nul", "q\x00"),
        ("sentinel-slash", f"{SENTINEL}/"),
        ("sentinel-dotdot", f"{SENTINEL}/../{SENTINEL}"),
        ("sentinel-nul", f"{SENTINEL}\x00"),
        ("sentinel-space", f" {SENTINEL}"),
        ("sentinel-percent", f"%2e%2e%2f{SENTINEL}"),
    ]
] + [Variant("surrogate", SURROGATE, Expect.REFUSED, json_only=True, unreadable=True)]
# Odd names that are valid (core spec 1.x allows dots): no path meaning over WebSocket.
ODD_NAMES = [
    Variant("dotdot", "..", Expect.NO_FAULT),
    Variant("dot", ".", Expect.NO_FAULT),
    Variant("64-chars", "q" * 64, Expect.NO_FAULT),
]
# For a field that takes any JSON value (Kind.ANY): valid or refused.
ANY_VALUES = [
    Variant("string", "yes", Expect.NO_FAULT),
    Variant("integer", 2**63, Expect.NO_FAULT),
    Variant("array", [True], Expect.NO_FAULT),
    Variant("object", {"confirmed": True}, Expect.NO_FAULT),
    Variant(f"nested-{DEPTH}", nested_object(DEPTH), Expect.NO_FAULT),
    Variant("70KB", "s" * LONG, Expect.NO_FAULT),
]
# For an OBJECT field (metadata, options).
OBJECTS = [
    Variant(f"nested-{DEPTH}", nested_object(DEPTH), Expect.NO_FAULT),
    Variant("odd-keys", {"": None, "\x00": [], "\u00fc": {"": 1.5}}, Expect.NO_FAULT),
    Variant("70KB-value", {"k": "v" * LONG}, Expect.NO_FAULT),
    Variant(
        "reserved-keys", {"_default_message_ttl": -1, "_max_claim_count": "x"}, Expect.NO_FAULT
    ),
]
# For an ARRAY field (ids, messages, resource types): arrays of each kind of item.
ARRAYS = [
    Variant(f"nested-{DEPTH}", nested_array(DEPTH), Expect.NO_FAULT),
    Variant("junk-items", [None, 1.5, {}, [], "", "\x00", 2**63], Expect.NO_FAULT),
    Variant("1000-items", ["x" * 30] * 1000, Expect.NO_FAULT),
    Variant("items-null", [None], Expect.NO_FAULT),
] + [Variant(f"items-{label}", [value], Expect.NO_FAULT) for label, value in TYPED_VALUES.items()]
UNKNOWN_FIELDS = {
    "hostile_extra": [1, {"x": None}],
    "__class__": "dict",
    "\u00fc\x00": nested_object(20),
}
# Every body field some action declares (the router's own table): an action must
# ignore, or refuse, those of other actions.
ALL_FIELDS = frozenset(f for entry in ACTIONS.values() for f in entry.fields) | {
    "queue_name",
    "topic_name",
}


def name_fields(entry: WsAction) -> tuple[str, ...]:
    """The body fields that name the action's queue or topic (``queue_name_of``)."""
    if not entry.names_source:
        return ()
    return ("queue_name", "topic_name") if entry.collection == "topics" else ("queue_name",)


def field_variants(field: str, kind: Kind, required: bool) -> list[Variant]:
    """Hostile values for one declared field."""
    assert kind in KNOWN_KINDS, f"{field}: teach this test the kind {kind}"
    variants = [Variant("null", None, Expect.SCHEMA if required else Expect.NO_FAULT)]
    if kind is Kind.ANY:
        return variants + ANY_VALUES
    # A value of another JSON type misses the schema, whatever its content.
    variants += [
        Variant(f"a-{label}", value, Expect.SCHEMA)
        for label, value in TYPED_VALUES.items()
        if label != kind.value and not (kind is Kind.NUMBER and label == "integer")
    ]
    if kind is Kind.NUMBER:  # long polling's "wait": a number of seconds, 0 < N <= 20
        variants += NUMBERS
    elif kind is Kind.INTEGER:
        variants += [Variant("60.0", 60.0, Expect.SCHEMA), *INTEGERS]  # whole, yet a float
    elif kind is Kind.STRING:
        variants += STRINGS
    elif kind in (Kind.OBJECT, Kind.ARRAY):
        variants += OBJECTS if kind is Kind.OBJECT else ARRAYS
        deep = Deep(kind, TOO_DEEP)
        variants.append(Variant(f"nested-{TOO_DEEP}", deep, Expect.REFUSED, unreadable=True))
    return variants


def body_cases(
    name: str, entry: WsAction, base: dict[str, Any], good: dict[str, str]
) -> list[Case]:
    """Every hostile body for ``entry`` (with good headers)."""

    def make(label: str, body: Any, variant: Variant) -> Case:
        return case(label, name, good, body, variant)

    schema = Variant("", None, Expect.SCHEMA)
    no_fault = Variant("", None, Expect.NO_FAULT)
    cases = [
        make("body-list", [base], schema),
        make("body-string", "queue_name", schema),
        make("body-number", 7, schema),
        make("body-boolean", True, schema),
        make("body-null", None, schema),
        make("unknown-fields", {**base, **UNKNOWN_FIELDS}, no_fault),
    ]
    own = set(entry.fields) | set(name_fields(entry))
    foreign = sorted(ALL_FIELDS - own)
    if foreign:
        cases.append(
            make("fields-of-others-nul", {**base, **dict.fromkeys(foreign, "\x00")}, no_fault)
        )
        cases.append(
            make(
                "fields-of-others-deep",
                {**base, **dict.fromkeys(foreign, nested_object(50))},
                no_fault,
            )
        )
    names = name_fields(entry)
    others = {k: v for k, v in base.items() if k not in names}
    if names:
        cases.append(make("no-name", others, schema))  # the body names nothing
    for name_field in names:
        wrong = [
            Variant(f"a-{k}", v, Expect.SCHEMA) for k, v in TYPED_VALUES.items() if k != "string"
        ]
        for variant in wrong + BAD_NAMES + ODD_NAMES:
            cases.append(
                make(
                    f"{name_field}={variant.label}", {**others, name_field: variant.value}, variant
                )
            )
    if len(names) > 1:
        # Both names, one of them bad: the action picks one (queue_name), no fault.
        queue = next(base[n] for n in names if n in base)
        for bad in names:
            body = {**others, **dict.fromkeys(names, queue), bad: "a/b"}
            cases.append(make(f"names-disagree-{bad}-bad", body, no_fault))
    for field, kind in entry.fields.items():
        required = field in entry.required
        if required:
            missing = {k: v for k, v in base.items() if k != field}
            cases.append(make(f"no-{field}", missing, schema))
        for variant in field_variants(field, kind, required):
            cases.append(make(f"{field}={variant.label}", {**base, field: variant.value}, variant))
    return cases


def header_cases(
    name: str, entry: WsAction, base: dict[str, Any], good: dict[str, str]
) -> list[Case]:
    """Every hostile ``headers`` for ``entry`` (with a valid body)."""
    data = entry.action not in NODE_ACTIONS  # Zaqar requires both headers of these
    missing = Expect.SCHEMA if data else Expect.NO_FAULT
    refused = Expect.REFUSED if data else Expect.NO_FAULT
    # The project id's length is checked with the queue name it qualifies (Zaqar's
    # queue_identification): an action on no queue may list nothing instead.
    too_long = Expect.REFUSED if entry.names_source else Expect.NO_FAULT
    without_client = {k: v for k, v in good.items() if k != "Client-ID"}
    without_project = {k: v for k, v in good.items() if k != "X-Project-ID"}
    junk = {
        **good,
        "X-Roles": "admin,\x00,," + "r" * 1000,
        "URL-Signature": "\x00" * 64,
        "URL-Expires": "never",
        "URL-Paths": "/v2/queues/../..",
        "URL-Methods": "DELETE",
        "X-Auth-Token": "t" * LONG,
        "": "",
    }
    variants = [
        Variant("no-client-id", without_client, missing),
        Variant("no-project", without_project, missing),
        Variant("none", {}, missing),
        # Zaqar does not check the Client-ID's form over WebSocket (spec 8.3).
        Variant("client-id-not-uuid", {**good, "Client-ID": "not-a-uuid"}, Expect.NO_FAULT),
        Variant("client-id-empty", {**good, "Client-ID": ""}, Expect.NO_FAULT),
        Variant("client-id-70KB", {**good, "Client-ID": "c" * LONG}, Expect.NO_FAULT),
        Variant("client-id-nul", {**good, "Client-ID": "\x00" * 36}, Expect.NO_FAULT),
        Variant(
            "client-id-surrogate",
            {**good, "Client-ID": SURROGATE},
            Expect.REFUSED,
            json_only=True,
            unreadable=True,
        ),
        Variant("project-empty", {**good, "X-Project-ID": ""}, refused),
        Variant("project-257-chars", {**good, "X-Project-ID": "p" * 257}, too_long),
        Variant("project-70KB", {**good, "X-Project-ID": "p" * LONG}, too_long),
        Variant("project-nul", {**good, "X-Project-ID": f"{PROJECT}\x00"}, refused),
        Variant("project-slash", {**good, "X-Project-ID": f"{PROJECT}/.."}, Expect.NO_FAULT),
        Variant("client-id-number", {**good, "Client-ID": 7}, Expect.SCHEMA),
        Variant("client-id-null", {**good, "Client-ID": None}, Expect.SCHEMA),
        Variant("project-list", {**good, "X-Project-ID": [PROJECT]}, Expect.SCHEMA),
        Variant("project-object", {**good, "X-Project-ID": {"id": PROJECT}}, Expect.SCHEMA),
        Variant("list", ["Client-ID", "X-Project-ID"], Expect.SCHEMA),
        Variant("string", "Client-ID", Expect.SCHEMA),
        Variant("null", None, Expect.SCHEMA),
        Variant("junk", junk, Expect.NO_FAULT),
    ]
    cases = [case(f"headers:{v.label}", name, v.value, base, v) for v in variants]
    # No "headers" member at all.
    cases.append(Case("headers:absent", {"action": name, "body": base}, Expect.SCHEMA))
    return cases


# -- the server, the sentinel and each action's resources --------------------------------

# Ids of a queue's (or topic's) resources, under the body fields that take them.
IdFields = dict[str, Any]


@dataclass(frozen=True)
class Target:
    server: TidingsServer
    # The sentinel queue's and topic's ids, by collection.
    sentinel: dict[str, IdFields]


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    srv = TidingsServer(
        tmp_path_factory.mktemp("ws-hostile"),
        env={
            "TIDINGS_ADMIN_MODE": "true",
            # Hundreds of frames per connection, back to back: not what is tested here.
            "TIDINGS_WEBSOCKET__MAX_FRAMES_PER_SECOND": "100000",
            # The webhook subscribers of the set-up are on loopback.
            "TIDINGS_NOTIFICATION__SUBSCRIBER_DENY_NETWORKS": "[]",
        },
    )
    srv.start()
    try:
        sentinel: dict[str, IdFields] = {}
        with srv.client(project=PROJECT) as api:
            for collection in ("queues", "topics"):
                path = f"/{collection}/{SENTINEL}"
                assert api.put(path, json={}).status_code == 201
                messages = [{"body": n, "ttl": 3600} for n in range(SENTINEL_MESSAGES)]
                posted = api.post(f"{path}/messages", json={"messages": messages})
                assert posted.status_code == 201, posted.text
                ids = [r.rsplit("/", 1)[1] for r in posted.json()["resources"]]
                hook = {"subscriber": HOOK, "ttl": 3600}
                created = api.post(f"{path}/subscriptions", json=hook)
                assert created.status_code == 201, created.text
                fields: IdFields = {
                    "message_id": ids[0],
                    "message_ids": ids,
                    "subscription_id": created.json()["subscription_id"],
                }
                if collection == "queues":
                    claim = api.post(
                        f"{path}/claims", params={"limit": 1}, json={"ttl": 3600, "grace": 60}
                    )
                    assert claim.status_code == 201, claim.text
                    claim_id = claim.headers["location"].rsplit("/", 1)[1]
                    fields.update(claim_id=claim_id, claim_ids=[claim_id])
                sentinel[collection] = fields
        yield Target(srv, sentinel)
    finally:
        srv.stop()


def ok(wire: Wire, action: str, body: dict[str, Any], *statuses: int) -> Any:
    status, answer = wire.call(action, body, **ROLES)
    assert status in statuses, (action, body, status, answer)
    return answer


def prefix(collection: str) -> str:
    """Of the actions on ``collection``: message_post, topic_message_post."""
    return "topic_" if collection == "topics" else ""


# A valid value of each kind, for a required field that names nothing in particular.
PLAIN = {
    Kind.STRING: "hostile",
    Kind.INTEGER: 60,
    Kind.BOOLEAN: True,
    Kind.ARRAY: [],
    Kind.OBJECT: {},
    Kind.ANY: True,
}


def prepare(wire: Wire, queue: str, entry: WsAction) -> dict[str, Any]:
    """A valid body for ``entry`` that names real resources of its own.

    ``queue`` (or the topic) gets messages, a claim (queues only) and a webhook
    subscription; the required fields take their ids, and any other required field a
    plain value of its kind. Optional fields are left out.
    """
    known: IdFields = {"messages": [{"body": {"hostile": True}, "ttl": 600}]}
    base: dict[str, Any] = {}
    if entry.names_source:
        topic = entry.collection == "topics"
        actions = prefix(entry.collection)
        base["topic_name" if topic else "queue_name"] = queue
        q = {"queue_name": queue}
        ok(wire, "topic_create" if topic else "queue_create", q, 201)
        messages = [{"body": n} for n in range(4)]
        ids = ok(wire, f"{actions}message_post", {**q, "messages": messages}, 201)["message_ids"]
        known.update(message_id=ids[0], message_ids=ids[:2])
        if not topic:
            claim = ok(wire, "claim_create", {**q, "limit": 1, "ttl": 600, "grace": 60}, 201)
            known.update(claim_id=claim["claim_id"], claim_ids=[claim["claim_id"]])
        hook = {**q, "subscriber": HOOK, "ttl": 600}
        known["subscription_id"] = ok(wire, f"{actions}subscription_create", hook, 201)[
            "subscription_id"
        ]
    for field in sorted(entry.required):
        base[field] = known.get(field, PLAIN[entry.fields[field]])
    return base


def sentinel_cases(
    name: str, entry: WsAction, base: dict[str, Any], good: dict[str, str], sentinel: IdFields
) -> list[Case]:
    """The sentinel's ids in a frame on the action's own queue: they must act on nothing."""
    fields = {f: sentinel[f] for f in entry.fields if f in sentinel}
    if not entry.names_source or not fields:
        return []
    body = {**base, **fields}
    return [case("ids-of-the-sentinel", name, good, body, Variant("", None, Expect.NO_FAULT))]


def without_ages(value: Any) -> Any:
    """``value`` without its "age" members (they grow while the test runs)."""
    if isinstance(value, dict):
        return {k: without_ages(v) for k, v in value.items() if k != "age"}
    if isinstance(value, list):
        return [without_ages(v) for v in value]
    return value


def sentinel_state(wire: Wire, sentinel: dict[str, IdFields]) -> list[Any]:
    """What can be seen of the sentinel queue and topic: counts, messages, claim, hook."""
    state: list[Any] = []
    for collection, ids in sorted(sentinel.items()):
        actions = prefix(collection)
        q = {"queue_name": SENTINEL}
        stats = ok(wire, "topic_get_stats" if actions else "queue_get_stats", q, 200)
        state.append({k: v for k, v in stats["messages"].items() if k not in ("oldest", "newest")})
        many = {**q, "message_ids": ids["message_ids"]}
        listed = ok(wire, f"{actions}message_get_many", many, 200)["messages"]
        state.append(sorted(m["id"] for m in listed))
        ref = {**q, "subscription_id": ids["subscription_id"]}
        state.append(without_ages(ok(wire, f"{actions}subscription_get", ref, 200)))
        if "claim_id" in ids:
            claim = ok(wire, "claim_get", {**q, "claim_id": ids["claim_id"]}, 200)
            state.append(without_ages(claim))
    return state


# -- sending a frame and checking its answer ----------------------------------------------

MARK = "\x00deep\x00"  # stands for a Deep value while the rest of the frame is encoded


def encoded(document: dict[str, Any], binary: bool) -> str | bytes:
    body = document.get("body")
    deep = None
    if isinstance(body, dict):
        deep = next((v for v in body.values() if isinstance(v, Deep)), None)
        if deep is not None:
            marked = {k: MARK if v is deep else v for k, v in body.items()}
            document = {**document, "body": marked}
    if binary:
        raw = msgspec.msgpack.encode(document)
        return raw if deep is None else raw.replace(msgspec.msgpack.encode(MARK), deep.msgpack())
    text = json.dumps(document)
    return text if deep is None else text.replace(json.dumps(MARK), deep.json())


def echo_of(document: dict[str, Any]) -> dict[str, Any]:
    """The ``request`` member a response to ``document`` carries (spec 8.2)."""
    headers = document.get("headers")
    return {
        "action": document["action"],
        "body": document.get("body", {}),
        "headers": headers if headers is not None else {},
        "api": "v2",
    }


def is_error_body(status: int, body: Any) -> bool:
    """Whether ``body`` is one of Zaqar's error bodies (spec 8.3, "Errors")."""
    if status == 409 and isinstance(body, str):
        return DUPLICATE.fullmatch(body) is not None  # the one that is a sentence
    if not isinstance(body, dict):
        return False
    if set(body) == {"error"}:
        return isinstance(body["error"], str) and bool(body["error"])
    return (
        set(body) == {"exception", "error"}
        and isinstance(body["exception"], str)
        and bool(body["exception"])
        and (body["error"] is None or isinstance(body["error"], str))
    )


def problems_with(case: Case, answer: Any) -> list[str]:
    """What is wrong with ``answer`` as the response to ``case`` (nothing: [])."""
    if not isinstance(answer, dict) or set(answer) != {"request", "body", "headers"}:
        return [f"not a response frame: {str(answer)[:300]}"]
    status = answer["headers"].get("status") if isinstance(answer["headers"], dict) else None
    if answer["headers"] != {"status": status} or not isinstance(status, int):
        return [f"headers are not {{'status': <int>}}: {str(answer['headers'])[:200]}"]
    found: list[str] = []
    body = answer["body"]
    text = json.dumps(body, default=repr)
    if case.unreadable:
        if answer["request"] != UNDECODED or status != 400:
            found.append(f"not refused as unreadable: {status} {str(answer)[:300]}")
        elif not (isinstance(body, dict) and UNREADABLE.fullmatch(str(body.get("error")))):
            found.append(f"not Zaqar's decoding error: {text[:300]}")
    elif answer["request"] != echo_of(case.document):
        found.append(f"request not echoed: {str(answer['request'])[:300]}")
    if LEAKS.search(text):
        found.append(f"a traceback or repr in the body: {text[:500]}")
    if status >= 400 and not is_error_body(status, body):
        found.append(f"not a Zaqar error body: {text[:300]}")
    if (
        (case.expect is Expect.SCHEMA and (status, body) != (400, SCHEMA_FAILED))
        or (case.expect is Expect.REFUSED and not 400 <= status < 500)
        or status >= 500
    ):
        found.append(f"{status} {text[:300]}")
    return found


# -- the tests -----------------------------------------------------------------------------


def test_every_action_of_the_router_is_covered() -> None:
    """The parameters are the router's actions: all of them, and a sane walk of them."""
    assert ACTION_NAMES, "tidings.ws.actions.ACTIONS is empty"
    assert sorted(ACTIONS) == ACTION_NAMES
    for expected in (
        "queue_create",
        "message_post",
        "message_delete_many",
        "claim_update",
        "subscription_confirm",
        "topic_message_post",
        "ping_node",
        "pool_create",
        "flavor_delete",
    ):
        assert expected in ACTIONS
    for name, entry in ACTIONS.items():
        for field, kind in entry.fields.items():
            assert kind in KNOWN_KINDS, f"{name}.{field}: teach this test the kind {kind}"
        assert entry.required <= set(entry.fields), name


@pytest.mark.parametrize("binary", [False, True], ids=["json", "msgpack"])
@pytest.mark.parametrize("name", ACTION_NAMES)
def test_hostile_frames_get_error_frames(target: Target, name: str, binary: bool) -> None:
    entry = ACTIONS[name]
    with Wire(ws_url(target.server.url), binary=binary, project=PROJECT) as wire:
        good = {**wire.headers, **ROLES}
        before = sentinel_state(wire, target.sentinel)
        base = prepare(wire, f"h_{name}_{'m' if binary else 'j'}", entry)
        sentinel = target.sentinel.get(entry.collection, {})
        cases = [
            *sentinel_cases(name, entry, base, good, sentinel),
            *body_cases(name, entry, base, good),
            *header_cases(name, entry, base, good),
        ]
        cases = [c for c in cases if not (binary and c.json_only)]
        failures: list[str] = []
        for hostile in cases:
            wire.ws.send(encoded(hostile.document, binary))
            try:
                answer = wire.receive()
            except (TimeoutError, ConnectionClosed) as exc:
                failures.append(f"{hostile.name}: no answer ({type(exc).__name__}: {exc})")
                break
            failures += [f"{hostile.name}: {problem}" for problem in problems_with(hostile, answer)]
        else:
            # Still open, and still serving.
            assert wire.call("ping_node", **ROLES)[0] == 204
            assert wire.call("queue_list", **ROLES)[0] == 200
            # Nothing reached the sentinel queue and topic of the same project.
            assert sentinel_state(wire, target.sentinel) == before
        summary = f"{name}: {len(failures)} of {len(cases)} frames:\n"
        assert not failures, summary + "\n".join(failures)


def test_msgpack_frames_are_answered_up_to_the_depth_bound(target: Target) -> None:
    """A MessagePack frame that nests as deep as a frame may is answered; one level
    deeper is refused as unreadable. (MessagePack decodes up to 1024 levels; the
    answer, which echoes the request, must still encode.) Every action with an object
    or array field, through that field."""
    deep_fields = [
        (name, field, kind)
        for name, entry in sorted(ACTIONS.items())
        for field, kind in entry.fields.items()
        if kind in (Kind.OBJECT, Kind.ARRAY)
    ]
    assert deep_fields
    with Wire(ws_url(target.server.url), binary=True, project=PROJECT) as wire:
        good = {**wire.headers, **ROLES}
        for name, field, kind in deep_fields:
            entry = ACTIONS[name]
            base: dict[str, Any] = {n: "h_deep" for n in name_fields(entry)[:1]}
            base.update({f: PLAIN[entry.fields[f]] for f in entry.required})
            # The frame is level 1, its body level 2: the value's deepest level is the bound.
            for depth, readable in ((MAX_DEPTH - 2, True), (MAX_DEPTH - 1, False)):
                document = {
                    "action": name,
                    "headers": good,
                    "body": {**base, field: Deep(kind, depth)},
                }
                wire.ws.send(encoded(document, binary=True))
                raw = wire.ws.recv(timeout=FRAME_BOUND)
                assert isinstance(raw, bytes)
                # msgpack's own decoder: the echo is too deep for a recursive one.
                answer = msgpack.unpackb(raw, raw=False)
                what = f"{name}.{field} nested {depth}"
                assert set(answer) == {"request", "body", "headers"}, what
                status = answer["headers"]["status"]
                if readable:
                    assert status < 500 and answer["request"]["action"] == name, (what, status)
                else:
                    assert (status, answer["request"]) == (400, UNDECODED), (what, answer)
                    assert f"deeper than {MAX_DEPTH} levels" in answer["body"]["error"], what
                assert not LEAKS.search(json.dumps(answer["body"])[:2000]), (what, answer["body"])
        assert wire.call("ping_node", **ROLES)[0] == 204
