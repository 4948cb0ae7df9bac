"""Which tenant a piece of store work is for, and a queue that serves tenants fairly.

The admission layer names the tenant of each request in ``current_tenant``; work a
request submits to a shared worker (SQLite's writer and readers) is queued per tenant.
The worker reports how long each job ran (``charge``), and each batch serves first the
tenants that used the least worker time lately. A tenant whose posts each cost the
writer 200 ms thus cannot make another tenant's 1 ms posts wait behind a line of them:
the cheap tenant's jobs go first, and the expensive tenant gets what time is left.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Generic, TypeVar

J = TypeVar("J")

BACKGROUND = ""
current_tenant: ContextVar[str] = ContextVar("tidings_tenant", default=BACKGROUND)
"""The project the running request acts for (``BACKGROUND`` for housekeeping)."""

# Worker time a tenant used counts half as much after this many seconds.
USAGE_HALF_LIFE = 1.0
# Usage below this (seconds) is forgotten, so the table holds only recent tenants.
USAGE_FLOOR = 1e-4
# Weight of the latest job in a tenant's running average job cost.
COST_SMOOTHING = 0.3
MAX_TRACKED_TENANTS = 10_000


class FairQueue(Generic[J]):
    """A thread-safe queue of jobs per tenant, taken in batches, least-used tenant first.

    ``close()`` ends the consumer once every queued job is taken.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._ready = threading.Condition()
        self._queues: dict[str, deque[J]] = {}
        self._usage: dict[str, tuple[float, float]] = {}  # tenant -> (seconds, as of)
        self._job_cost: dict[str, float] = {}  # tenant -> running average seconds per job
        self._clock = clock
        self._closed = False

    def put(self, job: J, tenant: str = BACKGROUND) -> None:
        with self._ready:
            self._queues.setdefault(tenant, deque()).append(job)
            self._ready.notify()

    def put_back(self, jobs: Iterable[tuple[str, J]]) -> None:
        """Return jobs taken but not run to the head of their tenants' lines."""
        with self._ready:
            for tenant, job in reversed(list(jobs)):
                self._queues.setdefault(tenant, deque()).appendleft(job)
            self._ready.notify()

    def charge(self, costs: Iterable[tuple[str, float]]) -> None:
        """Record worker seconds spent on each tenant's jobs."""
        with self._ready:
            now = self._clock()
            for tenant, seconds in costs:
                self._usage[tenant] = (self._decayed(tenant, now) + seconds, now)
                average = self._job_cost.get(tenant, seconds)
                self._job_cost[tenant] = average + COST_SMOOTHING * (seconds - average)
            if len(self._usage) > MAX_TRACKED_TENANTS:
                self._forget_idle(now)

    def usage(self, tenant: str) -> float:
        """The tenant's recent worker seconds, decayed to now."""
        with self._ready:
            return self._decayed(tenant, self._clock())

    def expected_costs(self, tenants: Iterable[str]) -> dict[str, float]:
        """What one job of each tenant has cost lately (0.0 when unknown)."""
        with self._ready:
            return {tenant: self._job_cost.get(tenant, 0.0) for tenant in tenants}

    def __len__(self) -> int:
        with self._ready:
            return sum(len(jobs) for jobs in self._queues.values())

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def take(self, limit: int) -> list[tuple[str, J]] | None:
        """Wait for work; then up to ``limit`` jobs, tenants in order of least recent use.

        Each tenant's jobs stay in their order. None once closed and drained.
        """
        with self._ready:
            while not self._queues:
                if self._closed:
                    return None
                self._ready.wait()
            now = self._clock()
            batch: list[tuple[str, J]] = []
            for tenant in sorted(self._queues, key=lambda t: self._decayed(t, now)):
                jobs = self._queues[tenant]
                while jobs and len(batch) < limit:
                    batch.append((tenant, jobs.popleft()))
                if not jobs:
                    del self._queues[tenant]
                if len(batch) >= limit:
                    break
            return batch

    def _decayed(self, tenant: str, now: float) -> float:
        seconds, as_of = self._usage.get(tenant, (0.0, now))
        return seconds * math.pow(0.5, max(0.0, now - as_of) / USAGE_HALF_LIFE)

    def _forget_idle(self, now: float) -> None:
        for tenant in list(self._usage):
            if tenant not in self._queues and self._decayed(tenant, now) < USAGE_FLOOR:
                del self._usage[tenant]
                self._job_cost.pop(tenant, None)
        if len(self._usage) > MAX_TRACKED_TENANTS:  # still too many: keep the heaviest half
            ranked = sorted(self._usage, key=lambda t: self._decayed(t, now))
            for tenant in ranked[: len(ranked) - MAX_TRACKED_TENANTS // 2]:
                del self._usage[tenant]
                self._job_cost.pop(tenant, None)
