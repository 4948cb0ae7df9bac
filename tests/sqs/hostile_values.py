"""Hostile requests for the SQS face, made from botocore's SQS model (test_hostile.py).

Every member of an operation's input shape, recursing into structures, list items, map
keys and map values, is a ``Path``. A request for a path holds a plausible valid value
for everything the operation needs (its required members, and the structures on the way
to the path) and a hostile value at the path; so the hostile value gets as far into the
operation as a valid one would. A member added to the model later is covered with the
generic values of its type.

Hostile values are raw: a JSON fragment spliced into the JSON body where the path's
value goes (so it may be invalid JSON, or invalid UTF-8), or query-protocol pairs
(a suffix to the parameter's name and a raw value, both percent-encoded as bytes).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_from_bytes

import botocore.session
import msgspec

from tidings.sqs import protocol

# Stands for the hostile value while a request is built (a value, or a map's key).
SENTINEL = "@@hostile-value@@"
_SENTINEL_JSON = json.dumps(SENTINEL).encode()

# Steps of a path below a member: a list's item, a map's key, a map's value.
ITEM, KEY, VALUE = "[]", "{key}", "{}"

# Sizes: a string past every per-value limit (the largest message is 256 KiB with the
# default [transport] max_messages_post_size; whole bodies past the request limit are
# test_hostile_framing's), lists and maps past SQS's and the protocol's bounds (10 and
# 1,000 items), nesting past any parser's.
HUGE_STRING = 400_000
LONG_STRING = 100_000
MANY = 1_500
DEEP = 5_000


@dataclass(frozen=True)
class Context:
    """What the hostile requests of one test aim at: its project, queues and a message
    in flight."""

    base_url: str
    project: str
    queue: str
    queue_url: str
    dlq_url: str
    handle: str
    other_project: str

    def arn(self, queue: str, project: str | None = None) -> str:
        return f"arn:aws:sqs:us-east-1:{project or self.project}:{queue}"


@dataclass(frozen=True)
class Path:
    """One member (or list item, map key, map value) of an operation's input."""

    steps: tuple[str, ...]
    kind: str  # the model's type at the path
    shape: Any  # botocore's shape at the path
    name: str  # the member name it belongs to (a list's or map's member for its parts)
    map_shape: str = ""  # for a map's key or value: the map's shape name

    def __str__(self) -> str:
        shown = ""
        for step in self.steps:
            shown += step if step in (ITEM, KEY, VALUE) else (f".{step}" if shown else step)
        return shown


@dataclass(frozen=True)
class Hostile:
    """A hostile value: its name in failure messages, its JSON fragment, and the query
    pairs that stand for it (suffix to the parameter's name, raw value; no pairs: the
    parameter is left out, None: no query form)."""

    name: str
    json: bytes
    query: tuple[tuple[bytes, bytes], ...] | None = None
    family: str = "string"  # string, number or container: the paths it is most for
    everywhere: bool = False  # also for paths of another family


# The model -------------------------------------------------------------------------------


def model() -> Any:
    return botocore.session.get_session().get_service_model("sqs")


def input_shape(operation: str) -> Any:
    return model().operation_model(operation).input_shape


def paths(operation: str) -> list[Path]:
    """Every path of the operation's input, depth first."""
    found: list[Path] = []
    shape = input_shape(operation)
    if shape is not None:
        for name, member in shape.members.items():
            _walk(member, (name,), name, "", found)
    return found


def _walk(shape: Any, steps: tuple[str, ...], name: str, map_shape: str, out: list[Path]) -> None:
    out.append(Path(steps, shape.type_name, shape, name, map_shape))
    if len(steps) > 12:  # SQS's shapes are not recursive; a later model's might be
        return
    if shape.type_name == "structure":
        for child, member in shape.members.items():
            _walk(member, (*steps, child), child, "", out)
    elif shape.type_name == "list":
        _walk(shape.member, (*steps, ITEM), name, "", out)
    elif shape.type_name == "map":
        out.append(Path((*steps, KEY), shape.key.type_name, shape.key, name, shape.name))
        _walk(shape.value, (*steps, VALUE), name, shape.name, out)


