"""WebSocket figures: idle connections a worker holds, push throughput, post-to-push latency.

Three phases, each against real ``tidings serve`` processes (one worker each) over real
connections (the ``websockets`` client library and aiohttp, in this process; push frames
are timed on arrival and decoded afterwards, so the client costs little per frame):

* ``idle``: one server (SQLite) and ``--idle`` WebSocket connections opened to ``/`` and
  left idle; the figures are the worker's RSS before and after, the memory per
  connection, and whether every connection still answers a ``ping_node`` frame at the
  end (a sample of ``--idle-check`` of them).
* ``fanout``: for each of ``--fanout-stores``, one server and ``--subscribers``
  connections each subscribed to one queue (``subscription_create`` without a
  subscriber), then ``--fanout-messages`` messages posted over HTTP in batches of 10,
  one request after another; the figure is pushes received per second, from the first
  post to the last push.
* ``latency``: for each of ``--stores``, two servers (nodes A and B) on one store;
  ``--latency-subscribers`` connections on B subscribed to one queue, messages posted
  one per request over HTTP to A on a fixed schedule at ``--rate`` pushes per second
  (posts per second = rate / subscribers) for ``--warmup`` seconds (not counted), then
  ``--seconds``; each body carries its post time, and each push frame's latency is its
  arrival minus that time (one clock: one machine). Figures: p50, p99 and max, pushes
  received, the posts' own latency, and the CPU used by the client and each node.

Stores: a private redis-server with AOF (``appendfsync always``), a PostgreSQL schema
of its own (see ``stores.py``). The servers allow ``--subscribers`` subscriptions per
queue (``[transport] max_subscriptions_per_queue``, 50 by default).

Run:  .venv/bin/python benchmarks/bench_ws.py [--phases idle,fanout,latency]
      [--idle 10000] [--subscribers 100] [--fanout-messages 2000]
      [--fanout-stores redis,postgres] [--stores redis,postgres] [--rate 1000]
      [--seconds 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from loadgen import percentile
from servers import BENCH_DIR, tidings_server
from stores import BenchStore, bench_store
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

sys.path.insert(0, str(BENCH_DIR.parent))

PROJECT = "bench-ws"


def frame(action: str, body: dict[str, Any]) -> str:
    headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": PROJECT}
    return json.dumps({"action": action, "headers": headers, "body": body})


async def call(ws: ClientConnection, action: str, body: dict[str, Any]) -> dict[str, Any]:
    """Send one request frame and return its response (push frames have no ``request``)."""
    await ws.send(frame(action, body))
    while True:
        answer = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if "request" in answer:
            result: dict[str, Any] = answer
            return result


def subscribers_env(subscribers: int) -> dict[str, str]:
    """Server settings for that many subscriptions to one queue (50 by default)."""
    return {"TIDINGS_TRANSPORT__MAX_SUBSCRIPTIONS_PER_QUEUE": str(max(50, subscribers + 10))}


def ws_url(http_url: str) -> str:
    return "ws" + http_url.removeprefix("http") + "/"


def process_cpu(pid: int) -> float:
    """CPU seconds used so far by a server and its workers."""
    root = psutil.Process(pid)
    return sum(sum(p.cpu_times()[:2]) for p in [root, *root.children(recursive=True)])


def server_rss(pid: int) -> int:
    root = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])


@contextlib.asynccontextmanager
async def connections(url: str, count: int, parallel: int = 200) -> AsyncIterator[list[Any]]:
    opened: list[Any] = []
    gate = asyncio.Semaphore(parallel)

    async def open_one() -> None:
        async with gate:
            opened.append(await connect(url, open_timeout=60, ping_interval=None,
                                        max_size=2**22))

    try:
        await asyncio.gather(*(open_one() for _ in range(count)))
        yield opened
    finally:
        await asyncio.gather(*(c.close() for c in opened), return_exceptions=True)


async def idle_phase(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    env = {
        "TIDINGS_SERVER__MAX_CONNECTIONS": str(args.idle + 100),
        "TIDINGS_WEBSOCKET__MAX_CONNECTIONS": str(args.idle + 100),
    }
    server = tidings_server(data_dir / "idle", 1, f"sqlite:///{data_dir / 'idle.db'}")
    server.env.update(env)
    server.start()
    try:
        async with connections(ws_url(server.url), 10) as warm:
            await call(warm[0], "ping_node", {})
        before = server_rss(server.pid)
        started = time.perf_counter()
        async with connections(ws_url(server.url), args.idle) as held:
            opened_in = time.perf_counter() - started
            await asyncio.sleep(1.0)  # let the worker settle before reading its RSS
            after = server_rss(server.pid)
            step = max(1, len(held) // args.idle_check)
            sample = held[::step]
            answers = await asyncio.gather(
                *(call(ws, "ping_node", {}) for ws in sample), return_exceptions=True
            )
            alive = sum(
                1 for a in answers if isinstance(a, dict) and a["headers"]["status"] == 204
            )
        return {
            "connections": len(held),
            "open_seconds": round(opened_in, 1),
            "rss_before_mib": round(before / 2**20, 1),
            "rss_after_mib": round(after / 2**20, 1),
            "kib_per_connection": round((after - before) / len(held) / 1024, 1),
            "sample_alive": f"{alive}/{len(sample)}",
        }
    finally:
        server.stop()


async def subscribe_all(conns: list[Any], queue: str) -> None:
    answers = await asyncio.gather(
        *(call(ws, "subscription_create", {"queue_name": queue, "ttl": 3600}) for ws in conns)
    )
    bad = [a for a in answers if a["headers"]["status"] != 201]
    if bad:
        raise RuntimeError(f"subscription_create failed: {bad[0]}")


class Frames:
    """Push frames as they arrive on many connections: arrival time and raw frame (decoded
    afterwards, so the reader costs the client little), and connections that closed."""

    def __init__(self) -> None:
        self.arrived: list[tuple[float, str | bytes]] = []
        self.closed = 0
        self._readers: list[asyncio.Task[None]] = []

    def start(self, conns: list[ClientConnection]) -> None:
        self._readers = [asyncio.create_task(self._read(ws)) for ws in conns]

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                self.arrived.append((time.time(), raw))
        except ConnectionClosed:
            pass
        self.closed += 1

    async def wait_for(self, expected: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while (
            len(self.arrived) < expected
            and self.closed < len(self._readers)
            and time.monotonic() < deadline
        ):
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)

    def documents(self) -> list[tuple[float, dict[str, Any]]]:
        return [(at, json.loads(raw)) for at, raw in self.arrived]


async def fanout_phase(args: argparse.Namespace, kind: str, data_dir: Path) -> dict[str, Any]:
    async with store_of(kind, data_dir / f"fanout-{kind}-store") as store:
        server = tidings_server(data_dir / f"fanout-{kind}", 1, store.uri)
        server.env.update(subscribers_env(args.subscribers))
        server.start()
        try:
            queue = "fanout"
            headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": PROJECT}
            async with (
                connections(ws_url(server.url), args.subscribers) as conns,
                aiohttp.ClientSession(server.url, headers=headers) as http,
            ):
                await subscribe_all(conns, queue)
                frames = Frames()
                frames.start(conns)
                expected = args.fanout_messages * len(conns)
                started, cpu = time.time(), (time.process_time(), process_cpu(server.pid))
                for first in range(0, args.fanout_messages, 10):
                    batch = [{"ttl": 300, "body": {"n": first + i}} for i in range(10)]
                    async with http.post(f"/v2/queues/{queue}/messages",
                                         json={"messages": batch}) as answer:
                        answer.raise_for_status()
                posted = time.time()
                await frames.wait_for(expected, 120)
                elapsed = time.time() - started
                client_cpu = (time.process_time() - cpu[0]) / elapsed
                server_cpu = (process_cpu(server.pid) - cpu[1]) / elapsed
                await frames.stop()
            last = max((at for at, _ in frames.arrived), default=started)
            return {
                "store": kind,
                "subscribers": len(conns),
                "messages": args.fanout_messages,
                "pushes_expected": expected,
                "pushes_received": len(frames.arrived),
                "connections_closed": frames.closed,
                "post_seconds": round(posted - started, 2),
                "pushes_per_second": round(len(frames.arrived) / max(last - started, 1e-9)),
                "cpu": f"client {client_cpu:.0%}, server {server_cpu:.0%}",
            }
        finally:
            server.stop()


async def latency_phase(args: argparse.Namespace, kind: str, data_dir: Path) -> dict[str, Any]:
    async with store_of(kind, data_dir / f"{kind}-store") as store:
        node_a = tidings_server(data_dir / f"{kind}-a", 1, store.uri)
        node_b = tidings_server(data_dir / f"{kind}-b", 1, store.uri)
        try:
            for node in (node_a, node_b):
                node.env.update(subscribers_env(args.latency_subscribers))
                node.start()
            queue = f"latency-{kind}"
            headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": PROJECT}
            posts_per_second = args.rate / args.latency_subscribers
            total_posts = int(posts_per_second * args.seconds)
            async with (
                connections(ws_url(node_b.url), args.latency_subscribers) as conns,
                aiohttp.ClientSession(node_a.url, headers=headers,
                                      connector=aiohttp.TCPConnector(limit=50)) as http,
            ):
                await subscribe_all(conns, queue)
                frames = Frames()
                frames.start(conns)

                warmup = int(posts_per_second * args.warmup)
                post_ms: list[float] = []

                async def post(n: int) -> None:
                    sent = time.time()
                    body = {"n": n, "sent": sent, "warmup": n < warmup}
                    document = {"messages": [{"ttl": 300, "body": body}]}
                    async with http.post(f"/v2/queues/{queue}/messages",
                                         json=document) as answer:
                        answer.raise_for_status()
                    if n >= warmup:
                        post_ms.append((time.time() - sent) * 1000)

                started, cpu = time.monotonic(), time.process_time()
                servers_cpu = [process_cpu(node.pid) for node in (node_a, node_b)]
                posts = []
                for n in range(warmup + total_posts):
                    due = started + n / posts_per_second
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                    posts.append(asyncio.create_task(post(n)))
                await asyncio.gather(*posts)
                achieved = (warmup + total_posts) / (time.monotonic() - started)
                expected = total_posts * len(conns)
                await frames.wait_for(expected + warmup * len(conns), 30)
                await frames.stop()
                elapsed = time.monotonic() - started
                client_cpu = (time.process_time() - cpu) / elapsed
                servers_cpu = [
                    (process_cpu(node.pid) - before) / elapsed
                    for node, before in zip((node_a, node_b), servers_cpu, strict=True)
                ]
            latencies = [
                (at - doc["body"]["sent"]) * 1000
                for at, doc in frames.documents()
                if isinstance(doc.get("body"), dict) and doc["body"].get("warmup") is False
            ]
            return {
                "store": kind,
                "subscribers_on_b": args.latency_subscribers,
                "target_pushes_per_second": args.rate,
                "achieved_pushes_per_second": round(achieved * len(conns)),
                "pushes_expected": expected,
                "pushes_received": len(latencies),
                "connections_closed": frames.closed,
                "p50_ms": round(statistics.median(latencies), 2) if latencies else None,
                "p99_ms": round(percentile(sorted(latencies), 0.99), 2),
                "max_ms": round(max(latencies), 2) if latencies else None,
                "post_p50_ms": round(statistics.median(post_ms), 2),
                "post_p99_ms": round(percentile(sorted(post_ms), 0.99), 2),
                "cpu": f"client {client_cpu:.0%}, A {servers_cpu[0]:.0%}, B {servers_cpu[1]:.0%}",
            }
        finally:
            node_a.stop()
            node_b.stop()


@contextlib.asynccontextmanager
async def store_of(kind: str, data_dir: Path) -> AsyncIterator[BenchStore]:
    """``bench_store`` from async code: its clean-up runs its own event loop (a thread)."""
    manager = bench_store(kind, data_dir)
    store = await asyncio.to_thread(manager.__enter__)
    try:
        yield store
    finally:
        await asyncio.to_thread(manager.__exit__, None, None, None)


def raise_descriptor_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phases", default="idle,fanout,latency")
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--idle-check", type=int, default=200)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--fanout-messages", type=int, default=2000)
    parser.add_argument("--fanout-stores", default="redis,postgres")
    parser.add_argument("--stores", default="redis,postgres")
    parser.add_argument("--latency-subscribers", type=int, default=10)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="seconds of posts at the rate before the measured ones")
    parser.add_argument("--json", help="also write the figures to this file")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    phases = set(args.phases.split(","))
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-ws-") as tmp:
        data_dir = Path(tmp)
        if "idle" in phases:
            results["idle"] = await idle_phase(args, data_dir)
            print("idle:", json.dumps(results["idle"]), flush=True)
        if "fanout" in phases:
            results["fanout"] = []
            for kind in args.fanout_stores.split(","):
                row = await fanout_phase(args, kind, data_dir)
                results["fanout"].append(row)
                print("fanout:", json.dumps(row), flush=True)
        if "latency" in phases:
            results["latency"] = []
            for kind in args.stores.split(","):
                row = await latency_phase(args, kind, data_dir)
                results["latency"].append(row)
                print("latency:", json.dumps(row), flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_descriptor_limit()
    results = asyncio.run(run(args))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
