"""The Redis free index: exact under every operation, bounded, and built for old queues.

Each message is in exactly one of the claimed, delayed or ready indexes (see
``lua/queue_lib.lua``); claims, pops and listings read ready after settling what time
changed. Queues written before the index existed are indexed lazily, a bounded number
of messages per call, without losing or reordering anything. Work is asserted by
counting commands on a private redis-server, never by timing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest
import redis.asyncio as aioredis

from tests import backends
from tests.instances import RedisInstance
from tidings.config import StorageSettings
from tidings.model import ClaimRequest, DeadLetterPolicy, NewMessage
from tidings.storage.base import PreparePost
from tidings.storage.redis.driver import RedisStorage
from tidings.storage.redis.keys import QUEUE_KINDS

pytestmark = pytest.mark.anyio

BUDGET = 100  # the smallest scan budget: settling and indexing handle 5 x 100 per call
SETTINGS = StorageSettings(operation_timeout=10.0, scan_budget=BUDGET)
P = "project-f"
Q = "queue-f"
T0 = 1_700_000_000.0
CLIENT = "44444444-4444-4444-4444-444444444444"
NEW_KINDS = ("ready", "delayed", "delay-ends", "layout")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def store() -> AsyncIterator[RedisStorage]:
    name = backends.unique_name("f")
    found = RedisStorage.from_uri(backends.redis_store_uri(name), SETTINGS)
    await found.open()
    try:
        yield found
    finally:
        await found.close()
        await backends.drop_redis_prefix(name)


def batch(bodies: list[str], ttl: int = 3600, delay: int = 0) -> PreparePost:
    messages = [NewMessage(body=b.encode(), ttl=ttl, delay=delay) for b in bodies]
    return lambda _metadata: messages


async def post(store: RedisStorage, bodies: list[str], **options: int) -> None:
    for start in range(0, len(bodies), 1000):
        await store.messages.post(P, Q, batch(bodies[start : start + 1000], **options), CLIENT, T0)


def queue_keys(store: RedisStorage, queue: str = Q) -> dict[str, str]:
    return dict(zip(QUEUE_KINDS, store._b.keys.queue(P, queue), strict=True))


async def check_index(store: RedisStorage, queue: str = Q) -> None:
    """Every message is in order and expiry, and in exactly one of claimed, delayed (with
    its delay end) or ready, each scored as its record says."""
    keys, client = queue_keys(store, queue), store._b.client

    async def scores(kind: str) -> dict[bytes, float]:
        return dict(await client.zrange(keys[kind], 0, -1, withscores=True))

    records = {
        mid: msgspec.msgpack.decode(raw)
        for mid, raw in (await client.hgetall(keys["records"])).items()
    }
    order, expiry, claimed = await scores("order"), await scores("expiry"), await scores("claimed")
    ready, delayed, ends = (
        await scores("ready"),
        await scores("delayed"),
        await scores("delay-ends"),
    )
    assert set(order) == set(expiry) == set(records)
    assert set(ready) | set(delayed) | set(claimed) == set(records)
    assert not (set(ready) & set(delayed)) and not (set(ready) & set(claimed))
    assert not (set(delayed) & set(claimed)) and set(delayed) == set(ends)
    for mid, record in records.items():
        seq, claim, claim_expires, delay_until = record[1], record[7], record[8], record[10]
        assert order[mid] == seq and expiry[mid] == record[5]
        if claim:
            assert claimed[mid] == claim_expires
        elif mid in delayed:
            assert (delayed[mid], ends[mid]) == (seq, delay_until)
        else:
            assert ready[mid] == seq


async def to_old_layout(store: RedisStorage, queue: str = Q) -> None:
    """What the previous version left: the same keys, without the free index."""
    keys = queue_keys(store, queue)
    await store._b.client.delete(*(keys[kind] for kind in NEW_KINDS))


async def claim_bodies(
    store: RedisStorage, now: float, limit: int = 20, ttl: int = 60
) -> list[str]:
    result = await store.claims.create(P, Q, ClaimRequest(ttl=ttl, grace=60, limit=limit), now)
    return [] if result is None else [m.body.decode() for m in result.messages]


# --- the index stays exact ---------------------------------------------------------------


async def test_every_operation_keeps_the_index_exact(store: RedisStorage) -> None:
    await post(store, [f"m{i}" for i in range(30)])
    await post(store, [f"d{i}" for i in range(5)], delay=100)
    await post(store, [f"x{i}" for i in range(5)], ttl=50)
    await check_index(store)

    first = await store.claims.create(P, Q, ClaimRequest(ttl=30, grace=10, limit=10), T0)
    second = await store.claims.create(P, Q, ClaimRequest(ttl=200, grace=10, limit=5), T0)
    assert first is not None and second is not None
    await check_index(store)
    assert await store.claims.renew(P, Q, second.id, 300, 10, T0 + 1)
    await store.messages.delete(P, Q, first.messages[0].id, first.id, T0 + 1)
    await store.messages.delete_many(P, Q, [m.id for m in second.messages[:2]], [second.id], T0 + 1)
    await store.claims.release(P, Q, second.id, T0 + 2)
    # Released messages are free again at their place in FIFO order.
    assert [m.body for m in await store.messages.pop(P, Q, 2, T0 + 2)] == [b"m12", b"m13"]
    await check_index(store)

    # Later: the first claim lapsed, the delays ended, the short-lived messages expired.
    now = T0 + 120
    page = await store.messages.page(
        P, Q, marker=None, limit=50, exclude_client=None,
        include_claimed=False, include_delayed=False, now=now,
    )  # fmt: skip
    bodies = [m.body.decode() for m in page.messages]
    assert bodies == [f"m{i}" for i in range(1, 30) if i not in (10, 11, 12, 13)] + [
        f"d{i}" for i in range(5)
    ]
    await check_index(store)

    # Dead-lettering: claimed once already, the lapsed messages move on at the next claim.
    policy = DeadLetterPolicy(max_claim_count=1, queue="dlq")
    moved = await store.claims.create(
        P, Q, ClaimRequest(ttl=60, grace=0, limit=3, dead_letter=policy), now
    )
    assert moved is None  # all three were dead-lettered
    await check_index(store)
    await check_index(store, "dlq")
    dead = await store.messages.page(
        P, "dlq", marker=None, limit=10, exclude_client=None,
        include_claimed=False, include_delayed=False, now=now,
    )  # fmt: skip
    assert [m.body for m in dead.messages] == [b"m1", b"m2", b"m3"]

    for _ in range(5):  # bounded: one run settles this queue
        if not await store.collect_garbage(now + 1000):
            break
    await check_index(store)
    await store.queues.purge_messages(P, Q)
    await post(store, ["after-purge"])
    await check_index(store)
    assert await claim_bodies(store, T0) == ["after-purge"]


# --- queues written by the previous version ---------------------------------------------


async def test_an_old_queue_is_indexed_lazily_in_order_and_loses_nothing(
    store: RedisStorage,
) -> None:
    lapsed = [f"lapsed-{i}" for i in range(20)]
    held = [f"held-{i}" for i in range(1500)]
    delayed = [f"delayed-{i}" for i in range(300)]
    free = [f"free-{i:04d}" for i in range(1000)]
    await post(store, lapsed)
    await post(store, held)
    assert await claim_bodies(store, T0, ttl=30) == lapsed  # lapses at T0 + 30
    for _ in range(15):
        assert await claim_bodies(store, T0, limit=100, ttl=600)
    await post(store, delayed, delay=600)
    await post(store, [f"expired-{i}" for i in range(200)], ttl=60)
    await post(store, free)
    await to_old_layout(store)
    layout = queue_keys(store)["layout"]

    # Each call settles and indexes at most 5 x BUDGET entries; claims are served in FIFO
    # order from the first call on: the indexed part from the index, the rest as before
    # (which may find nothing within the budget, as it did).
    now = T0 + 120
    found = await claim_bodies(store, now)
    assert found == lapsed
    state = await store._b.client.get(layout)
    assert state is not None and state.startswith(b"b:")
    for _ in range(100):  # bounded: 6 calls to index, 50 claims of 20
        bodies = await claim_bodies(store, now)
        if not bodies and await store._b.client.get(layout) == b"2":
            break
        found += bodies
    assert found == lapsed + free
    assert await store._b.client.get(layout) == b"2"
    await check_index(store)

    # When the claims lapse and the delays end, every message posted is there once.
    later = T0 + 3000
    popped: list[str] = []
    for _ in range(60):  # bounded: 2,820 messages take 29 pops
        bodies = [m.body.decode() for m in await store.messages.pop(P, Q, 100, later)]
        if not bodies:
            break
        popped += bodies
    assert sorted(popped) == sorted(lapsed + held + delayed + free)


async def test_an_old_queue_serves_what_lies_past_its_indexed_part(store: RedisStorage) -> None:
    await post(store, [f"held-{i}" for i in range(550)])
    for _ in range(6):
        assert await claim_bodies(store, T0, limit=100, ttl=600)
    free = [f"free-{i}" for i in range(30)]
    await post(store, free)
    await to_old_layout(store)
    # The first call indexes 500 held messages, then walks past 50 more as before.
    assert await claim_bodies(store, T0 + 1) == free[:20]
    assert await store._b.client.get(queue_keys(store)["layout"]) != b"2"
    assert await claim_bodies(store, T0 + 1) == free[20:]
    assert await store._b.client.get(queue_keys(store)["layout"]) == b"2"
    await check_index(store)


async def test_the_sweep_indexes_idle_old_queues(store: RedisStorage) -> None:
    await post(store, [f"m{i:04d}" for i in range(2500)])
    await to_old_layout(store)
    for _ in range(10):  # bounded: one run indexes 2,500 messages in a call or two
        await store.collect_garbage(T0)
        if await store._b.client.get(queue_keys(store)["layout"]) == b"2":
            break
    await check_index(store)
    assert await claim_bodies(store, T0, limit=3) == ["m0000", "m0001", "m0002"]


async def test_an_emptied_old_queue_starts_in_the_new_layout(store: RedisStorage) -> None:
    await post(store, ["a"])
    await to_old_layout(store)
    popped = await store.messages.pop(P, Q, 5, T0)  # an old queue: walked as before
    assert [m.body for m in popped] == [b"a"]
    await post(store, ["b"])
    assert await store._b.client.get(queue_keys(store)["layout"]) == b"2"
    await check_index(store)


# --- cost does not grow with messages in flight (private server, exact counts) ----------


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisInstance]:
    instance = RedisInstance(tmp_path / "redis", appendonly=False).start()
    try:
        yield instance
    finally:
        instance.stop()


async def test_claim_pop_and_list_run_the_same_commands_whatever_is_in_flight(
    private_redis: RedisInstance,
) -> None:
    store = RedisStorage.from_uri(private_redis.url, SETTINGS)
    await store.open()
    stats = aioredis.Redis.from_url(private_redis.url)
    try:

        async def commands(queue: str) -> list[dict[str, int]]:
            counts = []
            for action in ("claim", "pop", "list"):
                await stats.config_resetstat()
                if action == "claim":
                    await store.claims.create(
                        P, queue, ClaimRequest(ttl=60, grace=60, limit=10), T0
                    )
                elif action == "pop":
                    assert len(await store.messages.pop(P, queue, 10, T0)) == 10
                else:
                    page = await store.messages.page(
                        P, queue, marker=None, limit=10, exclude_client=None,
                        include_claimed=False, include_delayed=False, now=T0,
                    )  # fmt: skip
                    assert len(page.messages) == 10
                info = await stats.info("commandstats")
                # The script's own call is left out: the first use of each loads it.
                skip = ("cmdstat_info", "cmdstat_evalsha", "cmdstat_script|load")
                counts.append({k: int(v["calls"]) for k, v in info.items() if k not in skip})
            return counts

        for queue, head in (("shallow", 0), ("deep", 5000)):
            bodies = [f"{queue}-{i}" for i in range(head)]
            for start in range(0, head, 1000):
                chunk = bodies[start : start + 1000]
                await store.messages.post(P, queue, batch(chunk), CLIENT, T0)
                await store.messages.post(P, queue, batch(chunk, delay=600), CLIENT, T0)
            if head:
                held = ClaimRequest(ttl=600, grace=60, limit=head)
                assert await store.claims.create(P, queue, held, T0) is not None
            await store.messages.post(P, queue, batch([f"f{i}" for i in range(40)]), CLIENT, T0)
        # 5,000 held and 5,000 delayed messages at the head change nothing.
        assert await commands("deep") == await commands("shallow")
    finally:
        await stats.aclose()
        await store.close()