# Valid values ----------------------------------------------------------------------------

# A map's entry that is valid, by map shape: (key, value) (a structure value is built).
MAP_ENTRIES: dict[str, tuple[str, Any]] = {
    "QueueAttributeMap": ("VisibilityTimeout", "30"),
    "TagMap": ("team", "blue"),
    "MessageBodyAttributeMap": ("colour", None),
    "MessageBodySystemAttributeMap": ("AWSTraceHeader", None),
}
# Map keys the value of a map's entry is tried under (a value's meaning depends on it).
VALUE_KEYS: dict[str, tuple[str, ...]] = {
    "QueueAttributeMap": ("VisibilityTimeout", "RedrivePolicy", "RedriveAllowPolicy"),
}
TRACE_HEADER = "Root=1-5759e988-bd862e3fe1be46a994272793"
# Members a structure gets with its required ones, so that it is valid as a whole.
COMPANIONS: dict[str, tuple[str, ...]] = {
    "MessageAttributeValue": ("StringValue",),
    "MessageSystemAttributeValue": ("StringValue",),
    "ChangeMessageVisibilityBatchRequestEntry": ("VisibilityTimeout",),
}


def _named(ctx: Context, name: str, struct: str) -> Any:
    """A valid value for a member, by its name (None: none known, use the type's)."""
    if struct == "MessageSystemAttributeValue":  # AWSTraceHeader's
        return {"DataType": "String", "StringValue": TRACE_HEADER}.get(name)
    return {
        "QueueUrl": ctx.queue_url,
        "QueueName": ctx.queue,
        "QueueNamePrefix": ctx.queue[:1],
        "QueueOwnerAWSAccountId": ctx.project,
        "MaxResults": 10,
        "ReceiptHandle": ctx.handle,
        "MessageBody": "hello",
        "Id": "e1",
        "DelaySeconds": 0,
        "VisibilityTimeout": 60,
        "WaitTimeSeconds": 0,
        "MaxNumberOfMessages": 1,
        "DataType": "Number",
        "StringValue": "42",
        "BinaryValue": "AAEC",
        "AttributeNames[]": "All",
        "MessageAttributeNames[]": "All",
        "MessageSystemAttributeNames[]": "All",
        "TagKeys[]": "team",
    }.get(name)


def valid(ctx: Context, shape: Any, name: str = "", struct: str = "") -> Any:
    """A valid value of ``shape`` for the member ``name`` of structure ``struct``."""
    known = _named(ctx, name, struct)
    if known is not None:
        return known
    kind = shape.type_name
    if kind == "structure":
        return {
            member: valid(ctx, shape.members[member], member, shape.name)
            for member in _filled(shape)
        }
    if kind == "list":
        return [valid(ctx, shape.member, name + ITEM)]
    if kind == "map":
        key, value = MAP_ENTRIES.get(shape.name, ("k", None))
        return {key: value if value is not None else valid(ctx, shape.value, name, shape.name)}
    return {"integer": 1, "long": 1, "boolean": False, "blob": "AAEC"}.get(kind, "x")


def _filled(shape: Any) -> list[str]:
    names = list(shape.required_members)
    for companion in COMPANIONS.get(shape.name, ()):
        if companion in shape.members and companion not in names:
            names.append(companion)
    return names


def baseline(ctx: Context, operation: str) -> dict[str, Any]:
    """The operation's valid request: its required members."""
    shape = input_shape(operation)
    return {} if shape is None else valid(ctx, shape)


def with_hostile(
    ctx: Context, operation: str, path: Path, value_key: str | None = None
) -> dict[str, Any]:
    """The operation's valid request with SENTINEL at ``path`` (a map's value under
    ``value_key``, when given)."""
    return _build(ctx, input_shape(operation), path.steps, "", "", value_key)


