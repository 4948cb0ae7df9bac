"""SQS's JSON protocol (issue 14, item 1): ``POST /`` with ``X-Amz-Target``, as current
SDKs send it; errors in SQS's shape, so boto3 raises its modelled exceptions; bodies
checked against the operation's input shape (a bad one is a 400, never a 500).

The transport does not depend on the store: one server, over SQLite.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.server import TidingsServer
from tests.sqs.conftest import sqs_client

pytestmark = pytest.mark.xdist_group("sqs-json-protocol")

JSON_TYPE = "application/x-amz-json-1.0"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TidingsServer]:
    server = TidingsServer(tmp_path_factory.mktemp("sqs-json"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def project() -> str:
    return f"sqsj-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def sqs(srv: TidingsServer, project: str) -> Any:
    return sqs_client(srv.url, project)


class Raw:
    """Hand-made JSON-protocol requests, SigV4-signed as an SDK signs them."""

    def __init__(self, url: str, project: str) -> None:
        self.url = url
        self.credentials = Credentials(project, "unused-under-noauth")

    def post(
        self, target: str | None, body: bytes, content_type: str = JSON_TYPE
    ) -> httpx.Response:
        headers = {"Content-Type": content_type}
        if target is not None:
            headers["X-Amz-Target"] = target
        request = AWSRequest(method="POST", url=self.url + "/", data=body, headers=headers)
        SigV4Auth(self.credentials, "sqs", "us-east-1").add_auth(request)
        return httpx.post(
            self.url + "/", content=body, headers=dict(request.headers.items()), timeout=30.0
        )


@pytest.fixture
def raw(srv: TidingsServer, project: str) -> Raw:
    return Raw(srv.url, project)


def _error(response: httpx.Response, code: str, shape: str | None = None) -> str:
    """Checks an error answer's shape; returns its message."""
    assert response.headers["content-type"] == JSON_TYPE
    assert response.headers["x-amzn-requestid"]
    document = response.json()
    assert set(document) == {"__type", "message"}, document
    assert document["__type"] == f"com.amazonaws.sqs#{shape or code}", document
    assert response.headers["x-amzn-query-error"] in (f"{code};Sender", f"{code};Receiver")
    message: str = document["message"]
    return message


# Errors, as boto3 sees them ---------------------------------------------------------------


def test_boto3_raises_queue_does_not_exist(sqs: Any, srv: TidingsServer) -> None:
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as caught:
        sqs.get_queue_url(QueueName="nowhere")
    error = caught.value.response["Error"]
    assert error["Code"] == "AWS.SimpleQueueService.NonExistentQueue"
    assert error["Type"] == "Sender"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.get_queue_attributes(QueueUrl=f"{srv.url}/another-project/q")


def test_boto3_raises_modelled_exceptions(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    with pytest.raises(sqs.exceptions.ReceiptHandleIsInvalid):
        sqs.delete_message(QueueUrl=url, ReceiptHandle="nonsense")
    with pytest.raises(sqs.exceptions.EmptyBatchRequest):
        sqs.send_message_batch(QueueUrl=url, Entries=[])
    with pytest.raises(sqs.exceptions.UnsupportedOperation):
        sqs.add_permission(QueueUrl=url, Label="l", AWSAccountIds=["1"], Actions=["*"])


def test_error_shape_on_the_wire(raw: Raw) -> None:
    response = raw.post("AmazonSQS.GetQueueUrl", b'{"QueueName": "missing"}')
    assert response.status_code == 400
    _error(response, "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")


@pytest.mark.parametrize(
    "target", ["AmazonSQS.NoSuchThing", "AmazonSQS.", "AmazonSNS.Publish", "CreateQueue", ""]
)
def test_unknown_target(raw: Raw, target: str) -> None:
    response = raw.post(target, b"{}")
    assert response.status_code == 400
    _error(response, "InvalidAction")


def test_unsupported_operation(raw: Raw) -> None:
    response = raw.post("AmazonSQS.StartMessageMoveTask", b'{"SourceArn": "x"}')
    assert response.status_code == 400
    _error(response, "AWS.SimpleQueueService.UnsupportedOperation", "UnsupportedOperation")


def test_missing_parameter(raw: Raw) -> None:
    response = raw.post("AmazonSQS.CreateQueue", b"{}")
    assert response.status_code == 400
    assert "QueueName" in _error(response, "MissingParameter")


# Bodies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"not json",
        b'{"QueueName": "q"} trailing',
        b"\xff\xfe",
        b"[]",
        b'"text"',
        b"null",
        b"[" * 5000 + b"]" * 5000,
        b'{"QueueName": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    ],
)
def test_malformed_json(raw: Raw, body: bytes) -> None:
    response = raw.post("AmazonSQS.CreateQueue", body)
    assert response.status_code == 400, response.text
    _error(response, "SerializationException")


