"""The change feed: how a node learns, without polling, that a queue got ready messages.

Every store signals readiness with its own mechanism (Redis sharded pub/sub, PostgreSQL
LISTEN/NOTIFY, SQLite an in-process signal plus ``PRAGMA data_version``) and feeds what
it hears into a ``FeedHub``, which wakes this process's watchers of that queue. The
events that make messages ready are a post, a claim release and a dead-letter arrival;
time-based readiness (a claim expiring, a delay ending) is a timer the waiter sets from
``ChangeFeed.next_ready``, never a scan.

The feed also relays small documents to another node (``relay``/``on_relay``): the
delivery dispatcher uses it to hand a push to the node holding the WebSocket connection.
A node is one server process; its id is fresh each start.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Protocol

log = logging.getLogger("tidings.feed")

QueueKey = tuple[str, str]  # (stored project, queue)
RelayHandler = Callable[[bytes], None]


class Watch(Protocol):
    """Interest in one queue's readiness, from ``ChangeFeed.watch`` until closed."""

    async def wait(self, timeout: float) -> bool:
        """True as soon as the queue signalled readiness since the watch began or since
        the previous ``wait`` returned True; False when ``timeout`` seconds passed first."""

    def close(self) -> None: ...

    async def __aenter__(self) -> Watch: ...

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None: ...


class ChangeFeed(Protocol):
    @property
    def node_id(self) -> str:
        """This process's id among the nodes sharing the store."""

    def watch(self, project: str, queue: str) -> Watch:
        """Start listening for the queue's readiness (before checking it, so nothing
        posted in between is missed)."""

    async def next_ready(self, project: str, queue: str, now: float) -> float | None:
        """When the queue's earliest claimed or delayed message becomes ready, if any
        (an index probe; expired claims and ended delays give ``now``)."""

    async def relay(self, node: str, payload: bytes) -> None:
        """Hand ``payload`` to ``node``'s relay handler; raises ``StorageError`` when the
        store cannot take it. Delivery is at most once: a node that is gone, or cut off
        from the store at that moment, never gets it."""

    def on_relay(self, handler: RelayHandler) -> None:
        """Call ``handler`` with every payload relayed to this node (one handler)."""


class _HubWatch:
    def __init__(self, hub: FeedHub, key: QueueKey) -> None:
        self._hub = hub
        self.key = key
        self.event = asyncio.Event()
        self._closed = False

    async def wait(self, timeout: float) -> bool:
        if self.event.is_set():  # wait_for with no time left would not look
            self.event.clear()
            return True
        try:
            await asyncio.wait_for(self.event.wait(), max(timeout, 0.0))
        except TimeoutError:
            return False
        self.event.clear()
        return True

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._hub._forget(self)

    async def __aenter__(self) -> _HubWatch:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


class FeedHub:
    """This process's watchers by queue, and its relay handler; drivers compose it.

    ``on_first_watch`` and ``on_last_unwatch`` tell the driver when a queue gains its
    first watcher and loses its last, for stores that subscribe per queue (Redis).
    """

    def __init__(
        self,
        *,
        on_first_watch: Callable[[QueueKey], None] | None = None,
        on_last_unwatch: Callable[[QueueKey], None] | None = None,
    ) -> None:
        self.node_id = uuid.uuid4().hex
        self._watchers: dict[QueueKey, set[_HubWatch]] = {}
        self._on_first_watch = on_first_watch
        self._on_last_unwatch = on_last_unwatch
        self._relay_handler: RelayHandler | None = None

    def watch(self, project: str, queue: str) -> _HubWatch:
        key = (project, queue)
        watch = _HubWatch(self, key)
        watchers = self._watchers.setdefault(key, set())
        watchers.add(watch)
        if len(watchers) == 1 and self._on_first_watch is not None:
            self._on_first_watch(key)
        return watch

    def _forget(self, watch: _HubWatch) -> None:
        watchers = self._watchers.get(watch.key)
        if watchers is None:
            return
        watchers.discard(watch)
        if not watchers:
            del self._watchers[watch.key]
            if self._on_last_unwatch is not None:
                self._on_last_unwatch(watch.key)

    def watched(self) -> list[QueueKey]:
        """The queues with a watcher now (what a reconnecting driver subscribes again)."""
        return list(self._watchers)

    def ready(self, project: str, queue: str) -> None:
        """The store signalled that the queue got ready messages: wake its watchers."""
        for watch in self._watchers.get((project, queue), ()):
            watch.event.set()

    def wake_all(self) -> None:
        """Wake every watcher: after a reconnect, when signals may have been missed."""
        for watchers in self._watchers.values():
            for watch in watchers:
                watch.event.set()

    def on_relay(self, handler: RelayHandler) -> None:
        self._relay_handler = handler

    def relayed(self, payload: bytes) -> None:
        """A payload relayed to this node arrived."""
        if self._relay_handler is None:
            return
        try:
            self._relay_handler(payload)
        except Exception:  # one bad payload must not stop the listener
            log.exception("a relayed payload could not be handled")
