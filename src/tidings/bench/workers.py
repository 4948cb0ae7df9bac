"""One worker process of ``tidings bench``: an asyncio loop (uvloop when installed) and
closed request loops for its share of the producers, consumers and observers, each
loop with its own keep-alive connection (``client``).

Everything a request needs (request line, headers, body pieces) is encoded before the
start; a request allocates little more than its bytes and one latency sample. The
process publishes running counts into shared memory for the parent's progress line,
and sends its full record back through a queue at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import random
import signal
import threading
import time
from array import array
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier, Event
from typing import Any

import msgspec

from tidings.bench.bodies import post_pieces, render
from tidings.bench.client import Channel, ConnectionFailed, Endpoint, RequestBuilder
from tidings.bench.options import ROLES, BenchOptions
from tidings.bench.stats import ProcessResult, RoleRecord

COUNTERS_PER_ROLE = 3  # requests, messages, errors: what the progress line shows
COUNTERS_PER_PROCESS = COUNTERS_PER_ROLE * len(ROLES)
PUBLISH_EVERY = 0.2  # seconds between counter publications and stop checks
ERROR_PAUSE = 0.05  # after a failed connection, so a dead server is not spun against
CLAIM_BODY = b'{"ttl":60,"grace":60}'


@dataclass(frozen=True, slots=True)
class LoopSpec:
    """One closed request loop: one request in flight at a time."""

    role: str
    project: str
    queue: str
    client_id: str  # the loop's worker's Client-ID; a worker's loops may span processes
    seed: int


@dataclass(frozen=True, slots=True)
class ProcessPlan:
    index: int
    url: str
    options: BenchOptions
    loops: tuple[LoopSpec, ...]
    producer_loops: int  # over all processes: each loop's share of --producer-rate


class _Body(msgspec.Struct):
    sent: float = 0.0


class _Claimed(msgspec.Struct):
    href: str
    body: _Body | None = None


class _Claim(msgspec.Struct):
    messages: list[_Claimed] = []


class _Listing(msgspec.Struct):
    messages: list[msgspec.Raw] = []


_claim_decoder = msgspec.json.Decoder(_Claim)
_listing_decoder = msgspec.json.Decoder(_Listing)


class Worker:
    """The loops of one process and what they record."""

    def __init__(self, plan: ProcessPlan) -> None:
        self.plan = plan
        self.options = plan.options
        self.endpoint = Endpoint.from_url(plan.url)
        self.limit = self.options.timeout + (self.options.wait or 0.0)
        self.running = True
        self.records = {role: RoleRecord() for role in ROLES}
        self.post_to_claim: array[float] = array("d")
        self.channels: list[Channel] = []

    def builder(self, spec: LoopSpec) -> RequestBuilder:
        headers = {
            "Client-ID": spec.client_id,
            "X-Project-ID": spec.project,
            "Accept": "application/json",
        }
        if self.options.token:
            headers["X-Auth-Token"] = self.options.token
        return RequestBuilder(self.endpoint, headers)

    def channel(self) -> Channel:
        found = Channel(self.endpoint, self.options.timeout)
        self.channels.append(found)
        return found

    async def call(
        self, channel: Channel, record: RoleRecord, latencies: array[float], data: bytes
    ) -> tuple[int, bytes]:
        """Send one request; (status, body), or (0, b"") when no answer came. Counts it."""
        start = time.perf_counter()
        try:
            status, body = await channel.send(data)
        except ConnectionFailed as exc:
            if not self.running:
                return 0, b""  # cut short by the stop: not the server's failure
            record.requests += 1
            record.errors[exc.kind] += 1
            await asyncio.sleep(ERROR_PAUSE)
            return 0, b""
        latencies.append((time.perf_counter() - start) * 1000.0)
        record.requests += 1
        if status >= 400:
            record.errors[str(status)] += 1
        return status, body

    def expire(self) -> None:
        now = time.monotonic()
        for channel in self.channels:
            channel.expire(now, self.limit)

    async def produce(self, spec: LoopSpec) -> None:
        options = self.options
        record = self.records["producer"]
        latencies = record.samples("post")
        build = self.builder(spec)
        head = build.line("POST", f"/v2/queues/{spec.queue}/messages")
        channel = self.channel()
        pieces = post_pieces(spec.seed, options.message_size, options.batch, options.message_ttl)
        interval = 0.0
        if options.producer_rate:
            interval = options.batch * self.plan.producer_loops / options.producer_rate
        rng = random.Random(spec.seed)
        next_at = time.monotonic() + rng.random() * interval  # spread the loops' phases
        while self.running:
            if interval:
                pause = next_at - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(pause)
                elif pause < -1.0:
                    next_at = time.monotonic()  # after a stall, no burst to catch up
                next_at += interval
            data = build.with_body(head, render(pieces, time.time()))
            status, _ = await self.call(channel, record, latencies, data)
            if status == 201:
                record.messages += options.batch

    async def consume(self, spec: LoopSpec) -> None:
        options = self.options
        record = self.records["consumer"]
        claims = record.samples("claim")
        deletes = record.samples("delete")
        query = f"?limit={options.claim_limit}"
        if options.wait is not None:
            query += f"&wait={options.wait:g}"
        build = self.builder(spec)
        claim = build.with_body(build.line("POST", f"/v2/queues/{spec.queue}/claims{query}"),
                                CLAIM_BODY)
        channel = self.channel()
        delay = self.post_to_claim
        while self.running:
            status, body = await self.call(channel, record, claims, claim)
            if status == 201:
                received = time.time()
                try:
                    claimed = _claim_decoder.decode(body).messages
                except msgspec.DecodeError:
                    record.errors["unreadable claim"] += 1
                    continue
                for message in claimed:
                    if message.body is not None and message.body.sent > 0:
                        delay.append((received - message.body.sent) * 1000.0)
                if options.bulk_delete and claimed:
                    await self.delete_bulk(spec, build, channel, claimed, record, deletes)
                    continue
                for message in claimed:
                    data = build.href("DELETE", message.href)
                    status, _ = await self.call(channel, record, deletes, data)
                    if status == 204:
                        record.messages += 1
            elif status == 204:
                record.claims_empty += 1
                if options.wait is None and options.poll_interval:
                    await asyncio.sleep(options.poll_interval)

    async def delete_bulk(
        self,
        spec: LoopSpec,
        build: RequestBuilder,
        channel: Channel,
        claimed: list[_Claimed],
        record: RoleRecord,
        latencies: array[float],
    ) -> None:
        ids = []
        claim_id = ""
        for message in claimed:
            path, _, query = message.href.partition("?")
            ids.append(path.rpartition("/")[2])
            claim_id = query.partition("claim_id=")[2].partition("&")[0] or claim_id
        path = f"/v2/queues/{spec.queue}/messages?ids={','.join(ids)}"
        if claim_id:
            path += f"&claim_ids={claim_id}"
        data = build.bodiless(build.line("DELETE", path))
        status, _ = await self.call(channel, record, latencies, data)
        if status == 204:
            record.messages += len(ids)

    async def observe(self, spec: LoopSpec) -> None:
        options = self.options
        record = self.records["observer"]
        latencies = record.samples("list")
        query = f"?limit={options.claim_limit}&echo=true"
        if options.wait is not None:
            query += f"&wait={options.wait:g}"
        build = self.builder(spec)
        listing = build.bodiless(build.line("GET", f"/v2/queues/{spec.queue}/messages{query}"))
        channel = self.channel()
        while self.running:
            status, body = await self.call(channel, record, latencies, listing)
            if status == 200:
                try:
                    record.messages += len(_listing_decoder.decode(body).messages)
                except msgspec.DecodeError:
                    record.errors["unreadable listing"] += 1

    async def guarded(self, spec: LoopSpec) -> None:
        """Run one loop; a bug in it is counted and ends that loop, not the process."""
        loops: dict[str, Callable[[LoopSpec], Awaitable[None]]] = {
            "producer": self.produce, "consumer": self.consume, "observer": self.observe,
        }
        try:
            await loops[spec.role](spec)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.records[spec.role].errors[f"bench bug: {type(exc).__name__}: {exc}"] += 1

    def publish(self, counters: Any, base: int) -> None:
        for offset, role in enumerate(ROLES):
            record = self.records[role]
            slot = base + offset * COUNTERS_PER_ROLE
            counters[slot] = record.requests
            counters[slot + 1] = record.messages
            counters[slot + 2] = record.error_count()


async def _run(plan: ProcessPlan, stop: Event, counters: Any) -> ProcessResult:
    worker = Worker(plan)
    base = plan.index * COUNTERS_PER_PROCESS
    cpu = _cpu_seconds()
    started = time.monotonic()
    deadline = started + plan.options.duration
    tasks = [asyncio.create_task(worker.guarded(spec)) for spec in plan.loops]
    parent = multiprocessing.parent_process()
    while time.monotonic() < deadline and not stop.is_set():
        if parent is not None and not parent.is_alive():
            break
        worker.publish(counters, base)
        worker.expire()
        await asyncio.sleep(min(PUBLISH_EVERY, max(0.0, deadline - time.monotonic())))
    # Requests in flight at the stop (long polls among them) are abandoned, not waited for.
    worker.running = False
    elapsed = time.monotonic() - started
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for channel in worker.channels:
        channel.close()
    cpu = _cpu_seconds() - cpu
    worker.publish(counters, base)
    return ProcessResult(
        index=plan.index,
        roles=worker.records,
        post_to_claim=worker.post_to_claim,
        elapsed=elapsed,
        cpu_seconds=cpu,
    )


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _event_loop_runner() -> asyncio.Runner:
    try:
        import uvloop  # the server's loop (uvicorn[standard]): cheaper per request
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def process_main(
    plan: ProcessPlan,
    barrier: Barrier,
    stop: Event,
    counters: Any,
    results: Queue[ProcessResult],
) -> None:
    """The entry point of a spawned worker process."""
    # Ctrl-C reaches the whole process group: the parent decides, through ``stop``.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        return  # the run was abandoned before it started
    try:
        with _event_loop_runner() as runner:
            main: Coroutine[Any, Any, ProcessResult] = _run(plan, stop, counters)
            result = runner.run(main)
    except Exception as exc:
        result = ProcessResult(plan.index, {}, array("d"), 0.0, 0.0,
                               failure=f"{type(exc).__name__}: {exc}")
    with contextlib.suppress(Exception):
        results.put(result)
