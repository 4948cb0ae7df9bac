"""One engine, two APIs: messages posted through Zaqar's API are received through SQS and
the other way round (bodies mapped as the README says), claims and receives exclude each
other, long polls of either are woken by posts of the other, and subscriptions fire for
messages sent through SQS."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import notify_listeners
from tests.notify_listeners import WebhookListener
from tests.server import TidingsServer
from tests.sqs.conftest import sqs_client
from tests.sqs.test_messages import make_queue, md5_attributes, receive

webhook_listener = notify_listeners.webhook_listener

NOTIFYING = {
    "TIDINGS_NOTIFICATION__POLL_INTERVAL": "0.1",
    # the listener is on loopback, which subscribers may not point at by default
    "TIDINGS_NOTIFICATION__SUBSCRIBER_DENY_NETWORKS": "[]",
}


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def queue_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


def test_zaqar_posts_are_received_through_sqs(
    sqs: Any, zaqar: httpx.Client, server: TidingsServer, project: str
) -> None:
    url = make_queue(zaqar, server, project)
    name = queue_name(url)
    envelope = {"_sqs": {"body": "wrapped", "attributes": {
        "k": {"DataType": "String", "StringValue": "v"},
        "b": {"DataType": "Binary", "BinaryValue": base64.b64encode(b"\x01\x02").decode()},
    }}}
    bodies: list[Any] = [
        "plain text",
        {"event": "created", "ids": [1, 2.5, None, True], "nested": {"ü": "😀"}},
        42,
        ["a", 1],
        envelope,
        {"_sqs": "not an envelope"},
        {"_sqs": {"body": "extra keys"}, "other": 1},
    ]
    posted = zaqar.post(f"/queues/{name}/messages",
                        json={"messages": [{"body": body} for body in bodies]})
    assert posted.status_code == 201, posted.text
    # Whitespace as a client sent it is not part of the body SQS shows.
    spaced = zaqar.post(f"/queues/{name}/messages",
                        content=b'{"messages": [{"body": { "a" : [ 1 , 2 ] } }]}',
                        headers={"Content-Type": "application/json"})
    assert spaced.status_code == 201, spaced.text
    client_id = zaqar.headers["Client-ID"]

    got = receive(sqs, url, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
                  AttributeNames=["SenderId", "ApproximateReceiveCount"])
    assert [m["Body"] for m in got] == [
        "plain text",
        '{"event":"created","ids":[1,2.5,null,true],"nested":{"ü":"😀"}}',
        "42",
        '["a",1]',
        "wrapped",
        '{"_sqs":"not an envelope"}',
        '{"_sqs":{"body":"extra keys"},"other":1}',
        '{"a":[1,2]}',
    ]
    for message in got:
        assert message["MD5OfBody"] == md5(message["Body"])
        assert message["Attributes"] == {"SenderId": client_id, "ApproximateReceiveCount": "1"}
    unwrapped = got[4]
    assert unwrapped["MessageAttributes"] == {
        "k": {"DataType": "String", "StringValue": "v"},
        "b": {"DataType": "Binary", "BinaryValue": b"\x01\x02"},
    }
    assert unwrapped["MD5OfMessageAttributes"] == md5_attributes(unwrapped["MessageAttributes"])
    assert all("MessageAttributes" not in m for i, m in enumerate(got) if i != 4)

    # SQS deletes what Zaqar posted.
    for message in got:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    assert zaqar.get(f"/queues/{name}/stats").json()["messages"]["total"] == 0


def test_sqs_sends_are_read_through_zaqar(sqs: Any, zaqar: httpx.Client, queue_url: str) -> None:
    name = queue_name(queue_url)
    plain = sqs.send_message(QueueUrl=queue_url, MessageBody="plain text")
    with_attributes = sqs.send_message(
        QueueUrl=queue_url,
        MessageBody='{"looks": "like json"}',
        MessageAttributes={
            "s": {"DataType": "String", "StringValue": "v"},
            "n": {"DataType": "Number.float", "StringValue": "1.5"},
            "b": {"DataType": "Binary", "BinaryValue": b"\xff\x00"},
        },
    )
    claim = zaqar.post(f"/queues/{name}/claims", params={"limit": 10}, json={"ttl": 60})
    assert claim.status_code == 201, claim.text
    bodies = {m["id"]: m["body"] for m in claim.json()["messages"]}
    assert bodies[plain["MessageId"]] == "plain text"
    assert bodies[with_attributes["MessageId"]] == {"_sqs": {
        "body": '{"looks": "like json"}',
        "attributes": {
            "s": {"DataType": "String", "StringValue": "v"},
            "n": {"DataType": "Number.float", "StringValue": "1.5"},
            "b": {"DataType": "Binary", "BinaryValue": base64.b64encode(b"\xff\x00").decode()},
        },
    }}
    # Zaqar's claim holds them: SQS receives nothing until it is released.
    assert receive(sqs, queue_url, MaxNumberOfMessages=10) == []
    claim_href = claim.headers["location"].removeprefix("/v2")
    assert zaqar.delete(claim_href).status_code == 204
    got = receive(sqs, queue_url, MaxNumberOfMessages=10, AttributeNames=["All"],
                  VisibilityTimeout=600)
    assert {m["MessageId"] for m in got} == {plain["MessageId"], with_attributes["MessageId"]}
    assert {m["Attributes"]["ApproximateReceiveCount"] for m in got} == {"2"}
    # ...and an SQS receive holds them from Zaqar's claims.
    again = zaqar.post(f"/queues/{name}/claims", json={"ttl": 60})
    assert again.status_code == 204
    # Zaqar may not delete what an SQS receive holds (it has not the claim); the handle may.
    for message in got:
        assert zaqar.delete(f"/queues/{name}/messages/{message['MessageId']}").status_code == 403
    for message in got:
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    assert zaqar.get(f"/queues/{name}/stats").json()["messages"]["total"] == 0


@pytest.fixture
def queue_url(zaqar: httpx.Client, server: TidingsServer, project: str) -> str:
    return make_queue(zaqar, server, project)


def test_an_sqs_long_poll_is_woken_by_a_zaqar_post(
    sqs: Any, zaqar: httpx.Client, queue_url: str
) -> None:
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(receive, sqs, queue_url, WaitTimeSeconds=10)
        posted = zaqar.post(f"/queues/{queue_name(queue_url)}/messages",
                            json={"messages": [{"body": {"from": "zaqar"}}]})
        assert posted.status_code == 201
        got = waiting.result(timeout=30)
    assert [m["Body"] for m in got] == ['{"from":"zaqar"}']


def test_a_zaqar_long_poll_is_woken_by_an_sqs_send(
    sqs: Any, server: TidingsServer, project: str, queue_url: str
) -> None:
    def claim() -> httpx.Response:
        with server.client(project=project) as client:
            return client.post(f"/queues/{queue_name(queue_url)}/claims",
                               params={"wait": 10}, json={"ttl": 60})

    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(claim)
        sqs.send_message(QueueUrl=queue_url, MessageBody="from sqs")
        answer = waiting.result(timeout=30)
    assert answer.status_code == 201, answer.text
    assert [m["body"] for m in answer.json()["messages"]] == ["from sqs"]


def test_subscriptions_fire_for_messages_sent_through_sqs(
    make_server: type[TidingsServer], tmp_path: Path, webhook_listener: WebhookListener
) -> None:
    srv = make_server(tmp_path, env=NOTIFYING).start()
    project = f"sqs-{uuid.uuid4().hex[:12]}"
    sqs = sqs_client(srv.url, project)
    path = webhook_listener.new_path()
    with srv.client(project=project) as zaqar:
        url = make_queue(zaqar, srv, project, name="hooked")
        subscribed = zaqar.post("/queues/hooked/subscriptions",
                                json={"subscriber": webhook_listener.url(path), "ttl": 3600})
        assert subscribed.status_code == 201, subscribed.text
    plain = sqs.send_message(QueueUrl=url, MessageBody="notify me")
    batch = sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": "a", "MessageBody": "batched",
         "MessageAttributes": {"k": {"DataType": "String", "StringValue": "v"}}},
    ])
    delayed = sqs.send_message(QueueUrl=url, MessageBody="after its delay", DelaySeconds=1)
    records = webhook_listener.wait_for(path, 3)
    documents = {r.json()["message_id"]: r.json() for r in records}
    assert documents[plain["MessageId"]]["body"] == "notify me"
    assert documents[plain["MessageId"]]["queue_name"] == "hooked"
    assert documents[batch["Successful"][0]["MessageId"]]["body"] == {"_sqs": {
        "body": "batched", "attributes": {"k": {"DataType": "String", "StringValue": "v"}},
    }}
    assert documents[delayed["MessageId"]]["body"] == "after its delay"
    assert json.loads(records[0].body)["Message_Type"] == "Notification"


def test_encrypted_queues_work_through_sqs(
    make_server: type[TidingsServer], tmp_path: Path
) -> None:
    key = {"id": "k1", "key": base64.b64encode(os.urandom(32)).decode()}
    srv = make_server(
        tmp_path, env={"TIDINGS_TRANSPORT__MESSAGE_ENCRYPTION_KEYS": json.dumps([key])}
    ).start()
    project = f"sqs-{uuid.uuid4().hex[:12]}"
    sqs = sqs_client(srv.url, project)
    with srv.client(project=project) as zaqar:
        url = make_queue(zaqar, srv, project, name="sealed", _enable_encrypt_messages=True)
    attributes = {"k": {"DataType": "Binary", "BinaryValue": b"\x00secret"}}
    sent = sqs.send_message(QueueUrl=url, MessageBody="secret text",
                            MessageAttributes=attributes)
    (message,) = receive(sqs, url, MessageAttributeNames=["All"])
    assert message["Body"] == "secret text"
    assert message["MD5OfBody"] == sent["MD5OfMessageBody"]
    assert message["MessageAttributes"] == attributes
    assert message["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]


def test_a_dead_letter_policy_set_through_zaqar_applies_to_sqs_receives(
    sqs: Any, zaqar: httpx.Client, server: TidingsServer, project: str
) -> None:
    dead = make_queue(zaqar, server, project, name="zaqar-dead")
    source = make_queue(zaqar, server, project, _dead_letter_queue="zaqar-dead",
                        _max_claim_count=1)
    sqs.send_message(QueueUrl=source, MessageBody="poison")
    assert len(receive(sqs, source, VisibilityTimeout=0)) == 1
    assert receive(sqs, source) == []
    (moved,) = receive(sqs, dead)
    assert moved["Body"] == "poison"
