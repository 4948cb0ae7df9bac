"""One error hierarchy: every error carries its HTTP status and Zaqar's title.

Transports render these in one place each (HTTP in ``http/errors.py``); operations and
drivers only raise them.
"""

from __future__ import annotations


class TidingsError(Exception):
    """Base of every error a client may see."""

    status: int = 500
    title: str = "Internal server error"

    def __init__(self, description: str | None = None, *, title: str | None = None) -> None:
        super().__init__(description or self.title)
        self.description = description
        if title is not None:
            self.title = title


class BadRequest(TidingsError):
    """Semantic validation failed (limits, ranges, reserved metadata)."""

    status = 400
    title = "Invalid API request"


class InvalidParameter(BadRequest):
    """A query or route parameter has the wrong form."""

    title = "Invalid parameter"

    @classmethod
    def integer(cls, name: str) -> InvalidParameter:
        return cls(f'The "{name}" parameter is invalid. The value must be an integer.')

    @classmethod
    def boolean(cls, name: str) -> InvalidParameter:
        return cls(
            f'The "{name}" parameter is invalid. '
            'The value of the parameter must be "true" or "false".'
        )


class InvalidBody(BadRequest):
    """The request body is unreadable or has the wrong shape."""

    title = "Invalid request body"


class InvalidQueueIdentification(BadRequest):
    title = "Invalid queue identification"

    def __init__(self, noun: str = "queue") -> None:
        super().__init__(
            f"The format of the submitted {noun} name or project id is not valid.",
            title=f"Invalid {noun} identification",
        )


class HeaderError(BadRequest):
    """A required request header is missing or malformed; the title says which."""


class UnableToDelete(BadRequest):
    title = "Unable to delete"


class ClaimedMessage(TidingsError):
    """A claimed message was deleted without its live claim id."""

    status = 403
    title = "Unable to delete"

    def __init__(self) -> None:
        super().__init__("This message is claimed; it cannot be deleted without a valid claim ID.")


class Unauthorized(TidingsError):
    """No valid credentials. ``challenge`` goes out as ``WWW-Authenticate`` (Keystone's
    ``Keystone uri="..."``), telling the client where to get a token."""

    status = 401
    title = "Unauthorized"

    def __init__(self, description: str | None = None, *, challenge: str | None = None) -> None:
        super().__init__(description or "The request you have made requires authentication.")
        self.challenge = challenge


class Forbidden(TidingsError):
    status = 403
    title = "Not authorized"

    def __init__(self) -> None:
        super().__init__("You are not authorized to complete this action.")


class NotFound(TidingsError):
    status = 404
    title = "Not found"


class NotAcceptable(TidingsError):
    """The client does not accept JSON; rendered with an empty body, as Zaqar does."""

    status = 406
    title = "Not acceptable"


class Conflict(TidingsError):
    status = 409
    title = "Resource conflict"


class SubscriberTaken(Conflict):
    """Another live subscription of the source already has this subscriber."""

    def __init__(self) -> None:
        super().__init__(
            "Such subscription already exists. "
            "Subscriptions are unique by project + queue + subscriber URI."
        )


class UnsupportedMediaType(TidingsError):
    status = 415
    title = "415 Unsupported Media Type"


class ServiceUnavailable(TidingsError):
    """The backend failed or is unreachable; the client should retry later."""

    status = 503
    title = "Service temporarily unavailable"


class StorageError(Exception):
    """Raised by drivers when the backend fails; operations turn it into a 503."""


def cause_chain(error: BaseException) -> str:
    """The error and what caused it, on one line: how expected failures are logged.

    A backend outage makes many 503s; a traceback each would bury the log, and the
    cause (e.g. ``ConnectionError: ...``) is what an operator needs.
    """
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen and len(parts) < 8:
        seen.add(id(current))
        parts.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
    return " <- ".join(parts)
