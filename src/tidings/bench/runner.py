"""One run of ``tidings bench`` against one server: create the queues, start the worker
processes together, show progress, gather their records, delete the queues."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import queue as queue_module
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import aiohttp

from tidings.bench.bodies import post_pieces, render
from tidings.bench.options import ROLES, BenchOptions
from tidings.bench.stats import ProcessResult
from tidings.bench.workers import (
    COUNTERS_PER_PROCESS,
    COUNTERS_PER_ROLE,
    LoopSpec,
    ProcessPlan,
    process_main,
)

START_TIMEOUT = 120.0  # for the worker processes to import and reach the start line
FINISH_GRACE = 30.0  # past the duration, for a process to hand back its records
SETUP_CONCURRENCY = 16
PREFILL_BATCH = 10  # Zaqar's default limit of messages per post


@dataclass
class RunOutcome:
    url: str
    run_id: str  # in the names of the run's projects and queues: bench-{run_id}-p0, -q0
    results: list[ProcessResult]
    elapsed: float  # wall seconds from the start signal to the last record
    cpu_seconds: float  # of the workers and this process over the run
    interrupted: bool
    setup_errors: Counter[str] = field(default_factory=Counter)
    teardown_errors: Counter[str] = field(default_factory=Counter)


def targets(options: BenchOptions, run_id: str) -> list[tuple[str, str]]:
    """(project, queue) of every queue the run uses: fresh names for each run."""
    return [
        (f"bench-{run_id}-p{j}", f"bench-{run_id}-q{i}")
        for j in range(options.projects)
        for i in range(options.queues)
    ]


def build_plans(options: BenchOptions, url: str, run_id: str) -> list[ProcessPlan]:
    """Spread each role's request loops over the processes and its workers over the loops.

    Loop ``g`` of a role works on queue ``g mod queues`` as worker ``g mod workers``, so
    producers and consumers meet on every queue and every worker's Client-ID is used.
    """
    where = targets(options, run_id)
    shares: list[list[LoopSpec]] = [[] for _ in range(options.processes)]
    placed = 0
    for role in ROLES:
        clients = [str(uuid.uuid4()) for _ in range(options.workers(role))]
        for g in range(options.in_flight(role)):
            project, queue = where[g % len(where)]
            spec = LoopSpec(role, project, queue, clients[g % len(clients)], seed=placed)
            shares[placed % options.processes].append(spec)
            placed += 1
    loops = [share for share in shares if share]
    return [
        ProcessPlan(index, url, options, tuple(share), options.in_flight("producer"))
        for index, share in enumerate(loops)
    ]


async def _each(
    options: BenchOptions,
    url: str,
    run_id: str,
    method: str,
    rest: str,
    body: bytes | None,
    errors: Counter[str],
    repeat: int = 1,
) -> None:
    """Send one request (``repeat`` times) to every queue of the run, a few at a time."""
    limit = asyncio.Semaphore(SETUP_CONCURRENCY)
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=options.timeout)
    ) as session:

        async def one(project: str, queue: str) -> None:
            headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": project,
                       "Content-Type": "application/json"}
            if options.token:
                headers["X-Auth-Token"] = options.token
            for _ in range(repeat):
                async with limit:
                    try:
                        async with session.request(
                            method, f"{url}/v2/queues/{queue}{rest}", headers=headers, data=body
                        ) as resp:
                            await resp.read()
                            if resp.status >= 400:
                                errors[f"{method} {resp.status}"] += 1
                    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                        errors[f"{method} {type(exc).__name__}"] += 1
                        return

        await asyncio.gather(*(one(p, q) for p, q in targets(options, run_id)))


async def setup(options: BenchOptions, url: str, run_id: str, errors: Counter[str]) -> None:
    await _each(options, url, run_id, "PUT", "", None, errors)
    if options.prefill:
        full, rest = divmod(options.prefill, PREFILL_BATCH)
        batch = render(post_pieces(0, options.message_size, PREFILL_BATCH,
                                   options.message_ttl), 0.0)
        # A prefilled message's send time is 0: it is left out of the post-to-claim delay.
        await _each(options, url, run_id, "POST", "/messages", batch, errors, repeat=full)
        if rest:
            tail = render(post_pieces(0, options.message_size, rest, options.message_ttl), 0.0)
            await _each(options, url, run_id, "POST", "/messages", tail, errors)


async def teardown(options: BenchOptions, url: str, run_id: str, errors: Counter[str]) -> None:
    await _each(options, url, run_id, "DELETE", "", None, errors)


class Progress:
    """The live line: once a second, on stderr; rewritten in place on a terminal."""

    def __init__(self, stream: TextIO, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.tty = stream.isatty()
        self.last: list[int] = []
        self.last_at = 0.0
        self.width = 0

    def show(self, counters: Any, processes: int, elapsed: float) -> None:
        if not self.enabled:
            return
        totals = [0] * COUNTERS_PER_PROCESS
        for p in range(processes):
            for i in range(COUNTERS_PER_PROCESS):
                totals[i] += counters[p * COUNTERS_PER_PROCESS + i]
        span = elapsed - self.last_at
        before = self.last or [0] * COUNTERS_PER_PROCESS
        parts = [f"{elapsed:6.1f}s"]
        errors = 0
        for r, role in enumerate(ROLES):
            i = r * COUNTERS_PER_ROLE
            errors += totals[i + 2]
            if not totals[i]:
                continue
            rps = (totals[i] - before[i]) / span if span > 0 else 0.0
            mps = (totals[i + 1] - before[i + 1]) / span if span > 0 else 0.0
            parts.append(f"{role} {rps:8.0f} req/s {mps:8.0f} msg/s")
        parts.append(f"errors {errors}")
        line = "  ".join(parts)
        self.last, self.last_at = totals, elapsed
        if self.tty:
            self.stream.write("\r" + line.ljust(self.width))
            self.width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty and self.width:
            self.stream.write("\n")
            self.stream.flush()


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def run_once(options: BenchOptions, url: str) -> RunOutcome:
    """Run the load against ``url``. Ctrl-C stops the run early; the outcome says so."""
    run_id = uuid.uuid4().hex[:8]
    outcome = RunOutcome(url, run_id, [], 0.0, 0.0, interrupted=False)
    try:
        asyncio.run(setup(options, url, run_id, outcome.setup_errors))
    except KeyboardInterrupt:
        outcome.interrupted = True
    if outcome.setup_errors:
        print(f"tidings bench: setting up the queues on {url} failed: "
              + ", ".join(f"{k} x{n}" for k, n in outcome.setup_errors.items()),
              file=sys.stderr)
    if not outcome.interrupted:
        _run_processes(options, url, run_id, outcome)
    if not options.keep:
        # A Ctrl-C during the cleanup leaves the queues behind, nothing worse.
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(teardown(options, url, run_id, outcome.teardown_errors))
    return outcome


def _run_processes(options: BenchOptions, url: str, run_id: str, outcome: RunOutcome) -> None:
    plans = build_plans(options, url, run_id)
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(plans) + 1)
    stop = context.Event()
    counters = context.RawArray("q", len(plans) * COUNTERS_PER_PROCESS)
    results: Any = context.Queue()
    processes = [
        context.Process(
            target=process_main, args=(plan, barrier, stop, counters, results),
            name=f"tidings-bench-{plan.index}", daemon=True,
        )
        for plan in plans
    ]
    progress = Progress(sys.stderr, enabled=not options.quiet)
    for process in processes:
        process.start()
    started = time.monotonic()
    cpu = _cpu_seconds()
    try:
        barrier.wait(timeout=START_TIMEOUT)
        started = time.monotonic()
        cpu = _cpu_seconds()
        _collect(options, processes, results, counters, progress, started, outcome)
    except threading.BrokenBarrierError:
        print("tidings bench: the worker processes did not start", file=sys.stderr)
    except KeyboardInterrupt:
        outcome.interrupted = True
        stop.set()
        barrier.abort()
        with contextlib.suppress(KeyboardInterrupt):
            _collect(options, processes, results, counters, progress, started, outcome)
    finally:
        progress.close()
        stop.set()
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
    outcome.elapsed = max((r.elapsed for r in outcome.results), default=0.0)
    outcome.cpu_seconds = (_cpu_seconds() - cpu) + sum(r.cpu_seconds for r in outcome.results)
    for result in outcome.results:
        if result.failure:
            print(f"tidings bench: worker process {result.index} failed: {result.failure}",
                  file=sys.stderr)


def _collect(
    options: BenchOptions,
    processes: Sequence[multiprocessing.process.BaseProcess],
    results: Any,
    counters: Any,
    progress: Progress,
    started: float,
    outcome: RunOutcome,
) -> None:
    """Show progress and take each process's record, until all came or all are gone."""
    limit = started + options.duration + FINISH_GRACE
    next_tick = started + 1.0
    while len(outcome.results) < len(processes):
        now = time.monotonic()
        if now >= next_tick:
            progress.show(counters, len(processes), now - started)
            next_tick += 1.0 * max(1, int((now - next_tick) // 1.0) + 1)
        try:
            outcome.results.append(results.get(timeout=max(0.01, min(next_tick - now, 1.0))))
            continue
        except queue_module.Empty:
            pass
        if now > limit or not any(p.is_alive() for p in processes):
            # Drain what arrived meanwhile, then give up on the silent ones.
            with contextlib.suppress(queue_module.Empty):
                while len(outcome.results) < len(processes):
                    outcome.results.append(results.get(timeout=0.5))
            missing = len(processes) - len(outcome.results)
            if missing:
                print(f"tidings bench: {missing} worker process(es) sent no results",
                      file=sys.stderr)
            return
