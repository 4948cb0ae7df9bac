"""Cross-project isolation on the SQS face, for every operation of the router
(``tidings.sqs.operations.OPERATIONS``: an operation added there without a probe here
fails ``test_every_operation_has_a_probe``).

Project A has a queue (with a dead-letter queue, tags, attributes, messages, one of them
in flight). Project B, on the same server, aims each operation at A's queue every way a
request can name it: A's queue URL (as given, with another host, percent-encoded, with a
trailing slash, as a bare path), the query protocol at A's queue path, A's ARNs, A's
queue name with A's account id, A's receipt handles (also against B's own queue of the
same name). Every answer is ``QueueDoesNotExist`` (an ARN in a redrive policy:
``InvalidParameterValue``, as AWS refuses a dead-letter target of another owner), never
A's data, and A's queues are exactly as before. B is a random project, and also one
whose id differs from A's only by case or by a suffix (key-prefix confusions).

Runs on every store, under ``noauth`` (the access key id is the project); the identity
strategies map keys to projects and are tested on their own (test_identity_*.py).
Source: /work/notes/issue14.md items 2 and 5.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.server import TidingsServer
from tests.sqs.conftest import sqs_client
from tidings.sqs.operations import OPERATIONS

NO_QUEUE = "AWS.SimpleQueueService.NonExistentQueue"
INVALID = "InvalidParameterValue"
# The kinds of project B: how its id relates to A's.
B_KINDS = ("random", "case", "suffix")


@dataclass
class World:
    server: TidingsServer
    a: Any  # A's boto3 client
    zaqar: httpx.Client  # A's Zaqar API client
    project_a: str
    name: str
    url: str
    arn: str
    dlq_url: str
    dlq_arn: str
    receipt: str  # of A's message in flight
    b: Any  # B's boto3 client
    project_b: str

    def foreign_urls(self, url: str | None = None) -> list[str]:
        """Every way of writing one of A's queue URLs."""
        url = url or self.url
        path = urlsplit(url).path
        project, name = path.strip("/").split("/")
        encoded = "%" + format(ord(project[0]), "02X") + quote(project[1:], safe="")
        return [
            url,
            f"https://elsewhere.example:4443{path}",
            f"{self.server.url}/{encoded}/{name}",
            url + "/",
            path,
        ]

    def b_own_queue(self) -> str:
        """B's queue of the same name as A's (its own, empty)."""
        created: str = self.b.create_queue(QueueName=self.name)["QueueUrl"]
        assert urlsplit(created).path == f"/{quote(self.project_b, safe='')}/{self.name}"
        return created


def b_project(project_a: str, kind: str) -> str:
    if kind == "case":
        return project_a.upper()
    if kind == "suffix":
        return project_a + "-x"
    return f"sqs-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=B_KINDS)
def world(
    request: pytest.FixtureRequest, server: TidingsServer, sqs: Any, zaqar: httpx.Client,
    project: str,
) -> World:  # fmt: skip
    name = f"iso-{uuid.uuid4().hex[:10]}"
    dlq_url = sqs.create_queue(QueueName=name + "-dlq")["QueueUrl"]
    dlq_arn = arn_of(sqs, dlq_url)
    url = sqs.create_queue(
        QueueName=name,
        Attributes={
            "VisibilityTimeout": "300",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5}),
        },
        tags={"owner": "a"},
    )["QueueUrl"]
    sqs.send_message_batch(
        QueueUrl=url,
        Entries=[{"Id": str(i), "MessageBody": f"secret of A #{i}"} for i in range(3)],
    )
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"]
    project_b = b_project(project, request.param)
    return World(
        server=server,
        a=sqs,
        zaqar=zaqar,
        project_a=project,
        name=name,
        url=url,
        arn=arn_of(sqs, url),
        dlq_url=dlq_url,
        dlq_arn=dlq_arn,
        receipt=received[0]["ReceiptHandle"],
        b=sqs_client(server.url, project_b),
        project_b=project_b,
    )


def arn_of(sqs: Any, url: str) -> str:
    found: str = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return found


