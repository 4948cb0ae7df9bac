"""SQS's two wire protocols over one shape of parameters and results.

Operations take and return dicts in the JSON protocol's shape, with the member names of
botocore's current SQS model. This module checks a JSON-protocol body against the
operation's input shape, converts a query-protocol request (flat ``Action=...`` form
parameters) to the same dicts, and renders results and errors as SQS's XML.

The model's shapes and types come from botocore at run time (read once). Its current
model is the JSON protocol's, which no longer carries the query API's names: SQS names
each item of a list or map after its own element (``Attribute.1.Name``,
``SendMessageBatchRequestEntry.1.Id``, repeated ``<QueueUrl>``), and ``QUERY_NAMES``
holds those names. Every SQS list and map is "flattened" in the query API.

Blobs (``BinaryValue``) are base64 text in the parameters of both protocols (checked
here); results may hold them as ``bytes`` or as base64 text.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tidings.sqs import bodies, errors
from tidings.sqs.context import Params, Result

XML_NAMESPACE = "http://queue.amazonaws.com/doc/2012-11-05/"

# The query API's name of a list's or map's items, by member name (a list of
# structures not named here takes its items' shape name: SendMessageBatchRequestEntry).
QUERY_NAMES = {
    "Attributes": "Attribute",
    "tags": "Tag",
    "Tags": "Tag",
    "MessageAttributes": "MessageAttribute",
    "MessageSystemAttributes": "MessageSystemAttribute",
    "AttributeNames": "AttributeName",
    "MessageAttributeNames": "MessageAttributeName",
    "MessageSystemAttributeNames": "MessageSystemAttributeName",
    "QueueUrls": "QueueUrl",
    "queueUrls": "QueueUrl",
    "TagKeys": "TagKey",
    "StringListValues": "StringListValue",
    "BinaryListValues": "BinaryListValue",
    "AWSAccountIds": "AWSAccountId",
    "Actions": "ActionName",
}
# The children of a map item: <Tag><Key/><Value/></Tag>, else <X><Name/><Value/></X>.
TAG_ENTRY = ("Key", "Value")
NAMED_ENTRY = ("Name", "Value")

# Query parameters that are the request's envelope, not the operation's: the action,
# the API version, and the signature (SigV4 presigned, or SigV2's from old SDKs).
ENVELOPE = frozenset(
    {
        "Action",
        "Version",
        "AWSAccessKeyId",
        "Signature",
        "SignatureMethod",
        "SignatureVersion",
        "Timestamp",
        "Expires",
        "SecurityToken",
    }
)
SIGNATURE_PREFIX = "X-Amz-"

# Bounds on what a request may hold, far above anything SQS accepts (10 entries of 10
# attributes), so that the operation can still answer with SQS's own error for "too
# many": values in a request, items in one list or map, length of a parameter name.
MAX_VALUES = 5000
MAX_ITEMS = 1000
MAX_NAME_LENGTH = 256
# Integers: SQS's are 32 or 64 bits; anything longer is not a number it accepts.
_INTEGER_TEXT = re.compile(r"-?[0-9]{1,20}")
_INDEX = re.compile(r"[1-9][0-9]{0,5}")
_LIMITS = {"integer": 2**31, "long": 2**63}
_SCALARS = frozenset({"string", "integer", "long", "boolean", "blob"})

# Characters XML 1.0 text may hold; any other is shown as U+FFFD.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_XML_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#xD;"})


# The model ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class Shape:
    """One shape of the model, reduced to what the protocols need."""

    kind: str  # structure, list, map, or a scalar type: string, integer, long, boolean, blob
    members: dict[str, Member] = field(default_factory=dict)  # structure: by member name
    by_query_name: dict[str, Member] = field(default_factory=dict)  # structure
    required: tuple[str, ...] = ()  # structure: its required scalar members
    item: Shape | None = None  # list items, map values
    key: Shape | None = None  # map keys
    name: str = ""  # the model's shape name


@dataclass(frozen=True, slots=True, eq=False)
class Member:
    name: str  # the JSON protocol's
    query_name: str  # the query API's (for a list or a map: each item's)
    shape: Shape
    entry: tuple[str, str] = NAMED_ENTRY  # a map item's key and value elements


@dataclass(frozen=True, slots=True)
class OperationShapes:
    input: Shape | None
    output: Shape | None


@functools.cache
def service_model() -> Any:
    """botocore's SQS model (read once per process; botocore is imported here, not at
    start-up: see sqs.app)."""
    import botocore.session  # type: ignore[import-untyped]

    return botocore.session.get_session().get_service_model("sqs")


@functools.cache
def operation_shapes(operation: str) -> OperationShapes:
    model = service_model().operation_model(operation)
    return OperationShapes(
        input=_shape(model.input_shape, 0) if model.input_shape is not None else None,
        output=_shape(model.output_shape, 0) if model.output_shape is not None else None,
    )


def load(operations: Iterable[str]) -> None:
    """Read the model for ``operations`` now (before the first request that needs it)."""
    for operation in operations:
        operation_shapes(operation)


def _shape(model: Any, depth: int) -> Shape:
    if depth > 16:  # SQS's shapes are not recursive; a model that is would loop
        raise ValueError(f"the SQS model nests too deep at {model.name}")
    kind = model.type_name
    if kind == "structure":
        members = {name: _member(name, shape, depth + 1) for name, shape in model.members.items()}
        required = tuple(
            name for name in model.required_members if members[name].shape.kind in _SCALARS
        )
        return Shape(
            kind,
            members=members,
            by_query_name={m.query_name: m for m in members.values()},
            required=required,
            name=model.name,
        )
    if kind == "list":
        return Shape(kind, item=_shape(model.member, depth + 1), name=model.name)
    if kind == "map":
        return Shape(
            kind,
            key=_shape(model.key, depth + 1),
            item=_shape(model.value, depth + 1),
            name=model.name,
        )
    return Shape(kind, name=model.name)


def _member(name: str, model: Any, depth: int) -> Member:
    shape = _shape(model, depth)
    query_name = QUERY_NAMES.get(name)
    if query_name is None:
        item = shape.item if shape.kind == "list" else None
        query_name = item.name if item is not None and item.kind == "structure" else name
    entry = TAG_ENTRY if query_name == "Tag" else NAMED_ENTRY
    return Member(name, query_name, shape, entry)


# JSON protocol --------------------------------------------------------------------------


class _Budget:
    """Counts the values of one request against ``MAX_VALUES``."""

    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = MAX_VALUES

    def spend(self, error: type[errors.SqsError]) -> None:
        self.left -= 1
        if self.left < 0:
            raise error(f"The request holds more than {MAX_VALUES} values.")


def from_json(operation: str, body: Any) -> Params:
    """The operation's parameters from a decoded JSON body: types checked against the
    input shape, blobs checked as base64 (and kept as text), unknown members and nulls
    dropped."""
    if not isinstance(body, dict):
        raise errors.SerializationError("The request body must be a JSON object.")
    shape = operation_shapes(operation).input
    if shape is None:
        return {}
    return _json_structure(shape, body, "", _Budget())


def _json_value(shape: Shape, value: Any, path: str, budget: _Budget) -> Any:
    budget.spend(errors.SerializationError)
    kind = shape.kind
    if kind == "string" and isinstance(value, str):
        return value
    if kind in _LIMITS and _is_integer(value, _LIMITS[kind]):
        return value
    if kind == "boolean" and isinstance(value, bool):
        return value
    if kind == "blob" and isinstance(value, str) and bodies.is_base64(value):
        return value
    if kind == "structure" and isinstance(value, dict):
        return _json_structure(shape, value, path + ".", budget)
    if kind == "list" and isinstance(value, list):
        _check_items(len(value), path, errors.SerializationError)
        assert shape.item is not None
        return [
            _json_value(shape.item, item, f"{path}.{index}", budget)
            for index, item in enumerate(value, 1)
        ]
    if kind == "map" and isinstance(value, dict):
        _check_items(len(value), path, errors.SerializationError)
        assert shape.item is not None
        return {
            key: _json_value(shape.item, item, f"{path}.{key}", budget)
            for key, item in value.items()
        }
    raise errors.SerializationError(f"The value of {path} must be {_described(kind)}.")


def _is_integer(value: Any, limit: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -limit <= value < limit


def _json_structure(shape: Shape, value: dict[str, Any], prefix: str, budget: _Budget) -> Params:
    out: Params = {}
    for name, member_value in value.items():
        member = shape.members.get(name)
        if member is None or member_value is None:
            continue  # as SQS does: members it does not know are ignored
        out[name] = _json_value(member.shape, member_value, prefix + name, budget)
    return out


def _described(kind: str) -> str:
    return {
        "string": "a string",
        "integer": "a 32-bit integer",
        "long": "a 64-bit integer",
        "boolean": "true or false",
        "blob": "base64 text",
        "structure": "an object",
        "list": "a list",
        "map": "an object",
    }.get(kind, kind)


def _check_items(count: int, path: str, error: type[errors.SqsError]) -> None:
    if count > MAX_ITEMS:
        raise error(f"{path} holds more than {MAX_ITEMS} items.")


def check_required(operation: str, params: Params, *, queue_in_path: bool, query: bool) -> None:
    """MissingParameter for an absent required parameter (a queue URL may be the
    request's path). Lists and maps are left to the operation: SQS answers an empty
    batch with its own error."""
    shape = operation_shapes(operation).input
    if shape is None:
        return
    for name in shape.required:
        if params.get(name) is None and not (queue_in_path and name == "QueueUrl"):
            shown = shape.members[name].query_name if query else name
            raise errors.MissingParameter(f"The request must contain the parameter {shown}.")


# Query protocol -------------------------------------------------------------------------

# A parameter tree: a name's parts are nested dicts; the value itself is under "".
Tree = dict[str, Any]


def query_tree(pairs: Iterable[tuple[str, str]]) -> Tree:
    """The operation's flat parameters as a tree (``A.1.B=x`` -> ``{"A": {"1": {"B":
    {"": "x"}}}}``); the envelope (Action, Version, signature) is left out."""
    tree: Tree = {}
    count = 0
    for name, value in pairs:
        if name in ENVELOPE or name.startswith(SIGNATURE_PREFIX):
            continue
        count += 1
        if count > MAX_VALUES:
            raise errors.InvalidQueryParameter(
                f"The request holds more than {MAX_VALUES} parameters."
            )
        if len(name) > MAX_NAME_LENGTH:
            raise errors.InvalidQueryParameter(
                f"A parameter name is longer than {MAX_NAME_LENGTH} characters."
            )
        node = tree
        for part in name.split("."):
            if not part:
                raise errors.InvalidQueryParameter(
                    f"The parameter name {errors.shown(name)} is malformed."
                )
            node = node.setdefault(part, {})
        if "" in node:
            raise errors.InvalidQueryParameter(
                f"The parameter {errors.shown(name)} is given more than once."
            )
        node[""] = value
    return tree


def from_query(operation: str, tree: Tree) -> Params:
    """The operation's parameters from a query-protocol request's tree: texts converted
    to the model's types, lists and maps rebuilt from their numbered items."""
    shape = operation_shapes(operation).input
    if shape is None:
        shape = Shape("structure")
    params: Params = _query_structure(shape, tree, "", operation)
    return params


