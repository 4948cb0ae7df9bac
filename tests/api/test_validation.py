"""Every documented limit and malformed input, with exact status, title and description.

Source: /work/shared/spec/api-v2-core.md (§1.2 headers, §1.4 error classes, §2 texts,
§3.5 PATCH errors, §4.2 order of checks, §4.7/§4.8, purge). Where the spec marks the
reference as buggy ([BUG]) the correct behaviour is asserted. A final sweep pins the status
of each malformed input: never a 5xx.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server import TidingsServer

JSON_PATCH = "application/openstack-messaging-v2.0-json-patch"

INVALID_PARAMETER = "Invalid parameter"
INVALID_REQUEST = "Invalid API request"
INVALID_BODY = "Invalid request body"
INVALID_QUEUE = "Invalid queue identification"
INVALID_QUEUE_TEXT = "The format of the submitted queue name or project id is not valid."

QUEUE_LIMIT = "Limit must be at least 1 and no greater than 20."
MESSAGE_LIMIT = "Limit must be at least 1 and may not be greater than 20."
POP_RANGE = "Pop value must be at least 1 and may not be greater than 20."
MESSAGE_TTL = (
    "The TTL for a message may not exceed 1209600 seconds, and must be at least 60 seconds long."
)
MESSAGE_DELAY = (
    "The Delay TTL for a message may not exceed 900 seconds,and must be at least 0 seconds long."
)
CLAIM_TTL = (
    "The TTL for a claim may not exceed 43200 seconds, and must be at least 60 seconds long."
)
CLAIM_GRACE = (
    "The grace for a claim may not exceed 43200 seconds, and must be at least 60 seconds long."
)
EMPTY_BODY = "Request body can not be empty"
UNPARSEABLE = "Request body could not be parsed."
DOC_TYPE = "Document type not supported."
TOO_LARGE_INT = "JSON contains integer that is too large."
NO_MESSAGES = "No messages were found in the request body."
POST_TOO_LARGE = "Message collection size is too large. Max size 262144"
METADATA_TOO_LARGE = "Queue metadata is too large. Max size: 65536"
DEFAULT_TTL_RANGE = (
    "_default_message_ttl can not exceed 1209600 seconds, and must be at least 60 seconds long."
)
POST_SIZE_RANGE = (
    "_max_messages_post_size can not exceed 262144,  and must be at least greater than 0."
)
DELAY_RANGE = "The TTL can not exceed 900 seconds, and must be at least 0 seconds long."
PATCH_ARRAY = "Request body must be a JSON array of operation objects."
PURGE_KEY = 'Post body must contain key "resource_types".'
MISSING_OP = (
    "Unable to find `op` in JSON Schema change. It must be one of the following: "
    "add, remove, replace."
)


def int_type(name: str) -> str:
    return f'The value of the "{name}" field must be a int.'


def not_int(name: str) -> str:
    return f'The "{name}" parameter is invalid. The value must be an integer.'


def not_bool(name: str) -> str:
    return (
        f'The "{name}" parameter is invalid. '
        'The value of the parameter must be "true" or "false".'
    )


def many(n: int) -> str:
    return ",".join(str(uuid.UUID(int=i + 1)) for i in range(n))


def messages(*items: Any) -> dict[str, Any]:
    return {"messages": list(items)}


def oversized_post(limit: int) -> bytes:
    """A valid message post whose serialized size is limit + 1 bytes."""
    base = json.dumps(messages({"body": ""})).encode()
    pad = limit + 1 - len(base)
    return json.dumps(messages({"body": "x" * pad})).encode()


def exact_post(size: int) -> bytes:
    base = json.dumps(messages({"body": ""})).encode()
    body = json.dumps(messages({"body": "x" * (size - len(base))})).encode()
    assert len(body) == size
    return body


def metadata_of_size(size: int) -> bytes:
    base = json.dumps({"k": ""}).encode()
    body = json.dumps({"k": "x" * (size - len(base))}).encode()
    assert len(body) == size
    return body


def patch_of_size(size: int) -> bytes:
    def build(n: int) -> bytes:
        return json.dumps([{"op": "add", "path": "/metadata/k", "value": "x" * n}]).encode()

    body = build(size - len(build(0)))
    assert len(body) == size
    return body


@dataclass
class Case:
    """One malformed request and the exact error it must produce."""

    id: str
    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    body: Any = None  # JSON-encoded unless raw
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    setup: dict[str, dict[str, Any]] = field(default_factory=dict)  # queue -> metadata
    status: int = 400
    title: str | None = INVALID_REQUEST
    description: str | None = None
    description_re: str | None = None

    def send(self, client: httpx.Client) -> httpx.Response:
        for queue, meta in self.setup.items():
            resp = client.put(f"/queues/{queue}", json=meta)
            assert resp.status_code == 201, resp.text  # each test has a project of its own
        headers = dict(self.headers)
        content = self.raw
        if content is None and self.body is not None:
            content = json.dumps(self.body).encode()
        if content is not None:
            headers.setdefault("Content-Type", "application/json")
        return client.request(
            self.method, self.path, params=self.params, content=content, headers=headers
        )


def patch_case(cid: str, body: Any = None, raw: bytes | None = None, **kw: Any) -> Case:
    kw.setdefault("title", INVALID_BODY)
    return Case(
        cid, "PATCH", "/queues/pq", body=body, raw=raw,
        headers={"Content-Type": JSON_PATCH}, setup={"pq": {}}, **kw,
    )


def reserved_cases() -> list[Case]:
    """Reserved-metadata violations, both on PUT (API request) and PATCH (request body)."""
    table: list[tuple[str, Any, str]] = [
        ("_default_message_ttl", "x", "_default_message_ttl must be integer."),
        ("_default_message_ttl", 1.5, "_default_message_ttl must be integer."),
        ("_default_message_ttl", 59, DEFAULT_TTL_RANGE),
        ("_default_message_ttl", 1209601, DEFAULT_TTL_RANGE),
        ("_max_messages_post_size", "x", "_max_messages_post_size must be integer."),
        ("_max_messages_post_size", 262145, POST_SIZE_RANGE),
        ("_max_messages_post_size", -1, POST_SIZE_RANGE),
        ("_default_message_delay", "x", "_default_message_delay must be integer."),
        ("_default_message_delay", 901, DELAY_RANGE),
        ("_default_message_delay", -1, DELAY_RANGE),
        ("_max_claim_count", "x", "_max_claim_count must be integer."),
        ("_dead_letter_queue_messages_ttl", "x",
         "_dead_letter_queue_messages_ttl must be integer."),
        ("_dead_letter_queue_messages_ttl", 59, MESSAGE_TTL),
        ("_dead_letter_queue_messages_ttl", 1209601, MESSAGE_TTL),
        ("_enable_encrypt_messages", "yes", "_enable_encrypt_messages must be boolean."),
        ("_enable_encrypt_messages", 1, "_enable_encrypt_messages must be boolean."),
    ]
    cases: list[Case] = []
    for key, value, text in table:
        tag = f"{key}={value!r}"
        cases.append(Case(f"put-{tag}", "PUT", "/queues/rq", body={key: value}, description=text))
        cases.append(patch_case(
            f"patch-{tag}", body=[{"op": "add", "path": f"/metadata/{key}", "value": value}],
            description=text,
        ))
    return cases


CASES: list[Case] = [
    # ---- §1.2 headers and queue identification
    Case("client-id-missing", "GET", "/queues", headers={"Client-ID": ""},
         title="Missing header value", description='The "Client-Id" header is required.'),
    Case("client-id-not-uuid", "GET", "/queues", headers={"Client-ID": "not-a-uuid"},
         title="Wrong UUID value", description="Malformed hexadecimal UUID."),
    Case("client-id-31-hex", "GET", "/queues/q/messages", headers={"Client-ID": "a" * 31},
         title="Wrong UUID value", description="Malformed hexadecimal UUID."),
    Case("client-id-non-hex", "POST", "/queues/q/claims", headers={"Client-ID": "g" * 32},
         title="Wrong UUID value", description="Malformed hexadecimal UUID."),
    Case("client-id-uuid-plus-junk", "GET", "/ping",
         headers={"Client-ID": "3381af92-2b9e-11e3-b191-71861300734cX"},
         title="Wrong UUID value", description="Malformed hexadecimal UUID."),
    Case("project-empty", "GET", "/queues", headers={"X-Project-ID": ""},
         title="Empty project header not allowed",
         description="X-PROJECT-ID cannot be an empty string. Specify the right header "
         "X-PROJECT-ID and retry."),
    Case("project-too-long-get-queue", "GET", "/queues/q", headers={"X-Project-ID": "p" * 257},
         title=INVALID_QUEUE, description=INVALID_QUEUE_TEXT),
    Case("project-too-long-stats", "GET", "/queues/q/stats",
         headers={"X-Project-ID": "p" * 257}, title=INVALID_QUEUE, description=INVALID_QUEUE_TEXT),
    Case("project-too-long-post", "POST", "/queues/q/messages", body=messages({"body": 1}),
         headers={"X-Project-ID": "p" * 300}, title=INVALID_QUEUE, description=INVALID_QUEUE_TEXT),
    Case("project-too-long-claim", "POST", "/queues/q/claims",
         headers={"X-Project-ID": "p" * 257}, title=INVALID_QUEUE, description=INVALID_QUEUE_TEXT),
    Case("form-urlencoded", "POST", "/queues/q/messages", raw=b"a=b",
         headers={"Content-Type": "application/x-www-form-urlencoded"},
         title="Invalid Content-Type",
         description="Endpoint does not accept `application/x-www-form-urlencoded` content; "
         "currently supported media type is `application/json`; specify proper client-side "
         'media type with the "Content-Type" header.'),
    Case("empty-queue-name-get", "GET", "/queues/", title=INVALID_QUEUE,
         description=INVALID_QUEUE_TEXT),
    Case("empty-queue-name-put", "PUT", "/queues/", title=INVALID_QUEUE,
         description=INVALID_QUEUE_TEXT),
    # ---- queue listing
    Case("queues-limit-abc", "GET", "/queues", params={"limit": "abc"},
         title=INVALID_PARAMETER, description=not_int("limit")),
    Case("queues-limit-float", "GET", "/queues", params={"limit": "1.5"},
         title=INVALID_PARAMETER, description=not_int("limit")),
    Case("queues-limit-0", "GET", "/queues", params={"limit": 0}, description=QUEUE_LIMIT),
    Case("queues-limit-21", "GET", "/queues", params={"limit": 21}, description=QUEUE_LIMIT),
    Case("queues-limit-neg", "GET", "/queues", params={"limit": -1}, description=QUEUE_LIMIT),
    Case("queues-detailed-maybe", "GET", "/queues", params={"detailed": "maybe"},
         title=INVALID_PARAMETER, description=not_bool("detailed")),
    Case("queues-with-count-maybe", "GET", "/queues", params={"with_count": "maybe"},
         title=INVALID_PARAMETER, description=not_bool("with_count")),
    # ---- message listing / get by ids
    Case("messages-limit-abc", "GET", "/queues/q/messages", params={"limit": "abc"},
         title=INVALID_PARAMETER, description=not_int("limit")),
    Case("messages-limit-0", "GET", "/queues/q/messages", params={"limit": 0},
         description=MESSAGE_LIMIT),
    Case("messages-limit-21", "GET", "/queues/q/messages", params={"limit": 21},
         description=MESSAGE_LIMIT),
    Case("messages-echo-maybe", "GET", "/queues/q/messages", params={"echo": "maybe"},
         title=INVALID_PARAMETER, description=not_bool("echo")),
    Case("messages-include-claimed-maybe", "GET", "/queues/q/messages",
         params={"include_claimed": "maybe"}, title=INVALID_PARAMETER,
         description=not_bool("include_claimed")),
    Case("messages-include-delayed-maybe", "GET", "/queues/q/messages",
         params={"include_delayed": "maybe"}, title=INVALID_PARAMETER,
         description=not_bool("include_delayed")),
    Case("get-ids-21", "GET", "/queues/q/messages", params={"ids": many(21)},
         description=MESSAGE_LIMIT),
    # ---- bulk delete / pop (§4.6, §4.7)
    Case("pop-0", "DELETE", "/queues/q/messages", params={"pop": 0}, description=POP_RANGE),
    Case("pop-21", "DELETE", "/queues/q/messages", params={"pop": 21}, description=POP_RANGE),
    Case("pop-neg", "DELETE", "/queues/q/messages", params={"pop": -1}, description=POP_RANGE),
    Case("pop-abc", "DELETE", "/queues/q/messages", params={"pop": "abc"},
         title=INVALID_PARAMETER, description=not_int("pop")),
    Case("pop-and-ids", "DELETE", "/queues/q/messages", params={"pop": 1, "ids": many(1)},
         description="pop and id params cannot be present together in the delete request."),
    Case("neither-pop-nor-ids", "DELETE", "/queues/q/messages",
         description='The request should have either "ids" or "pop" parameter in the '
         "request, to be able to delete."),
    Case("delete-ids-21", "DELETE", "/queues/q/messages", params={"ids": many(21)},
         description="ids parameter should have at least 1 and not greater than 20 values."),
    # ---- message post body (§4.2)
    Case("post-no-body", "POST", "/queues/q/messages", title=INVALID_BODY,
         description=EMPTY_BODY),
    Case("post-bad-json", "POST", "/queues/q/messages", raw=b'{"messages": [',
         title=INVALID_BODY, description=UNPARSEABLE),
    Case("post-empty-object", "POST", "/queues/q/messages", body={}, description=NO_MESSAGES),
    Case("post-no-messages-key", "POST", "/queues/q/messages", body={"message": []},
         description=NO_MESSAGES),
    Case("post-body-is-array", "POST", "/queues/q/messages", body=[{"body": 1}],
         description=NO_MESSAGES),
    Case("post-messages-string", "POST", "/queues/q/messages", body={"messages": "x"},
         title=INVALID_BODY, description=DOC_TYPE),
    Case("post-messages-object", "POST", "/queues/q/messages", body={"messages": {"body": 1}},
         title=INVALID_BODY, description=DOC_TYPE),
    Case("post-messages-null", "POST", "/queues/q/messages", body={"messages": None},
         title=INVALID_BODY, description=DOC_TYPE),
    Case("post-empty-list", "POST", "/queues/q/messages", body=messages(),
         description="No messages to enqueu."),
    Case("post-missing-body", "POST", "/queues/q/messages", body=messages({"ttl": 60}),
         title=INVALID_BODY, description='Missing "body" field.'),
    Case("post-ttl-string", "POST", "/queues/q/messages", body=messages({"body": 1, "ttl": "60"}),
         title=INVALID_BODY, description=int_type("ttl")),
    Case("post-ttl-float", "POST", "/queues/q/messages", body=messages({"body": 1, "ttl": 60.5}),
         title=INVALID_BODY, description=int_type("ttl")),
    Case("post-ttl-bool", "POST", "/queues/q/messages", body=messages({"body": 1, "ttl": True}),
         title=INVALID_BODY, description=int_type("ttl")),
    Case("post-ttl-59", "POST", "/queues/q/messages", body=messages({"body": 1, "ttl": 59}),
         description=MESSAGE_TTL),
    Case("post-ttl-0", "POST", "/queues/q/messages", body=messages({"body": 1, "ttl": 0}),
         description=MESSAGE_TTL),
    Case("post-ttl-neg", "POST", "/queues/q/messages", body=messages({"body": 1, "ttl": -60}),
         description=MESSAGE_TTL),
    Case("post-ttl-too-long", "POST", "/queues/q/messages",
         body=messages({"body": 1, "ttl": 1209601}), description=MESSAGE_TTL),
    Case("post-ttl-int64-max", "POST", "/queues/q/messages",
         body=messages({"body": 1, "ttl": 2**63 - 1}), description=MESSAGE_TTL),
    Case("post-ttl-huge", "POST", "/queues/q/messages",
         body=messages({"body": 1, "ttl": 2**63}), title=INVALID_BODY, description=TOO_LARGE_INT),
    Case("post-body-huge-int", "POST", "/queues/q/messages",
         body=messages({"body": {"n": 2**63}}), title=INVALID_BODY, description=TOO_LARGE_INT),
    Case("post-body-huge-negative-int", "POST", "/queues/q/messages",
         body=messages({"body": [-(2**63) - 1]}), title=INVALID_BODY,
         description=TOO_LARGE_INT),
    Case("post-delay-901", "POST", "/queues/dq/messages",
         body=messages({"body": 1, "delay": 901}), setup={"dq": {"_default_message_delay": 30}},
         description=MESSAGE_DELAY),
    Case("post-delay-neg", "POST", "/queues/dq/messages",
         body=messages({"body": 1, "delay": -1}), setup={"dq": {"_default_message_delay": 30}},
         description=MESSAGE_DELAY),
    Case("post-delay-string", "POST", "/queues/dq/messages",
         body=messages({"body": 1, "delay": "5"}), setup={"dq": {"_default_message_delay": 30}},
         title=INVALID_BODY, description=int_type("delay")),
    Case("post-too-large", "POST", "/queues/q/messages", raw=oversized_post(262144),
         description=POST_TOO_LARGE),
    Case("post-too-large-queue-limit", "POST", "/queues/sq/messages", raw=oversized_post(100),
         setup={"sq": {"_max_messages_post_size": 100}},
         description="Message collection size is too large. The max size for current queue is "
         "100. It is calculated by max size = min(max_messages_post_size_config: 262144, "
         "max_messages_post_size_queue: 100)."),
    # [BUG] reference answers 500 for a non-object element
    Case("post-element-int", "POST", "/queues/q/messages", body=messages(1), title=None),
    Case("post-element-string", "POST", "/queues/q/messages", body=messages("x"), title=None),
    Case("post-element-null", "POST", "/queues/q/messages", body=messages(None), title=None),
    Case("post-element-array", "POST", "/queues/q/messages", body=messages([1]), title=None),
    Case("post-second-element-int", "POST", "/queues/q/messages",
         body=messages({"body": 1}, 2), title=None),
    # §4.2 order of checks
    Case("order-size-before-parse", "POST", "/queues/q/messages",
         raw=b"{bad" + b" " * 262144, description=POST_TOO_LARGE),
    Case("order-missing-body-before-ttl-range", "POST", "/queues/q/messages",
         body=messages({"body": 1, "ttl": 30}, {"ttl": 60}),
         title=INVALID_BODY, description='Missing "body" field.'),
    Case("order-ttl-type-before-ttl-range", "POST", "/queues/q/messages",
         body=messages({"body": 1, "ttl": 30}, {"body": 1, "ttl": "x"}),
         title=INVALID_BODY, description=int_type("ttl")),
    Case("order-queue-name-before-body", "POST", "/queues/bad!name/messages", raw=b"{bad",
         title=INVALID_QUEUE, description=INVALID_QUEUE_TEXT),
    # ---- claims (§5.1, §5.3)
    Case("claim-ttl-59", "POST", "/queues/q/claims", body={"ttl": 59}, description=CLAIM_TTL),
    Case("claim-ttl-0", "POST", "/queues/q/claims", body={"ttl": 0}, description=CLAIM_TTL),
    Case("claim-ttl-43201", "POST", "/queues/q/claims", body={"ttl": 43201},
         description=CLAIM_TTL),
    Case("claim-grace-59", "POST", "/queues/q/claims", body={"grace": 59},
         description=CLAIM_GRACE),
    Case("claim-grace-43201", "POST", "/queues/q/claims", body={"ttl": 60, "grace": 43201},
         description=CLAIM_GRACE),
    Case("claim-ttl-string", "POST", "/queues/q/claims", body={"ttl": "60"},
         title=INVALID_BODY, description=int_type("ttl")),
    Case("claim-ttl-float", "POST", "/queues/q/claims", body={"ttl": 60.5},
         title=INVALID_BODY, description=int_type("ttl")),
    Case("claim-ttl-bool", "POST", "/queues/q/claims", body={"ttl": True},
         title=INVALID_BODY, description=int_type("ttl")),
    Case("claim-grace-string", "POST", "/queues/q/claims", body={"grace": "x"},
         title=INVALID_BODY, description=int_type("grace")),
    Case("claim-ttl-huge", "POST", "/queues/q/claims", body={"ttl": 2**63},
         title=INVALID_BODY, description=TOO_LARGE_INT),
    Case("claim-body-array", "POST", "/queues/q/claims", body=[{"ttl": 60}],
         title=INVALID_BODY, description=DOC_TYPE),
    Case("claim-bad-json", "POST", "/queues/q/claims", raw=b"{ttl: 60}",
         title=INVALID_BODY, description=UNPARSEABLE),
    Case("claim-limit-0", "POST", "/queues/q/claims", params={"limit": 0},
         description=MESSAGE_LIMIT),
    Case("claim-limit-21", "POST", "/queues/q/claims", params={"limit": 21},
         description=MESSAGE_LIMIT),
    Case("claim-limit-abc", "POST", "/queues/q/claims", params={"limit": "abc"},
         title=INVALID_PARAMETER, description=not_int("limit")),
    Case("renew-no-body", "PATCH", "/queues/q/claims/" + str(uuid.UUID(int=7)),
         title=INVALID_BODY, description=EMPTY_BODY),
    Case("renew-ttl-59-before-existence", "PATCH", "/queues/q/claims/" + str(uuid.UUID(int=7)),
         body={"ttl": 59}, description=CLAIM_TTL),
    Case("renew-ttl-43201", "PATCH", "/queues/q/claims/bogus", body={"ttl": 43201},
         description=CLAIM_TTL),
    Case("renew-ttl-string", "PATCH", "/queues/q/claims/bogus", body={"ttl": "x"},
         title=INVALID_BODY, description=int_type("ttl")),
    Case("renew-body-array", "PATCH", "/queues/q/claims/bogus", body=[],
         title=INVALID_BODY, description=DOC_TYPE),
    Case("renew-bad-json", "PATCH", "/queues/q/claims/bogus", raw=b"{",
         title=INVALID_BODY, description=UNPARSEABLE),
    # ---- queue PUT (§3.2)
    Case("put-array", "PUT", "/queues/q", body=[], title=INVALID_BODY, description=DOC_TYPE),
    Case("put-bad-json", "PUT", "/queues/q", raw=b"{bad", title=INVALID_BODY,
         description=UNPARSEABLE),
    Case("put-too-large", "PUT", "/queues/q", raw=metadata_of_size(65537),
         description=METADATA_TOO_LARGE),
    *reserved_cases(),
    # ---- queue PATCH (§3.5)
    patch_case("patch-no-body", description="PATCH body could not be empty for update."),
    patch_case("patch-object", body={"op": "add", "path": "/metadata/k", "value": 1},
               description=PATCH_ARRAY),
    patch_case("patch-empty-object", body={}, description=PATCH_ARRAY),
    patch_case("patch-string", body="add", description=PATCH_ARRAY),
    patch_case("patch-bad-json", raw=b"[{", description=UNPARSEABLE),
    patch_case("patch-element-int", body=[1], description="Operations must be JSON objects."),
    patch_case("patch-element-array", body=[[]], description="Operations must be JSON objects."),
    patch_case("patch-missing-op", body=[{"path": "/metadata/a", "value": 1}],
               description=MISSING_OP),
    patch_case("patch-op-move", body=[{"op": "move", "path": "/metadata/a", "value": 1}],
               description="Invalid operation: `move`. It must be one of the following: "
               "add, remove, replace."),
    patch_case("patch-op-test", body=[{"op": "test", "path": "/metadata/a", "value": 1}],
               description="Invalid operation: `test`. It must be one of the following: "
               "add, remove, replace."),
    patch_case("patch-missing-path", body=[{"op": "add", "value": 1}],
               description="Unable to find 'path' in JSON Schema change"),
    patch_case("patch-path-no-slash", body=[{"op": "add", "path": "metadata/k", "value": 1}],
               description='Pointer `metadata/k` does not start with "/".'),
    patch_case("patch-path-one-segment", body=[{"op": "add", "path": "/metadata", "value": 1}],
               description="Invalid JSON pointer for this resource: "
               "'/metadata, e.g /metadata/key'"),
    patch_case("patch-path-three-segments",
               body=[{"op": "add", "path": "/metadata/a/b", "value": 1}],
               description="Invalid JSON pointer for this resource: "
               "'/metadata/a/b, e.g /metadata/key'"),
    patch_case("patch-add-root-not-metadata", body=[{"op": "add", "path": "/foo/a", "value": 1}],
               description="The root of path must be metadata, e.g /metadata/key."),
    patch_case("patch-replace-root-not-metadata",
               body=[{"op": "replace", "path": "/foo/a", "value": 1}],
               description="The root of path must be metadata, e.g /metadata/key."),
    patch_case("patch-add-missing-value", body=[{"op": "add", "path": "/metadata/a"}],
               description='Operation "add" requires a member named "value".'),
    patch_case("patch-replace-missing-value", body=[{"op": "replace", "path": "/metadata/a"}],
               description='Operation "replace" requires a member named "value".'),
    patch_case("patch-too-large", raw=patch_of_size(65537), description=METADATA_TOO_LARGE),
    Case("patch-wrong-media-type", "PATCH", "/queues/pq",
         body=[{"op": "add", "path": "/metadata/k", "value": 1}], setup={"pq": {}},
         status=415, title="415 Unsupported Media Type",
         description="Accepted media type for PATCH: "
         "{'Accept-Patch': 'application/openstack-messaging-v2.0-json-patch'}."),
    Case("patch-missing-queue", "PATCH", "/queues/nosuch",
         body=[{"op": "add", "path": "/metadata/k", "value": 1}],
         headers={"Content-Type": JSON_PATCH}, status=404, title="Not found",
         description_re=r"^Queue nosuch does not exist for project test-[0-9a-f]+$"),
    # ---- purge (§3.8)
    Case("purge-empty-object", "POST", "/queues/q/purge", body={}, description=PURGE_KEY),
    Case("purge-wrong-key", "POST", "/queues/q/purge", body={"resource": ["messages"]},
         description=PURGE_KEY),
    Case("purge-bad-type", "POST", "/queues/q/purge", body={"resource_types": ["foo"]},
         description_re=r"^Resource types must be a sub set of "
         r"\{('messages', 'subscriptions'|'subscriptions', 'messages')\}\.$"),
    Case("purge-partly-bad-type", "POST", "/queues/q/purge",
         body={"resource_types": ["messages", "queues"]},
         description_re=r"^Resource types must be a sub set of \{.*\}\.$"),
    Case("purge-bad-json", "POST", "/queues/q/purge", raw=b"{", title=INVALID_BODY,
         description=UNPARSEABLE),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_validation_error(api: httpx.Client, case: Case) -> None:
    resp = case.send(api)
    assert resp.status_code == case.status, resp.text
    body = resp.json()
    if case.title is not None:
        assert body["title"] == case.title
    else:
        assert isinstance(body.get("title"), str)
    if case.description is not None:
        assert body["description"] == case.description
    if case.description_re is not None:
        assert re.match(case.description_re, body["description"]), body["description"]
    assert resp.headers["content-type"].startswith("application/json")


def test_case_ids_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


# --------------------------------------------------------------------------- headers


def test_missing_client_id_header_entirely(server: TidingsServer) -> None:
    for method, path in (("GET", "/v2/queues"), ("PUT", "/v2/queues/q"),
                         ("DELETE", "/v2/queues/q"), ("POST", "/v2/queues/q/claims"),
                         ("GET", "/v2/"), ("HEAD", "/v2/ping")):
        resp = httpx.request(method, server.url + path, headers={"X-Project-ID": "p"})
        assert resp.status_code == 400, (method, path)
        if method != "HEAD":
            assert resp.json() == {
                "title": "Missing header value",
                "description": 'The "Client-Id" header is required.',
            }


def test_missing_project_header(server: TidingsServer) -> None:
    resp = httpx.get(server.url + "/v2/queues/q/stats", headers={"Client-ID": str(uuid.uuid4())})
    assert resp.status_code == 400
    assert resp.json() == {
        "title": "Project-Id Missing",
        "description": "The header X-PROJECT-ID was missing",
    }


@pytest.mark.parametrize(
    ("headers", "status", "title"),
    [
        # urlencoded beats Accept and Client-ID
        ({"Content-Type": "application/x-www-form-urlencoded", "Accept": "text/plain"}, 400, None),
        ({"Content-Type": "application/x-www-form-urlencoded"}, 400, "Invalid Content-Type"),
        # Accept beats Client-ID
        ({"Accept": "text/plain"}, 406, None),
        # Client-ID presence beats project
        ({}, 400, "Missing header value"),
        ({"Client-ID": "nope"}, 400, "Wrong UUID value"),
        # project beats queue name
        ({"Client-ID": str(uuid.UUID(int=5))}, 400, "Project-Id Missing"),
        ({"Client-ID": str(uuid.UUID(int=5)), "X-Project-ID": ""}, 400,
         "Empty project header not allowed"),
        ({"Client-ID": str(uuid.UUID(int=5)), "X-Project-ID": "p"}, 400, INVALID_QUEUE),
    ],
)
def test_header_check_order(
    server: TidingsServer, headers: dict[str, str], status: int, title: str | None
) -> None:
    resp = httpx.post(server.url + "/v2/queues/bad!name/messages", content=b"a=b",
                      headers=headers)
    assert resp.status_code == status, resp.text
    if title is not None:
        assert resp.json()["title"] == title
    if status == 406:
        assert resp.content == b""


@pytest.mark.parametrize("accept", ["text/plain", "application/xml", "image/png"])
def test_accept_406_empty_body_on_errors_too(api: httpx.Client, accept: str) -> None:
    for resp in (
        api.get("/queues", params={"limit": "abc"}, headers={"Accept": accept}),
        api.post("/queues/q/messages", json={}, headers={"Accept": accept}),
    ):
        assert resp.status_code == 406
        assert resp.content == b""


def test_project_id_256_ok_257_rejected(server: TidingsServer) -> None:
    with server.client(project="p" * 256) as ok:
        assert ok.put("/queues/q").status_code == 201
        assert ok.get("/queues/q/stats").status_code == 200
    with server.client(project="p" * 257) as bad:
        for resp in (bad.put("/queues/q"), bad.get("/queues/q/messages"),
                     bad.delete("/queues/q")):
            assert resp.status_code == 400
            assert resp.json() == {"title": INVALID_QUEUE, "description": INVALID_QUEUE_TEXT}


def test_project_id_any_characters(server: TidingsServer) -> None:
    with server.client(project=f"proj with spaces/and:colons {uuid.uuid4()}") as client:
        assert client.put("/queues/q").status_code == 201
        assert [q["name"] for q in client.get("/queues").json()["queues"]] == ["q"]


@pytest.fixture
def off_server(make_server: type[TidingsServer], tmp_path: Path) -> Iterator[TidingsServer]:
    yield make_server(tmp_path, env={"TIDINGS_TRANSPORT__CLIENT_ID_UUID_SAFE": "off"}).start()


def test_client_id_length_when_uuid_check_off(off_server: TidingsServer) -> None:
    for bad in ("x" * 9, "x" * 37, "abc"):
        with off_server.client(client_id=bad) as client:
            resp = client.get("/queues")
            assert resp.status_code == 400, bad
            assert resp.json() == {
                "title": "Length of client id must be at least 10 and no greater than 36."
            }
    for good in ("x" * 10, "y" * 36):
        with off_server.client(client_id=good) as client:
            assert client.get("/queues").status_code == 200


# --------------------------------------------------------------------------- queue names


BAD_NAMES = ["a" * 65, "a%20b", "a!b", "a$b", "a@b", "a:b", "a+b", "%C3%A9t%C3%A9", "a%2Ab",
             "a,b", "a~b"]


@pytest.mark.parametrize("name", BAD_NAMES)
@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("PUT", ""), ("DELETE", ""), ("GET", "/stats"), ("POST", "/purge"),
     ("GET", "/messages"), ("POST", "/messages"), ("DELETE", "/messages?pop=1"),
     ("GET", "/messages/abc"), ("DELETE", "/messages/abc"), ("POST", "/claims"),
     ("GET", "/claims/abc"), ("DELETE", "/claims/abc")],
)
def test_bad_queue_name(api: httpx.Client, name: str, method: str, suffix: str) -> None:
    content = b'{"messages": [{"body": 1}]}' if method == "POST" else None
    resp = api.request(method, f"/queues/{name}{suffix}", content=content)
    assert resp.status_code == 400, resp.text
    assert resp.json() == {"title": INVALID_QUEUE, "description": INVALID_QUEUE_TEXT}


def test_bad_queue_name_on_patch(api: httpx.Client) -> None:
    resp = api.patch("/queues/a!b", json=[], headers={"Content-Type": JSON_PATCH})
    assert resp.status_code == 400
    assert resp.json() == {"title": INVALID_QUEUE, "description": INVALID_QUEUE_TEXT}


@pytest.mark.parametrize("name", ["a" * 64, "A", "0", "a.b", "a-b", "a_b", "a..b", "-", "_"])
def test_good_queue_names(api: httpx.Client, name: str) -> None:
    assert api.put(f"/queues/{name}").status_code == 201


# --------------------------------------------------------------------------- boundaries


@pytest.mark.parametrize("ttl", [60, 1209600])
def test_message_ttl_bounds_accepted(api: httpx.Client, ttl: int) -> None:
    resp = api.post("/queues/q/messages", json=messages({"body": 1, "ttl": ttl}))
    assert resp.status_code == 201


@pytest.mark.parametrize("body", [2**63 - 1, -(2**63)])
def test_int64_body_accepted(api: httpx.Client, body: int) -> None:
    resp = api.post("/queues/q/messages", json=messages({"body": body}))
    assert resp.status_code == 201
    mid = resp.json()["resources"][0].rsplit("/", 1)[1]
    assert api.get(f"/queues/q/messages/{mid}").json()["body"] == body


@pytest.mark.parametrize("delay", [0, 900])
def test_delay_bounds_accepted(api: httpx.Client, delay: int) -> None:
    api.put("/queues/dq", json={"_default_message_delay": 30})
    resp = api.post("/queues/dq/messages", json=messages({"body": 1, "delay": delay}))
    assert resp.status_code == 201


def test_delay_not_validated_without_queue_delay(api: httpx.Client) -> None:
    resp = api.post("/queues/q/messages", json=messages({"body": 1, "delay": 5000}))
    assert resp.status_code == 201


@pytest.mark.parametrize(("ttl", "grace"), [(60, 60), (43200, 43200)])
def test_claim_bounds_accepted(api: httpx.Client, ttl: int, grace: int) -> None:
    api.post("/queues/q/messages", json=messages({"body": 1}))
    resp = api.post("/queues/q/claims", json={"ttl": ttl, "grace": grace})
    assert resp.status_code == 201


@pytest.mark.parametrize("limit", [1, 20])
def test_limit_bounds_accepted(api: httpx.Client, limit: int) -> None:
    assert api.get("/queues", params={"limit": limit}).status_code == 200
    assert api.get("/queues/q/messages", params={"limit": limit}).status_code == 200
    assert api.delete("/queues/q/messages", params={"pop": limit}).status_code == 200
    assert api.post("/queues/q/claims", params={"limit": limit}).status_code == 204


def test_twenty_ids_accepted(api: httpx.Client) -> None:
    assert api.get("/queues/q/messages", params={"ids": many(20)}).status_code == 404
    assert api.delete("/queues/q/messages", params={"ids": many(20)}).status_code == 204


def test_post_size_boundary(api: httpx.Client) -> None:
    ok = api.post("/queues/q/messages", content=exact_post(262144),
                  headers={"Content-Type": "application/json"})
    assert ok.status_code == 201
    bad = api.post("/queues/q/messages", content=exact_post(262145),
                   headers={"Content-Type": "application/json"})
    assert bad.status_code == 400
    assert bad.json() == {"title": INVALID_REQUEST, "description": POST_TOO_LARGE}


def test_queue_post_size_boundary(api: httpx.Client) -> None:
    api.put("/queues/sq", json={"_max_messages_post_size": 200})
    ok = api.post("/queues/sq/messages", content=exact_post(200),
                  headers={"Content-Type": "application/json"})
    assert ok.status_code == 201
    bad = api.post("/queues/sq/messages", content=exact_post(201),
                   headers={"Content-Type": "application/json"})
    assert bad.status_code == 400
    assert bad.json()["description"].startswith(
        "Message collection size is too large. The max size for current queue is 200."
    )


def test_queue_post_size_above_config_uses_min(
    make_server: type[TidingsServer], tmp_path: Path
) -> None:
    srv = make_server(tmp_path, env={"TIDINGS_TRANSPORT__MAX_MESSAGES_POST_SIZE": "1000"}).start()
    with srv.client() as client:
        resp = client.post("/queues/plain/messages", content=oversized_post(1000),
                           headers={"Content-Type": "application/json"})
        assert resp.status_code == 400
        assert resp.json() == {
            "title": INVALID_REQUEST,
            "description": "Message collection size is too large. Max size 1000",
        }
        # The queue limit may not exceed the configured one.
        refused = client.put("/queues/big", json={"_max_messages_post_size": 5000})
        assert refused.status_code == 400
        assert refused.json()["description"] == (
            "_max_messages_post_size can not exceed 1000,  and must be at least greater than 0."
        )
        assert client.put("/queues/sq", json={"_max_messages_post_size": 800}).status_code == 201
        resp = client.post("/queues/sq/messages", content=oversized_post(800),
                           headers={"Content-Type": "application/json"})
        assert resp.status_code == 400
        assert resp.json()["description"] == (
            "Message collection size is too large. The max size for current queue is 800. "
            "It is calculated by max size = min(max_messages_post_size_config: 1000, "
            "max_messages_post_size_queue: 800)."
        )


def test_metadata_size_boundary(api: httpx.Client) -> None:
    assert api.put("/queues/m1", content=metadata_of_size(65536),
                   headers={"Content-Type": "application/json"}).status_code == 201
    # replacing the one key keeps the merged metadata within the limit
    resp = api.patch("/queues/m1", content=patch_of_size(65536),
                     headers={"Content-Type": JSON_PATCH})
    assert resp.status_code == 200, resp.text
    # a second key of that size would double it: refused (Zaqar stores it; ours keeps
    # metadata bounded, so PATCHes cannot grow it without end)
    grown = patch_of_size(65536).replace(b"/metadata/k", b"/metadata/j")
    resp = api.patch("/queues/m1", content=grown, headers={"Content-Type": JSON_PATCH})
    assert resp.status_code == 400
    assert resp.json() == {"title": INVALID_BODY, "description": METADATA_TOO_LARGE}
    api.put("/queues/m2")
    assert api.patch("/queues/m2", content=patch_of_size(65536),
                     headers={"Content-Type": JSON_PATCH}).status_code == 200


def test_falsy_reserved_values_pass_type_checks(api: httpx.Client) -> None:
    resp = api.put("/queues/fq", json={"_max_claim_count": 0, "_default_message_delay": 0,
                                       "_enable_encrypt_messages": False})
    assert resp.status_code == 201


def test_invalid_reserved_metadata_on_existing_queue_put(api: httpx.Client) -> None:
    """The body of a re-PUT is validated even though metadata is not updated."""
    api.put("/queues/eq")
    resp = api.put("/queues/eq", json={"_default_message_ttl": 59})
    assert resp.status_code == 400
    assert resp.json()["description"] == DEFAULT_TTL_RANGE


def test_patch_invalid_result_not_saved(api: httpx.Client) -> None:
    api.put("/queues/pq", json={"_default_message_ttl": 300})
    resp = api.patch("/queues/pq", headers={"Content-Type": JSON_PATCH},
                     json=[{"op": "replace", "path": "/metadata/_default_message_ttl",
                            "value": 10}])
    assert resp.status_code == 400
    assert api.get("/queues/pq").json()["_default_message_ttl"] == 300


def test_post_rejection_is_all_or_nothing(api: httpx.Client) -> None:
    resp = api.post("/queues/q/messages",
                    json=messages({"body": 1}, {"body": 2, "ttl": 30}, {"body": 3}))
    assert resp.status_code == 400
    assert api.get("/queues/q/stats").json()["messages"]["total"] == 0


def test_renew_grace_not_validated_but_ttl_is(api: httpx.Client) -> None:
    api.post("/queues/q/messages", json=messages({"body": 1}))
    cid = api.post("/queues/q/claims").headers["location"].rsplit("/", 1)[1]
    assert api.patch(f"/queues/q/claims/{cid}", json={"grace": 1}).status_code == 204
    resp = api.patch(f"/queues/q/claims/{cid}", json={"ttl": 43201})
    assert resp.status_code == 400
    assert resp.json() == {"title": INVALID_REQUEST, "description": CLAIM_TTL}


# --------------------------------------------------------------------------- §4.8 claim ids


def test_delete_with_malformed_claim_id(api: httpx.Client) -> None:
    resp = api.post("/queues/q/messages", json=messages({"body": 1}))
    mid = resp.json()["resources"][0].rsplit("/", 1)[1]
    api.post("/queues/q/claims")
    for bad in ("garbage", "", "%00", "x" * 300):
        resp = api.delete(f"/queues/q/messages/{mid}?claim_id={bad}")
        if bad == "":  # blank query values are dropped: no claim id given
            assert resp.status_code == 403
            continue
        assert resp.status_code == 400, bad
        assert resp.json() == {
            "title": "Unable to delete",
            "description": "The specified claim does not exist or has expired.",
        }


def test_claim_ids_required_when_configured(
    make_server: type[TidingsServer], tmp_path: Path
) -> None:
    srv = make_server(
        tmp_path, env={"TIDINGS_TRANSPORT__MESSAGE_DELETE_WITH_CLAIM_ID": "true"}
    ).start()
    with srv.client() as client:
        resp = client.delete("/queues/q/messages", params={"ids": many(2)})
        assert resp.status_code == 400
        assert resp.json() == {
            "title": INVALID_REQUEST,
            "description": 'The request should have both "ids" and "claim_ids" parameter in '
            "the request when message_delete_with_claim_id is True.",
        }
        # pop is unaffected
        assert client.delete("/queues/q/messages", params={"pop": 1}).status_code == 200


# --------------------------------------------------------------------------- no 5xx sweep


GARBAGE: list[tuple[int, str, str, dict[str, Any], bytes | None, dict[str, str]]] = [
    (400, "POST", "/queues/q/messages", {}, b"null", {}),
    (400, "POST", "/queues/q/messages", {}, b'"str"', {}),
    (400, "POST", "/queues/q/messages", {}, b"1", {}),
    (400, "POST", "/queues/q/messages", {}, b"true", {}),
    (400, "POST", "/queues/q/messages", {}, b"\xff\xfe\x00", {}),
    (400, "POST", "/queues/q/messages", {}, b'{"messages": [{"body": 1, "ttl": null}]}', {}),
    (400, "POST", "/queues/q/messages", {}, b'{"messages": [{"body": 1, "ttl": [60]}]}', {}),
    (400, "POST", "/queues/q/messages", {}, b'{"messages": [{"body": 1, "ttl": 1e400}]}', {}),
    (400, "POST", "/queues/q/messages", {}, b'{"messages": [{"body": NaN}]}', {}),
    (400, "POST", "/queues/q/messages", {}, b'{"messages": [{"body": Infinity}]}', {}),
    (400, "POST", "/queues/q/messages", {}, b'{"messages": [{"body": 1}]} trailing', {}),
    (400, "POST", "/queues/q/messages", {}, b'{"messages": [{"body": "\\ud800"}]}', {}),
    (400, "POST", "/queues/q/messages", {}, b'{"messages": [{"body": 1, "delay": "x"}]}', {}),
    (400, "POST", "/queues/q/messages", {}, b'{"messages": [{"body": 1}]}',
     {"Content-Type": "application/x-www-form-urlencoded"}),
    (400, "POST", "/queues/q/messages", {}, b"", {"Content-Length": "0"}),
    (201, "POST", "/queues/q/messages", {}, b'{"messages": [{"body": 1}]}',
     {"Content-Type": "application/json; charset=latin-1"}),
    (200, "GET", "/queues/q/messages", {"marker": "garbage"}, None, {}),
    (200, "GET", "/queues/q/messages", {"marker": "x" * 5000}, None, {}),
    (200, "GET", "/queues/q/messages", {"marker": "-1"}, None, {}),
    (200, "GET", "/queues/q/messages", {"include_claimed": "true", "marker": "zz"}, None, {}),
    (200, "GET", "/queues/q/messages", {"ids": ",,,"}, None, {}),
    (404, "GET", "/queues/q/messages", {"ids": "a" * 1000}, None, {}),
    (400, "GET", "/queues/q/messages", {"limit": "99999999999999999999999"}, None, {}),
    (400, "GET", "/queues/q/messages", {"limit": "1e3"}, None, {}),
    (200, "GET", "/queues/q/messages", {"limit": " 5"}, None, {}),
    (200, "GET", "/queues/q/messages", {"echo": "TRUE"}, None, {}),
    (200, "GET", "/queues/q/messages", {"echo": ""}, None, {}),
    (404, "GET", "/queues/q/messages/" + "x" * 500, {}, None, {}),
    (404, "GET", "/queues/q/messages/%00", {}, None, {}),
    (400, "GET", "/queues", {"marker": "\x00"}, None, {}),
    (200, "GET", "/queues", {"marker": "é"}, None, {}),
    (400, "GET", "/queues", {"limit": "-99999999999999999999"}, None, {}),
    (200, "GET", "/queues", {"name": "(unbalanced["}, None, {}),
    (200, "GET", "/queues", {"name": ".*"}, None, {}),
    (200, "GET", "/queues", {"foo": "99999999999999999999999"}, None, {}),
    (200, "GET", "/queues", {"with_count": "1", "detailed": "0"}, None, {}),
    (400, "DELETE", "/queues/q/messages", {"pop": "1.5"}, None, {}),
    (400, "DELETE", "/queues/q/messages", {"pop": "99999999999999999999"}, None, {}),
    (400, "DELETE", "/queues/q/messages", {"ids": ",,"}, None, {}),
    (204, "DELETE", "/queues/q/messages", {"ids": "a", "claim_ids": "b"}, None, {}),
    (204, "DELETE", "/queues/q/messages/abc", {"claim_id": "x" * 1000}, None, {}),
    (400, "POST", "/queues/q/claims", {"limit": "1.5"}, None, {}),
    (400, "POST", "/queues/q/claims", {}, b"null", {}),
    (400, "POST", "/queues/q/claims", {}, b'{"ttl": null}', {}),
    (400, "POST", "/queues/q/claims", {}, b'{"ttl": -1e10}', {}),
    (400, "POST", "/queues/q/claims", {}, b'{"grace": []}', {}),
    (400, "POST", "/queues/q/claims", {}, b"\xff", {}),
    (400, "PATCH", "/queues/q/claims/abc", {}, b"null", {}),
    (400, "PATCH", "/queues/q/claims/abc", {}, b'{"ttl": 60, "grace": "x"}', {}),
    (404, "PATCH", "/queues/q/claims/" + "x" * 500, {}, b'{"ttl": 60}', {}),
    (404, "GET", "/queues/q/claims/%00", {}, None, {}),
    (400, "PUT", "/queues/q", {}, b"null", {}),
    (400, "PUT", "/queues/q", {}, b"1", {}),
    (400, "PUT", "/queues/q", {}, b'"x"', {}),
    (400, "PUT", "/queues/q", {}, b"\xff", {}),
    (400, "PUT", "/queues/q", {}, b'{"_dead_letter_queue": 5}', {}),
    (400, "PUT", "/queues/q", {}, b'{"_dead_letter_queue": "bad name!"}', {}),
    (400, "PUT", "/queues/q", {}, b'{"_max_claim_count": -5}', {}),
    (400, "PUT", "/queues/q", {}, b'{"_retry_policy": "x"}', {}),
    (400, "PUT", "/queues/q", {}, b'{"_retry_policy": {"retries_with_no_delay": "x"}}', {}),
    (400, "PUT", "/queues/q", {}, b'{"_default_message_ttl": 99999999999999999999}', {}),
    (400, "PUT", "/queues/q", {}, b'{"_default_message_ttl": true}', {}),
    (400, "PUT", "/queues/q", {}, b'{"_max_messages_post_size": 1e5}', {}),
    (400, "PATCH", "/queues/q", {}, b"null", {"Content-Type": JSON_PATCH}),
    (400, "PATCH", "/queues/q", {}, b"1", {"Content-Type": JSON_PATCH}),
    (400, "PATCH", "/queues/q", {}, b"\xff", {"Content-Type": JSON_PATCH}),
    (400, "PATCH", "/queues/q", {}, b"[null]", {"Content-Type": JSON_PATCH}),
    (400, "PATCH", "/queues/q", {}, b'[{"op": 1, "path": "/metadata/a", "value": 1}]',
     {"Content-Type": JSON_PATCH}),
    (400, "PATCH", "/queues/q", {}, b'[{"op": "add", "path": 1, "value": 1}]',
     {"Content-Type": JSON_PATCH}),
    (400, "PATCH", "/queues/q", {}, b'[{"op": "add", "path": "", "value": 1}]',
     {"Content-Type": JSON_PATCH}),
    (400, "PATCH", "/queues/q", {}, b'[{"op": "add", "path": "/", "value": 1}]',
     {"Content-Type": JSON_PATCH}),
    (400, "PATCH", "/queues/q", {}, b'[{"op": "add", "path": "/metadata/", "value": 1}]',
     {"Content-Type": JSON_PATCH}),
    (400, "PATCH", "/queues/q", {}, b'[{"op": "remove", "path": "/foo/bar"}]',
     {"Content-Type": JSON_PATCH}),
    (400, "PATCH", "/queues/q", {}, b'[{"op": "remove", "path": "/metadata"}]',
     {"Content-Type": JSON_PATCH}),
    (400, "PATCH", "/queues/q", {}, b'[{"op": "add", "path": "/metadata/~2", "value": 1}]',
     {"Content-Type": JSON_PATCH}),
    (400, "PATCH", "/queues/q", {}, b'[{"op": "add", "path": "/metadata/_max_claim_count",'
     b' "value": [1]}]', {"Content-Type": JSON_PATCH}),
    (415, "PATCH", "/queues/q", {}, b"[]", {}),
    (415, "PATCH", "/queues/q", {}, b"[]", {"Content-Type": JSON_PATCH + "; charset=utf-8"}),
    (400, "POST", "/queues/q/purge", {}, b"null", {}),
    (400, "POST", "/queues/q/purge", {}, b"[]", {}),
    (400, "POST", "/queues/q/purge", {}, b'{"resource_types": "messages"}', {}),
    (400, "POST", "/queues/q/purge", {}, b'{"resource_types": null}', {}),
    (400, "POST", "/queues/q/purge", {}, b'{"resource_types": [1, {}]}', {}),
    (204, "POST", "/queues/q/purge", {}, b'{"resource_types": []}', {}),
    (400, "GET", "/queues/q", {}, None, {"Client-ID": ""}),
    (400, "GET", "/queues/q", {}, None, {"Client-ID": "{}"}),
    (400, "GET", "/queues/q", {}, None, {"Client-ID": "urn:uuid:"}),
    (400, "GET", "/queues/q", {}, None, {"X-Project-ID": "p" * 5000}),
    (406, "GET", "/queues/q", {}, None, {"Accept": "garbage"}),
    (200, "GET", "/queues/q", {}, None, {"Accept": ""}),
    (406, "GET", "/queues/q", {}, None, {"Accept": "application/json;q=0"}),
    (200, "GET", "/queues/q", {}, None, {"X-Roles": "admin"}),
    (403, "GET", "/health", {}, None, {"X-Roles": ""}),
    (200, "OPTIONS", "/queues/q", {}, None, {}),
    (405, "TRACE", "/queues", {}, None, {}),
    (404, "GET", "/queues/q/messages/abc/extra", {}, None, {}),
    (400, "GET", "/queues//messages", {}, None, {}),
    (200, "GET", "/queues/%2e%2e/stats", {}, None, {}),
]


SWEEP: list[Case] = [
    *CASES,
    Case("deep-nesting-whole-body", "POST", "/queues/q/messages",
         raw=b"[" * 5000 + b"]" * 5000, title=None),
    Case("deep-nesting-message-body", "POST", "/queues/q/messages",
         raw=b'{"messages": [{"body": ' + b"[" * 3000 + b"]" * 3000 + b"}]}", title=None),
    Case("deep-nesting-queue-metadata", "PUT", "/queues/q",
         raw=b'{"k": ' + b"[" * 3000 + b"]" * 3000 + b"}", title=None),
    Case("deep-nesting-claim", "POST", "/queues/q/claims",
         raw=b'{"ttl": 60, "x": ' + b"[" * 3000 + b"]" * 3000 + b"}", title=None),
    Case("deep-nesting-patch", "PATCH", "/queues/q", headers={"Content-Type": JSON_PATCH},
         raw=b'[{"op": "add", "path": "/metadata/k", "value": ' + b"[" * 3000 + b"]" * 3000
         + b"}]", title=None),
    *(Case(f"garbage-{i}", m, p, params=q, raw=b, headers=h, status=status, title=None)
      for i, (status, m, p, q, b, h) in enumerate(GARBAGE)),
]
@pytest.mark.parametrize(
    "case",
    [pytest.param(c, id=c.id) for c in SWEEP],
)
def test_malformed_input_gets_its_status(api: httpx.Client, case: Case) -> None:
    """Never a 5xx, and each input its one right answer (Zaqar's, or the spec's where
    Zaqar fails with a 5xx or accepts what is not JSON)."""
    # Some inputs only misbehave against an existing queue with (delayed, claimed) messages.
    api.put("/queues/q", json={"_default_message_delay": 1})
    api.post("/queues/q/messages", json=messages({"body": 1}, {"body": 2, "delay": 0}))
    api.post("/queues/q/claims", params={"limit": 1})
    resp = case.send(api)
    assert resp.status_code == case.status, (resp.status_code, resp.text)
    # and the server still answers normally afterwards
    assert api.get("/queues/q/stats").status_code == 200
