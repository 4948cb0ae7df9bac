"""Wires settings to storage, operations and transports; the ASGI entry point."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import falcon.asgi

from tidings import encryption
from tidings.admission.auth import Authenticator
from tidings.admission.auth.factory import create_authenticator
from tidings.config import Settings, load_settings
from tidings.errors import StorageError
from tidings.http.app import build_asgi_app
from tidings.notify.destinations import deny_list
from tidings.notify.dispatcher import Dispatcher, Doorbell
from tidings.notify.push import SCHEME, PushRegistry, PushSender
from tidings.observe import logs, metrics, stores
from tidings.observe import requests as observed_requests
from tidings.observe.metrics_port import metrics_listener
from tidings.ops.context import Services
from tidings.pooling.router import PooledStorage
from tidings.storage import create_storage
from tidings.storage.base import Storage
from tidings.ws.endpoint import Router

log = logging.getLogger("tidings")

# Longest wait between garbage collection attempts after failures (unless gc_interval
# is longer).
GC_MAX_BACKOFF = 300.0


class Lifecycle:
    """Opens the store at start-up, runs garbage collection and the delivery dispatcher,
    and stops them all (and the authenticator's sessions) at shutdown."""

    def __init__(
        self,
        services: Services,
        dispatcher: Dispatcher,
        authenticator: Authenticator,
        push: PushRegistry | None = None,
    ) -> None:
        self._services = services
        self._dispatcher = dispatcher
        self._authenticator = authenticator
        self._push = push
        self._tasks: list[asyncio.Task[None]] = []

    async def process_startup(self, scope: dict[str, Any], event: dict[str, Any]) -> None:
        await self._services.storage.open()
        if self._push is not None:
            self._push.start()  # the relay handler and the lease renewal
        self._tasks = [
            asyncio.create_task(self._collect_garbage(), name="tidings-gc"),
            asyncio.create_task(self._dispatcher.run(), name="tidings-dispatcher"),
        ]
        if metrics.enabled():
            self._tasks.append(
                asyncio.create_task(metrics.flush_forever(), name="tidings-metrics")
            )

    async def process_shutdown(self, scope: dict[str, Any], event: dict[str, Any]) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._dispatcher.close()
        if self._push is not None:
            await self._push.close()  # deletes what open connections still hold
        await self._authenticator.close()
        await self._services.storage.close()
        metrics.stop()  # this worker's last counts out; its gauges stop counting

    async def _collect_garbage(self) -> None:
        """Sweep every ``gc_interval`` seconds, forever: a failed sweep, whatever the
        error, is logged and tried again after a back-off that doubles up to
        GC_MAX_BACKOFF, so the sweep never dies silently for every tenant."""
        interval = self._services.settings.storage.gc_interval
        failures = 0
        while True:
            await asyncio.sleep(gc_delay(interval, failures))
            started = time.perf_counter()
            try:
                removed = await self._services.storage.collect_garbage(self._services.clock())
            except StorageError as exc:
                failures += 1
                log.warning(
                    "garbage collection failed (%d in a row), will retry in %gs: %s",
                    failures,
                    gc_delay(interval, failures),
                    exc,
                    extra={"failures": failures},
                )
            except Exception:
                failures += 1
                log.exception(
                    "garbage collection failed unexpectedly (%d in a row), will retry in %gs",
                    failures,
                    gc_delay(interval, failures),
                    extra={"failures": failures},
                )
            else:
                if failures:
                    log.info("garbage collection works again after %d failure(s)", failures)
                failures = 0
                if removed:
                    # Rows, not only messages: see metrics.messages_expired.
                    metrics.messages_expired(removed)
                seconds = time.perf_counter() - started
                log.debug(
                    "garbage collection removed %d expired rows in %.3fs",
                    removed,
                    seconds,
                    extra={"removed": removed, "duration_ms": round(seconds * 1000.0, 3)},
                )


def gc_delay(interval: float, failures: int) -> float:
    """Seconds before the next sweep: ``interval``, doubled per failure in a row, capped."""
    if not failures:
        return interval
    return min(interval * float(2 ** min(failures, 16)), max(interval, GC_MAX_BACKOFF))


def build_app(settings: Settings) -> falcon.asgi.App[falcon.asgi.Request, falcon.asgi.Response]:
    """The HTTP API alone (what tests enumerating the routes read)."""
    app = build_server(settings).http
    assert isinstance(app, falcon.asgi.App)
    return app


def build_server(settings: Settings) -> Router:
    """The server's ASGI application: the HTTP API and the WebSocket API."""
    observed_requests.configure(settings)  # before the transports are built
    doorbell = Doorbell()
    # Pooled: the management store (catalog and queue registry) and the pools it names;
    # [drivers] message_store is the virtual pool when enable_virtual_pool is on.
    storage: Storage
    if settings.metrics.enabled:
        metrics.enable(settings.metrics)
        storage = stores.build_storage(settings)  # the same, with its calls timed
    elif settings.pooling:
        storage = PooledStorage.from_settings(settings)
    else:
        storage = create_storage(settings)
    push = PushRegistry(storage, settings.websocket.push_lease, time.time)
    services = Services(
        settings=settings,
        storage=storage,
        clock=time.time,
        wake_dispatcher=doorbell.ring,
        push=push,
        catalog=storage.catalog if settings.pooling else None,
    )
    dispatcher = Dispatcher(
        services.storage,
        settings.notification,
        doorbell,
        services.clock,
        deny=deny_list(settings),  # checked again at connect time: DNS can change
        keyring=encryption.keyring(settings.transport),
        extra_senders={SCHEME: PushSender(push, storage)},
    )
    authenticator = create_authenticator(settings)
    middleware: list[Any] = [Lifecycle(services, dispatcher, authenticator, push)]
    if settings.metrics.enabled and settings.metrics.port is not None:
        middleware.append(metrics_listener(services))  # after the store opened
    return build_asgi_app(services, authenticator, extra_middleware=middleware)


def configure_logging(level: str, log_format: str = "text") -> None:
    """Every log line (ours, uvicorn's, other libraries') to stderr, as text or JSON
    (``[server] log_format``): ``tidings.observe.logs``."""
    logs.configure(level, log_format)


def create_app() -> Router:
    """Factory for ASGI servers: settings come from TIDINGS_CONFIG and TIDINGS_* variables."""
    settings = load_settings()
    configure_logging(settings.server.log_level, settings.server.log_format)
    return build_server(settings)
