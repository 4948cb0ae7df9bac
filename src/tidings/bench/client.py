"""A minimal keep-alive HTTP/1.1 client for the request loops: one connection per loop,
one request in flight on it, requests written as prebuilt bytes, answers parsed by
httptools (the parser uvicorn uses).

Why not aiohttp here: measured on the 2-core machine, an aiohttp request costs the
client about 180 us of CPU, this one about 20 us; at 10,000 requests/s that is the
difference between the bench taking most of the machine and a tenth of it. (aiohttp
still creates and deletes the queues, where cost does not matter.)
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools


class ConnectionFailed(Exception):
    """The connection broke or could not be made; ``kind`` is what the report counts."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    tls: bool
    prefix: str  # the URL's path, before /v2
    host_header: bytes

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        host = parts.hostname or "127.0.0.1"
        return cls(host, port, tls, parts.path.rstrip("/"), f"Host: {parts.netloc}\r\n".encode())

    async def connect(self, timeout: float) -> Connection:
        loop = asyncio.get_running_loop()
        context = ssl.create_default_context() if self.tls else None
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(
                    Connection, self.host, self.port, ssl=context,
                    server_hostname=self.host if context else None,
                ),
                timeout,
            )
        except ConnectionRefusedError as exc:
            raise ConnectionFailed("connection refused") from exc
        except TimeoutError as exc:
            raise ConnectionFailed("connect timeout") from exc
        except OSError as exc:
            raise ConnectionFailed(f"cannot connect: {type(exc).__name__}") from exc
        return protocol


class Connection(asyncio.Protocol):
    """One connection; ``request`` sends one request and returns (status, body)."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.chunks: list[bytes] = []
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.headers_done = False
        self.framed = False  # the answer says where its body ends (length or chunks)
        self.closed = False
        self.keep_alive = True
        self.failure = "server disconnected"

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they behave as one.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.failure = "unreadable response"
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self.headers_done and not self.framed and self.failure == "server disconnected":
            # A body delimited by the end of the connection (HTTP/1.0 style) is complete.
            waiter.set_result((self.parser.get_status_code(), b"".join(self.chunks)))
        else:
            waiter.set_exception(ConnectionFailed(self.failure))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) in (14, 17) and name.lower() in (b"content-length", b"transfer-encoding"):
            self.framed = True

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        waiter = self.waiter
        body = b"".join(self.chunks) if self.chunks else b""
        self.chunks.clear()
        self.headers_done = self.framed = False
        self.keep_alive = self.parser.should_keep_alive()
        if waiter is not None and not waiter.done():
            waiter.set_result((self.parser.get_status_code(), body))

    def request(self, data: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        self.waiter = waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return waiter

    def close(self, failure: str | None = None) -> None:
        if failure:
            self.failure = failure
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class Channel:
    """A request loop's connection, made again when the server closed it."""

    __slots__ = ("busy_since", "connection", "endpoint", "timeout")

    def __init__(self, endpoint: Endpoint, timeout: float) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.connection: Connection | None = None
        self.busy_since = 0.0  # monotonic time the request in flight was sent; 0 when idle

    async def send(self, data: bytes) -> tuple[int, bytes]:
        """(status, body) of one request; raises ConnectionFailed."""
        connection = self.connection
        if connection is None or connection.closed:
            connection = self.connection = await self.endpoint.connect(self.timeout)
        self.busy_since = time.monotonic()
        try:
            answer = await connection.request(data)
        except BaseException:
            connection.close()
            self.connection = None
            raise
        finally:
            self.busy_since = 0.0
        if not connection.keep_alive:
            connection.close()
            self.connection = None
        return answer

    def expire(self, now: float, limit: float) -> None:
        """Abort the request in flight if it has waited more than ``limit`` seconds."""
        if self.busy_since and now - self.busy_since > limit and self.connection is not None:
            self.connection.close("timeout")

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close("closed")
            self.connection = None


class RequestBuilder:
    """The bytes of a loop's requests: the headers are encoded once."""

    __slots__ = ("headers", "prefix")

    def __init__(self, endpoint: Endpoint, headers: dict[str, str]) -> None:
        self.prefix = endpoint.prefix.encode()
        lines = [endpoint.host_header]
        lines += [f"{name}: {value}\r\n".encode() for name, value in headers.items()]
        self.headers = b"".join(lines)

    def line(self, method: str, path: str) -> bytes:
        """``METHOD path HTTP/1.1`` and the headers: build once, reuse with ``bodiless``."""
        return f"{method} ".encode() + self.prefix + path.encode() + b" HTTP/1.1\r\n" + self.headers

    def href(self, method: str, href: str) -> bytes:
        """A request to a path the server gave (a message's href), bodiless."""
        path = href.encode()
        if self.prefix and not path.startswith(self.prefix + b"/"):
            path = self.prefix + path
        return f"{method} ".encode() + path + b" HTTP/1.1\r\n" + self.headers + b"\r\n"

    @staticmethod
    def bodiless(head: bytes) -> bytes:
        return head + b"\r\n"

    @staticmethod
    def with_body(head: bytes, body: bytes) -> bytes:
        return b"".join((
            head, b"Content-Type: application/json\r\nContent-Length: ",
            str(len(body)).encode(), b"\r\n\r\n", body,
        ))