def _query_structure(shape: Shape, node: Tree, prefix: str, operation: str) -> Params:
    out: Params = {}
    for name, child in node.items():
        member = shape.by_query_name.get(name)
        if member is None:
            shown = f"{prefix}{name}" if name else prefix.rstrip(".")
            raise errors.InvalidQueryParameter(
                f"The parameter {errors.shown(shown)} is not valid for the action {operation}."
            )
        path = prefix + name
        kind = member.shape.kind
        if kind == "list":
            out[member.name] = _query_list(member, child, path, operation)
        elif kind == "map":
            out[member.name] = _query_map(member, child, path, operation)
        else:
            out[member.name] = _query_value(member.shape, child, path, operation)
    return out


def _query_value(shape: Shape, node: Tree, path: str, operation: str) -> Any:
    if shape.kind == "structure":
        if "" in node:
            raise _not_valid(path, operation)
        return _query_structure(shape, node, path + ".", operation)
    if shape.kind in ("list", "map"):  # lists of lists are not in SQS's model
        raise _not_valid(path, operation)
    if len(node) != 1 or "" not in node:
        child = next(name for name in node if name)
        raise _not_valid(f"{path}.{child}", operation)
    return _scalar(shape.kind, node[""], path)


def _items(node: Tree, path: str, operation: str) -> list[tuple[int, Tree]]:
    """A flattened list's or map's items in index order (``Name.1``, ``Name.2``, ...)."""
    items: list[tuple[int, Tree]] = []
    for index, child in node.items():
        if index == "":
            continue
        if not _INDEX.fullmatch(index):
            raise _not_valid(f"{path}.{index}", operation)
        items.append((int(index), child))
    _check_items(len(items), path, errors.InvalidQueryParameter)
    items.sort(key=lambda item: item[0])
    return items


