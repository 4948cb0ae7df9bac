"""The SQS face's ASGI application: recognise an SQS request, read it, authenticate its
signature, admit it by policy, run the operation and render the answer.

Two protocols, told apart by their headers:

* JSON: ``POST`` with ``X-Amz-Target: AmazonSQS.<Operation>`` (current SDKs);
* query: ``Action=<Operation>`` in a form-encoded ``POST`` body or in the query string
  (older SDKs, aws-cli v1, presigned URLs), at ``/`` or at a queue URL's path
  (``/<project>/<queue>``, which then stands for the QueueUrl), answered in XML.

Zaqar's API never sends either, and lives under ``/v2``: both share the HTTP port
(``is_sqs_request`` decides, from the headers alone).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import msgspec

from tidings.admission import policy
from tidings.admission.auth.aws import AwsAuthenticator, SignedRequest
from tidings.errors import Forbidden
from tidings.http.longpoll import ClientGone, race_client
from tidings.observe import requests as observed
from tidings.ops.context import Caller, Services
from tidings.sqs import errors, protocol
from tidings.sqs.context import Params, Result, SqsCall
from tidings.sqs.operations import OPERATIONS, Operation, lookup, run
from tidings.storage.fairness import current_tenant

log = logging.getLogger("tidings.sqs")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

# Form bodies larger than this are decoded in a thread (see _answer).
FORM_INLINE_LIMIT = 64 * 1024
JSON_TYPE = b"application/x-amz-json-1.0"
XML_TYPE = b"text/xml"
FORM_TYPE = b"application/x-www-form-urlencoded"
TARGET_PREFIX = "AmazonSQS."
# Client ids of SQS callers: derived from the access key, so one key is one sender.
CLIENT_ID_NAMESPACE = uuid.UUID("5b4f8f6e-2f43-4c1e-9a57-3f0c6f1d5a10")
# What the metrics and access lines call this transport.
TRANSPORT = "sqs"
# Zaqar's own names right under /v2: ``/v2/<name>`` is Zaqar's when it is one of these,
# else the queue URL path of a project called "v2".
ZAQAR_NAMES = frozenset(
    {"", "queues", "topics", "ping", "health", "pools", "flavors", "openapi.json", "ws"}
)


def is_sqs_request(scope: Scope) -> bool:
    """Whether an HTTP request is for the SQS face (cheap: method, path, headers).

    A POST with ``X-Amz-Target`` anywhere; outside Zaqar's ``/v2``, a form-encoded POST
    and a GET or POST with ``Action=`` in its query string. (Zaqar answers a form body
    under ``/v2`` with its own 400, and nothing of Zaqar's reads ``Action``.)
    """
    method = scope.get("method")
    if method == "POST":
        form = False
        for name, value in scope.get("headers", ()):
            if name == b"x-amz-target":
                return True
            if name == b"content-type":
                form = value[: len(FORM_TYPE)].lower() == FORM_TYPE
        if not form and not _has_action(scope.get("query_string", b"")):
            return False
    elif method != "GET" or not _has_action(scope.get("query_string", b"")):
        return False
    return not _is_zaqar_path(scope.get("path", "/"))


def _has_action(query: bytes) -> bool:
    return query.startswith(b"Action=") or b"&Action=" in query


def _is_zaqar_path(path: str) -> bool:
    if path != "/v2" and not path.startswith("/v2/"):
        return False
    rest = path[4:]
    return "/" in rest or rest in ZAQAR_NAMES


def is_json_request(scope: Scope) -> bool:
    """The JSON protocol: a POST naming its operation in ``X-Amz-Target``."""
    if scope.get("method") != "POST":
        return False
    return any(name == b"x-amz-target" for name, _ in scope.get("headers", ()))


def max_request_size(svc: Services) -> int:
    """A request's largest body: the largest messages' text as a client may encode it
    (non-ASCII text percent-encoded, or as JSON ``\\u`` escapes: up to three times its
    UTF-8 size), plus room for attributes."""
    return 3 * svc.settings.transport.max_messages_post_size + 256 * 1024


@dataclass(slots=True)
class _Exchange:
    """One request as it is being answered (what its metrics and log line need)."""

    request_id: str
    json: bool
    operation: str = observed.UNKNOWN
    project: str | None = None


class SqsApp:
    def __init__(self, services: Services, authenticator: AwsAuthenticator) -> None:
        self._svc = services
        self._authenticator = authenticator
        self._max_body = max_request_size(services)
        # botocore's SQS model, read on the first SQS request (_model_ready): importing
        # botocore costs ~0.4 s of CPU and ~10 MiB, which a worker that serves no SQS
        # request need not pay.
        self._model: asyncio.Task[None] | None = None

    async def close(self) -> None:
        await self._authenticator.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        exchange = _Exchange(str(uuid.uuid4()), is_json_request(scope))
        try:
            await self._model_ready()
            status, payload, headers = await self._answer(scope, receive, exchange)
        except errors.SqsError as exc:
            status, payload, headers = _error(exc, exchange)
        except Exception:
            log.exception("SQS request %s failed", exchange.request_id)
            internal = errors.InternalError("The request could not be completed.")
            status, payload, headers = _error(internal, exchange)
        headers.append((b"x-amzn-requestid", exchange.request_id.encode()))
        headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
        if observed.ENABLED:
            observed.request_finished(
                TRANSPORT,
                exchange.operation,
                status,
                time.perf_counter() - started,
                len(payload),
                exchange.request_id,
                exchange.project,
            )

    async def _model_ready(self) -> None:
        """Read the model once, on a thread (the event loop keeps serving meanwhile);
        concurrent first requests wait for the same read, and a failed one is retried."""
        if self._model is None or (self._model.done() and self._model.exception()):
            self._model = asyncio.create_task(asyncio.to_thread(protocol.load, OPERATIONS))
        await asyncio.shield(self._model)

    async def _answer(
        self, scope: Scope, receive: Receive, exchange: _Exchange
    ) -> tuple[int, bytes, Headers]:
        """Who calls (the signature), what they ask (the operation, its parameters), and
        whether the policy lets them; then the operation's result."""
        body = await _read_body(receive, self._max_body)
        headers = _headers(scope)
        path = _raw_path(scope)
        who = await self._authenticator.authenticate(
            SignedRequest(
                method=scope["method"],
                path=path,
                query=scope.get("query_string", b"").decode("latin-1"),
                headers=headers,
                body=body,
            ),
            self._svc.clock(),
        )
        exchange.project = who.identity.project
        caller = Caller(
            project=who.identity.project,
            client_id=str(uuid.uuid5(CLIENT_ID_NAMESPACE, who.access_key)),
            roles=who.identity.roles,
            user_id=who.identity.user_id,
        )
        if exchange.json:
            name = _target(headers)
            operation = lookup(name)
            exchange.operation = name
            params = protocol.from_json(name, _json_body(body))
            queue_path = None
        else:
            pairs = _form(scope.get("query_string", b""))
            if body and headers.get("content-type", "").lower().startswith(FORM_TYPE.decode()):
                # parse_qsl is pure Python (~0.3 s for a megabyte of %XX escapes): a large
                # form is decoded off the event loop, which serves everyone else.
                if len(body) > FORM_INLINE_LIMIT:
                    pairs += await asyncio.to_thread(_form, body)
                else:
                    pairs += _form(body)
            name = _action(pairs)
            operation = lookup(name)
            exchange.operation = name
            params = protocol.from_query(name, protocol.query_tree(pairs))
            # At a queue URL's path (old SDKs), the path stands for the QueueUrl.
            queue_path = path if path != "/" else None
        protocol.check_required(
            name, params, queue_in_path=queue_path is not None, query=not exchange.json
        )
        try:
            policy.authorize(operation.action, caller, self._svc.settings)
        except Forbidden:
            raise errors.AccessDenied() from None
        current_tenant.set(caller.project)
        base_url = _base_url(self._svc, scope, headers)
        queue_url = None if queue_path is None else base_url + queue_path
        call = SqsCall(self._svc, caller, base_url, queue_url)
        result = await _run(call, operation, params, name, receive)
        if exchange.json:
            return 200, msgspec.json.encode(result), [(b"content-type", JSON_TYPE)]
        payload = protocol.xml_result(name, result, exchange.request_id)
        return 200, payload, [(b"content-type", XML_TYPE)]


def _target(headers: dict[str, str]) -> str:
    """The JSON protocol's operation: ``X-Amz-Target: AmazonSQS.<Operation>``."""
    target = headers.get("x-amz-target", "")
    if not target.startswith(TARGET_PREFIX):
        raise errors.InvalidAction(f"The target {errors.shown(target)} is not SQS's.")
    return target[len(TARGET_PREFIX) :]


def _json_body(body: bytes) -> Any:
    try:
        return msgspec.json.decode(body) if body else {}
    except (msgspec.DecodeError, RecursionError):
        raise errors.SerializationError("The request body is not valid JSON.") from None


def _action(pairs: list[tuple[str, str]]) -> str:
    """The query protocol's operation: its ``Action`` parameter."""
    actions = [value for key, value in pairs if key == "Action"]
    if not actions or not actions[0]:
        raise errors.MissingAction("The request must contain the parameter Action.")
    if len(actions) > 1:
        raise errors.InvalidQueryParameter("The parameter Action is given more than once.")
    return actions[0]


async def _run(
    call: SqsCall, operation: Operation, params: Params, name: str, receive: Receive
) -> Result:
    """The operation's result. A receive may wait (long polling): it is dropped when
    its client leaves meanwhile, rather than holding messages for nobody."""
    if name != "ReceiveMessage":
        return await run(call, operation, params)
    try:
        return await race_client(receive, run(call, operation, params))
    except ClientGone:
        raise errors.InvalidParameterValue("The client went away.") from None


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise errors.InvalidParameterValue("The client went away.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise errors.InvalidParameterValue(f"The request is larger than {limit} bytes.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _headers(scope: Scope) -> dict[str, str]:
    """Lower-case names; a repeated header's values joined with "," (as SigV4 signs them)."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return headers


def _raw_path(scope: Scope) -> str:
    """The path as sent (percent-encoded), as signatures and queue URLs have it."""
    raw = scope.get("raw_path")
    if raw:
        return str(raw.decode("latin-1"))
    return str(scope.get("path") or "/")


def _form(raw: bytes) -> list[tuple[str, str]]:
    """Form-encoded parameters (UTF-8; blank values kept: an empty MessageBody is the
    operation's to refuse)."""
    try:
        return parse_qsl(
            raw.decode("utf-8"),
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=protocol.MAX_VALUES,
        )
    except UnicodeDecodeError:
        raise errors.MalformedQueryString("The parameters are not valid UTF-8.") from None
    except ValueError:
        raise errors.InvalidQueryParameter(
            f"The request holds more than {protocol.MAX_VALUES} parameters."
        ) from None


def _base_url(svc: Services, scope: Scope, headers: dict[str, str]) -> str:
    configured = svc.settings.sqs.base_url
    if configured:
        return configured.rstrip("/")
    host = headers.get("host") or "{}:{}".format(*scope.get("server", ("127.0.0.1", 80)))
    return f"{scope.get('scheme', 'http')}://{host}"


def _error(exc: errors.SqsError, exchange: _Exchange) -> tuple[int, bytes, Headers]:
    fault = "Sender" if exc.sender else "Receiver"
    if not exchange.json:
        return (
            exc.status,
            protocol.xml_error(exc, exchange.request_id),
            [(b"content-type", XML_TYPE)],
        )
    body = msgspec.json.encode(
        {"__type": f"com.amazonaws.sqs#{exc.type_name}", "message": exc.message}
    )
    return (
        exc.status,
        body,
        [
            (b"content-type", JSON_TYPE),
            (b"x-amzn-query-error", f"{exc.code};{fault}".encode()),
        ],
    )
