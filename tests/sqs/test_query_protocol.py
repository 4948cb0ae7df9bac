"""SQS's query protocol (issue 14, item 1 and 5): form-encoded ``Action=`` requests, as
old SDKs and aws-cli v1 send them, answered in SQS's XML.

Requests are made and answers read by botocore's own query serializer and parser over
SQS's query model (``tests/sqs/query_model.py``), and every answer is first checked
element by element against that model's XML shapes. Every operation of the router
(``tidings.sqs.operations.OPERATIONS``) has a scenario here. The transport does not
depend on the store: one server, over SQLite.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.server import TidingsServer, client_headers
from tests.sqs.conftest import sqs_client
from tests.sqs.query_model import (
    NAMESPACE,
    QueryClient,
    QueryError,
    check_error_xml,
    query_model,
    queue_path,
    raises_query_error,
)
from tidings.sqs import protocol
from tidings.sqs.operations import NOT_SUPPORTED, OPERATIONS

pytestmark = pytest.mark.xdist_group("sqs-query-protocol")

NON_EXISTENT = "AWS.SimpleQueueService.NonExistentQueue"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TidingsServer]:
    server = TidingsServer(tmp_path_factory.mktemp("sqs-query"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def project() -> str:
    return f"sqsq-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def client(srv: TidingsServer, project: str) -> QueryClient:
    return QueryClient(srv.url, project)


def _create(client: QueryClient, name: str, **params: Any) -> str:
    url: str = client.call("CreateQueue", {"QueueName": name, **params})["QueueUrl"]
    return url


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


# The query API's names ---------------------------------------------------------------


def test_query_names_are_the_query_models() -> None:
    """The names protocol.py gives every member, list item and map entry of the current
    model are the ones SQS's query model has (for every operation both know)."""
    old = query_model()

    def compare(old_shape: Any, new: protocol.Shape, where: str) -> None:
        assert old_shape.type_name == new.kind, where
        if new.kind == "structure":
            for name, member in new.members.items():
                if name not in old_shape.members:
                    continue  # newer than the query model (e.g. MessageSystemAttributeNames)
                old_member = old_shape.members[name]
                if old_member.type_name == "list":
                    expected = old_member.member.serialization.get("name")
                else:
                    expected = old_member.serialization.get("name", name)
                assert member.query_name == expected, f"{where}.{name}"
                if old_member.type_name == "map":
                    entry = (
                        old_member.key.serialization["name"],
                        old_member.value.serialization["name"],
                    )
                    assert member.entry == entry, f"{where}.{name}"
                compare(old_member, member.shape, f"{where}.{name}")
        elif new.kind == "list":
            assert new.item is not None
            assert old_shape.serialization.get("flattened") or old_shape.member.type_name in (
                "string",
                "blob",
            ), where
            compare(old_shape.member, new.item, f"{where}[]")
        elif new.kind == "map":
            assert new.item is not None
            compare(old_shape.value, new.item, f"{where}{{}}")

    checked = 0
    for operation in old.operation_names:
        shapes = protocol.operation_shapes(operation)
        old_operation = old.operation_model(operation)
        for old_shape, new in (
            (old_operation.input_shape, shapes.input),
            (old_operation.output_shape, shapes.output),
        ):
            if old_shape is not None and new is not None:
                compare(old_shape, new, operation)
                checked += 1
    assert checked > 2 * len(OPERATIONS) - 10


# Every operation -----------------------------------------------------------------------


def _create_queue(client: QueryClient, srv: TidingsServer) -> None:
    url = _create(
        client,
        "made",
        Attributes={"VisibilityTimeout": "45", "DelaySeconds": "2"},
        tags={"team": "a<&>b"},
    )
    assert url == f"{srv.url}/{client.credentials.access_key}/made"
    attributes = client.call(
        "GetQueueAttributes",
        {"QueueUrl": url, "AttributeNames": ["VisibilityTimeout", "DelaySeconds"]},
    )["Attributes"]
    assert attributes == {"VisibilityTimeout": "45", "DelaySeconds": "2"}
    assert client.call("ListQueueTags", {"QueueUrl": url}) == {"Tags": {"team": "a<&>b"}}


