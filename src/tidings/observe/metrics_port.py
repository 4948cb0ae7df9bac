"""``[metrics] port``: ``GET /metrics`` on a port of its own, without auth, for a scraper
on a private network (the main port then does not serve it).

Every worker serves the port, as the separate WebSocket port is served
(``tidings.ws.endpoint.listening_socket``: ``SO_REUSEPORT``, the kernel spreads the
connections). Any worker can answer a scrape whole: the counts of all of them are added
up from the shared directory, and the per-queue gauges are read by the one answering.
(A server in the ``tidings serve`` parent alone would need no shared port, but that
process has no store open to read the per-queue gauges from.) Plain HTTP, even when
the main port has TLS.
"""

from __future__ import annotations

import logging
from typing import Any

from tidings.http.extra_port import PortListener
from tidings.observe import metrics
from tidings.ops.context import Services

log = logging.getLogger("tidings.metrics")

PATH = "/metrics"
STOP_TIMEOUT = 5


class MetricsApp:
    """The port's ASGI application: ``GET``/``HEAD /metrics``; 404 and 405 otherwise."""

    def __init__(self, services: Services) -> None:
        self._svc = services

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope.get("path") != PATH:
            await _answer(send, 404, b"Not Found\n")
        elif scope.get("method") not in ("GET", "HEAD"):
            await _answer(send, 405, b"Method Not Allowed\n", [(b"allow", b"GET, HEAD")])
        else:
            try:
                body = await metrics.render(self._svc)
            except Exception:
                log.exception("metrics: the scrape failed")
                await _answer(send, 500, b"The metrics could not be collected.\n")
                return
            head = scope.get("method") == "HEAD"
            await _answer(send, 200, body, content_type=metrics.CONTENT_TYPE.encode(), head=head)


async def _answer(
    send: Any,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    content_type: bytes = b"text/plain; charset=utf-8",
    head: bool = False,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else body})


def metrics_listener(services: Services) -> PortListener:
    """Serves ``[metrics] port`` in this worker (plain HTTP, even when the main port has
    TLS)."""
    port = services.settings.metrics.port
    assert port is not None
    return PortListener(
        "metrics", MetricsApp(services), services.settings, port, STOP_TIMEOUT
    )
