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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from tidings.config import NotificationSettings
from tidings.encryption import Keyring, UnreadableBody
from tidings.errors import StorageError
from tidings.model import Delivery
from tidings.namespace import TOPIC_NAMESPACE, split_namespace
from tidings.notify import retry
from tidings.notify.destinations import DEFAULT_PORTS, DenyList
from tidings.notify.senders import DeliveryError, EmailSender, Sender, WebhookSender
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
    """The host a delivery occupies: ``host:port`` of a webhook, the domain of a mailbox."""
    parts = urlsplit(subscriber)
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
        self._senders = senders
        self._in_flight: set[asyncio.Task[None]] = set()  # sending or recording
        self._sending = 0
        self._per_project: Counter[str] = Counter()  # by the client's project
        self._per_host: Counter[str] = Counter()

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
        free = settings.max_notifier_workers - self._sending
        recording_full = len(self._in_flight) >= RECORDING_FACTOR * settings.max_notifier_workers
        if free <= 0 or recording_full:
            return True  # a finishing delivery rings the doorbell
        now = self._clock()
        try:
            taken = await self._storage.outbox.take(
                now,
                settings.lease,
                free,
                per_project=settings.max_deliveries_per_project,
                in_flight=self._in_flight_by_stored_project(),
            )
        except StorageError as exc:
            log.warning("cannot read the outbox, will retry: %s", exc)
            return True
        deferrals = []
        for delivery in taken:
            host = host_of(delivery.subscriber)
            project = split_namespace(delivery.project)[0]
            # A busy host; or a project whose queues and topics, leased together by one
            # take, came to more than its share.
            if (
                self._per_host[host] >= settings.max_deliveries_per_host
                or self._per_project[project] >= settings.max_deliveries_per_project
            ):
                # Not this delivery's fault: give back the try its take counted.
                outcome = self._storage.outbox.retry(
                    delivery.id, delivery.attempts - 1, now + HOST_BUSY_DELAY
                )
                deferrals.append(self._record(outcome, delivery))
                continue
            self._start(delivery, project, host)
        await asyncio.gather(*deferrals)
        # Deferring means the rest of what is due may be stuck behind a busy host too:
        # wait for a slot or the poll rather than re-reading the same rows at once.
        return bool(deferrals) or len(taken) < free

    def _start(self, delivery: Delivery, project: str, host: str) -> None:
        self._per_project[project] += 1
        self._per_host[host] += 1
        self._sending += 1
        slot = _Slot(self, project, host)
        task = asyncio.create_task(self._deliver(delivery, slot))
        self._in_flight.add(task)
        task.add_done_callback(lambda done: self._finished(done, slot))

    def _in_flight_by_stored_project(self) -> dict[str, int]:
        """A project's count under both names the store knows it by (queues, topics),
        so using topics too does not double its share."""
        return {
            name: count
            for project, count in self._per_project.items()
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

    async def _deliver(self, delivery: Delivery, slot: _Slot) -> None:
        # What the delivery makes the store do (its outcome, its policy) is its project's
        # work, queued behind that project's other work in shared store workers.
        current_tenant.set(split_namespace(delivery.project)[0])
        try:
            await self._attempt(delivery, slot)
        except Exception:  # even recording failed unexpectedly: the lease brings it back
            log.exception("delivery %s to %s went wrong", delivery.id, delivery.subscriber)

    async def _attempt(self, delivery: Delivery, slot: _Slot) -> None:
        tries = self._settings.max_delivery_attempts
        if delivery.attempts > tries:
            # Its earlier tries ended without an outcome (the worker died or hung up
            # past the lease): a poison pill, not to be tried again.
            error = DeliveryError(
                f"gave up after {tries} attempt(s) that ended without an outcome "
                "(the worker stopped or the lease ran out)",
                retryable=False,
            )
            await self._give_up(delivery, tries, error)
            return
        sender = self._senders.get(urlsplit(delivery.subscriber).scheme)
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
            log.exception("delivery %s to %s crashed", delivery.id, delivery.subscriber)
            await self._failed(delivery, DeliveryError(repr(exc), retryable=True))
        else:
            await self._record(self._storage.outbox.done(delivery.id), delivery)

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
                due = self._clock() + max(wait, self._settings.min_retry_delay)
                await self._record(self._storage.outbox.retry(delivery.id, attempts, due), delivery)
                return
        await self._give_up(delivery, attempts, error)

    async def _give_up(self, delivery: Delivery, attempts: int, error: DeliveryError) -> None:
        log.warning(
            "giving up on %s delivery to %s after %d attempt(s): %s",
            delivery.kind.value,
            delivery.subscriber,
            attempts,
            error,
        )
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
        for task in list(self._in_flight):
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        for sender in set(self._senders.values()):
            await sender.close()