def _build(
    ctx: Context, shape: Any, steps: tuple[str, ...], name: str, struct: str, value_key: str | None
) -> Any:
    if not steps:
        return SENTINEL
    step, rest = steps[0], steps[1:]
    kind = shape.type_name
    if kind == "structure":
        out = {m: valid(ctx, shape.members[m], m, shape.name) for m in _filled(shape)}
        out.pop(step, None)
        if shape.name == "MessageAttributeValue" and step != "DataType":
            # A value of another kind is checked against a data type of its kind.
            out["DataType"] = "Binary" if step.startswith("Binary") else "Number"
            if step != "StringValue":
                out.pop("StringValue", None)
        out[step] = _build(ctx, shape.members[step], rest, step, shape.name, value_key)
        return out
    if kind == "list":
        return [_build(ctx, shape.member, rest, name + ITEM, struct, value_key)]
    assert kind == "map", kind
    key, value = MAP_ENTRIES.get(shape.name, ("k", None))
    if step == KEY:
        return {SENTINEL: value if value is not None else valid(ctx, shape.value, name, shape.name)}
    if value_key is not None:
        key = value_key
    return {key: _build(ctx, shape.value, rest, name, shape.name, value_key)}


# Encoding --------------------------------------------------------------------------------


def json_body(params: dict[str, Any], hostile: Hostile) -> bytes:
    body = msgspec.json.encode(params)
    assert body.count(_SENTINEL_JSON) == 1, body[:200]
    return body.replace(_SENTINEL_JSON, hostile.json)


def query_pairs(operation: str, params: dict[str, Any]) -> list[tuple[str, Any]]:
    """The query protocol's flat parameters for ``params`` (SENTINEL kept as a value),
    named as the server reads them (``tidings.sqs.protocol``'s query names)."""
    shape = protocol.operation_shapes(operation).input
    out: list[tuple[str, Any]] = [("Action", operation), ("Version", "2012-11-05")]
    if shape is not None:
        _flatten(shape, params, "", out)
    return out


def _flatten(shape: protocol.Shape, params: dict[str, Any], prefix: str, out: list[Any]) -> None:
    for name, value in params.items():
        member = shape.members[name]
        where = prefix + member.query_name
        kind = member.shape.kind
        if value == SENTINEL:
            out.append((where, SENTINEL))
        elif kind == "list":
            assert member.shape.item is not None
            for index, item in enumerate(value, 1):
                _flatten_value(member.shape.item, item, f"{where}.{index}", out)
        elif kind == "map":
            assert member.shape.key is not None and member.shape.item is not None
            key_name, value_name = member.entry
            for index, (key, item) in enumerate(value.items(), 1):
                _flatten_value(member.shape.key, key, f"{where}.{index}.{key_name}", out)
                _flatten_value(member.shape.item, item, f"{where}.{index}.{value_name}", out)
        else:
            _flatten_value(member.shape, value, where, out)


def _flatten_value(shape: protocol.Shape, value: Any, where: str, out: list[Any]) -> None:
    if value == SENTINEL:
        out.append((where, SENTINEL))
    elif shape.kind == "structure":
        _flatten(shape, value, where + ".", out)
    elif isinstance(value, bool):
        out.append((where, "true" if value else "false"))
    else:
        out.append((where, str(value)))


def form_body(pairs: list[tuple[str, Any]], hostile: Hostile | None = None) -> bytes:
    """The form-encoded body, the hostile pairs in SENTINEL's place."""
    parts: list[str] = []
    for name, value in pairs:
        if value != SENTINEL:
            parts.append(f"{quote(name, safe='')}={quote(value, safe='')}")
            continue
        assert hostile is not None and hostile.query is not None
        for suffix, raw in hostile.query:
            full = name.encode() + suffix
            parts.append(f"{quote_from_bytes(full, safe='')}={quote_from_bytes(raw, safe='')}")
    return "&".join(parts).encode()


