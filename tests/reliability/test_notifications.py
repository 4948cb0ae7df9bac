"""Notification delivery end to end: a real server pushes to a real local listener.

Spec api-v2-extended §1.5 (confirmation) and §2 (notifications), with Tidings' fixes:
deliveries carry ``message_id``/``href``, honour delays, retry 5xx and timeouts, are kept
in a durable outbox (survive SIGKILL) and, once retries are exhausted, are listed at
``GET .../subscriptions/{sid}/failures``.

No test measures time: the order of attempts and their count are checked, the retry
schedule itself is unit-tested (tests/unit/test_retry.py). That nothing more arrives is
shown by the outbox owing nothing more (tests/outbox.py), or by a later delivery that the
dispatcher could only send after it. Each test uses paths, addresses and projects of its
own, so tests are independent and safe under pytest-xdist.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import json
import re
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests import notify_listeners
from tests.backends import StoreNamespace
from tests.notify_listeners import Recorded, SmtpSink, WebhookListener
from tests.outbox import owed, wait_settled
from tests.server import TidingsServer, client_headers, wait_until

webhook_listener = notify_listeners.webhook_listener
smtp_sink = notify_listeners.smtp_sink

SECRET = "notify-test-secret"
FAST = {
    "TIDINGS_NOTIFICATION__POLL_INTERVAL": "0.1",
    # the listeners are on loopback, which subscribers may not point at by default
    "TIDINGS_NOTIFICATION__SUBSCRIBER_DENY_NETWORKS": "[]",
    # "retries_with_no_delay" still waits this floor
    "TIDINGS_NOTIFICATION__MIN_RETRY_DELAY": "0.1",
}
CONFIRMING = {
    **FAST,
    "TIDINGS_NOTIFICATION__REQUIRE_CONFIRMATION": "true",
    "TIDINGS_SIGNED_URL__SECRET_KEY": SECRET,
}
# Retries after 0 s (0.1 s: the floor), 1 s and 6 s, then give up (the shortest schedule
# Zaqar's rules allow: maximum_delay - minimum_delay >= 10 and a linear back-off in steps
# of 5).
SHORT_POLICY = {
    "retries_with_no_delay": 1,
    "minimum_delay_retries": 0,
    "minimum_delay": 1,
    "maximum_delay": 11,
    "maximum_delay_retries": 0,
    "retry_backoff_function": "linear",
}
# Many retries one second apart (for outages of a few seconds).
PATIENT_POLICY = {
    "retries_with_no_delay": 0,
    "minimum_delay_retries": 30,
    "minimum_delay": 1,
    "maximum_delay": 11,
    "maximum_delay_retries": 0,
}


# --------------------------------------------------------------------------- helpers


def subscribe(
    client: httpx.Client,
    source: str,
    subscriber: str,
    collection: str = "queues",
    ttl: int | None = None,
    opts: dict[str, Any] | None = None,
    **options: Any,
) -> str:
    body: dict[str, Any] = {"subscriber": subscriber, "options": {**(opts or {}), **options}}
    if ttl is not None:
        body["ttl"] = ttl
    resp = client.post(f"/{collection}/{source}/subscriptions", json=body)
    assert resp.status_code == 201, resp.text
    sid: str = resp.json()["subscription_id"]
    return sid


def post(
    client: httpx.Client, source: str, *messages: dict[str, Any], collection: str = "queues"
) -> list[str]:
    resp = client.post(f"/{collection}/{source}/messages", json={"messages": list(messages)})
    assert resp.status_code == 201, resp.text
    return [href.rsplit("/", 1)[1] for href in resp.json()["resources"]]


def notifications(records: list[Recorded]) -> list[dict[str, Any]]:
    docs = [r.json() for r in records]
    return [d for d in docs if d.get("Message_Type") == "Notification"]


def delivered_ids(records: list[Recorded]) -> list[str]:
    """Message ids of notifications the listener accepted (answered 2xx)."""
    return [
        r.json()["message_id"]
        for r in records
        if r.answered.startswith("2") and r.json().get("Message_Type") == "Notification"
    ]


def failures(client: httpx.Client, source: str, sid: str,
             collection: str = "queues") -> list[dict[str, Any]]:
    resp = client.get(f"/{collection}/{source}/subscriptions/{sid}/failures")
    assert resp.status_code == 200, resp.text
    found: list[dict[str, Any]] = resp.json()["failures"]
    return found


def wait_failures(client: httpx.Client, source: str, sid: str, count: int,
                  timeout: float = 30.0) -> list[dict[str, Any]]:
    def listed() -> list[dict[str, Any]]:
        found = failures(client, source, sid)
        return found if len(found) >= count else []

    return wait_until(listed, f"{count} failure(s) listed for {source}/{sid}",
                      timeout=timeout, interval=0.2)


def owed_now(server: TidingsServer, client: httpx.Client, source: str) -> int:
    return owed(server.store_uri, str(client.headers["X-Project-ID"]), source)


def settle(server: TidingsServer, client: httpx.Client, *sources: str,
           collection: str = "queues") -> None:
    """Wait until the server owes nothing more for ``sources`` in the client's project."""
    wait_settled(server, str(client.headers["X-Project-ID"]), *sources, collection=collection)


def listed_ids(client: httpx.Client, queue: str) -> list[str]:
    resp = client.get(f"/queues/{queue}/messages", params={"echo": "true"})
    assert resp.status_code == 200, resp.text
    return [m["id"] for m in resp.json()["messages"]]


