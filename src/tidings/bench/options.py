"""The options of ``tidings bench``: the argparse definition and one validated, frozen
value that crosses into the worker processes (it is pickled for them)."""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

MAX_WAIT = 20.0  # the long-polling contract: 0 < wait <= 20 seconds


@dataclass(frozen=True, slots=True)
class BenchOptions:
    url: str
    producers: int = 1
    consumers: int = 1
    observers: int = 0
    processes: int = 2
    concurrency: int = 16
    message_size: int = 512
    batch: int = 1
    claim_limit: int = 10
    wait: float | None = None
    duration: float = 10.0
    queues: int = 1
    projects: int = 1
    json: str | None = None
    compare: str | None = None
    quiet: bool = False
    token: str | None = None
    bulk_delete: bool = False
    prefill: int = 0
    producer_rate: float | None = None
    poll_interval: float = 0.0
    message_ttl: int = 3600
    timeout: float = 30.0
    keep: bool = False

    def in_flight(self, role: str) -> int:
        """Requests a role keeps in flight: ``--concurrency``, and at least one per worker."""
        workers = self.workers(role)
        return max(self.concurrency, workers) if workers else 0

    def workers(self, role: str) -> int:
        counts = {"producer": self.producers, "consumer": self.consumers,
                  "observer": self.observers}
        return counts[role]

    def settings(self) -> dict[str, Any]:
        """Every option, for the JSON document (the token is never written out)."""
        found = dataclasses.asdict(self)
        found.pop("url")
        found["token"] = "***" if self.token else None
        return found


ROLES = ("producer", "consumer", "observer")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", help="the server's base URL, e.g. http://127.0.0.1:8888")
    add = parser.add_argument
    add("--producers", type=int, default=1, metavar="P",
        help="producer workers, each with its own Client-ID (default 1; 0 for none)")
    add("--consumers", type=int, default=1, metavar="C",
        help="consumer workers: claim, then delete each claimed message (default 1)")
    add("--observers", type=int, default=0, metavar="O",
        help="observer workers: list messages (default 0)")
    add("--processes", type=int, default=2, metavar="K",
        help="worker processes the workers are spread over (default 2)")
    add("--concurrency", type=int, default=16, metavar="N",
        help="requests in flight per role, spread over its workers and the processes; "
             "at least one per worker (default 16)")
    add("--message-size", type=int, default=512, metavar="BYTES",
        help="approximate size of each message's JSON (default 512)")
    add("--batch", type=int, default=1, metavar="B", help="messages per post (default 1)")
    add("--claim-limit", type=int, default=10, metavar="L",
        help="messages per claim, and per observer listing (default 10)")
    add("--wait", type=float, metavar="SECONDS",
        help=f"long-poll claims and listings (?wait=, 0 < SECONDS <= {MAX_WAIT:g}; Tidings "
             "only); without it consumers poll")
    add("--duration", type=float, default=10.0, metavar="SECONDS",
        help="how long each run lasts (default 10)")
    add("--queues", type=int, default=1, metavar="Q", help="queues per project (default 1)")
    add("--projects", type=int, default=1, metavar="J",
        help="projects (X-Project-ID) the queues are spread over (default 1)")
    add("--json", metavar="PATH", help="write the results as JSON to PATH ('-' for stdout)")
    add("--compare", metavar="URL2",
        help="then run the same load against URL2 and print both side by side")
    add("--quiet", action="store_true", help="no live progress line")
    add("--token", help="send X-Auth-Token with every request")
    add("--bulk-delete", action="store_true",
        help="consumers delete a claim's messages in one request (?ids=) instead of one by one")
    add("--prefill", type=int, default=0, metavar="M",
        help="post M messages to each queue before the run starts (default 0)")
    add("--producer-rate", type=float, metavar="MSGS",
        help="hold all producers together to MSGS messages per second (default: no limit)")
    add("--poll-interval", type=float, default=0.0, metavar="SECONDS",
        help="without --wait, pause this long after an empty claim (default 0)")
    add("--message-ttl", type=int, default=3600, metavar="SECONDS",
        help="TTL of posted messages (default 3600)")
    add("--timeout", type=float, default=30.0, metavar="SECONDS",
        help="per-request timeout, added to --wait (default 30)")
    add("--keep", action="store_true", help="do not delete the queues afterwards")


def _check_url(parser: argparse.ArgumentParser, flag: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        parser.error(f"{flag} must be an http:// or https:// URL with a host, not {url!r}")
    if parts.query or parts.fragment:
        parser.error(f"{flag} must not carry a query or fragment: {url!r}")
    return url.rstrip("/")


def options_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> BenchOptions:
    """Validate; a bad option ends the program with a usage error (exit status 2)."""
    def at_least(flag: str, value: float, low: float) -> None:
        if value < low:
            parser.error(f"{flag} must be at least {low:g}, not {value:g}")

    def positive(flag: str, value: float) -> None:
        if not value > 0:  # NaN too
            parser.error(f"{flag} must be a positive number, not {value:g}")

    for flag in ("producers", "consumers", "observers", "prefill"):
        at_least(f"--{flag}", getattr(args, flag), 0)
    if args.producers + args.consumers + args.observers == 0:
        parser.error("nothing to do: give at least one of --producers, --consumers, --observers")
    for flag in ("processes", "concurrency", "batch", "claim_limit", "queues", "projects",
                 "message_ttl"):
        at_least("--" + flag.replace("_", "-"), getattr(args, flag), 1)
    if args.message_size < 64 or args.message_size > 1 << 20:
        parser.error(f"--message-size must be between 64 and {1 << 20}, not {args.message_size}")
    positive("--duration", args.duration)
    positive("--timeout", args.timeout)
    if args.wait is not None and not 0 < args.wait <= MAX_WAIT:
        parser.error(f"--wait must be more than 0 and at most {MAX_WAIT:g} seconds")
    if args.producer_rate is not None:
        positive("--producer-rate", args.producer_rate)
    at_least("--poll-interval", args.poll_interval, 0)
    url = _check_url(parser, "URL", args.url)
    compare = _check_url(parser, "--compare", args.compare) if args.compare else None
    if args.json and args.json != "-":
        folder = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(folder):
            parser.error(f"--json: no directory {folder!r} to write {args.json!r} in")
    return BenchOptions(
        url=url, producers=args.producers, consumers=args.consumers, observers=args.observers,
        processes=args.processes, concurrency=args.concurrency, message_size=args.message_size,
        batch=args.batch, claim_limit=args.claim_limit, wait=args.wait, duration=args.duration,
        queues=args.queues, projects=args.projects, json=args.json, compare=compare,
        quiet=args.quiet, token=args.token, bulk_delete=args.bulk_delete, prefill=args.prefill,
        producer_rate=args.producer_rate, poll_interval=args.poll_interval,
        message_ttl=args.message_ttl, timeout=args.timeout, keep=args.keep,
    )
