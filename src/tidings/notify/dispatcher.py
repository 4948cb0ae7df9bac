"""Delivers what the outbox owes, off the request path, with bounded concurrency.

Every worker process runs one dispatcher. It takes due deliveries from the store
(leased, so a crashed worker's share is taken again later), sends each through the
sender for the subscriber's scheme, and records the outcome: done, retry at the time
the retry policy says, or failed for good (kept per subscription for operators).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from tidings.config import NotificationSettings
from tidings.errors import StorageError
from tidings.model import Delivery
from tidings.notify import retry
from tidings.notify.senders import DeliveryError, EmailSender, Sender, WebhookSender
from tidings.storage.base import Storage

log = logging.getLogger("tidings.notify")


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


class Dispatcher:
    def __init__(
        self,
        storage: Storage,
        settings: NotificationSettings,
        doorbell: Doorbell,
        clock: Callable[[], float],
        senders: dict[str, Sender] | None = None,
    ) -> None:
        self._storage = storage
        self._settings = settings
        self._doorbell = doorbell
        self._clock = clock
        if senders is None:
            webhook, email = WebhookSender(settings), EmailSender(settings)
            senders = {"http": webhook, "https": webhook, "mailto": email}
        self._senders = senders
        self._in_flight: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Take and deliver until cancelled; backend failures only slow it down."""
        while True:
            free = self._settings.max_notifier_workers - len(self._in_flight)
            taken: list[Delivery] = []
            if free > 0:
                try:
                    taken = await self._storage.outbox.take(
                        self._clock(), self._settings.lease, free
                    )
                except StorageError as exc:
                    log.warning("cannot read the outbox, will retry: %s", exc)
            for delivery in taken:
                task = asyncio.create_task(self._deliver(delivery))
                self._in_flight.add(task)
                task.add_done_callback(self._finished)
            if not taken or len(taken) < free:
                await self._doorbell.wait(self._settings.poll_interval)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._doorbell.ring()

    async def _deliver(self, delivery: Delivery) -> None:
        sender = self._senders.get(urlsplit(delivery.subscriber).scheme)
        try:
            if sender is None:
                raise DeliveryError(f"no sender for {delivery.subscriber}", retryable=False)
            await sender.send(delivery)
        except DeliveryError as exc:
            await self._failed(delivery, exc)
        except Exception as exc:  # a bug must not kill the dispatcher; keep the delivery
            log.exception("delivery %s to %s crashed", delivery.id, delivery.subscriber)
            await self._failed(delivery, DeliveryError(repr(exc), retryable=True))
        else:
            await self._record(self._storage.outbox.done(delivery.id), delivery)

    async def _failed(self, delivery: Delivery, error: DeliveryError) -> None:
        attempts = delivery.attempts + 1
        delays = retry.schedule(await self._policy(delivery))
        now = self._clock()
        if error.retryable and attempts <= len(delays):
            due = now + delays[attempts - 1]
            await self._record(self._storage.outbox.retry(delivery.id, attempts, due), delivery)
            return
        log.warning(
            "giving up on %s delivery to %s after %d attempt(s): %s",
            delivery.kind.value,
            delivery.subscriber,
            attempts,
            error,
        )
        await self._record(self._storage.outbox.fail(delivery, attempts, str(error), now), delivery)

    async def _policy(self, delivery: Delivery) -> retry.RetryPolicy:
        queue_policy = None
        with contextlib.suppress(StorageError):
            metadata = await self._storage.queues.get_metadata(delivery.project, delivery.source)
            queue_policy = (metadata or {}).get("_retry_policy")
        return retry.effective(queue_policy, delivery.options.get("_retry_policy"))

    @staticmethod
    async def _record(outcome: Awaitable[None], delivery: Delivery) -> None:
        # If the store is down the lease runs out and the delivery is tried again:
        # at least once, never lost.
        try:
            await outcome
        except StorageError as exc:
            log.warning("cannot record the outcome of delivery %s: %s", delivery.id, exc)

    async def close(self) -> None:
        for task in list(self._in_flight):
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        for sender in set(self._senders.values()):
            await sender.close()
