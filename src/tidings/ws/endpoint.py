"""Where WebSocket connections come in: ``/`` and ``/v2/ws`` on the HTTP port and, with
``[websocket] port`` set, any path on a port of their own (as Zaqar's separate server).

``Router`` is the ASGI application the server runs: WebSocket scopes go to
``Endpoint``, everything else (HTTP, lifespan) to the Falcon app. ``listener`` serves
the separate port inside each worker process: an in-process uvicorn server on a
``SO_REUSEPORT`` socket, so every worker accepts its share of the connections.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec

from tidings.admission.auth import Authenticator
from tidings.config import Settings
from tidings.http.extra_port import PortListener
from tidings.observe import metrics
from tidings.ops.context import Services
from tidings.sqs.app import is_sqs_request
from tidings.uvicorn_options import ssl_options, uvicorn_ws_options
from tidings.ws.session import Session

log = logging.getLogger("tidings.ws")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
# Loose on purpose: Falcon's app and uvicorn's callables each spell these types their way.
Asgi = Callable[[Any, Any, Any], Awaitable[None]]

# Where Zaqar clients connect on the HTTP port, and our own name for it.
PATHS = frozenset({"/", "/v2/ws", "/v2/ws/"})
# How long the separate port's server waits for its connections at shutdown.
LISTENER_STOP_TIMEOUT = 10
# Seconds between two log lines about refused connections.
REFUSAL_LOG_INTERVAL = 10.0


async def refuse(receive: Receive, send: Send) -> None:
    """Refuse a WebSocket handshake (the client gets a 403).

    (uvicorn would also send an HTTP answer of our own making, but then logs an error
    for each: a refusal at capacity must not flood the log.)
    """
    await receive()  # websocket.connect
    await send({"type": "websocket.close", "code": 1008})


class Endpoint:
    """The WebSocket API: accepts a connection (up to ``max_connections`` per process)
    and serves it with a ``Session``."""

    def __init__(self, svc: Services, authenticator: Authenticator) -> None:
        self._svc = svc
        self._authenticator = authenticator
        self._limit = svc.settings.websocket.max_connections
        self._quiet_until = 0.0
        self.connections = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.connections >= self._limit:
            now = time.monotonic()
            if now >= self._quiet_until:  # once in a while, not once per refusal
                self._quiet_until = now + REFUSAL_LOG_INTERVAL
                log.warning(
                    "refusing WebSocket connections: [websocket] max_connections (%d) reached",
                    self._limit,
                )
            await refuse(receive, send)
            return
        self.connections += 1
        try:
            message = await receive()
            if message.get("type") != "websocket.connect":
                return
            await send({"type": "websocket.accept"})
            session = Session(self._svc, self._authenticator, send, abort=_aborter(send))
            metrics.websocket_connections_changed(1)
            try:
                await session.run(receive)
            finally:
                metrics.websocket_connections_changed(-1)
        except OSError:
            pass  # the client went away during the handshake
        finally:
            self.connections -= 1


def _aborter(send: Send) -> Callable[[], None] | None:
    """A way to drop the connection at once when a close cannot be written in time.

    ASGI has none; uvicorn's ``send`` is a method of its protocol, whose transport can.
    Dropping is only done when the transport is still open or still has bytes to write.
    """
    transport: Any = getattr(getattr(send, "__self__", None), "transport", None)
    # Duck-typed: uvloop's transports are not asyncio.Transport subclasses.
    if not all(
        callable(getattr(transport, name, None))
        for name in ("abort", "is_closing", "get_write_buffer_size")
    ):
        return None

    def abort() -> None:
        try:
            if not transport.is_closing() or transport.get_write_buffer_size() > 0:
                transport.abort()
        except Exception:  # closed meanwhile: nothing to drop
            log.debug("aborting a WebSocket transport failed", exc_info=True)

    return abort


class Router:
    """The server's ASGI application: WebSockets to ``endpoint``, the rest to ``http``.

    ``paths`` are the WebSocket paths served (None: any); an upgrade elsewhere is
    refused.
    """

    def __init__(
        self,
        http: Asgi,
        endpoint: Endpoint,
        paths: frozenset[str] | None = PATHS,
        sqs: Asgi | None = None,
    ):
        self.http = http
        self.endpoint = endpoint
        self._paths = paths
        # The SQS face (issue 14): its requests are told apart by their headers.
        self._sqs = sqs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            if self._sqs is not None and scope["type"] == "http" and is_sqs_request(scope):
                await self._sqs(scope, receive, send)
                return
            await self.http(scope, receive, send)
        elif self._paths is None or scope.get("path") in self._paths:
            await self.endpoint(scope, receive, send)
        else:
            await refuse(receive, send)


async def websocket_only(scope: Scope, receive: Receive, send: Send) -> None:
    """What the separate port answers to plain HTTP: 426, go upgrade."""
    if scope["type"] != "http":
        return
    body = msgspec.json.encode(
        {
            "title": "Upgrade Required",
            "description": "This port serves the WebSocket API only.",
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": 426,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"upgrade", b"websocket"),
                (b"connection", b"Upgrade"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def listener(endpoint: Endpoint, settings: Settings) -> PortListener:
    """Serves ``[websocket] port`` in this worker: the WebSocket API at any path, and a
    426 to plain HTTP."""
    return PortListener(
        "WebSocket",
        Router(websocket_only, endpoint, paths=None),
        settings,
        settings.websocket.port,
        LISTENER_STOP_TIMEOUT,
        **uvicorn_ws_options(settings),
        **ssl_options(settings),
    )


