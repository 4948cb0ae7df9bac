"""SQS's message operations through boto3, end to end on every store: send (with
attributes and checksums), receive (limits, attributes, long polling, visibility), delete,
visibility changes, their batches, and dead-lettering.

Checksums are recomputed here, independently of the server's code: botocore does not
check them (the Java, JS, Ruby, PHP and Go SDKs do).
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.server import TidingsServer, wait_until
from tests.sqs.conftest import sqs_client

# Helpers ---------------------------------------------------------------------------------


def md5_text(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def md5_attributes(attributes: Mapping[str, Mapping[str, Any]]) -> str:
    """AWS's algorithm as documented, over attributes as boto3 answers them (binary
    values as bytes) or as they were sent."""

    def field(data: bytes) -> bytes:
        return struct.pack("!I", len(data)) + data

    digest = hashlib.md5()
    for name in sorted(attributes):
        value = attributes[name]
        digest.update(field(name.encode("utf-8")))
        digest.update(field(value["DataType"].encode("utf-8")))
        if "BinaryValue" in value:
            raw = value["BinaryValue"]
            digest.update(b"\x02" + field(raw if isinstance(raw, bytes) else raw.encode()))
        else:
            digest.update(b"\x01" + field(value["StringValue"].encode("utf-8")))
    return digest.hexdigest()


def error_code(call: Callable[[], Any]) -> str:
    with pytest.raises(ClientError) as info:
        call()
    code: str = info.value.response["Error"]["Code"]
    return code


def error_of(call: Callable[[], Any]) -> dict[str, str]:
    with pytest.raises(ClientError) as info:
        call()
    error: dict[str, str] = info.value.response["Error"]
    return error


def make_queue(
    zaqar: httpx.Client, server: TidingsServer, project: str, name: str | None = None,
    **metadata: Any,
) -> str:
    """A queue, made through Zaqar's API (the same queue SQS sees); its SQS URL."""
    name = name or f"q-{uuid.uuid4().hex[:10]}"
    made = zaqar.put(f"/queues/{name}", json=metadata)
    assert made.status_code in (201, 204), made.text
    return f"{server.url}/{project}/{name}"


def receive(sqs: Any, url: str, **options: Any) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = sqs.receive_message(QueueUrl=url, **options).get(
        "Messages", []
    )
    return messages


@pytest.fixture
def raw(server: TidingsServer, project: str) -> Any:
    """boto3 without its own parameter checks: the server's are what is tested."""
    return boto3.client(
        "sqs",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id=project,
        aws_secret_access_key="unused-under-noauth",
        config=Config(retries={"max_attempts": 1, "mode": "standard"},
                      parameter_validation=False, read_timeout=40),
    )


@pytest.fixture
def queue(zaqar: httpx.Client, server: TidingsServer, project: str) -> str:
    return make_queue(zaqar, server, project)


ATTRIBUTES: dict[str, dict[str, Any]] = {
    "colour": {"DataType": "String", "StringValue": "blau ü 😀"},
    "count": {"DataType": "Number", "StringValue": "-12.50"},
    "blob": {"DataType": "Binary", "BinaryValue": b"\x00\xff\x10binary"},
    "trace.id": {"DataType": "String.uuid", "StringValue": "abc-123"},
    "trace.span": {"DataType": "Number.int", "StringValue": "7"},
}


# Send and receive ------------------------------------------------------------------------


def test_send_receive_delete_round_trip(sqs: Any, queue: str) -> None:
    body = "hello, SQS: ünïcödé 😀 \t\n\r and <xml/> & \"quotes\""
    sent = sqs.send_message(QueueUrl=queue, MessageBody=body)
    assert sent["MD5OfMessageBody"] == md5_text(body)
    assert "MD5OfMessageAttributes" not in sent
    uuid.UUID(sent["MessageId"])

    (message,) = receive(sqs, queue, VisibilityTimeout=600)
    assert message["MessageId"] == sent["MessageId"]
    assert message["Body"] == body
    assert message["MD5OfBody"] == md5_text(body)
    assert "MessageAttributes" not in message and "Attributes" not in message
    assert receive(sqs, queue) == []  # held for 600 s

    sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])  # again: ok
    assert error_code(lambda: sqs.change_message_visibility(
        QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
    )) == "InvalidParameterValue"  # the message is gone