def _get_queue_url(client: QueryClient, srv: TidingsServer) -> None:
    url = _create(client, "found")
    assert client.call("GetQueueUrl", {"QueueName": "found"}) == {"QueueUrl": url}


def _list_queues(client: QueryClient, srv: TidingsServer) -> None:
    urls = sorted(_create(client, f"listed-{i}") for i in range(3))
    _create(client, "other")
    assert sorted(client.call("ListQueues", {"QueueNamePrefix": "listed-"})["QueueUrls"]) == urls
    first = client.call("ListQueues", {"QueueNamePrefix": "listed-", "MaxResults": 2})
    assert len(first["QueueUrls"]) == 2
    rest = client.call(
        "ListQueues",
        {"QueueNamePrefix": "listed-", "MaxResults": 2, "NextToken": first["NextToken"]},
    )
    assert sorted(first["QueueUrls"] + rest["QueueUrls"]) == urls
    assert client.call("ListQueues", {"QueueNamePrefix": "nothing-"}) == {}


def _delete_queue(client: QueryClient, srv: TidingsServer) -> None:
    url = _create(client, "doomed")
    assert client.call("DeleteQueue", {"QueueUrl": url}) == {}
    with raises_query_error(NON_EXISTENT):
        client.call("GetQueueUrl", {"QueueName": "doomed"})


def _get_queue_attributes(client: QueryClient, srv: TidingsServer) -> None:
    url = _create(client, "attributed")
    attributes = client.call("GetQueueAttributes", {"QueueUrl": url, "AttributeNames": ["All"]})
    shown = attributes["Attributes"]
    assert shown["QueueArn"].endswith(f":{client.credentials.access_key}:attributed")
    assert shown["VisibilityTimeout"] == "30"
    assert shown["ApproximateNumberOfMessages"] == "0"


def _set_queue_attributes(client: QueryClient, srv: TidingsServer) -> None:
    url = _create(client, "tuned")
    changed = {"DelaySeconds": "7", "ReceiveMessageWaitTimeSeconds": "3"}
    assert client.call("SetQueueAttributes", {"QueueUrl": url, "Attributes": changed}) == {}
    shown = client.call(
        "GetQueueAttributes", {"QueueUrl": url, "AttributeNames": list(changed)}
    )
    assert shown == {"Attributes": changed}


def _purge_queue(client: QueryClient, srv: TidingsServer) -> None:
    url = _create(client, "purged")
    client.call("SendMessage", {"QueueUrl": url, "MessageBody": "gone soon"})
    assert client.call("PurgeQueue", {"QueueUrl": url}) == {}
    assert client.call("ReceiveMessage", {"QueueUrl": url}) == {}


def _tag_queue(client: QueryClient, srv: TidingsServer) -> None:
    url = _create(client, "tagged")
    tags = {"a": "1", "b": "two words", "c": ""}
    assert client.call("TagQueue", {"QueueUrl": url, "Tags": tags}) == {}
    assert client.call("ListQueueTags", {"QueueUrl": url}) == {"Tags": tags}


def _untag_queue(client: QueryClient, srv: TidingsServer) -> None:
    url = _create(client, "untagged", tags={"a": "1", "b": "2", "c": "3"})
    assert client.call("UntagQueue", {"QueueUrl": url, "TagKeys": ["a", "c"]}) == {}
    assert client.call("ListQueueTags", {"QueueUrl": url}) == {"Tags": {"b": "2"}}


def _list_queue_tags(client: QueryClient, srv: TidingsServer) -> None:
    url = _create(client, "plain")
    assert client.call("ListQueueTags", {"QueueUrl": url}) == {}
    client.call("TagQueue", {"QueueUrl": url, "Tags": {"k": "v"}})
    assert client.call("ListQueueTags", {"QueueUrl": url}) == {"Tags": {"k": "v"}}


