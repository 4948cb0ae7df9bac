"""The change feed every driver offers (``Storage.feed``, see ``tidings.storage.feed``).

A watcher of a queue is woken by what makes messages ready there (a post, a claim
release, a dead-letter arrival), in this process, in another store instance on the same
namespace, and in another process; ``next_ready`` tells when time makes them ready; a
relay reaches the node it names. Every wait is bounded (``SIGNAL_BOUND``): a feed that
misses a signal fails the test instead of hanging it; none asserts on speed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import pytest

from tidings.model import ClaimRequest, DeadLetterPolicy, NewMessage
from tidings.storage.base import PreparePost, Storage

pytestmark = pytest.mark.anyio

P = "project-feed"
Q = "queue-1"
T0 = 1_700_000_000.0
CLIENT = "11111111-1111-1111-1111-111111111111"
# Seconds a signal may take to arrive before the test fails: generous, since it bounds a
# loaded CI machine, not the feed's latency.
SIGNAL_BOUND = 10.0


def batch(*bodies: int, ttl: int = 300, delay: int = 0) -> PreparePost:
    messages = [NewMessage(body=str(b).encode(), ttl=ttl, delay=delay) for b in bodies]
    return lambda _metadata: messages


def claim(limit: int = 10, ttl: int = 60, **kw: object) -> ClaimRequest:
    return ClaimRequest(ttl=ttl, grace=60, limit=limit, **kw)  # type: ignore[arg-type]


# --- signals ----------------------------------------------------------------------


async def test_post_wakes_a_watcher_each_time(storage: Storage) -> None:
    async with storage.feed.watch(P, Q) as watch:
        await storage.messages.post(P, Q, batch(1), CLIENT, T0)
        assert await watch.wait(SIGNAL_BOUND) is True
        # A wait that returned True consumed the signal; the next post signals again.
        await storage.messages.post(P, Q, batch(2), CLIENT, T0)
        assert await watch.wait(SIGNAL_BOUND) is True


async def test_delayed_post_wakes_a_watcher(storage: Storage) -> None:
    # The waiter then asks next_ready when the delay ends and sets its timer.
    async with storage.feed.watch(P, Q) as watch:
        await storage.messages.post(P, Q, batch(1, delay=30), CLIENT, T0)
        assert await watch.wait(SIGNAL_BOUND) is True


async def test_watchers_of_one_queue_all_wake(storage: Storage) -> None:
    async with storage.feed.watch(P, Q) as first, storage.feed.watch(P, Q) as second:
        await storage.messages.post(P, Q, batch(1), CLIENT, T0)
        assert await first.wait(SIGNAL_BOUND) is True
        assert await second.wait(SIGNAL_BOUND) is True


async def test_release_wakes_a_watcher(storage: Storage) -> None:
    async with storage.feed.watch(P, Q) as watch:
        await storage.messages.post(P, Q, batch(1), CLIENT, T0)
        # The post's signal arrives first: what wakes the watcher next is the release.
        assert await watch.wait(SIGNAL_BOUND) is True
        result = await storage.claims.create(P, Q, claim(), T0)
        assert result is not None
        await storage.claims.release(P, Q, result.id, T0 + 1)
        assert await watch.wait(SIGNAL_BOUND) is True


async def test_dead_letter_arrival_wakes_the_dead_letter_queue(storage: Storage) -> None:
    policy = DeadLetterPolicy(max_claim_count=1, queue="dlq", message_ttl=120)
    await storage.queues.create(P, "dlq", {}, T0)
    await storage.messages.post(P, Q, batch(1), CLIENT, T0)
    first = await storage.claims.create(P, Q, claim(dead_letter=policy), T0)
    assert first is not None
    await storage.claims.release(P, Q, first.id, T0)
    async with storage.feed.watch(P, "dlq") as watch:
        # Claimed once already: this claim moves the message instead of claiming it.
        assert await storage.claims.create(P, Q, claim(dead_letter=policy), T0 + 1) is None
        assert await watch.wait(SIGNAL_BOUND) is True
    taken = await storage.claims.create(P, "dlq", claim(), T0 + 1)
    assert taken is not None and [m.body for m in taken.messages] == [b"1"]


async def test_post_wakes_a_watcher_of_another_store_instance(
    storage: Storage, twin_storage: Storage
) -> None:
    assert storage.feed.node_id != twin_storage.feed.node_id
    async with twin_storage.feed.watch(P, Q) as watch:
        await storage.messages.post(P, Q, batch(1), CLIENT, T0)
        assert await watch.wait(SIGNAL_BOUND) is True


# --- time-based readiness -----------------------------------------------------------


async def test_next_ready_is_none_without_claims_or_delays(storage: Storage) -> None:
    assert await storage.feed.next_ready(P, "missing", T0) is None
    await storage.queues.create(P, Q, {}, T0)
    assert await storage.feed.next_ready(P, Q, T0) is None
    await storage.messages.post(P, Q, batch(1), CLIENT, T0)  # ready at once: no timer
    assert await storage.feed.next_ready(P, Q, T0) is None


async def test_next_ready_gives_the_claim_expiry(storage: Storage) -> None:
    await storage.messages.post(P, Q, batch(1, 2), CLIENT, T0)
    result = await storage.claims.create(P, Q, claim(limit=2, ttl=60), T0 + 1)
    assert result is not None
    assert await storage.feed.next_ready(P, Q, T0 + 2) == pytest.approx(T0 + 61, abs=0.01)
    # Lapsed already: ready now.
    lapsed = await storage.feed.next_ready(P, Q, T0 + 100)
    assert lapsed is not None and lapsed <= T0 + 100
    await storage.claims.release(P, Q, result.id, T0 + 2)
    assert await storage.feed.next_ready(P, Q, T0 + 2) is None


async def test_next_ready_gives_the_delay_end(storage: Storage) -> None:
    await storage.messages.post(P, Q, batch(1, delay=30), CLIENT, T0)
    await storage.messages.post(P, Q, batch(2, delay=20), CLIENT, T0 + 5)
    assert await storage.feed.next_ready(P, Q, T0 + 6) == pytest.approx(T0 + 25, abs=0.01)
    ended = await storage.feed.next_ready(P, Q, T0 + 40)
    assert ended is not None and ended <= T0 + 40


async def test_next_ready_takes_the_earliest_of_claims_and_delays(storage: Storage) -> None:
    await storage.messages.post(P, Q, batch(1), CLIENT, T0)
    await storage.messages.post(P, Q, batch(2, delay=100), CLIENT, T0)
    assert await storage.claims.create(P, Q, claim(ttl=60), T0) is not None
    assert await storage.feed.next_ready(P, Q, T0 + 1) == pytest.approx(T0 + 60, abs=0.01)
    await storage.messages.post(P, "other", batch(3, delay=10), CLIENT, T0)
    assert await storage.feed.next_ready(P, "other", T0 + 1) == pytest.approx(
        T0 + 10, abs=0.01
    )
    assert await storage.feed.next_ready("other-project", Q, T0 + 1) is None


# --- relay --------------------------------------------------------------------------


async def test_relay_reaches_the_named_node(storage: Storage, twin_storage: Storage) -> None:
    arrived: list[bytes] = []
    got_all = asyncio.Event()
    small = b'{"hello": "node"}'
    # A notification carries a message body of up to 256 KiB; any byte may occur.
    large = bytes(range(256)) * 1200

    def handler(payload: bytes) -> None:
        arrived.append(payload)
        if len(arrived) == 2:
            got_all.set()

    twin_storage.feed.on_relay(handler)
    await storage.feed.relay(twin_storage.feed.node_id, small)
    await storage.feed.relay(twin_storage.feed.node_id, large)
    await asyncio.wait_for(got_all.wait(), SIGNAL_BOUND)
    assert sorted(arrived, key=len) == [small, large]


# --- another process ----------------------------------------------------------------

# Opens the store, watches the queue, says "ready", and reports whether the signal
# woke it and how long after the post time (read from stdin) it did.
SUBSCRIBER = """
import asyncio, json, sys, time
from tidings.config import DriverSettings, Settings, StorageSettings
from tidings.storage import create_storage

