"""Bad input on the SQS face (issue 14, item 5: "the bad-input and isolation tests that
enumerate the router cover the SQS operations too").

Every operation of the router (``tidings.sqs.operations.OPERATIONS``) and, for each, every
member of its input in botocore's current SQS model (recursing into structures, list
items, map keys and map values: ``tests/sqs/hostile_values.py``) gets hostile values over
both protocols: wrong JSON types, numbers out of every range, oversize and invalid text,
huge lists and maps, deep nesting, look-alike queue URLs, receipt handles, ARNs and
policies; then whole requests that are hostile: malformed bodies, absurd targets and
actions, garbage signatures, oversize bodies, too many and repeated parameters.

Each answer must be a 4xx in SQS's error shape for its protocol (JSON ``__type`` and
``message`` with ``x-amzn-query-error``; XML ``<ErrorResponse>``) with no stack trace or
Python repr in it, or a 2xx where the value is valid; never a 5xx, never a hang. After
each test a normal boto3 session still works.

One server serves the module, over SQLite: this is about parsing and checking, which
come before storage and do not depend on it (what is stored is JSON-encoded the same way
for every store; ``TIDINGS_TEST_HOSTILE_STORE=redis`` or ``postgres`` runs the module
against another).
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree

import httpx
import msgspec
import pytest
from botocore.exceptions import ClientError

from tests.backends import StoreNamespace
from tests.server import TidingsServer, read_until_closed
from tests.sqs import hostile_values as hv
from tests.sqs.conftest import sqs_client
from tests.sqs.query_model import NAMESPACE, check_error_xml
from tidings.sqs.operations import OPERATIONS

JSON_TYPE = "application/x-amz-json-1.0"
DATE = "20260101T000000Z"
FORM_TYPE = "application/x-www-form-urlencoded; charset=utf-8"
# Every answer comes well within this (a receive waits at most 20 s); past it the
# server counts as hung.
ANSWER_TIMEOUT = 30.0
# The server gives up on a body that does not arrive after this long ([server]).
BODY_TIMEOUT = 1.0
# The store the module's server uses: SQLite unless asked (the checks run before, and
# apart from, storage; TIDINGS_TEST_HOSTILE_STORE=redis or postgres runs them there).
HOSTILE_STORE = os.environ.get("TIDINGS_TEST_HOSTILE_STORE", "sqlite")
# Failures listed in one test's report (the rest are counted).
SHOWN_FAILURES = 40

# What an error message must not hold: a stack trace, or the repr of a Python object.
LEAKS = re.compile(
    r"Traceback \(most recent call last\)"
    r"|File \"[^\"]*\", line \d+"
    r"|\.py\b"
    r"|<[\w.]+ object at 0x[0-9a-fA-F]+>"
    r"|<class '"
    r"|\b(?:Key|Type|Value|Attribute|Index|Recursion|Runtime|Assertion|Lookup|Overflow)Error\b"
    r"|\bUnicode(?:De|En)codeError\b"
    r"|\bmsgspec\b|\bNoneType\b|\bDecimal\("
    r"|(?:^|[\s(\[{=:,])b'[^']*'"
    r"|\{'[^']*': |\[\s*'[^']*',"
)


def authorization(access_key: str) -> str:
    """A SigV4 header as SDKs send it (``noauth`` reads only the access key id)."""
    return (
        f"AWS4-HMAC-SHA256 Credential={access_key}/20260101/us-east-1/sqs/aws4_request, "
        "SignedHeaders=host, Signature=0"
    )


def signed(access_key: str) -> dict[str, str]:
    """The signature headers of a request (its date is not checked under ``noauth``)."""
    return {"Authorization": authorization(access_key), "X-Amz-Date": DATE}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TidingsServer]:
    data_dir = tmp_path_factory.mktemp("sqs-hostile")
    namespace = StoreNamespace(HOSTILE_STORE, data_dir)
    server = TidingsServer(
        data_dir,
        env={"TIDINGS_SERVER__BODY_TIMEOUT": str(BODY_TIMEOUT)},
        store_uri=namespace.uri,
    )
    server.start()
    yield server
    server.stop()
    namespace.drop()


@dataclass
class Checker:
    """Sends requests to the server and records every answer that breaks the rules."""

    url: str
    project: str
    http: httpx.Client
    failures: list[str] = field(default_factory=list)
    sent: int = 0

    def json(
        self,
        target: str | None,
        body: bytes,
        what: str,
        headers: dict[str, Any] | None = None,
        *,
        cut_ok: bool = False,
    ) -> httpx.Response | None:
        sent: dict[str, Any] = {"Content-Type": JSON_TYPE, **signed(self.project)}
        if target is not None:
            sent["X-Amz-Target"] = target
        sent.update(headers or {})
        return self.send("/", body, sent, what, query=False, cut_ok=cut_ok)

    def form(
        self,
        body: bytes,
        what: str,
        path: str = "/",
        headers: dict[str, Any] | None = None,
        *,
        cut_ok: bool = False,
    ) -> httpx.Response | None:
        sent: dict[str, Any] = {"Content-Type": FORM_TYPE, **signed(self.project)}
        sent.update(headers or {})
        return self.send(path, body, sent, what, query=True, cut_ok=cut_ok)

    def send(
        self,
        path: str,
        body: bytes,
        headers: Any,
        what: str,
        *,
        query: bool,
        method: str = "POST",
        cut_ok: bool = False,
    ) -> httpx.Response | None:
        """One request; its answer checked. ``cut_ok``: the server may close the
        connection instead of answering (a body past the limit). Header values are
        sent as their UTF-8 bytes."""
        self.sent += 1
        items = headers.items() if isinstance(headers, dict) else headers
        headers = [(k, v.encode() if isinstance(v, str) else v) for k, v in items]
        try:
            response = self.http.request(
                method, self.url + path, content=body, headers=headers, timeout=ANSWER_TIMEOUT
            )
        except httpx.TimeoutException:
            self.failures.append(f"{what}: no answer within {ANSWER_TIMEOUT}s (a hang)")
            return None
        except httpx.TransportError as exc:
            if not cut_ok:
                self.failures.append(f"{what}: connection failed ({exc!r})")
            return None
        problem = answer_problem(response, query=query)
        if problem:
            self.failures.append(f"{what}: {problem}")
        return response

    def report(self) -> None:
        if self.failures:
            shown = "\n".join(self.failures[:SHOWN_FAILURES])
            more = len(self.failures) - SHOWN_FAILURES
            extra = f"\n... and {more} more" if more > 0 else ""
            pytest.fail(
                f"{len(self.failures)} of {self.sent} answers broke the rules:\n{shown}{extra}"
            )


def answer_problem(response: httpx.Response, *, query: bool) -> str | None:
    """What is wrong with an answer (None: nothing): a 5xx; an error not in SQS's shape
    for its protocol or that leaks internals; a success that does not parse."""
    status, content = response.status_code, response.content
    shown = f"{status} {content[:300]!r}"
    if status >= 500:
        return f"answered {shown}"
    if not 200 <= status < 500 or 300 <= status < 400:
        return f"unexpected status: {shown}"
    if not response.headers.get("x-amzn-requestid"):
        return f"no x-amzn-requestid: {shown}"
    content_type = response.headers.get("content-type", "")
    if query:
        if not content_type.startswith("text/xml"):
            return f"content type {content_type!r} in answer {shown}"
        try:
            root = ElementTree.fromstring(content)
        except ElementTree.ParseError as exc:
            return f"not XML ({exc}): {shown}"
        if status < 300:
            return None if root.tag.endswith("Response") else f"not a result: {shown}"
        try:
            check_error_xml(content, response.headers["x-amzn-requestid"])
        except AssertionError as exc:
            return f"not SQS's XML error ({exc}): {shown}"
        message = root.findtext(f"{NAMESPACE}Error/{NAMESPACE}Message") or ""
    else:
        if content_type != JSON_TYPE:
            return f"content type {content_type!r} in answer {shown}"
        try:
            document = msgspec.json.decode(content)
        except msgspec.DecodeError:
            return f"not JSON: {shown}"
        if not isinstance(document, dict):
            return f"not a JSON object: {shown}"
        if status < 300:
            return None
        if set(document) != {"__type", "message"}:
            return f"not SQS's JSON error: {shown}"
        kind, message = document["__type"], document["message"]
        if not (isinstance(kind, str) and kind.startswith("com.amazonaws.sqs#")):
            return f"__type is not SQS's: {shown}"
        if not isinstance(message, str) or not message:
            return f"no message: {shown}"
        header = response.headers.get("x-amzn-query-error", "")
        if not re.fullmatch(r"[\w.]+;(Sender|Receiver)", header):
            return f"x-amzn-query-error {header!r}: {shown}"
    leak = LEAKS.search(message)
    if leak:
        return f"the message leaks {leak.group(0)!r}: {shown}"
    return None


# The world each test aims at ------------------------------------------------------------


@dataclass
class World:
    ctx: hv.Context
    checker: Checker


@pytest.fixture
def world(srv: TidingsServer) -> Iterator[World]:
    """A project with a queue ("hq", with a message in flight) and a dead-letter queue."""
    project = f"hostile-{uuid.uuid4().hex[:12]}"
    boto = sqs_client(srv.url, project)
    queue_url = boto.create_queue(QueueName="hq")["QueueUrl"]
    dlq_url = boto.create_queue(QueueName="hq-dlq")["QueueUrl"]
    for index in range(3):
        boto.send_message(QueueUrl=queue_url, MessageBody=f"m{index}")
    received = boto.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=1, VisibilityTimeout=43200
    )
    ctx = hv.Context(
        base_url=srv.url,
        project=project,
        queue="hq",
        queue_url=queue_url,
        dlq_url=dlq_url,
        handle=received["Messages"][0]["ReceiptHandle"],
        other_project=f"hostile-{uuid.uuid4().hex[:12]}",
    )
    with httpx.Client() as http:
        yield World(ctx, Checker(srv.url, project, http))


def still_healthy(world: World, srv: TidingsServer) -> None:
    """A normal session works: boto3 end to end, and the queue reads back over both
    protocols (whatever hostile values were accepted into it)."""
    boto = sqs_client(srv.url, world.ctx.project)
    url = boto.create_queue(QueueName="health-check")["QueueUrl"]
    sent = boto.send_message(QueueUrl=url, MessageBody="still here")
    [message] = boto.receive_message(QueueUrl=url, WaitTimeSeconds=5)["Messages"]
    assert message["MessageId"] == sent["MessageId"]
    boto.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    assert url in boto.list_queues(QueueNamePrefix="health")["QueueUrls"]
    try:
        boto.get_queue_attributes(QueueUrl=world.ctx.queue_url, AttributeNames=["All"])
    except ClientError as exc:  # DeleteQueue's test deletes it
        assert exc.response["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"
        return
    boto.list_queue_tags(QueueUrl=world.ctx.queue_url)
    boto.receive_message(
        QueueUrl=world.ctx.queue_url,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
        MaxNumberOfMessages=10,
        VisibilityTimeout=0,
    )
    checker = Checker(srv.url, world.ctx.project, world.checker.http)
    for operation, params in (
        ("GetQueueAttributes", {"QueueUrl": world.ctx.queue_url, "AttributeNames": ["All"]}),
        ("ListQueueTags", {"QueueUrl": world.ctx.queue_url}),
        (
            "ReceiveMessage",
            {
                "QueueUrl": world.ctx.queue_url,
                "MaxNumberOfMessages": 10,
                "AttributeNames": ["All"],
                "MessageAttributeNames": ["All"],
            },
        ),
    ):
        body = hv.form_body(hv.query_pairs(operation, params))
        answer = checker.form(body, f"read-back {operation}")
        assert answer is not None and answer.status_code == 200, checker.failures
        json_answer = checker.json(
            f"AmazonSQS.{operation}", msgspec.json.encode(params), f"read-back {operation}"
        )
        assert json_answer is not None and json_answer.status_code == 200, checker.failures
    assert not checker.failures, checker.failures


# Every operation, every member ----------------------------------------------------------


def test_every_operation_is_in_the_model() -> None:
    """The router's operations are the model's, each with its members enumerated."""
    names = set(hv.model().operation_names)
    for operation in OPERATIONS:
        assert operation in names, operation
    assert {str(p) for p in hv.paths("SendMessageBatch")} >= {
        "QueueUrl",
        "Entries[]",
        "Entries[].MessageAttributes{key}",
        "Entries[].MessageAttributes{}.DataType",
    }


def test_baselines_are_valid_requests(srv: TidingsServer, world: World) -> None:
    """The valid part of every hostile request is valid: each operation answers it 200
    (so a hostile value reaches as far into an operation as a valid one would)."""

    # The message in flight is changed, then deleted, then the queue purged and deleted.
    def order(name: str) -> tuple[bool, ...]:
        return (name == "DeleteQueue", name == "PurgeQueue", "Delete" in name, "Change" not in name)

    for operation in sorted(OPERATIONS, key=order):
        params = hv.baseline(world.ctx, operation)
        answer = world.checker.json(
            f"AmazonSQS.{operation}", msgspec.json.encode(params), f"{operation} baseline"
        )
        assert answer is not None and answer.status_code == 200, (operation, answer and answer.text)
        result = answer.json()
        assert not result.get("Failed"), (operation, result)
    world.checker.report()


@pytest.mark.parametrize("protocol", ["json", "query"])
@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_hostile_member_values(
    operation: str, protocol: str, srv: TidingsServer, world: World
) -> None:
    query = protocol == "query"
    checker = world.checker
    for path in hv.paths(operation):
        keys: tuple[str | None, ...] = (None,)
        if path.steps[-1] == hv.VALUE and path.map_shape in hv.VALUE_KEYS:
            keys = hv.VALUE_KEYS[path.map_shape]
        for key in keys:
            params = hv.with_hostile(world.ctx, operation, path, key)
            pairs = hv.query_pairs(operation, params) if query else []
            for hostile in hv.hostile_values(world.ctx, path, query=query):
                what = f"{operation} {path}{f'[{key}]' if key else ''} = {hostile.name}"
                if query:
                    checker.form(hv.form_body(pairs, hostile), what)
                else:
                    checker.json(f"AmazonSQS.{operation}", hv.json_body(params, hostile), what)
    checker.report()
    still_healthy(world, srv)


# Whole requests, JSON protocol ----------------------------------------------------------

MALFORMED_JSON: dict[str, bytes] = {
    "truncated": b'{"QueueUrl": "',
    "not-json": b"not json",
    "trailing-garbage": b'{"QueueName": "q"} trailing',
    "two-documents": b"{}{}",
    "single-quotes": b"{'QueueName': 'q'}",
    "trailing-comma": b'{"QueueName": "q",}',
    "comments": b'{/* c */ "QueueName": "q"}',
    "bom": b'\xef\xbb\xbf{"QueueName": "q"}',
    "utf16": '{"QueueName": "q"}'.encode("utf-16"),
    "invalid-utf8": b'{"QueueName": "\xff\xfe"}',
    "invalid-utf8-key": b'{"\xff": 1}',
    "nul": b"\x00",
    "whitespace": b" \r\n\t ",
    "array": b"[]",
    "array-of-object": b'[{"QueueName": "q"}]',
    "string": b'"QueueName"',
    "number": b"42",
    "float-overflow": b"1e400",
    "true": b"true",
    "null": b"null",
    "deep-array": b"[" * 100_000 + b"]" * 100_000,
    "deep-object": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "deep-unclosed": b"[" * 200_000,
    "duplicate-members": b'{"QueueUrl": "a", "QueueUrl": "b", "QueueName": "q", "QueueName": 1}',
    "many-unknown-members": msgspec.json.encode({f"m{i}": i for i in range(20_000)}),
    "huge-unknown-member": msgspec.json.encode({"Unknown": "x" * 1_000_000}),
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_hostile_json_requests(operation: str, srv: TidingsServer, world: World) -> None:
    checker = world.checker
    target = f"AmazonSQS.{operation}"
    for name, body in MALFORMED_JSON.items():
        checker.json(target, body, f"{operation} body {name}")
    valid = msgspec.json.encode(hv.baseline(world.ctx, operation))
    # The target decides the protocol, whatever the content type says.
    checker.send(
        "/",
        valid,
        {"X-Amz-Target": target, **signed(checker.project)},
        f"{operation} without a content type",
        query=False,
    )
    for name, content_type in {
        "form": FORM_TYPE,
        "xml": "text/xml",
        "garbage": 'a/b; charset=""; ;;',
        "json-charset": JSON_TYPE + "; charset=latin-1",
        "long": "application/" + "x" * 4000,
    }.items():
        headers = {"Content-Type": content_type}
        checker.json(target, valid, f"{operation} content type {name}", headers)
    # Larger than any request may be: refused (or the connection closed), never read on.
    for size in (1_100_000, 5_000_000):
        body = b'{"QueueUrl": "' + b"x" * size + b'"}'
        checker.json(target, body, f"{operation} body of {size} bytes", cut_ok=True)
    checker.report()
    still_healthy(world, srv)


TARGETS = [
    "",
    "AmazonSQS",
    "AmazonSQS.",
    "AmazonSQS..CreateQueue",
    "AmazonSQS.createqueue",
    "AmazonSQS.CREATEQUEUE",
    "AmazonSQS.CreateQueue,AmazonSQS.DeleteQueue",
    "AmazonSQS.__init__",
    "AmazonSQS.__class__",
    "AmazonSQS.OPERATIONS",
    "AmazonSQS.lookup",
    "AmazonSQS.run",
    "AmazonSQS.get",
    "AmazonSQS.AddPermission",
    "AmazonSQS." + "A" * 10_000,
    "AmazonSQS.Cr\u00e9ateQueue",
    "AmazonSQS.\u0130",
    "AmazonSNS.Publish",
    "DynamoDB_20120810.ListTables",
    "../AmazonSQS.CreateQueue",
]


def test_hostile_targets(srv: TidingsServer, world: World) -> None:
    checker = world.checker
    for target in TARGETS:
        headers = {"X-Amz-Target": target}
        checker.json(None, b"{}", f"target {target[:40]!r}", headers)
    # Twice, differently (joined by the server, as SigV4 signs repeated headers).
    checker.send(
        "/",
        b"{}",
        [
            ("X-Amz-Target", "AmazonSQS.ListQueues"),
            ("X-Amz-Target", "AmazonSQS.DeleteQueue"),
            ("Content-Type", JSON_TYPE),
            ("Authorization", authorization(checker.project)),
            ("X-Amz-Date", DATE),
        ],
        "target twice",
        query=False,
    )
    checker.report()
    still_healthy(world, srv)


def _garbage_authorizations(project: str) -> dict[str, str | None]:
    good = authorization(project)
    return {
        "missing": None,
        "empty": "",
        "garbage": "garbage",
        "basic": "Basic dXNlcjpwYXNz",
        "bearer": "Bearer " + "x" * 100,
        "algorithm-only": "AWS4-HMAC-SHA256",
        "sigv2": f"AWS {project}:c2lnbmF0dXJl",
        "empty-credential": "AWS4-HMAC-SHA256 Credential=, SignedHeaders=host, Signature=0",
        "empty-key": good.replace(f"Credential={project}", "Credential="),
        "slashes": "AWS4-HMAC-SHA256 Credential=////, SignedHeaders=host, Signature=0",
        "no-scope": f"AWS4-HMAC-SHA256 Credential={project}, SignedHeaders=host, Signature=0",
        "wrong-service": good.replace("/sqs/", "/s3/"),
        "bad-date": good.replace("20260101", "2026-13-45"),
        "no-signed-headers": good.replace("SignedHeaders=host, ", ""),
        "no-signature": good.replace(", Signature=0", ""),
        "repeated-parts": good + ", " + good.split(" ", 1)[1],
        "key-dots": good.replace(f"Credential={project}", "Credential=.."),
        "key-long": good.replace(f"Credential={project}", "Credential=" + "k" * 10_000),
        "key-latin1": good.replace(f"Credential={project}", "Credential=\u00e9\u00ff"),
        "key-percent": good.replace(f"Credential={project}", "Credential=%00%2F"),
        "huge": good + ", X=" + "y" * 60_000,
        "commas": "AWS4-HMAC-SHA256 ,,,,,,,,,,",
        "equals": "AWS4-HMAC-SHA256 Credential==, SignedHeaders==, Signature==",
    }


@pytest.mark.parametrize("protocol", ["json", "query"])
def test_hostile_authorization(protocol: str, srv: TidingsServer, world: World) -> None:
    checker = world.checker
    query = protocol == "query"
    for name, value in _garbage_authorizations(checker.project).items():
        headers = {"Content-Type": FORM_TYPE if query else JSON_TYPE, "X-Amz-Date": DATE}
        if not query:
            headers["X-Amz-Target"] = "AmazonSQS.ListQueues"
        if value is not None:
            headers["Authorization"] = value
        body = b"Action=ListQueues&Version=2012-11-05" if query else b"{}"
        checker.send("/", body, headers, f"authorization {name}", query=query)
    # Presigned-query forms, garbled.
    for name, parameters in {
        "presigned-garbage": "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=%FF",
        "presigned-repeated": "X-Amz-Credential=a&X-Amz-Credential=b",
        "presigned-expires": (
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=p%2F20260101%2Fus-east-1%2Fsqs"
            "%2Faws4_request&X-Amz-Date=20260101T000000Z&X-Amz-Expires=999999999999999999999"
            "&X-Amz-SignedHeaders=host&X-Amz-Signature=0"
        ),
    }.items():
        path = f"/?Action=ListQueues&{parameters}"
        headers = {"Content-Type": FORM_TYPE if query else JSON_TYPE}
        if not query:
            headers["X-Amz-Target"] = "AmazonSQS.ListQueues"
        checker.send(path, b"" if query else b"{}", headers, name, query=query)
    checker.report()
    still_healthy(world, srv)


# Whole requests, query protocol ---------------------------------------------------------


def _hostile_forms(operation: str, valid: list[tuple[str, str]]) -> dict[str, bytes]:
    """Whole form bodies around an operation's valid parameters."""
    encoded = hv.form_body
    body = encoded(valid)
    params = [pair for pair in valid if pair[0] not in ("Action", "Version")]
    return {
        "no-action": encoded(params),
        "empty-action": encoded([("Action", ""), *params]),
        "action-twice": encoded([("Action", operation), *valid]),
        "action-twice-differently": encoded([("Action", "DeleteQueue"), *valid]),
        "action-lowercase": encoded([("Action", operation.lower()), *params]),
        "action-unknown": encoded([("Action", "__class__"), *params]),
        "action-control": encoded([("Action", operation + "\x00"), *params]),
        "action-long": encoded([("Action", "A" * 100_000), *params]),
        "action-invalid-utf8": b"Action=%ff%fe&" + body,
        "every-param-twice": encoded([*valid, *params]) if params else body + b"&Version=x",
        "version-twice": body + b"&Version=2012-11-05&Version=2099-01-01",
        "version-garbage": body + b"&Version=%00%01",
        "unknown-param": body + b"&Unknown=1",
        "unknown-nested-param": body + b"&A.1.B.2.C=1",
        "many-params": body + b"".join(b"&P%d=x" % i for i in range(6000)),
        "many-repeated": body + b"&Action=" * 6000,
        "long-param-name": body + b"&" + b"N" * 100_000 + b"=1",
        "empty-param-name": body + b"&=x&=y",
        "bare-names": body + b"&x&y&z",
        "only-separators": b"&" * 10_000 + body,
        "semicolons": body.replace(b"&", b";"),
        "bad-escapes": body + b"&X=%zz%&%=%",
        "raw-invalid-utf8": body + b"&X=\xff\xfe",
        "raw-control": body + b"&X=\x00\x01",
        "raw-non-ascii-name": body + "&\u00e9=1".encode(),
        "encoded-invalid-utf8-name": body + b"&%ff%fe=1",
        "plus-and-spaces": body + b"&X=+++&Y=%20",
        "json-body": msgspec.json.encode(dict(params)),
        "empty": b"",
    }


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_hostile_form_requests(operation: str, srv: TidingsServer, world: World) -> None:
    checker = world.checker
    valid = [
        (name, str(value))
        for name, value in hv.query_pairs(operation, hv.baseline(world.ctx, operation))
    ]
    for name, body in _hostile_forms(operation, valid).items():
        checker.form(body, f"{operation} form {name}")
    encoded = hv.form_body(valid)
    # In the query string as well as in the body, and only in the query string.
    checker.form(encoded, f"{operation} form twice", path="/?" + encoded.decode())
    checker.send(
        "/?" + encoded.decode(),
        b"",
        signed(checker.project),
        f"{operation} GET",
        query=True,
        method="GET",
    )
    # At paths that are no queue URL (old SDKs send to the queue's URL).
    without_url = hv.form_body([pair for pair in valid if pair[0] != "QueueUrl"])
    for path in (
        "/%ff/%fe",
        "/a/b/c/d",
        f"/{checker.project}/{'q' * 5000}",
        f"/{checker.project}/hq%00",
        f"/{checker.project}/..",
        "//",
        f"/{world.ctx.other_project}/hq",
    ):
        checker.form(without_url, f"{operation} at path {path[:40]}", path=path)
    for size in (1_100_000, 5_000_000):
        body = encoded + b"&X=" + b"x" * size
        checker.form(body, f"{operation} form of {size} bytes", cut_ok=True)
    checker.report()
    still_healthy(world, srv)