def _query_list(member: Member, node: Tree, path: str, operation: str) -> list[Any]:
    item_shape = member.shape.item
    assert item_shape is not None
    values: list[Any] = []
    if "" in node:
        # Old clients send a single-valued list unnumbered: AttributeName=All.
        if item_shape.kind not in _SCALARS:
            raise _not_valid(path, operation)
        values.append(_scalar(item_shape.kind, node[""], path))
    for index, child in _items(node, path, operation):
        values.append(_query_value(item_shape, child, f"{path}.{index}", operation))
    return values


def _query_map(member: Member, node: Tree, path: str, operation: str) -> dict[str, Any]:
    key_shape, value_shape = member.shape.key, member.shape.item
    assert key_shape is not None and value_shape is not None
    key_name, value_name = member.entry
    if "" in node:
        raise _not_valid(path, operation)
    out: dict[str, Any] = {}
    for index, entry in _items(node, path, operation):
        where = f"{path}.{index}"
        for child in entry:
            if child not in (key_name, value_name):
                raise _not_valid(f"{where}.{child}" if child else where, operation)
        for required in (key_name, value_name):
            if required not in entry:
                raise errors.MissingParameter(
                    f"The request must contain the parameter {where}.{required}."
                )
        key = _query_value(key_shape, entry[key_name], f"{where}.{key_name}", operation)
        if key in out:
            raise errors.InvalidParameterValue(
                f"The parameter {path} names {errors.shown(str(key))} more than once."
            )
        out[key] = _query_value(value_shape, entry[value_name], f"{where}.{value_name}", operation)
    return out