def test_message_attributes_checksums_and_selection(sqs: Any, queue: str) -> None:
    sent = sqs.send_message(QueueUrl=queue, MessageBody="with attributes",
                            MessageAttributes=ATTRIBUTES)
    assert sent["MD5OfMessageBody"] == md5_text("with attributes")
    assert sent["MD5OfMessageAttributes"] == md5_attributes(ATTRIBUTES)

    (everything,) = receive(sqs, queue, MessageAttributeNames=["All"], VisibilityTimeout=0)
    assert everything["MessageAttributes"] == ATTRIBUTES
    assert everything["MD5OfMessageAttributes"] == md5_attributes(ATTRIBUTES)
    assert everything["MD5OfBody"] == md5_text("with attributes")

    # A receive answers the attributes asked for, and the checksum of those.
    for names, expected in [
        ([".*"], set(ATTRIBUTES)),
        (["trace.*"], {"trace.id", "trace.span"}),
        (["colour", "blob", "missing"], {"colour", "blob"}),
        (["count", "trace.*"], {"count", "trace.id", "trace.span"}),
    ]:
        (message,) = receive(sqs, queue, MessageAttributeNames=names, VisibilityTimeout=0)
        assert set(message["MessageAttributes"]) == expected, names
        chosen = {name: ATTRIBUTES[name] for name in expected}
        assert message["MD5OfMessageAttributes"] == md5_attributes(chosen)

    (plain,) = receive(sqs, queue, VisibilityTimeout=0)
    assert "MessageAttributes" not in plain and "MD5OfMessageAttributes" not in plain
    (none_matching,) = receive(sqs, queue, MessageAttributeNames=["nope"], VisibilityTimeout=0)
    assert "MessageAttributes" not in none_matching


def test_message_system_attributes(sqs: Any, queue: str) -> None:
    trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"
    system = {"AWSTraceHeader": {"DataType": "String", "StringValue": trace}}
    before = time.time()
    sent = sqs.send_message(QueueUrl=queue, MessageBody="traced", MessageSystemAttributes=system)
    after = time.time()
    assert sent["MD5OfMessageSystemAttributes"] == md5_attributes(system)
    assert "MD5OfMessageAttributes" not in sent

    (first,) = receive(sqs, queue, AttributeNames=["All"], VisibilityTimeout=600)
    attributes = first["Attributes"]
    assert set(attributes) == {"SenderId", "SentTimestamp", "ApproximateReceiveCount",
                               "ApproximateFirstReceiveTimestamp", "AWSTraceHeader"}
    assert attributes["AWSTraceHeader"] == trace
    assert attributes["ApproximateReceiveCount"] == "1"
    sent_at = int(attributes["SentTimestamp"])
    # Stores keep times to the second at least: a causal bound, not a guess at speed.
    assert int(before * 1000) - 1000 <= sent_at <= int(after * 1000) + 1000
    first_receive = int(attributes["ApproximateFirstReceiveTimestamp"])
    assert sent_at - 1000 <= first_receive <= int(time.time() * 1000) + 1000
    assert attributes["SenderId"]

    sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=first["ReceiptHandle"],
                                  VisibilityTimeout=0)
    (second,) = receive(sqs, queue, MessageSystemAttributeNames=["ApproximateReceiveCount",
                                                                 "SentTimestamp"])
    assert second["Attributes"] == {"ApproximateReceiveCount": "2",
                                    "SentTimestamp": attributes["SentTimestamp"]}
    sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=second["ReceiptHandle"],
                                  VisibilityTimeout=0)
    (third,) = receive(sqs, queue, AttributeNames=["ApproximateFirstReceiveTimestamp",
                                                   "SenderId"])
    # After the first receive, the time it became receivable stands in: never later.
    assert int(third["Attributes"]["ApproximateFirstReceiveTimestamp"]) <= first_receive
    assert third["Attributes"]["SenderId"] == attributes["SenderId"]


def test_sender_id_is_the_access_key_s_own(
    sqs: Any, queue: str, server: TidingsServer, project: str
) -> None:
    again = sqs_client(server.url, project)
    sqs.send_message(QueueUrl=queue, MessageBody="one")
    again.send_message(QueueUrl=queue, MessageBody="two")
    messages = receive(sqs, queue, MaxNumberOfMessages=2, AttributeNames=["SenderId"])
    assert len(messages) == 2
    assert len({m["Attributes"]["SenderId"] for m in messages}) == 1


def test_bodies_of_every_kind_of_text(sqs: Any, queue: str) -> None:
    bodies = [
        "x",
        "tidings-aes256gcm-v1:looks sealed, is not",
        '{"json": "as text"}',
        "\"quoted\"",
        "  spaces  ",
        "\U0010ffff\ue000\ud7ff",
        "x" * 262144,
    ]
    for body in bodies:
        sent = sqs.send_message(QueueUrl=queue, MessageBody=body)
        assert sent["MD5OfMessageBody"] == md5_text(body)
    got = []
    while True:
        batch = receive(sqs, queue, MaxNumberOfMessages=10, VisibilityTimeout=600)
        if not batch:
            break
        got.extend(batch)
    assert sorted(m["Body"] for m in got) == sorted(bodies)
    assert all(m["MD5OfBody"] == md5_text(m["Body"]) for m in got)


