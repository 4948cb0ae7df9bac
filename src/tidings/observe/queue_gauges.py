"""Per-queue gauges, read when scraped: ``tidings_queue_messages{project,queue,state}``
(``ready``, ``claimed``, ``delayed``) and ``tidings_queue_oldest_message_age_seconds``.

Opt-in per project (``[metrics] queue_gauge_projects``), and at most ``[metrics]
max_queue_gauges`` queues in all, the first of each project by name. Opt-in rather
than "the N deepest queues" because finding the deepest would mean reading every
queue's stats on every scrape: this way the label cardinality and the store reads a
scrape causes stay what the operator chose, and no other project is ever read.

The worker answering the scrape reads each queue's stats (``QueueStore.stats``: counts
from indexes and counters, bounded work whatever the queue's depth) and renders them
from a registry of its own, appended to the processes' shared metrics: they are the
store's figures, not one process's, so nothing is added up across processes.
``delayed`` is exact on Redis (an index count) and counts at most ``[storage]
scan_budget`` messages on SQLite and PostgreSQL (a bounded index range), so a queue
delaying more shows that many; ``ready`` is the unclaimed ones not delayed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from tidings.errors import StorageError
from tidings.model import QueueStats
from tidings.ops.context import Services

log = logging.getLogger("tidings.metrics")

# Queues listed per store call, and stats read at once, while gathering the gauges.
PAGE = 100
CONCURRENT_READS = 10


async def render(svc: Services) -> bytes:
    """The gauges of the opted-in projects' queues, in the text format (b"" if none)."""
    found = await read(svc)
    if not found:
        return b""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(_Collector(found))
    return bytes(generate_latest(registry))


async def read(svc: Services) -> list[tuple[str, str, QueueStats, float]]:
    """(project, queue, stats, when) of each queue with gauges, within the cap."""
    settings = svc.settings.metrics
    budget = settings.max_queue_gauges
    names: list[tuple[str, str]] = []
    for project in dict.fromkeys(settings.queue_gauge_projects):
        if budget <= len(names):
            break
        try:
            names.extend(await _queue_names(svc, project, budget - len(names)))
        except StorageError as exc:
            log.warning("metrics: cannot list the queues of project %r: %s", project, exc)
    found: list[tuple[str, str, QueueStats, float]] = []
    for first in range(0, len(names), CONCURRENT_READS):
        chunk = names[first : first + CONCURRENT_READS]
        now = svc.clock()
        results = await asyncio.gather(
            *(svc.storage.queues.stats(project, queue, now) for project, queue in chunk),
            return_exceptions=True,
        )
        for (project, queue), result in zip(chunk, results, strict=True):
            if isinstance(result, QueueStats):
                found.append((project, queue, result, now))
            elif isinstance(result, StorageError):
                log.warning("metrics: cannot read the stats of queue %r: %s", queue, result)
            elif isinstance(result, BaseException):
                raise result
    return found


async def _queue_names(svc: Services, project: str, limit: int) -> list[tuple[str, str]]:
    names: list[tuple[str, str]] = []
    marker = None
    while len(names) < limit:
        listing = await svc.storage.queues.page(
            project, marker=marker, limit=min(PAGE, limit - len(names))
        )
        names.extend((project, queue.name) for queue in listing.queues)
        marker = listing.resume_after or (listing.queues[-1].name if listing.queues else None)
        if marker is None or not listing.queues:
            break
    return names


class _Collector:
    def __init__(self, found: Iterable[tuple[str, str, QueueStats, float]]) -> None:
        self._found = list(found)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        depth = GaugeMetricFamily(
            "tidings_queue_messages",
            "Live messages of a queue by state (opt-in per project).",
            labels=["project", "queue", "state"],
        )
        age = GaugeMetricFamily(
            "tidings_queue_oldest_message_age_seconds",
            "Age of a queue's oldest live message; 0 when it is empty (opt-in per project).",
            labels=["project", "queue"],
        )
        for project, queue, stats, now in self._found:
            free = stats.total - stats.claimed
            depth.add_metric([project, queue, "ready"], max(0, free - stats.delayed))
            depth.add_metric([project, queue, "claimed"], stats.claimed)
            depth.add_metric([project, queue, "delayed"], stats.delayed)
            oldest = stats.oldest
            age.add_metric(
                [project, queue], max(0.0, now - oldest.created) if stats.total and oldest else 0.0
            )
        yield depth
        yield age
