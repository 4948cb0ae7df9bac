"""The Redis change feed: sharded pub/sub per watched queue, a relay channel per node.

The scripts that make messages ready (post, release, a dead-letter arrival: see
``lua/queue_lib.lua`` ``signal_ready``) SPUBLISH an empty message on the queue's feed
channel, which hashes to the queue's slot, in the same atomic step: no listener hears
it before the data is there. A listener task keeps one RESP2 pub/sub connection per
Redis node it needs (the single server; on a Cluster, the owners of the slots of this
node's relay channel and of the watched queues' channels) and subscribes a queue's
channel while the queue has a watcher in this process.

A queue subscribed afresh is probed once Redis confirms the subscription, and its
watchers are woken if it holds ready or delayed messages: a signal sent between
``watch`` and the subscription taking effect is not lost that way.

The listener never ends by itself: after any error (a killed connection, a node that
stops answering its PING, a slot that moved) it drops every connection, backs off,
connects again, subscribes everything again and then wakes every watcher, since
signals may have been missed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisClusterException, RedisError

from tidings.errors import StorageError
from tidings.storage.feed import FeedHub, QueueKey, RelayHandler, Watch
from tidings.storage.redis.connection import Backend
from tidings.storage.redis.keys import QUEUE_KINDS

log = logging.getLogger("tidings.feed.redis")

_CLAIMED = QUEUE_KINDS.index("claimed")
_READY = QUEUE_KINDS.index("ready")
_DELAY_ENDS = QUEUE_KINDS.index("delay-ends")

# A pub/sub connection silent this long gets a PING; silent as long again, it counts as
# dead: a peer gone without a reset would otherwise leave the listener deaf for good.
HEARTBEAT = 5.0
BACKOFF_MIN = 0.05
BACKOFF_MAX = 5.0


class _Lost(Exception):
    """Redis ended a subscription nobody asked to end (its slot moved elsewhere)."""


class RedisFeed:
    """``ChangeFeed`` over Redis sharded pub/sub; its listener runs from ``start`` to
    ``stop``."""

    def __init__(self, backend: Backend) -> None:
        self._b = backend
        self._hub = FeedHub(on_first_watch=self._first_watch, on_last_unwatch=self._last_unwatch)
        self._relay_channel = backend.keys.relay_channel(self._hub.node_id)
        # The channels of the queues watched here, for the listener to follow.
        self._wanted: dict[str, QueueKey] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._tried = asyncio.Event()  # the first session subscribed all, or failed
        # Listener sessions that got every subscription confirmed (1 once connected,
        # one more per reconnect): for operators' logs and for tests.
        self.sessions = 0

    @property
    def node_id(self) -> str:
        return self._hub.node_id

    @property
    def client_name(self) -> str:
        """The name (CLIENT SETNAME) of this node's pub/sub connections."""
        return f"tidings-feed-{self._hub.node_id}"

    def watch(self, project: str, queue: str) -> Watch:
        return self._hub.watch(project, queue)

    async def next_ready(self, project: str, queue: str, now: float) -> float | None:
        keys = self._b.keys.queue(project, queue)
        heads = await self._b.script("next_ready", [keys[_CLAIMED], keys[_DELAY_ENDS]], [])
        times = [float(head) for head in heads if head]
        return max(min(times), now) if times else None

    async def relay(self, node: str, payload: bytes) -> None:
        channel, client = self._b.keys.relay_channel(node), self._b.client
        await self._b.call(lambda: client.spublish(channel, payload))

    def on_relay(self, handler: RelayHandler) -> None:
        self._hub.on_relay(handler)

    async def start(self) -> None:
        """Start the listener and wait (within the operation timeout) for its first
        attempt, so relays to this node arrive from the start; a Redis that is down
        does not stop the start (the listener goes on trying)."""
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name="tidings-redis-feed")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._b.timeout):
                await self._tried.wait()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _first_watch(self, key: QueueKey) -> None:
        self._wanted[self._b.keys.feed_channel(*key)] = key
        self._changed.set()

    def _last_unwatch(self, key: QueueKey) -> None:
        self._wanted.pop(self._b.keys.feed_channel(*key), None)
        self._changed.set()

    async def _listen(self) -> None:
        backoff, failures = BACKOFF_MIN, 0
        while True:
            session = _Session(self, recovering=failures > 0)
            try:
                await session.run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never end: say why, back off, connect again
                _report(exc, first=failures == 0 or session.established)
            self._tried.set()
            failures += 1
            if session.established:
                backoff = BACKOFF_MIN
            await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, BACKOFF_MAX)


def _report(exc: BaseException, *, first: bool) -> None:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]  # a reader's failure, as the session's task group saw it
    if not isinstance(exc, Exception) or not _expected(exc):
        log.error("the Redis change feed failed unexpectedly; reconnecting", exc_info=exc)
    elif first:
        log.warning("the Redis change feed lost Redis (%s); reconnecting", exc)
    else:
        log.debug("the Redis change feed cannot reach Redis yet: %s", exc)


def _expected(exc: Exception) -> bool:
    return isinstance(
        exc, RedisError | RedisClusterException | OSError | TimeoutError | StorageError | _Lost
    )


class _Link:
    """One pub/sub connection to one Redis node."""

    def __init__(self, name: str, connection: AbstractConnection) -> None:
        self.name = name
        self.connection = connection
        # SUNSUBSCRIBEs sent whose confirmation was not read yet, by channel.
        self.leaving: Counter[str] = Counter()

    async def send(self, *args: Any) -> None:
        await self.connection.send_command(*args)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.connection.disconnect()