@pytest.mark.parametrize("body", ["nul \x00", "bell \x07", "\ufffe", "\uffff", "esc \x1b"])
def test_bodies_outside_sqs_s_characters_are_refused(raw: Any, queue: str, body: str) -> None:
    error = error_of(lambda: raw.send_message(QueueUrl=queue, MessageBody=body))
    assert error["Code"] == "InvalidMessageContents"
    assert receive(raw, queue) == []


def test_missing_or_empty_body(raw: Any, queue: str) -> None:
    assert error_code(lambda: raw.send_message(QueueUrl=queue)) == "MissingParameter"
    assert error_code(lambda: raw.send_message(QueueUrl=queue, MessageBody="")) == (
        "MissingParameter"
    )


BAD_ATTRIBUTES: list[dict[str, Any]] = [
    {f"a{i}": {"DataType": "String", "StringValue": "v"} for i in range(11)},
    {"AWS.reserved": {"DataType": "String", "StringValue": "v"}},
    {"amazon.x": {"DataType": "String", "StringValue": "v"}},
    {".lead": {"DataType": "String", "StringValue": "v"}},
    {"trail.": {"DataType": "String", "StringValue": "v"}},
    {"a..b": {"DataType": "String", "StringValue": "v"}},
    {"spa ce": {"DataType": "String", "StringValue": "v"}},
    {"x" * 257: {"DataType": "String", "StringValue": "v"}},
    {"t": {"DataType": "Float", "StringValue": "1"}},
    {"t": {"DataType": "String.", "StringValue": "1"}},
    {"t": {"StringValue": "1"}},
    {"t": {"DataType": "Number", "StringValue": "one"}},
    {"t": {"DataType": "Number", "StringValue": "1" * 39}},
    {"t": {"DataType": "Number", "StringValue": "1e200"}},
    {"t": {"DataType": "String", "StringValue": ""}},
    {"t": {"DataType": "String", "StringValue": "nul \x00"}},
    {"t": {"DataType": "String"}},
    {"t": {"DataType": "Binary", "StringValue": "text"}},
    {"t": {"DataType": "String", "BinaryValue": b"bytes"}},
    {"t": {"DataType": "Binary", "BinaryValue": b""}},
    {"t": {"DataType": "String", "StringValue": "v", "StringListValues": ["a"]}},
]


@pytest.mark.parametrize("attributes", BAD_ATTRIBUTES)
def test_message_attribute_rules(raw: Any, queue: str, attributes: dict[str, Any]) -> None:
    code = error_code(lambda: raw.send_message(
        QueueUrl=queue, MessageBody="b", MessageAttributes=attributes
    ))
    assert code == "InvalidParameterValue"


def test_ten_attributes_and_long_names_are_fine(sqs: Any, queue: str) -> None:
    attributes = {f"n{i}-_.x": {"DataType": "Number", "StringValue": str(i)} for i in range(9)}
    attributes["y" * 256] = {"DataType": "String." + "c" * 249, "StringValue": "v"}
    sent = sqs.send_message(QueueUrl=queue, MessageBody="b", MessageAttributes=attributes)
    assert sent["MD5OfMessageAttributes"] == md5_attributes(attributes)


def test_message_size_counts_body_and_attributes(raw: Any) -> None:
    url = raw.create_queue(QueueName="small", Attributes={"MaximumMessageSize": "1024"})[
        "QueueUrl"
    ]
    raw.send_message(QueueUrl=url, MessageBody="é" * 512)  # 1024 bytes
    error = error_of(lambda: raw.send_message(QueueUrl=url, MessageBody="x" * 1025))
    assert error["Code"] == "InvalidParameterValue"
    assert "Message must be shorter than 1024 bytes" in error["Message"]
    # name (1) + type (6) + value (17) + body (1001) = 1025
    attributes = {"a": {"DataType": "String", "StringValue": "v" * 17}}
    assert error_code(lambda: raw.send_message(
        QueueUrl=url, MessageBody="x" * 1001, MessageAttributes=attributes
    )) == "InvalidParameterValue"
    raw.send_message(QueueUrl=url, MessageBody="x" * 1000, MessageAttributes=attributes)
    assert len(receive(raw, url, MaxNumberOfMessages=10)) == 2


