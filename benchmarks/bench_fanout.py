"""Fan-out benchmark: what one post to a queue with many subscriptions costs the store.

Starts ``tidings serve`` over a fresh store for each of ``--stores`` (as
``bench_core.py``), makes ``--subscriptions`` webhook subscriptions on one queue (to a
closed port on 127.0.0.2, so deliveries fail fast and nothing is received), then times
``--posts`` posts of ``--messages`` messages of ``--body`` bytes each, one after another,
and reports each post's latency and how much the store grew (``stores.Footprint``).
Every post owes subscriptions x messages notifications; the figure to watch is the
post latency, which is time the store's writer is held (SQLite has one).

Run:  .venv/bin/python benchmarks/bench_fanout.py [--stores sqlite,redis,postgres]
      [--subscriptions 50] [--messages 100] [--body 2000] [--posts 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from stores import STORES, bench_store

from tests.server import TidingsServer

PROJECT = "bench-fanout"
QUEUE = "f"


def run_store(kind: str, args: argparse.Namespace, root: Path) -> None:
    with bench_store(kind, root / kind) as store:
        server = TidingsServer(
            root / kind / "server",
            store_uri=store.uri,
            env={"TIDINGS_NOTIFICATION__SUBSCRIBER_DENY_NETWORKS": "[]"},
        ).start()
        try:
            headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": PROJECT}
            with httpx.Client(base_url=server.url, headers=headers, timeout=60.0) as client:
                for n in range(args.subscriptions):
                    reply = client.post(
                        f"/v2/queues/{QUEUE}/subscriptions",
                        json={"subscriber": f"http://127.0.0.2:9/{n}", "ttl": 3600},
                    )
                    reply.raise_for_status()
                store.mark_baseline()
                body = {"messages": [{"body": "x" * args.body}] * args.messages}
                took = []
                for _ in range(args.posts):
                    start = time.perf_counter()
                    client.post(f"/v2/queues/{QUEUE}/messages", json=body).raise_for_status()
                    took.append((time.perf_counter() - start) * 1000)
                footprint = store.footprint(args.posts * args.messages)
        finally:
            server.stop()
    owed = args.subscriptions * args.messages
    print(
        f"{kind:9} {args.posts} posts x {args.messages} msgs x {args.body} B to "
        f"{args.subscriptions} subs ({owed} deliveries each): post ms "
        f"median {statistics.median(took):.0f}, max {max(took):.0f} "
        f"[{', '.join(f'{t:.0f}' for t in took)}]; store grew "
        f"{footprint.bytes_total / 1e6:.1f} MB ({footprint.detail})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default=",".join(STORES))
    parser.add_argument("--subscriptions", type=int, default=50)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--body", type=int, default=2000)
    parser.add_argument("--posts", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    try:
        for kind in args.stores.split(","):
            run_store(kind.strip(), args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
