"""Long polling: a claim or a listing that waits up to ``wait`` seconds for messages.

The rule, once for every transport. A waiting request tries at once; when that finds
nothing it waits, without touching the store, until the queue's change feed (or a timer
set from ``ChangeFeed.next_ready``, for claims that expire and delays that end) says
messages may be ready, tries again, and so on until it gets messages or its deadline
passes; then it answers what its last try found (Zaqar's empty answer).

Per process, the waiting claims of one queue form a line (first come, first served)
that shares one feed watch, opened before the first try so that nothing posted in
between is missed. A signal wakes only the head of the line; a waiter that got messages
wakes the next head (there may be more), one that got nothing goes back to waiting. One
message thus costs one claim and at most one empty try per process, whatever the number
of waiters (and a claimer that got fewer than it asked for left none: it wakes nobody).
Listings do not take what they see: a signal wakes every waiting listing of
the queue (each may filter differently: echo, markers).

Bounded: ``[transport] max_waiting_requests`` per process (at most half of ``[server]
max_concurrent_requests``, so waiting requests never hold every request slot) and
``max_waiting_requests_per_project``; a request past either is answered at once, as
without ``wait``. A waiter whose caller goes away is cancelled by its transport; a claim
it had just made is released (not left to its TTL).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tidings.config import Settings
from tidings.errors import InvalidParameter, StorageError
from tidings.namespace import split_namespace
from tidings.observe import metrics
from tidings.ops.context import Services
from tidings.storage.feed import ChangeFeed, Watch

log = logging.getLogger("tidings.waiting")

R = TypeVar("R")

# Longest wait a request may ask for, in seconds (the API's contract).
MAX_WAIT = 20.0
# Seconds a line keeps its feed watch after its last waiter left: a consumer that polls
# again at once finds it open (no new subscription, no missed signal in between).
LINGER = 2.0
# A line asks the store when its next claim expires or delay ends (``next_ready``)
# after an empty try that followed a signal, at most once per PROBE_INTERVAL (signals
# meanwhile are covered by one probe at its end), and at least every PROBE_MAX_AGE:
# every waiter wakes that often, so a claim made or shortened after the last probe
# (SQS's visibility timeouts may be any length, and ChangeMessageVisibility shortens
# them without a signal) is seen lapse within PROBE_MAX_AGE, at one store round trip
# per line per PROBE_MAX_AGE.
PROBE_INTERVAL = 0.25
PROBE_MAX_AGE = 5.0
# A timer that fires before the store agrees the message is ready is set again after
# this, doubling up to TIMER_BACKOFF_MAX (clocks and stored timestamps differ slightly).
TIMER_BACKOFF_MIN = 0.05
TIMER_BACKOFF_MAX = 1.0
# The feed watch is waited on in slices this long (a watch has no "forever").
PUMP_SLICE = 3600.0
# After the feed watch failed (pooled mode may re-raise a pool's error), retry after this.
PUMP_RETRY = 1.0


class Kind(enum.Enum):
    CLAIM = "claim"
    LIST = "list"


def check_wait(wait: float | None) -> None:
    """``wait`` is a number of seconds, 0 < wait <= MAX_WAIT (None: do not wait)."""
    if wait is None:
        return
    if not (math.isfinite(wait) and 0 < wait <= MAX_WAIT):
        raise InvalidParameter(
            f'The "wait" parameter is invalid. The value must be a number of seconds '
            f"greater than 0 and at most {MAX_WAIT:g}."
        )


class _Waiter:
    __slots__ = ("woken",)

    def __init__(self) -> None:
        self.woken = asyncio.Event()


class _Line:
    """The waiters of one queue and kind in this process, and their shared feed watch."""

    def __init__(
        self, registry: Waiting, key: tuple[str, str, Kind], watch: Watch
    ) -> None:
        self._registry = registry
        self.key = key
        self.kind = key[2]
        self._watch = watch
        self.waiters: list[_Waiter] = []
        self._loop = asyncio.get_running_loop()
        # Signals (and timer firings) so far, and the count at the last next_ready probe.
        self._generation = 1
        self._probed_generation = 0
        self._probed_at = -math.inf
        self._probe: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._timer_fired_at = -math.inf
        self._backoff = TIMER_BACKOFF_MIN
        self._closer: asyncio.TimerHandle | None = None
        self._pump = self._loop.create_task(self._run_pump(), name="tidings-long-poll")

    # Waiters ---------------------------------------------------------------------------

    def join(self, waiter: _Waiter) -> None:
        if self._closer is not None:
            self._closer.cancel()
            self._closer = None
        self.waiters.append(waiter)

    def leave(self, waiter: _Waiter, *, got_messages: bool, may_be_more: bool) -> None:
        self.waiters.remove(waiter)
        if got_messages:
            self._backoff = TIMER_BACKOFF_MIN
        # A claimer that got all it asked for may have left more; one leaving with a wake
        # it did not use (a signal during its try, its deadline or its caller came first)
        # must not swallow it.
        if self.kind is Kind.CLAIM and (may_be_more or waiter.woken.is_set()):
            self._wake_head()
        if not self.waiters:
            self._closer = self._loop.call_later(LINGER, self._close_if_idle)

    def _wake_head(self) -> None:
        if self.waiters:
            self.waiters[0].woken.set()

    def _ring(self) -> None:
        self._generation += 1
        if self.kind is Kind.CLAIM:
            self._wake_head()
        else:
            for waiter in self.waiters:
                waiter.woken.set()

    # Time-based readiness --------------------------------------------------------------

    def after_empty(self, feed: ChangeFeed, now: Callable[[], float]) -> None:
        """An empty try: learn (once per signal, or when stale) when time makes messages
        ready, and set the timer for it, in the background (one store round trip)."""
        stale = self._loop.time() - self._probed_at >= PROBE_MAX_AGE
        if self._probe is not None or (self._probed_generation == self._generation and not stale):
            return
        self._probe = self._loop.create_task(self._run_probe(feed, now))

    async def _run_probe(self, feed: ChangeFeed, now: Callable[[], float]) -> None:
        project, queue, _ = self.key
        try:
            while self._probed_generation != self._generation or (
                self._loop.time() - self._probed_at >= PROBE_MAX_AGE
            ):
                pause = self._probed_at + PROBE_INTERVAL - self._loop.time()
                if pause > 0:
                    await asyncio.sleep(pause)
                self._probed_generation = self._generation
                self._probed_at = self._loop.time()
                try:
                    ready_at = await feed.next_ready(project, queue, now())
                except Exception as exc:
                    # The waiters still answer at their deadline; a later signal asks again.
                    log.warning("long poll on %r could not read when messages get ready: %s",
                                queue, exc, exc_info=not isinstance(exc, StorageError))
                    return
                if ready_at is not None:
                    self._set_timer(ready_at - now())
        finally:
            self._probe = None

    def _set_timer(self, delay: float) -> None:
        if delay <= 0 and self._loop.time() - self._timer_fired_at < TIMER_BACKOFF_MAX:
            # The timer fired and the store still says "ready now", yet the try found
            # nothing: do not spin on it.
            delay, self._backoff = self._backoff, min(self._backoff * 2, TIMER_BACKOFF_MAX)
        at = self._loop.time() + max(delay, 0.0)
        if self._timer is not None and self._timer_at <= at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_at(at, self._timer_fired)

    def _timer_fired(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        self._timer_fired_at = self._loop.time()
        self._ring()

    # Feed ------------------------------------------------------------------------------

    async def _run_pump(self) -> None:
        while True:
            try:
                signalled = await self._watch.wait(PUMP_SLICE)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("long poll: the change feed failed; waking the waiters")
                self._ring()
                await asyncio.sleep(PUMP_RETRY)
                continue
            if signalled:
                self._backoff = TIMER_BACKOFF_MIN
                self._ring()

    def _close_if_idle(self) -> None:
        self._closer = None
        if not self.waiters:
            self.close()

    def close(self) -> None:
        if self._registry.lines.get(self.key) is self:
            del self._registry.lines[self.key]
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._closer is not None:
            self._closer.cancel()
            self._closer = None
        if self._probe is not None:
            self._probe.cancel()
        self._pump.cancel()
        self._watch.close()


class Waiting:
    """This process's waiting requests: the lines by queue, and the caps."""

    def __init__(self, settings: Settings, feed: ChangeFeed) -> None:
        transport = settings.transport
        self.limit = min(
            transport.max_waiting_requests, settings.server.max_concurrent_requests // 2
        )
        self.limit_per_project = transport.max_waiting_requests_per_project
        self.feed = feed
        self.lines: dict[tuple[str, str, Kind], _Line] = {}
        self.count = 0
        self._by_project: Counter[str] = Counter()
        self.stopping = False

    def admit(self, project: str) -> bool:
        """Take a place for a waiter of ``project`` (as stored), if the caps allow."""
        owner = split_namespace(project)[0]  # a project's topics count as the project
        if (
            self.stopping
            or self.count >= self.limit
            or self._by_project[owner] >= self.limit_per_project
        ):
            return False
        self.count += 1
        self._by_project[owner] += 1
        metrics.longpoll_waiters_changed(1)
        return True

    def release(self, project: str) -> None:
        owner = split_namespace(project)[0]
        self.count -= 1
        metrics.longpoll_waiters_changed(-1)
        self._by_project[owner] -= 1
        if self._by_project[owner] <= 0:
            del self._by_project[owner]

    def stop(self) -> None:
        """The server is stopping: every waiter answers now, and no request waits."""
        self.stopping = True
        for line in self.lines.values():
            for waiter in line.waiters:
                waiter.woken.set()

    def line(self, project: str, queue: str, kind: Kind) -> _Line:
        key = (project, queue, kind)
        found = self.lines.get(key)
        if found is None:
            found = self.lines[key] = _Line(self, key, self.feed.watch(project, queue))
        return found