class _Session:
    """One round of the listener: its connections, from connecting to the first error."""

    def __init__(self, feed: RedisFeed, *, recovering: bool) -> None:
        self._feed = feed
        self._b = feed._b
        self._recovering = recovering
        self._links: dict[str, _Link] = {}
        # Channels subscribed (SSUBSCRIBE sent, no SUNSUBSCRIBE since) and where.
        self._asked: dict[str, _Link] = {}
        # The first batch of subscriptions, until Redis confirmed them all.
        self._unconfirmed: set[str] = set()
        self._tasks: asyncio.TaskGroup | None = None
        self.established = False

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                await self._prepare()
                self._unconfirmed = self._desired()
                while True:
                    self._feed._changed.clear()
                    await self._reconcile()
                    await self._feed._changed.wait()
        finally:
            for link in self._links.values():
                await link.close()

    async def _prepare(self) -> None:
        client = self._b.client
        if isinstance(client, RedisCluster):
            await self._b.call(client.initialize)
            if self._recovering:  # the error may have been a slot that moved
                await self._b.call(client.nodes_manager.initialize)

    def _desired(self) -> set[str]:
        return {self._feed._relay_channel, *self._feed._wanted}

    async def _reconcile(self) -> None:
        desired = self._desired()
        for channel in [c for c in self._asked if c not in desired]:
            link = self._asked.pop(channel)
            link.leaving[channel] += 1
            await link.send("SUNSUBSCRIBE", channel)
        for channel in [c for c in desired if c not in self._asked]:
            link = await self._link(channel)
            self._asked[channel] = link
            await link.send("SSUBSCRIBE", channel)

    async def _link(self, channel: str) -> _Link:
        """The connection to the node owning the channel's slot, opened on first use."""
        client = self._b.client
        kind: type[AbstractConnection]
        if isinstance(client, RedisCluster):
            node = client.get_node_from_key(channel)
            if node is None:
                raise StorageError(f"no Redis Cluster node serves channel {channel!r}")
            name, kind, base = node.name, node.connection_class, node.connection_kwargs
        else:
            pool = client.connection_pool
            name, kind, base = "", pool.connection_class, pool.connection_kwargs
        link = self._links.get(name)
        if link is not None:
            return link
        options = {k: v for k, v in base.items() if k != "oss_cluster_maint_notifications_handler"}
        options.update(
            # RESP2: messages arrive as replies (and CLIENT KILL TYPE pubsub finds us).
            protocol=2,
            client_name=self._feed.client_name,
            decode_responses=False,
            health_check_interval=0,
            maint_notifications_config=None,
            # Writes bounded as before (reads wait for HEARTBEAT each; see _read).
            socket_timeout=self._b.timeout,
        )
        link = self._links[name] = _Link(name, kind(**options))
        async with asyncio.timeout(self._b.timeout):
            await link.connection.connect()  # type: ignore[no-untyped-call]  # redis-py
        assert self._tasks is not None
        self._tasks.create_task(self._read(link), name=f"tidings-redis-feed-{name}")
        return link

    async def _read(self, link: _Link) -> None:
        pinged = False
        while True:
            reply = await link.connection.read_response(timeout=HEARTBEAT)
            if reply is None:  # silence: make sure the peer is still there
                if pinged:
                    raise TimeoutError(f"Redis {link.name} did not answer a PING")
                pinged = True
                await link.send("PING")
                continue
            pinged = False
            self._handle(link, reply)

    def _handle(self, link: _Link, reply: Any) -> None:
        if not isinstance(reply, list) or len(reply) != 3:
            return  # a PING's answer
        kind, channel = reply[0], bytes(reply[1]).decode("utf-8", "replace")
        if kind == b"smessage":
            if channel == self._feed._relay_channel:
                self._feed._hub.relayed(bytes(reply[2]))
            elif (key := self._feed._wanted.get(channel)) is not None:
                self._feed._hub.ready(*key)
        elif kind == b"ssubscribe":
            self._confirmed(channel)
        elif kind == b"sunsubscribe":
            if link.leaving[channel] <= 0:
                raise _Lost(f"Redis {link.name} ended the subscription to {channel!r}")
            link.leaving[channel] -= 1
            if not link.leaving[channel]:
                del link.leaving[channel]

    def _confirmed(self, channel: str) -> None:
        if channel in self._unconfirmed:
            self._unconfirmed.discard(channel)
            if not self._unconfirmed:
                self._establish()
            if self._recovering:
                return  # _establish wakes every watcher
        key = self._feed._wanted.get(channel)
        if key is not None and self._tasks is not None:
            with contextlib.suppress(RuntimeError):  # the session is ending anyway
                self._tasks.create_task(self._probe(key))

    def _establish(self) -> None:
        self.established = True
        self._feed.sessions += 1
        self._feed._tried.set()
        if self._recovering:
            log.info("the Redis change feed is listening again")
            self._feed._hub.wake_all()

    async def _probe(self, key: QueueKey) -> None:
        """Wake the queue's watchers if it holds messages a signal may have announced
        before the subscription took effect."""
        keys, client = self._b.keys.queue(*key), self._b.client
        try:
            found = await self._b.call(lambda: client.exists(keys[_READY], keys[_DELAY_ENDS]))
        except Exception as exc:  # cannot tell: wake them, they look for themselves
            if not isinstance(exc, StorageError):
                log.exception("the Redis change feed could not probe a queue")
            found = 1
        if found:
            self._feed._hub.ready(*key)
