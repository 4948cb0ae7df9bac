"""A further listening port served inside a worker (the WebSocket, metrics and SQS
ports): an embedded uvicorn server on a socket every worker binds (SO_REUSEPORT)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator
from typing import Any

import uvicorn

from tidings.config import Settings
from tidings.http.server_protocol import GuardedHttpToolsProtocol

log = logging.getLogger("tidings")


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server inside another one's process: the outer one owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class ExtraPort:
    """Started from a worker's lifespan startup, stopped from its shutdown."""

    def __init__(self, name: str) -> None:
        self._name = name  # for task names and log lines, e.g. "WebSocket"
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, config: uvicorn.Config, host: str, port: int) -> None:
        sock = listening_socket(host, port)
        self._server = _EmbeddedServer(config)
        self._task = asyncio.create_task(
            self._server.serve(sockets=[sock]), name=f"tidings-{self._name}-listener"
        )
        # Serving once started; a failure to start surfaces here.
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError(f"the {self._name} listener stopped while starting")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        try:
            await self._task
        except Exception:
            log.exception("the %s listener failed while stopping", self._name)


def listening_socket(host: str, port: int) -> socket.socket:
    """A listening socket that the other workers bind too (the kernel spreads accepts)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(2048)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class PortListener:
    """Serves one ASGI app (no lifespan) on an extra port in every worker: a Falcon
    middleware, started after the store opened, stopped before it closes. ``options``
    are further ``uvicorn.Config`` settings: TLS, WebSocket (none unless given)."""

    def __init__(
        self,
        name: str,
        app: Any,
        settings: Settings,
        port: int,
        stop_timeout: int,
        **options: Any,
    ) -> None:
        self._app = app
        self._settings = settings
        self._port_number = port
        self._stop_timeout = stop_timeout
        self._options = options
        self._port = ExtraPort(name)

    async def process_startup(self, scope: dict[str, Any], event: dict[str, Any]) -> None:
        server = self._settings.server
        config = uvicorn.Config(
            self._app,
            # The main port's connection limits (sizes, timeouts, caps) apply here too.
            http=GuardedHttpToolsProtocol.factory(server),
            lifespan="off",
            log_config=None,
            log_level=server.log_level,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=self._stop_timeout,
            **{"ws": "none", **self._options},
        )
        await self._port.start(config, server.host, self._port_number)

    async def process_shutdown(self, scope: dict[str, Any], event: dict[str, Any]) -> None:
        await self._port.stop()