# One registry per store object (one per process in a server); weak, so that stores
# opened and dropped (tests, tools) take their registries with them.
_registries: weakref.WeakKeyDictionary[object, Waiting] = weakref.WeakKeyDictionary()
# Releases of claims made for callers that went away (kept referenced until done).
_undoing: set[asyncio.Task[None]] = set()


def stop_all() -> None:
    """The process is shutting down: waiting requests answer at once (what they found so
    far) rather than hold the shutdown up to their deadline."""
    for waiting in list(_registries.values()):
        waiting.stop()


def _registry(svc: Services) -> Waiting:
    found = _registries.get(svc.storage)
    if found is None:
        found = _registries[svc.storage] = Waiting(svc.settings, svc.storage.feed)
    return found


async def wait_for(
    svc: Services,
    project: str,
    queue: str,
    kind: Kind,
    wait: float | None,
    attempt: Callable[[], Awaitable[R]],
    found: Callable[[R], bool],
    undo: Callable[[R], Awaitable[None]] | None = None,
    full: Callable[[R], bool] | None = None,
) -> R:
    """Run ``attempt`` until ``found`` says it got something or ``wait`` seconds pass;
    the last result either way (without ``wait``, one attempt). ``undo`` gives back what
    an attempt got for a caller that was cancelled meanwhile (a claim is released).
    ``full`` tells whether a result got all it asked for (so more may be left for the
    next in line); by default any result that ``found`` something."""
    if wait is None:
        return await attempt()
    waiting, clock = _registry(svc), svc.clock
    if not waiting.admit(project):
        log.debug("long poll on %r answered without waiting: %d waiting (the cap)",
                  queue, waiting.count)
        return await attempt()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    waiter = _Waiter()
    line = waiting.line(project, queue, kind)  # the watch opens before the first try
    line.join(waiter)
    got = more = False
    outcome = "cancelled"
    try:
        result = await _try(attempt, found, undo)
        if found(result):
            got, outcome = True, "got messages at once"
            more = full is None or full(result)
            return result
        log.debug("long poll on %r waiting up to %gs (%d waiting)", queue, wait, waiting.count)
        while True:
            line.after_empty(waiting.feed, clock)
            remaining = deadline - loop.time()
            if remaining <= 0:
                outcome = "deadline"
                return result
            try:
                # Wake at least every PROBE_MAX_AGE to let the line re-probe: a claim
                # made or shortened since its last probe (SQS allows any length) may
                # lapse without a signal.
                async with asyncio.timeout(min(remaining, PROBE_MAX_AGE)):
                    await waiter.woken.wait()
            except TimeoutError:
                if loop.time() < deadline:
                    continue
                outcome = "deadline"
                return result
            waiter.woken.clear()
            if waiting.stopping:
                outcome = "server stopping"
                return result
            result = await _try(attempt, found, undo)
            if found(result):
                got, outcome = True, "got messages"
                more = full is None or full(result)
                return result
    finally:
        line.leave(waiter, got_messages=got, may_be_more=more)
        waiting.release(project)
        log.debug("long poll on %r ended: %s (%d waiting)", queue, outcome, waiting.count)


async def _try(
    attempt: Callable[[], Awaitable[R]],
    found: Callable[[R], bool],
    undo: Callable[[R], Awaitable[None]] | None,
) -> R:
    if undo is None:
        return await attempt()
    task = asyncio.ensure_future(attempt())
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        # The caller went away mid-try: whatever the try gets goes back.
        task.add_done_callback(lambda done: _undo_later(done, found, undo))
        raise


def _undo_later(
    done: asyncio.Future[R], found: Callable[[R], bool], undo: Callable[[R], Awaitable[None]]
) -> None:
    if done.cancelled() or done.exception() is not None:
        return
    result = done.result()
    if not found(result):
        return

    async def run() -> None:
        with contextlib.suppress(Exception):
            await undo(result)

    task = asyncio.get_running_loop().create_task(run())
    _undoing.add(task)
    task.add_done_callback(_undoing.discard)