def _list_dead_letter_source_queues(client: QueryClient, srv: TidingsServer) -> None:
    dead = _create(client, "dead")
    arn = client.call("GetQueueAttributes", {"QueueUrl": dead, "AttributeNames": ["QueueArn"]})[
        "Attributes"
    ]["QueueArn"]
    policy = f'{{"deadLetterTargetArn": "{arn}", "maxReceiveCount": "3"}}'
    sources = sorted(
        _create(client, f"source-{i}", Attributes={"RedrivePolicy": policy}) for i in range(2)
    )
    found = client.call("ListDeadLetterSourceQueues", {"QueueUrl": dead})
    assert sorted(found["queueUrls"]) == sources
    assert client.call("ListDeadLetterSourceQueues", {"QueueUrl": sources[0]}) == {}


ATTRIBUTES = {
    "text": {"DataType": "String", "StringValue": "<b>&amp; ü"},
    "number": {"DataType": "Number.int", "StringValue": "42"},
    "bytes": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xfe\xff"},
}


def _send_message(client: QueryClient, srv: TidingsServer) -> None:
    url = _create(client, "sent")
    body = "<xml> & \"quotes\" 'single' \r\n tab\t ünï €"
    sent = client.call(
        "SendMessage", {"QueueUrl": url, "MessageBody": body, "MessageAttributes": ATTRIBUTES}
    )
    assert sent["MD5OfMessageBody"] == _md5(body)
    assert len(sent["MD5OfMessageAttributes"]) == 32
    received = client.call(
        "ReceiveMessage", {"QueueUrl": url, "MessageAttributeNames": ["All"]}
    )["Messages"]
    assert [m["Body"] for m in received] == [body]  # \r survives the XML
    assert received[0]["MessageId"] == sent["MessageId"]
    assert received[0]["MessageAttributes"] == ATTRIBUTES
    assert received[0]["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]


def _send_message_batch(client: QueryClient, srv: TidingsServer) -> None:
    url = _create(client, "batched")
    entries = [
        {"Id": "one", "MessageBody": "first"},
        {"Id": "two", "MessageBody": "second", "DelaySeconds": 0, "MessageAttributes": {
            "k": {"DataType": "String", "StringValue": "v"}}},
        {"Id": "bad", "MessageBody": "x", "DelaySeconds": 901},
    ]
    result = client.call("SendMessageBatch", {"QueueUrl": url, "Entries": entries})
    successful = {entry["Id"]: entry for entry in result["Successful"]}
    assert set(successful) == {"one", "two"}
    assert successful["one"]["MD5OfMessageBody"] == _md5("first")
    assert "MD5OfMessageAttributes" in successful["two"]
    [failed] = result["Failed"]
    assert failed["Id"] == "bad"
    assert failed["SenderFault"] is True
    assert failed["Code"]


def _receive_message(client: QueryClient, srv: TidingsServer) -> None:
    url = _create(client, "received")
    client.call("SendMessage", {"QueueUrl": url, "MessageBody": "hello", "MessageAttributes": {
        "k": {"DataType": "String", "StringValue": "v"}}})
    received = client.call(
        "ReceiveMessage",
        {
            "QueueUrl": url,
            "AttributeNames": ["All"],
            "MessageAttributeNames": ["All"],
            "MaxNumberOfMessages": 10,
            "VisibilityTimeout": 60,
            "WaitTimeSeconds": 1,
        },
    )
    [message] = received["Messages"]
    assert message["Body"] == "hello"
    assert message["MD5OfBody"] == _md5("hello")
    assert message["MessageAttributes"] == {"k": {"DataType": "String", "StringValue": "v"}}
    attributes = message["Attributes"]
    assert attributes["ApproximateReceiveCount"] == "1"
    assert attributes["SenderId"]
    assert int(attributes["SentTimestamp"]) > 0
    assert int(attributes["ApproximateFirstReceiveTimestamp"]) > 0
    assert message["ReceiptHandle"]


def _one_received(client: QueryClient, name: str, count: int = 1) -> tuple[str, list[str]]:
    url = _create(client, name)
    for i in range(count):
        client.call("SendMessage", {"QueueUrl": url, "MessageBody": f"m{i}"})
    handles: list[str] = []
    while len(handles) < count:
        got = client.call("ReceiveMessage", {"QueueUrl": url, "MaxNumberOfMessages": 10})
        handles += [m["ReceiptHandle"] for m in got.get("Messages", [])]
    return url, handles


def _delete_message(client: QueryClient, srv: TidingsServer) -> None:
    url, [handle] = _one_received(client, "deleted")
    assert client.call("DeleteMessage", {"QueueUrl": url, "ReceiptHandle": handle}) == {}
    with raises_query_error("ReceiptHandleIsInvalid"):
        client.call("DeleteMessage", {"QueueUrl": url, "ReceiptHandle": "not-a-handle"})


def _delete_message_batch(client: QueryClient, srv: TidingsServer) -> None:
    url, handles = _one_received(client, "batch-deleted", 2)
    entries = [{"Id": f"e{i}", "ReceiptHandle": h} for i, h in enumerate(handles)]
    entries.append({"Id": "bad", "ReceiptHandle": "not-a-handle"})
    result = client.call("DeleteMessageBatch", {"QueueUrl": url, "Entries": entries})
    assert sorted(e["Id"] for e in result["Successful"]) == ["e0", "e1"]
    [failed] = result["Failed"]
    assert (failed["Id"], failed["Code"], failed["SenderFault"]) == (
        "bad",
        "ReceiptHandleIsInvalid",
        True,
    )


def _change_message_visibility(client: QueryClient, srv: TidingsServer) -> None:
    url, [handle] = _one_received(client, "hidden")
    params = {"QueueUrl": url, "ReceiptHandle": handle, "VisibilityTimeout": 0}
    assert client.call("ChangeMessageVisibility", params) == {}
    again = client.call("ReceiveMessage", {"QueueUrl": url, "AttributeNames": ["All"]})
    assert again["Messages"][0]["Attributes"]["ApproximateReceiveCount"] == "2"


def _change_message_visibility_batch(client: QueryClient, srv: TidingsServer) -> None:
    url, [handle] = _one_received(client, "batch-hidden")
    entries = [
        {"Id": "good", "ReceiptHandle": handle, "VisibilityTimeout": 120},
        {"Id": "bad", "ReceiptHandle": "not-a-handle", "VisibilityTimeout": 120},
    ]
    result = client.call("ChangeMessageVisibilityBatch", {"QueueUrl": url, "Entries": entries})
    assert result["Successful"] == [{"Id": "good"}]
    assert [(f["Id"], f["Code"]) for f in result["Failed"]] == [("bad", "ReceiptHandleIsInvalid")]


SCENARIOS: dict[str, Callable[[QueryClient, TidingsServer], None]] = {
    "CreateQueue": _create_queue,
    "GetQueueUrl": _get_queue_url,
    "ListQueues": _list_queues,
    "DeleteQueue": _delete_queue,
    "GetQueueAttributes": _get_queue_attributes,
    "SetQueueAttributes": _set_queue_attributes,
    "PurgeQueue": _purge_queue,
    "TagQueue": _tag_queue,
    "UntagQueue": _untag_queue,
    "ListQueueTags": _list_queue_tags,
    "ListDeadLetterSourceQueues": _list_dead_letter_source_queues,
    "SendMessage": _send_message,
    "SendMessageBatch": _send_message_batch,
    "ReceiveMessage": _receive_message,
    "DeleteMessage": _delete_message,
    "DeleteMessageBatch": _delete_message_batch,
    "ChangeMessageVisibility": _change_message_visibility,
    "ChangeMessageVisibilityBatch": _change_message_visibility_batch,
}


def test_every_operation_has_a_scenario() -> None:
    assert set(SCENARIOS) == set(OPERATIONS)


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_operation(operation: str, client: QueryClient, srv: TidingsServer) -> None:
    SCENARIOS[operation](client, srv)


def test_json_and_query_answers_read_the_same(srv: TidingsServer, client: QueryClient) -> None:
    """boto3 over the JSON protocol and botocore's query parser over the XML answer
    read the same result."""
    url = _create(client, "twice", tags={"k": "v"}, Attributes={"DelaySeconds": "1"})
    boto = sqs_client(srv.url, client.credentials.access_key)
    for operation, method, params in [
        ("GetQueueAttributes", boto.get_queue_attributes, {"QueueUrl": url,
                                                          "AttributeNames": ["All"]}),
        ("ListQueueTags", boto.list_queue_tags, {"QueueUrl": url}),
        ("GetQueueUrl", boto.get_queue_url, {"QueueName": "twice"}),
        ("ListQueues", boto.list_queues, {}),
    ]:
        answer = method(**params)
        answer.pop("ResponseMetadata")
        assert client.call(operation, params) == answer, operation


# Where requests come in -----------------------------------------------------------------


def test_request_at_a_queue_url_path(client: QueryClient) -> None:
    """Old SDKs send a queue's requests to its URL: the path stands for QueueUrl."""
    url = _create(client, "pathed")
    path = queue_path(url)
    fields = client.form("SendMessage", {"QueueUrl": url, "MessageBody": "via path"})
    del fields["QueueUrl"]
    sent = client.parse("SendMessage", client.send(fields, path=path))
    assert sent["MD5OfMessageBody"] == _md5("via path")
    fields = client.form("GetQueueAttributes", {"QueueUrl": url, "AttributeNames": ["All"]})
    del fields["QueueUrl"]
    shown = client.parse("GetQueueAttributes", client.send(fields, path=path))
    assert shown["Attributes"]["ApproximateNumberOfMessages"] == "1"
    # A QueueUrl parameter wins over the path.
    other = _create(client, "other")
    fields = client.form("GetQueueAttributes", {"QueueUrl": other, "AttributeNames": ["All"]})
    shown = client.parse("GetQueueAttributes", client.send(fields, path=path))
    assert shown["Attributes"]["ApproximateNumberOfMessages"] == "0"


def test_a_path_that_is_no_queue_url(client: QueryClient) -> None:
    fields = client.form("PurgeQueue", {"QueueUrl": "x"})
    del fields["QueueUrl"]
    with raises_query_error(NON_EXISTENT):
        client.parse("PurgeQueue", client.send(fields, path="/some-other-project/q"))
    with raises_query_error("InvalidParameterValue"):
        client.parse("PurgeQueue", client.send(fields, path="/a/b/c"))
    with raises_query_error("MissingParameter") as box:
        client.parse("PurgeQueue", client.send(fields, path="/"))
    assert "QueueUrl" in box[0].message


def test_get_with_action(client: QueryClient) -> None:
    """Presigned URLs and old SDKs: GET with the parameters in the query string."""
    url = _create(client, "got")
    fields = client.form("GetQueueUrl", {"QueueName": "got"})
    assert client.parse("GetQueueUrl", client.send(fields, method="GET")) == {"QueueUrl": url}
    presigned = client.send(fields, method="GET", presigned=True)
    assert "X-Amz-Signature=" in str(presigned.request.url)
    assert client.parse("GetQueueUrl", presigned) == {"QueueUrl": url}


def test_a_post_with_action_in_the_query_string(client: QueryClient) -> None:
    url = _create(client, "mixed")
    response = client.send_raw("/?Action=GetQueueUrl", b"QueueName=mixed")
    assert client.parse("GetQueueUrl", response) == {"QueueUrl": url}


def test_old_clients_unnumbered_list(client: QueryClient) -> None:
    """boto 2 sent ``AttributeName=All`` unnumbered."""
    url = _create(client, "unnumbered")
    fields = {"Action": "GetQueueAttributes", "QueueUrl": url, "AttributeName": "VisibilityTimeout"}
    shown = client.parse("GetQueueAttributes", client.send(fields))
    assert shown == {"Attributes": {"VisibilityTimeout": "30"}}


def test_zaqar_keeps_its_requests(srv: TidingsServer) -> None:
    """Zaqar's form-encoded POSTs under /v2 are still Zaqar's (its own 400), as is GET /
    without ``Action``; a GET / with it is SQS's."""
    headers = {**client_headers("zq"), "Content-Type": "application/x-www-form-urlencoded"}
    posted = httpx.post(f"{srv.url}/v2/queues/q/messages", content=b"Action=ListQueues",
                        headers=headers)
    assert posted.status_code == 400
    assert posted.json()["title"] == "Invalid Content-Type"
    home = httpx.get(srv.url + "/")
    assert home.status_code == 300
    assert "versions" in home.json()
    sqs = httpx.get(srv.url + "/", params={"Action": "ListQueues"})
    assert sqs.status_code == 403
    check_error_xml(sqs.content, sqs.headers["x-amzn-requestid"])
    assert b"<Code>MissingAuthenticationToken</Code>" in sqs.content


# Errors ----------------------------------------------------------------------------------


def test_non_existent_queue(client: QueryClient) -> None:
    with raises_query_error(NON_EXISTENT) as box:
        client.call("GetQueueUrl", {"QueueName": "nowhere"})
    assert box[0].type == "Sender"
    other_project = f"{client.url}/someone-else/q"
    with raises_query_error(NON_EXISTENT):
        client.call("GetQueueAttributes", {"QueueUrl": other_project})


def test_missing_parameter(client: QueryClient) -> None:
    with raises_query_error("MissingParameter") as box:
        client.parse("CreateQueue", client.send({"Action": "CreateQueue", "Version": "2012-11-05"}))
    assert "QueueName" in box[0].message


@pytest.mark.parametrize(
    ("action", "code"),
    [
        ("NoSuchThing", "InvalidAction"),
        ("createqueue", "InvalidAction"),
        ("", "MissingAction"),
        *[(name, "AWS.SimpleQueueService.UnsupportedOperation") for name in sorted(NOT_SUPPORTED)],
    ],
)
def test_actions_it_does_not_answer(client: QueryClient, action: str, code: str) -> None:
    with raises_query_error(code):
        client.parse("ListQueues", client.send({"Action": action}))


def test_no_action_at_all(client: QueryClient) -> None:
    with raises_query_error("MissingAction"):
        client.parse("ListQueues", client.send({"QueueNamePrefix": "x"}))


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"QueueNamePrefix": "a", "Unknown": "b"}, "InvalidQueryParameter"),
        ({"QueueNamePrefix.1": "a"}, "InvalidQueryParameter"),
        ({"MaxResults": "ten"}, "InvalidParameterValue"),
        ({"MaxResults": "1" * 30}, "InvalidParameterValue"),
        ({"MaxResults": " 5"}, "InvalidParameterValue"),
        ({"QueueNamePrefix..x": "a"}, "InvalidQueryParameter"),
        ({"x" * 300: "a"}, "InvalidQueryParameter"),
    ],
)
def test_malformed_parameters(client: QueryClient, fields: dict[str, str], code: str) -> None:
    with raises_query_error(code):
        client.parse("ListQueues", client.send({"Action": "ListQueues", **fields}))


