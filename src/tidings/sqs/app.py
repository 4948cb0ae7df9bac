"""The SQS face's ASGI application: recognise an SQS request, read it, authenticate its
signature, admit it by policy, run the operation and render the answer.

Requests are SQS's when they are POSTs with ``X-Amz-Target: AmazonSQS.<Operation>``
(the JSON protocol) or form-encoded with ``Action=<Operation>`` (the query protocol, also
at a queue URL's path): Zaqar's API never uses either, so both share the HTTP port.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec

from tidings.admission import policy
from tidings.admission.auth.aws import AwsAuthenticator, SignedRequest
from tidings.errors import Forbidden
from tidings.ops.context import Caller, Services
from tidings.sqs import errors
from tidings.sqs.context import SqsCall
from tidings.sqs.operations import lookup, run
from tidings.storage.fairness import current_tenant

log = logging.getLogger("tidings.sqs")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_TYPE = b"application/x-amz-json-1.0"
TARGET_PREFIX = "AmazonSQS."
# Client ids of SQS callers: derived from the access key, so one key is one sender.
CLIENT_ID_NAMESPACE = uuid.UUID("5b4f8f6e-2f43-4c1e-9a57-3f0c6f1d5a10")


def is_sqs_request(scope: Scope) -> bool:
    """Whether an HTTP request is for the SQS face (cheap: headers only)."""
    if scope.get("method") != "POST":
        return False
    for name, value in scope.get("headers", ()):
        if name == b"x-amz-target":
            return bool(value.startswith(b"AmazonSQS."))
    return False


def max_request_size(svc: Services) -> int:
    """A request's largest body: a batch of the largest messages, base64 and JSON
    escapes included, plus room for attributes."""
    return 2 * svc.settings.transport.max_messages_post_size + 256 * 1024


class SqsApp:
    def __init__(self, services: Services, authenticator: AwsAuthenticator) -> None:
        self._svc = services
        self._authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = str(uuid.uuid4())
        try:
            body = await _read_body(receive, max_request_size(self._svc))
            status, payload = await self._answer(scope, body)
            headers = [(b"content-type", JSON_TYPE)]
        except errors.SqsError as exc:
            status, payload, headers = _json_error(exc)
        except Exception:
            log.exception("SQS request failed")
            status, payload, headers = _json_error(
                errors.InternalError("The request could not be completed.")
            )
        headers.append((b"x-amzn-requestid", request_id.encode()))
        headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _answer(self, scope: Scope, body: bytes) -> tuple[int, bytes]:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        target = headers.get("x-amz-target", "")
        operation = lookup(target[len(TARGET_PREFIX) :])
        try:
            params = msgspec.json.decode(body) if body else {}
        except msgspec.DecodeError:
            raise errors.SerializationError("The request body is not valid JSON.") from None
        if not isinstance(params, dict):
            raise errors.SerializationError("The request body must be a JSON object.")
        signed = SignedRequest(
            method=scope["method"],
            path=scope.get("raw_path", b"").decode("latin-1") or scope["path"],
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=headers,
            body=body,
        )
        who = await self._authenticator.authenticate(signed, self._svc.clock())
        caller = Caller(
            project=who.identity.project,
            client_id=str(uuid.uuid5(CLIENT_ID_NAMESPACE, who.access_key)),
            roles=who.identity.roles,
            user_id=who.identity.user_id,
        )
        try:
            policy.authorize(operation.action, caller, self._svc.settings)
        except Forbidden:
            raise errors.AccessDenied() from None
        current_tenant.set(caller.project)
        call = SqsCall(self._svc, caller, _base_url(self._svc, scope, headers), None, who.access_key)
        result = await run(call, operation, params)
        return 200, msgspec.json.encode(result)


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
            raise errors.InvalidParameterValue(
                f"The request is larger than {limit} bytes."
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _base_url(svc: Services, scope: Scope, headers: dict[str, str]) -> str:
    configured = svc.settings.sqs.base_url
    if configured:
        return configured.rstrip("/")
    host = headers.get("host") or "{}:{}".format(*scope.get("server", ("127.0.0.1", 80)))
    return f"{scope.get('scheme', 'http')}://{host}"


def _json_error(exc: errors.SqsError) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    body = msgspec.json.encode(
        {"__type": f"com.amazonaws.sqs#{exc.type_name}", "message": exc.message}
    )
    fault = "Sender" if exc.sender else "Receiver"
    return (
        exc.status,
        body,
        [
            (b"content-type", JSON_TYPE),
            (b"x-amzn-query-error", f"{exc.code};{fault}".encode()),
        ],
    )