def assert_not_notified_while_delayed(
    client: httpx.Client, queue: str, mid: str, listener: WebhookListener, path: str
) -> None:
    """What the listener got so far has no notification of ``mid`` if, after reading it,
    the queue still hides ``mid`` (its delay has not ended): delivery waits for the delay.
    """
    seen = {r.json().get("message_id") for r in listener.requests(path)}
    if mid not in listed_ids(client, queue):
        assert mid not in seen, "notified before the message's delay ended"


def signature_of(paths: str, methods: str, project: str, expires: str) -> str:
    """Zaqar's pre-signed URL signature (spec §3.2), computed independently of the server."""
    message = "\\n".join([paths, methods, project, expires])
    return hmac.new(SECRET.encode(), message.encode(), hashlib.sha256).hexdigest()


def signed_put(server: TidingsServer, document: dict[str, Any], confirmed: bool,
               signature: str | None = None) -> httpx.Response:
    """PUT the confirm path with only the signed headers (no other credentials)."""
    headers = {
        "URL-Signature": signature or document["URL-Signature"],
        "URL-Methods": document["URL-Methods"],
        "URL-Paths": document["URL-Paths"],
        "URL-Expires": document["URL-Expires"],
        "X-Project-ID": document["X-Project-ID"],
        "Client-ID": str(uuid.uuid4()),
    }
    return httpx.put(server.url + document["URL-Paths"], headers=headers,
                     json={"confirmed": confirmed}, timeout=10.0)


@pytest.fixture(scope="module")
def server(store_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TidingsServer]:
    """This module's default server: FAST, and loopback subscribers allowed."""
    data_dir = tmp_path_factory.mktemp(f"notify-{store_kind}")
    namespace = StoreNamespace(store_kind, data_dir)
    srv = TidingsServer(data_dir, env=FAST, store_uri=namespace.uri)
    srv.start()
    yield srv
    srv.stop()
    namespace.drop()


@pytest.fixture
def fast_server(make_server: type[TidingsServer], tmp_path: Path) -> TidingsServer:
    srv = make_server(tmp_path, env=FAST)
    srv.start()
    return srv


@pytest.fixture
def confirming_server(make_server: type[TidingsServer], tmp_path: Path) -> TidingsServer:
    srv = make_server(tmp_path, env=CONFIRMING)
    srv.start()
    return srv


