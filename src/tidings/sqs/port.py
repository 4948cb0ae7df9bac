"""``[sqs] port``: the SQS face alone on a port of its own, any path (for SDKs and tools
configured with a bare endpoint), besides the HTTP port.

Every worker serves it, as the separate WebSocket and metrics ports are served
(``tidings.http.extra_port``: ``SO_REUSEPORT``, the kernel spreads the connections).
Same TLS settings and connection limits as the HTTP port.
"""

from __future__ import annotations

from typing import Any

from tidings.config import Settings
from tidings.http.extra_port import PortListener
from tidings.sqs.app import SqsApp
from tidings.uvicorn_options import ssl_options

# Seconds the port's server waits at shutdown for requests in flight (long polls are 20).
STOP_TIMEOUT = 10


def sqs_listener(app: SqsApp, settings: Settings) -> PortListener:
    """Serves ``[sqs] port`` in this worker, with the HTTP port's TLS settings."""
    port = settings.sqs.port
    assert port is not None
    return PortListener("SQS", app, settings, port, STOP_TIMEOUT, **ssl_options(settings))


class SqsLifecycle:
    """Closes what the SQS face holds (its authenticator's connections) at shutdown."""

    def __init__(self, app: SqsApp) -> None:
        self._app = app

    async def process_shutdown(self, scope: dict[str, Any], event: dict[str, Any]) -> None:
        await self._app.close()
