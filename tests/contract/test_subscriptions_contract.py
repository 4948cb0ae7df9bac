"""Subscriptions and the notification outbox: behaviour every storage driver must show."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.contract import peek
from tidings.errors import SubscriberTaken
from tidings.model import Delivery, DeliveryKind, NewMessage
from tidings.storage.base import Audience, PreparePost, Storage
from tidings.storage.postgres import subscriptions as postgres_subscriptions
from tidings.storage.redis import subscriptions as redis_subscriptions
from tidings.storage.redis.driver import RedisStorage
from tidings.storage.sqlite import driver as sqlite_driver

pytestmark = pytest.mark.anyio

P = "project-s"
Q = "queue-s"
T0 = 1_700_000_000.0
CLIENT = "11111111-1111-1111-1111-111111111111"
LEASE = 30.0


def batch(*bodies: int, delay: int = 0) -> PreparePost:
    messages = [NewMessage(body=str(b).encode(), ttl=300, delay=delay) for b in bodies]
    return lambda _metadata: messages


async def subscribe(
    storage: Storage, subscriber: str, ttl: int = 600, source: str = Q, project: str = P
) -> str:
    subscription, created = await storage.subscriptions.create(
        project, source, subscriber, ttl, {"k": [1]}, T0
    )
    assert created
    return subscription.id


# --- subscriptions ----------------------------------------------------------------


async def test_create_is_unique_per_subscriber(storage: Storage) -> None:
    first, created = await storage.subscriptions.create(P, Q, "http://a", 600, {"x": 1}, T0)
    assert created and not first.confirmed
    assert (first.source, first.subscriber, first.ttl) == (Q, "http://a", 600)
    assert first.options == {"x": 1}
    again, created = await storage.subscriptions.create(P, Q, "http://a", 60, {}, T0 + 1)
    assert not created and again.id == first.id and again.ttl == 600
    other_queue, created = await storage.subscriptions.create(P, "other", "http://a", 60, {}, T0)
    assert created and other_queue.id != first.id
    other_project, created = await storage.subscriptions.create("p2", Q, "http://a", 60, {}, T0)
    assert created and other_project.id != first.id


async def test_get_page_and_expiry(storage: Storage) -> None:
    ids = sorted([await subscribe(storage, f"http://h/{n}", ttl=100 + n) for n in range(5)])
    assert (await storage.subscriptions.get(P, Q, ids[0], T0)) is not None
    assert await storage.subscriptions.get(P, "other", ids[0], T0) is None
    assert await storage.subscriptions.get("other", Q, ids[0], T0) is None
    page = await storage.subscriptions.page(P, Q, marker=None, limit=3, now=T0)
    assert [s.id for s in page] == ids[:3]
    rest = await storage.subscriptions.page(P, Q, marker=page[-1].id, limit=10, now=T0)
    assert [s.id for s in rest] == ids[3:]
    # ttl 100..104: all alive at T0+100 except the one of ttl 100.
    alive = await storage.subscriptions.page(P, Q, marker=None, limit=10, now=T0 + 100)
    assert len(alive) == 4
    assert await storage.subscriptions.page(P, Q, marker=None, limit=10, now=T0 + 105) == []
    # An expired subscriber may subscribe again.
    _, created = await storage.subscriptions.create(P, Q, "http://h/0", 60, {}, T0 + 105)
    assert created


async def test_update_replaces_fields_and_restarts_ttl(storage: Storage) -> None:
    sid = await subscribe(storage, "http://a", ttl=100)
    await subscribe(storage, "http://b")
    changed = await storage.subscriptions.update(P, Q, sid, T0 + 50, options={"new": True})
    assert changed is not None
    assert (changed.options, changed.ttl, changed.updated) == ({"new": True}, 100, T0)
    changed = await storage.subscriptions.update(P, Q, sid, T0 + 60, ttl=300, subscriber="http://c")
    assert changed is not None
    assert (changed.subscriber, changed.ttl, changed.updated, changed.expires) == (
        "http://c", 300, T0 + 60, T0 + 360)
    stored = await storage.subscriptions.get(P, Q, sid, T0 + 359)
    assert stored == changed
    with pytest.raises(SubscriberTaken):
        await storage.subscriptions.update(P, Q, sid, T0 + 61, subscriber="http://b")
    assert await storage.subscriptions.update(P, Q, "missing", T0, ttl=60) is None
    assert await storage.subscriptions.update(P, Q, sid, T0 + 400, ttl=60) is None


async def test_confirm_delete_and_purge(storage: Storage) -> None:
    sid = await subscribe(storage, "http://a")
    confirmed = await storage.subscriptions.confirm(P, Q, sid, True, T0)
    assert confirmed is not None and confirmed.confirmed
    again, created = await storage.subscriptions.create(P, Q, "http://a", 60, {}, T0)
    assert not created and again.confirmed
    assert await storage.subscriptions.confirm(P, Q, "missing", True, T0) is None
    await storage.subscriptions.delete(P, Q, sid)
    await storage.subscriptions.delete(P, Q, sid)  # no error
    assert await storage.subscriptions.get(P, Q, sid, T0) is None
    await subscribe(storage, "http://x")
    await subscribe(storage, "http://y")
    await storage.subscriptions.purge(P, Q)
    assert await storage.subscriptions.page(P, Q, marker=None, limit=10, now=T0) == []


async def test_subscriptions_survive_queue_deletion(storage: Storage) -> None:
    await storage.messages.post(P, Q, batch(1), CLIENT, T0)
    sid = await subscribe(storage, "http://a")
    await storage.queues.delete(P, Q)
    assert await storage.subscriptions.get(P, Q, sid, T0) is not None


# --- outbox -----------------------------------------------------------------------


async def take_all(storage: Storage, now: float) -> list[tuple[str, str | None, bytes]]:
    taken = await storage.outbox.take(now, LEASE, 100)
    return sorted((d.subscriber, d.message_id, d.payload) for d in taken)


async def test_post_fans_out_one_notification_per_message_and_subscription(
    storage: Storage,
) -> None:
    await subscribe(storage, "http://a")
    await subscribe(storage, "http://b")
    await subscribe(storage, "http://other", source="elsewhere")
    ids = await storage.messages.post(P, Q, batch(1, 2), CLIENT, T0, Audience.ALL)
    taken = await storage.outbox.take(T0, LEASE, 100)
    assert sorted((d.subscriber, d.message_id) for d in taken) == sorted(
        (s, m) for s in ("http://a", "http://b") for m in ids
    )
    first = next(d for d in taken if d.message_id == ids[0])
    assert (first.kind, first.payload, first.ttl, first.delay, first.attempts) == (
        DeliveryKind.NOTIFICATION, b"1", 300, 0, 1)
    assert (first.project, first.source, first.options) == (P, Q, {"k": [1]})
    # Leased: not taken again until the lease runs out.
    assert await storage.outbox.take(T0 + 1, LEASE, 100) == []
    assert len(await storage.outbox.take(T0 + LEASE + 1, LEASE, 100)) == 4


async def test_post_without_audience_or_subscriptions_owes_nothing(storage: Storage) -> None:
    await storage.messages.post(P, Q, batch(1), CLIENT, T0, Audience.ALL)
    await subscribe(storage, "http://a")
    await storage.messages.post(P, Q, batch(2), CLIENT, T0)
    assert await storage.outbox.take(T0, LEASE, 100) == []


async def test_confirmed_audience_skips_unconfirmed(storage: Storage) -> None:
    yes = await subscribe(storage, "http://yes")
    await subscribe(storage, "http://no")
    await storage.subscriptions.confirm(P, Q, yes, True, T0)
    await storage.messages.post(P, Q, batch(1), CLIENT, T0, Audience.CONFIRMED)
    assert [s for s, _, _ in await take_all(storage, T0)] == ["http://yes"]


async def test_delayed_messages_notify_when_due(storage: Storage) -> None:
    await subscribe(storage, "http://a")
    await storage.messages.post(P, Q, batch(1, delay=30), CLIENT, T0, Audience.ALL)
    assert await storage.outbox.take(T0 + 29, LEASE, 100) == []
    due = await storage.outbox.take(T0 + 30, LEASE, 100)
    assert [d.delay for d in due] == [30]


async def test_done_retry_and_fail(storage: Storage) -> None:
    sid = await subscribe(storage, "http://a")
    await storage.messages.post(P, Q, batch(1, 2, 3), CLIENT, T0, Audience.ALL)
    first, second, third = sorted(
        await storage.outbox.take(T0, LEASE, 100), key=lambda d: d.payload
    )
    await storage.outbox.done(first.id)
    await storage.outbox.retry(second.id, 1, T0 + 5)
    await storage.outbox.fail(third, 7, "HTTP 500 from http://a", T0 + 1)
    assert await storage.outbox.take(T0 + 4, LEASE, 100) == []
    again = await storage.outbox.take(T0 + 5, LEASE, 100)
    assert [(d.payload, d.attempts) for d in again] == [(b"2", 2)]
    failures = await storage.outbox.failures(P, Q, sid, 10)
    assert [(f.message_id, f.attempts, f.error, f.failed) for f in failures] == [
        (third.message_id, 7, "HTTP 500 from http://a", T0 + 1)]
    assert await storage.outbox.failures(P, Q, "other", 10) == []


async def test_take_is_bounded_and_shared_fairly(storage: Storage) -> None:
    await subscribe(storage, "http://a")
    await storage.messages.post(P, Q, batch(*range(10)), CLIENT, T0, Audience.ALL)
    first = await storage.outbox.take(T0, LEASE, 4)
    second = await storage.outbox.take(T0, LEASE, 100)
    assert len(first) == 4 and len(second) == 6
    assert not {d.id for d in first} & {d.id for d in second}


async def test_deliveries_of_gone_subscriptions_are_dropped(storage: Storage) -> None:
    sid = await subscribe(storage, "http://a", ttl=100)
    await subscribe(storage, "http://b", ttl=1000)
    await storage.messages.post(P, Q, batch(1), CLIENT, T0, Audience.ALL)
    await storage.subscriptions.delete(P, Q, sid)
    assert [s for s, _, _ in await take_all(storage, T0)] == ["http://b"]
    await storage.messages.post(P, Q, batch(2), CLIENT, T0 + 10, Audience.ALL)
    await storage.subscriptions.purge(P, Q)
    assert await storage.outbox.take(T0 + 500, LEASE, 100) == []


async def test_confirmation_enqueued_for_one_subscription(storage: Storage) -> None:
    sid = await subscribe(storage, "http://a")
    await subscribe(storage, "http://b")
    await storage.outbox.enqueue(P, Q, sid, DeliveryKind.CONFIRMATION, b'{"c": 1}', T0)
    [delivery] = await storage.outbox.take(T0, LEASE, 100)
    assert (delivery.kind, delivery.subscriber, delivery.message_id, delivery.payload) == (
        DeliveryKind.CONFIRMATION, "http://a", None, b'{"c": 1}')


# --- fairness, tries and retention -------------------------------------------------


async def test_take_counts_a_try_even_when_the_lease_runs_out(storage: Storage) -> None:
    await subscribe(storage, "http://a")
    await storage.messages.post(P, Q, batch(1), CLIENT, T0, Audience.ALL)
    tries = []
    for n in range(3):  # a worker that dies mid-delivery never records an outcome
        [delivery] = await storage.outbox.take(T0 + n * (LEASE + 1), LEASE, 100)
        tries.append(delivery.attempts)
    assert tries == [1, 2, 3]
    # Deferring gives the try back.
    await storage.outbox.retry(delivery.id, delivery.attempts - 1, T0 + 200)
    [again] = await storage.outbox.take(T0 + 200, LEASE, 100)
    assert again.attempts == 3


async def test_take_shares_slots_between_projects(storage: Storage) -> None:
    await subscribe(storage, "http://a", project="busy")
    await subscribe(storage, "http://b", project="quiet")
    await storage.messages.post("busy", Q, batch(*range(30)), CLIENT, T0, Audience.ALL)
    await storage.messages.post("quiet", Q, batch(1, 2), CLIENT, T0 + 1, Audience.ALL)
    taken = await storage.outbox.take(T0 + 2, LEASE, 10, per_project=4)
    projects = sorted(d.project for d in taken)
    assert projects == ["busy"] * 4 + ["quiet"] * 2
    # A project at its share is not even leased; one below it gets only the rest.
    await storage.messages.post("quiet", Q, batch(3), CLIENT, T0 + 3, Audience.ALL)
    taken = await storage.outbox.take(
        T0 + 4, LEASE, 10, per_project=4, in_flight={"busy": 4, "quiet": 3}
    )
    assert [d.project for d in taken] == ["quiet"]
    taken = await storage.outbox.take(T0 + 5, LEASE, 10, per_project=4, in_flight={"busy": 1})
    assert [d.project for d in taken] == ["busy"] * 3


async def test_a_negative_in_flight_grants_a_project_more_than_the_share(
    storage: Storage,
) -> None:
    await subscribe(storage, "http://a", project="pushy")
    await subscribe(storage, "http://b", project="plain")
    await storage.messages.post("pushy", Q, batch(*range(12)), CLIENT, T0, Audience.ALL)
    await storage.messages.post("plain", Q, batch(*range(12)), CLIENT, T0 + 1, Audience.ALL)
    taken = await storage.outbox.take(
        T0 + 2, LEASE, 100, per_project=4, in_flight={"pushy": -6}
    )
    assert sorted(d.project for d in taken) == ["plain"] * 4 + ["pushy"] * 10


async def test_done_many_forgets_deliveries_of_several_sources(storage: Storage) -> None:
    await subscribe(storage, "http://a")
    await subscribe(storage, "http://b", source="other")
    await storage.messages.post(P, Q, batch(1, 2, 3), CLIENT, T0, Audience.ALL)
    await storage.messages.post(P, "other", batch(4, 5), CLIENT, T0, Audience.ALL)
    taken = await storage.outbox.take(T0, LEASE, 100)
    assert sorted(d.payload for d in taken) == [b"1", b"2", b"3", b"4", b"5"]
    kept = next(d for d in taken if d.payload == b"2")
    finished = [d.id for d in taken if d.id != kept.id]
    await storage.outbox.done_many(finished)
    await storage.outbox.done_many([])
    await storage.outbox.done_many(finished[:1])  # gone already: passed over
    [again] = await storage.outbox.take(T0 + LEASE + 1, LEASE, 100)
    assert (again.id, again.payload) == (kept.id, b"2")


async def test_a_projects_backlog_does_not_hide_another(storage: Storage) -> None:
    await subscribe(storage, "http://a", project="flood")
    for n in range(5):
        await storage.messages.post("flood", f"q{n}", batch(*range(100)), CLIENT, T0,
                                    Audience.ALL)
        await subscribe(storage, f"http://a/{n}", source=f"q{n}", project="flood")
        await storage.messages.post("flood", f"q{n}", batch(*range(100)), CLIENT, T0,
                                    Audience.ALL)
    await subscribe(storage, "http://b", project="other")
    await storage.messages.post("other", Q, batch(1), CLIENT, T0 + 10, Audience.ALL)
    taken = await storage.outbox.take(T0 + 10, LEASE, 4, per_project=4, in_flight={"flood": 4})
    assert [(d.project, d.subscriber) for d in taken] == [("other", "http://b")]


async def test_deleting_a_subscription_drops_what_is_owed_to_it(storage: Storage) -> None:
    sid = await subscribe(storage, "http://a")
    await storage.messages.post(P, Q, batch(1, 2), CLIENT, T0, Audience.ALL)
    [leased, _] = await storage.outbox.take(T0, LEASE, 100)
    await storage.outbox.retry(leased.id, 1, T0 + 1)
    await storage.subscriptions.delete(P, Q, sid)
    assert await storage.outbox.take(T0 + LEASE + 1, LEASE, 100) == []
    # re-subscribing does not bring the old deliveries back
    await subscribe(storage, "http://a")
    assert await storage.outbox.take(T0 + LEASE + 2, LEASE, 100) == []


async def test_failures_are_capped_per_subscription(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in (sqlite_driver, redis_subscriptions, postgres_subscriptions):
        monkeypatch.setattr(module, "FAILURES_KEPT", 3)
    sid = await subscribe(storage, "http://a")
    await storage.messages.post(P, Q, batch(*range(5)), CLIENT, T0, Audience.ALL)
    for n, delivery in enumerate(await storage.outbox.take(T0, LEASE, 100)):
        await storage.outbox.fail(delivery, 1, f"error {n}", T0 + n)
    found = await storage.outbox.failures(P, Q, sid, 100)
    assert [f.error for f in found] == ["error 4", "error 3", "error 2"]


async def test_old_failures_are_pruned(storage: Storage) -> None:
    sid = await subscribe(storage, "http://a")
    await storage.messages.post(P, Q, batch(1, 2), CLIENT, T0, Audience.ALL)
    first, second = await storage.outbox.take(T0, LEASE, 100)
    await storage.outbox.fail(first, 1, "old", T0)
    await storage.outbox.fail(second, 1, "new", T0 + 100)
    removed = await storage.outbox.prune_failures(T0 + 50)
    kept = [f.error for f in await storage.outbox.failures(P, Q, sid, 10)]
    # Redis bounds failures by count only; the SQL stores also by age.
    if isinstance(storage, RedisStorage):
        assert (removed, kept) == (0, ["new", "old"])
    else:
        assert (removed, kept) == (1, ["new"])
    await storage.subscriptions.delete(P, Q, sid)
    assert await storage.outbox.failures(P, Q, sid, 10) == []


# --- bodies stored once -------------------------------------------------------------


async def test_a_post_stores_each_body_once(storage: Storage) -> None:
    for n in range(3):
        await subscribe(storage, f"http://h/{n}")
    ids = await storage.messages.post(P, Q, batch(1, 2), CLIENT, T0, Audience.ALL)
    assert await peek.stored_bodies(storage, P, Q) == 2
    taken = await storage.outbox.take(T0, LEASE, 100)
    assert sorted((d.message_id, d.payload) for d in taken) == sorted(
        [(ids[0], b"1")] * 3 + [(ids[1], b"2")] * 3)
    # A post nobody is owed stores no body.
    await storage.messages.post(P, "quiet", batch(3), CLIENT, T0, Audience.ALL)
    await storage.messages.post(P, Q, batch(4), CLIENT, T0)
    assert await peek.stored_bodies(storage, P, "quiet") == 0
    assert await peek.stored_bodies(storage, P, Q) == 2


async def test_a_body_goes_with_the_last_delivery_of_its_message(storage: Storage) -> None:
    await subscribe(storage, "http://a")
    await subscribe(storage, "http://b")
    await storage.messages.post(P, Q, batch(1, 2, 3), CLIENT, T0, Audience.ALL)
    taken = await storage.outbox.take(T0, LEASE, 100)
    by_body: dict[bytes, list[Delivery]] = {}
    for delivery in taken:
        by_body.setdefault(delivery.payload, []).append(delivery)
    one, two, three = by_body[b"1"], by_body[b"2"], by_body[b"3"]
    await storage.outbox.done(one[0].id)
    assert await peek.stored_bodies(storage, P, Q) == 3
    await storage.outbox.done(one[1].id)
    await storage.outbox.done(two[0].id)
    await storage.outbox.fail(two[1], 3, "HTTP 500", T0)
    await storage.outbox.done(three[0].id)
    await storage.outbox.retry(three[1].id, 1, T0 + 5)
    assert await peek.stored_bodies(storage, P, Q) == 1
    [again] = await storage.outbox.take(T0 + 5, LEASE, 100)
    assert again.payload == b"3"
    await storage.outbox.done(again.id)
    assert await peek.stored_bodies(storage, P, Q) == 0


async def test_bodies_go_with_the_subscriptions_owed_them(storage: Storage) -> None:
    first = await subscribe(storage, "http://a")
    second = await subscribe(storage, "http://b")
    await storage.messages.post(P, Q, batch(1, 2), CLIENT, T0, Audience.ALL)
    await storage.subscriptions.delete(P, Q, first)
    # What is owed to a deleted subscription goes with it, or when next taken.
    assert [s for s, _, _ in await take_all(storage, T0)] == ["http://b"] * 2
    assert await peek.stored_bodies(storage, P, Q) == 2
    await storage.subscriptions.delete(P, Q, second)
    assert await storage.outbox.take(T0 + LEASE + 1, LEASE, 100) == []
    assert await peek.stored_bodies(storage, P, Q) == 0
    await subscribe(storage, "http://c")
    await storage.messages.post(P, Q, batch(3, 4), CLIENT, T0 + 100, Audience.ALL)
    assert await peek.stored_bodies(storage, P, Q) == 2
    await storage.subscriptions.purge(P, Q)
    assert await peek.stored_bodies(storage, P, Q) == 0


async def test_a_delivery_with_its_body_inline_is_still_delivered(storage: Storage) -> None:
    sid = await subscribe(storage, "http://a")
    message_id = str(uuid.uuid4())
    await peek.owe_inline(storage, P, Q, sid, message_id, b'{"old": 1}', T0)
    [ids] = [await storage.messages.post(P, Q, batch(5), CLIENT, T0, Audience.ALL)]
    taken = await storage.outbox.take(T0, LEASE, 100)
    assert sorted((d.message_id, d.payload) for d in taken) == sorted(
        [(message_id, b'{"old": 1}'), (ids[0], b"5")])
    for delivery in taken:
        await storage.outbox.done(delivery.id)
    assert await storage.outbox.take(T0 + LEASE + 1, LEASE, 100) == []
    assert await peek.stored_bodies(storage, P, Q) == 0


async def test_concurrent_releases_leave_no_body_behind(storage: Storage) -> None:
    for n in range(12):
        await subscribe(storage, f"http://h/{n}")
    await storage.messages.post(P, Q, batch(1, 2), CLIENT, T0, Audience.ALL)
    taken = await storage.outbox.take(T0, LEASE, 100)
    assert len(taken) == 24
    # Each body's last deliveries end at once, in transactions of their own.
    await asyncio.gather(*(storage.outbox.done(d.id) for d in taken))
    assert await peek.stored_bodies(storage, P, Q) == 0