@pytest.mark.parametrize(
    ("target", "body"),
    [
        ("CreateQueue", {"QueueName": 5}),
        ("CreateQueue", {"QueueName": "q", "Attributes": ["DelaySeconds"]}),
        ("CreateQueue", {"QueueName": "q", "Attributes": {"DelaySeconds": 5}}),
        ("CreateQueue", {"QueueName": "q", "tags": "k=v"}),
        ("ListQueues", {"MaxResults": "10"}),
        ("ListQueues", {"MaxResults": 1.5}),
        ("ListQueues", {"MaxResults": True}),
        ("ListQueues", {"MaxResults": 2**40}),
        ("ListQueues", {"MaxResults": 10**30}),
        ("ReceiveMessage", {"QueueUrl": "u", "AttributeNames": "All"}),
        ("ReceiveMessage", {"QueueUrl": "u", "AttributeNames": [1]}),
        ("SendMessageBatch", {"QueueUrl": "u", "Entries": {"Id": "1"}}),
        ("SendMessageBatch", {"QueueUrl": "u", "Entries": [{"Id": 1, "MessageBody": "b"}]}),
        ("SendMessageBatch", {"QueueUrl": "u", "Entries": ["x"]}),
        ("SendMessage", {"QueueUrl": "u", "MessageBody": "b",
                         "MessageAttributes": {"a": "String"}}),
        ("SendMessage", {"QueueUrl": "u", "MessageBody": "b",
                         "MessageAttributes": {"a": {"DataType": "Binary",
                                                     "BinaryValue": "not base64!"}}}),
        ("SendMessage", {"QueueUrl": "u", "MessageBody": ["b"]}),
        ("ListQueues", {"QueueNamePrefix": {"a": 1}}),
    ],
)
def test_wrong_types(raw: Raw, target: str, body: dict[str, Any]) -> None:
    response = raw.post(f"AmazonSQS.{target}", msgspec.json.encode(body))
    assert response.status_code == 400, response.text
    _error(response, "SerializationException")


def test_unknown_members_and_nulls_are_ignored(sqs: Any, raw: Raw) -> None:
    response = raw.post(
        "AmazonSQS.CreateQueue",
        b'{"QueueName": "lenient", "Unknown": [1, 2], "Attributes": null, "tags": null}',
    )
    assert response.status_code == 200, response.text
    assert response.json()["QueueUrl"].endswith("/lenient")


def test_binary_attributes_round_trip(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="binary")["QueueUrl"]
    value = bytes(range(256))
    sqs.send_message(
        QueueUrl=url,
        MessageBody="b",
        MessageAttributes={"raw": {"DataType": "Binary", "BinaryValue": value}},
    )
    [message] = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"])["Messages"]
    assert message["MessageAttributes"]["raw"] == {"DataType": "Binary", "BinaryValue": value}


def test_too_many_values(raw: Raw) -> None:
    entries = [{"Id": str(i), "MessageBody": "b"} for i in range(3000)]
    response = raw.post(
        "AmazonSQS.SendMessageBatch", msgspec.json.encode({"QueueUrl": "u", "Entries": entries})
    )
    assert response.status_code == 400
    _error(response, "SerializationException")


def test_oversize_body(raw: Raw) -> None:
    body = b'{"QueueName": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    try:
        response = raw.post("AmazonSQS.CreateQueue", body)
    except httpx.HTTPError:
        return  # the connection was cut before the whole body was sent: refused too
    assert 400 <= response.status_code < 500, response.text
    if response.headers.get("content-type") == JSON_TYPE:
        _error(response, "InvalidParameterValue")


def test_content_type_is_not_required(raw: Raw) -> None:
    """The target header decides; a client sending another content type is served."""
    response = raw.post("AmazonSQS.ListQueues", b"{}", content_type="application/json")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == JSON_TYPE


def test_empty_body_is_no_parameters(raw: Raw) -> None:
    response = raw.post("AmazonSQS.ListQueues", b"")
    assert response.status_code == 200, response.text
    assert response.json() == {}


def test_request_ids(raw: Raw) -> None:
    seen = set()
    for target in ("AmazonSQS.ListQueues", "AmazonSQS.Nope"):
        request_id = raw.post(target, b"{}").headers["x-amzn-requestid"]
        assert str(uuid.UUID(request_id)) == request_id
        seen.add(request_id)
    assert len(seen) == 2


def test_unauthenticated(srv: TidingsServer) -> None:
    response = httpx.post(
        srv.url + "/",
        content=b"{}",
        headers={"X-Amz-Target": "AmazonSQS.ListQueues", "Content-Type": JSON_TYPE},
    )
    assert response.status_code == 403
    _error(response, "MissingAuthenticationToken")


def test_result_blobs_are_base64(raw: Raw, sqs: Any) -> None:
    """On the wire, a binary attribute is base64 text, as SQS sends it."""
    url = sqs.create_queue(QueueName="wire")["QueueUrl"]
    sqs.send_message(
        QueueUrl=url,
        MessageBody="b",
        MessageAttributes={"raw": {"DataType": "Binary", "BinaryValue": b"\x00\xff"}},
    )
    response = raw.post(
        "AmazonSQS.ReceiveMessage",
        msgspec.json.encode({"QueueUrl": url, "MessageAttributeNames": ["All"]}),
    )
    [message] = response.json()["Messages"]
    assert message["MessageAttributes"]["raw"]["BinaryValue"] == base64.b64encode(
        b"\x00\xff"
    ).decode()


def test_client_error_codes_are_strings(sqs: Any) -> None:
    """An error boto3 has no class for is a ClientError with SQS's code."""
    with pytest.raises(ClientError) as caught:
        sqs.create_queue(QueueName="bad name!")
    assert caught.value.response["Error"]["Code"] == "InvalidParameterValue"