def test_fifo_only_parameters(raw: Any, queue: str) -> None:
    assert error_code(lambda: raw.send_message(
        QueueUrl=queue, MessageBody="b", MessageDeduplicationId="d"
    )) == "InvalidParameterValue"
    code = error_code(lambda: raw.send_message(
        QueueUrl=queue, MessageBody="b",
        MessageSystemAttributes={"Other": {"DataType": "String", "StringValue": "v"}},
    ))
    assert code == "InvalidParameterValue"


# Queues that are not there ------------------------------------------------------------------


def test_every_message_operation_on_a_missing_queue(
    sqs: Any, zaqar: httpx.Client, server: TidingsServer, project: str
) -> None:
    url = f"{server.url}/{project}/nowhere"
    handle_source = make_queue(zaqar, server, project, name="elsewhere")
    sqs.send_message(QueueUrl=handle_source, MessageBody="b")
    (message,) = receive(sqs, handle_source)
    calls: list[Callable[[], Any]] = [
        lambda: sqs.send_message(QueueUrl=url, MessageBody="b"),
        lambda: sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "a", "MessageBody": "b"}]),
        lambda: sqs.receive_message(QueueUrl=url),
        lambda: sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1),
        lambda: sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"]),
        lambda: sqs.delete_message_batch(
            QueueUrl=url, Entries=[{"Id": "a", "ReceiptHandle": message["ReceiptHandle"]}]
        ),
        lambda: sqs.change_message_visibility(
            QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=5
        ),
        lambda: sqs.change_message_visibility_batch(
            QueueUrl=url,
            Entries=[{"Id": "a", "ReceiptHandle": message["ReceiptHandle"],
                      "VisibilityTimeout": 5}],
        ),
    ]
    for call in calls:
        with pytest.raises(sqs.exceptions.QueueDoesNotExist):
            call()
    # A send did not make the queue (Zaqar's post would have).
    listed = zaqar.get("/queues").json()["queues"]
    assert [queue["name"] for queue in listed] == ["elsewhere"]


# Delays --------------------------------------------------------------------------------------


def test_per_message_delay_on_a_queue_without_one(sqs: Any, queue: str) -> None:
    sqs.send_message(QueueUrl=queue, MessageBody="later", DelaySeconds=900)
    sqs.send_message(QueueUrl=queue, MessageBody="soon", DelaySeconds=1)
    sqs.send_message(QueueUrl=queue, MessageBody="now")
    (first,) = receive(sqs, queue, MaxNumberOfMessages=10, VisibilityTimeout=600)
    assert first["Body"] == "now"  # the 900 s one is delayed, the 1 s one too (so far)
    soon = wait_until(lambda: receive(sqs, queue, MaxNumberOfMessages=10,
                                      VisibilityTimeout=600), "the 1 s delay to end")
    assert [m["Body"] for m in soon] == ["soon"]


def test_queue_delay_applies_unless_the_message_has_its_own(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="delaying", Attributes={"DelaySeconds": "900"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="queue's delay")
    sqs.send_message(QueueUrl=url, MessageBody="none", DelaySeconds=0)
    sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": "a", "MessageBody": "batch, queue's delay"},
        {"Id": "b", "MessageBody": "batch, none", "DelaySeconds": 0},
    ])
    got = receive(sqs, url, MaxNumberOfMessages=10)
    assert sorted(m["Body"] for m in got) == ["batch, none", "none"]


@pytest.mark.parametrize("delay", [-1, 901])
def test_delay_out_of_range(raw: Any, queue: str, delay: Any) -> None:
    assert error_code(lambda: raw.send_message(
        QueueUrl=queue, MessageBody="b", DelaySeconds=delay
    )) == "InvalidParameterValue"


# Receive parameters ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "code"),
    [
        ({"MaxNumberOfMessages": 0}, "InvalidParameterValue"),
        ({"MaxNumberOfMessages": 11}, "InvalidParameterValue"),
        ({"VisibilityTimeout": -1}, "InvalidParameterValue"),
        ({"VisibilityTimeout": 43201}, "InvalidParameterValue"),
        ({"WaitTimeSeconds": -1}, "InvalidParameterValue"),
        ({"WaitTimeSeconds": 21}, "InvalidParameterValue"),
        ({"AttributeNames": ["Nonsense"]}, "InvalidAttributeName"),
        ({"MessageSystemAttributeNames": ["SentTimestampX"]}, "InvalidAttributeName"),
    ],
)
def test_receive_parameters_out_of_range(
    raw: Any, queue: str, options: dict[str, Any], code: str
) -> None:
    assert error_code(lambda: raw.receive_message(QueueUrl=queue, **options)) == code


