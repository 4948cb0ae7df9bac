"""Zaqar's WebSocket frames: decoding a request, rendering a response or an error.

A request is a JSON text frame or a MessagePack binary frame holding
``{"action", "headers", "body"}``; its response uses the same encoding and echoes it::

    {"request": {"action", "body", "headers", "api": "v2"},
     "body": ..., "headers": {"status": 201}}

A frame refused before its action runs raises ``Refusal`` with Zaqar's error body
(``{"error": "..."}``); errors of the action itself render as ``error_reply`` says.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any

import msgpack
import msgspec

from tidings.errors import TidingsError, cause_chain
from tidings.ids import new_id

log = logging.getLogger("tidings.ws")

API_VERSION = "v2"
SCHEMA_FAILED = "Schema validation failed."
NOT_AN_OBJECT = "Unexpected body type. Expected dict or dict like."
UNEXPECTED = "Unexpected error."
# The deepest a MessagePack request may nest. A JSON request stops a little short of
# Python's recursion limit (1000) in the decoder, as an HTTP body does; this keeps
# MessagePack's alike, with room for the answer's encoder (the echo is one level deeper).
MAX_DEPTH = 900

_json_encoder = msgspec.json.Encoder()
_msgpack_encoder = msgspec.msgpack.Encoder()


def undecoded() -> dict[str, Any]:
    """The ``request`` echoed for a frame that could not be read."""
    return {"action": None, "body": {}, "headers": {}, "api": API_VERSION}


class Refusal(Exception):
    """A frame answered with an error before (or instead of) its action."""

    def __init__(self, status: int, body: Any, echo: dict[str, Any] | None = None) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body
        self.echo = echo if echo is not None else undecoded()


@dataclass(frozen=True, slots=True)
class Frame:
    """A request frame that has the envelope's shape (the action is not checked yet)."""

    action: str
    headers: dict[str, str]  # as sent
    body: dict[str, Any]
    binary: bool
    echo: dict[str, Any]  # the ``request`` member of its responses

    def lowered(self) -> dict[str, str]:
        """The headers with lower-case names, as admission reads them."""
        return {name.lower(): value for name, value in self.headers.items()}


def decode(data: str | bytes) -> Frame:
    """The request in a text (JSON) or binary (MessagePack) frame, or ``Refusal``."""
    binary = isinstance(data, bytes)
    document = _decode_msgpack(data) if isinstance(data, bytes) else _decode_json(data)
    if not isinstance(document, dict):
        raise Refusal(400, {"error": NOT_AN_OBJECT})
    action = document.get("action")
    headers = document.get("headers")
    body = document.get("body", {})
    echo = {
        "action": action,
        "body": body,
        "headers": headers if headers is not None else {},
        "api": API_VERSION,
    }
    # The envelope's schema; each action's body is checked by the action itself.
    if (
        not isinstance(action, str)
        or not isinstance(headers, dict)
        or not all(isinstance(v, str) for v in headers.values())
        or not isinstance(body, dict)
    ):
        raise Refusal(400, {"error": SCHEMA_FAILED}, echo)
    return Frame(action=action, headers=headers, body=body, binary=binary, echo=echo)


def _decode_json(text: str) -> Any:
    try:
        # The decoder of HTTP bodies: strict UTF-8, bounded nesting.
        return msgspec.json.decode(text)
    except (msgspec.DecodeError, RecursionError) as exc:
        error = _cannot_decode("text (JSON)", _json_error(text, exc))
        raise Refusal(400, {"error": error}) from None


def _json_error(text: str, exc: Exception) -> Exception:
    """The standard library's error where it has one: its texts are the ones Zaqar sends."""
    try:
        json.loads(text)
    except (ValueError, RecursionError) as std:
        return std
    return exc  # what only msgspec refuses (NaN, huge numbers)


def _decode_msgpack(data: bytes) -> Any:
    try:
        document = msgpack.unpackb(data, raw=False)
        _check_json_types(document)
    except Exception as exc:  # msgpack raises a handful of unrelated types
        raise Refusal(400, {"error": _cannot_decode("binary (MessagePack)", exc)}) from None
    return document


def _cannot_decode(what: str, exc: BaseException) -> str:
    return f"Can't decode {what} request. {type(exc).__name__}: {exc}"


def _check_json_types(document: Any) -> None:
    """Only what JSON can hold: bodies are stored and served as JSON documents.

    And no deeper than ``MAX_DEPTH``: MessagePack decodes up to 1024 levels, more than
    the encoder of the answer (which echoes the request) can take.
    """
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise ValueError(f"nesting is deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                if not all(isinstance(key, str) for key in item):
                    raise TypeError("map keys must be strings")
                stack.extend((value, depth + 1) for value in item.values())
            else:
                stack.extend((value, depth + 1) for value in item)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError("numbers must be finite")
        elif item is not None and not isinstance(item, str | int | bool):
            raise TypeError(f"{type(item).__name__} values are not supported")


def encode(echo: dict[str, Any], status: int, body: Any, binary: bool) -> str | bytes:
    """A response frame, in the encoding of its request."""
    document = {"request": echo, "body": body, "headers": {"status": status}}
    if binary:
        return _msgpack_encoder.encode(document)
    return _json_encoder.encode(document).decode()


def refusal_frame(refusal: Refusal, binary: bool) -> str | bytes:
    return encode(refusal.echo, refusal.status, refusal.body, binary)


def error_reply(error: Exception, context: str) -> tuple[int, dict[str, Any]]:
    """Status and body of the error frame for an action that raised ``error``.

    A domain error is ``{"exception": <description>, "error": null}`` with its status; a
    backend failure (5xx) names what failed under ``error``; anything else is a 500
    "Unexpected error." whose traceback goes to the log under a reference the frame
    gives, never to the client. ``context`` says in the log which frame it was.
    """
    if isinstance(error, TidingsError):
        if error.status >= 500:
            log.warning("%s answered %d: %s", context, error.status, cause_chain(error))
            return error.status, {"exception": str(error), "error": error.title}
        return error.status, {"exception": str(error), "error": None}
    reference = f"req-{new_id()}"
    log.error("unexpected error handling %s (ref %s)", context, reference, exc_info=error)
    return 500, {
        "exception": f"An unexpected error occurred; the server log has it as {reference}.",
        "error": UNEXPECTED,
    }
