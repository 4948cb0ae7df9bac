"""One finished request: its metrics and, with ``log_format = "json"``, its access line.

The transports call ``request_finished`` once per HTTP request and once per WebSocket
action frame, and only while ``ENABLED`` (metrics on, or JSON logs): with both off they
add nothing to a request, not even the clock readings.
"""

from __future__ import annotations

import logging

from tidings.config import Settings
from tidings.observe import metrics
from tidings.observe.logs import ACCESS_LOGGER

# Whether the transports measure requests at all (set from the settings at app build).
ENABLED = False
_access_lines = False
_log = logging.getLogger(ACCESS_LOGGER)

UNKNOWN = "unknown"
"""The operation of a request no route or action was found for."""


def configure(settings: Settings) -> None:
    """Measure requests when metrics are on or JSON logs are asked for."""
    global ENABLED, _access_lines
    _access_lines = settings.server.log_format == "json"
    ENABLED = _access_lines or settings.metrics.enabled


def request_finished(
    transport: str,
    operation: str,
    status: int,
    seconds: float,
    bytes_out: int,
    request_id: str | None,
    project: str | None,
) -> None:
    """Count the request and write its line: ``transport`` is ``http``, ``websocket`` or ``sqs``,
    ``operation`` the Action's value (``UNKNOWN`` when unrouted), ``bytes_out`` the
    response body's (or reply frame's) size."""
    metrics.request_done(transport, operation, status, seconds)
    if _access_lines and _log.isEnabledFor(logging.INFO):
        # Made and handled directly: what ``info`` would do, less the search for the
        # caller's frame (a line per request; its source location says nothing).
        _log.handle(
            _log.makeRecord(
                ACCESS_LOGGER,
                logging.INFO,
                __file__,
                0,
                "%s %s %d",
                (transport, operation, status),
                None,
                extra={
                    "request_id": request_id,
                    "project": project,
                    "operation": operation,
                    "status": status,
                    "duration_ms": round(seconds * 1000.0, 3),
                    "bytes": bytes_out,
                    "transport": transport,
                },
            )
        )