@pytest.fixture
def client(server: TidingsServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


# -------------------------------------------------------------------- webhook payloads


def test_webhook_payload_and_headers(
    client: httpx.Client, webhook_listener: WebhookListener
) -> None:
    path = webhook_listener.new_path()
    subscribe(client, "wq", webhook_listener.url(path),
              post_headers={"X-Token": "t0k3n", "X-Count": 3})
    ids = post(client, "wq", {"body": {"event": "x"}, "ttl": 300}, {"body": "plain"})
    records = webhook_listener.wait_for(path, 2)
    for record in records:
        assert record.method == "POST"
        assert record.headers["content-type"] == "application/json"
        assert record.headers["x-token"] == "t0k3n"
        assert record.headers["x-count"] == "3"
    docs = sorted((r.json() for r in records), key=lambda d: ids.index(d["message_id"]))
    assert docs == [
        {"ttl": 300, "body": {"event": "x"}, "Message_Type": "Notification",
         "queue_name": "wq", "message_id": ids[0], "href": f"/v2/queues/wq/messages/{ids[0]}"},
        {"ttl": 3600, "body": "plain", "Message_Type": "Notification",
         "queue_name": "wq", "message_id": ids[1], "href": f"/v2/queues/wq/messages/{ids[1]}"},
    ]
    # the href names a real message
    assert client.get(docs[0]["href"].removeprefix("/v2")).json()["body"] == {"event": "x"}


def test_post_headers_override_content_type_and_post_data_wraps(
    client: httpx.Client, webhook_listener: WebhookListener
) -> None:
    path = webhook_listener.new_path()
    subscribe(
        client, "pd", webhook_listener.url(path),
        post_data='{"wrapped": "$zaqar_message$", "src": "zaqar"}',
        post_headers={"Content-Type": "text/plain", "X-Token": "t"},
    )
    (mid,) = post(client, "pd", {"body": "x", "ttl": 300})
    (record,) = webhook_listener.wait_for(path, 1)
    assert record.headers["content-type"] == "text/plain"
    assert record.headers["x-token"] == "t"
    assert record.json() == {
        "wrapped": {"ttl": 300, "body": "x", "Message_Type": "Notification",
                    "queue_name": "pd", "message_id": mid,
                    "href": f"/v2/queues/pd/messages/{mid}"},
        "src": "zaqar",
    }


def test_post_data_without_placeholder_is_ignored(
    client: httpx.Client, webhook_listener: WebhookListener
) -> None:
    path = webhook_listener.new_path()
    subscribe(client, "pdn", webhook_listener.url(path), post_data='{"static": true}')
    (mid,) = post(client, "pdn", {"body": 1})
    (record,) = webhook_listener.wait_for(path, 1)
    assert record.json()["message_id"] == mid


def test_one_delivery_per_message_per_subscription(
    server: TidingsServer, client: httpx.Client, webhook_listener: WebhookListener
) -> None:
    paths = [webhook_listener.new_path(f"s{i}") for i in range(3)]
    for path in paths:
        subscribe(client, "fan", webhook_listener.url(path))
    elsewhere = webhook_listener.new_path("elsewhere")
    subscribe(client, "other-queue", webhook_listener.url(elsewhere))
    gone = webhook_listener.new_path("gone")
    gone_sid = subscribe(client, "fan", webhook_listener.url(gone))
    assert client.delete(f"/queues/fan/subscriptions/{gone_sid}").status_code == 204
    # the same queue name in another project notifies only that project's subscribers
    with server.client() as stranger:
        post(stranger, "fan", {"body": "not yours"})

    ids = post(client, "fan", *({"body": {"n": n}} for n in range(5)))
    ids += post(client, "fan", *({"body": {"n": n}} for n in range(5, 10)))
    for path in paths:
        webhook_listener.wait_for(path, 10)
    settle(server, client, "fan", "other-queue")  # nothing more owed: nothing more comes
    for path in paths:
        records = webhook_listener.requests(path)
        assert sorted(delivered_ids(records)) == sorted(ids)
        bodies = sorted(d["body"]["n"] for d in notifications(records))
        assert bodies == list(range(10))
    assert webhook_listener.requests(elsewhere) == []
    assert webhook_listener.requests(gone) == []


def test_only_messages_posted_after_subscribing_are_notified(
    server: TidingsServer, client: httpx.Client, webhook_listener: WebhookListener
) -> None:
    post(client, "late", {"body": "before"})
    path = webhook_listener.new_path()
    subscribe(client, "late", webhook_listener.url(path))
    (after,) = post(client, "late", {"body": "after"})
    webhook_listener.wait_for(path, 1)
    settle(server, client, "late")
    assert delivered_ids(webhook_listener.requests(path)) == [after]


def test_topic_fan_out(
    server: TidingsServer, client: httpx.Client, webhook_listener: WebhookListener
) -> None:
    paths = [webhook_listener.new_path(f"t{i}") for i in range(4)]
    for path in paths:
        subscribe(client, "events", webhook_listener.url(path), collection="topics")
    queue_path = webhook_listener.new_path("queue-of-same-name")
    subscribe(client, "events", webhook_listener.url(queue_path))

    (mid,) = post(client, "events", {"body": {"kind": "created"}, "ttl": 120},
                  collection="topics")
    for path in paths:
        (record,) = webhook_listener.wait_for(path, 1)
        assert record.json() == {
            "ttl": 120, "body": {"kind": "created"}, "Message_Type": "Notification",
            "topic_name": "events", "message_id": mid,
            "href": f"/v2/topics/events/messages/{mid}",
        }
    settle(server, client, "events", collection="topics")
    settle(server, client, "events")  # the queue of the same name was never owed any
    assert webhook_listener.requests(queue_path) == []
    assert all(len(webhook_listener.requests(p)) == 1 for p in paths)


def test_delayed_queue_notifies_when_the_delay_ends(
    client: httpx.Client, webhook_listener: WebhookListener
) -> None:
    assert client.put("/queues/slowq", json={"_default_message_delay": 3}).status_code == 201
    path = webhook_listener.new_path()
    subscribe(client, "slowq", webhook_listener.url(path))
    (delayed,) = post(client, "slowq", {"body": "later"})
    (immediate,) = post(client, "slowq", {"body": "now", "delay": 0})

    (first,) = webhook_listener.wait_for(path, 1)
    assert first.json()["message_id"] == immediate  # posted later, due first
    assert "delay" not in first.json()
    assert_not_notified_while_delayed(client, "slowq", delayed, webhook_listener, path)

    records = webhook_listener.wait_for(path, 2, timeout=20)
    second = records[1]
    assert second.json()["message_id"] == delayed
    assert second.json()["delay"] == 3
    assert second.json()["body"] == "later"
    # by then the message is visible to consumers too
    assert delayed in listed_ids(client, "slowq")


def test_per_message_delay_is_honoured(
    client: httpx.Client, webhook_listener: WebhookListener
) -> None:
    client.put("/queues/mixed", json={"_default_message_delay": 1})
    path = webhook_listener.new_path()
    subscribe(client, "mixed", webhook_listener.url(path))
    (long_delay,) = post(client, "mixed", {"body": "four", "delay": 4})
    (short,) = post(client, "mixed", {"body": "one"})
    webhook_listener.wait_for(path, 1)
    assert_not_notified_while_delayed(client, "mixed", long_delay, webhook_listener, path)
    records = webhook_listener.wait_for(path, 2, timeout=20)
    assert [r.json()["message_id"] for r in records] == [short, long_delay]
    assert long_delay in listed_ids(client, "mixed")


# ------------------------------------------------------------------------ retrying


@pytest.mark.parametrize("failure", ["status-500", "status-503", "status-429", "drop"])
def test_retries_until_the_listener_recovers(
    server: TidingsServer, client: httpx.Client, webhook_listener: WebhookListener, failure: str
) -> None:
    path = webhook_listener.new_path()
    if failure == "drop":
        webhook_listener.drop(path, times=2)
    else:
        webhook_listener.fail(path, times=2, status=int(failure.split("-")[1]))
    sid = subscribe(client, "retry", webhook_listener.url(path), _retry_policy=SHORT_POLICY)
    (mid,) = post(client, "retry", {"body": "persist"})

    webhook_listener.wait_for(path, 3, timeout=20)
    settle(server, client, "retry")  # delivered: no attempt can follow
    records = webhook_listener.requests(path)
    # the first try, an immediate retry, then the one after minimum_delay that succeeds
    refused = "drop" if failure == "drop" else failure.split("-")[1]
    assert [r.answered for r in records] == [refused, refused, "204"]
    assert {r.json()["message_id"] for r in records} == {mid}
    assert failures(client, "retry", sid) == []


def test_exhausted_retries_are_listed_as_failures(
    server: TidingsServer, client: httpx.Client, webhook_listener: WebhookListener
) -> None:
    path = webhook_listener.new_path()
    webhook_listener.fail(path, times=None, status=500)
    sid = subscribe(client, "doomed", webhook_listener.url(path), _retry_policy=SHORT_POLICY)
    (mid,) = post(client, "doomed", {"body": "never"})

    (failure,) = wait_failures(client, "doomed", sid, 1, timeout=30)
    # listed once the last attempt was answered, and no longer owed: given up for good
    settle(server, client, "doomed")
    records = webhook_listener.requests(path)
    # 1 try + retries after 0, 1 and 6 s = 4 attempts
    assert [r.answered for r in records] == ["500"] * 4
    assert failure["kind"] == "notification"
    assert failure["message_id"] == mid
    assert failure["attempts"] == 4
    assert "500" in failure["error"]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", failure["failed"])


@pytest.mark.parametrize("status", [400, 403, 404, 410])
def test_client_errors_are_not_retried(
    server: TidingsServer, client: httpx.Client, webhook_listener: WebhookListener, status: int
) -> None:
    path = webhook_listener.new_path()
    webhook_listener.fail(path, times=None, status=status)
    sid = subscribe(client, "c4xx", webhook_listener.url(path), _retry_policy=SHORT_POLICY)
    (mid,) = post(client, "c4xx", {"body": 1})
    (failure,) = wait_failures(client, "c4xx", sid, 1, timeout=15)
    assert failure["attempts"] == 1
    assert failure["message_id"] == mid
    assert str(status) in failure["error"]
    settle(server, client, "c4xx")
    assert len(webhook_listener.requests(path)) == 1


def test_failures_are_per_subscription_and_newest_first(
    client: httpx.Client, webhook_listener: WebhookListener
) -> None:
    bad, good = webhook_listener.new_path("bad"), webhook_listener.new_path("good")
    webhook_listener.fail(bad, times=None, status=404)
    bad_sid = subscribe(client, "mix", webhook_listener.url(bad))
    good_sid = subscribe(client, "mix", webhook_listener.url(good))
    first = post(client, "mix", {"body": 1})
    wait_failures(client, "mix", bad_sid, 1)
    second = post(client, "mix", {"body": 2})
    found = wait_failures(client, "mix", bad_sid, 2)
    assert [f["message_id"] for f in found] == second + first
    webhook_listener.wait_for(good, 2)
    assert failures(client, "mix", good_sid) == []
    limited = client.get(f"/queues/mix/subscriptions/{bad_sid}/failures", params={"limit": 1})
    assert [f["message_id"] for f in limited.json()["failures"]] == second


def test_queue_retry_policy_applies_without_a_subscription_policy(
    client: httpx.Client, webhook_listener: WebhookListener
) -> None:
    policy = {**SHORT_POLICY, "retries_with_no_delay": 0}  # retries after 1 s and 6 s only
    assert client.put("/queues/qpolicy", json={"_retry_policy": policy}).status_code == 201
    path = webhook_listener.new_path()
    webhook_listener.fail(path, times=None, status=502)
    sid = subscribe(client, "qpolicy", webhook_listener.url(path))
    post(client, "qpolicy", {"body": 1})
    (failure,) = wait_failures(client, "qpolicy", sid, 1, timeout=30)
    assert failure["attempts"] == 3  # the default policy would make 13 over minutes
    assert len(webhook_listener.requests(path)) == 3


def test_deleted_subscription_stops_retries(
    server: TidingsServer, client: httpx.Client, webhook_listener: WebhookListener
) -> None:
    path = webhook_listener.new_path()
    webhook_listener.fail(path, times=None, status=500)
    sid = subscribe(client, "stop", webhook_listener.url(path), _retry_policy=PATIENT_POLICY)
    post(client, "stop", {"body": 1})
    webhook_listener.wait_for(path, 2, timeout=10)
    assert client.delete(f"/queues/stop/subscriptions/{sid}").status_code == 204
    seen = len(webhook_listener.requests(path))
    settle(server, client, "stop")  # what it owed went with it
    # A later event: a notification the same dispatcher can only send once its 2 s delay
    # ends, past the next retry (1 s apart) the deleted subscription would have made.
    marker = webhook_listener.new_path("marker")
    assert client.put("/queues/stop-marker",
                      json={"_default_message_delay": 2}).status_code == 201
    subscribe(client, "stop-marker", webhook_listener.url(marker))
    post(client, "stop-marker", {"body": "later"})
    webhook_listener.wait_for(marker, 1)
    # at most the attempt that was already on its way when the subscription went
    assert len(webhook_listener.requests(path)) <= seen + 1
    assert owed_now(server, client, "stop") == 0


def test_slow_listener_times_out_and_is_retried(
    make_server: type[TidingsServer], tmp_path: Path, webhook_listener: WebhookListener
) -> None:
    srv = make_server(tmp_path, env={**FAST, "TIDINGS_NOTIFICATION__DELIVERY_TIMEOUT": "1"})
    srv.start()
    path = webhook_listener.new_path()
    webhook_listener.slow(path, seconds=4, times=1)
    with srv.client() as c:
        sid = subscribe(c, "slow", webhook_listener.url(path), _retry_policy=SHORT_POLICY)
        (mid,) = post(c, "slow", {"body": 1})
        records = webhook_listener.wait_for(path, 2, timeout=15)
        assert [r.json()["message_id"] for r in records] == [mid, mid]
        # The retry succeeded: the delivery is done, so the slow answer to the first
        # attempt (still to come) can no longer count as a failure or cause an attempt.
        wait_settled(srv, str(c.headers["X-Project-ID"]), "slow")
        assert failures(c, "slow", sid) == []
        assert len(webhook_listener.requests(path)) == 2


# --------------------------------------------------------------------- confirmation


def test_confirmation_flow(
    confirming_server: TidingsServer, webhook_listener: WebhookListener
) -> None:
    srv = confirming_server
    path = webhook_listener.new_path()
    with srv.client() as c:
        project = str(c.headers["X-Project-ID"])
        before = time.time()
        sid = subscribe(c, "cq1", webhook_listener.url(path), ttl=600)
        (record,) = webhook_listener.wait_for(path, 1)
        after = time.time()
        assert record.headers["content-type"] == "application/json"
        doc = record.json()
        confirm_path = f"/v2/queues/cq1/subscriptions/{sid}/confirm"
        assert doc == {
            "Message_Type": "SubscriptionConfirmation",
            "Message": "You have chosen to subscribe to the queue: cq1",
            "URL-Signature": doc["URL-Signature"],
            "URL-Methods": "PUT",
            "URL-Paths": confirm_path,
            "X-Project-ID": project,
            "URL-Expires": doc["URL-Expires"],
            "SubscribeBody": {"confirmed": True},
            "UnsubscribeBody": {"confirmed": False},
            "queue_name": "cq1",
        }
        assert doc["URL-Signature"] == signature_of(confirm_path, "PUT", project,
                                                    doc["URL-Expires"])
        expires = datetime.strptime(doc["URL-Expires"], "%Y-%m-%dT%H:%M:%S")
        # the subscription's ttl from when it was made (the expiry is in whole seconds)
        assert before + 600 - 1 <= expires.replace(tzinfo=UTC).timestamp() <= after + 600

        # unconfirmed: nothing owed, so no notification
        post(c, "cq1", {"body": "too early"})
        wait_settled(srv, project, "cq1")
        assert notifications(webhook_listener.requests(path)) == []

        # a forged signature is refused, the real one confirms
        forged = signed_put(srv, doc, True, signature="0" * 64)
        assert forged.status_code == 404
        assert c.get(f"/queues/cq1/subscriptions/{sid}").json()["confirmed"] is False
        confirmed = signed_put(srv, doc, True)
        assert confirmed.status_code == 204, confirmed.text
        assert c.get(f"/queues/cq1/subscriptions/{sid}").json()["confirmed"] is True

        (mid,) = post(c, "cq1", {"body": "welcome"})
        webhook_listener.wait_for(path, 1, where=lambda r: "message_id" in r.json())
        wait_settled(srv, project, "cq1")
        # only the message posted after confirming; the early one is never sent
        assert delivered_ids(webhook_listener.requests(path)) == [mid]

        # unsubscribing through the signed request sends UnsubscribeConfirmation
        before = time.time()
        assert signed_put(srv, doc, False).status_code == 204
        bye = webhook_listener.wait_for(
            path, 1, where=lambda r: r.json().get("Message_Type") == "UnsubscribeConfirmation"
        )[0].json()
        after = time.time()
        assert bye["Message"] == (
            "You have unsubscribed successfully to the queue: cq1, "
            "you can resubscribe it by using confirmed=True."
        )
        assert bye["URL-Paths"] == confirm_path
        assert bye["URL-Signature"] == signature_of(confirm_path, "PUT", project,
                                                    bye["URL-Expires"])
        bye_expires = datetime.strptime(bye["URL-Expires"], "%Y-%m-%dT%H:%M:%S")
        # the default ttl (as Zaqar does) from the unsubscribe
        assert before + 3600 - 1 <= bye_expires.replace(tzinfo=UTC).timestamp() <= after + 3600
        assert c.get(f"/queues/cq1/subscriptions/{sid}").json()["confirmed"] is False
        post(c, "cq1", {"body": "gone again"})
        wait_settled(srv, project, "cq1")
        assert delivered_ids(webhook_listener.requests(path)) == [mid]

        # the unsubscribe document's signature subscribes again
        assert signed_put(srv, bye, True).status_code == 204
        (again,) = post(c, "cq1", {"body": "back"})
        webhook_listener.wait_for(path, 2, where=lambda r: "message_id" in r.json())
        assert delivered_ids(webhook_listener.requests(path)) == [mid, again]


def test_confirmation_signature_is_limited_to_its_path_and_method(
    confirming_server: TidingsServer, webhook_listener: WebhookListener
) -> None:
    srv = confirming_server
    path = webhook_listener.new_path()
    with srv.client() as c:
        sid = subscribe(c, "scoped", webhook_listener.url(path))
        doc = webhook_listener.wait_for(path, 1)[0].json()
    signed = {
        "URL-Signature": doc["URL-Signature"], "URL-Methods": "PUT",
        "URL-Paths": doc["URL-Paths"], "URL-Expires": doc["URL-Expires"],
        "X-Project-ID": doc["X-Project-ID"], "Client-ID": str(uuid.uuid4()),
    }
    base = srv.url + "/v2/queues/scoped"
    assert httpx.get(f"{base}/subscriptions/{sid}", headers=signed).status_code == 404
    assert httpx.delete(f"{base}/subscriptions/{sid}", headers=signed).status_code == 404
    assert httpx.post(f"{base}/messages", headers=signed,
                      json={"messages": [{"body": 1}]}).status_code == 404
    other_project = {**signed, "X-Project-ID": "someone-else"}
    assert httpx.put(srv.url + doc["URL-Paths"], headers=other_project,
                     json={"confirmed": True}).status_code == 404


def test_duplicate_unconfirmed_subscription_resends_confirmation(
    confirming_server: TidingsServer, webhook_listener: WebhookListener
) -> None:
    path = webhook_listener.new_path()
    with confirming_server.client() as c:
        sid = subscribe(c, "resend", webhook_listener.url(path))
        webhook_listener.wait_for(path, 1)
        assert subscribe(c, "resend", webhook_listener.url(path)) == sid
        records = webhook_listener.wait_for(path, 2)
        assert {r.json()["Message_Type"] for r in records} == {"SubscriptionConfirmation"}
        assert {r.json()["URL-Paths"] for r in records} == {
            f"/v2/queues/resend/subscriptions/{sid}/confirm"
        }
        # a plain authenticated confirm works too; then the duplicate is a conflict
        assert c.put(f"/queues/resend/subscriptions/{sid}/confirm",
                     json={"confirmed": True}).status_code == 204
        resp = c.post("/queues/resend/subscriptions",
                      json={"subscriber": webhook_listener.url(path)})
        assert resp.status_code == 409
        wait_settled(confirming_server, str(c.headers["X-Project-ID"]), "resend")
        assert len(webhook_listener.requests(path)) == 2  # no third confirmation


def test_topic_confirmation_points_at_the_topic(
    confirming_server: TidingsServer, webhook_listener: WebhookListener
) -> None:
    path = webhook_listener.new_path()
    with confirming_server.client() as c:
        sid = subscribe(c, "tconf", webhook_listener.url(path), collection="topics")
        doc = webhook_listener.wait_for(path, 1)[0].json()
        assert doc["URL-Paths"] == f"/v2/topics/tconf/subscriptions/{sid}/confirm"
        assert doc["Message"] == "You have chosen to subscribe to the topic: tconf"
        assert doc["topic_name"] == "tconf"
        assert signed_put(confirming_server, doc, True).status_code == 204
        (mid,) = post(c, "tconf", {"body": 1}, collection="topics")
        records = webhook_listener.wait_for(path, 1, where=lambda r: "message_id" in r.json())
        assert records[0].json()["message_id"] == mid


def test_confirmed_flag_is_ignored_without_require_confirmation(
    client: httpx.Client, webhook_listener: WebhookListener
) -> None:
    path = webhook_listener.new_path()
    sid = subscribe(client, "noconf", webhook_listener.url(path))
    client.put(f"/queues/noconf/subscriptions/{sid}/confirm", json={"confirmed": False})
    (mid,) = post(client, "noconf", {"body": 1})
    (record,) = webhook_listener.wait_for(path, 1)
    assert record.json()["message_id"] == mid  # and no confirmation document was sent


# ---------------------------------------------------------------------------- email


def smtp_env(sink: SmtpSink, **extra: str) -> dict[str, str]:
    return {
        **FAST,
        "TIDINGS_NOTIFICATION__SMTP_MODE": "self_local",
        "TIDINGS_NOTIFICATION__SMTP_HOST": "127.0.0.1",
        "TIDINGS_NOTIFICATION__SMTP_PORT": str(sink.port),
        "TIDINGS_NOTIFICATION__SMTP_SECURITY": "none",
        **extra,
    }


def test_email_notification_over_smtp(
    make_server: type[TidingsServer], tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    srv = make_server(tmp_path, env=smtp_env(smtp_sink))
    srv.start()
    with srv.client() as c:
        subscribe(c, "mq2", "mailto:bob@example.com",
                  opts={"from": "zaqar@example.com", "subject": "OptSubj"})
        subscribe(c, "mq2", "mailto:carol@example.com?subject=UriSubj",
                  opts={"subject": "ignored", "from": "zaqar@example.com"})
        (mid,) = post(c, "mq2", {"body": {"hello": "mail"}, "ttl": 300})
    (bob,) = smtp_sink.wait_for("bob@example.com", 1)
    assert bob.message["To"] == "bob@example.com"
    assert bob.message["From"] == "zaqar@example.com"
    assert bob.message["Subject"] == "OptSubj"
    assert bob.message.get_content_type() == "text/plain"
    assert json.loads(bob.text) == {
        "ttl": 300, "body": {"hello": "mail"}, "Message_Type": "Notification",
        "queue_name": "mq2", "message_id": mid, "href": f"/v2/queues/mq2/messages/{mid}",
    }
    # Zaqar fails every notification to a mailto: URI with ?subject= (spec §2.3); we send it
    (carol,) = smtp_sink.wait_for("carol@example.com", 1)
    assert carol.message["To"] == "carol@example.com"
    assert carol.message["Subject"] == "UriSubj"
    assert json.loads(carol.text)["message_id"] == mid


def test_email_notification_without_from_over_smtp(
    make_server: type[TidingsServer], tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    srv = make_server(tmp_path, env=smtp_env(smtp_sink))
    srv.start()
    with srv.client() as c:
        subscribe(c, "nofrom", "mailto:hank@example.com")
        (mid,) = post(c, "nofrom", {"body": 1})
    (mail,) = smtp_sink.wait_for("hank@example.com", 1, timeout=10)
    assert json.loads(mail.text)["message_id"] == mid


def test_email_notification_through_a_sendmail_command(
    make_server: type[TidingsServer], tmp_path: Path
) -> None:
    outbox = tmp_path / "mail"
    outbox.mkdir()
    script = tmp_path / "fake_sendmail.py"
    script.write_text(
        "import sys, uuid, pathlib\n"
        "data = sys.stdin.buffer.read()\n"
        "out = pathlib.Path(sys.argv[1]) / (uuid.uuid4().hex + '.eml')\n"
        "out.write_bytes(data)\n"
        "print(' '.join(sys.argv[2:]), file=open(str(out) + '.args', 'w'))\n"
    )
    command = f"{sys.executable} {script} {outbox} -t -oi"
    srv = make_server(tmp_path, env={**FAST, "TIDINGS_NOTIFICATION__SMTP_COMMAND": command})
    srv.start()
    with srv.client() as c:
        subscribe(c, "sm", "mailto:dave@example.com", opts={"from": "q@example.com"})
        (mid,) = post(c, "sm", {"body": "via sendmail"})
        # sent once the command has exited (having written its file): then nothing is owed
        wait_settled(srv, str(c.headers["X-Project-ID"]), "sm")
    files = sorted(outbox.glob("*.eml"))
    assert len(files) == 1, files
    assert Path(str(files[0]) + ".args").read_text().strip() == "-t -oi"
    message = email.message_from_bytes(files[0].read_bytes())
    assert message["To"] == "dave@example.com"
    assert message["From"] == "q@example.com"
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    assert f'"message_id":"{mid}"' in payload.decode()


def test_failing_sendmail_command_is_retried_then_listed(
    make_server: type[TidingsServer], tmp_path: Path
) -> None:
    script = tmp_path / "broken_sendmail.py"
    counter = tmp_path / "calls"
    script.write_text(
        "import sys\n"
        f"open({str(counter)!r}, 'a').write('x')\n"
        "sys.stdin.read(); print('mailer broken', file=sys.stderr); sys.exit(75)\n"
    )
    srv = make_server(tmp_path, env={
        **FAST, "TIDINGS_NOTIFICATION__SMTP_COMMAND": f"{sys.executable} {script}",
    })
    srv.start()
    with srv.client() as c:
        sid = subscribe(c, "smf", "mailto:eve@example.com", _retry_policy=SHORT_POLICY)
        post(c, "smf", {"body": 1})
        (failure,) = wait_failures(c, "smf", sid, 1, timeout=30)
    assert failure["attempts"] == 4
    assert "75" in failure["error"]
    assert "mailer broken" in failure["error"]
    assert counter.read_text() == "xxxx"


def test_sendmail_command_failing_before_reading_is_a_failed_delivery(
    make_server: type[TidingsServer], tmp_path: Path
) -> None:
    # It fails at once, without reading the message (the pipe closes under the write):
    # a clean, listed failure, not a crashed delivery.
    srv = make_server(
        tmp_path, env={**FAST, "TIDINGS_NOTIFICATION__SMTP_COMMAND": "sh -c 'exit 3'"}
    )
    srv.start()
    with srv.client() as c:
        sid = subscribe(c, "smn", "mailto:fay@example.com", _retry_policy=SHORT_POLICY)
        post(c, "smn", {"body": "x" * 200_000})  # more than a pipe's buffer
        (failure,) = wait_failures(c, "smn", sid, 1, timeout=30)
    assert failure["attempts"] == 4
    assert "exited with 3" in failure["error"] or "did not read" in failure["error"]


def test_email_confirmation_link(
    make_server: type[TidingsServer], tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    env = smtp_env(
        smtp_sink,
        TIDINGS_NOTIFICATION__REQUIRE_CONFIRMATION="true",
        TIDINGS_SIGNED_URL__SECRET_KEY=SECRET,
        TIDINGS_NOTIFICATION__EXTERNAL_CONFIRMATION_URL="http://confirm.example.com/confirm",
    )
    srv = make_server(tmp_path, env=env)
    srv.start()
    with srv.client() as c:
        project = str(c.headers["X-Project-ID"])
        sid = subscribe(c, "mq1", "mailto:frank@example.com", opts={"from": "q@example.com"})
        (mail,) = smtp_sink.wait_for("frank@example.com", 1)
        assert mail.message["Subject"] == "Confirm your subscription"
        _, sender = email.utils.parseaddr(str(mail.message["From"]))
        assert sender == "no-reply@localhost"
        assert "mq1" in mail.text
        assert project in mail.text
        match = re.search(r"http://confirm\.example\.com/confirm\?\S+", mail.text)
        assert match is not None, mail.text
        query = {k: v[0] for k, v in parse_qs(urlsplit(match.group(0)).query,
                                               keep_blank_values=True).items()}
        confirm_path = f"/v2/queues/mq1/subscriptions/{sid}/confirm"
        assert query["Paths"] == confirm_path
        assert query["Methods"] == "PUT"
        assert query["Project"] == project
        assert query["Queue"] == "mq1"
        assert query["Url"] == ""
        assert query["Signature"] == signature_of(confirm_path, "PUT", project,
                                                  query["Expires"])

        # no notification mail before confirming: nothing is owed
        post(c, "mq1", {"body": "early"})
        wait_settled(srv, project, "mq1")
        assert len(smtp_sink.mails("frank@example.com")) == 1

        # what the operator's confirmation page would do with the link's parameters
        doc = {"URL-Signature": query["Signature"], "URL-Methods": query["Methods"],
               "URL-Paths": query["Paths"], "URL-Expires": query["Expires"],
               "X-Project-ID": query["Project"]}
        assert signed_put(srv, doc, True).status_code == 204
        (mid,) = post(c, "mq1", {"body": "confirmed"})
        mails = smtp_sink.wait_for("frank@example.com", 2)
        assert f'"message_id":"{mid}"' in mails[1].text.replace(" ", "")

        # unsubscribing mails the unsubscribe template
        assert signed_put(srv, doc, False).status_code == 204
        mails = smtp_sink.wait_for("frank@example.com", 3)
        assert mails[2].message["Subject"] == "You have unsubscribed"


def test_email_confirmation_without_external_url_is_a_failure(
    make_server: type[TidingsServer], tmp_path: Path, smtp_sink: SmtpSink
) -> None:
    env = smtp_env(smtp_sink, TIDINGS_NOTIFICATION__REQUIRE_CONFIRMATION="true",
                   TIDINGS_SIGNED_URL__SECRET_KEY=SECRET)
    srv = make_server(tmp_path, env=env)
    srv.start()
    with srv.client() as c:
        sid = subscribe(c, "nolink", "mailto:gina@example.com")
        (failure,) = wait_failures(c, "nolink", sid, 1, timeout=15)
    assert failure["kind"] == "confirmation"
    assert failure["attempts"] == 1
    assert "external_confirmation_url" in failure["error"]
    assert smtp_sink.mails("gina@example.com") == []


# ----------------------------------------------------------------------- durability


@pytest.mark.slow
@pytest.mark.parametrize("trouble", ["failing", "slow"])
def test_pending_notifications_survive_sigkill(
    make_server: type[TidingsServer],
    tmp_path: Path,
    webhook_listener: WebhookListener,
    trouble: str,
) -> None:
    """SIGKILL while deliveries are owed (retrying, or in flight): all arrive after restart."""
    env = {**FAST, "TIDINGS_NOTIFICATION__LEASE": "2",
           "TIDINGS_NOTIFICATION__DELIVERY_TIMEOUT": "30",
           # all ten in flight at once, to one host (slow ones would hold the slots)
           "TIDINGS_NOTIFICATION__MAX_DELIVERIES_PER_PROJECT": "10",
           "TIDINGS_NOTIFICATION__MAX_DELIVERIES_PER_HOST": "10"}
    srv = make_server(tmp_path, env=env)
    srv.start()
    path = webhook_listener.new_path()
    if trouble == "failing":
        webhook_listener.fail(path, times=None, status=503)
    else:
        webhook_listener.slow(path, seconds=30, times=None)
    headers = client_headers()
    with httpx.Client(base_url=srv.url + "/v2", headers=headers, timeout=10) as c:
        sid = subscribe(c, "durable", webhook_listener.url(path), _retry_policy=PATIENT_POLICY)
        ids = post(c, "durable", *({"body": {"n": n}} for n in range(8)))
        ids += post(c, "durable", {"body": {"n": 8}}, {"body": {"n": 9}})
    # every message has been tried at least once: the outbox holds them all
    webhook_listener.wait_for(path, 10, timeout=20)
    srv.kill()
    webhook_listener.heal(path)
    before_restart = len(webhook_listener.requests(path))
    srv.start()
    # leased deliveries come back once the lease runs out; retrying ones when due.
    # Only requests after the restart count (a slow answer to the dead server does not).
    wait_until(
        lambda: set(ids) <= set(delivered_ids(webhook_listener.requests(path)[before_restart:])),
        "every owed notification delivered after the restart",
        timeout=40,
    )
    # and nothing is still owed: no further deliveries can follow
    wait_settled(srv, headers["X-Project-ID"], "durable")
    with httpx.Client(base_url=srv.url + "/v2", headers=headers, timeout=10) as c:
        assert failures(c, "durable", sid) == []
    assert all(r.json()["message_id"] in ids for r in webhook_listener.requests(path))


@pytest.mark.slow
def test_deliveries_owed_at_restart_are_sent_without_new_posts(
    make_server: type[TidingsServer], tmp_path: Path, webhook_listener: WebhookListener
) -> None:
    """Messages posted while the subscriber is down and the server then dies are not lost."""
    srv = make_server(tmp_path, env={**FAST, "TIDINGS_NOTIFICATION__LEASE": "2"})
    srv.start()
    path = webhook_listener.new_path()
    webhook_listener.drop(path, times=None)
    with srv.client() as c:
        subscribe(c, "owed", webhook_listener.url(path), _retry_policy=PATIENT_POLICY)
        ids = post(c, "owed", *({"body": n} for n in range(5)))
        webhook_listener.wait_for(path, 5)
    srv.kill()
    srv.start()  # still dropping for a while after the restart
    webhook_listener.wait_for(path, 10, timeout=20)
    webhook_listener.heal(path)
    wait_until(
        lambda: set(ids) <= set(delivered_ids(webhook_listener.requests(path))),
        "every owed notification delivered once the subscriber is back",
        timeout=30,
    )
