"""One WebSocket connection: frames in, in order, through admission to the actions;
frames out (answers and pushes) through a bounded queue that one task writes.

Per connection: a token bucket of ``[websocket] max_frames_per_second`` (past it a
frame gets a 429 error frame), a frame size limit (``max_frame_size``: a larger frame
gets a 413 error frame; the server closes with 1009 past four times that), and a send
queue of ``max_send_queue`` frames and ``max_send_queue_bytes``: a reader that falls
further behind is closed with 1008 rather than growing the server's memory. Every error
frame leaves the connection open.

Auth (spec 8.4) under ``keystone`` and ``tokens``: until ``authenticate`` succeeds a
frame gets 403 "Not authentified." unless it carries a valid pre-signed set for its
action; afterwards every frame acts with the token (checked again by the strategy, so
a revoked token stops working) in the token's project, and the connection closes with
4003 when the token expires. Under ``noauth`` every frame names its own project.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from tidings.admission import identity
from tidings.admission.actions import Action
from tidings.admission.auth import Authenticator, Identity
from tidings.admission.gate import admit
from tidings.errors import NotFound, TidingsError, Unauthorized, cause_chain
from tidings.ids import new_id
from tidings.observe import requests as observed
from tidings.ops.context import Services, in_collection
from tidings.uvicorn_options import max_frame_size
from tidings.ws import frames
from tidings.ws.actions import ACTIONS, ActionContext, WsAction, params_of, queue_name_of

log = logging.getLogger("tidings.ws")

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# A close that is not out (and acknowledged) within this aborts the connection: a peer
# that stops reading must not hold it, and its buffers, forever.
CLOSE_TIMEOUT = 10.0

POLICY_VIOLATION = 1008
AUTH_EXPIRED = 4003
AUTH_EXPIRED_REASON = "Authentication expired."
OVERFLOW_REASON = "Send queue overflow: the client reads too slowly."

# Frames with a long-poll "wait" answered apart from the others (in tasks of their own)
# at once per connection; past it, such a frame is answered at once, without waiting.
MAX_WAITING_FRAMES = 8

AUTHENTIFIED = {"message": "Authentified."}
AUTH_FAILED = {"error": "Authentication failed."}
NOT_AUTHENTIFIED = {"error": "Not authentified."}
NOT_AUTHENTICATED = {"error": "Not authenticated."}

AUTHENTICATE = "authenticate"
# Zaqar's schema requires these headers of every action but the node-level ones.
REQUIRED_HEADERS = ("client-id", "x-project-id")
NODE_ACTIONS = frozenset({Action.HOME, Action.PING, Action.HEALTH})
# Actions on one message: signed like the HTTP request on .../messages/<id>.
ONE_MESSAGE_ACTIONS = frozenset({Action.MESSAGE_GET, Action.MESSAGE_DELETE})


class TokenBucket:
    """``rate`` frames per second on average, bursts of up to ``rate``."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._capacity = max(rate, 1.0)
        self._tokens = self._capacity
        self._clock = clock
        self._last = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class Session:
    """One accepted connection; implements ``notify.push.PushTarget``."""

    def __init__(
        self,
        svc: Services,
        authenticator: Authenticator,
        send: Send,
        *,
        abort: Callable[[], None] | None = None,
    ) -> None:
        settings = svc.settings
        self.connection_id = new_id()
        # The authenticated project (None until authenticated, and always under noauth).
        self.project: str | None = None
        self._svc = svc
        self._authenticator = authenticator
        self._send = send
        self._abort = abort
        self._auth_required = settings.auth_strategy != "noauth"
        self._identity: Identity | None = None
        self._token: str | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self._bucket = TokenBucket(settings.websocket.max_frames_per_second)
        self._rate = settings.websocket.max_frames_per_second
        self._frame_limit = max_frame_size(settings)
        self._queue_limit = settings.websocket.max_send_queue
        self._queue_bytes_limit = settings.websocket.max_send_queue_bytes
        self._out: deque[str | bytes] = deque()
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self._closing: tuple[int, str] | None = None
        self._ended = False
        # Frames waiting for messages (long polling), each in its own task: a wait does
        # not hold up the connection's other frames, whose answers may come first.
        self._waiting: set[asyncio.Task[None]] = set()
        # Each answered frame is measured (tidings.observe.requests) only when asked for.
        self._observed = observed.ENABLED

    # PushTarget ----------------------------------------------------------------------

    def send_frame(self, frame: str | bytes) -> bool:
        """Queue a frame without blocking; False (and a 1008 close) when it cannot be."""
        if self._ended or self._closing is not None:
            return False
        # A frame alone always fits (one answer may be large); behind others it must fit
        # the byte bound too, so a slow reader holds little memory however big frames are.
        if len(self._out) >= self._queue_limit or (
            self._out and self._queued_bytes + len(frame) > self._queue_bytes_limit
        ):
            log.warning(
                "closing WebSocket connection %s (1008): its send queue overflowed "
                "([websocket] max_send_queue = %d frames, max_send_queue_bytes = %d); "
                "the client reads too slowly",
                self.connection_id,
                self._queue_limit,
                self._queue_bytes_limit,
            )
            self._close(POLICY_VIOLATION, OVERFLOW_REASON, drop_queued=True)
            return False
        self._out.append(frame)
        self._queued_bytes += len(frame)
        self._wake.set()
        return True

    # Connection ----------------------------------------------------------------------

    async def run(self, receive: Receive) -> None:
        """Serve the connection (already accepted) until it ends."""
        writer = asyncio.create_task(self._write(), name=f"tidings-ws-{self.connection_id}")
        pushes = self._svc.push
        if pushes is not None:
            pushes.register(self)
        try:
            while True:
                message = await receive()
                kind = message.get("type")
                if kind == "websocket.disconnect":
                    break
                if kind != "websocket.receive" or self._closing is not None:
                    continue  # once closing, input is read and dropped until the end
                data = message.get("text")
                if data is None:
                    data = message.get("bytes")
                if isinstance(data, str | bytes):
                    await self._on_frame(data)
                if self._out:
                    # Let the writer run before the next frame: an answer that needs no
                    # I/O never yields, and the queue must only fill when the client
                    # does not read, not when its frames arrive back to back.
                    await asyncio.sleep(0)
        finally:
            self._ended = True
            if self._expiry is not None:
                self._expiry.cancel()
            if pushes is not None:
                pushes.connection_closed(self.connection_id)
            for task in self._waiting:  # nobody is left to answer
                task.cancel()
            writer.cancel()
            await asyncio.wait([writer])  # (a cancellation of this task still propagates)

    async def _write(self) -> None:
        """The one writer: queued frames in order, then the close when one is asked."""
        try:
            while True:
                if self._out:
                    frame = self._out.popleft()
                    self._queued_bytes -= len(frame)
                    if isinstance(frame, bytes):
                        await self._send({"type": "websocket.send", "bytes": frame})
                    else:
                        await self._send({"type": "websocket.send", "text": frame})
                elif self._closing is not None:
                    code, reason = self._closing
                    await self._send({"type": "websocket.close", "code": code, "reason": reason})
                    return
                else:
                    self._wake.clear()
                    await self._wake.wait()
        except OSError:
            return  # the client went away (uvicorn's ClientDisconnected)
        except Exception:  # a closed connection in some other form; the reader ends it
            log.debug("writing to WebSocket connection %s failed", self.connection_id,
                      exc_info=True)

    def _close(self, code: int, reason: str, *, drop_queued: bool = False) -> None:
        if self._closing is not None or self._ended:
            return
        self._closing = (code, reason)
        if drop_queued:
            self._out.clear()  # nobody reads them: free them now
            self._queued_bytes = 0
        self._wake.set()
        if self._abort is not None:
            asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self._abort)

    # Frames --------------------------------------------------------------------------

    async def _on_frame(self, data: str | bytes) -> None:
        binary = isinstance(data, bytes)
        started = time.perf_counter() if self._observed else 0.0
        if not self._bucket.take():
            refusal = frames.Refusal(
                429,
                {
                    "error": f"Too many frames: at most {self._rate:g} per second on one "
                    "connection ([websocket] max_frames_per_second)."
                },
            )
            self._refuse(refusal, binary, started)
            return
        size = _byte_length(data, self._frame_limit)
        if size > self._frame_limit:
            refusal = frames.Refusal(
                413,
                {
                    "error": f"The frame is {size} bytes; at most {self._frame_limit} are "
                    "accepted ([websocket] max_frame_size)."
                },
            )
            self._refuse(refusal, binary, started)
            return
        try:
            frame = frames.decode(data)
        except frames.Refusal as refusal:
            self._refuse(refusal, binary, started)
            return
        echo = frame.echo
        if frame.action == AUTHENTICATE:
            # Echoed without its headers and body: they hold the token.
            echo = {"action": AUTHENTICATE, "body": {}, "headers": {}, "api": frames.API_VERSION}
            status, body = await self._authenticate(frame)
        else:
            entry = ACTIONS.get(frame.action)
            if entry is not None and entry.waits(frame.body):
                if len(self._waiting) < MAX_WAITING_FRAMES:
                    task = asyncio.create_task(self._answer_waiting(frame, echo, started))
                    self._waiting.add(task)
                    task.add_done_callback(self._waiting.discard)
                    return
                status, body = await self._dispatch(frame, may_wait=False)
            else:
                status, body = await self._dispatch(frame)
        self._answer(frame, echo, status, body, started)

    async def _answer_waiting(
        self, frame: frames.Frame, echo: dict[str, Any], started: float
    ) -> None:
        status, body = await self._dispatch(frame)
        self._answer(frame, echo, status, body, started)

    def _answer(
        self, frame: frames.Frame, echo: dict[str, Any], status: int, body: Any, started: float
    ) -> None:
        try:
            answer = frames.encode(echo, status, body, frame.binary)
        except Exception as exc:  # a body that cannot be encoded: a bug, not the client's
            status, body = frames.error_reply(exc, f"encoding the answer to {frame.action}")
            answer = frames.encode(echo, status, body, frame.binary)
        self.send_frame(answer)
        if self._observed:
            self._finished(_operation(frame.action), status, started, answer, frame.headers)

    def _refuse(self, refusal: frames.Refusal, binary: bool, started: float) -> None:
        """Answer a frame refused before its action (rate, size, unreadable envelope)."""
        answer = frames.refusal_frame(refusal, binary)
        self.send_frame(answer)
        if self._observed:
            self._finished(observed.UNKNOWN, refusal.status, started, answer, None)

    def _finished(
        self,
        operation: str,
        status: int,
        started: float,
        answer: str | bytes,
        headers: dict[str, str] | None,
    ) -> None:
        project = self.project
        if project is None and headers:  # noauth, or not authenticated: what it named
            project = next(
                (value for name, value in headers.items() if name.lower() == "x-project-id"),
                None,
            )
        observed.request_finished(
            "websocket",
            operation,
            status,
            time.perf_counter() - started,
            _frame_size(answer),
            f"req-{new_id()}",
            project,
        )

    async def _authenticate(self, frame: frames.Frame) -> tuple[int, Any]:
        if not self._auth_required:
            return 200, AUTHENTIFIED  # noauth: nothing to check
        headers = frame.lowered()
        try:
            who = await self._authenticator.authenticate(headers)
        except TidingsError as exc:
            if exc.status >= 500:
                log.warning("authenticate answered %d: %s", exc.status, cause_chain(exc))
            return exc.status, AUTH_FAILED
        except Exception as exc:
            return frames.error_reply(exc, "action authenticate")
        claimed = headers.get("x-project-id")
        if claimed and claimed != who.project:
            return 403, AUTH_FAILED
        # A failed authenticate leaves an earlier success in place; this one replaces it.
        self._identity = who
        self._token = headers.get("x-auth-token")
        self.project = who.project
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if who.expires_at is not None:
            delay = max(0.0, who.expires_at - self._svc.clock())
            self._expiry = asyncio.get_running_loop().call_later(delay, self._expired)
        return 200, AUTHENTIFIED

    def _expired(self) -> None:
        self._expiry = None
        self._identity = None
        self._token = None
        self._close(AUTH_EXPIRED, AUTH_EXPIRED_REASON)

    async def _dispatch(self, frame: frames.Frame, *, may_wait: bool = True) -> tuple[int, Any]:
        entry = ACTIONS.get(frame.action)
        if entry is None:
            return 400, {"error": f"{frame.action} is not a valid action"}
        headers = frame.lowered()
        # The schema first, as Zaqar: before auth, so the answer says what is wrong.
        if (
            entry.action not in NODE_ACTIONS and not all(h in headers for h in REQUIRED_HEADERS)
        ) or not entry.schema_ok(frame.body):
            return 400, {"error": frames.SCHEMA_FAILED}
        signed_project: str | None = None
        if self._auth_required:
            if self._identity is None or self._token is None:
                signed_project = self._signed_project(entry, frame.body, headers)
                if signed_project is None:
                    return 403, NOT_AUTHENTIFIED
            else:
                claimed = headers.get("x-project-id")
                if claimed is not None and claimed != self._identity.project:
                    return 403, NOT_AUTHENTICATED
                # The strategy checks the token again (cached): revoked, it stops here.
                headers["x-auth-token"] = self._token
        try:
            caller = await admit(
                self._svc.settings,
                self._authenticator,
                entry.action,
                headers,
                params_of(frame.body),
                signed_project=signed_project,
                collection=entry.collection,
            )
            context = ActionContext(
                svc=self._svc,
                caller=in_collection(caller, entry.collection),
                target=self,
                binary=frame.binary,
                may_wait=may_wait,
            )
            reply = await entry.handler(context, frame.body)
        except Unauthorized as exc:
            if signed_project is None and self._identity is not None:
                # The token was revoked or ran out before the timer: as on expiry, once
                # this answer is queued.
                asyncio.get_running_loop().call_soon(self._expired)
            return frames.error_reply(exc, f"action {frame.action}")
        except Exception as exc:
            return frames.error_reply(exc, f"action {frame.action}")
        return reply.status, reply.body

    def _signed_project(
        self, entry: WsAction, body: dict[str, Any], headers: dict[str, str]
    ) -> str | None:
        """The project of a valid pre-signed set for this very request, else None."""
        if "url-signature" not in headers or entry.signed_method is None:
            return None
        path = signed_path(entry, body)
        if path is None:
            return None
        try:
            return identity.check_signature(
                headers,
                method=entry.signed_method,
                path=path,
                secret_key=self._svc.settings.signed_url.secret_key,
                now=self._svc.clock(),
            )
        except NotFound:
            return None