# Hostile values --------------------------------------------------------------------------

# Families: a path gets every value of its own family, and the values marked
# ``everywhere`` of the others (a wrong type is refused the same way whatever it is).
STRING, NUMBER, CONTAINER = "string", "number", "container"


def _family(kind: str) -> str:
    if kind in ("integer", "long", "boolean"):
        return NUMBER
    if kind in ("list", "map", "structure"):
        return CONTAINER
    return STRING


def _text(name: str, text: str, family: str = STRING, everywhere: bool = False) -> Hostile:
    """A string value, the same in both protocols."""
    return Hostile(name, json.dumps(text).encode(), ((b"", text.encode()),), family, everywhere)


def _raw_string(name: str, inner: bytes, everywhere: bool = False) -> Hostile:
    """A JSON string holding raw bytes (maybe invalid UTF-8); the same bytes as a query
    value."""
    return Hostile(name, b'"' + inner + b'"', ((b"", inner),), STRING, everywhere)


def _json(name: str, fragment: bytes, family: str, everywhere: bool = False) -> Hostile:
    return Hostile(name, fragment, None, family, everywhere)


def _form(name: str, *pairs: tuple[bytes, bytes], everywhere: bool = False) -> Hostile:
    return Hostile(name, b"", tuple(pairs), CONTAINER, everywhere)


_NON_ASCII = "é\u4e2d\U0001f600"  # 2, 3 and 4 bytes of UTF-8

