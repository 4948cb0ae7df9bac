"""Pooling benchmark: does a post and a claim through a pooled deployment cost what
they cost on the same store unpooled? (issue 11: within 10%; a catalog cache hit adds
no round trip.)

For each of ``--stores`` two servers run side by side, one worker each:

* **U**, unpooled: ``[drivers] message_store`` = a fresh namespace of the store S;
* **P**, pooled (``pooling``, ``admin_mode``): a management store in a fresh SQLite
  file, and ONE pool (weight 100, made with ``PUT /v2/pools/pool-1``) whose URI is
  another fresh namespace of the same kind of store S. (``--management store`` puts
  the management store in a third namespace of S instead of SQLite.)

S is Redis (a key prefix of its own on the machine's server, ``tests/backends.py``
``REDIS_URL``), PostgreSQL (a schema of its own in the ``test`` database) or SQLite (a
file in a temporary directory). Then, per store:

1. **First touch**: ``--queues`` queues are created (``PUT /v2/queues/{q}``), U and P
   alternately, each timed; on P that is the placement (catalog read and writes in the
   management store) besides the pool's create. Then ``--fresh`` posts of one message to
   queues never seen (the post creates and places the queue), U and P alternately.
2. **Steady state**: ``--concurrency`` closed-loop clients (httpx ``AsyncClient``,
   keep-alive, one pool of connections per server) each repeat *post 1 message, claim
   1 (``limit=1``), delete it with its claim id* over their own slice of the queues, so
   every claim finds the message just posted and every route is in P's cache (default
   ``[pooling_catalog] cache_ttl`` of 10 s: each route is read again once per 10 s).
   ``--rounds`` pairs of ``--round-seconds`` rounds, U and P alternately in ABBA order
   (U P, P U, U P, ...) to cancel drift on a shared machine, after an unrecorded
   ``--warmup`` round each. Reported per operation: p50/p99 latency for U and P and the
   ratio P/U; cycles/s (one cycle = the three requests) and the spread of the per-pair
   ratio; server CPU per cycle (psutil, the server's process tree: the store's own CPU
   is not in it except for SQLite, which runs in the server), also net of what each
   server spends idle (measured over ``--idle-seconds`` before).
3. **In process** (``--inproc-rounds`` pairs of ``--inproc-seconds``; 0 skips it): the
   same cycle as storage calls in this process, no HTTP, one task, ABBA again: U = the
   driver, P = ``PooledStorage`` over a SQLite management store and one pool (the
   router alone), and a control U+ = the driver with the claim's metadata read
   (``ops/claims.py`` reads the queue's metadata before each claim; pooled, from the
   management store's registry) taken from another SQLite file, as P's is. p50 per
   call and this process's CPU per cycle (SQLite's threads included); then the time
   of ``PooledStorage.store_of`` on a cached route (the router's whole work on a hit).
4. **Round trips** (``--count-ops``, Redis only; ``--no-count`` skips it): U and P again,
   sequentially and alone, on two private ``redis-server`` instances, one holding the
   U namespace and P's pool namespace, the other P's management store (so catalog and
   registry calls can be counted, which a SQLite management store does not allow).
   ``INFO commandstats`` deltas per operation (every command, those run inside Lua
   scripts included; the ``INFO`` calls themselves excluded), with the notification
   poll and garbage collection set to an hour so nothing else runs. A second pooled
   node on the same management store then posts once to each queue P made: its first
   touch is a cache miss, and the next post a hit.

Every namespace is dropped afterwards (prefixes, schemas, the temporary directory).
No figure is asserted: the script prints them (and ``--json``).

Run:  .venv/bin/python benchmarks/bench_pooling.py [--stores redis,postgres,sqlite]
      [--concurrency 8] [--queues 64] [--fresh 40] [--rounds 5] [--round-seconds 2]
      [--management sqlite|store] [--warmup 1] [--idle-seconds 1] [--inproc-rounds 6]
      [--inproc-seconds 0.4] [--count-ops 200] [--count-queues 50] [--no-count]
      [--json out.json] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import redis
import uvloop
from loadgen import percentile
from servers import TreeSampler

from tests.backends import (
    REDIS_URL,
    drop_postgres_schema,
    drop_redis_prefix,
    postgres_store_uri,
    redis_store_uri,
    unique_name,
)
from tests.instances import RedisInstance
from tests.server import TidingsServer
from tidings.config import PoolingCatalogSettings, StorageSettings
from tidings.model import ClaimRequest, NewMessage, PoolRecord
from tidings.pooling.router import PooledStorage
from tidings.storage import storage_for_uri
from tidings.storage.base import Audience, Storage

STORES = ("redis", "postgres", "sqlite")
PROJECT = "bench-pooling"
POOL = "pool-1"
ADMIN = {"X-Roles": "admin"}
OPS = ("post", "claim", "delete")
POST_BODY = json.dumps({"messages": [{"body": {"event": "bench", "data": "x" * 64}, "ttl": 300}]})
CLAIM_BODY = json.dumps({"ttl": 60, "grace": 60})
TARGET = 1.10  # P may cost at most 10% more than U


def headers() -> dict[str, str]:
    return {
        "Client-ID": str(uuid.uuid4()),
        "X-Project-ID": PROJECT,
        "Content-Type": "application/json",
    }


def pooled_env(management: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {
        "TIDINGS_POOLING": "true",
        "TIDINGS_ADMIN_MODE": "true",
        "TIDINGS_DRIVERS__MANAGEMENT_STORE": management,
        **(extra or {}),
    }


def make_pool(server: TidingsServer, uri: str) -> None:
    with httpx.Client(base_url=server.url + "/v2", headers=headers(), timeout=120.0) as api:
        made = api.put(f"/pools/{POOL}", json={"uri": uri, "weight": 100}, headers=ADMIN)
        if made.status_code != 201:
            raise RuntimeError(f"pool not made: {made.status_code} {made.text}")


def ms(seconds: float) -> float:
    return seconds * 1000.0


# --------------------------------------------------------------------------- namespaces


class Namespaces:
    """Fresh namespaces of one kind of store, each dropped by ``drop``."""

    def __init__(self, kind: str, data_dir: Path) -> None:
        self.kind = kind
        self.data_dir = data_dir
        self._redis: list[str] = []
        self._schemas: list[str] = []

    def new(self, label: str) -> str:
        name = unique_name(label)
        if self.kind == "redis":
            self._redis.append(name)
            return redis_store_uri(name)
        if self.kind == "postgres":
            self._schemas.append(name)
            return postgres_store_uri(name)
        if self.kind == "sqlite":
            return f"sqlite:///{self.data_dir / f'{label}.db'}"
        raise ValueError(f"unknown store {self.kind!r}; choose from {', '.join(STORES)}")

    async def drop_async(self) -> None:
        for prefix in self._redis:
            with contextlib.suppress(Exception):
                await drop_redis_prefix(prefix)
        for schema in self._schemas:
            with contextlib.suppress(Exception):
                await drop_postgres_schema(schema)

    def drop(self) -> None:
        asyncio.run(self.drop_async())


def holds_queue(uri: str, queue: str) -> bool:
    """Whether the store at ``uri`` has ``queue`` (P's data really is in the pool)."""

    async def read() -> bool:
        store = storage_for_uri(uri, StorageSettings())
        await store.open()
        try:
            return await store.queues.get_metadata(PROJECT, queue) is not None
        finally:
            await store.close()

    return asyncio.run(read())


# --------------------------------------------------------------------------- timing


@dataclass
class Side:
    """What one server (U or P) did over all its measured rounds."""

    label: str
    server: TidingsServer
    latencies: dict[str, list[float]] = field(default_factory=lambda: {op: [] for op in OPS})
    cycles: int = 0
    elapsed: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)
    round_rates: list[float] = field(default_factory=list)
    idle_cpu_rate: float = 0.0  # CPU seconds per second with no request

    @property
    def rate(self) -> float:
        return self.cycles / self.elapsed if self.elapsed else 0.0

    def cpu_us_per_cycle(self, net: bool = False) -> float:
        """Server CPU per cycle; ``net``: less what the server spends idle meanwhile."""
        cpu = self.server_cpu - (self.idle_cpu_rate * self.elapsed if net else 0.0)
        return cpu / self.cycles * 1e6 if self.cycles else 0.0