def snapshot(world: World) -> dict[str, Any]:
    """Everything of A's that B might change, seen by A."""
    a = world.a
    stats = {}
    for queue in (world.name, world.name + "-dlq"):
        answer = world.zaqar.get(f"/queues/{queue}/stats")
        assert answer.status_code == 200, answer.text
        stats[queue] = answer.json()["messages"]
        stats[queue].pop("oldest", None)
        stats[queue].pop("newest", None)
    listed = world.zaqar.get(f"/queues/{world.name}/messages", params={"echo": "true"})
    return {
        "queues": sorted(a.list_queues().get("QueueUrls", [])),
        "attributes": a.get_queue_attributes(QueueUrl=world.url, AttributeNames=["All"])[
            "Attributes"
        ],
        "dlq": a.get_queue_attributes(QueueUrl=world.dlq_url, AttributeNames=["All"])["Attributes"],
        "tags": a.list_queue_tags(QueueUrl=world.url).get("Tags", {}),
        "stats": stats,
        "free": sorted(m["body"] for m in listed.json().get("messages", []))
        if listed.status_code == 200
        else listed.status_code,
    }


def code_of(call: Callable[..., Any], *args: Any, **kwargs: Any) -> str | None:
    """The SQS error code ``call`` got (None: it succeeded)."""
    try:
        call(*args, **kwargs)
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return None


def refused(
    world: World, call: Callable[[str], Any], allowed: tuple[str, ...] = (NO_QUEUE,)
) -> None:
    """``call`` aimed at each spelling of A's queue URL is refused as a missing queue."""
    for url in world.foreign_urls():
        got = code_of(call, url)
        assert got in allowed, f"{url}: {got}"


def arn_refused(got: str | None) -> None:
    assert got in (NO_QUEUE, INVALID), got


def no_data_of_a(world: World, answer: Any) -> None:
    """Nothing A owns shows in an answer to B."""
    text = json.dumps(answer, default=str)
    assert "secret of A" not in text
    assert f"/{quote(world.project_a, safe='')}/" not in text
    assert f":{world.project_a}:" not in text


# ---------------------------------------------------------------- the probes, per operation


def probe_create_queue(w: World) -> None:
    # The same name is B's own queue, with B's defaults: nothing of A's.
    own = w.b_own_queue()
    attributes = w.b.get_queue_attributes(QueueUrl=own, AttributeNames=["All"])["Attributes"]
    no_data_of_a(w, attributes)
    assert attributes["VisibilityTimeout"] == "30" and "RedrivePolicy" not in attributes
    assert w.b.list_queue_tags(QueueUrl=own).get("Tags", {}) == {}
    # A redrive policy aiming at A's queue is refused.
    redrive = json.dumps({"deadLetterTargetArn": w.dlq_arn, "maxReceiveCount": 1})
    arn_refused(
        code_of(
            lambda: w.b.create_queue(QueueName=w.name + "-b", Attributes={"RedrivePolicy": redrive})
        )
    )


def probe_get_queue_url(w: World) -> None:
    assert code_of(lambda: w.b.get_queue_url(QueueName=w.name)) == NO_QUEUE
    w.b_own_queue()
    got = code_of(lambda: w.b.get_queue_url(QueueName=w.name, QueueOwnerAWSAccountId=w.project_a))
    assert got == NO_QUEUE


def probe_list_queues(w: World) -> None:
    for params in ({}, {"QueueNamePrefix": w.name}, {"QueueNamePrefix": "iso-"},
                   {"MaxResults": 1000}):  # fmt: skip
        answer = w.b.list_queues(**params)
        answer.pop("ResponseMetadata", None)
        no_data_of_a(w, answer)
        for url in answer.get("QueueUrls", []):
            assert urlsplit(url).path.split("/")[1] == quote(w.project_b, safe="")


def probe_delete_queue(w: World) -> None:
    refused(w, lambda url: w.b.delete_queue(QueueUrl=url))


def probe_get_queue_attributes(w: World) -> None:
    refused(w, lambda url: w.b.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]))


