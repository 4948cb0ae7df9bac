"""What a worker process records, in compact arrays, and how the parent merges it.

Latencies are milliseconds in ``array('d')``: 8 bytes a sample, no object per request,
pickled as one buffer when a process hands its results back.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

PERCENTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99))


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted values (0.0 when there are none)."""
    if not ordered:
        return 0.0
    rank = math.ceil(fraction * len(ordered))
    return ordered[max(1, min(rank, len(ordered))) - 1]


def summary(values: Iterable[float]) -> dict[str, float]:
    """p50/p90/p99/max, rounded to microseconds."""
    ordered = sorted(values)
    found = {name: round(percentile(ordered, f), 3) for name, f in PERCENTILES}
    found["max"] = round(ordered[-1], 3) if ordered else 0.0
    return found


@dataclass(slots=True)
class RoleRecord:
    """One role's counts and latencies in one process (or merged over all of them)."""

    requests: int = 0
    messages: int = 0
    claims_empty: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latency: dict[str, array[float]] = field(default_factory=dict)  # by operation

    def samples(self, op: str) -> array[float]:
        found = self.latency.get(op)
        if found is None:
            found = self.latency[op] = array("d")
        return found

    def merge(self, other: RoleRecord) -> None:
        self.requests += other.requests
        self.messages += other.messages
        self.claims_empty += other.claims_empty
        self.errors.update(other.errors)
        for op, values in other.latency.items():
            self.samples(op).extend(values)

    def error_count(self) -> int:
        return sum(self.errors.values())


@dataclass(slots=True)
class ProcessResult:
    """What one worker process sends back when it is done."""

    index: int
    roles: dict[str, RoleRecord]
    post_to_claim: array[float]  # ms from a producer's send to the consumer's claim answer
    elapsed: float  # seconds from the start signal to the stop
    cpu_seconds: float  # user + system time of the process over that span
    failure: str | None = None  # the process could not run at all