STRINGS: tuple[Hostile, ...] = (
    _text("empty", "", everywhere=True),
    _text("text", "text", everywhere=True),
    _text("space", " "),
    _text("huge", "x" * HUGE_STRING),
    # Past SQS's 256 KiB as UTF-8; shorter as a form value (percent-encoded, it is
    # three times as long, and slow to decode).
    Hostile(
        "long-non-ascii",
        json.dumps(_NON_ASCII * (LONG_STRING // 8)).encode(),
        ((b"", (_NON_ASCII * (LONG_STRING // 80)).encode()),),
        STRING,
        False,
    ),
    _text("control", "a\x00b\x01\x08\x0b\x0c\x1b\x1f\x7f\x85z", everywhere=True),
    _text("newlines", "a\r\nX-Injected: 1\r\n\r\nb"),
    _text("bidi-zero-width", "\u202eevil\u200b\ufeff\u2028\u2029"),
    _text("noncharacters", "\ufffe\uffff\U0010ffff"),
    _text("xml", "<![CDATA[x]]></Message><Error>&amp;&#0;</Error>"),
    _text("percent", "%00%ff%zz%"),
    _text("dots", "../../../etc/passwd"),
    _text("json-text", '{"a": [1, {"b": null}]}'),
    _raw_string("invalid-utf8", b"\xff\xfe\xfd", everywhere=True),
    _raw_string("utf8-surrogate", b"\xed\xa0\x80"),
    _raw_string("overlong-utf8", b"\xc0\xaf\xe0\x80\xaf"),
    _raw_string("truncated-utf8", b"abc\xe2\x82"),
    # Numbers as text: what the query protocol sends for an integer.
    _text("number-text", "42", NUMBER),
    _text("zero-text", "0", NUMBER),
    _text("negative-text", "-1", NUMBER, everywhere=True),
    _text("int32-overflow-text", "2147483648", NUMBER),
    _text("int64-overflow-text", "9223372036854775808", NUMBER),
    _text("float-text", "1.5", NUMBER),
    _text("nan-text", "NaN", NUMBER),
    _text("infinity-text", "-Infinity", NUMBER),
    _text("exponent-text", "1e400", NUMBER),
    _text("big-number-text", "9" * 400, NUMBER, everywhere=True),
    _text("hex-text", "0x10", NUMBER),
    _text("padded-number-text", " 1 ", NUMBER),
    _text("plus-number-text", "+1", NUMBER),
    _text("true-text", "true", NUMBER),
    _text("boolean-case-text", "TRUE", NUMBER),
)

JSON_ONLY: tuple[Hostile, ...] = (
    _json("int", b"12345", NUMBER, everywhere=True),
    _json("zero", b"0", NUMBER),
    _json("negative-zero", b"-0", NUMBER),
    _json("negative", b"-1", NUMBER),
    _json("int32-overflow", b"2147483648", NUMBER),
    _json("int32-underflow", b"-2147483649", NUMBER),
    _json("int64-overflow", b"9223372036854775808", NUMBER),
    _json("int-400-digits", b"9" * 400, NUMBER, everywhere=True),
    _json("float", b"1.5", NUMBER, everywhere=True),
    _json("float-negative-zero", b"-0.0", NUMBER),
    _json("float-exponent", b"1e3", NUMBER),
    _json("float-overflow", b"1e400", NUMBER, everywhere=True),
    _json("float-underflow", b"1e-400", NUMBER),
    _json("nan", b"NaN", NUMBER, everywhere=True),
    _json("infinity", b"Infinity", NUMBER),
    _json("minus-infinity", b"-Infinity", NUMBER),
    _json("hex", b"0x10", NUMBER),
    _json("true", b"true", NUMBER, everywhere=True),
    _json("false", b"false", NUMBER, everywhere=True),
    _json("null", b"null", NUMBER, everywhere=True),
    _json("empty-list", b"[]", CONTAINER, everywhere=True),
    _json("list", b'["a"]', CONTAINER, everywhere=True),
    _json("list-of-null", b"[null]", CONTAINER),
    _json("mixed-list", b'[1, "a", {}, [], null, true]', CONTAINER),
    _json("list-of-lists", b'[["a"], [["b"]]]', CONTAINER),
    _json("empty-object", b"{}", CONTAINER, everywhere=True),
    _json("object", b'{"a": "b"}', CONTAINER, everywhere=True),
    _json("object-of-null", b'{"a": null}', CONTAINER),
    _json("nested-object", b'{"a": {"b": {"c": [1, {"d": null}]}}}', CONTAINER),
    _json("duplicate-keys", b'{"a": "1", "a": "2"}', CONTAINER),
    _json("empty-key", b'{"": ""}', CONTAINER),
    _json("deep-list", b"[" * DEEP + b"]" * DEEP, CONTAINER, everywhere=True),
    _json("deep-object", b'{"a":' * DEEP + b"1" + b"}" * DEEP, CONTAINER),
    _json("many-strings", json.dumps(["x"] * MANY).encode(), CONTAINER),
    _json("many-keys", json.dumps({f"k{i}": "v" for i in range(MANY)}).encode(), CONTAINER),
    _json("lone-high-surrogate", b'"\\ud800"', STRING, everywhere=True),
    _json("lone-low-surrogate", b'"a\\udc00b"', STRING),
    _json("reversed-surrogates", b'"\\udc00\\ud800"', STRING),
    _json("escaped-nul", b'"\\u0000"', STRING),
    _json("raw-control-in-string", b'"a\x01\x00b"', STRING),
    _json("bad-escape", b'"\\x41\\q"', STRING),
    _json("unterminated", b'"abc', STRING),
)

QUERY_ONLY: tuple[Hostile, ...] = (
    _form("omitted", everywhere=True),
    _form("repeated", (b"", b"a"), (b"", b"b"), everywhere=True),
    _form("as-list", (b".1", b"x"), everywhere=True),
    _form("as-map", (b".1.Name", b"k"), (b".1.Value", b"v"), everywhere=True),
    _form("as-structure", (b".Foo", b"x")),
    _form("index-zero", (b".0", b"x")),
    _form("index-negative", (b".-1", b"x")),
    _form("index-huge", (b".99999999999999999999", b"x")),
    _form("index-leading-zero", (b".01", b"x")),
    _form("index-not-a-number", (b".one", b"x")),
    _form("index-gap", (b".2", b"x"), (b".7", b"y")),
    _form("index-repeated", (b".1", b"x"), (b".1", b"y")),
    _form("nested-deep", (b".1" * 200, b"x"), everywhere=True),
    _form("empty-name-part", (b"..1", b"x")),
    _form("trailing-dot", (b".", b"x")),
    _form("name-invalid-utf8", (b".\xff", b"x"), everywhere=True),
    _form("name-control", (b"\x00", b"x")),
    _form("many-items", *((b".%d" % i, b"x") for i in range(1, MANY + 1))),
    _form(
        "many-entries",
        *(
            pair
            for i in range(1, MANY // 2 + 1)
            for pair in ((b".%d.Name" % i, b"k%d" % i), (b".%d.Value" % i, b"v"))
        ),
    ),
    _form("value-and-items", (b"", b"x"), (b".1", b"y")),
)


def _many(ctx: Context, path: Path, count: int) -> list[Hostile]:
    """A list of ``count`` valid items, or a map of ``count`` valid entries."""
    if path.kind == "list":
        item = valid(ctx, path.shape.member, path.name + ITEM)
        items: Any = [item] * count
    elif path.kind == "map":
        value = valid(ctx, path.shape.value, path.name, path.shape.name)
        items = {f"k{i}": value for i in range(count)}
    else:
        return []
    return [_json(f"{count}-valid-{path.kind}-items", msgspec.json.encode(items), CONTAINER)]


def _queue_urls(ctx: Context) -> list[Hostile]:
    base, project, queue = ctx.base_url, ctx.project, ctx.queue
    urls = {
        "url-absent-queue": f"{base}/{project}/no-such-queue",
        "url-other-project": f"{base}/{ctx.other_project}/{queue}",
        "url-extra-segment": f"{base}/{project}/{queue}/extra",
        "url-empty-segments": f"{base}//{queue}",
        "url-only-host": base,
        "url-relative": f"{project}/{queue}",
        "url-dot-segments": f"{base}/{project}/../{project}/{queue}",
        "url-encoded-nul": f"{base}/{project}/%00",
        "url-encoded-invalid-utf8": f"{base}/{project}/%ff%fe",
        "url-encoded-slash": f"{base}/{project}%2F{queue}",
        "url-bad-escape": f"{base}/{project}/{queue}%",
        "url-long-name": f"{base}/{project}/{'a' * 5000}",
        "url-query-fragment": f"{ctx.queue_url}?Action=DeleteQueue#x",
        "url-ipv6-unclosed": "http://[::1/p/q",
        "url-bracket": "http://[",
        "url-bad-port": f"http://127.0.0.1:99999999/{project}/{queue}",
        "url-userinfo": f"http://user:pass@127.0.0.1/{project}/{queue}",
        "url-file": "file:///etc/passwd",
        "url-javascript": "javascript:alert(1)",
        "url-unc": "\\\\server\\share\\q",
        "url-arn": ctx.arn(queue),
        "url-header-injection": f"{ctx.queue_url}\r\nX-Injected: 1",
        "url-unicode-host": f"http://\u0435xample.com/{project}/{queue}",
    }
    return [_text(name, url) for name, url in urls.items()]


def _handles(ctx: Context) -> list[Hostile]:
    handles = {
        "handle-x": "x",
        "handle-padding": "====",
        "handle-short-base64": "AQID",
        "handle-truncated": ctx.handle[:-2],
        "handle-extended": ctx.handle + "AAAA",
        "handle-padded": ctx.handle + "==",
        "handle-long": "A" * 600,
        "handle-non-ascii": "é" * 20,
        "handle-url": ctx.queue_url,
        "handle-invalid-utf8-inside": _b64(b"\xff\xfe\xfd\xfc"),
    }
    try:
        text = base64.urlsafe_b64decode(ctx.handle + "=" * (-len(ctx.handle) % 4)).decode()
    except (binascii.Error, ValueError):
        text = ""
    parts = text.split(":")
    if len(parts) >= 3:
        # Look-alikes of the real handle, one part changed (whatever its parts mean).
        fresh = str(uuid.uuid4())
        dlq = ctx.dlq_url.rsplit("/", 1)[1]
        lookalikes = {
            "first-part": ["9", *parts[1:]],
            "queue": [parts[0], dlq, *parts[2:]],
            "middle-part": [*parts[:2], fresh, *parts[3:]],
            "last-part": [*parts[:-1], fresh],
            "empty-parts": [""] * len(parts),
            "long-part": [*parts[:-1], "x" * 300],
            "extra-part": [*parts, "extra"],
        }
        for name, changed in lookalikes.items():
            handles[f"handle-lookalike-{name}"] = _b64(":".join(changed).encode())
    return [_text(name, handle) for name, handle in handles.items()]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _tokens(ctx: Context) -> list[Hostile]:
    def token(document: bytes) -> str:
        return base64.urlsafe_b64encode(document).decode()

    tokens = {
        "token-garbage": "!!!not-base64!!!",
        "token-non-ascii": "é" * 10,
        "token-not-json": token(b"\xff\xfe"),
        "token-json-list": token(b"[]"),
        "token-after-number": token(b'{"after": 5}'),
        "token-after-dots": token(b'{"after": "../x"}'),
        "token-after-long": token(b'{"after": "' + b"a" * 1000 + b'"}'),
        "token-deep": token(b"[" * DEEP + b"]" * DEEP),
        "token-deep-object": token(b'{"after":' * DEEP + b'"a"' + b"}" * DEEP),
        "token-huge-number": token(b'{"after": 1e400}'),
        "token-long": "A" * 100_000,
    }
    return [_text(name, text) for name, text in tokens.items()]


def _policies(ctx: Context) -> list[Hostile]:
    dlq = ctx.dlq_url.rsplit("/", 1)[1]
    arn = ctx.arn(dlq)

    def redrive(target: Any, count: Any) -> str:
        return json.dumps({"deadLetterTargetArn": target, "maxReceiveCount": count})

    policies = {
        "redrive-valid": redrive(arn, 5),
        "redrive-absent-target": redrive(ctx.arn("no-such-queue"), 5),
        "redrive-other-project": redrive(ctx.arn(dlq, ctx.other_project), 5),
        "redrive-self": redrive(ctx.arn(ctx.queue), 5),
        "redrive-arn-empty-name": redrive(ctx.arn(""), 5),
        "redrive-arn-colons": redrive("arn:aws:sqs:::::::", 5),
        "redrive-arn-short": redrive("arn", 5),
        "redrive-arn-number": redrive(5, 5),
        "redrive-arn-huge": redrive("arn:aws:sqs:us-east-1:" + "p" * 100_000 + ":q", 5),
        "redrive-count-zero": redrive(arn, 0),
        "redrive-count-big": redrive(arn, 10**30),
        "redrive-count-float": redrive(arn, 1.5),
        "redrive-count-bool": redrive(arn, True),
        "redrive-count-null": redrive(arn, None),
        "redrive-count-text": redrive(arn, "99999999999999999999999999"),
        "redrive-count-overflow": redrive(arn, "x").replace('"x"', "1e400"),
        "redrive-missing-keys": "{}",
        "redrive-extra-key": '{"deadLetterTargetArn": "a", "maxReceiveCount": 1, "x": 1}',
        "policy-deep": "[" * DEEP + "]" * DEEP,
        "policy-deep-object": '{"a":' * DEEP + "1" + "}" * DEEP,
        "policy-not-object": '"text"',
        "policy-truncated": '{"deadLetterTargetArn": ',
        "policy-huge": json.dumps({"x": "y" * 500_000}),
        "allow-all-with-arns": json.dumps(
            {"redrivePermission": "allowAll", "sourceQueueArns": [arn]}
        ),
        "allow-by-queue-many": json.dumps(
            {"redrivePermission": "byQueue", "sourceQueueArns": [arn] * MANY}
        ),
        "allow-by-queue-empty": json.dumps({"redrivePermission": "byQueue", "sourceQueueArns": []}),
        "allow-by-queue-not-arns": json.dumps(
            {"redrivePermission": "byQueue", "sourceQueueArns": [1, None, {}, "arn"]}
        ),
        "allow-by-queue-other-project": json.dumps(
            {"redrivePermission": "byQueue", "sourceQueueArns": [ctx.arn("q", ctx.other_project)]}
        ),
        "allow-unknown-permission": json.dumps({"redrivePermission": "sometimes"}),
        "iam-policy": json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "sqs:*"}],
            }
        ),
    }
    return [_text(name, text) for name, text in policies.items()]


def _attribute_texts() -> list[Hostile]:
    """Text values of SQS's message attributes: numbers at and past SQS's bounds."""
    texts = {
        "number-digits-39": "1" * 39,
        "number-exponent-huge": "1e999999999999999999",
        "number-exponent-tiny": "1e-999999999999999999",
        "number-too-small": "-1e129",
        "number-leading-zeros": "0" * 10_000 + "1",
        "number-long-fraction": "0." + "0" * 100_000 + "1",
        "number-sign-only": "+",
        "number-dot": ".",
        "number-exponent-only": "1e",
        "data-type-custom-empty": "Number.",
        "data-type-custom-long": "String." + "x" * 300,
        "data-type-custom-control": "Binary.\x00",
        "data-type-lookalike": "Numberx",
        "binary-one-char": "A",
        "binary-bad": "!!!!",
        "binary-empty-bytes": "====",
        "binary-large": base64.b64encode(b"\x00" * 300_000).decode(),
    }
    return [_text(name, text) for name, text in texts.items()]


def _enum(path: Path) -> list[Hostile]:
    """Every value the model lists for the member (valid-looking names)."""
    return [_text(f"enum-{value}", value) for value in getattr(path.shape, "enum", None) or []]


def _names(path: Path) -> list[Hostile]:
    names = {
        "name-81": "a" * 81,
        "name-65": "a" * 65,
        "name-fifo": "queue.fifo",
        "name-dot": "a.b",
        "name-slash": "a/b",
        "name-all": "All",
        "name-aws-prefix": "AWS.reserved",
        "name-double-dot": "a..b",
        "name-wildcard": "a.*",
    }
    return [_text(name, text) for name, text in names.items()]


def hostile_values(ctx: Context, path: Path, *, query: bool) -> Iterator[Hostile]:
    """The hostile values for ``path`` in one protocol: the generic ones of its family
    (and the others' marked ``everywhere``), then those its member's meaning calls for."""
    key = path.steps[-1] == KEY
    family = _family(path.kind)
    generic = [*STRINGS, *(QUERY_ONLY if query else JSON_ONLY)]
    if query and family == NUMBER:
        family = STRING  # numbers are text in the query protocol
    chosen = [h for h in generic if h.family == family or h.everywhere]
    if not query:
        chosen += _many(ctx, path, 1000) + _many(ctx, path, MANY)
    if path.name == "QueueUrl":
        chosen += _queue_urls(ctx)
    if path.name == "ReceiptHandle":
        chosen += _handles(ctx)
    if path.name == "NextToken":
        chosen += _tokens(ctx)
    if path.map_shape == "QueueAttributeMap" and path.steps[-1] == VALUE:
        chosen += _policies(ctx)
    if path.name in ("StringValue", "BinaryValue", "DataType"):
        chosen += _attribute_texts()
    if path.name in ("QueueName", "QueueNamePrefix", "Id", "TagKeys") or key:
        chosen += _names(path)
    chosen += _enum(path)
    for hostile in chosen:
        if query and hostile.query is None:
            continue
        if key and not query and not hostile.json.startswith(b'"'):
            continue  # a JSON object's key is a string
        yield hostile
