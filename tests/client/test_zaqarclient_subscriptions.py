"""python-zaqarclient's subscription calls (4.7: ``Client.subscription``, ``Client.subscriptions``,
``Queue.subscriptions``, ``Subscription.update``/``delete``) end to end against Tidings,
with a delivery reaching a real local webhook listener.

Every test works in a project of its own, so the module's server is shared safely. It
allows loopback subscribers (the default denies them): the listener and the hooks nobody
listens on (loopback's discard port) are all on this machine.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from zaqarclient.queues.v2.client import Client
from zaqarclient.queues.v2.subscription import Subscription
from zaqarclient.transport import errors

from tests import notify_listeners
from tests.api import test_subscriptions
from tests.client.test_zaqarclient import make_client
from tests.notify_listeners import WebhookListener
from tests.outbox import wait_settled
from tests.server import TidingsServer, age_bound

webhook_listener = notify_listeners.webhook_listener
server = test_subscriptions.server  # loopback subscribers allowed


@pytest.fixture
def zclient(server: TidingsServer) -> Iterator[Client]:
    yield make_client(server)


def project_of(client: Client) -> str:
    project: str = client.auth_opts["options"]["os_project_id"]
    return project


def raw(server: TidingsServer, client: Client) -> httpx.Client:
    """A plain HTTP client in the same project (for what the library cannot do)."""
    return server.client(project=project_of(client))


def hook(name: str) -> str:
    return f"http://127.0.0.1:9/{name}"


def test_create_and_get(zclient: Client) -> None:
    created = time.monotonic()
    sub = zclient.subscription("zq", subscriber=hook("a"), ttl=600,
                               options={"post_headers": {"X-Token": "t"}})
    assert isinstance(sub, Subscription)
    assert uuid.UUID(sub.id).version == 4
    # ensure_exists() re-reads it from the server after creating it
    assert sub.subscriber == hook("a")
    assert sub.ttl == 600
    assert sub.options == {"post_headers": {"X-Token": "t"}}
    assert sub.confirmed is False
    assert sub.age is not None and 0 <= sub.age <= age_bound(created)

    fetched = zclient.subscription("zq", id=sub.id)
    assert (fetched.subscriber, fetched.ttl, fetched.options, fetched.confirmed) == (
        hook("a"), 600, {"post_headers": {"X-Token": "t"}}, False
    )


def test_client_default_ttl_and_duplicate(zclient: Client) -> None:
    sub = zclient.subscription("zq", subscriber=hook("dflt"))
    assert sub.ttl == 60  # the library sends ttl=60 unless told otherwise
    again = zclient.subscription("zq", subscriber=hook("dflt"), ttl=600)
    assert again.id == sub.id  # unconfirmed duplicate: 201 with the existing id
    assert again.ttl == 60


def test_list_through_client_and_queue(zclient: Client) -> None:
    ids = {zclient.subscription("listed", subscriber=hook(f"s{i}")).id for i in range(5)}
    zclient.subscription("unrelated", subscriber=hook("other"))

    listed = list(zclient.subscriptions("listed"))
    assert all(isinstance(s, Subscription) for s in listed)
    assert {s.id for s in listed} == ids
    assert {s.queue_name for s in listed} == {"listed"}
    assert {s.subscriber for s in listed} == {hook(f"s{i}") for i in range(5)}

    queue = zclient.queue("listed")
    assert {s.id for s in queue.subscriptions()} == ids

    # paging: the iterator follows the server's next links when streaming
    streamed = [s.id for s in zclient.subscriptions("listed", limit=2).stream()]
    assert sorted(streamed) == sorted(ids)
    # without streaming only the first page
    assert len(list(zclient.subscriptions("listed", limit=2))) == 2

    assert list(zclient.subscriptions("nothing-here")) == []


def test_update(zclient: Client) -> None:
    sub = zclient.subscription("upd", subscriber=hook("before"), ttl=600, options={"a": 1})
    sub.update({"subscriber": hook("after"), "ttl": 900, "options": {"b": 2}})
    assert (sub.subscriber, sub.ttl, sub.options) == (hook("after"), 900, {"b": 2})
    fetched = zclient.subscription("upd", id=sub.id)
    assert (fetched.subscriber, fetched.ttl, fetched.options) == (hook("after"), 900, {"b": 2})

    with pytest.raises(errors.MalformedRequest):
        sub.update({"ttl": 1})
    with pytest.raises(errors.MalformedRequest):
        sub.update({})
    other = zclient.subscription("upd", subscriber=hook("other"))
    with pytest.raises(errors.ConflictError):
        other.update({"subscriber": hook("after")})


def test_delete(zclient: Client) -> None:
    sub = zclient.subscription("del", subscriber=hook("gone"))
    sub.delete()
    with pytest.raises(errors.ResourceNotFound):
        zclient.subscription("del", id=sub.id)
    sub.delete()  # deleting again is fine (204)
    assert list(zclient.subscriptions("del")) == []


def test_errors(server: TidingsServer, zclient: Client) -> None:
    with pytest.raises(errors.ResourceNotFound):
        zclient.subscription("errs", id=str(uuid.uuid4()))
    with pytest.raises(errors.MalformedRequest):
        zclient.subscription("errs", subscriber="ftp://hooks.invalid/x")
    with pytest.raises(errors.MalformedRequest):
        zclient.subscription("errs", subscriber=hook("x"), ttl=0)
    # a duplicate of a confirmed subscription is a conflict
    sub = zclient.subscription("errs", subscriber=hook("confirmed"))
    with raw(server, zclient) as http:
        resp = http.put(f"/queues/errs/subscriptions/{sub.id}/confirm",
                        json={"confirmed": True})
        assert resp.status_code == 204
    assert zclient.subscription("errs", id=sub.id).confirmed is True
    with pytest.raises(errors.ConflictError):
        zclient.subscription("errs", subscriber=hook("confirmed"))


def test_purge_subscriptions(zclient: Client) -> None:
    queue = zclient.queue("purged", force_create=True)
    for i in range(3):
        zclient.subscription("purged", subscriber=hook(f"p{i}"))
    queue.post([{"body": "stays"}])
    queue.purge(resource_types=["subscriptions"])
    assert list(queue.subscriptions()) == []
    assert [m.body for m in queue.messages(echo=True)] == ["stays"]


def test_delivery_reaches_the_listener(
    server: TidingsServer, zclient: Client, webhook_listener: WebhookListener
) -> None:
    path = webhook_listener.new_path("zc")
    sub = zclient.subscription("pushed", subscriber=webhook_listener.url(path), ttl=600,
                               options={"post_headers": {"X-From": "zaqarclient"}})
    queue = zclient.queue("pushed")
    posted = queue.post([{"body": {"event": "created"}, "ttl": 300}])
    mid = posted["resources"][0].rsplit("/", 1)[1]

    (record,) = webhook_listener.wait_for(path, 1)
    assert record.headers["x-from"] == "zaqarclient"
    assert record.json() == {
        "ttl": 300,
        "body": {"event": "created"},
        "Message_Type": "Notification",
        "queue_name": "pushed",
        "message_id": mid,
        "href": f"/v2/queues/pushed/messages/{mid}",
    }
    # after the subscription is deleted, posts are no longer pushed: nothing is owed
    sub.delete()
    queue.post([{"body": "unheard"}])
    wait_settled(server, project_of(zclient), "pushed")
    assert len(webhook_listener.requests(path)) == 1