def probe_set_queue_attributes(w: World) -> None:
    refused(
        w,
        lambda url: w.b.set_queue_attributes(
            QueueUrl=url, Attributes={"VisibilityTimeout": "7", "DelaySeconds": "9"}
        ),
    )
    # B's own queue may not redrive into A's.
    own = w.b_own_queue()
    redrive = json.dumps({"deadLetterTargetArn": w.dlq_arn, "maxReceiveCount": 1})
    arn_refused(
        code_of(
            lambda: w.b.set_queue_attributes(QueueUrl=own, Attributes={"RedrivePolicy": redrive})
        )
    )


def probe_purge_queue(w: World) -> None:
    refused(w, lambda url: w.b.purge_queue(QueueUrl=url))


def probe_tag_queue(w: World) -> None:
    refused(w, lambda url: w.b.tag_queue(QueueUrl=url, Tags={"owner": "b", "new": "b"}))


def probe_untag_queue(w: World) -> None:
    refused(w, lambda url: w.b.untag_queue(QueueUrl=url, TagKeys=["owner"]))


def probe_list_queue_tags(w: World) -> None:
    refused(w, lambda url: w.b.list_queue_tags(QueueUrl=url))


def probe_list_dead_letter_source_queues(w: World) -> None:
    for url in w.foreign_urls(w.dlq_url):
        assert code_of(w.b.list_dead_letter_source_queues, QueueUrl=url) == NO_QUEUE


def probe_send_message(w: World) -> None:
    refused(w, lambda url: w.b.send_message(QueueUrl=url, MessageBody="from B"))


def probe_send_message_batch(w: World) -> None:
    refused(
        w,
        lambda url: w.b.send_message_batch(
            QueueUrl=url, Entries=[{"Id": "1", "MessageBody": "from B"}]
        ),
    )