def _scalar(kind: str, text: str, path: str) -> Any:
    if kind in _LIMITS:
        if _INTEGER_TEXT.fullmatch(text):
            number = int(text)
            if -_LIMITS[kind] <= number < _LIMITS[kind]:
                return number
        raise errors.InvalidParameterValue(
            f"Value {errors.shown(text)} for parameter {path} is invalid. Reason: must be "
            f"{_described(kind)}."
        )
    if kind == "boolean":
        lowered = text.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        raise errors.InvalidParameterValue(
            f"Value {errors.shown(text)} for parameter {path} is invalid. Reason: must be true or "
            "false."
        )
    if kind == "blob" and not bodies.is_base64(text):
        raise errors.InvalidParameterValue(
            f"The value of parameter {path} is invalid. Reason: must be base64 text."
        )
    return text


def _not_valid(path: str, operation: str) -> errors.SqsError:
    return errors.InvalidQueryParameter(
        f"The parameter {errors.shown(path)} is not valid for the action {operation}."
    )


# XML ------------------------------------------------------------------------------------


def xml_text(text: str) -> str:
    """Text as XML element content: escaped, and with characters XML cannot hold
    replaced (a carriage return is kept, as a character reference)."""
    return _NOT_XML.sub("\ufffd", text).translate(_XML_ESCAPES)


def xml_result(operation: str, result: Result, request_id: str) -> bytes:
    """``<XResponse><XResult>...</XResult><ResponseMetadata>...`` for a result."""
    out = [f'<?xml version="1.0"?><{operation}Response xmlns="{XML_NAMESPACE}">']
    shape = operation_shapes(operation).output
    if shape is not None:
        out.append(f"<{operation}Result>")
        _xml_members(out, shape, result)
        out.append(f"</{operation}Result>")
    out.append(
        f"<ResponseMetadata><RequestId>{xml_text(request_id)}</RequestId></ResponseMetadata>"
        f"</{operation}Response>"
    )
    return "".join(out).encode()


def xml_error(exc: errors.SqsError, request_id: str) -> bytes:
    fault = "Sender" if exc.sender else "Receiver"
    return (
        f'<?xml version="1.0"?><ErrorResponse xmlns="{XML_NAMESPACE}"><Error>'
        f"<Type>{fault}</Type><Code>{xml_text(exc.code)}</Code>"
        f"<Message>{xml_text(exc.message)}</Message><Detail/></Error>"
        f"<RequestId>{xml_text(request_id)}</RequestId></ErrorResponse>"
    ).encode()


def _xml_members(out: list[str], shape: Shape, value: dict[str, Any]) -> None:
    for name, member in shape.members.items():
        member_value = value.get(name)
        if member_value is None:
            continue
        element = member.query_name
        kind = member.shape.kind
        if kind == "list":
            item_shape = member.shape.item
            assert item_shape is not None
            for item in member_value:
                _xml_value(out, element, item_shape, item)
        elif kind == "map":
            key_shape, value_shape = member.shape.key, member.shape.item
            assert key_shape is not None and value_shape is not None
            key_name, value_name = member.entry
            for key, item in member_value.items():
                out.append(f"<{element}>")
                _xml_value(out, key_name, key_shape, key)
                _xml_value(out, value_name, value_shape, item)
                out.append(f"</{element}>")
        else:
            _xml_value(out, element, member.shape, member_value)


def _xml_value(out: list[str], element: str, shape: Shape, value: Any) -> None:
    if shape.kind == "structure":
        out.append(f"<{element}>")
        _xml_members(out, shape, value)
        out.append(f"</{element}>")
        return
    if shape.kind == "blob" and isinstance(value, bytes | bytearray):
        text = base64.b64encode(value).decode()
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = xml_text(str(value))
    out.append(f"<{element}>{text}</{element}>")
