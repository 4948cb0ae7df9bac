"""Real local receivers for notifications: a webhook listener and an SMTP server.

``WebhookListener`` is a threaded HTTP server on a free loopback port. It records every
request (path, method, headers, body, arrival time) and can be told, per path, to answer
the next N requests with an error status, to drop the connection without answering, to
answer slowly, never to answer at all (a tarpit, released when the listener stops or
the client hangs up; ``held`` counts the connections a tarpit holds right now), or
to answer 200 with a huge body (1.5 GB announced, streamed until the client hangs up)
or a gzip bomb (a small body that inflates to 512 MiB). ``SmtpSink`` is an aiosmtpd
server on a free loopback port (plain SMTP, no TLS, no AUTH) that records every message
it accepts.

Both are started and stopped by the fixtures ``webhook_listener`` and ``smtp_sink``;
a test-specific path (or address) keeps tests apart even if a listener were shared.
"""

from __future__ import annotations

import contextlib
import email
import email.message
import email.policy
import functools
import json
import select
import socket
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.server import free_port

WAIT_TIMEOUT = 20.0
# A tarpit holds a connection at most this long (or until the listener stops).
TARPIT_HOLD = 120.0
HUGE_BODY = 1_500_000_000
BOMB_SIZE = 512 * 1024 * 1024
_CHUNK = b"\0" * 65536


@functools.cache
def gzip_bomb() -> bytes:
    """A gzip stream of BOMB_SIZE zero bytes (about 500 KB), made once."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"\0" * (1 << 20)
    parts = [packer.compress(block) for _ in range(BOMB_SIZE // len(block))]
    return b"".join(parts) + packer.flush()


@dataclass(frozen=True)
class Recorded:
    """One request as the listener saw it (``at`` is ``time.monotonic()`` on arrival)."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float
    wall: float  # time.time() on arrival
    answered: str  # "200", "500", "drop", ...

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Rule:
    """What to do with the next ``times`` requests to a path (``None``: forever)."""

    action: str  # "status" | "drop" | "slow" | "tarpit" | "huge" | "gzip-bomb"
    times: int | None
    status: int = 500
    seconds: float = 0.0