def probe_receive_message(w: World) -> None:
    refused(
        w,
        lambda url: w.b.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0, AttributeNames=["All"]
        ),
    )
    # B's own queue of the same name holds none of A's messages.
    own = w.b_own_queue()
    answer = w.b.receive_message(QueueUrl=own, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    assert answer.get("Messages", []) == []


def _own_queue_with_a_receipt(w: World, call: Callable[[str], Any]) -> None:
    """A's receipt handle against B's own queue of the same name: refused or a no-op
    (the snapshot shows A's message untouched)."""
    own = w.b_own_queue()
    code_of(call, own)


def probe_delete_message(w: World) -> None:
    refused(w, lambda url: w.b.delete_message(QueueUrl=url, ReceiptHandle=w.receipt))
    _own_queue_with_a_receipt(
        w, lambda url: w.b.delete_message(QueueUrl=url, ReceiptHandle=w.receipt)
    )


def probe_delete_message_batch(w: World) -> None:
    def call(url: str) -> Any:
        answer = w.b.delete_message_batch(
            QueueUrl=url, Entries=[{"Id": "1", "ReceiptHandle": w.receipt}]
        )
        no_data_of_a(w, answer)
        return answer

    refused(w, call)
    _own_queue_with_a_receipt(w, call)


def probe_change_message_visibility(w: World) -> None:
    def call(url: str) -> Any:
        return w.b.change_message_visibility(
            QueueUrl=url, ReceiptHandle=w.receipt, VisibilityTimeout=0
        )

    refused(w, call)
    _own_queue_with_a_receipt(w, call)


def probe_change_message_visibility_batch(w: World) -> None:
    def call(url: str) -> Any:
        answer = w.b.change_message_visibility_batch(
            QueueUrl=url,
            Entries=[{"Id": "1", "ReceiptHandle": w.receipt, "VisibilityTimeout": 0}],
        )
        no_data_of_a(w, answer)
        return answer

    refused(w, call)
    _own_queue_with_a_receipt(w, call)


PROBES: dict[str, Callable[[World], None]] = {
    "CreateQueue": probe_create_queue,
    "GetQueueUrl": probe_get_queue_url,
    "ListQueues": probe_list_queues,
    "DeleteQueue": probe_delete_queue,
    "GetQueueAttributes": probe_get_queue_attributes,
    "SetQueueAttributes": probe_set_queue_attributes,
    "PurgeQueue": probe_purge_queue,
    "TagQueue": probe_tag_queue,
    "UntagQueue": probe_untag_queue,
    "ListQueueTags": probe_list_queue_tags,
    "ListDeadLetterSourceQueues": probe_list_dead_letter_source_queues,
    "SendMessage": probe_send_message,
    "SendMessageBatch": probe_send_message_batch,
    "ReceiveMessage": probe_receive_message,
    "DeleteMessage": probe_delete_message,
    "DeleteMessageBatch": probe_delete_message_batch,
    "ChangeMessageVisibility": probe_change_message_visibility,
    "ChangeMessageVisibilityBatch": probe_change_message_visibility_batch,
}

# The query protocol at A's queue path (no QueueUrl parameter): what each operation that
# takes a queue needs besides it.
QUERY_PARAMS: dict[str, Callable[[World], dict[str, Any]]] = {
    "DeleteQueue": lambda w: {},
    "GetQueueAttributes": lambda w: {"AttributeNames": ["All"]},
    "SetQueueAttributes": lambda w: {"Attributes": {"VisibilityTimeout": "7"}},
    "PurgeQueue": lambda w: {},
    "TagQueue": lambda w: {"Tags": {"owner": "b"}},
    "UntagQueue": lambda w: {"TagKeys": ["owner"]},
    "ListQueueTags": lambda w: {},
    "ListDeadLetterSourceQueues": lambda w: {},
    "SendMessage": lambda w: {"MessageBody": "from B"},
    "SendMessageBatch": lambda w: {"Entries": [{"Id": "1", "MessageBody": "from B"}]},
    "ReceiveMessage": lambda w: {"MaxNumberOfMessages": 10, "VisibilityTimeout": 0},
    "DeleteMessage": lambda w: {"ReceiptHandle": w.receipt},
    "DeleteMessageBatch": lambda w: {"Entries": [{"Id": "1", "ReceiptHandle": w.receipt}]},
    "ChangeMessageVisibility": lambda w: {"ReceiptHandle": w.receipt, "VisibilityTimeout": 0},
    "ChangeMessageVisibilityBatch": lambda w: {
        "Entries": [{"Id": "1", "ReceiptHandle": w.receipt, "VisibilityTimeout": 0}]
    },
}


def test_every_operation_has_a_probe() -> None:
    assert set(PROBES) == set(OPERATIONS), "add an isolation probe for each new operation"
    takes_a_queue = {
        name for name in OPERATIONS if name not in ("CreateQueue", "GetQueueUrl", "ListQueues")
    }
    assert set(QUERY_PARAMS) == takes_a_queue


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_another_project_cannot_reach_a_queue(world: World, operation: str) -> None:
    before = snapshot(world)
    probe = PROBES.get(operation)
    assert probe is not None, f"no isolation probe for {operation}"
    probe(world)
    assert snapshot(world) == before


@pytest.mark.parametrize("operation", sorted(QUERY_PARAMS))
def test_another_project_cannot_reach_a_queue_at_its_path(world: World, operation: str) -> None:
    """The query protocol sent to A's queue URL itself (older SDKs do), with B's key."""
    from tests.sqs.query_model import QueryClient, queue_path

    before = snapshot(world)
    client = QueryClient(world.server.url, world.project_b)
    # Serialized with a placeholder QueueUrl (the model requires one), then without it:
    # the path names the queue.
    fields = client.form(operation, {"QueueUrl": "-", **QUERY_PARAMS[operation](world)})
    del fields["QueueUrl"]
    paths = [queue_path(world.dlq_url if operation == "ListDeadLetterSourceQueues" else world.url)]
    project, name = paths[0].strip("/").split("/")
    paths.append("/%" + format(ord(project[0]), "02X") + quote(project[1:], safe="") + "/" + name)
    for path in paths:
        answer = client.send(fields, path=path)
        assert answer.status_code == 400, (path, answer.status_code, answer.text)
        assert f"<Code>{NO_QUEUE}</Code>" in answer.text, (path, answer.text)
        assert "secret of A" not in answer.text
    assert snapshot(world) == before
