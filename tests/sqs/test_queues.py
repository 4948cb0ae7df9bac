"""SQS queue operations end to end with boto3, on every store: create, URLs, listings,
attributes (SQS's ranges and codes), tags, dead-letter policies, purge and delete, and the
same queues seen through Zaqar's API."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.server import TidingsServer
from tests.sqs.conftest import sqs_client

DEFAULTS = {
    "VisibilityTimeout": "30",
    "DelaySeconds": "0",
    "MessageRetentionPeriod": "345600",
    "MaximumMessageSize": "262144",
    "ReceiveMessageWaitTimeSeconds": "0",
    "ApproximateNumberOfMessages": "0",
    "ApproximateNumberOfMessagesNotVisible": "0",
    "ApproximateNumberOfMessagesDelayed": "0",
}


def error_code(exc: ClientError) -> str:
    return str(exc.response["Error"]["Code"])


def attributes(sqs: Any, url: str, *names: str) -> dict[str, str]:
    found: dict[str, str] = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=list(names or ["All"])
    ).get("Attributes", {})
    return found


def arn(sqs: Any, url: str) -> str:
    return attributes(sqs, url, "QueueArn")["QueueArn"]


def redrive(target_arn: str, count: Any = 3) -> str:
    return json.dumps({"deadLetterTargetArn": target_arn, "maxReceiveCount": count})


def zaqar_metadata(zaqar: httpx.Client, name: str) -> dict[str, Any]:
    resp = zaqar.get(f"/queues/{name}")
    assert resp.status_code == 200, resp.text
    found: dict[str, Any] = resp.json()
    return found


def post_messages(zaqar: httpx.Client, name: str, count: int) -> None:
    messages = [{"body": {"n": i}, "ttl": 3600} for i in range(count)]
    resp = zaqar.post(f"/queues/{name}/messages", json={"messages": messages})
    assert resp.status_code == 201, resp.text


def claim(zaqar: httpx.Client, name: str, limit: int) -> tuple[str, list[dict[str, Any]]]:
    resp = zaqar.post(
        f"/queues/{name}/claims", params={"limit": limit}, json={"ttl": 60, "grace": 60}
    )
    assert resp.status_code == 201, resp.text
    return resp.headers["location"].rsplit("/", 1)[1], resp.json()["messages"]


# ------------------------------------------------------------------ create, URL, delete


def test_create_get_url_and_delete(sqs: Any, server: TidingsServer, project: str) -> None:
    url = sqs.create_queue(QueueName="orders")["QueueUrl"]
    assert url == f"{server.url}/{project}/orders"
    assert sqs.get_queue_url(QueueName="orders")["QueueUrl"] == url
    own = sqs.get_queue_url(QueueName="orders", QueueOwnerAWSAccountId=project)
    assert own["QueueUrl"] == url
    sqs.delete_queue(QueueUrl=url)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.get_queue_url(QueueName="orders")
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.delete_queue(QueueUrl=url)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])


def test_queue_defaults(sqs: Any, project: str) -> None:
    before = int(time.time())
    url = sqs.create_queue(QueueName="plain")["QueueUrl"]
    after = int(time.time()) + 1
    shown = attributes(sqs, url)
    created = int(shown.pop("CreatedTimestamp"))
    assert before <= created <= after
    assert shown.pop("LastModifiedTimestamp") == str(created)
    assert shown.pop("QueueArn") == f"arn:aws:sqs:us-east-1:{project}:plain"
    assert shown == DEFAULTS


def test_create_with_attributes_and_tags(sqs: Any, zaqar: httpx.Client) -> None:
    url = sqs.create_queue(
        QueueName="tuned",
        Attributes={
            "VisibilityTimeout": "45",
            "DelaySeconds": "5",
            "MessageRetentionPeriod": "600",
            "MaximumMessageSize": "2048",
            "ReceiveMessageWaitTimeSeconds": "20",
        },
        tags={"team": "billing", "empty": ""},
    )["QueueUrl"]
    shown = attributes(
        sqs,
        url,
        "VisibilityTimeout",
        "DelaySeconds",
        "MessageRetentionPeriod",
        "MaximumMessageSize",
        "ReceiveMessageWaitTimeSeconds",
    )
    assert shown == {
        "VisibilityTimeout": "45",
        "DelaySeconds": "5",
        "MessageRetentionPeriod": "600",
        "MaximumMessageSize": "2048",
        "ReceiveMessageWaitTimeSeconds": "20",
    }
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"team": "billing", "empty": ""}
    # Zaqar's reserved keys carry what they mean; the rest sits under _sqs.
    meta = zaqar_metadata(zaqar, "tuned")
    assert meta["_default_message_ttl"] == 600
    assert meta["_default_message_delay"] == 5
    assert meta["_max_messages_post_size"] == 2048
    assert meta["_sqs"]["VisibilityTimeout"] == 45
    assert meta["_sqs"]["ReceiveMessageWaitTimeSeconds"] == 20
    assert meta["_sqs"]["tags"] == {"team": "billing", "empty": ""}


def test_create_existing_queue(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="again", Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
    # The same attributes (or none): the existing queue's URL.
    same = sqs.create_queue(QueueName="again", Attributes={"VisibilityTimeout": "60"})
    assert same["QueueUrl"] == url
    assert sqs.create_queue(QueueName="again")["QueueUrl"] == url
    # The value in force counts, default or not.
    assert sqs.create_queue(QueueName="again", Attributes={"DelaySeconds": "0"})["QueueUrl"] == url
    with pytest.raises(sqs.exceptions.QueueNameExists) as caught:
        sqs.create_queue(QueueName="again", Attributes={"VisibilityTimeout": "61"})
    assert error_code(caught.value) == "QueueAlreadyExists"
    assert "VisibilityTimeout" in caught.value.response["Error"]["Message"]
    assert attributes(sqs, url, "VisibilityTimeout") == {"VisibilityTimeout": "60"}


def test_create_existing_queue_compares_redrive_policy(sqs: Any) -> None:
    dlq = sqs.create_queue(QueueName="again-dlq")["QueueUrl"]
    policy = redrive(arn(sqs, dlq), 4)
    url = sqs.create_queue(QueueName="again-src", Attributes={"RedrivePolicy": policy})["QueueUrl"]
    # The count as text means the same.
    same = redrive(arn(sqs, dlq), "4")
    assert (
        sqs.create_queue(QueueName="again-src", Attributes={"RedrivePolicy": same})["QueueUrl"]
        == url
    )
    with pytest.raises(sqs.exceptions.QueueNameExists):
        sqs.create_queue(
            QueueName="again-src", Attributes={"RedrivePolicy": redrive(arn(sqs, dlq), 5)}
        )


@pytest.mark.parametrize(
    ("name", "code", "says"),
    [
        ("x" * 65, "InvalidParameterValue", "64"),
        ("x" * 80, "InvalidParameterValue", "64"),
        ("x" * 81, "InvalidParameterValue", "1 to 80"),
        ("", "InvalidParameterValue", "1 to 80"),
        ("has.dot", "InvalidParameterValue", "alphanumeric"),
        ("sp ace", "InvalidParameterValue", "alphanumeric"),
        ("jobs.fifo", "AWS.SimpleQueueService.UnsupportedOperation", "FIFO"),
    ],
)
def test_create_refuses_names(sqs: Any, name: str, code: str, says: str) -> None:
    with pytest.raises(ClientError) as caught:
        sqs.create_queue(QueueName=name)
    assert error_code(caught.value) == code
    assert says in caught.value.response["Error"]["Message"]
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_create_longest_names(sqs: Any) -> None:
    name = "a-Z_9" * 12 + "abcd"
    assert len(name) == 64
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    assert url.endswith("/" + name)


def test_fifo_queue_attribute(sqs: Any) -> None:
    with pytest.raises(sqs.exceptions.UnsupportedOperation) as caught:
        sqs.create_queue(QueueName="fifo", Attributes={"FifoQueue": "true"})
    assert "FIFO" in caught.value.response["Error"]["Message"]
    # A standard queue may say so.
    url = sqs.create_queue(QueueName="standard", Attributes={"FifoQueue": "false"})["QueueUrl"]
    with pytest.raises(sqs.exceptions.InvalidAttributeName):
        sqs.create_queue(QueueName="dedup", Attributes={"ContentBasedDeduplication": "true"})
    with pytest.raises(sqs.exceptions.InvalidAttributeName):
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"FifoQueue": "false"})


def test_get_queue_url_of_absent_or_foreign_queue(
    sqs: Any, other_sqs: Callable[[], Any], project: str
) -> None:
    sqs.create_queue(QueueName="mine")
    for name in ("absent", "x" * 80, "bad name"):
        with pytest.raises(sqs.exceptions.QueueDoesNotExist):
            sqs.get_queue_url(QueueName=name)
    # Only the caller's own project may be named as the owner.
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.get_queue_url(QueueName="mine", QueueOwnerAWSAccountId="someone-else")
    other = other_sqs()
    with pytest.raises(other.exceptions.QueueDoesNotExist):
        other.get_queue_url(QueueName="mine")
    with pytest.raises(other.exceptions.QueueDoesNotExist):
        other.get_queue_url(QueueName="mine", QueueOwnerAWSAccountId=project)


# ------------------------------------------------------------------------------ listing


def test_list_queues_prefix(sqs: Any, zaqar: httpx.Client, server: TidingsServer) -> None:
    names = ["a", "a-b", "a_b", "aa", "ab", "b", "B", "a9", "ba"]
    for name in names:
        sqs.create_queue(QueueName=name)
    # Zaqar's names may hold a dot: such queues are listed too.
    assert zaqar.put("/queues/a.dot").status_code == 201
    everything = sqs.list_queues()
    assert "NextToken" not in everything
    shown = [u.rsplit("/", 1)[1] for u in everything["QueueUrls"]]
    assert shown == sorted([*names, "a.dot"])
    for prefix in ("a", "a-", "a_", "ab", "b", "B", "a.", "c", "zzz", "aa"):
        found = sqs.list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])
        assert [u.rsplit("/", 1)[1] for u in found] == sorted(
            n for n in [*names, "a.dot"] if n.startswith(prefix)
        ), prefix
    # A prefix no name can start with finds nothing.
    assert "QueueUrls" not in sqs.list_queues(QueueNamePrefix="ü")
    assert "QueueUrls" not in sqs.list_queues(QueueNamePrefix="x" * 90)


def test_list_queues_empty_project(sqs: Any) -> None:
    listing = sqs.list_queues()
    assert "QueueUrls" not in listing
    assert "NextToken" not in listing


def test_list_queues_pages(sqs: Any) -> None:
    names = [f"page-{i:02d}" for i in range(7)] + ["other"]
    for name in names:
        sqs.create_queue(QueueName=name)
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        kwargs: dict[str, Any] = {"QueueNamePrefix": "page-", "MaxResults": 3}
        if token:
            kwargs["NextToken"] = token
        page = sqs.list_queues(**kwargs)
        seen += [u.rsplit("/", 1)[1] for u in page.get("QueueUrls", [])]
        pages += 1
        token = page.get("NextToken")
        if not token:
            break
    assert seen == names[:7]
    assert pages == 3  # 3 + 3 + 1: a full last page is known to be the last
    # boto3's paginator follows the same tokens.
    paginator = sqs.get_paginator("list_queues")
    urls = [u for p in paginator.paginate(PaginationConfig={"PageSize": 2}) for u in p["QueueUrls"]]
    assert [u.rsplit("/", 1)[1] for u in urls] == sorted(names)
    exact = sqs.list_queues(QueueNamePrefix="page-", MaxResults=7)
    assert len(exact["QueueUrls"]) == 7
    assert "NextToken" not in exact


@pytest.mark.parametrize("limit", [0, 1001, -1])
def test_list_queues_max_results_range(sqs: Any, limit: int) -> None:
    with pytest.raises(ClientError) as caught:
        sqs.list_queues(MaxResults=limit)
    assert error_code(caught.value) == "InvalidParameterValue"


@pytest.mark.parametrize("token", ["garbage", "eyJ4IjoxfQ", "!!!", "eyJhZnRlciI6Ii4uLyJ9"])
def test_list_queues_invalid_token(sqs: Any, token: str) -> None:
    with pytest.raises(ClientError) as caught:
        sqs.list_queues(MaxResults=5, NextToken=token)
    assert error_code(caught.value) == "InvalidParameterValue"


def test_listings_are_per_project(sqs: Any, other_sqs: Callable[[], Any]) -> None:
    sqs.create_queue(QueueName="private")
    other = other_sqs()
    assert "QueueUrls" not in other.list_queues()
    url = sqs.get_queue_url(QueueName="private")["QueueUrl"]
    with pytest.raises(other.exceptions.QueueDoesNotExist):
        other.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
    with pytest.raises(other.exceptions.QueueDoesNotExist):
        other.delete_queue(QueueUrl=url)


# --------------------------------------------------------------------------- attributes


def test_get_queue_attributes_selection(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="sel")["QueueUrl"]
    assert attributes(sqs, url, "VisibilityTimeout", "QueueArn").keys() == {
        "VisibilityTimeout",
        "QueueArn",
    }
    # No names: no attributes, as SQS.
    assert "Attributes" not in sqs.get_queue_attributes(QueueUrl=url)
    # SQS's names Tidings does not keep are not shown; unknown names are refused.
    assert attributes(sqs, url, "Policy", "KmsMasterKeyId", "FifoQueue") == {}
    with pytest.raises(sqs.exceptions.InvalidAttributeName) as caught:
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout", "Colour"])
    assert "Colour" in caught.value.response["Error"]["Message"]


BAD_VALUES = [
    ("VisibilityTimeout", ["-1", "43201", "abc", "1.5", "", " 3", "0x10", "1e3"]),
    ("DelaySeconds", ["-1", "901", "ten"]),
    ("MessageRetentionPeriod", ["59", "1209601", "0"]),
    ("MaximumMessageSize", ["1023", "1048577", "0"]),
    ("ReceiveMessageWaitTimeSeconds", ["-1", "21"]),
]


@pytest.mark.parametrize(("name", "values"), BAD_VALUES)
def test_set_queue_attributes_refuses_values(sqs: Any, name: str, values: list[str]) -> None:
    url = sqs.create_queue(QueueName="ranges")["QueueUrl"]
    before = attributes(sqs, url)
    for value in values:
        with pytest.raises(sqs.exceptions.InvalidAttributeValue) as caught:
            sqs.set_queue_attributes(QueueUrl=url, Attributes={name: value})
        assert name in caught.value.response["Error"]["Message"]
        with pytest.raises(sqs.exceptions.InvalidAttributeValue):
            sqs.create_queue(QueueName="ranges-new", Attributes={name: value})
    assert attributes(sqs, url) == before
    assert "QueueUrls" not in sqs.list_queues(QueueNamePrefix="ranges-new")


def test_set_queue_attributes_bounds(sqs: Any, zaqar: httpx.Client) -> None:
    url = sqs.create_queue(QueueName="bounds")["QueueUrl"]
    created = attributes(sqs, url, "CreatedTimestamp")["CreatedTimestamp"]
    for low, high in [
        ({"VisibilityTimeout": "0"}, {"VisibilityTimeout": "43200"}),
        ({"DelaySeconds": "0"}, {"DelaySeconds": "900"}),
        ({"MessageRetentionPeriod": "60"}, {"MessageRetentionPeriod": "1209600"}),
        ({"MaximumMessageSize": "1024"}, {"MaximumMessageSize": "262144"}),
        ({"ReceiveMessageWaitTimeSeconds": "0"}, {"ReceiveMessageWaitTimeSeconds": "20"}),
    ]:
        for values in (low, high):
            sqs.set_queue_attributes(QueueUrl=url, Attributes=values)
            assert attributes(sqs, url, *values) == values
    shown = attributes(sqs, url)
    assert shown["CreatedTimestamp"] == created
    assert int(shown["LastModifiedTimestamp"]) >= int(created)
    meta = zaqar_metadata(zaqar, "bounds")
    assert meta["_sqs"]["VisibilityTimeout"] == 43200
    assert meta["_default_message_ttl"] == 1209600


def test_set_queue_attributes_refuses_names(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="names")["QueueUrl"]
    for name in ("Colour", "All", "QueueArn", "ApproximateNumberOfMessages", "CreatedTimestamp"):
        with pytest.raises(sqs.exceptions.InvalidAttributeName):
            sqs.set_queue_attributes(QueueUrl=url, Attributes={name: "1"})
    for name, value in (("Policy", '{"Version": "2012-10-17"}'), ("KmsMasterKeyId", "k")):
        with pytest.raises(sqs.exceptions.UnsupportedOperation):
            sqs.set_queue_attributes(QueueUrl=url, Attributes={name: value})
    # Their "off" values are what Tidings does.
    sqs.set_queue_attributes(
        QueueUrl=url, Attributes={"Policy": "", "SqsManagedSseEnabled": "false"}
    )
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.set_queue_attributes(
            QueueUrl=url.replace("/names", "/absent"), Attributes={"DelaySeconds": "1"}
        )


def test_limits_of_this_server(make_server: type[TidingsServer], tmp_path: Any) -> None:
    srv = make_server(
        tmp_path,
        env={
            "TIDINGS_TRANSPORT__MAX_MESSAGE_TTL": "7200",
            "TIDINGS_TRANSPORT__MAX_MESSAGES_POST_SIZE": "65536",
            "TIDINGS_TRANSPORT__MAX_MESSAGE_DELAY": "60",
        },
    ).start()
    sqs = sqs_client(srv.url, f"sqs-{uuid.uuid4().hex[:12]}")
    url = sqs.create_queue(QueueName="narrow")["QueueUrl"]
    # SQS's defaults where the server allows them, its own limits where it does not.
    shown = attributes(sqs, url, "MessageRetentionPeriod", "MaximumMessageSize")
    assert shown == {"MessageRetentionPeriod": "7200", "MaximumMessageSize": "65536"}
    for name, value, limit in [
        ("MessageRetentionPeriod", "7201", "7200"),
        ("MaximumMessageSize", "65537", "65536"),
        ("DelaySeconds", "61", "60"),
    ]:
        with pytest.raises(sqs.exceptions.InvalidAttributeValue) as caught:
            sqs.set_queue_attributes(QueueUrl=url, Attributes={name: value})
        assert f"at most {limit}" in caught.value.response["Error"]["Message"]


# ---------------------------------------------------------------------------- counters


def test_approximate_counters(sqs: Any, zaqar: httpx.Client) -> None:
    url = sqs.create_queue(QueueName="counted")["QueueUrl"]
    post_messages(zaqar, "counted", 5)
    claim(zaqar, "counted", 2)
    counters = attributes(
        sqs,
        url,
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    )
    assert counters == {
        "ApproximateNumberOfMessages": "3",
        "ApproximateNumberOfMessagesNotVisible": "2",
        "ApproximateNumberOfMessagesDelayed": "0",
    }


def test_approximate_delayed_counter(sqs: Any, zaqar: httpx.Client) -> None:
    url = sqs.create_queue(QueueName="later", Attributes={"DelaySeconds": "600"})["QueueUrl"]
    post_messages(zaqar, "later", 2)
    resp = zaqar.post(
        "/queues/later/messages", json={"messages": [{"body": 1, "ttl": 3600, "delay": 0}]}
    )
    assert resp.status_code == 201, resp.text
    shown = attributes(sqs, url)
    assert shown["ApproximateNumberOfMessagesDelayed"] == "2"
    assert shown["ApproximateNumberOfMessages"] == "1"
    assert shown["ApproximateNumberOfMessagesNotVisible"] == "0"


# ------------------------------------------------------------------------ purge, delete


def test_purge_queue(sqs: Any, zaqar: httpx.Client) -> None:
    url = sqs.create_queue(QueueName="purged", Attributes={"VisibilityTimeout": "40"})["QueueUrl"]
    post_messages(zaqar, "purged", 4)
    claim(zaqar, "purged", 1)
    # Subscribed after the posts: nothing is delivered to it.
    hook = {"subscriber": "https://hooks.example.com/tidings", "ttl": 3600}
    assert zaqar.post("/queues/purged/subscriptions", json=hook).status_code == 201
    sqs.purge_queue(QueueUrl=url)
    shown = attributes(sqs, url)
    assert shown["ApproximateNumberOfMessages"] == "0"
    assert shown["ApproximateNumberOfMessagesNotVisible"] == "0"
    assert shown["VisibilityTimeout"] == "40"
    # SQS's purge is of messages: subscriptions stay.
    subscriptions = zaqar.get("/queues/purged/subscriptions").json()["subscriptions"]
    assert len(subscriptions) == 1
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.purge_queue(QueueUrl=url.replace("/purged", "/absent"))


def test_delete_queue_removes_messages(sqs: Any, zaqar: httpx.Client) -> None:
    url = sqs.create_queue(QueueName="gone")["QueueUrl"]
    post_messages(zaqar, "gone", 3)
    sqs.delete_queue(QueueUrl=url)
    assert "QueueUrls" not in sqs.list_queues(QueueNamePrefix="gone")
    assert zaqar.get("/queues/gone/stats").json()["messages"]["total"] == 0
    # Made again, it starts empty, with SQS's defaults.
    url = sqs.create_queue(QueueName="gone")["QueueUrl"]
    assert attributes(sqs, url, "ApproximateNumberOfMessages") == {
        "ApproximateNumberOfMessages": "0"
    }


# ---------------------------------------------------------------------------------- tags


def test_tags(sqs: Any, zaqar: httpx.Client) -> None:
    url = sqs.create_queue(QueueName="tagged", tags={"a": "1"})["QueueUrl"]
    sqs.tag_queue(QueueUrl=url, Tags={"b": "2", "a": "one"})
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"a": "one", "b": "2"}
    sqs.untag_queue(QueueUrl=url, TagKeys=["a", "not-there"])
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"b": "2"}
    sqs.untag_queue(QueueUrl=url, TagKeys=["b"])
    assert "Tags" not in sqs.list_queue_tags(QueueUrl=url)
    assert "tags" not in zaqar_metadata(zaqar, "tagged")["_sqs"]
    # Tags change no attribute.
    assert attributes(sqs, url, "VisibilityTimeout") == {"VisibilityTimeout": "30"}


def test_tag_limits(sqs: Any) -> None:
    url = sqs.create_queue(QueueName="tag-limits")["QueueUrl"]
    sqs.tag_queue(QueueUrl=url, Tags={f"k{i}": "v" for i in range(50)})
    sqs.tag_queue(QueueUrl=url, Tags={"k0": "replaced"})  # still 50
    with pytest.raises(ClientError) as caught:
        sqs.tag_queue(QueueUrl=url, Tags={"k50": "v"})
    assert error_code(caught.value) == "InvalidParameterValue"
    assert "Too many tags" in caught.value.response["Error"]["Message"]
    assert len(sqs.list_queue_tags(QueueUrl=url)["Tags"]) == 50
    sqs.untag_queue(QueueUrl=url, TagKeys=[f"k{i}" for i in range(50)])
    sqs.tag_queue(QueueUrl=url, Tags={"k" * 128: "v" * 256, "ünïcode": "ok"})
    for tags in ({"k" * 129: "v"}, {"k": "v" * 257}, {"": "v"}):
        with pytest.raises(ClientError) as caught:
            sqs.tag_queue(QueueUrl=url, Tags=tags)
        assert error_code(caught.value) == "InvalidParameterValue"
    with pytest.raises(ClientError) as caught:
        sqs.tag_queue(QueueUrl=url, Tags={})
    assert error_code(caught.value) == "MissingParameter"
    with pytest.raises(ClientError) as caught:
        sqs.untag_queue(QueueUrl=url, TagKeys=[])
    assert error_code(caught.value) == "MissingParameter"
    with pytest.raises(ClientError) as caught:
        sqs.create_queue(QueueName="tag-many", tags={f"k{i}": "v" for i in range(51)})
    assert error_code(caught.value) == "InvalidParameterValue"
    absent = url.replace("/tag-limits", "/absent")
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.tag_queue(QueueUrl=absent, Tags={"a": "b"})
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.list_queue_tags(QueueUrl=absent)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.untag_queue(QueueUrl=absent, TagKeys=["a"])


# --------------------------------------------------------------------- dead-letter queues


def test_redrive_policy(sqs: Any, zaqar: httpx.Client, project: str) -> None:
    dlq = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    src = sqs.create_queue(QueueName="src")["QueueUrl"]
    dlq_arn = arn(sqs, dlq)
    sqs.set_queue_attributes(QueueUrl=src, Attributes={"RedrivePolicy": redrive(dlq_arn, "5")})
    shown = attributes(sqs, src, "RedrivePolicy")["RedrivePolicy"]
    assert json.loads(shown) == {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5}
    meta = zaqar_metadata(zaqar, "src")
    assert meta["_dead_letter_queue"] == "dlq"
    assert meta["_max_claim_count"] == 5
    assert sqs.list_dead_letter_source_queues(QueueUrl=dlq)["queueUrls"] == [src]
    assert "queueUrls" not in sqs.list_dead_letter_source_queues(QueueUrl=src)
    # An empty policy removes it.
    sqs.set_queue_attributes(QueueUrl=src, Attributes={"RedrivePolicy": ""})
    assert "RedrivePolicy" not in attributes(sqs, src)
    meta = zaqar_metadata(zaqar, "src")
    assert meta["_dead_letter_queue"] is None
    assert meta["_max_claim_count"] is None
    assert "queueUrls" not in sqs.list_dead_letter_source_queues(QueueUrl=dlq)


@pytest.mark.parametrize(
    ("policy", "says"),
    [
        ("not json", "valid JSON map"),
        ("[1]", "valid JSON map"),
        ('{"maxReceiveCount": 3}', "deadLetterTargetArn"),
        ('{"deadLetterTargetArn": "{arn}"}', "maxReceiveCount"),
        ('{"deadLetterTargetArn": "{arn}", "maxReceiveCount": 0}', "maxReceiveCount"),
        ('{"deadLetterTargetArn": "{arn}", "maxReceiveCount": 1001}', "maxReceiveCount"),
        ('{"deadLetterTargetArn": "{arn}", "maxReceiveCount": "x"}', "maxReceiveCount"),
        ('{"deadLetterTargetArn": "{arn}", "maxReceiveCount": 2.5}', "maxReceiveCount"),
        ('{"deadLetterTargetArn": "{arn}", "maxReceiveCount": 3, "x": 1}', "Only following"),
        ('{"deadLetterTargetArn": "{absent}", "maxReceiveCount": 3}', "does not exist"),
        ('{"deadLetterTargetArn": "{foreign}", "maxReceiveCount": 3}', "does not exist"),
        ('{"deadLetterTargetArn": "dlq", "maxReceiveCount": 3}', "does not exist"),
        ('{"deadLetterTargetArn": 7, "maxReceiveCount": 3}', "deadLetterTargetArn"),
        ('{"deadLetterTargetArn": "{self}", "maxReceiveCount": 3}', "own dead-letter"),
    ],
)
def test_redrive_policy_refused(sqs: Any, policy: str, says: str) -> None:
    dlq_arn = arn(sqs, sqs.create_queue(QueueName="dlq")["QueueUrl"])
    src = sqs.create_queue(QueueName="src")["QueueUrl"]
    text = (
        policy.replace("{arn}", dlq_arn)
        .replace("{absent}", dlq_arn.replace(":dlq", ":absent"))
        .replace("{foreign}", dlq_arn.replace(":sqs-", ":other-"))
        .replace("{self}", arn(sqs, src))
    )
    with pytest.raises(ClientError) as caught:
        sqs.set_queue_attributes(QueueUrl=src, Attributes={"RedrivePolicy": text})
    assert error_code(caught.value) == "InvalidParameterValue"
    assert says in caught.value.response["Error"]["Message"]
    assert "RedrivePolicy" not in attributes(sqs, src)
    if "{self}" not in policy:
        with pytest.raises(ClientError) as caught:
            sqs.create_queue(QueueName="src2", Attributes={"RedrivePolicy": text})
        assert error_code(caught.value) == "InvalidParameterValue"


@pytest.mark.parametrize("name", ["RedrivePolicy", "RedriveAllowPolicy"])
def test_policies_deep_or_long(sqs: Any, name: str) -> None:
    url = sqs.create_queue(QueueName="deep")["QueueUrl"]
    for text in ("[" * 50_000 + "]" * 50_000, '{"a": "' + "x" * 20_000 + '"}'):
        with pytest.raises(ClientError) as caught:
            sqs.set_queue_attributes(QueueUrl=url, Attributes={name: text})
        assert error_code(caught.value) == "InvalidParameterValue"


def test_redrive_allow_policy(sqs: Any, zaqar: httpx.Client) -> None:
    dlq = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    ok = sqs.create_queue(QueueName="ok")["QueueUrl"]
    other = sqs.create_queue(QueueName="other")["QueueUrl"]
    dlq_arn = arn(sqs, dlq)
    allow = json.dumps({"redrivePermission": "byQueue", "sourceQueueArns": [arn(sqs, ok)]})
    sqs.set_queue_attributes(QueueUrl=dlq, Attributes={"RedriveAllowPolicy": allow})
    assert json.loads(attributes(sqs, dlq, "RedriveAllowPolicy")["RedriveAllowPolicy"]) == {
        "redrivePermission": "byQueue",
        "sourceQueueArns": [arn(sqs, ok)],
    }
    assert isinstance(zaqar_metadata(zaqar, "dlq")["_sqs"]["RedriveAllowPolicy"], str)
    sqs.set_queue_attributes(QueueUrl=ok, Attributes={"RedrivePolicy": redrive(dlq_arn)})
    with pytest.raises(ClientError) as caught:
        sqs.set_queue_attributes(QueueUrl=other, Attributes={"RedrivePolicy": redrive(dlq_arn)})
    assert error_code(caught.value) == "InvalidParameterValue"
    assert "RedriveAllowPolicy" in caught.value.response["Error"]["Message"]
    with pytest.raises(ClientError):
        sqs.create_queue(QueueName="new", Attributes={"RedrivePolicy": redrive(dlq_arn)})
    # A source named in advance may be created with the policy.
    future = dlq_arn.replace(":dlq", ":future")
    allow = json.dumps({"redrivePermission": "byQueue", "sourceQueueArns": [future]})
    sqs.set_queue_attributes(QueueUrl=dlq, Attributes={"RedriveAllowPolicy": allow})
    sqs.create_queue(QueueName="future", Attributes={"RedrivePolicy": redrive(dlq_arn)})
    deny = json.dumps({"redrivePermission": "denyAll"})
    sqs.set_queue_attributes(QueueUrl=dlq, Attributes={"RedriveAllowPolicy": deny})
    with pytest.raises(ClientError):
        sqs.set_queue_attributes(QueueUrl=other, Attributes={"RedrivePolicy": redrive(dlq_arn)})
    sqs.set_queue_attributes(
        QueueUrl=dlq, Attributes={"RedriveAllowPolicy": '{"redrivePermission": "allowAll"}'}
    )
    sqs.set_queue_attributes(QueueUrl=other, Attributes={"RedrivePolicy": redrive(dlq_arn)})
    sqs.set_queue_attributes(QueueUrl=dlq, Attributes={"RedriveAllowPolicy": ""})
    assert "RedriveAllowPolicy" not in attributes(sqs, dlq)
    sources = sqs.list_dead_letter_source_queues(QueueUrl=dlq)["queueUrls"]
    assert [u.rsplit("/", 1)[1] for u in sources] == ["future", "ok", "other"]


@pytest.mark.parametrize(
    "policy",
    [
        "{}",
        '{"redrivePermission": "some"}',
        '{"redrivePermission": "byQueue"}',
        '{"redrivePermission": "byQueue", "sourceQueueArns": []}',
        '{"redrivePermission": "byQueue", "sourceQueueArns": "{arn}"}',
        '{"redrivePermission": "byQueue", "sourceQueueArns": ["not-an-arn"]}',
        '{"redrivePermission": "byQueue", "sourceQueueArns": [{eleven}]}',
        '{"redrivePermission": "allowAll", "sourceQueueArns": ["{arn}"]}',
        '{"redrivePermission": "allowAll", "extra": 1}',
        "allowAll",
    ],
)
def test_redrive_allow_policy_refused(sqs: Any, policy: str) -> None:
    url = sqs.create_queue(QueueName="dlq")["QueueUrl"]
    queue_arn = arn(sqs, url)
    eleven = ", ".join(f'"{queue_arn}{i}"' for i in range(11))
    text = policy.replace("{arn}", queue_arn).replace("{eleven}", eleven)
    with pytest.raises(ClientError) as caught:
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedriveAllowPolicy": text})
    assert error_code(caught.value) == "InvalidParameterValue"


def test_redrive_moves_after_max_receive_count(sqs: Any, zaqar: httpx.Client) -> None:
    dlq = sqs.create_queue(QueueName="dead")["QueueUrl"]
    src = sqs.create_queue(
        QueueName="work", Attributes={"RedrivePolicy": redrive(arn(sqs, dlq), 2)}
    )["QueueUrl"]
    post_messages(zaqar, "work", 1)
    for _ in range(2):  # received twice, released each time
        claim_id, messages = claim(zaqar, "work", 1)
        assert len(messages) == 1
        assert zaqar.delete(f"/queues/work/claims/{claim_id}").status_code == 204
    # The third receive finds it gone to the dead-letter queue.
    resp = zaqar.post("/queues/work/claims", json={"ttl": 60, "grace": 60})
    assert resp.status_code == 204, resp.text
    assert attributes(sqs, dlq, "ApproximateNumberOfMessages") == {
        "ApproximateNumberOfMessages": "1"
    }
    assert attributes(sqs, src, "ApproximateNumberOfMessages") == {
        "ApproximateNumberOfMessages": "0"
    }


def test_list_dead_letter_source_queues_pages(sqs: Any, zaqar: httpx.Client) -> None:
    dlq = sqs.create_queue(QueueName="sink")["QueueUrl"]
    policy = redrive(arn(sqs, dlq))
    sources = [f"src-{i}" for i in range(5)]
    for name in sources:
        sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": policy})
    sqs.create_queue(QueueName="unrelated")
    # Zaqar's half a policy (no _max_claim_count) does not redrive: not a source.
    half = {"_dead_letter_queue": "sink"}
    assert zaqar.put("/queues/half", json=half).status_code == 201
    assert zaqar.put("/queues/zaqar-src", json={**half, "_max_claim_count": 2}).status_code == 201
    everything = sqs.list_dead_letter_source_queues(QueueUrl=dlq)
    assert "NextToken" not in everything
    expected = sorted([*sources, "zaqar-src"])
    assert [u.rsplit("/", 1)[1] for u in everything["queueUrls"]] == expected
    seen: list[str] = []
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"QueueUrl": dlq, "MaxResults": 2}
        if token:
            kwargs["NextToken"] = token
        page = sqs.list_dead_letter_source_queues(**kwargs)
        assert len(page.get("queueUrls", [])) <= 2
        seen += [u.rsplit("/", 1)[1] for u in page.get("queueUrls", [])]
        token = page.get("NextToken")
        if not token:
            break
    assert seen == expected
    paginator = sqs.get_paginator("list_dead_letter_source_queues")
    pages = paginator.paginate(QueueUrl=dlq, PaginationConfig={"PageSize": 4})
    assert [u.rsplit("/", 1)[1] for p in pages for u in p.get("queueUrls", [])] == expected
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.list_dead_letter_source_queues(QueueUrl=dlq.replace("/sink", "/absent"))


def test_list_dead_letter_sources_past_the_scan_budget(
    make_server: type[TidingsServer], tmp_path: Any
) -> None:
    srv = make_server(tmp_path, env={"TIDINGS_STORAGE__SCAN_BUDGET": "100"}).start()
    sqs = sqs_client(srv.url, f"sqs-{uuid.uuid4().hex[:12]}")
    dlq = sqs.create_queue(QueueName="a-dlq")["QueueUrl"]
    policy = redrive(arn(sqs, dlq))
    for i in range(150):
        sqs.create_queue(QueueName=f"b-{i:03d}")
    for name in ("c-1", "c-2"):
        sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": policy})
    # Each request examines at most the budget: a page may come back short, even empty,
    # with a NextToken that leads on until every source is found.
    seen: list[str] = []
    token: str | None = None
    requests = 0
    while True:
        page = sqs.list_dead_letter_source_queues(
            QueueUrl=dlq, MaxResults=5, **({"NextToken": token} if token else {})
        )
        requests += 1
        seen += [u.rsplit("/", 1)[1] for u in page.get("queueUrls", [])]
        token = page.get("NextToken")
        if not token:
            break
        assert requests < 10
    assert seen == ["c-1", "c-2"]
    assert requests >= 2


# ------------------------------------------------------------------- Zaqar's API, both ways


def test_zaqar_queue_seen_through_sqs(sqs: Any, zaqar: httpx.Client, server: TidingsServer) -> None:
    meta = {
        "_default_message_ttl": 7200,
        "_max_messages_post_size": 4096,
        "_default_message_delay": 5,
        "_max_claim_count": 3,
        "_dead_letter_queue": "zq-dlq",
        "custom": {"k": 1},
    }
    assert zaqar.put("/queues/zq-dlq").status_code == 201
    assert zaqar.put("/queues/zq", json=meta).status_code == 201
    url = sqs.get_queue_url(QueueName="zq")["QueueUrl"]
    shown = attributes(sqs, url)
    # What is in force: the queue's values, SQS's defaults where Zaqar has none, and no
    # timestamps (Zaqar keeps none).
    assert shown["MessageRetentionPeriod"] == "7200"
    assert shown["MaximumMessageSize"] == "4096"
    assert shown["DelaySeconds"] == "5"
    assert shown["VisibilityTimeout"] == "30"
    assert shown["ReceiveMessageWaitTimeSeconds"] == "0"
    assert json.loads(shown["RedrivePolicy"]) == {
        "deadLetterTargetArn": arn(sqs, sqs.get_queue_url(QueueName="zq-dlq")["QueueUrl"]),
        "maxReceiveCount": 3,
    }
    assert "CreatedTimestamp" not in shown
    # A plain Zaqar queue shows Zaqar's defaults (retention = default_message_ttl).
    assert zaqar.put("/queues/zq-plain").status_code == 201
    plain = attributes(sqs, sqs.get_queue_url(QueueName="zq-plain")["QueueUrl"])
    assert plain["MessageRetentionPeriod"] == "3600"
    assert plain["MaximumMessageSize"] == "262144"
    # SQS's changes are Zaqar's metadata; keys of Zaqar's own stay.
    sqs.set_queue_attributes(
        QueueUrl=url, Attributes={"VisibilityTimeout": "45", "MessageRetentionPeriod": "600"}
    )
    meta_now = zaqar_metadata(zaqar, "zq")
    assert meta_now["_default_message_ttl"] == 600
    assert meta_now["_sqs"]["VisibilityTimeout"] == 45
    assert meta_now["custom"] == {"k": 1}
    assert meta_now["_max_claim_count"] == 3
    assert "LastModifiedTimestamp" in attributes(sqs, url)
    # And Zaqar's changes are SQS's attributes.
    patch = [{"op": "replace", "path": "/metadata/_default_message_delay", "value": 9}]
    resp = zaqar.patch(
        "/queues/zq",
        json=patch,
        headers={"Content-Type": "application/openstack-messaging-v2.0-json-patch"},
    )
    assert resp.status_code == 200, resp.text
    assert attributes(sqs, url, "DelaySeconds") == {"DelaySeconds": "9"}
    # A queue made through Zaqar is the same queue for CreateQueue.
    assert sqs.create_queue(QueueName="zq", Attributes={"DelaySeconds": "9"})["QueueUrl"] == url


def test_sqs_queue_seen_through_zaqar(sqs: Any, zaqar: httpx.Client) -> None:
    sqs.create_queue(QueueName="from-sqs", Attributes={"DelaySeconds": "3"})
    listed = zaqar.get("/queues", params={"detailed": "true"}).json()["queues"]
    (entry,) = [q for q in listed if q["name"] == "from-sqs"]
    assert entry["metadata"]["_default_message_delay"] == 3
    assert entry["metadata"]["_sqs"]["VisibilityTimeout"] == 30
    # Deleted through Zaqar, gone for SQS.
    assert zaqar.delete("/queues/from-sqs").status_code == 204
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.get_queue_url(QueueName="from-sqs")


def test_garbage_under_sqs_key_is_not_in_force(sqs: Any, zaqar: httpx.Client) -> None:
    odd = {"_sqs": {"VisibilityTimeout": 10**9, "ReceiveMessageWaitTimeSeconds": "x", "tags": 5}}
    assert zaqar.put("/queues/odd", json=odd).status_code == 201
    url = sqs.get_queue_url(QueueName="odd")["QueueUrl"]
    shown = attributes(sqs, url, "VisibilityTimeout", "ReceiveMessageWaitTimeSeconds")
    assert shown == {"VisibilityTimeout": "30", "ReceiveMessageWaitTimeSeconds": "0"}
    assert "Tags" not in sqs.list_queue_tags(QueueUrl=url)
    sqs.tag_queue(QueueUrl=url, Tags={"k": "v"})
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"k": "v"}
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "7"})
    assert zaqar_metadata(zaqar, "odd")["_sqs"]["VisibilityTimeout"] == 7
