"""Delivers what the outbox owes, off the request path, with bounded, fair concurrency.

Every worker process runs one dispatcher. It takes due deliveries from the store
(leased, so a crashed worker's share is taken again later), sends each through the
sender for the subscriber's scheme, and records the outcome: done, retry at the time
the retry policy says, or failed for good (kept per subscription for operators).

No tenant can hold the slots others need: at most ``max_notifier_workers`` deliveries
are in flight per worker, at most ``max_deliveries_per_project`` of one project (the
store does not even lease more of a project at its share) and at most
``max_deliveries_per_host`` to one subscriber host:port (more are deferred a moment,
without using up a try). Every take counts a try in the store, so a delivery that keeps
crashing its worker goes to the failures list after ``max_delivery_attempts`` like any
other. A slot is held while the delivery is being sent, not while its outcome is
written to the store, so a busy store slows a tenant's deliveries less; outcomes still
being written are bounded too. Nothing here dies of one bad delivery or one bad round:
each is caught, logged, and the loop goes on.

Pushes (a ``BatchSender``'s deliveries: a frame queued to a WebSocket connection, or
relayed through the store to the node holding it) never wait on a subscriber, so they
skip these slots: a round's pushes are sent together and recorded in one ``done_many``
per project, within bounds of their own: ``PUSH_SHARE`` of one project being sent, and
``MAX_PUSHES_IN_FLIGHT`` per worker from their take until their outcome is written. The
store leases every kind at one share, so a project is taken at its push share only once
its takes brought pushes and nothing else (for ``SLOW_MEMORY`` seconds after one brought
a webhook or an email, it is taken at the webhook share): a webhook tenant is not leased
past its slots, and a project owing both kinds is served as before. Webhooks a take
brought past the free slots anyway are deferred like those of a busy host.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

from tidings.config import NotificationSettings
from tidings.encryption import Keyring, UnreadableBody
from tidings.errors import StorageError
from tidings.model import Delivery
from tidings.namespace import TOPIC_NAMESPACE, split_namespace
from tidings.notify import retry
from tidings.notify.destinations import DEFAULT_PORTS, DenyList
from tidings.notify.senders import DeliveryError, EmailSender, Sender, WebhookSender
from tidings.observe import metrics
from tidings.storage.base import FAILURE_PRUNE_CHUNK, Storage
from tidings.storage.fairness import current_tenant

log = logging.getLogger("tidings.notify")

# A delivery to a host at its share is due again after this many seconds.
HOST_BUSY_DELAY = 1.0
# After a round fails unexpectedly, wait this long (doubling up to the cap) before the next.
ERROR_BACKOFF = 0.5
ERROR_BACKOFF_MAX = 30.0
# How often failures past [notification] failure_retention are pruned, and at most how
# many chunks one pass removes (the rest waits for the next pass).
PRUNE_INTERVAL = 60.0
PRUNE_MAX_CHUNKS = 100
# Deliveries sent whose outcome is still being written, per allowed sending slot.
RECORDING_FACTOR = 2
# Pushes taken and not yet recorded per worker, and being sent per project. A push holds
# no subscriber's time, only its message body (up to 256 KiB: 128 MiB at worst for the
# worker) and a share of the store's time, so these bound memory and what one take gives
# one project (what a flooding tenant leaves to others), not slots.
MAX_PUSHES_IN_FLIGHT = 512
PUSH_SHARE = 256
# How long a take bringing a project's webhooks or emails keeps it at the webhook share,
# and one bringing only its pushes at the push share; projects remembered at most. (A
# project wrongly remembered costs little: pushes taken at the webhook share for one
# round, or webhooks past the free slots deferred once, without using up a try.)
SLOW_MEMORY = 60.0
PUSH_MEMORY = 300.0
MAX_REMEMBERED = 2000
# Deliveries marked done by one store call at most.
DONE_CHUNK = 256


@runtime_checkable
class BatchSender(Sender, Protocol):
    """A sender whose sends never wait on a subscriber (a frame queued to a connection,
    or relayed through the store): its deliveries skip the webhook slots and are sent
    and recorded in batches."""

    async def send_batch(self, deliveries: Sequence[Delivery]) -> list[DeliveryError | None]:
        """Send each; their outcomes in the same order (None: sent, or nothing to send)."""
        ...


class Doorbell:
    """Wakes the dispatcher early: new deliveries are owed, or a slot came free."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def ring(self) -> None:
        self._event.set()

    async def wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._event.wait()
        self._event.clear()