@pytest.mark.parametrize(
    "fields",
    [
        {"Attribute.1.Name": "DelaySeconds"},  # no value
        {"Attribute.1.Value": "1"},  # no name
        {"Attribute.x.Name": "DelaySeconds", "Attribute.x.Value": "1"},
        {"Attribute.01.Name": "DelaySeconds", "Attribute.01.Value": "1"},
        {"Attribute.1.Name": "A", "Attribute.1.Value": "1", "Attribute.1.Other": "2"},
        {"Attribute": "DelaySeconds"},
        {"Attribute.1.Name": "A", "Attribute.1.Value": "1", "Attribute.2.Name": "A",
         "Attribute.2.Value": "2"},
        {"Tag.1.Name": "k", "Tag.1.Value": "v"},  # tags have Key, not Name
    ],
)
def test_malformed_maps(client: QueryClient, fields: dict[str, str]) -> None:
    with pytest.raises(QueryError) as caught:
        client.parse(
            "CreateQueue", client.send({"Action": "CreateQueue", "QueueName": "q", **fields})
        )
    assert caught.value.status == 400
    assert caught.value.code in ("MissingParameter", "InvalidQueryParameter",
                                 "InvalidParameterValue")


def test_message_attribute_forms(client: QueryClient) -> None:
    """The flat names of a message attribute, as written by hand (not by botocore)."""
    url = _create(client, "flat")
    fields = {
        "Action": "SendMessage",
        "QueueUrl": url,
        "MessageBody": "b",
        "MessageAttribute.1.Name": "s",
        "MessageAttribute.1.Value.DataType": "String",
        "MessageAttribute.1.Value.StringValue": "v",
        "MessageAttribute.2.Name": "b",
        "MessageAttribute.2.Value.DataType": "Binary",
        "MessageAttribute.2.Value.BinaryValue": "AAEC",
    }
    client.parse("SendMessage", client.send(fields))
    received = client.call("ReceiveMessage", {"QueueUrl": url, "MessageAttributeNames": ["All"]})
    assert received["Messages"][0]["MessageAttributes"] == {
        "s": {"DataType": "String", "StringValue": "v"},
        "b": {"DataType": "Binary", "BinaryValue": b"\x00\x01\x02"},
    }
    fields["MessageAttribute.2.Value.BinaryValue"] = "not base64!"
    with raises_query_error("InvalidParameterValue"):
        client.parse("SendMessage", client.send(fields))


