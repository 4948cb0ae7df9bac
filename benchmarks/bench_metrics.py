"""What Prometheus metrics cost a post: server CPU per single-message post, metrics off
against metrics on (issue 13: the extra must stay below 5%).

Two ``tidings serve`` (2 workers each, ``--workers``), identical but for ``[metrics]
enabled``, each over a store of its own of the same kind (``--store``: a private
redis-server with AOF by default, or a fresh SQLite file, or a PostgreSQL schema; see
stores.py), both running the whole time. The same load, single-message posts at
concurrency ``--concurrency`` from the in-process client of loadgen.py, goes to one
then the other, alternately in ABBA order over ``--rounds`` rounds, after a warm-up each
time. Server CPU is the user+system time of the loaded server's process tree (parent
and workers; not the store) over the measured window, divided by the posts answered.
After each round the metered server is scraped: its posted count must cover the posts.

Run:  .venv/bin/python benchmarks/bench_metrics.py [--store redis|sqlite|postgres]
      [--rounds 4] [--duration 10] [--warmup 2] [--concurrency 32] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from loadgen import message_payload, post_step, run_phase
from servers import TreeSampler
from stores import bench_store

from tests.server import TidingsServer, client_headers

COMMON = {"TIDINGS_ADMIN_MODE": "true", "TIDINGS_SERVER__LOG_LEVEL": "warning"}
SETTINGS = {"off": COMMON, "on": {**COMMON, "TIDINGS_METRICS__ENABLED": "true"}}
TARGET_EXTRA = 0.05


@dataclass
class Window:
    variant: str
    round: int
    posts: int
    errors: int
    seconds: float
    server_cpu_s: float

    @property
    def cpu_us_per_post(self) -> float:
        return 1e6 * self.server_cpu_s / self.posts if self.posts else 0.0


def measure(server: TidingsServer, variant: str, round_: int,
            args: argparse.Namespace) -> Window:
    sampler = TreeSampler(server.pid)
    queue_url = f"{server.url}/v2/queues/bench-{uuid.uuid4().hex[:8]}/messages"
    headers = {**client_headers("bench"), "Content-Type": "application/json"}
    marks: dict[bool, float] = {}

    def on_window(opening: bool) -> None:
        marks[opening] = sampler.cpu_seconds()

    done = asyncio.run(run_phase(
        headers, args.concurrency, args.duration, 100_000_000,
        post_step(queue_url, message_payload(1), 1), warmup=args.warmup, on_window=on_window,
    ))  # fmt: skip
    rec = done.recorder
    return Window(variant=variant, round=round_, posts=rec.messages,
                  errors=sum(rec.errors.values()), seconds=done.elapsed,
                  server_cpu_s=marks[False] - marks[True])  # fmt: skip


def posted_count(server: TidingsServer) -> float:
    resp = httpx.get(server.url + "/metrics", headers={**client_headers(), "X-Roles": "admin"})
    resp.raise_for_status()
    for line in resp.text.splitlines():
        if line.startswith("tidings_messages_posted_total "):
            return float(line.split()[1])
    raise RuntimeError("no tidings_messages_posted_total in the scrape")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="redis", choices=("redis", "sqlite", "postgres"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--json", help="also write the figures here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    windows: list[Window] = []
    posted_on = 0
    with tempfile.TemporaryDirectory(prefix="tidings-bench-metrics-") as scratch, \
            ExitStack() as stack:  # fmt: skip
        servers: dict[str, TidingsServer] = {}
        for variant, env in SETTINGS.items():
            store = stack.enter_context(bench_store(args.store, Path(scratch) / variant))
            server = TidingsServer(store.data_dir, env=env, workers=args.workers,
                                   store_uri=store.uri)  # fmt: skip
            stack.callback(server.stop)
            servers[variant] = server.start()
        for round_ in range(args.rounds):
            order = ("off", "on") if round_ % 2 == 0 else ("on", "off")  # ABBA
            for variant in order:
                window = measure(servers[variant], variant, round_, args)
                windows.append(window)
                if variant == "on":
                    posted_on += window.posts
                print(f"round {round_ + 1} metrics {variant:<3}  {window.posts:7,} posts "
                      f"{window.posts / window.seconds:7,.0f}/s  server CPU "
                      f"{window.cpu_us_per_post:6.1f} µs/post  errors {window.errors}",
                      file=sys.stderr, flush=True)  # fmt: skip
            if "on" in order:
                # Counted with the warm-ups too: at least the measured posts.
                time.sleep(1.5)  # the workers hand their counts over every second
                counted = posted_count(servers["on"])
                if counted < posted_on:
                    raise SystemExit(f"the metered server counted {counted} of {posted_on}")
    report(windows, args)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"args": vars(args), "windows": [asdict(w) for w in windows]}, indent=2))
    return 0


def report(windows: list[Window], args: argparse.Namespace) -> None:
    def per_post(variant: str) -> list[float]:
        return [w.cpu_us_per_post for w in windows if w.variant == variant]

    off, on = per_post("off"), per_post("on")
    pairs = [b / a for a, b in zip(off, on, strict=True) if a]
    ratio = statistics.mean(on) / statistics.mean(off)
    print(f"\nServer CPU per single-message post, {args.store}, {args.workers} workers, "
          f"concurrency {args.concurrency}, {args.rounds} rounds of {args.duration:g} s (ABBA)")
    print("| metrics | µs/post per round | mean µs/post | CPU ms/post |")
    print("|---|---|---|---|")
    for name, values in (("off", off), ("on", on)):
        rounds = ", ".join(f"{v:.1f}" for v in values)
        mean = statistics.mean(values)
        print(f"| {name} | {rounds} | {mean:.1f} | {mean / 1000:.4f} |")
    print(f"\nratio on/off: {ratio:.3f} (extra {100 * (ratio - 1):+.1f}%; per round "
          f"{', '.join(f'{p:.3f}' for p in pairs)}; median {statistics.median(pairs):.3f}); "
          f"target: extra < {100 * TARGET_EXTRA:.0f}%")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
