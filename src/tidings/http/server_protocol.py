"""uvicorn's httptools protocol with the connection limits uvicorn lacks.

uvicorn (httptools) bounds nothing before a request's head is complete: a header may
grow without limit (httptools joins its pieces quadratically), a connection that sends
nothing or stops mid-head or mid-body is kept forever, and its ``limit_concurrency``
counts idle connections as requests. This subclass adds, per connection:

* a head budget: ``max_header_size`` bytes of request line and headers (431) and
  ``max_url_length`` bytes of URL (414), counted as bytes arrive, so an endless header
  costs at most one read past the limit;
* ``header_timeout`` for the whole head, from connect or from the first byte of a
  following request (408, or a silent close when nothing was sent);
* ``body_timeout`` for the whole body, from the end of its head: the connection is
  closed, buffered chunks are dropped and the app's ``receive()`` gets
  ``http.disconnect``;
* ``max_connections`` per worker: past it a new connection gets a 503 and is closed;
* ``max_concurrent_requests`` per worker: requests past it get a 503 in Zaqar's format (HTTP
  requests only: a WebSocket connection's long-lived task is not one).

uvicorn's own ``timeout_keep_alive`` closes idle keep-alive connections. This module
uses uvicorn internals; ``pyproject.toml`` pins the versions it was written against
and ``tests/reliability/test_connection_limits.py`` fails if they move.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import resource
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, cast

import httptools
import msgspec
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from tidings.config import ServerSettings
from tidings.ids import new_id
from tidings.observe import requests as observed
from tidings.ops import waiting

# After refusing a request head, keep reading (and discarding) for a moment so that a
# client still sending gets the answer instead of a reset; bounded in time and bytes.
LINGER_SECONDS = 2.0
LINGER_BYTES = 4 * 1024 * 1024
# Per header: ": " and CRLF besides its name and value.
HEADER_OVERHEAD = 4
# Descriptors a worker needs besides its clients: listening socket, store, logs, webhooks.
SPARE_DESCRIPTORS = 256
# After request bodies were dropped, wait this long (their app tasks end meanwhile), then
# give the freed heap back to the system.
HEAP_TRIM_DELAY = 1.0
# A response body up to this size is copied behind its head, to go out in one send().
COALESCE_LIMIT = 16 * 1024


def raise_descriptor_limit(max_connections: int) -> None:
    """Raise the soft descriptor limit (inherited by workers) to fit ``max_connections``.

    Past the limit accept() fails and new clients are reset instead of refused with a 503.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + SPARE_DESCRIPTORS
    if soft != resource.RLIM_INFINITY and soft < wanted:
        ceiling = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, ceiling), hard))