async def main(uri, project, queue, bound):
    settings = Settings(drivers=DriverSettings(message_store=uri),
                        storage=StorageSettings(operation_timeout=5.0))
    store = create_storage(settings)
    await store.open()
    try:
        async with store.feed.watch(project, queue) as watch:
            print("ready", flush=True)
            woken = await watch.wait(bound)
            woke_at = time.time()
    finally:
        await store.close()
    posted = float(sys.stdin.readline())
    print(json.dumps({"woken": woken, "latency": woke_at - posted}), flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
"""


async def test_post_wakes_a_watcher_in_another_process(
    storage: Storage, store_uri: str, request: pytest.FixtureRequest
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SUBSCRIBER, store_uri, P, Q, str(SIGNAL_BOUND),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        # Generous: the child imports the server's code and opens the store first.
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        if line.strip() != b"ready":
            _, err = await asyncio.wait_for(process.communicate(), 10)
            pytest.fail(f"subscriber did not start: {line!r} {err.decode()[-2000:]}")
        posted = time.time()
        await storage.messages.post(P, Q, batch(1), CLIENT, T0)
        process.stdin.write(f"{posted!r}\n".encode())
        await process.stdin.drain()
        out, err = await asyncio.wait_for(process.communicate(), SIGNAL_BOUND + 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()[-2000:]
    report = json.loads(out.decode().strip().splitlines()[-1])
    print(f"[{request.node.callspec.id}] cross-process wake-up: {report['latency'] * 1000:.1f} ms")
    assert report["woken"] is True, "the subscriber timed out instead of being signalled"