def host_of(subscriber: str) -> str:
    """The host a delivery occupies: ``host:port`` of a webhook, the domain of a mailbox,
    the connection itself for a WebSocket push (so one slow reader does not hold the
    slots of every other connection on its node)."""
    parts = urlsplit(subscriber)
    if parts.scheme == "websocket":
        return subscriber
    if parts.scheme == "mailto":
        return "mailto:" + parts.path.rpartition("@")[2].lower()
    try:
        port = parts.port or DEFAULT_PORTS.get(parts.scheme, 0)
    except ValueError:  # a port past 65535: the sender refuses it
        port = 0
    return f"{(parts.hostname or '').lower()}:{port}"


class _Slot:
    """A sending slot of one project and one host, given back once (send done, or task over)."""

    def __init__(self, dispatcher: Dispatcher, project: str, host: str) -> None:
        self._dispatcher = dispatcher
        self.project = project
        self.host = host
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._dispatcher._give_back(self)


class _Sending:
    """A batch of pushes' hold on its projects' push shares, given back once."""

    def __init__(self, dispatcher: Dispatcher, projects: list[str]) -> None:
        self._dispatcher = dispatcher
        self.projects = projects
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._dispatcher._pushes_sent(self)


class Dispatcher:
    def __init__(
        self,
        storage: Storage,
        settings: NotificationSettings,
        doorbell: Doorbell,
        clock: Callable[[], float],
        senders: dict[str, Sender] | None = None,
        *,
        deny: DenyList | None = None,
        keyring: Keyring | None = None,
        extra_senders: dict[str, Sender] | None = None,
    ) -> None:
        self._storage = storage
        # Opens encrypted message bodies before they are sent ([transport] keys).
        self._keyring = keyring or Keyring([])
        self._settings = settings
        self._doorbell = doorbell
        self._clock = clock
        if senders is None:
            webhook, email = WebhookSender(settings, deny=deny), EmailSender(settings)
            senders = {"http": webhook, "https": webhook, "mailto": email}
        # More schemes beside the defaults (``websocket``: tidings.notify.push).
        self._senders = {**senders, **(extra_senders or {})}
        self._batch_senders = {
            scheme: sender
            for scheme, sender in self._senders.items()
            if isinstance(sender, BatchSender)
        }
        self._in_flight: set[asyncio.Task[None]] = set()  # sending or recording
        self._sending = 0
        self._per_project: Counter[str] = Counter()  # by the client's project
        self._per_host: Counter[str] = Counter()
        # Pushes (BatchSender deliveries) taken and not yet recorded.
        self._push_tasks: set[asyncio.Task[None]] = set()
        self._pushing = 0
        self._pushes_per_project: Counter[str] = Counter()
        # When a take last brought a project's webhooks or emails, and (for a project
        # not in ``_owes_slow``) when one last brought only its pushes; oldest first.
        self._owes_slow: dict[str, float] = {}
        self._owes_pushes: dict[str, float] = {}
        # The outbox could not be read last round: an outage is logged when it begins
        # and when it ends, not every round.
        self._outbox_unreadable = False

    async def run(self) -> None:
        """Take and deliver until cancelled, pruning old failures beside it."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._prune_failures())
            await self._dispatch()

    async def _dispatch(self) -> None:
        errors = 0
        while True:
            try:
                idle = await self._round()
            except Exception:  # a bug or a bad record: log it, slow down, go on
                errors += 1
                log.exception("a delivery round failed; the dispatcher goes on")
                await asyncio.sleep(min(ERROR_BACKOFF * 2 ** min(errors, 10), ERROR_BACKOFF_MAX))
                continue
            errors = 0
            if idle:
                await self._doorbell.wait(self._settings.poll_interval)

    async def _round(self) -> bool:
        """Start what is due and fits; True when the dispatcher should wait a while."""
        settings = self._settings
        slow_free = max(0, settings.max_notifier_workers - self._sending)
        if len(self._in_flight) >= RECORDING_FACTOR * settings.max_notifier_workers:
            slow_free = 0  # a finishing delivery rings the doorbell
        limit = slow_free + max(0, MAX_PUSHES_IN_FLIGHT - self._pushing)
        if limit <= 0:
            return True
        now = self._clock()
        try:
            taken = await self._storage.outbox.take(
                now,
                settings.lease,
                limit,
                per_project=settings.max_deliveries_per_project,
                in_flight=self._in_flight_by_stored_project(slow_free),
            )
        except StorageError as exc:
            log.log(
                logging.DEBUG if self._outbox_unreadable else logging.WARNING,
                "cannot read the outbox, will retry: %s",
                exc,
            )
            self._outbox_unreadable = True
            return True
        if self._outbox_unreadable:
            self._outbox_unreadable = False
            log.info("the outbox is readable again")
        routed = [
            (d, split_namespace(d.project)[0], self._batch_senders.get(_scheme(d))) for d in taken
        ]
        self._learn(routed)
        deferrals = []
        started = 0
        pushes: dict[BatchSender, list[tuple[Delivery, str]]] = {}
        for delivery, project, batch_sender in routed:
            if batch_sender is not None:
                pushes.setdefault(batch_sender, []).append((delivery, project))
                continue
            host = host_of(delivery.subscriber)
            # No slot free: a busy host; a project whose queues and topics, leased together
            # by one take, came to more than its share; or more than the free slots (a
            # project not known to owe webhooks is leased at the push share).
            if (
                started >= slow_free
                or self._per_host[host] >= settings.max_deliveries_per_host
                or self._per_project[project] >= settings.max_deliveries_per_project
            ):
                # Not this delivery's fault: give back the try its take counted.
                outcome = self._storage.outbox.retry(
                    delivery.id, delivery.attempts - 1, now + HOST_BUSY_DELAY
                )
                deferrals.append(self._record(outcome, delivery))
                continue
            self._start(delivery, project, host)
            started += 1
        for batch_sender, batch in pushes.items():
            self._start_pushes(batch_sender, batch)
        await asyncio.gather(*deferrals)
        # Deferring means the rest of what is due may be stuck behind a busy host too:
        # wait for a slot or the poll rather than re-reading the same rows at once.
        return bool(deferrals) or len(taken) < limit

    def _sender_of(self, delivery: Delivery) -> Sender | None:
        return self._senders.get(_scheme(delivery))

    def _start(self, delivery: Delivery, project: str, host: str) -> None:
        self._per_project[project] += 1
        self._per_host[host] += 1
        self._sending += 1
        slot = _Slot(self, project, host)
        task = asyncio.create_task(self._deliver(delivery, slot))
        self._in_flight.add(task)
        task.add_done_callback(lambda done: self._finished(done, slot))

    def _learn(self, routed: list[tuple[Delivery, str, BatchSender | None]]) -> None:
        """Remember which projects' takes brought webhooks or emails, and which only pushes."""
        only_pushes: dict[str, bool] = {}
        for _, project, batch_sender in routed:
            only_pushes[project] = only_pushes.get(project, True) and batch_sender is not None
        moment = time.monotonic()
        for project, pushes in only_pushes.items():
            if not pushes:
                self._owes_pushes.pop(project, None)
                _remember(self._owes_slow, project, moment)
            elif project not in self._owes_slow:
                _remember(self._owes_pushes, project, moment)
        _forget(self._owes_slow, moment - SLOW_MEMORY)
        _forget(self._owes_pushes, moment - PUSH_MEMORY)

    def _in_flight_by_stored_project(self, slow_free: int) -> dict[str, int]:
        """What the take must count as in flight per project: its webhooks and pushes; for
        a project known to owe pushes alone, less than nothing (the store grants it
        ``PUSH_SHARE``); for one known to owe webhooks, no more than the free slots. A
        project goes under both names the store knows it by (queues, topics), so using
        topics too does not double its share."""
        share = self._settings.max_deliveries_per_project
        push_share = max(share, PUSH_SHARE)
        busy: dict[str, int] = {}
        for project in self._owes_pushes:
            if not self._per_project[project]:
                busy[project] = share - push_share + self._pushes_per_project[project]
        # A project owing webhooks with nothing in flight needs no entry while the free
        # slots cover its share (the store gives it no more than that anyway).
        idle_slow = self._owes_slow if slow_free < share else ()
        for project in (*idle_slow, *self._per_project, *self._pushes_per_project):
            if project not in busy:
                used = self._per_project[project] + self._pushes_per_project[project]
                busy[project] = share - max(0, min(share - used, slow_free))
        return {
            name: count
            for project, count in busy.items()
            for name in (project, project + TOPIC_NAMESPACE)
        }

    def _finished(self, task: asyncio.Task[None], slot: _Slot) -> None:
        self._in_flight.discard(task)
        slot.release()
        self._doorbell.ring()

    def _give_back(self, slot: _Slot) -> None:
        self._sending -= 1
        for counts, key in ((self._per_project, slot.project), (self._per_host, slot.host)):
            counts[key] -= 1
            if counts[key] <= 0:
                del counts[key]
        self._doorbell.ring()

    # -- pushes --------------------------------------------------------------------

    def _start_pushes(self, sender: BatchSender, batch: list[tuple[Delivery, str]]) -> None:
        sending = _Sending(self, [project for _, project in batch])
        self._pushing += len(batch)
        self._pushes_per_project.update(sending.projects)
        deliveries = [delivery for delivery, _ in batch]
        task = asyncio.create_task(self._push(sender, deliveries, sending))
        self._push_tasks.add(task)
        task.add_done_callback(lambda done: self._pushed(done, sending))

    def _pushed(self, task: asyncio.Task[None], sending: _Sending) -> None:
        self._push_tasks.discard(task)
        self._pushing -= len(sending.projects)
        sending.release()
        self._doorbell.ring()

    def _pushes_sent(self, sending: _Sending) -> None:
        self._pushes_per_project.subtract(sending.projects)
        for project in set(sending.projects):
            if self._pushes_per_project[project] <= 0:
                del self._pushes_per_project[project]
        self._doorbell.ring()

    async def _push(
        self, sender: BatchSender, deliveries: list[Delivery], sending: _Sending
    ) -> None:
        """Send one round's pushes together, then record their outcomes (done in one
        store call per project). Their projects' shares are given back once they are
        sent; the worker's bound on pushes in flight, once they are recorded."""
        try:
            tries = self._settings.max_delivery_attempts
            ready: list[Delivery] = []
            troubles: list[tuple[Delivery, DeliveryError]] = []
            for delivery in deliveries:
                if delivery.attempts > tries:
                    troubles.append((delivery, _poison(tries)))
                    continue
                try:
                    ready.append(self._opened(delivery))
                except DeliveryError as exc:
                    troubles.append((delivery, exc))
            try:
                errors = await sender.send_batch(ready)
            except Exception as exc:  # a bug must not kill the dispatcher; keep them
                log.exception("a batch of %d pushes crashed", len(ready))
                errors = [DeliveryError(repr(exc), retryable=True)] * len(ready)
            else:
                if ready:
                    log.debug("pushed %d of %d deliveries", errors.count(None), len(ready))
            finally:
                sending.release()
            sent: dict[str, list[str]] = {}
            for delivery, error in zip(ready, errors, strict=True):
                if error is None:
                    metrics.delivery_done(self._scheme_label(delivery), metrics.DELIVERED)
                    sent.setdefault(split_namespace(delivery.project)[0], []).append(delivery.id)
                else:
                    troubles.append((delivery, error))
            await asyncio.gather(
                *(self._done(project, ids) for project, ids in sent.items()),
                *(self._trouble(delivery, error) for delivery, error in troubles),
            )
        except Exception:  # even recording failed unexpectedly: the lease brings them back
            log.exception("a batch of %d pushes went wrong", len(deliveries))

    async def _trouble(self, delivery: Delivery, error: DeliveryError) -> None:
        """Record a push that was not sent (run as a task: its project's store work)."""
        current_tenant.set(split_namespace(delivery.project)[0])
        tries = self._settings.max_delivery_attempts
        if delivery.attempts > tries:
            await self._give_up(delivery, tries, error)
        else:
            await self._failed(delivery, error)

    async def _done(self, project: str, ids: list[str]) -> None:
        current_tenant.set(project)
        for first in range(0, len(ids), DONE_CHUNK):
            chunk = ids[first : first + DONE_CHUNK]
            try:
                await self._storage.outbox.done_many(chunk)
            except StorageError as exc:  # the lease brings them back: at least once
                log.warning("cannot record %d pushes as done: %s", len(chunk), exc)

    async def _deliver(self, delivery: Delivery, slot: _Slot) -> None:
        # What the delivery makes the store do (its outcome, its policy) is its project's
        # work, queued behind that project's other work in shared store workers.
        current_tenant.set(split_namespace(delivery.project)[0])
        try:
            await self._attempt(delivery, slot)
        except Exception:  # even recording failed unexpectedly: the lease brings it back
            log.exception(
                "delivery %s to subscription %s (%s) went wrong",
                delivery.id,
                delivery.subscription_id,
                target(delivery),
                extra=delivery_fields(delivery),
            )

    async def _attempt(self, delivery: Delivery, slot: _Slot) -> None:
        tries = self._settings.max_delivery_attempts
        if delivery.attempts > tries:
            await self._give_up(delivery, tries, _poison(tries))
            return
        sender = self._sender_of(delivery)
        try:
            if sender is None:
                raise DeliveryError(f"no sender for {delivery.subscriber}", retryable=False)
            try:
                await sender.send(self._opened(delivery))
            finally:
                slot.release()  # the subscriber is done with; the store write follows
        except DeliveryError as exc:
            await self._failed(delivery, exc)
        except Exception as exc:  # a bug must not kill the dispatcher; keep the delivery
            log.exception(
                "delivery %s to subscription %s (%s) crashed",
                delivery.id,
                delivery.subscription_id,
                target(delivery),
                extra=delivery_fields(delivery),
            )
            await self._failed(delivery, DeliveryError(repr(exc), retryable=True))
        else:
            metrics.delivery_done(self._scheme_label(delivery), metrics.DELIVERED)
            log.debug(
                "delivered %s %s to subscription %s (%s), attempt %d",
                delivery.kind.value,
                delivery.id,
                delivery.subscription_id,
                target(delivery),
                delivery.attempts,
                extra=delivery_fields(delivery, outcome="delivered"),
            )
            await self._record(self._storage.outbox.done(delivery.id), delivery)

    def _scheme_label(self, delivery: Delivery) -> str:
        """The subscriber's scheme as metrics label it: one this dispatcher has a sender
        for, else ``other`` (labels stay few whatever a subscriber URL says)."""
        scheme = _scheme(delivery)
        return scheme if scheme in self._senders else "other"

    def _opened(self, delivery: Delivery) -> Delivery:
        """The delivery with its message body in clear: ciphertext is never sent."""
        try:
            return self._keyring.open_delivery(delivery)
        except UnreadableBody as exc:  # the operator may list the key again: retry
            raise DeliveryError(exc.description or exc.title, retryable=True) from exc

    async def _failed(self, delivery: Delivery, error: DeliveryError) -> None:
        attempts = delivery.attempts  # counted by the take, this one included
        if error.retryable and attempts < self._settings.max_delivery_attempts:
            wait = retry.delay(await self._policy(delivery), attempts)
            if wait is not None:
                pause = max(wait, self._settings.min_retry_delay)
                due = self._clock() + pause
                metrics.delivery_done(self._scheme_label(delivery), metrics.RETRIED)
                log.info(
                    "%s delivery %s to subscription %s (%s) failed, attempt %d of %d; "
                    "retrying in %gs: %s",
                    delivery.kind.value,
                    delivery.id,
                    delivery.subscription_id,
                    target(delivery),
                    attempts,
                    self._settings.max_delivery_attempts,
                    pause,
                    loggable(error, delivery),
                    extra=delivery_fields(delivery, outcome="retried"),
                )
                await self._record(self._storage.outbox.retry(delivery.id, attempts, due), delivery)
                return
        await self._give_up(delivery, attempts, error)

    async def _give_up(self, delivery: Delivery, attempts: int, error: DeliveryError) -> None:
        log.warning(
            "giving up on %s delivery %s to subscription %s (%s) after %d attempt(s): %s",
            delivery.kind.value,
            delivery.id,
            delivery.subscription_id,
            target(delivery),
            attempts,
            loggable(error, delivery),
            extra=delivery_fields(delivery, outcome="failed"),
        )
        metrics.delivery_done(self._scheme_label(delivery), metrics.FAILED)
        outcome = self._storage.outbox.fail(delivery, attempts, str(error), self._clock())
        await self._record(outcome, delivery)

    async def _policy(self, delivery: Delivery) -> retry.RetryPolicy:
        queue_policy = None
        try:
            metadata = await self._storage.queues.get_metadata(delivery.project, delivery.source)
            queue_policy = (metadata or {}).get("_retry_policy")
        except Exception as exc:  # unreadable metadata must not cost the delivery
            log.warning("cannot read the retry policy of %s: %s", delivery.source, exc)
        return retry.effective(queue_policy, delivery.options.get("_retry_policy"))

    @staticmethod
    async def _record(outcome: Awaitable[None], delivery: Delivery) -> None:
        # If the store is down the lease runs out and the delivery is tried again:
        # at least once, never lost.
        try:
            await outcome
        except StorageError as exc:
            log.warning("cannot record the outcome of delivery %s: %s", delivery.id, exc)

    async def _prune_failures(self) -> None:
        """Drop failures older than ``failure_retention``, a bounded pass at a time."""
        while True:
            await asyncio.sleep(PRUNE_INTERVAL)
            before = self._clock() - self._settings.failure_retention
            try:
                for _ in range(PRUNE_MAX_CHUNKS):
                    if await self._storage.outbox.prune_failures(before) < FAILURE_PRUNE_CHUNK:
                        break
            except Exception as exc:  # housekeeping must never stop
                log.warning("cannot prune old delivery failures, will retry: %s", exc)

    async def close(self) -> None:
        tasks = [*self._in_flight, *self._push_tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for sender in set(self._senders.values()):
            await sender.close()


def _scheme(delivery: Delivery) -> str:
    return _scheme_of(delivery.subscriber)


def target(delivery: Delivery) -> str:
    """Where a delivery goes, as logs show it: the scheme and host, never the subscriber
    URL (its credentials, path and query may hold secrets)."""
    scheme = _scheme(delivery)
    host = host_of(delivery.subscriber)
    return host if scheme in ("mailto", "websocket") else f"{scheme}://{host}"


def loggable(error: DeliveryError, delivery: Delivery) -> str:
    """The error's text for a log line, the subscriber URL it may quote replaced."""
    return str(error).replace(delivery.subscriber, target(delivery))


def delivery_fields(delivery: Delivery, outcome: str | None = None) -> dict[str, object]:
    """A delivery's structured log fields (JSON logs)."""
    fields: dict[str, object] = {
        "delivery_id": delivery.id,
        "subscription_id": delivery.subscription_id,
        "kind": delivery.kind.value,
        "scheme": _scheme(delivery),
        "target": target(delivery),
        "attempt": delivery.attempts,
    }
    if outcome is not None:
        fields["outcome"] = outcome
    return fields


@functools.lru_cache(maxsize=4096)
def _scheme_of(subscriber: str) -> str:
    return urlsplit(subscriber).scheme


def _poison(tries: int) -> DeliveryError:
    # Its earlier tries ended without an outcome (the worker died or hung up past the
    # lease): a poison pill, not to be tried again.
    return DeliveryError(
        f"gave up after {tries} attempt(s) that ended without an outcome "
        "(the worker stopped or the lease ran out)",
        retryable=False,
    )


def _remember(seen: dict[str, float], project: str, moment: float) -> None:
    seen.pop(project, None)  # to the end: the dict stays oldest first
    seen[project] = moment


def _forget(seen: dict[str, float], before: float) -> None:
    """Drop what was seen before ``before``, and the oldest past MAX_REMEMBERED."""
    while seen:
        project, moment = next(iter(seen.items()))
        if moment >= before and len(seen) <= MAX_REMEMBERED:
            break
        del seen[project]