def _load_malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim(), or None elsewhere."""
    # The process's own symbols: no library search (find_library would run ldconfig).
    trim: Callable[[int], int] | None = getattr(ctypes.CDLL(None), "malloc_trim", None)
    return trim


class HeapTrim:
    """Gives freed heap pages back to the system a moment after bodies were dropped.

    glibc keeps freed blocks under its mmap threshold (128 KiB and up) in the heap, so a
    burst of dropped request bodies, interleaved there with small long-lived objects,
    would leave the worker's RSS at its peak for good. One malloc_trim() per burst
    (milliseconds) releases them; nothing runs while no body is dropped.
    """

    _trim = _load_malloc_trim()
    _pending: asyncio.TimerHandle | None = None

    @classmethod
    def soon(cls, loop: asyncio.AbstractEventLoop) -> None:
        if cls._trim is not None and cls._pending is None:
            cls._pending = loop.call_later(HEAP_TRIM_DELAY, cls._run, loop)

    @classmethod
    def _run(cls, loop: asyncio.AbstractEventLoop) -> None:
        cls._pending = None
        if cls._trim is not None:
            # Off the event loop: on a large heap a trim can take a while.
            loop.run_in_executor(None, cls._trim, 0)


class _InFlight:
    """HTTP requests being answered by one server (its WebSocket tasks are not counted)."""

    count = 0


# Per uvicorn server state: each server in the process (the HTTP port, the separate
# WebSocket port) counts its own.
_in_flight: weakref.WeakKeyDictionary[ServerState, _InFlight] = weakref.WeakKeyDictionary()


def _counted(app: Any, in_flight: _InFlight) -> Callable[..., Awaitable[None]]:
    """``app``, counted in ``in_flight`` from now until it returns."""
    in_flight.count += 1

    async def run(scope: Any, receive: Any, send: Any) -> None:
        try:
            await app(scope, receive, send)
        finally:
            in_flight.count -= 1

    return run


class _OneSend:
    """The transport as a response cycle writes to it: a response's head is held until
    its body's first write, so that both leave in one send() (one system call and one
    TCP segment instead of two, for every response).

    Whatever else the cycle asks of the transport (closing it, say), and the next turn
    of the event loop, send a held head first: a head is never held back for long, and
    the bytes and their order on the wire do not change.
    """

    __slots__ = ("_head", "_loop", "_started", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._head: bytes | None = None
        self._started = False

    def write(self, data: bytes) -> None:
        if not self._started:
            self._started = True
            self._head = data
            self._loop.call_soon(self.flush)
            return
        head = self._head
        if head is not None:
            self._head = None
            if len(data) <= COALESCE_LIMIT:
                self._transport.write(head + data)
                return
            self._transport.write(head)
        self._transport.write(data)

    def flush(self) -> None:
        head = self._head
        if head is not None:
            self._head = None
            if not self._transport.is_closing():
                self._transport.write(head)

    def __getattr__(self, name: str) -> Any:
        self.flush()
        return getattr(self._transport, name)


async def _too_busy(scope: Any, receive: Any, send: Any) -> None:
    """The 503 past ``max_concurrent_requests``: Zaqar's error body and a request id,
    like every other answer (uvicorn's own is a bare text/plain one)."""
    body, request_id = _refusal(
        503,
        "Service Unavailable",
        "The server is handling as many requests as it may "
        "([server] max_concurrent_requests); try again shortly.",
    )
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        (b"x-openstack-request-id", request_id.encode()),
        (b"retry-after", b"1"),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _refusal(status: int, title: str, description: str) -> tuple[bytes, str]:
    """The body and request id of an answer given before the application ran, counted
    as a request (no operation, no project: the request was not read)."""
    body = msgspec.json.encode({"title": title, "description": description})
    # Every response has one, even those refused before the application runs.
    request_id = f"req-{new_id()}"
    if observed.ENABLED:
        observed.request_finished(
            "http", observed.UNKNOWN, status, 0.0, len(body), request_id, None
        )
    return body, request_id


class _HeadRefused(Exception):
    """Raised from a parser callback to stop parsing a head that broke a limit."""


def error_response(status: int, title: str, description: str) -> bytes:
    """A complete HTTP/1.1 answer in Zaqar's error format, closing the connection."""
    body, request_id = _refusal(status, title, description)
    return b"".join(
        [
            STATUS_LINE[status],
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"x-openstack-request-id: %s\r\n" % request_id.encode(),
            b"connection: close\r\n\r\n",
            body,
        ]
    )


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """One HTTP/1.1 connection, with the limits of ``[server]`` enforced."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: ServerSettings,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        # uvicorn's check also counts idle connections; requests are counted here instead.
        self.limit_concurrency = None
        # uvicorn annotates it int, but only hands it to call_later: fractions work.
        self.timeout_keep_alive = limits.keepalive_timeout  # type: ignore[assignment]
        # The head's clock is a deadline; its timer is only re-armed when it fires, so a
        # busy keep-alive connection does not create a timer per request.
        self._head_deadline: float | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        self._awaiting_head = True  # between requests or inside a head
        self._head_started = False  # a request line has begun
        self._raw_head_bytes = 0  # bytes read while awaiting a head
        self._read_counted = False  # the current read went into _raw_head_bytes whole
        self._head_uncounted = False  # a head began where reads were not counted
        self._in_body = False
        self._refusal: bytes | None = None
        self._deferred_refusal: bytes | None = None  # sent once earlier answers are out
        self._discarding = False  # answered and closing: input is read and dropped
        self._discarded = 0
        # Looked up once per connection: a weak-keyed lookup per request costs more.
        self._in_flight = _in_flight.setdefault(server_state, _InFlight())

    @classmethod
    def factory(cls, limits: ServerSettings) -> type[asyncio.Protocol]:
        """What to pass as uvicorn's ``http=``: this class bound to ``limits``."""
        # uvicorn only calls it with keyword arguments, as it would a class; a partial
        # (unlike a class made here) also pickles into spawned worker processes.
        return cast("type[asyncio.Protocol]", functools.partial(cls, limits=limits))

    # Connection lifecycle -------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            # Refused before uvicorn counts it; closing at once keeps descriptors free.
            self.transport = transport
            self._discarding = True
            transport.write(
                error_response(
                    503,
                    "Service Unavailable",
                    "This server has too many open connections; retry shortly.",
                )
            )
            transport.close()
            return
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        if self._in_body:
            HeapTrim.soon(self.loop)  # the client left mid-body
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            self._discarded += len(data)
            if self._discarded > LINGER_BYTES:
                self.transport.close()
            return
        self._read_counted = self._awaiting_head
        if self._awaiting_head:
            # Any byte while no request is in progress starts the head's clock (even
            # bytes the parser skips, such as blank lines).
            self._raw_head_bytes += len(data)
            if self._head_deadline is None:
                self._arm_head_timer()
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self._cancel_timers()
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if self._refusal is not None:
                self._refuse(self._refusal)
                return
            self.logger.warning("Invalid HTTP request received.")
            self._invalid_request()
            return
        if self._awaiting_head and self._raw_head_bytes > self.limits.max_header_size:
            # The head goes on past the limit without ending: refuse before the parser
            # buffers any more of it.
            self._refuse(self._head_too_large())
        elif self._in_body and self._body_timer is None:
            self._body_timer = self.loop.call_later(
                self.limits.body_timeout, self._body_timed_out
            )

    # Parser callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_started = True
        if not self._read_counted:
            self._head_uncounted = True  # pipelined after a body in the same read
        if self._head_deadline is None:
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        # Checked when the head is whole: reads before this one were under the limit
        # (data_received checks), so at most one read past it was parsed. Heads that
        # arrived in fewer bytes than the limit need no counting.
        if len(self.url) > self.limits.max_url_length:
            self._stop_parsing(
                error_response(
                    414,
                    "URI Too Long",
                    f"The request URL exceeds {self.limits.max_url_length} bytes "
                    "([server] max_url_length).",
                )
            )
        if self._head_uncounted or self._raw_head_bytes > self.limits.max_header_size:
            size = len(self.url) + sum(len(n) + len(v) for n, v in self.headers)
            if size + HEADER_OVERHEAD * len(self.headers) > self.limits.max_header_size:
                self._stop_parsing(self._head_too_large())
        self._head_deadline = None
        self._awaiting_head = False
        self._head_started = False
        self._raw_head_bytes = 0
        self._read_counted = self._head_uncounted = False
        previous = self.cycle
        super().on_headers_complete()
        # No new cycle means an upgrade, which leaves this protocol.
        self._in_body = self.cycle is not previous
        if self._in_body:
            # Its task has not run yet: every write of the response goes through this.
            self.cycle.transport = cast("asyncio.Transport", _OneSend(self.transport, self.loop))

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_body = False
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        self._awaiting_head = True

    def on_response_complete(self) -> None:
        super().on_response_complete()
        refusal = self._deferred_refusal
        if refusal is None or self._response_in_progress() or self.pipeline:
            return
        self._deferred_refusal = None
        if not self.transport.is_closing():
            self._unset_keepalive_if_required()
            self._refuse(refusal)

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        in_flight = self._in_flight
        if in_flight.count >= self.limits.max_concurrent_requests:
            self.logger.warning("Exceeded [server] max_concurrent_requests.")
            app = _too_busy
        super()._start_asgi_task(cycle, _counted(app, in_flight))

    # Limits ---------------------------------------------------------------------------

    def _head_too_large(self) -> bytes:
        return error_response(
            431,
            "Request Header Fields Too Large",
            f"The request line and headers exceed {self.limits.max_header_size} bytes "
            "([server] max_header_size).",
        )

    def _stop_parsing(self, refusal: bytes) -> None:
        self._refusal = refusal
        raise _HeadRefused

    def _refuse(self, refusal: bytes) -> None:
        """Answer a refused head, then discard input until the client has read it."""
        self._cancel_timers()
        self._discarding = True
        if self._response_in_progress():
            # Pipelined behind requests still being answered: answer it after them.
            self._deferred_refusal = refusal
            return
        self.flow.resume_reading()
        self.transport.write(refusal)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._linger_timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _head_timer_fired(self) -> None:
        self._head_timer = None
        deadline = self._head_deadline
        if deadline is None or self.transport.is_closing():
            return  # no head is awaited now; the next one arms the timer again
        left = deadline - self.loop.time()
        if left > 0:
            self._head_timer = self.loop.call_later(left, self._head_timer_fired)
            return
        if self._head_started and not self._response_in_progress():
            self.transport.write(
                error_response(
                    408,
                    "Request Timeout",
                    f"The request head did not arrive within {self.limits.header_timeout:g} "
                    "seconds ([server] header_timeout).",
                )
            )
        self.transport.close()

    def shutdown(self) -> None:
        """Stopping: a request whose body is still arriving is refused (503) and dropped
        at once. It cannot be acknowledged before its body arrives, and waiting for it
        would hold the whole shutdown (a restart, a deploy) up to ``body_timeout``.
        Long polls answer at once too (``ops.waiting.stop_all``), not at their deadline."""
        waiting.stop_all()
        if self._in_body and not self.transport.is_closing():
            self._abandon_request(
                error_response(
                    503,
                    "Service Unavailable",
                    "The server is shutting down; send the request again.",
                )
            )
            return
        super().shutdown()

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if self.transport.is_closing():
            return
        self._abandon_request(
            error_response(
                408,
                "Request Timeout",
                f"The request body did not arrive within {self.limits.body_timeout:g} "
                "seconds ([server] body_timeout).",
            )
        )

    def _invalid_request(self) -> None:
        """Answer bytes that are not HTTP/1.1 in Zaqar's format (uvicorn's is plain text).

        Bytes after a complete request (say, a body longer than its Content-Length) are
        answered once the requests before them are; a request whose own body breaks the
        framing can never complete, so it is abandoned with this answer.
        """
        refusal = error_response(
            400,
            "Bad Request",
            "The request is not valid HTTP/1.1: check its request line, headers and "
            "framing (Content-Length, Transfer-Encoding).",
        )
        if self._in_body:
            self._abandon_request(refusal)
        else:
            self._refuse(refusal)

    def _abandon_request(self, refusal: bytes) -> None:
        """The request being read can never complete: close, answering ``refusal``
        unless an answer has begun."""
        cycle = self.cycle
        if cycle is not None and isinstance(cycle.transport, _OneSend):
            cycle.transport.flush()  # a response begun goes out as far as it got
        if cycle is not None and not cycle.response_complete:
            # As if the client had gone: the app's receive() gets http.disconnect (not
            # the chunks buffered so far) and whatever it sends is dropped.
            cycle.body = bytearray()
            cycle.disconnected = True
            cycle.message_event.set()
            HeapTrim.soon(self.loop)
            if not cycle.response_started:
                self.transport.write(refusal)
        self.transport.close()

    def _arm_head_timer(self) -> None:
        if self._head_deadline is None:
            self._head_deadline = self.loop.time() + self.limits.header_timeout
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(
                self._head_deadline - self.loop.time(), self._head_timer_fired
            )

    def _response_in_progress(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = self._linger_timer = None
        self._head_deadline = None