def signed_path(entry: WsAction, body: dict[str, Any]) -> str | None:
    """The path of the HTTP request this action stands for, which a signature must grant.

    ``.../messages`` for the actions on many messages, ``.../messages/<id>`` for those
    on one; None when the body names no (well-formed) queue or message.
    """
    name = queue_name_of(body, entry.collection)
    if not name or "/" in name:
        return None
    path = f"/v2/{entry.collection}/{name}/messages"
    if entry.action in ONE_MESSAGE_ACTIONS:
        message_id = body.get("message_id")
        if not isinstance(message_id, str) or not message_id or "/" in message_id:
            return None
        return f"{path}/{message_id}"
    return path


def _operation(action: str) -> str:
    """The operation a frame's action names: the Action's value, ``authenticate``, or
    ``unknown`` (never the client's own string: it becomes a metric label)."""
    if action == AUTHENTICATE:
        return AUTHENTICATE
    entry = ACTIONS.get(action)
    return observed.UNKNOWN if entry is None else entry.action.value


def _frame_size(frame: str | bytes) -> int:
    """A frame's bytes on the wire (text frames travel as UTF-8)."""
    if isinstance(frame, bytes) or frame.isascii():
        return len(frame)
    return len(frame.encode("utf-8"))


def _byte_length(data: str | bytes, limit: int) -> int:
    """The frame's size in bytes (text frames travel as UTF-8)."""
    if isinstance(data, bytes) or len(data) * 4 <= limit:
        return len(data)
    return len(data.encode("utf-8"))
