"""uvicorn's settings drawn from ours, for every port that serves (the HTTP port and the
WebSocket, SQS and metrics ports).

Light to import on purpose: ``tidings serve``'s supervising process, which starts the
workers and serves nothing, reads them without importing the application.
"""

from __future__ import annotations

from typing import Any

from tidings.config import Settings

# uvicorn's WebSocket implementation (websockets' Sans-I/O protocol: it stops reading a
# connection until the application took its last message).
WS_IMPLEMENTATION = "websockets-sansio"
# Keepalive pings find dead peers; a peer silent past the timeout is dropped.
PING_INTERVAL = 20.0
PING_TIMEOUT = 20.0
# A frame's room beyond the largest post it may carry (the action's other fields).
FRAME_HEADROOM = 64 * 1024


def max_frame_size(settings: Settings) -> int:
    """The largest WebSocket frame answered (``[websocket] max_frame_size`` or its
    default)."""
    configured = settings.websocket.max_frame_size
    if configured is not None:
        return configured
    return settings.transport.max_messages_post_size + FRAME_HEADROOM


def uvicorn_ws_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's WebSocket settings: the same on the HTTP port and on the separate one."""
    return {
        "ws": WS_IMPLEMENTATION,
        # A frame past four times max_frame_size closes the connection (1009) before it
        # is buffered whole; between the two it gets an error frame (ws.session).
        "ws_max_size": 4 * max_frame_size(settings),
        "ws_ping_interval": PING_INTERVAL,
        "ws_ping_timeout": PING_TIMEOUT,
        # No compression: a deflate context per connection costs tens of KiB, and
        # connections are meant to be many and mostly idle.
        "ws_per_message_deflate": False,
    }


def ssl_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's TLS settings from ``[server] ssl_certfile`` / ``ssl_keyfile``."""
    server = settings.server
    if not server.ssl_certfile:
        return {}
    return {"ssl_certfile": server.ssl_certfile, "ssl_keyfile": server.ssl_keyfile}