def test_duplicate_and_too_many_parameters(client: QueryClient) -> None:
    with raises_query_error("InvalidQueryParameter"):
        client.parse(
            "ListQueues",
            client.send([("Action", "ListQueues"), ("QueueNamePrefix", "a"),
                         ("QueueNamePrefix", "b")]),
        )
    with raises_query_error("InvalidQueryParameter"):
        client.parse(
            "ListQueues",
            client.send([("Action", "ListQueues"), ("Action", "ListQueues")]),
        )
    many = [("Action", "ListQueues")] + [(f"TagKey.{i}", "k") for i in range(1, 6000)]
    with raises_query_error("InvalidQueryParameter"):
        client.parse("ListQueues", client.send(many))


def test_invalid_utf8(client: QueryClient) -> None:
    response = client.send_raw("/", b"Action=GetQueueUrl&QueueName=%FF%FE")
    with raises_query_error("MalformedQueryString"):
        client.parse("GetQueueUrl", response)


def test_unauthenticated(client: QueryClient) -> None:
    with raises_query_error("MissingAuthenticationToken", 403):
        client.parse("ListQueues", client.send({"Action": "ListQueues"}, signed=False))


def test_request_ids(client: QueryClient) -> None:
    ids = set()
    for fields in ({"Action": "ListQueues"}, {"Action": "Nope"}):
        response = client.send(fields)
        request_id = response.headers["x-amzn-requestid"]
        assert str(uuid.UUID(request_id)) == request_id
        assert f"<RequestId>{request_id}</RequestId>".encode() in response.content
        ids.add(request_id)
    assert len(ids) == 2


