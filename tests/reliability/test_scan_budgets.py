"""Every scan has a budget; housekeeping is bounded and survives bad records.

Storage-level tests run on every driver with ``[storage] scan_budget`` at its minimum
(100), so a few hundred rows show what 100,000 would: each call examines at most the
budget, and a listing that runs out says where to go on. Redis tests that count
commands run a private redis-server, where ``INFO commandstats`` is exact. Work is
asserted by counting (rows examined, commands run, markers), never by timing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis

from tests import backends
from tests.instances import RedisInstance
from tidings.admission.auth.factory import create_authenticator
from tidings.app import GC_MAX_BACKOFF, Lifecycle, gc_delay
from tidings.config import Settings, StorageSettings
from tidings.model import ClaimRequest, NewMessage
from tidings.notify.dispatcher import Dispatcher, Doorbell
from tidings.ops.context import Services
from tidings.storage import rules
from tidings.storage.base import PreparePost, Storage
from tidings.storage.redis import driver as redis_driver
from tidings.storage.redis.driver import RedisStorage
from tidings.storage.redis.keys import slot_id
from tidings.storage.sqlite.driver import SQLiteStorage

pytestmark = pytest.mark.anyio

BUDGET = 100
SETTINGS = StorageSettings(operation_timeout=10.0, scan_budget=BUDGET)
P = "project-a"
Q = "queue-1"
T0 = 1_700_000_000.0
CLIENT = "11111111-1111-1111-1111-111111111111"
STORES = ("sqlite", "redis", "postgres")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def batch(*bodies: int, ttl: int = 300, delay: int = 0) -> PreparePost:
    messages = [NewMessage(body=str(b).encode(), ttl=ttl, delay=delay) for b in bodies]
    return lambda _metadata: messages


def claim(limit: int = 10, ttl: int = 60, grace: int = 60) -> ClaimRequest:
    return ClaimRequest(ttl=ttl, grace=grace, limit=limit)


async def listing(storage: Storage, now: float = T0, **options: Any) -> list[str]:
    params: dict[str, Any] = {
        "marker": None, "limit": 20, "exclude_client": None,
        "include_claimed": False, "include_delayed": False, "now": now,
    }  # fmt: skip
    params.update(options)
    return [m.body.decode() for m in (await storage.messages.page(P, Q, **params)).messages]


@pytest.fixture(params=STORES)
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    kind: str = request.param
    name = backends.unique_name(kind[0])
    store: Storage
    if kind == "sqlite":
        store = SQLiteStorage.from_uri(f"sqlite:///{tmp_path / 'budget.db'}", SETTINGS)
    elif kind == "redis":
        store = RedisStorage.from_uri(backends.redis_store_uri(name), SETTINGS)
    else:
        from tidings.storage.postgres.driver import PostgresStorage

        store = PostgresStorage.from_uri(backends.postgres_store_uri(name), SETTINGS)
    await store.open()
    try:
        yield store
    finally:
        await store.close()
        if kind == "redis":
            await backends.drop_redis_prefix(name)
        elif kind == "postgres":
            await backends.drop_postgres_schema(name)


async def create_queues(storage: Storage, names: list[str], metadata: dict[str, Any]) -> None:
    for start in range(0, len(names), 50):
        await asyncio.gather(
            *(
                storage.queues.create(P, n, metadata.get(n, {}), T0)
                for n in names[start : start + 50]
            )
        )


# --- queue listing ---------------------------------------------------------------------


async def test_filtered_queue_listing_examines_at_most_the_budget(storage: Storage) -> None:
    names = [f"q-{i:04d}" for i in range(450)]
    metadata = {
        "q-0120": {"k": 1},
        "q-0300": {"k": 1, "other": "x"},
        "q-0449": {"k": 1},
        "q-0200": {"k": 2},  # the key, another value: the prefilter keeps it, the rule not
        "q-0210": {"x": {"k": 1}},  # nested: not a match either
    }
    await create_queues(storage, names, metadata)

    # Nothing matches: every call examines exactly the budget and says where to go on.
    marker, seen = None, []
    for _ in range(10):  # bounded: 450 names take 5 calls
        page = await storage.queues.page(P, marker=marker, limit=10, metadata_equals={"nomatch": 1})
        assert page.queues == []
        if page.resume_after is None:
            break
        seen.append(page.resume_after)
        marker = page.resume_after
    assert seen == [names[n * BUDGET - 1] for n in range(1, 5)]

    # Matches come page by page, each call bounded, none missed or repeated.
    found, marker = [], None
    for _ in range(10):
        page = await storage.queues.page(P, marker=marker, limit=10, metadata_equals={"k": 1})
        found += [q.name for q in page.queues]
        if page.resume_after is None:
            break
        marker = page.resume_after
    assert found == ["q-0120", "q-0300", "q-0449"]

    # A full page stops early and needs no continuation marker of its own.
    page = await storage.queues.page(P, marker=None, limit=5, name_contains="q-00")
    assert ([q.name for q in page.queues], page.resume_after) == (names[:5], None)
    page = await storage.queues.page(P, marker=None, limit=5, name_contains="zzz")
    assert (page.queues, page.resume_after) == ([], names[BUDGET - 1])


# --- claims, pops and listings pass over a bounded number of messages --------------------


async def test_claim_pop_and_listing_never_walk_a_delayed_head(storage: Storage) -> None:
    await storage.messages.post(P, Q, batch(*range(BUDGET + 50), delay=30), CLIENT, T0)
    await storage.messages.post(P, Q, batch(-1, -2), CLIENT, T0)
    # The two free messages lie past more delayed ones than one call may examine, but
    # delayed messages are not in the index of free ones, so they are found at once.
    assert await listing(storage) == ["-1", "-2"]
    popped = await storage.messages.pop(P, Q, 1, T0)
    assert [m.body for m in popped] == [b"-1"]
    held = await storage.claims.create(P, Q, claim(), T0)
    assert held is not None and [m.body for m in held.messages] == [b"-2"]
    assert len(await listing(storage, include_delayed=True)) == 20
    # Once the delay is over, everything is claimable again, oldest first.
    result = await storage.claims.create(P, Q, claim(limit=3), T0 + 31)
    assert result is not None and [m.body for m in result.messages] == [b"0", b"1", b"2"]


async def test_expired_head_is_settled_not_walked(storage: Storage) -> None:
    await storage.messages.post(P, Q, batch(*range(BUDGET + 50), ttl=60), CLIENT, T0)
    await storage.messages.post(P, Q, batch(-1), CLIENT, T0)
    # Not swept yet: the claim drops the expired head (bounded) and finds the live one.
    result = await storage.claims.create(P, Q, claim(), T0 + 61)
    assert result is not None and [m.body for m in result.messages] == [b"-1"]


async def test_live_claims_at_the_head_are_not_walked(storage: Storage) -> None:
    await storage.messages.post(P, Q, batch(*range(BUDGET * 2 + 5)), CLIENT, T0)
    for _ in range(BUDGET * 2 // 50):
        assert await storage.claims.create(P, Q, claim(limit=50), T0) is not None
    free = [str(n) for n in range(BUDGET * 2, BUDGET * 2 + 5)]
    assert await listing(storage) == free
    assert [m.body.decode() for m in await storage.messages.pop(P, Q, 2, T0)] == free[:2]
    result = await storage.claims.create(P, Q, claim(limit=10), T0)
    assert result is not None and [m.body.decode() for m in result.messages] == free[2:]
    assert (await storage.queues.stats(P, Q, T0)).claimed == BUDGET * 2 + 3


async def test_stats_count_live_claims(storage: Storage) -> None:
    await storage.messages.post(P, Q, batch(*range(300)), CLIENT, T0)
    for _ in range(2):
        await storage.claims.create(P, Q, claim(limit=50, ttl=60), T0)
    stats = await storage.queues.stats(P, Q, T0 + 1)
    assert (stats.total, stats.claimed) == (300, 100)
    stats = await storage.queues.stats(P, Q, T0 + 60)  # the claims lapsed
    assert (stats.total, stats.claimed) == (300, 0)


# --- claim grace and ttl beyond any sane range -----------------------------------------


async def test_absurd_or_negative_grace_never_breaks_a_queue(storage: Storage) -> None:
    await storage.messages.post(P, Q, batch(1, 2, 3, ttl=60), CLIENT, T0)
    held = await storage.claims.create(P, Q, claim(limit=1, grace=-50), T0)
    assert held is not None
    # A negative grace is taken as 0: the message lives at least as long as its claim.
    assert [m.body for m in await storage.messages.get(P, Q, [held.messages[0].id], T0 + 59)]
    huge = 9223372036854775807
    assert await storage.claims.renew(P, Q, held.id, 120, huge, T0 + 1) is True
    renewed = await storage.claims.get(P, Q, held.id, T0 + 2)
    assert renewed is not None and renewed.grace == rules.MAX_CLAIM_SECONDS
    assert renewed.messages[0].ttl == 120 + rules.MAX_CLAIM_SECONDS
    other = await storage.claims.create(P, Q, claim(limit=1, ttl=huge, grace=huge), T0 + 2)
    assert other is not None and other.messages[0].body == b"2"
    # The queue stays readable, countable and poppable: nothing else is touched.
    stats = await storage.queues.stats(P, Q, T0 + 3)
    assert (stats.total, stats.claimed) == (3, 2)
    assert await listing(storage, now=T0 + 3, include_claimed=True) == ["1", "2", "3"]
    assert [m.body for m in await storage.messages.pop(P, Q, 5, T0 + 3)] == [b"3"]
    assert await storage.collect_garbage(T0 + 3) == 0


# --- Redis: bounded scripts, quarantine, shrinking GC sets (private server, exact counts) -


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisInstance]:
    instance = RedisInstance(tmp_path / "redis", appendonly=False).start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture
async def redis_store(private_redis: RedisInstance) -> AsyncIterator[RedisStorage]:
    store = RedisStorage.from_uri(private_redis.url, SETTINGS)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


class CommandCounter:
    """Per-command call counts of a private Redis (scripts' inner calls included)."""

    def __init__(self, url: str) -> None:
        self._client = aioredis.Redis.from_url(url)

    async def reset(self) -> None:
        await self._client.config_resetstat()

    async def calls(self) -> dict[str, int]:
        stats = await self._client.info("commandstats")
        return {
            name.removeprefix("cmdstat_"): int(value["calls"])
            for name, value in stats.items()
            if name not in ("cmdstat_info", "cmdstat_config|resetstat")
        }

    async def close(self) -> None:
        await self._client.aclose()


@pytest.fixture
async def counter(private_redis: RedisInstance) -> AsyncIterator[CommandCounter]:
    found = CommandCounter(private_redis.url)
    try:
        yield found
    finally:
        await found.close()


async def test_redis_stats_read_no_claim_and_no_held_message(
    redis_store: RedisStorage, counter: CommandCounter
) -> None:
    await redis_store.messages.post(P, Q, batch(*range(1000)), CLIENT, T0)
    for _ in range(BUDGET // 20):  # within the budget of claimed messages at the head
        await redis_store.claims.create(P, Q, claim(limit=20), T0)
    await counter.reset()
    stats = await redis_store.queues.stats(P, Q, T0 + 1)
    assert (stats.total, stats.claimed) == (1000, BUDGET)
    calls = await counter.calls()
    # Two ends read; before, every live claim and each of its messages was read.
    assert calls.get("hget", 0) <= 2
    assert sum(n for name, n in calls.items() if name not in ("evalsha", "script|load")) <= 8


async def test_redis_listing_and_claims_stay_within_the_budget(
    redis_store: RedisStorage, counter: CommandCounter
) -> None:
    await asyncio.gather(*(redis_store.queues.create(P, f"q{i:04d}", {}, T0) for i in range(600)))
    await counter.reset()
    page = await redis_store.queues.page(P, marker=None, limit=20, metadata_equals={"k": 1})
    assert page.queues == [] and page.resume_after == f"q{BUDGET - 1:04d}"
    assert (await counter.calls())["hget"] == BUDGET

    await redis_store.messages.post(P, Q, batch(*range(BUDGET * 3), delay=30), CLIENT, T0)
    await counter.reset()
    assert await redis_store.claims.create(P, Q, claim(), T0) is None
    assert (await counter.calls()).get("hget", 0) <= BUDGET


async def test_redis_deletes_a_queue_without_blocking(
    redis_store: RedisStorage, counter: CommandCounter
) -> None:
    for _ in range(20):
        await redis_store.messages.post(P, Q, batch(*range(100)), CLIENT, T0)
    await redis_store.claims.create(P, Q, claim(limit=20), T0)
    await counter.reset()
    await redis_store.queues.purge_messages(P, Q)
    await redis_store.queues.delete(P, Q)
    calls = await counter.calls()
    assert calls["unlink"] == 3 and "del" not in calls  # one purge, one delete (2 calls)
    assert (await redis_store.queues.stats(P, Q, T0)).total == 0


async def test_redis_unreadable_records_are_quarantined_not_lost(
    redis_store: RedisStorage, caplog: pytest.LogCaptureFixture
) -> None:
    ids = await redis_store.messages.post(P, Q, batch(1, 2, 3, 4), CLIENT, T0)
    keys = redis_store._b.keys.queue(P, Q)
    records, outbox, quarantine = keys[2], keys[6], keys[-1]
    client = redis_store._b.client
    # What a renew with grace 2**63 - 1 used to store: ttl and expiry past any integer.
    record = list(msgspec.msgpack.decode(await client.hget(records, ids[1])))
    record[3], record[5] = float(2**63), float(2**63)
    await client.hset(records, ids[1], msgspec.msgpack.encode(record))
    await client.hset(records, ids[2], b"\xc1 not msgpack")
    await client.hset(outbox, "poison", b"\xc1 not an outbox entry")

    stats = await redis_store.queues.stats(P, Q, T0)
    assert stats.total == 4  # counted from indexes: the bad records leave only when met
    assert await listing(redis_store, include_claimed=True) == ["1", "4"]
    popped = await redis_store.messages.pop(P, Q, 5, T0)
    assert [m.body for m in popped] == [b"1", b"4"]  # neighbours are served, not lost
    with caplog.at_level(logging.ERROR, logger="tidings.storage.redis.driver"):
        await redis_store.collect_garbage(T0)
        await redis_store.collect_garbage(T0)
    aside = await client.hgetall(quarantine)
    assert set(aside) == {ids[1].encode(), ids[2].encode(), b"outbox:poison"}
    assert await client.hlen(outbox) == 0
    reports = [r for r in caplog.records if "moved aside" in r.getMessage()]
    assert len(reports) == 1  # logged once, not on every run
    assert (await redis_store.queues.stats(P, Q, T0)).total == 0


async def test_redis_gc_sets_shrink_and_each_run_is_bounded(
    redis_store: RedisStorage, counter: CommandCounter, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = redis_store._b.keys
    client = redis_store._b.client
    # Deleting the last queue drops the project at once.
    await redis_store.queues.create("gone", "q", {}, T0)
    await redis_store.queues.delete("gone", "q")
    assert not await client.sismember(keys.projects, "gone")
    # Sets left behind by an older version: 2,000 empty projects and sources.
    await client.sadd(keys.projects, *(f"old-{i}" for i in range(2000)))
    await client.sadd(keys.sources, *(slot_id(f"old-{i}", "q") for i in range(2000)))
    await redis_store.messages.post("live", "q", batch(1, ttl=60), CLIENT, T0)
    await redis_store.subscriptions.create("live", "q", "http://example.com/h", 600, {}, T0)

    calls_per_run = 300
    monkeypatch.setattr(redis_driver, "GC_CALLS_PER_RUN", calls_per_run)
    removed = 0
    for _ in range(40):  # bounded: ~3 calls per project and per source
        await counter.reset()
        removed += await redis_store.collect_garbage(T0 + 61)
        spent = sum((await counter.calls()).values())
        # Queues and sources get calls_per_run calls each; a script runs a few inside.
        assert spent <= 2 * calls_per_run * 5
        left = await client.scard(keys.projects) + await client.scard(keys.sources)
        if left == 2:
            break
    assert await client.smembers(keys.projects) == {b"live"}
    assert await client.smembers(keys.sources) == {b"4:live:q"}
    assert removed == 1  # the live queue's expired message


# --- the sweep never dies --------------------------------------------------------------


class FailingOnce(SQLiteStorage):
    """A real store whose first sweeps fail with an error no driver would raise."""

    def __init__(self, path: Path, failures: int) -> None:
        super().__init__(path)
        self.failures = failures
        self.sweeps = 0

    async def collect_garbage(self, now: float) -> int:
        self.sweeps += 1
        if self.sweeps <= self.failures:
            raise RuntimeError("a bug in a driver")
        return await super().collect_garbage(now)


async def test_sweep_survives_any_exception(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = FailingOnce(tmp_path / "sweep.db", failures=1)
    settings = Settings(storage=StorageSettings(gc_interval=0.01))
    services = Services(settings=settings, storage=store, wake_dispatcher=lambda: None)
    dispatcher = Dispatcher(store, settings.notification, Doorbell(), services.clock)
    lifecycle = Lifecycle(services, dispatcher, create_authenticator(settings))
    await lifecycle.process_startup({}, {})
    try:
        with caplog.at_level(logging.ERROR, logger="tidings"):
            for _ in range(500):  # bounded wait for the sweep after the failure
                if store.sweeps >= 2:
                    break
                await asyncio.sleep(0.01)
    finally:
        await lifecycle.process_shutdown({}, {})
    assert store.sweeps >= 2
    failed = [r for r in caplog.records if "garbage collection failed" in r.getMessage()]
    assert failed and failed[0].exc_info is not None  # with its traceback


def test_sweep_backs_off_within_a_bound() -> None:
    assert gc_delay(30.0, 0) == 30.0
    assert gc_delay(30.0, 1) == 60.0
    assert gc_delay(30.0, 100) == GC_MAX_BACKOFF
    assert gc_delay(600.0, 3) == 600.0


# --- over HTTP: the listing's next link carries the marker ------------------------------


def test_filtered_listing_links_on_when_the_budget_runs_out(
    make_server: Any, tmp_path: Path
) -> None:
    server = make_server(tmp_path, env={"TIDINGS_STORAGE__SCAN_BUDGET": str(BUDGET)}).start()
    with server.client() as api:
        for i in range(250):
            assert api.put(f"/queues/q{i:03d}").status_code == 201
        api.put("/queues/q249x", json={"team": "blue"})
        href: str | None = "/v2/queues?team=blue&limit=5"
        pages, found = 0, []
        while href and pages < 10:  # bounded: 251 queues take 4 requests
            response = api.get(href.removeprefix("/v2"))
            assert response.status_code == 200, response.text
            body = response.json()
            found += [q["name"] for q in body["queues"]]
            links = body["links"]
            href = links[0]["href"] if links else None
            pages += 1
        assert found == ["q249x"]
        assert pages == 4  # 100 names a request, then the page after the last match


def test_message_listing_links_past_a_delayed_head(make_server: Any, tmp_path: Path) -> None:
    server = make_server(tmp_path, env={"TIDINGS_STORAGE__SCAN_BUDGET": str(BUDGET)}).start()
    with server.client() as api:
        assert api.put("/queues/dq", json={"_default_message_delay": 300}).status_code == 201
        for start in range(0, 2 * BUDGET + 50, 50):  # delayed by the queue's default
            delayed = [{"body": n} for n in range(start, start + 50)]
            assert api.post("/queues/dq/messages", json={"messages": delayed}).status_code == 201
        free = [{"body": f"free-{n}", "delay": 0} for n in range(3)]
        assert api.post("/queues/dq/messages", json={"messages": free}).status_code == 201

        href: str | None = "/v2/queues/dq/messages?echo=true&limit=5"
        pages: list[list[Any]] = []
        while href and len(pages) < 10:  # bounded: 253 messages take 4 requests
            response = api.get(href.removeprefix("/v2"))
            assert response.status_code == 200, response.text
            body = response.json()
            pages.append([m["body"] for m in body["messages"]])
            links = body["links"]
            href = links[0]["href"] if links else None
            if href:  # the caller's parameters go on; this queue delays, so none is added
                assert "echo=true" in href and "limit=5" in href
                assert "include_delayed" not in href
        # The delayed head is never walked: the first page has the free messages.
        assert pages == [["free-0", "free-1", "free-2"], []]
