"""End-to-end tests driving Tidings with the real python-zaqarclient (API v2, HTTP, no auth).

Every test works in a project of its own, so the tests share the session server safely
(also under pytest-xdist).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from zaqarclient.queues import client as zaqar
from zaqarclient.queues.v2.claim import Claim
from zaqarclient.queues.v2.client import Client
from zaqarclient.queues.v2.message import Message
from zaqarclient.queues.v2.queues import Queue
from zaqarclient.transport import errors

from tests.server import RESERVED_DEFAULTS, TidingsServer, age_bound


def make_client(server: TidingsServer, project: str | None = None) -> Client:
    project = project or f"zc-{uuid.uuid4().hex[:12]}"
    conf = {"auth_opts": {"backend": "noauth", "options": {"os_project_id": project}}}
    client: Client = zaqar.Client(server.url, version=2, conf=conf)
    return client


@pytest.fixture
def zclient(server: TidingsServer) -> Iterator[Client]:
    """A python-zaqarclient v2 client in a fresh project of its own."""
    yield make_client(server)


def ids_of(resources: list[str]) -> list[str]:
    return [href.rsplit("/", 1)[1] for href in resources]


def post(queue: Queue, bodies: list[Any], ttl: int | None = None) -> list[str]:
    messages = [{"body": b} if ttl is None else {"body": b, "ttl": ttl} for b in bodies]
    result = queue.post(messages)
    return ids_of(result["resources"])


# ---------------------------------------------------------------- queues


def test_queue_create_exists_list_delete(zclient: Client) -> None:
    assert list(zclient.queues()[0]) == []

    names = ["alpha", "bravo", "charlie"]
    queues = [zclient.queue(name, force_create=True) for name in names]
    assert all(q.exists() for q in queues)
    assert not zclient.queue("never-created", auto_create=False).exists()

    listed, count = zclient.queues(with_count=True)
    listed_queues = list(listed)
    assert [q.name for q in listed_queues] == names
    assert [q.href for q in listed_queues] == [f"/v2/queues/{n}" for n in names]
    assert count == 3

    # detailed listing carries the metadata (reserved defaults filled in)
    detailed, _ = zclient.queues(detailed=True)
    for q in detailed:
        assert q.metadata() == RESERVED_DEFAULTS

    # paging: the client's iterator follows the `next` links when streaming
    paged, _ = zclient.queues(limit=2)
    assert [q.name for q in paged.stream()] == names

    queues[1].delete()
    assert [q.name for q in zclient.queues()[0]] == ["alpha", "charlie"]
    # deleting a missing queue is fine (204)
    queues[1].delete()
    for q in (queues[0], queues[2]):
        q.delete()
    assert list(zclient.queues()[0]) == []


def test_queue_lazy_creation_by_post(zclient: Client) -> None:
    queue = zclient.queue("lazy", auto_create=False)
    assert list(zclient.queues()[0]) == []
    post(queue, ["hello"])
    assert [q.name for q in zclient.queues()[0]] == ["lazy"]


def test_queue_metadata_get_and_set(zclient: Client) -> None:
    queue = zclient.queue("meta", force_create=True)
    assert queue.metadata() == RESERVED_DEFAULTS

    updated = queue.metadata(new_meta={"description": "orders", "_default_message_ttl": 120})
    assert updated == {**RESERVED_DEFAULTS, "description": "orders", "_default_message_ttl": 120}
    assert queue.metadata(force_reload=True) == updated
    # another client sees the same metadata
    assert zclient.queue("meta", auto_create=False).metadata() == updated
    assert queue.metadata_dict == updated

    # replacing: keys left out are removed; reserved keys revert to the defaults
    replaced = queue.metadata(new_meta={"owner": "ops", "description": "orders v2"})
    assert replaced == {**RESERVED_DEFAULTS, "owner": "ops", "description": "orders v2"}
    assert queue.metadata(force_reload=True) == replaced

    # the queue default TTL set through metadata applies to posted messages
    queue.metadata(new_meta={"_default_message_ttl": 90})
    [mid] = post(queue, ["ttl from queue"])
    assert queue.message(mid).ttl == 90

    # invalid reserved metadata is refused by the server
    with pytest.raises(errors.MalformedRequest):
        queue.metadata(new_meta={"_default_message_ttl": 10})
    assert queue.metadata(force_reload=True)["_default_message_ttl"] == 90


def test_queue_stats(zclient: Client) -> None:
    queue = zclient.queue("stats", force_create=True)
    assert queue.stats == {"messages": {"claimed": 0, "free": 0, "total": 0}}

    ids = post(queue, [1, 2, 3, 4])
    stats = queue.stats["messages"]
    assert (stats["claimed"], stats["free"], stats["total"]) == (0, 4, 4)
    assert stats["oldest"]["href"] == f"/v2/queues/stats/messages/{ids[0]}"
    assert stats["newest"]["href"] == f"/v2/queues/stats/messages/{ids[-1]}"
    assert set(stats["oldest"]) == {"age", "created", "href"}

    claim = queue.claim(ttl=60, grace=60, limit=3)
    assert len(list(claim)) == 3
    stats = queue.stats["messages"]
    assert (stats["claimed"], stats["free"], stats["total"]) == (3, 1, 4)

    claim.delete()
    stats = queue.stats["messages"]
    assert (stats["claimed"], stats["free"], stats["total"]) == (0, 4, 4)

    # stats of a queue that does not exist
    missing = zclient.queue("nosuch", auto_create=False)
    assert missing.stats == {"messages": {"claimed": 0, "free": 0, "total": 0}}


def test_queue_delete_removes_messages(zclient: Client) -> None:
    queue = zclient.queue("doomed", force_create=True)
    post(queue, ["a", "b"])
    queue.delete()
    assert list(queue.messages(echo=True)) == []
    assert queue.stats["messages"]["total"] == 0


def test_queue_purge(zclient: Client) -> None:
    queue = zclient.queue("purged", force_create=True)
    queue.metadata(new_meta={"keep": "me"})
    post(queue, ["a", "b", "c"])
    queue.claim(ttl=60, grace=60, limit=1)
    queue.purge(resource_types=["messages"])
    assert queue.stats["messages"]["total"] == 0
    assert queue.metadata(force_reload=True)["keep"] == "me"


def test_projects_are_isolated(server: TidingsServer) -> None:
    one, two = make_client(server), make_client(server)
    q1 = one.queue("shared-name", force_create=True)
    [mid] = post(q1, ["secret"])
    q2 = two.queue("shared-name", auto_create=False)
    assert list(two.queues()[0]) == []
    with pytest.raises(errors.ResourceNotFound):
        q2.message(mid)
    assert list(q2.messages(echo=True)) == []
    assert q2.stats["messages"]["total"] == 0


# ---------------------------------------------------------------- messages


def test_post_single_and_batch_then_list(zclient: Client) -> None:
    queue = zclient.queue("msgs", force_create=True)
    single = queue.post({"body": {"event": "single"}, "ttl": 300})
    assert len(single["resources"]) == 1
    assert single["resources"][0].startswith("/v2/queues/msgs/messages/")

    bodies: list[Any] = [{"n": i} for i in range(24)] + ["text", [1, 2, 3], None, 4.5]
    batch_ids = post(queue, bodies, ttl=600)
    assert len(batch_ids) == len(bodies) == len(set(batch_ids))
    all_ids = ids_of(single["resources"]) + batch_ids

    # the poster does not see its own messages without echo
    assert list(queue.messages()) == []

    first_page = list(queue.messages(echo=True))
    assert [m.id for m in first_page] == all_ids[:10]  # default page size 10

    # stream() follows `next` links until an empty page: every message, in post order
    streamed: list[Message] = list(queue.messages(echo=True, limit=7).stream())
    assert [m.id for m in streamed] == all_ids
    assert [m.body for m in streamed] == [{"event": "single"}, *bodies]
    assert streamed[0].ttl == 300
    assert all(m.ttl == 600 for m in streamed[1:])
    assert all(m.age >= 0 for m in streamed)
    assert all(m.href == f"/v2/queues/msgs/messages/{m.id}" for m in streamed)

    # another consumer (different Client-ID) sees them without echo
    other = make_client_same_project(zclient)
    seen = [m.id for m in other.queue("msgs", auto_create=False).messages(limit=20).stream()]
    assert seen == all_ids


def make_client_same_project(client: Client) -> Client:
    other: Client = zaqar.Client(client.api_url, version=2, conf={"auth_opts": client.auth_opts})
    assert other.client_uuid != client.client_uuid
    return other


def test_list_include_claimed(zclient: Client) -> None:
    queue = zclient.queue("incl", force_create=True)
    ids = post(queue, ["a", "b", "c"])
    claim = queue.claim(ttl=60, grace=60, limit=2)
    claim_id = claim.id
    assert [m.id for m in queue.messages(echo=True)] == ids[2:]
    with_claimed = list(queue.messages(echo=True, include_claimed=True))
    assert [m.id for m in with_claimed] == ids
    assert [m.claim_id for m in with_claimed] == [claim_id, claim_id, None]


def test_get_message(zclient: Client) -> None:
    queue = zclient.queue("getter", force_create=True)
    ids = post(queue, [{"i": i} for i in range(3)], ttl=120)

    msg = queue.message(ids[2])
    assert (msg.id, msg.body, msg.ttl) == (ids[2], {"i": 2}, 120)
    assert msg.href == f"/v2/queues/getter/messages/{ids[2]}"
    assert msg.claim_id is None

    with pytest.raises(errors.ResourceNotFound):
        queue.message(str(uuid.uuid4()))
    with pytest.raises(errors.ResourceNotFound):
        zclient.queue("nosuch", auto_create=False).message(ids[0])

    # get by id ignores claims and echo, and shows the claim in the href
    claim = queue.claim(ttl=60, grace=60, limit=1)
    claimed = queue.message(ids[0])
    assert claimed.claim_id == claim.id
    assert claimed.href == f"/v2/queues/getter/messages/{ids[0]}?claim_id={claim.id}"


def test_get_many_by_ids(zclient: Client) -> None:
    """The client sends ``?ids=a&ids=b&ids=c`` (repeated parameter), which Zaqar accepts."""
    queue = zclient.queue("getmany", force_create=True)
    ids = post(queue, [{"i": i} for i in range(5)], ttl=120)

    many = list(queue.messages(ids[0], ids[3], ids[4]))
    assert {m.id: m.body for m in many} == {ids[0]: {"i": 0}, ids[3]: {"i": 3}, ids[4]: {"i": 4}}

    # unknown ids are skipped; none found -> 404
    unknown = str(uuid.uuid4())
    assert [m.id for m in queue.messages(ids[1], unknown)] == [ids[1]]
    with pytest.raises(errors.ResourceNotFound):
        list(queue.messages(unknown))


def test_get_one_by_ids(zclient: Client) -> None:
    queue = zclient.queue("getone", force_create=True)
    ids = post(queue, ["a", "b"])
    assert [(m.id, m.body) for m in queue.messages(ids[1])] == [(ids[1], "b")]


def test_delete_messages(zclient: Client) -> None:
    queue = zclient.queue("deleter", force_create=True)
    ids = post(queue, list(range(5)))

    queue.message(ids[0]).delete()
    with pytest.raises(errors.ResourceNotFound):
        queue.message(ids[0])

    queue.delete_messages(ids[1])
    assert [m.id for m in queue.messages(echo=True)] == ids[2:]

    # bulk delete by ids does not check claims
    claim = queue.claim(ttl=60, grace=60, limit=1)
    assert [m.id for m in claim] == [ids[2]]
    queue.delete_messages(ids[2])
    assert [m.id for m in queue.messages(echo=True, include_claimed=True)] == ids[3:]

    # deleting already deleted / unknown messages is fine
    queue.delete_messages(ids[0])
    queue.delete_messages(str(uuid.uuid4()))
    assert [m.id for m in queue.messages(echo=True, include_claimed=True)] == ids[3:]


def test_delete_many_by_ids(zclient: Client) -> None:
    """The client sends ``?ids=a&ids=b`` (repeated parameter): all listed ids go."""
    queue = zclient.queue("bulkdel", force_create=True)
    ids = post(queue, list(range(5)))
    queue.delete_messages(ids[0], ids[2], ids[4], str(uuid.uuid4()))
    assert [m.id for m in queue.messages(echo=True)] == [ids[1], ids[3]]


def test_pop(zclient: Client) -> None:
    queue = zclient.queue("popper", force_create=True)
    ids = post(queue, [f"m{i}" for i in range(5)])

    popped = list(queue.pop(count=2))
    assert [m.id for m in popped] == ids[:2]
    assert [m.body for m in popped] == ["m0", "m1"]
    assert all(m.ttl == 3600 for m in popped)

    # claimed messages are not popped
    claim = queue.claim(ttl=60, grace=60, limit=1)
    assert [m.id for m in claim] == [ids[2]]
    assert [m.id for m in queue.pop(count=5)] == ids[3:]
    assert list(queue.pop(count=1)) == []
    assert [m.id for m in queue.messages(echo=True, include_claimed=True)] == [ids[2]]

    with pytest.raises(errors.MalformedRequest):
        list(queue.pop(count=21))


# ---------------------------------------------------------------- claims


def test_claim_iterate_update_delete_release(zclient: Client) -> None:
    queue = zclient.queue("work", force_create=True)
    ids = post(queue, [{"job": i} for i in range(5)], ttl=60)

    claimed_at = time.monotonic()
    claim = queue.claim(ttl=120, grace=60, limit=3)
    assert claim.id is not None
    claimed = list(claim)
    assert [m.id for m in claimed] == ids[:3]
    assert [m.body for m in claimed] == [{"job": 0}, {"job": 1}, {"job": 2}]
    assert all(m.claim_id == claim.id for m in claimed)
    # messages that would expire before the claim get ttl = claim ttl + grace
    assert all(m.ttl == 180 for m in claimed)

    # a second claim gets the remaining messages only
    other = queue.claim(ttl=60, grace=60, limit=10)
    assert [m.id for m in other] == ids[3:]
    assert queue.claim(ttl=60, grace=60).id is None  # nothing left (204)

    # re-load an existing claim by id
    loaded = queue.claim(id=claim.id)
    assert loaded.ttl == 120
    assert 0 <= loaded.age <= age_bound(claimed_at)
    assert [m.id for m in loaded] == ids[:3]

    # renew
    claim.update(ttl=300, grace=100)
    reloaded = queue.claim(id=claim.id)
    assert reloaded.ttl == 300
    assert reloaded.age <= 1
    assert [m.ttl for m in reloaded] == [400, 400, 400]

    # delete a claimed message with its claim (fetched hrefs carry ?claim_id=)
    first = next(iter(queue.claim(id=claim.id)))
    assert first.claim_id == claim.id
    first.delete()  # Message.delete sends ?claim_id=
    assert [m.id for m in queue.claim(id=claim.id)] == ids[1:3]

    # release: remaining messages become visible/claimable again
    claim.delete()
    with pytest.raises(errors.ResourceNotFound):
        list(queue.claim(id=claim.id))
    claim.delete()  # releasing again is fine
    assert [m.id for m in queue.messages(echo=True)] == ids[1:3]
    again = queue.claim(ttl=60, grace=60, limit=10)
    assert [m.id for m in again] == ids[1:3]

    other.delete()
    again.delete()
    assert queue.stats["messages"]["claimed"] == 0


def test_claimed_message_delete_rules(zclient: Client) -> None:
    queue = zclient.queue("rules", force_create=True)
    ids = post(queue, ["a", "b"])
    claim = queue.claim(ttl=60, grace=60, limit=1)
    assert [m.id for m in claim] == [ids[0]]

    # plain message fetched by another client view: no claim id -> refused
    unclaimed_view = Message(queue, ttl=60, age=0, body="a",
                             href=f"/v2/queues/rules/messages/{ids[0]}")
    with pytest.raises(errors.ForbiddenError):
        unclaimed_view.delete()

    # wrong (non-existent) claim id -> 400
    bogus = Message(queue, ttl=60, age=0, body="a",
                    href=f"/v2/queues/rules/messages/{ids[0]}?claim_id={uuid.uuid4()}")
    with pytest.raises(errors.MalformedRequest):
        bogus.delete()

    # claim id on a message that is not claimed -> 400
    not_claimed = Message(queue, ttl=60, age=0, body="b",
                          href=f"/v2/queues/rules/messages/{ids[1]}?claim_id={claim.id}")
    with pytest.raises(errors.MalformedRequest):
        not_claimed.delete()

    assert queue.stats["messages"]["total"] == 2


def test_claim_validation_and_missing_claims(zclient: Client) -> None:
    queue = zclient.queue("claimval", force_create=True)
    post(queue, ["x"])
    with pytest.raises(errors.MalformedRequest):
        queue.claim(ttl=30, grace=60)
    with pytest.raises(errors.MalformedRequest):
        queue.claim(ttl=60, grace=60, limit=21)

    claim = Claim(queue, id=str(uuid.uuid4()))
    with pytest.raises(errors.ResourceNotFound):
        list(claim)
    with pytest.raises(errors.ResourceNotFound):
        claim.update(ttl=60)

    # a claim on an empty or missing queue is empty (204)
    empty = zclient.queue("empty", auto_create=False).claim(ttl=60, grace=60)
    assert empty.id is None
    assert list(empty) == []


def test_claim_ignores_echo(zclient: Client) -> None:
    queue = zclient.queue("own", force_create=True)
    ids = post(queue, ["mine"])
    # the poster itself can claim its own messages
    claim = queue.claim(ttl=60, grace=60)
    assert [m.id for m in claim] == ids
    for msg in queue.claim(id=claim.id):
        msg.delete()
    assert queue.stats["messages"]["total"] == 0


def test_ping_and_homedoc(zclient: Client) -> None:
    assert zclient.ping() is True
    home = zclient.homedoc()
    assert "rel/queues" in home["resources"]