def test_text_xml_cannot_hold(srv: TidingsServer, client: QueryClient) -> None:
    """A body posted through Zaqar may hold characters XML 1.0 cannot carry: they are
    shown as U+FFFD, never as a broken document."""
    url = _create(client, "odd")
    zaqar = httpx.post(
        f"{srv.url}/v2/queues/odd/messages",
        json={"messages": [{"body": "a\u0000b\u001fc\ufffe"}]},
        headers=client_headers(client.credentials.access_key),
    )
    assert zaqar.status_code == 201, zaqar.text
    [message] = client.call("ReceiveMessage", {"QueueUrl": url})["Messages"]
    assert message["Body"] == "a\ufffdb\ufffdc\ufffd"


def test_xml_namespace_and_shape_of_an_answer(client: QueryClient) -> None:
    """A raw look at one answer, as SQS writes it."""
    url = _create(client, "raw")
    response = client.send(client.form("GetQueueUrl", {"QueueName": "raw"}))
    text = response.text
    assert text.startswith('<?xml version="1.0"?><GetQueueUrlResponse xmlns="'
                           + NAMESPACE.strip("{}") + '"><GetQueueUrlResult><QueueUrl>')
    assert f"<QueueUrl>{url}</QueueUrl></GetQueueUrlResult><ResponseMetadata>" in text


def test_the_largest_message_in_non_ascii_text(client: QueryClient) -> None:
    """Percent-encoded, a message of the largest size in three-byte characters is
    three times as long: still a request the server reads."""
    url = _create(client, "large")
    body = "€" * (262144 // 3)
    sent = client.call("SendMessage", {"QueueUrl": url, "MessageBody": body})
    assert sent["MD5OfMessageBody"] == _md5(body)
    [message] = client.call("ReceiveMessage", {"QueueUrl": url})["Messages"]
    assert message["Body"] == body
