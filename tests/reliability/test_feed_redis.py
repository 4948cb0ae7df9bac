"""The Redis change feed outlives its connections, and the scripts signal on a Cluster too.

The feed's pub/sub connections carry a name of their own (``RedisFeed.client_name``), so
a test kills exactly them (``CLIENT KILL ID``, found by ``CLIENT LIST TYPE pubsub``) and
never another test's. After the kill the feed connects again by itself, wakes every
watcher (signals may have been missed), and later posts and relays arrive as before.
The Lua side is checked by a subscriber of our own on the queue's feed channel, on the
node owning its slot: exactly one tiny message per post, release and dead-letter arrival
(a sentinel published after each step shows nothing else came before it).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster

from tests import backends
from tests.instances import RedisInstance
from tidings.config import StorageSettings
from tidings.model import ClaimRequest, DeadLetterPolicy, NewMessage
from tidings.storage.base import PreparePost
from tidings.storage.redis.connection import make_client, parse_uri
from tidings.storage.redis.driver import RedisStorage
from tidings.storage.redis.keys import KeySpace

pytestmark = pytest.mark.anyio

SETTINGS = StorageSettings(operation_timeout=5.0)
P = "project-feed-r"
Q = "queue-r"
DLQ = "queue-r-dead"
T0 = 1_700_000_000.0
CLIENT = "55555555-5555-5555-5555-555555555555"
# Bounds of a loaded CI machine, not of the feed's speed: a feed that misses a signal
# fails the test instead of hanging it.
SIGNAL_BOUND = 10.0
RECONNECT_BOUND = 30.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["redis", "redis-cluster"])
async def store_uri(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    if request.param == "redis":
        prefix = backends.unique_name("r")
        try:
            yield backends.redis_store_uri(prefix)
        finally:
            await backends.drop_redis_prefix(prefix)
    else:
        cluster = request.getfixturevalue("redis_cluster")
        yield backends.redis_store_uri(backends.unique_name("c"), cluster.uri)


@asynccontextmanager
async def opened(uri: str) -> AsyncIterator[RedisStorage]:
    store = RedisStorage.from_uri(uri, SETTINGS)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def batch(*bodies: int) -> PreparePost:
    messages = [NewMessage(body=str(b).encode(), ttl=300, delay=0) for b in bodies]
    return lambda _metadata: messages


async def eventually(probe: Callable[[], bool], what: str) -> None:
    """Wait for ``probe`` (a look at this process's state) without blocking the loop."""
    async with asyncio.timeout(RECONNECT_BOUND):
        while not probe():
            await asyncio.sleep(0.02)
    assert probe(), what


def node_urls(uri: str) -> list[str]:
    target = parse_uri(uri)
    if target.cluster:
        return [f"redis://{host}:{port}/0" for host, port in target.nodes]
    return [target.url]


async def kill_pubsub_clients(uri: str, name: str) -> int:
    """CLIENT KILL every pub/sub connection called ``name`` on every node; how many."""
    killed = 0
    for url in node_urls(uri):
        client = aioredis.Redis.from_url(url)
        try:
            for entry in await client.client_list(_type="pubsub"):
                if entry.get("name") == name:
                    await client.client_kill_filter(_id=entry["id"])
                    killed += 1
        finally:
            await client.aclose()
    return killed


async def subscribed(uri: str, project: str, queue: str, expected: int) -> None:
    """Wait until Redis counts ``expected`` subscribers of the queue's feed channel."""
    target = parse_uri(uri)
    channel = KeySpace(target.prefix).feed_channel(project, queue)
    client = make_client(target, SETTINGS)
    try:
        if isinstance(client, RedisCluster):
            await client.initialize()
        node = client.get_node_from_key(channel) if isinstance(client, RedisCluster) else None
        async with asyncio.timeout(RECONNECT_BOUND):
            while True:
                if node is not None:
                    reply = await client.execute_command(
                        "PUBSUB SHARDNUMSUB", channel, target_nodes=node
                    )
                else:
                    reply = await client.execute_command("PUBSUB SHARDNUMSUB", channel)
                if int(reply[0][1]) == expected:  # [(channel, count)]
                    return
                await asyncio.sleep(0.02)
    finally:
        await client.aclose()


async def test_killed_listener_reconnects_and_still_signals_and_relays(store_uri: str) -> None:
    async with opened(store_uri) as store, opened(store_uri) as twin:
        feed = store.feed
        arrived: list[bytes] = []
        got = asyncio.Event()

        def on_relay(payload: bytes) -> None:
            arrived.append(payload)
            got.set()

        feed.on_relay(on_relay)
        async with feed.watch(P, Q) as watch:
            # The queue is empty and nothing is posted before the kill, so only the
            # reconnection can wake the watcher first.
            await subscribed(store_uri, P, Q, 1)
            assert feed.sessions == 1

            assert await kill_pubsub_clients(store_uri, feed.client_name) >= 1
            await eventually(lambda: feed.sessions >= 2, "the feed to listen again")
            # Signals may have been missed while it was away: every watcher was woken.
            assert await watch.wait(SIGNAL_BOUND) is True

            # From now on only a signal on the new connection can wake the watcher.
            await twin.messages.post(P, Q, batch(2), CLIENT, T0)
            assert await watch.wait(SIGNAL_BOUND) is True
            await twin.feed.relay(feed.node_id, b"after the kill")
            await asyncio.wait_for(got.wait(), SIGNAL_BOUND)
            assert arrived == [b"after the kill"]


async def test_feed_rides_over_a_redis_restart(tmp_path: Path) -> None:
    instance = RedisInstance(tmp_path / "redis", appendonly=False).start()
    uri = backends.redis_store_uri("feed", instance.url)
    try:
        async with opened(uri) as store, store.feed.watch(P, Q) as watch:
            await subscribed(uri, P, Q, 1)  # on an empty queue, as above
            instance.kill()
            instance.start()  # the same port, no data
            await eventually(lambda: store.feed.sessions >= 2, "the feed to listen again")
            assert await watch.wait(SIGNAL_BOUND) is True
            await store.messages.post(P, Q, batch(2), CLIENT, T0)
            assert await watch.wait(SIGNAL_BOUND) is True
    finally:
        instance.stop()


async def test_feed_starts_listening_once_redis_comes_up(tmp_path: Path) -> None:
    instance = RedisInstance(tmp_path / "redis", appendonly=False)  # not started yet
    uri = backends.redis_store_uri("feed", instance.url)
    try:
        async with opened(uri) as store:  # opens though Redis is down
            assert store.feed.sessions == 0
            instance.start()
            await eventually(lambda: store.feed.sessions >= 1, "the feed to listen")
            async with store.feed.watch(P, Q) as watch:
                await store.messages.post(P, Q, batch(1), CLIENT, T0)
                assert await watch.wait(SIGNAL_BOUND) is True
    finally:
        instance.stop()


async def test_a_queue_is_subscribed_while_watched_only(store_uri: str) -> None:
    async with opened(store_uri) as store:
        async with store.feed.watch(P, Q), store.feed.watch(P, Q):
            await subscribed(store_uri, P, Q, 1)  # one subscription however many watchers
        await subscribed(store_uri, P, Q, 0)
        async with store.feed.watch(P, Q):  # and again
            await subscribed(store_uri, P, Q, 1)


class ChannelReader:
    """Our own sharded subscriber of one channel, on the node owning its slot."""

    def __init__(self, url: str, channel: str) -> None:
        self.channel = channel
        self._client = aioredis.Redis.from_url(url, protocol=2)
        self._pubsub: PubSub = self._client.pubsub(ignore_subscribe_messages=True)
        self._sentinels = 0

    async def start(self) -> None:
        await self._pubsub.ssubscribe(self.channel)
        async with asyncio.timeout(SIGNAL_BOUND):  # the confirmation, then nothing else
            while not self._pubsub.subscribed:
                await self._pubsub.get_message(timeout=0.1)

    async def next(self) -> bytes:
        async with asyncio.timeout(SIGNAL_BOUND):
            while True:
                message = await self._pubsub.get_message(timeout=1.0)
                if message is not None and message["type"] == "smessage":
                    data: bytes = message["data"]
                    return data

    async def nothing_else(self) -> None:
        """Publish a sentinel and read it next: nothing was published before it."""
        self._sentinels += 1
        sentinel = f"sentinel-{self._sentinels}".encode()
        await self._client.spublish(self.channel, sentinel)
        assert await self.next() == sentinel

    async def close(self) -> None:
        await self._pubsub.aclose()
        await self._client.aclose()


async def reader(stack: AsyncExitStack, uri: str, channel: str) -> ChannelReader:
    target = parse_uri(uri)
    url = target.url
    if target.cluster:
        client = make_client(target, SETTINGS)
        assert isinstance(client, RedisCluster)
        try:
            await client.initialize()
            node = client.get_node_from_key(channel)
            assert node is not None
            url = f"redis://{node.host}:{node.port}/0"
        finally:
            await client.aclose()
    found = ChannelReader(url, channel)
    stack.push_async_callback(found.close)
    await found.start()
    return found


async def test_scripts_publish_on_post_release_and_dead_letter_arrival(store_uri: str) -> None:
    keys = KeySpace(parse_uri(store_uri).prefix)
    policy = DeadLetterPolicy(max_claim_count=1, queue=DLQ, message_ttl=120)
    claim = ClaimRequest(ttl=60, grace=60, limit=10, dead_letter=policy)
    async with opened(store_uri) as store, AsyncExitStack() as stack:
        queue = await reader(stack, store_uri, keys.feed_channel(P, Q))
        dead = await reader(stack, store_uri, keys.feed_channel(P, DLQ))

        await store.messages.post(P, Q, batch(1, 2), CLIENT, T0)
        assert await queue.next() == b""  # one empty message for the whole batch
        await queue.nothing_else()

        first = await store.claims.create(P, Q, claim, T0)
        assert first is not None and len(first.messages) == 2
        await queue.nothing_else()  # a claim makes nothing ready
        await store.claims.release(P, Q, first.id, T0)
        assert await queue.next() == b""
        await queue.nothing_else()

        # Claimed once already: both move to the dead-letter queue, in its own slot.
        assert await store.claims.create(P, Q, claim, T0 + 1) is None
        assert await dead.next() == b""
        await dead.nothing_else()
        await queue.nothing_else()  # leaving a queue makes nothing ready there