# Framing ----------------------------------------------------------------------------------


def _raw_exchange(srv: TidingsServer, request: bytes) -> bytes:
    """Send raw bytes; everything the server answers until it closes (bounded)."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=ANSWER_TIMEOUT) as sock:
        sock.sendall(request)
        return read_until_closed(sock, ANSWER_TIMEOUT)


@pytest.mark.parametrize("protocol", ["json", "query"])
def test_hostile_framing(protocol: str, srv: TidingsServer, world: World) -> None:
    """Headers no HTTP client library sends, and a body shorter than announced: an
    answer that is not a 5xx (the server's own framing errors are in its HTTP error
    format, not SQS's), never a hang."""
    project = world.ctx.project
    if protocol == "json":
        head = (
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: AmazonSQS.ListQueues\r\n"
            b"Content-Type: application/x-amz-json-1.0\r\n"
        )
        body = b"{}"
    else:
        head = b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: " + FORM_TYPE.encode()
        head += b"\r\n"
        body = b"Action=ListQueues"
    good = authorization(project).encode() + b"\r\nX-Amz-Date: " + DATE.encode()
    cases = {
        "latin1-authorization": b"Authorization: " + good.replace(b"=hostile", b"=\xe9\xff"),
        "latin1-target": b"X-Amz-Target: AmazonSQS.\xe9\xff",
        "latin1-content-type": b"Content-Type: application/\xff",
        "control-authorization": b"Authorization: " + good.replace(b"=hostile", b"=a\x01b"),
        "short-body": b"Authorization: " + good,
    }
    for name, extra in cases.items():
        length = len(body) + (100 if name == "short-body" else 0)
        request = head + extra + b"\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % length
        answer = _raw_exchange(srv, request + body)
        assert re.match(rb"HTTP/1.1 [234]\d\d ", answer), (name, answer[:300])
    still_healthy(world, srv)
