"""The change feed in pooled mode: readiness from the queue's pool, relays through the
management store's feed (every node shares it)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType

from tidings.storage.feed import ChangeFeed, RelayHandler, Watch

# The feed of the pool a queue is routed to, if this process knows it without a round
# trip; None when it does not (the queue is not in the route cache).
CachedFeed = Callable[[str, str], ChangeFeed | None]


class AnyWatch:
    """Watches of one queue in several pools, as one: for a queue whose pool this
    process does not know yet (it may be placed by another node at any moment)."""

    def __init__(self, watches: Sequence[Watch]) -> None:
        self._watches = list(watches)

    async def wait(self, timeout: float) -> bool:
        if not self._watches:
            await asyncio.sleep(max(timeout, 0.0))
            return False
        if len(self._watches) == 1:
            return await self._watches[0].wait(timeout)
        waits = [asyncio.ensure_future(w.wait(timeout)) for w in self._watches]
        try:
            pending = set(waits)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if any(not t.cancelled() and t.exception() is None and t.result() for t in done):
                    return True
            for task in waits:
                task.result()  # a watch that failed says so
            return False
        finally:
            for task in waits:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*waits, return_exceptions=True)

    def close(self) -> None:
        for watch in self._watches:
            watch.close()

    async def __aenter__(self) -> AnyWatch:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


class PooledFeed:
    def __init__(
        self,
        management: ChangeFeed,
        cached: CachedFeed,
        every: Callable[[], list[ChangeFeed]],
        next_ready: Callable[[str, str, float], Awaitable[float | None]],
    ) -> None:
        self._management = management
        self._cached = cached
        self._every = every
        self._next_ready = next_ready

    @property
    def node_id(self) -> str:
        # Relays go through the management store's feed, so nodes are named by it.
        return self._management.node_id

    def watch(self, project: str, queue: str) -> Watch:
        feed = self._cached(project, queue)
        if feed is not None:
            return feed.watch(project, queue)
        return AnyWatch([f.watch(project, queue) for f in self._every()])

    async def next_ready(self, project: str, queue: str, now: float) -> float | None:
        return await self._next_ready(project, queue, now)

    async def relay(self, node: str, payload: bytes) -> None:
        await self._management.relay(node, payload)

    def on_relay(self, handler: RelayHandler) -> None:
        self._management.on_relay(handler)