def test_receive_takes_one_by_default_and_at_most_ten(sqs: Any, queue: str) -> None:
    for start in (0, 10):
        sqs.send_message_batch(QueueUrl=queue, Entries=[
            {"Id": f"m{i}", "MessageBody": f"body {i}"} for i in range(start, start + 10)
        ])
    assert len(receive(sqs, queue, VisibilityTimeout=600)) == 1
    ten = receive(sqs, queue, MaxNumberOfMessages=10, VisibilityTimeout=600)
    assert len(ten) == 10
    rest = receive(sqs, queue, MaxNumberOfMessages=10, VisibilityTimeout=600)
    assert len(rest) == 9
    handles = {m["ReceiptHandle"] for m in ten + rest}
    assert len(handles) == 19
    assert receive(sqs, queue, MaxNumberOfMessages=10) == []
    # Queue attribute names in AttributeNames are accepted (older SDKs model them there).
    assert receive(sqs, queue, AttributeNames=["QueueArn"]) == []


def test_long_poll_is_woken_by_a_send_from_another_client(
    sqs: Any, queue: str, server: TidingsServer, project: str
) -> None:
    sender = sqs_client(server.url, project)
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(receive, sqs, queue, WaitTimeSeconds=10, VisibilityTimeout=600)
        sender.send_message(QueueUrl=queue, MessageBody="wake up")
        got = waiting.result(timeout=30)
    assert [m["Body"] for m in got] == ["wake up"]


def test_queue_receive_wait_time_is_the_default_wait(
    sqs: Any, server: TidingsServer, project: str
) -> None:
    url = sqs.create_queue(
        QueueName="waiting", Attributes={"ReceiveMessageWaitTimeSeconds": "10"}
    )["QueueUrl"]
    sender = sqs_client(server.url, project)
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(receive, sqs, url)
        sender.send_message(QueueUrl=url, MessageBody="waited for")
        got = waiting.result(timeout=30)
    assert [m["Body"] for m in got] == ["waited for"]


# Visibility ------------------------------------------------------------------------------------


def test_a_lapsed_visibility_timeout_makes_the_message_receivable_again(
    sqs: Any, queue: str
) -> None:
    sqs.send_message(QueueUrl=queue, MessageBody="again")
    (first,) = receive(sqs, queue, VisibilityTimeout=1, AttributeNames=["All"])
    again = wait_until(lambda: receive(sqs, queue, VisibilityTimeout=600,
                                       AttributeNames=["All"]), "the visibility timeout to end")
    assert again[0]["MessageId"] == first["MessageId"]
    assert again[0]["Attributes"]["ApproximateReceiveCount"] == "2"
    assert again[0]["ReceiptHandle"] != first["ReceiptHandle"]


def test_the_queue_s_visibility_timeout_is_the_default(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="brief", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="b")
    (first,) = receive(sqs, url)
    # Well before SQS's default of 30 s.
    again = wait_until(lambda: receive(sqs, url, VisibilityTimeout=600),
                       "the queue's 1 s visibility timeout to end", timeout=15)
    assert again[0]["MessageId"] == first["MessageId"]


def test_visibility_zero_leaves_the_message_visible(sqs: Any, queue: str) -> None:
    sqs.send_message(QueueUrl=queue, MessageBody="b")
    (first,) = receive(sqs, queue, VisibilityTimeout=0)
    (second,) = receive(sqs, queue, VisibilityTimeout=600)
    assert second["MessageId"] == first["MessageId"]
    # The first handle is stale now: its delete succeeds and deletes nothing.
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=first["ReceiptHandle"])
    sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=second["ReceiptHandle"],
                                  VisibilityTimeout=0)
    (third,) = receive(sqs, queue, VisibilityTimeout=0)
    assert third["MessageId"] == first["MessageId"]
    # Held by no claim now, last received with this handle: it deletes.
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=third["ReceiptHandle"])
    assert receive(sqs, queue) == []


def test_change_message_visibility(sqs: Any, raw: Any, queue: str) -> None:
    sqs.send_message(QueueUrl=queue, MessageBody="b")
    (held,) = receive(sqs, queue, VisibilityTimeout=600)
    handle = held["ReceiptHandle"]
    sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=handle, VisibilityTimeout=900)
    assert receive(sqs, queue) == []
    # Shorter than Zaqar's 60 s claim minimum: SQS allows it.
    sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=handle, VisibilityTimeout=1)
    again = wait_until(lambda: receive(sqs, queue, VisibilityTimeout=600),
                       "the shortened visibility timeout to end")
    assert again[0]["MessageId"] == held["MessageId"]
    # The first handle's receive is over.
    error = error_of(lambda: sqs.change_message_visibility(
        QueueUrl=queue, ReceiptHandle=handle, VisibilityTimeout=30
    ))
    assert error["Code"] == "AWS.SimpleQueueService.MessageNotInflight"
    with pytest.raises(sqs.exceptions.MessageNotInflight):
        sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=handle, VisibilityTimeout=0)
    assert error_code(lambda: raw.change_message_visibility(
        QueueUrl=queue, ReceiptHandle=again[0]["ReceiptHandle"], VisibilityTimeout=43201
    )) == "InvalidParameterValue"
    assert error_code(lambda: raw.change_message_visibility(
        QueueUrl=queue, ReceiptHandle=again[0]["ReceiptHandle"]
    )) == "MissingParameter"


