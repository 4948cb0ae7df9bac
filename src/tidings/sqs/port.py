"""``[sqs] port``: the SQS face alone on a port of its own, any path (for SDKs and tools
configured with a bare endpoint), besides the HTTP port.

Every worker serves it, as the separate WebSocket and metrics ports are served
(``tidings.http.extra_port``: ``SO_REUSEPORT``, the kernel spreads the connections).
Same TLS settings and connection limits as the HTTP port.
"""

from __future__ import annotations

from typing import Any

import uvicorn

from tidings.config import Settings
from tidings.http.extra_port import ExtraPort
from tidings.http.server_protocol import GuardedHttpToolsProtocol
from tidings.sqs.app import SqsApp
from tidings.ws.endpoint import ssl_options

# Seconds the port's server waits at shutdown for requests in flight (long polls are 20).
STOP_TIMEOUT = 10


class SqsListener:
    """Serves ``[sqs] port`` in this worker (a Falcon middleware: started after the store
    opened, stopped before it closes)."""

    def __init__(self, app: SqsApp, settings: Settings) -> None:
        self._app = app
        self._settings = settings
        self._port = ExtraPort("SQS")

    async def process_startup(self, scope: dict[str, Any], event: dict[str, Any]) -> None:
        settings = self._settings
        port = settings.sqs.port
        assert port is not None
        config = uvicorn.Config(
            self._app,
            http=GuardedHttpToolsProtocol.factory(settings.server),
            ws="none",
            lifespan="off",
            log_config=None,
            log_level=settings.server.log_level,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=STOP_TIMEOUT,
            **ssl_options(settings),
        )
        await self._port.start(config, settings.server.host, port)

    async def process_shutdown(self, scope: dict[str, Any], event: dict[str, Any]) -> None:
        await self._port.stop()


class SqsLifecycle:
    """Closes what the SQS face holds (its authenticator's connections) at shutdown."""

    def __init__(self, app: SqsApp) -> None:
        self._app = app

    async def process_shutdown(self, scope: dict[str, Any], event: dict[str, Any]) -> None:
        await self._app.close()
