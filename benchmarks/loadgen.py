"""A small closed-loop HTTP load generator: N asyncio tasks over one aiohttp pool.

Each task sends a request, waits for the whole answer, records its latency and goes
again, until the phase's deadline or request budget is reached (or a workload says it
has nothing left to do, e.g. the queue is drained).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, round(fraction * len(sorted_values) + 0.5))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class Recorder:
    """What one phase observed. Latencies are in seconds, keyed by operation."""

    max_requests: int
    requests: int = 0
    messages: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    done: bool = False  # a workload ran dry; every task stops after its current step

    def budget_left(self) -> bool:
        return not self.done and self.requests < self.max_requests

    def all_latencies(self) -> list[float]:
        merged: list[float] = []
        for values in self.latencies.values():
            merged.extend(values)
        merged.sort()
        return merged


class Client:
    """Sends requests through a shared session and records what happened."""

    def __init__(self, session: aiohttp.ClientSession, recorder: Recorder) -> None:
        self.session = session
        self.rec = recorder

    async def call(
        self, method: str, url: str, op: str, data: bytes | None = None
    ) -> tuple[int, bytes]:
        rec = self.rec
        rec.requests += 1
        start = time.perf_counter()
        try:
            async with self.session.request(method, url, data=data) as resp:
                body = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            rec.errors[type(exc).__name__] += 1
            return 0, b""
        elapsed = time.perf_counter() - start
        lat = rec.latencies.get(op)
        if lat is None:
            lat = rec.latencies[op] = []
        lat.append(elapsed)
        if status >= 300:
            rec.errors[f"{op} {status}"] += 1
        return status, body


Step = Callable[[Client], Awaitable[None]]


async def _worker(client: Client, step: Step, deadline: float) -> None:
    rec = client.rec
    while rec.budget_left() and time.perf_counter() < deadline:
        await step(client)


@dataclass
class PhaseRun:
    recorder: Recorder
    elapsed: float


async def run_phase(
    headers: dict[str, str],
    concurrency: int,
    duration: float,
    max_requests: int,
    step: Step,
    warmup: float = 0.0,
    on_window: Callable[[bool], None] | None = None,
) -> PhaseRun:
    """Warm up (unrecorded), then run ``concurrency`` tasks of ``step`` for ``duration``.

    ``on_window(True)`` is called as the measured window opens, ``on_window(False)`` as
    it closes (e.g. to read CPU counters over exactly that window).
    """
    connector = aiohttp.TCPConnector(limit=concurrency, ttl_dns_cache=None, use_dns_cache=True)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(
        connector=connector, headers=headers, timeout=timeout, skip_auto_headers=("User-Agent",)
    ) as session:
        if warmup > 0:
            warm = Client(session, Recorder(max_requests=max_requests))
            end = time.perf_counter() + warmup
            await asyncio.gather(*(_worker(warm, step, end) for _ in range(concurrency)))
        rec = Recorder(max_requests=max_requests)
        client = Client(session, rec)
        if on_window is not None:
            on_window(True)
        start = time.perf_counter()
        await asyncio.gather(
            *(_worker(client, step, start + duration) for _ in range(concurrency))
        )
        elapsed = time.perf_counter() - start
        if on_window is not None:
            on_window(False)
    return PhaseRun(rec, elapsed)


# Workloads ---------------------------------------------------------------------------


def post_step(url: str, payload: bytes, per_request: int) -> Step:
    async def step(client: Client) -> None:
        status, _ = await client.call("POST", url, "post", payload)
        if status == 201:
            client.rec.messages += per_request

    return step


def consume_step(base: str, queue: str, limit: int, claim_ttl: int = 60, grace: int = 60) -> Step:
    """Claim up to ``limit`` messages, then bulk-delete exactly those ids with the claim."""
    claim_url = f"{base}/queues/{queue}/claims?limit={limit}"
    messages_url = f"{base}/queues/{queue}/messages"
    claim_body = json.dumps({"ttl": claim_ttl, "grace": grace}).encode()

    async def step(client: Client) -> None:
        status, body = await client.call("POST", claim_url, "claim", claim_body)
        if status == 204:
            client.rec.done = True  # queue drained
            return
        if status != 201:
            return
        messages: list[dict[str, Any]] = json.loads(body)["messages"]
        ids = [m["id"] for m in messages]
        claim_id = messages[0]["href"].rpartition("claim_id=")[2]
        status, _ = await client.call(
            "DELETE", f"{messages_url}?ids={','.join(ids)}&claim_ids={claim_id}", "delete"
        )
        if status == 204:
            client.rec.messages += len(ids)

    return step


def message_payload(count: int, ttl: int = 300, body_size: int = 64) -> bytes:
    body = {"event": "bench", "data": "x" * body_size}
    return json.dumps({"messages": [{"body": body, "ttl": ttl} for _ in range(count)]}).encode()
