"""Pre-signed URLs: signatures byte-compatible with Zaqar's, and checking signed requests.

The string to sign is the sorted paths and the sorted methods (each joined with ``,``),
the project and the expiry (``%Y-%m-%dT%H:%M:%S``, naive UTC), separated by the two
characters backslash and ``n`` (not a newline: Zaqar's quirk, kept so that URLs signed
by either server verify on the other). The signature is its hex HMAC-SHA256.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from datetime import datetime

import msgspec

EXPIRES_FORMAT = "%Y-%m-%dT%H:%M:%S"
SEPARATOR = "\\n"  # backslash + n, as Zaqar signs


class SignedUrl(msgspec.Struct, frozen=True, kw_only=True):
    """What ``POST /v2/queues/{q}/share`` returns (field order as Zaqar's)."""

    paths: list[str]
    methods: list[str]
    project: str
    expires: str
    signature: str


def format_expires(moment: datetime) -> str:
    """The expiry as signed: naive UTC, whole seconds."""
    return moment.strftime(EXPIRES_FORMAT)


def parse_expires(raw: str) -> datetime | None:
    """A signed request's ``URL-Expires``; None unless exactly ``%Y-%m-%dT%H:%M:%S``."""
    try:
        moment = datetime.strptime(raw, EXPIRES_FORMAT)
    except ValueError:
        return None
    # strptime also takes unpadded fields ("2030-1-1T0:0:0"); only the canonical form.
    return moment if format_expires(moment) == raw else None


def sign(
    secret_key: str, paths: Iterable[str], methods: Iterable[str], project: str, expires: str
) -> str:
    """Hex HMAC-SHA256 of the string to sign; paths and methods are sorted here."""
    message = SEPARATOR.join(
        [",".join(sorted(paths)), ",".join(sorted(methods)), project, expires]
    )
    key = secret_key.encode("utf-8")
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).hexdigest()


def create(
    secret_key: str, paths: list[str], methods: list[str], project: str, expires: datetime
) -> SignedUrl:
    expires_text = format_expires(expires)
    return SignedUrl(
        paths=sorted(paths),
        methods=sorted(methods),
        project=project,
        expires=expires_text,
        signature=sign(secret_key, paths, methods, project, expires_text),
    )


def path_granted(path: str, granted: Iterable[str]) -> bool:
    """True when ``path`` is a granted path, or one with a single segment appended.

    So ``/v2/queues/q/messages`` grants ``/v2/queues/q/messages/{id}`` but neither
    ``/v2/queues/q/messagesX`` nor ``/v2/queues/qXmessages``. Paths are compared as
    text, never as patterns (Zaqar searches them as regular expressions).
    """
    for prefix in granted:
        if not prefix.startswith("/"):
            continue
        if path == prefix:
            return True
        if path.startswith(prefix + "/") and "/" not in path[len(prefix) + 1 :]:
            return True
    return False


def verify_headers(
    secret_key: str | None,
    *,
    method: str,
    path: str,
    project: str | None,
    signature: str,
    expires: str | None,
    methods: str | None,
    paths: str | None,
    now: datetime,
) -> bool:
    """Whether a request carrying ``URL-Signature`` may proceed.

    All of these must hold: a secret key is configured; the request method is one of
    ``URL-Methods`` (comma list, exact match); the request path is granted by one of
    ``URL-Paths`` (see ``path_granted``); ``URL-Expires`` is ``%Y-%m-%dT%H:%M:%S`` and
    later than ``now`` (naive UTC); ``X-Project-ID`` is present; and the signature
    recomputed from these headers (so over the request's project) equals
    ``URL-Signature``. Callers answer every failure the same way, as Zaqar does.
    """
    if secret_key is None or project is None or expires is None:
        return False
    method_list = (methods or "").split(",")
    path_list = (paths or "").split(",")
    if method not in method_list or not path_granted(path, path_list):
        return False
    moment = parse_expires(expires)
    if moment is None or moment <= now:
        return False
    expected = sign(secret_key, path_list, method_list, project, expires)
    return hmac.compare_digest(expected.encode("utf-8"), signature.encode("utf-8"))