def slices(queues: list[str], concurrency: int) -> list[list[str]]:
    """Each client's own queues (a queue is never used by two clients at once)."""
    return [queues[k::concurrency] or [f"spare-{k}"] for k in range(concurrency)]


async def run_round(
    side: Side,
    client: httpx.AsyncClient,
    own: list[list[str]],
    cursors: list[int],
    duration: float,
    record: bool,
) -> None:
    sampler = TreeSampler(side.server.pid)
    cycles = 0
    latencies: dict[str, list[float]] = {op: [] for op in OPS}
    errors: Counter[str] = Counter()

    async def one(k: int, deadline: float) -> None:
        nonlocal cycles
        queues = own[k]
        while time.perf_counter() < deadline:
            queue = queues[cursors[k] % len(queues)]
            cursors[k] += 1
            try:
                t0 = time.perf_counter()
                posted = await client.post(f"/v2/queues/{queue}/messages", content=POST_BODY)
                t1 = time.perf_counter()
                latencies["post"].append(t1 - t0)
                if posted.status_code != 201:
                    errors[f"post {posted.status_code}"] += 1
                    continue
                claimed = await client.post(
                    f"/v2/queues/{queue}/claims?limit=1", content=CLAIM_BODY
                )
                t2 = time.perf_counter()
                latencies["claim"].append(t2 - t1)
                if claimed.status_code != 201:
                    errors[f"claim {claimed.status_code}"] += 1
                    continue
                href = claimed.json()["messages"][0]["href"]
                deleted = await client.delete(href)
                latencies["delete"].append(time.perf_counter() - t2)
                if deleted.status_code != 204:
                    errors[f"delete {deleted.status_code}"] += 1
                    continue
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] += 1
                continue
            cycles += 1

    cpu0, client0 = sampler.cpu_seconds(), time.process_time()
    start = time.perf_counter()
    await asyncio.gather(*(one(k, start + duration) for k in range(len(own))))
    elapsed = time.perf_counter() - start
    cpu1, client1 = sampler.cpu_seconds(), time.process_time()
    if not record:
        return
    side.cycles += cycles
    side.elapsed += elapsed
    side.server_cpu += cpu1 - cpu0
    side.client_cpu += client1 - client0
    side.errors.update(errors)
    side.round_rates.append(cycles / elapsed if elapsed else 0.0)
    for op in OPS:
        side.latencies[op].extend(latencies[op])


