"""Pre-signed URL creation (``POST /v2/queues/{q}/share``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tidings import signing
from tidings.errors import BadRequest, InvalidBody
from tidings.ops.context import Caller, Services
from tidings.ops.validation import EMPTY_BODY, check_queue_name, require_object

KNOWN_KEYS = frozenset({"methods", "paths", "expires"})
SHAREABLE = ("messages", "subscriptions", "claims")
DEFAULT_LIFETIME = timedelta(days=1)


def _set_text(items: Any) -> str:
    # Python's set notation, as Zaqar prints it, in a stable order.
    return "{" + ", ".join(sorted({repr(item) for item in items})) + "}"


def _paths(queue: str, value: Any) -> list[str]:
    if not value:
        value = ["messages"]
    if not isinstance(value, list):
        raise BadRequest("`paths` should be a list")
    invalid = [p for p in value if not isinstance(p, str) or p not in SHAREABLE]
    if invalid:
        raise BadRequest(f"Invalid paths: {_set_text(invalid)}")
    return [f"/v2/queues/{queue}/{p}" for p in value]


def _methods(value: Any) -> list[str]:
    if not value:
        return ["GET"]
    if not isinstance(value, list):
        raise BadRequest("`methods` should be a list")
    if not all(isinstance(m, str) for m in value):
        raise BadRequest("`methods` should be a list of strings")
    return value


def _expires(value: Any, now: datetime) -> datetime:
    if value is None:
        return now + DEFAULT_LIFETIME
    try:
        as_integer = int(value)
    except (TypeError, ValueError, OverflowError):
        pass
    else:
        raise BadRequest(
            "`expires` should be date format, for example 2016-01-01T00:00:00, "
            f"not integer value: {as_integer}"
        )
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):  # overflow: a zone pushing it past year 1..9999
        raise BadRequest(f"Unable to parse date string {value!r}") from None
    if moment <= now:
        raise BadRequest("`expires` is lower than the current time")
    return moment


def share_create(svc: Services, caller: Caller, queue: str, document: Any) -> signing.SignedUrl:
    """Sign access to some of a queue's resources; the queue need not exist.

    Checked in Zaqar's order: body, unknown keys, paths, the secret key, methods, expiry.
    Methods are not validated (``["FOO"]`` signs), as in Zaqar.
    """
    check_queue_name(caller.project, queue)
    if document is None:
        raise InvalidBody(EMPTY_BODY)
    body = require_object(document)
    unknown = set(body) - KNOWN_KEYS
    if unknown:
        raise BadRequest(f"Unknown keys: {_set_text(unknown)}")
    paths = _paths(queue, body.get("paths"))
    secret_key = svc.settings.signed_url.secret_key
    if secret_key is None:
        raise BadRequest("The `key` can't be None")
    methods = _methods(body.get("methods"))
    now = datetime.fromtimestamp(svc.clock(), UTC).replace(tzinfo=None)
    expires = _expires(body.get("expires"), now)
    return signing.create(secret_key, paths, methods, caller.project, expires)