def test_visibility_of_a_message_never_received(sqs: Any, queue: str) -> None:
    sqs.send_message(QueueUrl=queue, MessageBody="b")
    (message,) = receive(sqs, queue, VisibilityTimeout=600)
    sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"],
                                  VisibilityTimeout=0)
    with pytest.raises(sqs.exceptions.MessageNotInflight):
        sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"],
                                      VisibilityTimeout=10)


@pytest.mark.parametrize(
    "handle", ["garbage", "", "AQEB" * 40, base64.urlsafe_b64encode(b"1:q:x:y").decode(), "é"]
)
def test_malformed_receipt_handles(raw: Any, queue: str, handle: str) -> None:
    for call in (
        lambda: raw.delete_message(QueueUrl=queue, ReceiptHandle=handle),
        lambda: raw.change_message_visibility(
            QueueUrl=queue, ReceiptHandle=handle, VisibilityTimeout=5
        ),
    ):
        assert error_code(call) in (
            ("MissingParameter",) if handle == "" else ("ReceiptHandleIsInvalid",)
        )


def test_a_handle_of_another_queue_is_invalid(
    sqs: Any, queue: str, zaqar: httpx.Client, server: TidingsServer, project: str
) -> None:
    other = make_queue(zaqar, server, project)
    sqs.send_message(QueueUrl=other, MessageBody="b")
    (message,) = receive(sqs, other)
    with pytest.raises(sqs.exceptions.ReceiptHandleIsInvalid):
        sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    sqs.delete_message(QueueUrl=other, ReceiptHandle=message["ReceiptHandle"])


# Deletes -----------------------------------------------------------------------------------------


def test_a_stale_handle_does_not_delete_a_message_received_since(
    sqs: Any, queue: str, zaqar: httpx.Client
) -> None:
    sent = sqs.send_message(QueueUrl=queue, MessageBody="b")
    (first,) = receive(sqs, queue, VisibilityTimeout=1)
    second = wait_until(lambda: receive(sqs, queue, VisibilityTimeout=600),
                        "the message to be received again")
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=first["ReceiptHandle"])  # succeeds...
    name = queue.rsplit("/", 1)[1]
    assert zaqar.get(f"/queues/{name}/messages/{sent['MessageId']}").status_code == 200
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=second[0]["ReceiptHandle"])
    assert zaqar.get(f"/queues/{name}/messages/{sent['MessageId']}").status_code == 404


def test_a_handle_whose_visibility_ended_still_deletes(
    sqs: Any, queue: str, zaqar: httpx.Client
) -> None:
    sent = sqs.send_message(QueueUrl=queue, MessageBody="b")
    (first,) = receive(sqs, queue, VisibilityTimeout=1)
    name = queue.rsplit("/", 1)[1]

    def unclaimed() -> bool:
        listed = zaqar.get(f"/queues/{name}/messages", params={"echo": "true"})
        return bool(listed.status_code == 200 and listed.json()["messages"])

    wait_until(unclaimed, "the visibility timeout to end")
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=first["ReceiptHandle"])
    assert zaqar.get(f"/queues/{name}/messages/{sent['MessageId']}").status_code == 404


# Batches --------------------------------------------------------------------------------


