"""Who is calling: the Client-ID, the project and its roles, and signed URLs.

Headers arrive as a plain mapping with lower-case names, whatever carried them (HTTP
headers, the ``headers`` object of a WebSocket request). The auth strategy
(``admission.auth``) says who the caller is; this module checks the headers against it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

from tidings.admission.auth import Identity
from tidings.config import TransportSettings
from tidings.errors import Forbidden, HeaderError, InvalidQueueIdentification, NotFound
from tidings.ops.context import Caller
from tidings.signing import verify_headers

Headers = Mapping[str, str]

_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f]")
# Client-IDs already checked in strict mode, and their canonical form: a client sends
# the same one on every request, and parsing a UUID costs more than the rest of the
# caller's checks. Bounded: cleared when full.
_CANONICAL_CLIENT_IDS: dict[str, str] = {}
_CANONICAL_CLIENT_IDS_MAX = 4096
_CACHED_CLIENT_ID_LENGTH = 64  # a UUID in any usual spelling ("urn:uuid:", braces)


def client_id(raw: str | None, limits: TransportSettings) -> str:
    """The Client-ID, canonical when it must be a UUID."""
    if not raw:
        raise HeaderError('The "Client-Id" header is required.', title="Missing header value")
    if limits.client_id_uuid_safe == "strict":
        known = _CANONICAL_CLIENT_IDS.get(raw)
        if known is not None:
            return known
        try:
            # Canonical form, so the echo filter matches however the client spells it.
            canonical = str(uuid.UUID(raw))
        except ValueError:
            raise HeaderError("Malformed hexadecimal UUID.", title="Wrong UUID value") from None
        if len(raw) <= _CACHED_CLIENT_ID_LENGTH:
            if len(_CANONICAL_CLIENT_IDS) >= _CANONICAL_CLIENT_IDS_MAX:
                _CANONICAL_CLIENT_IDS.clear()
            _CANONICAL_CLIENT_IDS[raw] = canonical
        return canonical
    if not limits.min_length_client_id <= len(raw) <= limits.max_length_client_id:
        raise HeaderError(
            title=(
                f"Length of client id must be at least {limits.min_length_client_id} "
                f"and no greater than {limits.max_length_client_id}."
            )
        )
    return raw


def project(raw: str | None) -> str:
    """The project id: present, not empty, and free of control characters."""
    if raw is None:
        raise HeaderError("The header X-PROJECT-ID was missing", title="Project-Id Missing")
    if not raw:
        raise HeaderError(
            "X-PROJECT-ID cannot be an empty string. "
            "Specify the right header X-PROJECT-ID and retry.",
            title="Empty project header not allowed",
        )
    # No store keeps NUL in text (PostgreSQL refuses it), and control characters keep
    # client projects apart from the topics' namespace (tidings.namespace).
    if _CONTROL_CHARACTER.search(raw) is not None:
        raise InvalidQueueIdentification()
    return raw


def roles(raw: str | None) -> frozenset[str]:
    """``X-Roles``: comma-separated, compared in lower case."""
    if not raw:
        return frozenset()
    return frozenset(role.strip().lower() for role in raw.split(",") if role.strip())


def caller(who: Identity, headers: Headers, limits: TransportSettings) -> Caller:
    """The caller, checked in Zaqar's order (Client-ID, then project).

    An authenticated identity's project is the credential's: ``X-Project-ID`` may be
    left out, and naming another project is a 403. Otherwise ``X-Project-ID`` names it.
    """
    found_client = client_id(headers.get("client-id"), limits)
    if who.authenticated:
        claimed = headers.get("x-project-id")
        if claimed and claimed != who.project:
            raise Forbidden()
        found_project = project(who.project)
    else:
        found_project = project(headers.get("x-project-id"))
    return Caller(
        project=found_project, client_id=found_client, roles=who.roles, user_id=who.user_id
    )


def signed_caller(signed_project: str, headers: Headers, limits: TransportSettings) -> Caller:
    """The caller of a request with a valid URL signature: the signed project, no roles."""
    found_client = client_id(headers.get("client-id"), limits)
    return Caller(project=project(signed_project), client_id=found_client)


def check_signature(
    headers: Headers, *, method: str, path: str, secret_key: str | None, now: float
) -> str | None:
    """The project a request with ``URL-Signature`` was signed for (None: not signed).

    The signature must satisfy ``signing.verify_headers``; every failure is the same
    plain 404, as in Zaqar, so a probe learns nothing.
    """
    signature = headers.get("url-signature")
    if signature is None:
        return None
    signed_project = headers.get("x-project-id")
    granted = verify_headers(
        secret_key,
        method=method,
        path=path,
        project=signed_project,
        signature=signature,
        expires=headers.get("url-expires"),
        methods=headers.get("url-methods"),
        paths=headers.get("url-paths"),
        now=datetime.fromtimestamp(now, UTC).replace(tzinfo=None),
    )
    if not granted or signed_project is None:
        raise NotFound(title="404 Not Found")
    return signed_project
