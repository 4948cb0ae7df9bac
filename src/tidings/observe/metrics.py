"""Prometheus metrics: what each worker process counts, and the text a scrape returns.

Off by default (``[metrics] enabled``): then every hook below returns after one check
of a module flag, and nothing imports ``prometheus_client``.

On, the hooks add to plain tallies of this process (a dict lookup and an addition, well
under a microsecond), which ``flush`` hands to ``prometheus_client`` every
``FLUSH_INTERVAL`` seconds, before each scrape this process answers, and at shutdown.
Its own ``inc`` and ``observe`` cost 1-2.5 µs each in multiprocess mode (a lock, a
``getpid`` and a write to a memory-mapped file), several per request: batching keeps
the extra CPU of a post well under 5%. The price is that a scrape may miss what other
workers counted during their last ``FLUSH_INTERVAL``.

Several workers: ``tidings serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a private
directory before anything imports ``prometheus_client`` (it picks its value class at
import time); each worker writes its values there, and a scrape, answered by whichever
worker, adds up every process's files (``prometheus_client.multiprocess``). Gauges are
``livesum``: a worker that stopped (``stop``, or found dead by a scrape) no longer
counts. Without that variable (an ASGI server run by hand) the counts are this
process's only.

The metrics (``tidings_`` prefix):

* ``requests_total`` and ``request_duration_seconds`` (histogram): ``operation`` (the
  API action, ``unknown`` when nothing was routed), ``transport`` (``http``,
  ``websocket``, or ``sqs`` with the SQS operation's name), ``status`` (``2xx``,
  ``4xx``, ``5xx``, ...).
* ``messages_posted_total``, ``messages_claimed_total``, ``messages_deleted_total``,
  ``messages_expired_total``, ``messages_dead_lettered_total``: see each hook for what
  it counts exactly.
* ``deliveries_total``: ``scheme`` (``http``, ``https``, ``mailto``, ``websocket``,
  ``other``) and ``outcome`` (``delivered``, ``retried``, ``failed``).
* ``longpoll_waiters``, ``websocket_connections`` (gauges).
* ``store_operation_duration_seconds`` (histogram) and ``store_errors_total``: ``store``
  (the driver: ``sqlite``, ``redis``, ``postgres``), ``pool`` (see ``observe.stores``)
  and ``operation`` (the store call, e.g. ``messages.post``).
* ``queue_messages`` and ``queue_oldest_message_age_seconds``: opt-in per project
  (``observe.queue_gauges``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from bisect import bisect_left
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tidings.config import MetricsSettings
    from tidings.ops.context import Services

log = logging.getLogger("tidings.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The directories ``tidings serve`` makes: this prefix, its pid, "-", a random part.
DIRECTORY_PREFIX = "tidings-metrics-"
# The Prometheus text format every scraper reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds between two hand-overs of a worker's tallies to the shared files.
FLUSH_INTERVAL = 1.0
# Few buckets: each is a series per label set, in every worker's file and every scrape.
REQUEST_BUCKETS = (0.0025, 0.01, 0.025, 0.1, 0.5, 2.5, 10.0)
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.01, 0.05, 0.25, 1.0)
# Label sets of the request metrics per process, at most; later ones count as "other"
# (operations are API actions, so this is only reached by a bug).
MAX_REQUEST_SERIES = 2000

DELIVERED, RETRIED, FAILED = "delivered", "retried", "failed"

_enabled = False


class Tally:
    """A counter's or a gauge's change not yet handed to prometheus_client."""

    __slots__ = ("child", "pending")

    def __init__(self) -> None:
        self.pending: float = 0
        self.child: Any = None  # the labelled prometheus_client child, once enabled

    def flush(self) -> None:
        if self.pending and self.child is not None:
            amount, self.pending = self.pending, 0
            self.child.inc(amount)


class Timings:
    """A histogram child's observations not yet handed over, and a counter of the same
    events (``requests_total``, ``store_errors_total``: the latter counts errors only)."""

    __slots__ = ("_bounds", "_counts", "_histogram", "_sum", "count", "errors")

    def __init__(self, bounds: tuple[float, ...], histogram: Any, count: Any, errors: Any):
        self._bounds = bounds
        self._histogram = histogram
        self._counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf)
        self._sum = 0.0
        self.count = Tally()
        self.count.child = count
        self.errors = Tally()
        self.errors.child = errors

    def observe(self, seconds: float) -> None:
        # bisect_left: the first bucket whose bound is >= seconds (Prometheus' "le").
        self._counts[bisect_left(self._bounds, seconds)] += 1
        self._sum += seconds

    def flush(self) -> None:
        counts = self._counts
        if any(counts):
            # The child's per-bucket values (prometheus_client adds them up at collection);
            # observe() cannot take a batch.
            buckets = self._histogram._buckets
            events = 0
            for index, count in enumerate(counts):
                if count:
                    buckets[index].inc(count)
                    counts[index] = 0
                    events += count
            amount, self._sum = self._sum, 0.0
            self._histogram._sum.inc(amount)
            if self.count.child is not None:
                self.count.pending += events
        self.count.flush()
        self.errors.flush()


_posted, _claimed, _deleted, _expired, _dead_lettered = (Tally() for _ in range(5))
_longpoll_waiters, _websocket_connections = Tally(), Tally()
_deliveries: dict[tuple[str, str], Tally] = {}
_requests: dict[tuple[str, str, int], Timings] = {}
_stores: dict[tuple[str, str, str], Timings] = {}
_flushed: list[Tally | Timings] = []  # all of them, for flush()
_families: dict[str, Any] = {}


# -- hooks (each a flag check when metrics are off) ------------------------------------


def request_done(transport: str, operation: str, status: int, seconds: float) -> None:
    """One finished HTTP request or WebSocket action."""
    if not _enabled:
        return
    timings = _requests.get((transport, operation, status))
    if timings is None:
        timings = _request_timings(transport, operation, status)
    timings.observe(seconds)


def messages_posted(count: int) -> None:
    """Messages stored by a post (every message of the batch)."""
    if _enabled:
        _posted.pending += count


def messages_claimed(count: int) -> None:
    """Messages handed out by a claim (a claim whose caller left meanwhile, and is
    released again, does not count)."""
    if _enabled:
        _claimed.pending += count


def messages_deleted(count: int) -> None:
    """Messages deleted by clients: popped ones, and the ids of successful deletes (an
    id that was already gone counts too: stores do not tell)."""
    if _enabled:
        _deleted.pending += count


def messages_expired(count: int) -> None:
    """What a store's garbage collection removed, as it reports it. Approximate: the
    figure is rows, mostly expired messages, but also lapsed claims and subscriptions
    and what deleted or purged queues left behind (PostgreSQL: old relay rows too);
    expired messages that claims and listings settle on their way are not in it."""
    if _enabled:
        _expired.pending += count


def messages_dead_lettered(count: int) -> None:
    """Messages a claim moved to a dead-letter queue (counted once, by the store that
    moved them; pooled mode's forwarding from a shadow queue is not counted again)."""
    if _enabled:
        _dead_lettered.pending += count


def delivery_done(scheme: str, outcome: str) -> None:
    """One notification delivery: ``delivered``, ``retried`` or ``failed``."""
    if not _enabled:
        return
    tally = _deliveries.get((scheme, outcome))
    if tally is None:
        tally = _deliveries[(scheme, outcome)] = _new_tally(
            _families["deliveries"].labels(scheme, outcome)
        )
    tally.pending += 1


def longpoll_waiters_changed(delta: int) -> None:
    """A long-polling request started (+1) or ended (-1) waiting."""
    if _enabled:
        _longpoll_waiters.pending += delta


def websocket_connections_changed(delta: int) -> None:
    """A WebSocket connection opened (+1) or closed (-1)."""
    if _enabled:
        _websocket_connections.pending += delta


def store_timings(store: str, pool: str, operation: str) -> Timings:
    """The tallies of one store call (``observe.stores`` holds them per method)."""
    key = (store, pool, operation)
    found = _stores.get(key)
    if found is None:
        found = _stores[key] = Timings(
            STORE_BUCKETS,
            _families["store_seconds"].labels(store, pool, operation),
            None,
            _families["store_errors"].labels(store, pool, operation),
        )
        _flushed.append(found)
    return found


def _request_timings(transport: str, operation: str, status: int) -> Timings:
    shown = operation if len(_requests) < MAX_REQUEST_SERIES else "other"
    labels = (shown, transport, f"{status // 100}xx")
    found = Timings(
        REQUEST_BUCKETS,
        _families["request_seconds"].labels(*labels),
        _families["requests"].labels(*labels),
        None,
    )
    # Statuses of one class share the children; each gets its own tallies (flushed apart).
    _requests[(transport, operation, status)] = found
    _flushed.append(found)
    return found


def _new_tally(child: Any) -> Tally:
    tally = Tally()
    tally.child = child
    _flushed.append(tally)
    return tally


# -- lifecycle ---------------------------------------------------------------------------


def enabled() -> bool:
    return _enabled


def multiprocess() -> bool:
    """Whether values go to the shared directory (several workers add up)."""
    return bool(os.environ.get(MULTIPROC_ENV))


def enable(settings: MetricsSettings) -> None:
    """Create the metrics and turn the hooks on (once per process)."""
    global _enabled
    if _enabled:
        return
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    if not multiprocess():
        log.warning(
            "metrics: %s is not set, so /metrics shows this process's counts only "
            "(tidings serve sets it for its workers)",
            MULTIPROC_ENV,
        )
    # Multiprocess: registered nowhere (a scrape reads the files); else a registry of ours.
    registry = None if multiprocess() else CollectorRegistry()
    _families["registry"] = registry
    request_labels = ("operation", "transport", "status")
    store_labels = ("store", "pool", "operation")
    _families["requests"] = Counter(
        "tidings_requests", "HTTP requests and WebSocket actions answered.",
        request_labels, registry=registry,
    )  # fmt: skip
    _families["request_seconds"] = Histogram(
        "tidings_request_duration_seconds", "Time to answer a request or action.",
        request_labels, buckets=REQUEST_BUCKETS, registry=registry,
    )  # fmt: skip
    for name, tally, text in (
        ("posted", _posted, "Messages stored by posts."),
        ("claimed", _claimed, "Messages handed out by claims."),
        ("deleted", _deleted, "Messages deleted by clients (deletes and pops)."),
        ("expired", _expired, "Rows removed by garbage collection (mostly expired messages)."),
        ("dead_lettered", _dead_lettered, "Messages moved to a dead-letter queue."),
    ):
        tally.child = Counter(f"tidings_messages_{name}", text, registry=registry)
        _flushed.append(tally)
    _families["deliveries"] = Counter(
        "tidings_deliveries", "Notification deliveries by subscriber scheme and outcome.",
        ("scheme", "outcome"), registry=registry,
    )  # fmt: skip
    for name, tally, text in (
        ("longpoll_waiters", _longpoll_waiters, "Requests waiting for messages (long poll)."),
        ("websocket_connections", _websocket_connections, "Open WebSocket connections."),
    ):
        tally.child = Gauge(f"tidings_{name}", text, registry=registry, multiprocess_mode="livesum")
        _flushed.append(tally)
    _families["store_seconds"] = Histogram(
        "tidings_store_operation_duration_seconds", "Time of each call to a message store.",
        store_labels, buckets=STORE_BUCKETS, registry=registry,
    )  # fmt: skip
    _families["store_errors"] = Counter(
        "tidings_store_errors", "Store calls that failed (the store was unavailable).",
        store_labels, registry=registry,
    )  # fmt: skip
    _enabled = True


def flush() -> None:
    """Hand this process's tallies to prometheus_client (its files, when shared)."""
    for item in _flushed:
        item.flush()


async def flush_forever() -> None:
    """Flush every FLUSH_INTERVAL seconds (a worker's background task)."""
    while True:
        await asyncio.sleep(FLUSH_INTERVAL)
        try:
            flush()
        except Exception:  # a full disk, say: the counts wait for the next try
            log.exception("metrics: cannot write this worker's counts")


def stop() -> None:
    """This worker is shutting down: its last counts go out, its gauges stop counting."""
    if not _enabled:
        return
    with contextlib.suppress(Exception):
        flush()
    if multiprocess():
        from prometheus_client import multiprocess as shared

        shared.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
        directory = os.environ[MULTIPROC_ENV]
        if os.path.basename(directory).startswith(f"{DIRECTORY_PREFIX}{os.getpid()}-"):
            # A one-worker ``tidings serve`` is its own worker, and uvicorn ends it by
            # raising SIGTERM again, which skips the exit hook that removes it.
            shutil.rmtree(directory, ignore_errors=True)


async def render(svc: Services) -> bytes:
    """The text a scrape gets: every process's metrics added up, then this worker's
    per-queue gauges (``observe.queue_gauges``)."""
    from tidings.observe import queue_gauges

    flush()
    # Reading every worker's files is file I/O: off the event loop.
    text = await asyncio.to_thread(_collect)
    return text + await queue_gauges.render(svc)


def _collect() -> bytes:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = _families.get("registry")
    if registry is None:
        from prometheus_client import multiprocess as shared

        directory = os.environ[MULTIPROC_ENV]
        _forget_dead_processes(directory)
        registry = CollectorRegistry()
        shared.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return bytes(generate_latest(registry))


def _forget_dead_processes(directory: str) -> None:
    """Gauges of workers that died without shutting down (killed, crashed) stop counting."""
    from prometheus_client import multiprocess as shared

    for name in os.listdir(directory):
        # gauge_livesum_<pid>.db
        if not (name.startswith("gauge_live") and name.endswith(".db")):
            continue
        pid = name[:-3].rpartition("_")[2]
        if pid.isdigit() and not _alive(int(pid)):
            shared.mark_process_dead(int(pid), directory)  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