def test_send_message_batch_with_partial_failures(sqs: Any, raw: Any, queue: str) -> None:
    entries: list[dict[str, Any]] = [
        {"Id": "plain", "MessageBody": "one"},
        {"Id": "with-attributes_1", "MessageBody": "two", "MessageAttributes": ATTRIBUTES},
        {"Id": "bad-body", "MessageBody": "\x00"},
        {"Id": "bad-delay", "MessageBody": "x", "DelaySeconds": 1000},
        {"Id": "bad-attribute", "MessageBody": "x",
         "MessageAttributes": {"AWS.no": {"DataType": "String", "StringValue": "v"}}},
        {"Id": "empty", "MessageBody": ""},
        {"Id": "L" * 80, "MessageBody": "three"},
    ]
    answer = raw.send_message_batch(QueueUrl=queue, Entries=entries)
    successful = {entry["Id"]: entry for entry in answer["Successful"]}
    assert set(successful) == {"plain", "with-attributes_1", "L" * 80}
    assert successful["plain"]["MD5OfMessageBody"] == md5_text("one")
    assert "MD5OfMessageAttributes" not in successful["plain"]
    assert successful["with-attributes_1"]["MD5OfMessageAttributes"] == md5_attributes(ATTRIBUTES)
    failed = {entry["Id"]: entry for entry in answer["Failed"]}
    assert {key: value["Code"] for key, value in failed.items()} == {
        "bad-body": "InvalidMessageContents",
        "bad-delay": "InvalidParameterValue",
        "bad-attribute": "InvalidParameterValue",
        "empty": "MissingParameter",
    }
    assert all(entry["SenderFault"] is True and entry["Message"] for entry in failed.values())

    got = receive(sqs, queue, MaxNumberOfMessages=10, MessageAttributeNames=["All"])
    by_id = {m["MessageId"]: m for m in got}
    assert {m["Body"] for m in got} == {"one", "two", "three"}
    for entry_id, body in [("plain", "one"), ("with-attributes_1", "two"), ("L" * 80, "three")]:
        assert by_id[successful[entry_id]["MessageId"]]["Body"] == body
    assert by_id[successful["with-attributes_1"]["MessageId"]]["MessageAttributes"] == ATTRIBUTES


@pytest.mark.parametrize(
    ("entries", "code"),
    [
        ([], "AWS.SimpleQueueService.EmptyBatchRequest"),
        (None, "AWS.SimpleQueueService.EmptyBatchRequest"),
        ([{"Id": f"e{i}", "MessageBody": "b"} for i in range(11)],
         "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"),
        ([{"Id": "same", "MessageBody": "b"}, {"Id": "same", "MessageBody": "c"}],
         "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"),
        ([{"Id": "no spaces", "MessageBody": "b"}], "AWS.SimpleQueueService.InvalidBatchEntryId"),
        ([{"Id": "x" * 81, "MessageBody": "b"}], "AWS.SimpleQueueService.InvalidBatchEntryId"),
        ([{"MessageBody": "b"}], "AWS.SimpleQueueService.InvalidBatchEntryId"),
        ([{"Id": f"e{i}", "MessageBody": "b" * 100_000} for i in range(3)],
         "AWS.SimpleQueueService.BatchRequestTooLong"),
    ],
)
def test_batch_request_rules(raw: Any, queue: str, entries: Any, code: str) -> None:
    send = {"QueueUrl": queue} if entries is None else {"QueueUrl": queue, "Entries": entries}
    assert error_code(lambda: raw.send_message_batch(**send)) == code
    handles = None if entries is None else [
        {"Id": entry.get("Id", ""), "ReceiptHandle": "h"} for entry in entries
    ]
    delete = {"QueueUrl": queue} if handles is None else {"QueueUrl": queue, "Entries": handles}
    if code != "AWS.SimpleQueueService.BatchRequestTooLong":
        assert error_code(lambda: raw.delete_message_batch(**delete)) == code
        assert error_code(lambda: raw.change_message_visibility_batch(**delete)) == code
    assert receive(raw, queue) == []


def test_batch_errors_are_modelled_exceptions(sqs: Any, queue: str) -> None:
    with pytest.raises(sqs.exceptions.BatchEntryIdsNotDistinct):
        sqs.send_message_batch(QueueUrl=queue, Entries=[
            {"Id": "a", "MessageBody": "b"}, {"Id": "a", "MessageBody": "b"}
        ])
    with pytest.raises(sqs.exceptions.TooManyEntriesInBatchRequest):
        sqs.delete_message_batch(QueueUrl=queue, Entries=[
            {"Id": f"a{i}", "ReceiptHandle": "h"} for i in range(11)
        ])


def test_delete_message_batch(sqs: Any, queue: str, zaqar: httpx.Client) -> None:
    sqs.send_message_batch(QueueUrl=queue, Entries=[
        {"Id": f"m{i}", "MessageBody": f"body {i}"} for i in range(4)
    ])
    got = receive(sqs, queue, MaxNumberOfMessages=10, VisibilityTimeout=600)
    assert len(got) == 4
    answer = sqs.delete_message_batch(QueueUrl=queue, Entries=[
        {"Id": "a", "ReceiptHandle": got[0]["ReceiptHandle"]},
        {"Id": "b", "ReceiptHandle": got[1]["ReceiptHandle"]},
        {"Id": "c", "ReceiptHandle": "not-a-handle"},
        {"Id": "d", "ReceiptHandle": got[0]["ReceiptHandle"]},  # twice: still a success
    ])
    assert sorted(entry["Id"] for entry in answer["Successful"]) == ["a", "b", "d"]
    assert [(f["Id"], f["Code"], f["SenderFault"]) for f in answer["Failed"]] == [
        ("c", "ReceiptHandleIsInvalid", True)
    ]
    name = queue.rsplit("/", 1)[1]
    for message, status in zip(got, (404, 404, 200, 200), strict=True):
        found = zaqar.get(f"/queues/{name}/messages/{message['MessageId']}")
        assert found.status_code == status