@dataclass
class _State:
    lock: threading.Condition = field(default_factory=threading.Condition)
    requests: list[Recorded] = field(default_factory=list)
    rules: dict[str, list[_Rule]] = field(default_factory=dict)
    status: int = 204
    released: threading.Event = field(default_factory=threading.Event)
    held: dict[str, int] = field(default_factory=dict)  # path -> tarpit connections open


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection: drops affect only one

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _handle(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        with state.lock:
            rule = self._next_rule(state, path)
        answered = str(state.status)
        if rule is not None and rule.action in ("drop", "tarpit", "huge", "gzip-bomb"):
            answered = rule.action
        elif rule is not None and rule.action == "status":
            answered = str(rule.status)
        record = Recorded(
            method=self.command,
            path=path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            at=time.monotonic(),
            wall=time.time(),
            answered=answered,
        )
        with state.lock:
            state.requests.append(record)
            state.lock.notify_all()
        if rule is not None and rule.action == "slow":
            time.sleep(rule.seconds)
        if answered in ("drop", "tarpit"):
            if answered == "tarpit":
                self._hold(state, path)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if answered in ("huge", "gzip-bomb"):
            self._answer_big(answered)
            return
        status = int(answered)
        with contextlib.suppress(OSError):  # the client may have given up (slow answers)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def _hold(self, state: _State, path: str) -> None:
        """Answer nothing until the listener stops or the client hangs up (counted)."""
        with state.lock:
            state.held[path] = state.held.get(path, 0) + 1
        try:
            deadline = time.monotonic() + TARPIT_HOLD
            while not state.released.is_set() and time.monotonic() < deadline:
                readable, _, _ = select.select([self.connection], [], [], 0.05)
                if readable:
                    try:
                        if not self.connection.recv(65536):
                            return  # the client gave up (its timeout) or died
                    except OSError:
                        return
        finally:
            with state.lock:
                state.held[path] -= 1
                state.lock.notify_all()

    def _answer_big(self, kind: str) -> None:
        """200 with a body no client should read whole; stops when the client hangs up."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            if kind == "gzip-bomb":
                bomb = gzip_bomb()
                self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(bomb)))
                self.end_headers()
                self.wfile.write(bomb)
                return
            self.send_header("Content-Length", str(HUGE_BODY))
            self.end_headers()
            for _ in range(HUGE_BODY // len(_CHUNK)):
                self.wfile.write(_CHUNK)

    @staticmethod
    def _next_rule(state: _State, path: str) -> _Rule | None:
        rules = state.rules.get(path)
        if not rules:
            return None
        rule = rules[0]
        if rule.times is not None:
            rule.times -= 1
            if rule.times <= 0:
                rules.pop(0)
        return rule

    do_POST = _handle
    do_PUT = _handle
    do_GET = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    state: _State


class WebhookListener:
    """A webhook receiver on ``http://127.0.0.1:<port>``."""

    def __init__(self) -> None:
        self._state = _State()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = self._state
        self.port = int(self._server.server_address[1])
        self.base = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> WebhookListener:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._state.released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    # ------------------------------------------------------------------ set-up

    def new_path(self, prefix: str = "hook") -> str:
        return f"/{prefix}-{uuid.uuid4().hex[:12]}"

    def url(self, path: str) -> str:
        return self.base + path

    def fail(self, path: str, times: int | None, status: int = 500) -> None:
        """Answer the next ``times`` requests to ``path`` with ``status``."""
        self._add(path, _Rule("status", times, status=status))

    def drop(self, path: str, times: int | None) -> None:
        """Close the connection without any answer, ``times`` times."""
        self._add(path, _Rule("drop", times))

    def slow(self, path: str, seconds: float, times: int | None = None) -> None:
        """Wait ``seconds`` before answering, ``times`` times."""
        self._add(path, _Rule("slow", times, seconds=seconds))

    def tarpit(self, path: str, times: int | None = None) -> None:
        """Accept and read the request, then never answer (until the listener stops)."""
        self._add(path, _Rule("tarpit", times))

    def huge(self, path: str, times: int | None = None) -> None:
        """Answer 200 with a 1.5 GB body, streamed until the client hangs up."""
        self._add(path, _Rule("huge", times))

    def gzip_bomb(self, path: str, times: int | None = None) -> None:
        """Answer 200 with a gzip body that inflates to 512 MiB."""
        gzip_bomb()  # made before any request waits for it
        self._add(path, _Rule("gzip-bomb", times))

    def heal(self, path: str) -> None:
        """Forget every rule for ``path``: answer normally from now on."""
        with self._state.lock:
            self._state.rules.pop(path, None)

    def _add(self, path: str, rule: _Rule) -> None:
        with self._state.lock:
            self._state.rules.setdefault(path, []).append(rule)

    # ------------------------------------------------------------------ reading

    def requests(self, path: str | None = None) -> list[Recorded]:
        with self._state.lock:
            return [r for r in self._state.requests if path is None or r.path == path]

    def held(self, path: str | None = None) -> int:
        """Tarpit connections (to ``path``, or any) the client still keeps open."""
        with self._state.lock:
            return sum(n for p, n in self._state.held.items() if path is None or p == path)

    def wait_for(
        self,
        path: str,
        count: int,
        timeout: float = WAIT_TIMEOUT,
        where: Callable[[Recorded], bool] | None = None,
    ) -> list[Recorded]:
        """Wait until ``count`` requests (matching ``where``) reached ``path``; return all."""
        deadline = time.monotonic() + timeout
        with self._state.lock:
            while True:
                found = [
                    r for r in self._state.requests
                    if r.path == path and (where is None or where(r))
                ]
                left = deadline - time.monotonic()
                if len(found) >= count or left <= 0:
                    break
                self._state.lock.wait(min(left, 0.2))
        if len(found) < count:
            raise AssertionError(
                f"{path}: {len(found)} of {count} requests after {timeout}s: "
                f"{[r.body[:200] for r in found]}"
            )
        return found


# ---------------------------------------------------------------------- SMTP


@dataclass(frozen=True)
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    message: email.message.EmailMessage
    at: float

    @property
    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        assert part is not None
        content = part.get_content()
        assert isinstance(content, str)
        return content


class _SmtpHandler:
    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode()
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        self._sink.add(
            Mail(
                mail_from=str(envelope.mail_from),
                rcpt_tos=[str(r) for r in envelope.rcpt_tos],
                message=parsed,
                at=time.monotonic(),
            )
        )
        return "250 Message accepted for delivery"


class SmtpSink:
    """aiosmtpd on a free loopback port; plain SMTP, every message recorded."""

    def __init__(self) -> None:
        self.port = free_port()
        self._lock = threading.Condition()
        self._mails: list[Mail] = []
        self._controller = Controller(
            _SmtpHandler(self), hostname="127.0.0.1", port=self.port, ready_timeout=10
        )

    def start(self) -> SmtpSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def add(self, mail: Mail) -> None:
        with self._lock:
            self._mails.append(mail)
            self._lock.notify_all()

    def mails(self, to: str | None = None) -> list[Mail]:
        with self._lock:
            return [m for m in self._mails if to is None or to in m.rcpt_tos]

    def wait_for(self, to: str, count: int, timeout: float = WAIT_TIMEOUT) -> list[Mail]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = [m for m in self._mails if to in m.rcpt_tos]
                left = deadline - time.monotonic()
                if len(found) >= count or left <= 0:
                    break
                self._lock.wait(min(left, 0.2))
        if len(found) < count:
            raise AssertionError(f"{to}: {len(found)} of {count} mails after {timeout}s")
        return found


# ---------------------------------------------------------------------- fixtures


@pytest.fixture
def webhook_listener() -> Iterator[WebhookListener]:
    listener = WebhookListener().start()
    yield listener
    listener.stop()


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()
