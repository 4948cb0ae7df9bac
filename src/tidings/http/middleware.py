"""Request checks every ``/v2`` call passes, in Zaqar's order, and the request id."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import falcon.asgi

from tidings.config import TransportSettings
from tidings.errors import (
    HeaderError,
    InvalidParameter,
    InvalidQueueIdentification,
    NotAcceptable,
    NotFound,
)
from tidings.ids import new_id
from tidings.ops.context import Caller
from tidings.signing import verify_headers
from tidings.storage.fairness import current_tenant

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
ID_PARAMETERS = frozenset({"ids", "claim_id", "claim_ids"})


def _client_id(raw: str | None, limits: TransportSettings) -> str:
    if not raw:
        raise HeaderError('The "Client-Id" header is required.', title="Missing header value")
    if limits.client_id_uuid_safe == "strict":
        try:
            # Canonical form, so the echo filter matches however the client spells it.
            return str(uuid.UUID(raw))
        except ValueError:
            raise HeaderError("Malformed hexadecimal UUID.", title="Wrong UUID value") from None
    if not limits.min_length_client_id <= len(raw) <= limits.max_length_client_id:
        raise HeaderError(
            title=(
                f"Length of client id must be at least {limits.min_length_client_id} "
                f"and no greater than {limits.max_length_client_id}."
            )
        )
    return raw


def _project(raw: str | None) -> str:
    if raw is None:
        raise HeaderError("The header X-PROJECT-ID was missing", title="Project-Id Missing")
    if not raw:
        raise HeaderError(
            "X-PROJECT-ID cannot be an empty string. "
            "Specify the right header X-PROJECT-ID and retry.",
            title="Empty project header not allowed",
        )
    return raw


def _roles(raw: str | None) -> frozenset[str]:
    if not raw:
        return frozenset()
    return frozenset(role.strip().lower() for role in raw.split(",") if role.strip())


def _refuse_control_characters(req: falcon.asgi.Request, project: str) -> None:
    # No store keeps NUL in text (PostgreSQL refuses it); it is never meaningful here.
    # Control characters also keep client projects apart from the topics' namespace.
    if any(ord(c) < 0x20 for c in project):
        raise InvalidQueueIdentification()
    for name, value in req.params.items():
        if name in ID_PARAMETERS:
            continue  # ids that are not UUIDs simply match nothing
        values = value if isinstance(value, list) else [value]
        if any("\x00" in v for v in values):
            raise InvalidParameter(f'The "{name}" parameter is invalid.')


def _check_signed_url(
    req: falcon.asgi.Request, secret_key: str | None, clock: Callable[[], float]
) -> None:
    """A request with ``URL-Signature`` must satisfy ``signing.verify_headers``.

    Every failure is the same plain 404, as in Zaqar, so a probe learns nothing.
    """
    signature = req.get_header("URL-Signature")
    if signature is None:
        return
    granted = verify_headers(
        secret_key,
        method=req.method,
        path=req.path,
        project=req.get_header("X-Project-ID"),
        signature=signature,
        expires=req.get_header("URL-Expires"),
        methods=req.get_header("URL-Methods"),
        paths=req.get_header("URL-Paths"),
        now=datetime.fromtimestamp(clock(), UTC).replace(tzinfo=None),
    )
    if not granted:
        raise NotFound(title="404 Not Found")


class RequestChecks:
    """Validates headers after routing, so unknown paths and methods stay 404/405."""

    def __init__(
        self,
        limits: TransportSettings,
        *,
        secret_key: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._limits = limits
        self._secret_key = secret_key
        self._clock = clock

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.set_header("x-openstack-request-id", f"req-{new_id()}")

    async def process_resource(
        self,
        req: falcon.asgi.Request,
        resp: falcon.asgi.Response,
        resource: Any,
        params: dict[str, Any],
    ) -> None:
        if resource is None or not getattr(resource, "needs_caller", True):
            return
        # First, as in Zaqar; before the 405 too, so a signed probe of any method is a 404.
        _check_signed_url(req, self._secret_key, self._clock)
        if not hasattr(resource, f"on_{req.method.lower()}"):
            return  # falcon answers 405
        content_type = req.content_type or ""
        if content_type.startswith(FORM_MEDIA_TYPE) and (req.content_length or 0) > 0:
            raise HeaderError(
                "Endpoint does not accept `application/x-www-form-urlencoded` content; "
                "currently supported media type is `application/json`; specify proper "
                'client-side media type with the "Content-Type" header.',
                title="Invalid Content-Type",
            )
        if req.get_header("Accept") is not None and not req.client_accepts_json:
            raise NotAcceptable()
        client_id = _client_id(req.get_header("Client-ID"), self._limits)
        project = _project(req.get_header("X-Project-ID"))
        _refuse_control_characters(req, project)
        # Store work for this request queues behind this project's, not everyone's.
        current_tenant.set(project)
        req.context.caller = Caller(
            project=project, client_id=client_id, roles=_roles(req.get_header("X-Roles"))
        )