def test_change_message_visibility_batch(sqs: Any, raw: Any, queue: str) -> None:
    sqs.send_message(QueueUrl=queue, MessageBody="first")
    sqs.send_message(QueueUrl=queue, MessageBody="second")
    (one,) = receive(sqs, queue, VisibilityTimeout=600)
    (two,) = receive(sqs, queue, VisibilityTimeout=600)
    answer = raw.change_message_visibility_batch(QueueUrl=queue, Entries=[
        {"Id": "release", "ReceiptHandle": one["ReceiptHandle"], "VisibilityTimeout": 0},
        {"Id": "keep", "ReceiptHandle": two["ReceiptHandle"], "VisibilityTimeout": 1200},
        {"Id": "bad", "ReceiptHandle": "x", "VisibilityTimeout": 5},
        {"Id": "range", "ReceiptHandle": two["ReceiptHandle"], "VisibilityTimeout": 50000},
        {"Id": "missing", "ReceiptHandle": two["ReceiptHandle"]},
    ])
    assert sorted(entry["Id"] for entry in answer["Successful"]) == ["keep", "release"]
    assert {f["Id"]: f["Code"] for f in answer["Failed"]} == {
        "bad": "ReceiptHandleIsInvalid",
        "range": "InvalidParameterValue",
        "missing": "MissingParameter",
    }
    (again,) = receive(sqs, queue, MaxNumberOfMessages=10)
    assert again["MessageId"] == one["MessageId"]
    answer = sqs.change_message_visibility_batch(QueueUrl=queue, Entries=[
        {"Id": "stale", "ReceiptHandle": one["ReceiptHandle"], "VisibilityTimeout": 5},
    ])
    assert [(f["Id"], f["Code"]) for f in answer["Failed"]] == [
        ("stale", "AWS.SimpleQueueService.MessageNotInflight")
    ]


def test_one_receive_is_one_claim(sqs: Any, queue: str) -> None:
    """A documented difference: the messages of one receive share its visibility, so a
    change to one changes its batch-mates."""
    sqs.send_message_batch(QueueUrl=queue, Entries=[
        {"Id": "a", "MessageBody": "a"}, {"Id": "b", "MessageBody": "b"}
    ])
    got = receive(sqs, queue, MaxNumberOfMessages=10, VisibilityTimeout=600)
    assert len(got) == 2
    sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=got[0]["ReceiptHandle"],
                                  VisibilityTimeout=0)
    assert len(receive(sqs, queue, MaxNumberOfMessages=10)) == 2


# Dead letters ---------------------------------------------------------------------------


def test_redrive_moves_a_message_received_too_often(sqs: Any) -> None:
    dead = sqs.create_queue(QueueName="dead")["QueueUrl"]
    dead_arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    source = sqs.create_queue(QueueName="source")["QueueUrl"]
    policy = {"deadLetterTargetArn": dead_arn, "maxReceiveCount": 2}
    sqs.set_queue_attributes(QueueUrl=source, Attributes={"RedrivePolicy": json.dumps(policy)})
    sent = sqs.send_message(QueueUrl=source, MessageBody="poison",
                            MessageAttributes={"k": {"DataType": "String", "StringValue": "v"}})
    for count in ("1", "2"):
        (message,) = receive(sqs, source, VisibilityTimeout=0, AttributeNames=["All"])
        assert message["Attributes"]["ApproximateReceiveCount"] == count
    # The third receive finds it received maxReceiveCount times: it moves instead.
    assert receive(sqs, source, MaxNumberOfMessages=10) == []
    (moved,) = receive(sqs, dead, MessageAttributeNames=["All"], AttributeNames=["All"])
    assert moved["MessageId"] == sent["MessageId"]
    assert moved["Body"] == "poison"
    assert moved["MD5OfBody"] == sent["MD5OfMessageBody"]
    assert moved["MessageAttributes"] == {"k": {"DataType": "String", "StringValue": "v"}}
    # The count goes on in the dead-letter queue (its receives before the move, plus this).
    assert moved["Attributes"]["ApproximateReceiveCount"] == "3"
    sqs.delete_message(QueueUrl=dead, ReceiptHandle=moved["ReceiptHandle"])
    assert receive(sqs, dead) == []