async def steady(
    u: Side, p: Side, queues: list[str], concurrency: int, args: argparse.Namespace
) -> None:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    own = slices(queues, concurrency)
    async with contextlib.AsyncExitStack() as stack:
        clients = {}
        cursors = {}
        for side in (u, p):
            clients[side.label] = await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=side.server.url, headers=headers(), limits=limits, timeout=30.0
                )
            )
            cursors[side.label] = [0] * concurrency
        for side in (u, p):  # warm-up: connections open, code paths hot, unrecorded
            await run_round(
                side, clients[side.label], own, cursors[side.label], args.warmup, record=False
            )
        for pair in range(args.rounds):
            order = (u, p) if pair % 2 == 0 else (p, u)
            for side in order:
                await run_round(
                    side, clients[side.label], own, cursors[side.label], args.round_seconds,
                    record=True,
                )  # fmt: skip


def idle_cpu(u: Side, p: Side, seconds: float) -> None:
    """Each server's CPU rate with no request (background work: feeds, polls, sweeps)."""
    samplers = [(side, TreeSampler(side.server.pid)) for side in (u, p)]
    before = [sampler.cpu_seconds() for _, sampler in samplers]
    start = time.perf_counter()
    time.sleep(seconds)
    elapsed = time.perf_counter() - start
    for (side, sampler), cpu in zip(samplers, before, strict=True):
        side.idle_cpu_rate = (sampler.cpu_seconds() - cpu) / elapsed


def first_touch(
    u: TidingsServer, p: TidingsServer, names: list[str], make: Callable[[httpx.Client, str], int]
) -> dict[str, list[float]]:
    """Time ``make`` on each name, U and P alternately (which goes first alternates too)."""
    took: dict[str, list[float]] = {"U": [], "P": []}
    bad: Counter[str] = Counter()
    with (
        httpx.Client(base_url=u.url + "/v2", headers=headers(), timeout=30.0) as cu,
        httpx.Client(base_url=p.url + "/v2", headers=headers(), timeout=30.0) as cp,
    ):
        for n, name in enumerate(names):
            order = (("U", cu), ("P", cp)) if n % 2 == 0 else (("P", cp), ("U", cu))
            for label, client in order:
                start = time.perf_counter()
                status = make(client, name)
                took[label].append(time.perf_counter() - start)
                if status not in (201, 204):
                    bad[f"{label} {status}"] += 1
    if bad:
        raise RuntimeError(f"first touch failed: {dict(bad)}")
    return took


def create_queue(client: httpx.Client, name: str) -> int:
    return client.put(f"/queues/{name}").status_code


def post_one(client: httpx.Client, name: str) -> int:
    return client.post(f"/queues/{name}/messages", content=POST_BODY).status_code


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "p50_ms": ms(percentile(ordered, 0.50)),
        "p99_ms": ms(percentile(ordered, 0.99)),
        "mean_ms": ms(sum(ordered) / len(ordered)) if ordered else 0.0,
    }


