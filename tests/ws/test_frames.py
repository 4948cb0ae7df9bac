"""Zaqar's WebSocket frames (spec 8.2, errors of 8.3) over real connections.

Responses echo the request and answer in its encoding; every malformed frame gets
Zaqar's error body and leaves the connection open. Source: api-v2-extended.md 8.2-8.3.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest

from tests.server import TidingsServer
from tests.ws.wire import UNDECODED, Wire, ws_url
from tidings.errors import BadRequest, ServiceUnavailable
from tidings.ws.frames import error_reply
from tidings.ws.session import TokenBucket

ENCODINGS = pytest.mark.parametrize("binary", [False, True], ids=["json", "msgpack"])
SCHEMA_FAILED = {"error": "Schema validation failed."}
NOT_AN_OBJECT = {"error": "Unexpected body type. Expected dict or dict like."}


@pytest.fixture(scope="module")
def ws_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TidingsServer]:
    srv = TidingsServer(tmp_path_factory.mktemp("ws-frames"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def wire(ws_server: TidingsServer) -> Iterator[Wire]:
    with Wire(ws_url(ws_server.url)) as connection:
        yield connection


@ENCODINGS
def test_a_response_echoes_its_request_in_the_same_encoding(
    ws_server: TidingsServer, binary: bool
) -> None:
    with Wire(ws_url(ws_server.url), binary=binary) as wire:
        headers = dict(wire.headers)
        answer = wire.request("queue_create", {"queue_name": "wq1"})
        assert answer == {
            "request": {
                "action": "queue_create",
                "body": {"queue_name": "wq1"},
                "headers": headers,
                "api": "v2",
            },
            "body": "Queue wq1 created.",
            "headers": {"status": 201},
        }
        # Keys in Zaqar's order, as captured.
        assert list(answer) == ["request", "body", "headers"]
        assert list(answer["request"]) == ["action", "body", "headers", "api"]
        listed = wire.request("queue_list")
        # A frame without a body is echoed with an empty one.
        assert listed["request"]["body"] == {}
        assert listed["body"] == {"queues": [{"name": "wq1"}]}
        assert listed["headers"] == {"status": 200}


def test_encodings_may_alternate_on_one_connection(wire: Wire) -> None:
    wire.send(wire.frame("queue_create", {"queue_name": "mixed"}), binary=True)
    assert wire.receive(binary=True)["headers"] == {"status": 201}
    wire.send(wire.frame("queue_get", {"queue_name": "mixed"}), binary=False)
    assert wire.receive(binary=False)["headers"] == {"status": 200}


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ("nope", "JSONDecodeError: Expecting value: line 1 column 1 (char 0)"),
        ("", "JSONDecodeError: Expecting value: line 1 column 1 (char 0)"),
        ('{"action": "queue_list"', "JSONDecodeError: Expecting ',' delimiter: "
         "line 1 column 24 (char 23)"),
        (b"\x92\x01", "ValueError: Unpack failed: incomplete input"),
        (b"\x81\xa1a\x01\x02", "ExtraData: unpack(b) received extra data."),
        # Bytes and extension types have no JSON form: bodies are stored as JSON.
        (msgpack.packb({"action": "queue_list", "headers": {}, "body": {"b": b"\x00"}}),
         "TypeError: bytes values are not supported"),
        (msgpack.packb({"action": "queue_list", "headers": {}, "body": {"n": float("nan")}}),
         "ValueError: numbers must be finite"),
    ],
    ids=["text", "empty-text", "truncated-json", "truncated-msgpack", "extra-msgpack",
         "msgpack-bytes", "msgpack-nan"],
)
def test_an_undecodable_frame_says_why(wire: Wire, raw: str | bytes, error: str) -> None:
    binary = isinstance(raw, bytes)
    wire.ws.send(raw)
    what = "binary (MessagePack)" if binary else "text (JSON)"
    assert wire.receive(binary=binary) == {
        "request": UNDECODED,
        "body": {"error": f"Can't decode {what} request. {error}"},
        "headers": {"status": 400},
    }
    assert wire.call("queue_list")[0] == 200  # still open


@ENCODINGS
@pytest.mark.parametrize("document", [[1, 2], "queue_list", 7, None], ids=str)
def test_a_frame_that_is_not_an_object(wire: Wire, binary: bool, document: Any) -> None:
    wire.send(document, binary=binary)
    assert wire.receive(binary=binary) == {
        "request": UNDECODED,
        "body": NOT_AN_OBJECT,
        "headers": {"status": 400},
    }
    assert wire.call("queue_list")[0] == 200


def test_an_unknown_action(wire: Wire) -> None:
    answer = wire.request("nope", {"queue_name": "q"})
    assert answer["body"] == {"error": "nope is not a valid action"}
    assert answer["headers"] == {"status": 400}
    assert answer["request"]["action"] == "nope"
    assert answer["request"]["body"] == {"queue_name": "q"}


@pytest.mark.parametrize(
    "document",
    [
        {"headers": {"Client-ID": "c", "X-Project-ID": "p"}},  # no action
        {"action": 7, "headers": {"Client-ID": "c", "X-Project-ID": "p"}},
        {"action": "queue_list"},  # no headers
        {"action": "queue_list", "headers": ["Client-ID"]},
        {"action": "queue_list", "headers": {"Client-ID": 7, "X-Project-ID": "p"}},
        {"action": "queue_list", "headers": {"Client-ID": "c"}, "body": {}},
        {"action": "queue_list", "headers": {"X-Project-ID": "p"}},
        {"action": "queue_create", "headers": {"Client-ID": "c", "X-Project-ID": "p"},
         "body": ["wq1"]},
        {"action": "queue_create", "headers": {"Client-ID": "c", "X-Project-ID": "p"},
         "body": {}},  # the action's own schema: queue_name is required
    ],
    ids=["no-action", "action-not-text", "no-headers", "headers-not-object",
         "header-not-text", "no-project", "no-client-id", "body-not-object",
         "missing-field"],
)
def test_a_schema_failure(wire: Wire, document: dict[str, Any]) -> None:
    wire.send(document)
    answer = wire.receive()
    assert answer["body"] == SCHEMA_FAILED
    assert answer["headers"] == {"status": 400}
    assert answer["request"]["action"] == document.get("action")
    assert wire.call("queue_list")[0] == 200


def test_header_names_are_matched_in_any_case(wire: Wire) -> None:
    headers = {"client-id": str(uuid.uuid4()), "x-project-id": wire.headers["X-Project-ID"]}
    wire.send(wire.frame("queue_list", headers=headers))
    assert wire.receive()["headers"] == {"status": 200}


@ENCODINGS
def test_a_domain_error_carries_its_description(ws_server: TidingsServer, binary: bool) -> None:
    with Wire(ws_url(ws_server.url), binary=binary) as wire:
        assert wire.call("queue_create", {"queue_name": "w q"}) == (
            400,
            {
                "exception": "The format of the submitted queue name or project id is "
                "not valid.",
                "error": None,
            },
        )
        status, body = wire.call("claim_get", {"queue_name": "none", "claim_id": "x" * 24})
        assert status == 404 and body["error"] is None and body["exception"], body
        assert wire.call("queue_list")[0] == 200


def test_authenticate_under_noauth_answers_and_keeps_the_connection(wire: Wire) -> None:
    answer = wire.request("authenticate", **{"X-Auth-Token": "anything"})
    assert answer["headers"] == {"status": 200}
    assert answer["body"] == {"message": "Authentified."}
    # The token is never echoed back.
    assert answer["request"] == {"action": "authenticate", "body": {}, "headers": {},
                                 "api": "v2"}
    assert wire.call("queue_list")[0] == 200


def test_a_burst_of_bad_frames_leaves_the_connection_open(wire: Wire) -> None:
    for raw in ["{", "[]", json.dumps({"action": "nope", "headers": {}}), b"\xc1"]:
        wire.ws.send(raw)
        assert wire.receive(binary=isinstance(raw, bytes))["headers"]["status"] == 400
    assert wire.call("queue_list")[0] == 200


# The rendering of failures that a running server cannot be made to produce on demand.


def test_a_backend_failure_names_what_failed() -> None:
    error = ServiceUnavailable("Queue q could not be created. Please try again in a few seconds.")
    assert error_reply(error, "test") == (
        503,
        {
            "exception": "Queue q could not be created. Please try again in a few seconds.",
            "error": "Service temporarily unavailable",
        },
    )
    assert error_reply(BadRequest("Nope."), "test") == (400, {"exception": "Nope.",
                                                              "error": None})


def test_an_unexpected_error_gives_a_reference_not_a_traceback() -> None:
    status, body = error_reply(RuntimeError("secret internals"), "test")
    assert status == 500
    assert body["error"] == "Unexpected error."
    assert "secret internals" not in body["exception"]
    assert "the server log has it as req-" in body["exception"]


def test_the_token_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(2.0, clock=lambda: now[0])
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    now[0] += 0.5  # one frame's worth
    assert [bucket.take() for _ in range(2)] == [True, False]
    now[0] += 60.0  # never more than a second's worth saved up
    assert [bucket.take() for _ in range(3)] == [True, True, False]