@contextlib.contextmanager
def deployment(
    kind: str, root: Path, management: str
) -> Iterator[tuple[TidingsServer, TidingsServer, str]]:
    """U and P over fresh namespaces of ``kind``; yields (U, P, P's pool URI). P's
    management store is a SQLite file, or (``management="store"``) a third namespace of
    ``kind``."""
    root.mkdir(parents=True, exist_ok=True)
    spaces = Namespaces(kind, root)
    servers: list[TidingsServer] = []
    try:
        u_uri, pool_uri = spaces.new("bu"), spaces.new("bp")
        u = TidingsServer(root / "u", store_uri=u_uri)
        management_uri = (
            spaces.new("bm") if management == "store" else f"sqlite:///{root / 'management.db'}"
        )
        p = TidingsServer(root / "p", env=pooled_env(management_uri))
        for server in (u, p):
            servers.append(server)
            server.start()
        make_pool(p, pool_uri)
        yield u, p, pool_uri
    finally:
        for server in servers:
            server.stop()
        spaces.drop()


def run_store(kind: str, concurrency: int, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    queues = [f"q{n:03}" for n in range(args.queues)]
    where = root / f"{kind}-c{concurrency}"
    with deployment(kind, where, args.management) as (u_server, p_server, pool_uri):
        # The first call opens the pool (PostgreSQL migrates its schema): not timed.
        first_touch(u_server, p_server, ["warm"], create_queue)
        created = first_touch(u_server, p_server, queues, create_queue)
        fresh = first_touch(
            u_server, p_server, [f"fresh{n:03}" for n in range(args.fresh)], post_one
        )
        u, p = Side("U", u_server), Side("P", p_server)
        idle_cpu(u, p, args.idle_seconds)
        uvloop.run(steady(u, p, queues, concurrency, args))
        in_pool = holds_queue(pool_uri, queues[0])
    inproc = None
    if args.inproc_rounds > 0:
        inproc = uvloop.run(in_process(kind, args, root / f"{kind}-c{concurrency}-inproc"))
    result: dict[str, Any] = {
        "store": kind,
        "concurrency": concurrency,
        "management": args.management,
        "pool_holds_queues": in_pool,
        "first_touch": {
            "create": {s: summary(v) for s, v in created.items()},
            "post_to_new_queue": {s: summary(v) for s, v in fresh.items()},
        },
        "sides": {},
        "in_process": inproc,
    }
    for side in (u, p):
        result["sides"][side.label] = {
            "cycles": side.cycles,
            "seconds": side.elapsed,
            "cycles_per_s": side.rate,
            "server_cpu_us_per_cycle": side.cpu_us_per_cycle(),
            "server_cpu_us_per_cycle_net_of_idle": side.cpu_us_per_cycle(net=True),
            "idle_server_cpu_pct": 100 * side.idle_cpu_rate,
            "client_cpu_pct": 100 * side.client_cpu / side.elapsed if side.elapsed else 0.0,
            "errors": dict(side.errors),
            "round_rates": side.round_rates,
            "ops": {op: summary(side.latencies[op]) for op in OPS},
        }
    # Per pair (the two rounds next to each other): throughput ratio P/U.
    result["pair_ratios"] = [
        pr / ur if ur else 0.0 for ur, pr in zip(u.round_rates, p.round_rates, strict=True)
    ]
    return result


# --------------------------------------------------------------------------- round trips


class Commands:
    """``INFO commandstats`` of a private redis-server, as {command: calls}."""

    def __init__(self, port: int) -> None:
        self.client = redis.Redis(port=port)

    def snapshot(self) -> Counter[str]:
        stats = self.client.info("commandstats")
        return Counter(
            {
                name.removeprefix("cmdstat_"): int(value["calls"])
                for name, value in stats.items()
                if name != "cmdstat_info"
            }
        )

    def settled(self) -> Counter[str]:
        """A snapshot once nothing changes for 100 ms (work a post woke has finished)."""
        last = self.snapshot()
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = self.snapshot()
            if now == last:
                return now
            last = now
        return last

    def close(self) -> None:
        self.client.close()


def per_op(before: Counter[str], after: Counter[str], ops: int) -> dict[str, float]:
    delta = after.copy()
    delta.subtract(before)
    return {name: round(calls / ops, 2) for name, calls in sorted(delta.items()) if calls}


def count_round_trips(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    quiet = {"TIDINGS_NOTIFICATION__POLL_INTERVAL": "3600", "TIDINGS_STORAGE__GC_INTERVAL": "3600"}
    pool_redis = RedisInstance(root / "pool-redis", appendonly=False).start()
    mgmt_redis = RedisInstance(root / "mgmt-redis", appendonly=False).start()
    stores = {"store": Commands(pool_redis.port), "management": Commands(mgmt_redis.port)}
    management_uri = f"{mgmt_redis.url}?prefix=mgmt"
    n, k = args.count_queues, args.count_ops
    queues = [f"c{i:03}" for i in range(n)]
    found: dict[str, dict[str, dict[str, float]]] = {}

    def measure(
        label: str, server: TidingsServer, watched: list[str]
    ) -> dict[str, dict[str, dict[str, float]]]:
        out: dict[str, dict[str, dict[str, float]]] = {}
        with httpx.Client(base_url=server.url + "/v2", headers=headers(), timeout=30.0) as api:

            def step(op: str, count: int, call: Callable[[int], object]) -> None:
                before = {s: stores[s].settled() for s in watched}
                for i in range(count):
                    call(i)
                after = {s: stores[s].settled() for s in watched}
                out[op] = {s: per_op(before[s], after[s], count) for s in watched}

            def ok(answer: httpx.Response, status: int) -> httpx.Response:
                if answer.status_code != status:
                    raise RuntimeError(f"{label}: {answer.status_code} {answer.text}")
                return answer

            def post(queue: str) -> httpx.Response:
                return ok(api.post(f"/queues/{queue}/messages", content=POST_BODY), 201)

            def claim(i: int) -> None:
                answer = ok(
                    api.post(f"/queues/{queues[i % n]}/claims?limit=1", content=CLAIM_BODY), 201
                )
                claimed.append(answer.json()["messages"][0]["href"].removeprefix("/v2"))

            claimed: list[str] = []
            # The pool opens, and every script is loaded, before anything is counted.
            ok(api.put("/queues/warm"), 201)
            post("warm")
            href = ok(api.post("/queues/warm/claims?limit=1", content=CLAIM_BODY), 201)
            ok(api.delete(href.json()["messages"][0]["href"].removeprefix("/v2")), 204)
            step("idle (1 s)", 1, lambda _: time.sleep(1.0))
            step("create queue", n, lambda i: ok(api.put(f"/queues/{queues[i]}"), 201))
            step("post to a new queue", n, lambda i: post(f"new{i:03}"))
            step("post", k, lambda i: post(queues[i % n]))
            step("claim", k, claim)
            step("delete", k, lambda i: ok(api.delete(claimed[i]), 204) and None)
        return out

    try:
        u = TidingsServer(root / "u", store_uri=f"{pool_redis.url}?prefix=u", env=quiet).start()
        try:
            found["U"] = measure("U", u, ["store"])
        finally:
            u.stop()
        p = TidingsServer(root / "p", env=pooled_env(management_uri, quiet)).start()
        try:
            make_pool(p, f"{pool_redis.url}?prefix=pool")
            found["P"] = measure("P", p, ["store", "management"])
        finally:
            p.stop()
        # A second node on the same management store: its first touch of each queue is a
        # cache miss (the queue was placed through P), its second a hit.
        p2 = TidingsServer(root / "p2", env=pooled_env(management_uri, quiet)).start()
        try:
            with httpx.Client(base_url=p2.url + "/v2", headers=headers(), timeout=30.0) as api:
                api.post("/queues/warm/messages", content=POST_BODY)  # the pool opens
                for label in ("post, route not cached (miss)", "post, route cached (hit)"):
                    before = {s: c.settled() for s, c in stores.items()}
                    for queue in queues:
                        answer = api.post(f"/queues/{queue}/messages", content=POST_BODY)
                        if answer.status_code != 201:
                            raise RuntimeError(f"P2: {answer.status_code} {answer.text}")
                    after = {s: c.settled() for s, c in stores.items()}
                    found.setdefault("P2", {})[label] = {
                        s: per_op(before[s], after[s], n) for s in stores
                    }
        finally:
            p2.stop()
    finally:
        for commands in stores.values():
            commands.close()
        pool_redis.stop()
        mgmt_redis.stop()
    return found


# --------------------------------------------------------------------------- in process

INPROC_OPS = ("post", "metadata", "claim", "delete")


@dataclass
class Direct:
    """One way of reaching the store in process, and what its cycles took."""

    label: str
    store: Storage
    registry: Storage  # where the claim's metadata read goes (as ``ops/claims.py`` does)
    latencies: dict[str, list[float]] = field(default_factory=lambda: {op: [] for op in INPROC_OPS})
    cycles: int = 0
    cpu: float = 0.0  # this process's CPU (every thread: SQLite's included)


async def inproc_block(side: Direct, queues: list[str], seconds: float, record: bool) -> None:
    message = NewMessage(body=json.dumps({"event": "bench", "data": "x" * 64}).encode(), ttl=300)
    request = ClaimRequest(ttl=60, grace=60, limit=1)
    took: dict[str, list[float]] = {op: [] for op in INPROC_OPS}
    cycles = 0
    cpu0 = time.process_time()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        queue = queues[(side.cycles + cycles) % len(queues)]
        now = time.time()
        t0 = time.perf_counter()
        await side.store.messages.post(PROJECT, queue, lambda _: [message], "c", now, Audience.ALL)
        t1 = time.perf_counter()
        await side.registry.queues.get_metadata(PROJECT, queue)
        t2 = time.perf_counter()
        claim = await side.store.claims.create(PROJECT, queue, request, now)
        t3 = time.perf_counter()
        assert claim is not None and claim.messages
        await side.store.messages.delete(PROJECT, queue, claim.messages[0].id, claim.id, now)
        t4 = time.perf_counter()
        for op, value in zip(INPROC_OPS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            took[op].append(value)
        cycles += 1
    if record:
        side.cpu += time.process_time() - cpu0
        side.cycles += cycles
        for op in INPROC_OPS:
            side.latencies[op].extend(took[op])


async def in_process(kind: str, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """The router's own cost: the storage calls of one cycle, no HTTP, in this process.

    U: the store's driver; P: ``PooledStorage`` over a SQLite management store and one
    pool of the same kind; for Redis and PostgreSQL also U+: the driver, with the
    claim's metadata read from a SQLite file as P's registry read is (a control)."""
    root.mkdir(parents=True, exist_ok=True)
    spaces = Namespaces(kind, root)
    settings = StorageSettings()
    opened: list[Storage] = []
    try:
        direct = storage_for_uri(spaces.new("iu"), settings)
        management_uri = f"sqlite:///{root / 'management.db'}"
        setup = storage_for_uri(management_uri, settings)
        await setup.open()
        try:
            await setup.catalog.pool_put(PoolRecord(name=POOL, uri=spaces.new("ip"), weight=100))
        finally:
            await setup.close()
        pooled = PooledStorage(
            storage_for_uri(management_uri, settings),
            storage_settings=settings,
            catalog_settings=PoolingCatalogSettings(),
        )
        sides = [Direct("U", direct, direct), Direct("P", pooled, pooled)]
        stores: list[Storage] = [direct, pooled]
        registry = storage_for_uri(f"sqlite:///{root / 'registry.db'}", settings)
        stores.append(registry)
        sides.append(Direct("U+", direct, registry))
        for store in stores:
            await store.open()
            opened.append(store)
        queues = [f"q{n:03}" for n in range(args.queues)]
        for store in stores:
            for queue in queues:
                await store.queues.create(PROJECT, queue, {}, time.time())
        for side in sides:
            await inproc_block(side, queues, args.warmup / 2, record=False)
        for n in range(args.inproc_rounds):
            for side in sides if n % 2 == 0 else sides[::-1]:
                await inproc_block(side, queues, args.inproc_seconds, record=True)
        # The router alone: where a queue is, found in the route cache (a hit).
        calls = 50_000
        start = time.perf_counter()
        for n in range(calls):
            await pooled.store_of(PROJECT, queues[n % len(queues)])
        route_hit = (time.perf_counter() - start) / calls
    finally:
        for store in reversed(opened):
            with contextlib.suppress(Exception):
                await store.close()
        await spaces.drop_async()
    found: dict[str, Any] = {
        side.label: {
            "cycles": side.cycles,
            "cpu_us_per_cycle": side.cpu / side.cycles * 1e6 if side.cycles else 0.0,
            "ops": {op: summary(side.latencies[op]) for op in INPROC_OPS},
        }
        for side in sides
    }
    found["route_hit_us"] = route_hit * 1e6
    return found


# --------------------------------------------------------------------------- report


def ratio(p: float, u: float) -> str:
    return f"{p / u:.2f}" if u else "—"


def print_store(result: dict[str, Any]) -> None:
    kind, c = result["store"], result["concurrency"]
    u, p = result["sides"]["U"], result["sides"]["P"]
    print(f"\n### {kind}, {c} clients, management store: {result['management']}\n")
    print("| op | U p50 ms | P p50 ms | P/U p50 | U p99 ms | P p99 ms | P/U p99 | U n | P n |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for op in OPS:
        uo, po = u["ops"][op], p["ops"][op]
        print(
            f"| {op} | {uo['p50_ms']:.2f} | {po['p50_ms']:.2f}"
            f" | {ratio(po['p50_ms'], uo['p50_ms'])}"
            f" | {uo['p99_ms']:.2f} | {po['p99_ms']:.2f} | {ratio(po['p99_ms'], uo['p99_ms'])}"
            f" | {uo['n']:,} | {po['n']:,} |"
        )
    pairs = result["pair_ratios"]
    print(
        f"\ncycles/s (post+claim+delete): U {u['cycles_per_s']:,.0f}, P {p['cycles_per_s']:,.0f}, "
        f"P/U {ratio(p['cycles_per_s'], u['cycles_per_s'])} (per pair {min(pairs):.2f} to "
        f"{max(pairs):.2f}, median {statistics.median(pairs):.2f}); server CPU µs/cycle: "
        f"U {u['server_cpu_us_per_cycle']:.0f}, "
        f"P {p['server_cpu_us_per_cycle']:.0f}, P/U "
        f"{ratio(p['server_cpu_us_per_cycle'], u['server_cpu_us_per_cycle'])} (net of idle: "
        f"U {u['server_cpu_us_per_cycle_net_of_idle']:.0f}, "
        f"P {p['server_cpu_us_per_cycle_net_of_idle']:.0f}; idle CPU U "
        f"{u['idle_server_cpu_pct']:.1f}%, P {p['idle_server_cpu_pct']:.1f}%); client CPU "
        f"U {u['client_cpu_pct']:.0f}%, P {p['client_cpu_pct']:.0f}%; errors U {u['errors'] or 0}, "
        f"P {p['errors'] or 0}; P's queues are in the pool's namespace: "
        f"{'yes' if result['pool_holds_queues'] else 'NO'}"
    )
    for what, figures in result["first_touch"].items():
        fu, fp = figures["U"], figures["P"]
        print(
            f"first touch, {what.replace('_', ' ')} (n={fu['n']} each): p50 U {fu['p50_ms']:.2f} / "
            f"P {fp['p50_ms']:.2f} ms (P/U {ratio(fp['p50_ms'], fu['p50_ms'])}), p99 U "
            f"{fu['p99_ms']:.2f} / P {fp['p99_ms']:.2f} ms"
        )


def print_in_process(result: dict[str, Any]) -> None:
    found = result["in_process"]
    if not found:
        return
    u = found["U"]
    labels = [label for label in ("P", "U+") if label in found]
    print(f"\nin process ({result['store']}, one task, no HTTP): p50 µs U / " + " / ".join(labels))
    for op in INPROC_OPS:
        base = u["ops"][op]["p50_ms"]
        cells = ", ".join(
            f"{label} {found[label]['ops'][op]['p50_ms'] * 1000:.0f} "
            f"({ratio(found[label]['ops'][op]['p50_ms'], base)})"
            for label in labels
        )
        print(f"  {op}: U {base * 1000:.0f}; {cells}")
    cells = ", ".join(
        f"{label} {found[label]['cpu_us_per_cycle']:.0f} "
        f"({ratio(found[label]['cpu_us_per_cycle'], u['cpu_us_per_cycle'])})"
        for label in labels
    )
    print(
        f"  CPU µs/cycle: U {u['cpu_us_per_cycle']:.0f}; {cells}; cycles U {u['cycles']:,}; "
        f"a route found in the cache: {found['route_hit_us']:.1f} µs"
    )


def print_summary(results: list[dict[str, Any]]) -> None:
    print("\n### Summary (P/U; target: latency and CPU ≤ 1.10, throughput ≥ 0.91)\n")
    print(
        "| store | clients | post p50 | claim p50 | delete p50 | post p99 | claim p99 "
        "| delete p99 | cycles/s U → P | throughput P/U (pairs: median) | server CPU/cycle "
        "| in process: CPU/cycle P (U+); route hit | create p50 ms U → P "
        "| new-queue post p50 ms U → P |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        u, p = r["sides"]["U"], r["sides"]["P"]
        cells = [ratio(p["ops"][op]["p50_ms"], u["ops"][op]["p50_ms"]) for op in OPS]
        cells += [ratio(p["ops"][op]["p99_ms"], u["ops"][op]["p99_ms"]) for op in OPS]
        ft = r["first_touch"]
        inproc = "—"
        if r["in_process"]:
            found = r["in_process"]
            base = found["U"]["cpu_us_per_cycle"]
            inproc = ratio(found["P"]["cpu_us_per_cycle"], base)
            if "U+" in found:
                inproc += f" ({ratio(found['U+']['cpu_us_per_cycle'], base)})"
            inproc += f"; hit {found['route_hit_us']:.1f} µs"
        print(
            f"| {r['store']} | {r['concurrency']} | {' | '.join(cells)} | "
            f"{u['cycles_per_s']:,.0f} → {p['cycles_per_s']:,.0f} | "
            f"{ratio(p['cycles_per_s'], u['cycles_per_s'])} "
            f"({statistics.median(r['pair_ratios']):.2f}) | "
            f"{ratio(p['server_cpu_us_per_cycle'], u['server_cpu_us_per_cycle'])} | {inproc} | "
            f"{ft['create']['U']['p50_ms']:.2f} → {ft['create']['P']['p50_ms']:.2f} | "
            f"{ft['post_to_new_queue']['U']['p50_ms']:.2f} → "
            f"{ft['post_to_new_queue']['P']['p50_ms']:.2f} |"
        )


def print_counts(found: dict[str, Any]) -> None:
    def total(calls: dict[str, float]) -> str:
        return f"{sum(calls.values()):.2f}" if calls else "0"

    def names(calls: dict[str, float]) -> str:
        return ", ".join(f"{k} {v:g}" for k, v in calls.items()) or "—"

    print("\n### Redis commands per operation (INFO commandstats deltas)\n")
    print("| operation | U: store | P: pool | P: management store | P: management commands |")
    print("|---|---:|---:|---:|---|")
    for op, u in found["U"].items():
        p = found["P"][op]
        print(
            f"| {op} | {total(u['store'])} | {total(p['store'])} | {total(p['management'])} | "
            f"{names(p['management'])} |"
        )
    for op, p2 in found["P2"].items():
        print(
            f"| second node: {op} | — | {total(p2['store'])} | {total(p2['management'])} | "
            f"{names(p2['management'])} |"
        )
    print("\nPer command (U store / P pool), where they differ:")
    for op, u in found["U"].items():
        p = found["P"][op]["store"]
        diff = {c for c in set(u["store"]) | set(p) if u["store"].get(c) != p.get(c)}
        shown = ", ".join(f"{c} {u['store'].get(c, 0):g}/{p.get(c, 0):g}" for c in sorted(diff))
        print(f"  {op}: {shown or 'identical'}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stores", default=",".join(STORES))
    parser.add_argument("--concurrency", default="8", help="clients; a list runs each")
    parser.add_argument("--queues", type=int, default=64)
    parser.add_argument("--fresh", type=int, default=40, help="posts to never-seen queues")
    parser.add_argument("--rounds", type=int, default=5, help="pairs of rounds (U and P)")
    parser.add_argument("--round-seconds", type=float, default=2.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument(
        "--management",
        choices=("sqlite", "store"),
        default="sqlite",
        help="P's management store: a SQLite file, or a namespace of the store S itself",
    )
    parser.add_argument("--idle-seconds", type=float, default=1.0)
    parser.add_argument("--inproc-rounds", type=int, default=6, help="0 skips it")
    parser.add_argument("--inproc-seconds", type=float, default=0.4)
    parser.add_argument("--count-ops", type=int, default=200)
    parser.add_argument("--count-queues", type=int, default=50)
    parser.add_argument("--no-count", action="store_true", help="skip the round-trip count")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bench-pooling-"))
    started = time.monotonic()
    print(
        f"bench_pooling at {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; Redis {REDIS_URL}; "
        f"{args.rounds} pairs of {args.round_seconds} s rounds; P's management store: "
        f"{args.management}; temp {root}"
    )
    results: list[dict[str, Any]] = []
    counts: dict[str, Any] | None = None
    failed = False
    try:
        for kind in [s.strip() for s in args.stores.split(",") if s.strip()]:
            for concurrency in [int(c) for c in args.concurrency.split(",")]:
                result = run_store(kind, concurrency, args, root)
                results.append(result)
                print_store(result)
                print_in_process(result)
                failed |= any(result["sides"][s]["errors"] for s in ("U", "P"))
        if results:
            print_summary(results)
        if not args.no_count and args.count_ops > 0:
            counts = count_round_trips(args, root / "count")
            print_counts(counts)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\ntook {time.monotonic() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"stores": results, "round_trips": counts}, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
