"""AWS Signature Version 4, verified as AWS publishes it ("Create a signed AWS API
request", "Authenticating requests: using query parameters").

A request carries its signature either in the ``Authorization`` header
(``AWS4-HMAC-SHA256 Credential=<key>/<date>/<region>/sqs/aws4_request,
SignedHeaders=<names>, Signature=<hex>``) or in the query (a presigned URL:
``X-Amz-Algorithm``, ``X-Amz-Credential``, ``X-Amz-Date``, ``X-Amz-Expires``,
``X-Amz-SignedHeaders``, ``X-Amz-Signature``). Verifying it means rebuilding what the
signer signed from what arrived: the canonical request (method, canonical URI, canonical
query, canonical headers, signed headers, payload hash), the string to sign (algorithm,
time stamp, credential scope, hash of the canonical request) and the HMAC chain of the
signing key, then comparing in constant time.

This module knows nothing of where secrets live: the auth strategies
(``admission.auth.aws``, ``admission.auth.keystone_ec2``) look the access key up and
call ``verify``. Errors are SQS's, with the codes and texts AWS answers.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote_to_bytes

from tidings.sqs.errors import (
    IncompleteSignature,
    MissingAuthenticationToken,
    RequestExpired,
    SignatureDoesNotMatch,
)

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "sqs"
TERMINATOR = "aws4_request"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# The longest a presigned URL may live (a week), as AWS allows.
MAX_EXPIRES = 604800
# What no legitimate credential exceeds (AWS: access key ids are at most 128 characters).
MAX_ACCESS_KEY_LENGTH = 256

_TIMESTAMP = re.compile(r"[0-9]{8}T[0-9]{6}Z")
_SCOPE_DATE = re.compile(r"[0-9]{8}")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")
# Query parameters of the presigned form; X-Amz-Signature is left out of what is signed.
_QUERY_AUTH = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
)
# Characters RFC 3986 leaves unreserved: the only ones SigV4 does not percent-encode.
_UNRESERVED = "-_.~"


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """What SigV4 signs, as received."""

    method: str
    path: str  # as sent, percent-encoded (latin-1 text of the raw bytes)
    query: str  # the raw query string (latin-1 text of the raw bytes)
    headers: Mapping[str, str]  # lower-case names; repeated headers joined with ","
    body: bytes


@dataclass(frozen=True, slots=True)
class Signature:
    """A request's signature and what it claims, parsed but not yet verified."""

    access_key: str
    date: str  # the credential scope's YYYYMMDD
    region: str
    service: str
    timestamp: str  # the request's time, YYYYMMDDTHHMMSSZ (X-Amz-Date, or Date converted)
    signed_headers: tuple[str, ...]  # lower case, sorted
    signature: str
    # Presigned URLs only: seconds after ``timestamp`` the URL stays valid.
    expires: int | None = None

    @property
    def presigned(self) -> bool:
        return self.expires is not None

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{TERMINATOR}"


# ---------------------------------------------------------------- parsing


def parse(request: SignedRequest) -> Signature:
    """The request's signature, in either form; raises ``MissingAuthenticationToken``
    when it has none and ``IncompleteSignature`` (or ``SignatureDoesNotMatch`` for a
    wrong scope, as AWS) when it is malformed."""
    authorization = request.headers.get("authorization")
    query = query_pairs(request.query)
    in_query = {name for name, _ in query if name.startswith(b"X-Amz-")}
    if authorization is not None:
        if b"X-Amz-Signature" in in_query or b"X-Amz-Credential" in in_query:
            raise IncompleteSignature(
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
                "Signature query string parameter or the Authorization header should be "
                "specified."
            )
        return _from_header(authorization, request.headers)
    if in_query & {b"X-Amz-Algorithm", b"X-Amz-Credential", b"X-Amz-Signature"}:
        return _from_query(query)
    raise MissingAuthenticationToken()


def _from_header(authorization: str, headers: Mapping[str, str]) -> Signature:
    algorithm, _, rest = authorization.strip().partition(" ")
    if algorithm != ALGORITHM:
        shown = algorithm[:40] if algorithm.isprintable() else "?"
        raise IncompleteSignature(f"Unsupported AWS 'algorithm': '{shown}'.")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, equals, value = part.strip().partition("=")
        if not equals or name in fields:
            raise IncompleteSignature(
                f"'{_shown(part.strip())}' not a valid key=value pair (missing equal-sign) "
                "in Authorization header."
                if not equals
                else f"Authorization header has {name} more than once."
            )
        fields[name] = value.strip()
    missing = [
        f"Authorization header requires '{name}' parameter."
        for name in ("Credential", "Signature", "SignedHeaders")
        if not fields.get(name)
    ]
    timestamp = headers.get("x-amz-date")
    if timestamp is None:
        timestamp = _from_date_header(headers.get("date"))
        if timestamp is None:
            missing.append(
                "Authorization header requires existence of either a 'X-Amz-Date' or a "
                "'Date' header."
            )
    if missing:
        raise IncompleteSignature(" ".join(missing))
    assert timestamp is not None
    return _signature(
        credential=fields["Credential"],
        timestamp=timestamp,
        signed_headers=fields["SignedHeaders"],
        signature=fields["Signature"],
        expires=None,
    )


def _from_query(query: list[tuple[bytes, bytes]]) -> Signature:
    found: dict[str, str] = {}
    for raw_name, raw_value in query:
        name = raw_name.decode("latin-1")
        if name in _QUERY_AUTH:
            if name in found:
                raise IncompleteSignature(f"The query parameter {name} is given more than once.")
            found[name] = raw_value.decode("utf-8", "replace")
    missing = [name for name in _QUERY_AUTH if not found.get(name)]
    if missing:
        raise IncompleteSignature(
            " ".join(f"AWS query-string parameters must include '{name}'." for name in missing)
            + " Re-examine the query-string parameters."
        )
    if found["X-Amz-Algorithm"] != ALGORITHM:
        raise IncompleteSignature(
            f"X-Amz-Algorithm only supports '{ALGORITHM}', not "
            f"'{_shown(found['X-Amz-Algorithm'])}'."
        )
    raw_expires = found["X-Amz-Expires"]
    if not raw_expires.isdigit() or len(raw_expires) > 7:
        raise IncompleteSignature("X-Amz-Expires should be a number of seconds.")
    expires = int(raw_expires)
    if not 1 <= expires <= MAX_EXPIRES:
        raise IncompleteSignature(
            f"X-Amz-Expires must be at least 1 and at most {MAX_EXPIRES} seconds (a week)."
        )
    return _signature(
        credential=found["X-Amz-Credential"],
        timestamp=found["X-Amz-Date"],
        signed_headers=found["X-Amz-SignedHeaders"],
        signature=found["X-Amz-Signature"],
        expires=expires,
    )


def _signature(
    *, credential: str, timestamp: str, signed_headers: str, signature: str, expires: int | None
) -> Signature:
    parts = credential.split("/")
    if len(parts) != 5 or not parts[0] or len(parts[0]) > MAX_ACCESS_KEY_LENGTH:
        raise IncompleteSignature(
            f"Credential should be scoped to a valid region, not '{_shown(credential)}'."
            if len(parts) != 5
            else "The access key id in the credential is not valid."
        )
    access_key, date, region, service, terminator = parts
    if not _TIMESTAMP.fullmatch(timestamp):
        raise IncompleteSignature(
            f"Date must be in ISO-8601 'basic format'. Got '{_shown(timestamp)}'. See "
            "http://en.wikipedia.org/wiki/ISO_8601"
        )
    if not _SCOPE_DATE.fullmatch(date) or not region:
        raise IncompleteSignature(
            f"Credential should be scoped to a valid region, not '{_shown(region)}'."
        )
    if service != SERVICE:
        raise SignatureDoesNotMatch(f"Credential should be scoped to correct service: '{SERVICE}'.")
    if terminator != TERMINATOR:
        raise SignatureDoesNotMatch(
            f"Credential should be scoped with a valid terminator: '{TERMINATOR}', not "
            f"'{_shown(terminator)}'."
        )
    if date != timestamp[:8]:
        raise SignatureDoesNotMatch(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of "
            f"date from HTTP: '{date}' != '{timestamp[:8]}', from '{timestamp}'."
        )
    names = signed_headers.split(";")
    if not all(_HEADER_NAME.fullmatch(name) for name in names):
        raise IncompleteSignature("SignedHeaders must be lower-case header names separated by ';'.")
    if "host" not in names:
        raise IncompleteSignature("'Host' must be a 'SignedHeader' in the AWS Authorization.")
    return Signature(
        access_key=access_key,
        date=date,
        region=region,
        service=service,
        timestamp=timestamp,
        signed_headers=tuple(sorted(set(names))),
        signature=signature,
        expires=expires,
    )


def _from_date_header(value: str | None) -> str | None:
    """The ``Date`` header (RFC 7231, or ISO 8601 basic) as an X-Amz-Date time stamp."""
    if value is None:
        return None
    value = value.strip()
    if _TIMESTAMP.fullmatch(value):
        return value
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def _shown(text: str) -> str:
    """``text`` fit to be quoted in an error message."""
    text = text[:80]
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


# ---------------------------------------------------------------- time


def check_time(signature: Signature, now: float, max_skew: int) -> None:
    """Refuse a request signed too far from ``now`` (header form: beyond ``max_skew``
    seconds either way) or a presigned URL past its expiry, with AWS's errors."""
    signed_at = datetime.strptime(signature.timestamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    at = signed_at.timestamp()
    current = datetime.fromtimestamp(now, UTC)
    window = f"{max_skew // 60} min." if max_skew % 60 == 0 else f"{max_skew} s."
    if at > now + max_skew:
        limit = datetime.fromtimestamp(now + max_skew, UTC)
        raise SignatureDoesNotMatch(
            f"Signature not yet current: {signature.timestamp} is still later than "
            f"{_stamp(limit)} ({_stamp(current)} + {window})"
        )
    if signature.expires is not None:
        if now > at + signature.expires:
            raise RequestExpired("Request has expired.")
        return
    if at < now - max_skew:
        limit = datetime.fromtimestamp(now - max_skew, UTC)
        raise SignatureDoesNotMatch(
            f"Signature expired: {signature.timestamp} is now earlier than "
            f"{_stamp(limit)} ({_stamp(current)} - {window})"
        )


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%SZ")


# ---------------------------------------------------------------- canonical request


def canonical_uri(path: str) -> str:
    """The path as sent, with dot segments and empty segments removed (RFC 3986 5.2.4,
    as AWS normalises), each byte outside the unreserved set and ``/`` percent-encoded:
    a path that arrived percent-encoded is encoded again, as every service but S3
    expects."""
    if not path:
        return "/"
    segments: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    normalized = "/".join(segments)
    if path.startswith("/"):
        normalized = "/" + normalized
    if path.endswith("/") and segments:
        normalized += "/"
    return quote(_raw_bytes(normalized or "/"), safe="/~")


def query_pairs(query: str) -> list[tuple[bytes, bytes]]:
    """The raw query string's parameters, decoded to bytes as a form is (``+`` is a
    space, as AWS reads it: botocore itself sends spaces so), in the order sent; a
    parameter without ``=`` has an empty value."""
    pairs: list[tuple[bytes, bytes]] = []
    if not query:
        return pairs
    for part in _raw_bytes(query).split(b"&"):
        if not part:
            continue
        name, _, value = part.replace(b"+", b" ").partition(b"=")
        pairs.append((unquote_to_bytes(name), unquote_to_bytes(value)))
    return pairs


def canonical_query(query: str, *, presigned: bool) -> str:
    """Every parameter but a presigned URL's X-Amz-Signature, name and value encoded
    (RFC 3986: all but unreserved characters), sorted by name then value."""
    encoded = sorted(
        (quote(name, safe=_UNRESERVED), quote(value, safe=_UNRESERVED))
        for name, value in query_pairs(query)
        if not (presigned and name == b"X-Amz-Signature")
    )
    return "&".join(f"{name}={value}" for name, value in encoded)


def header_value(value: str) -> str:
    """A header value as signed: trimmed, runs of white space made one space."""
    return " ".join(value.split())


def canonical_headers(headers: Mapping[str, str], names: tuple[str, ...]) -> str:
    """``name:value`` lines for the signed headers, each ending with a newline (a signed
    header the request lacks counts as empty: its signature cannot match)."""
    return "".join(f"{name}:{header_value(headers.get(name, ''))}\n" for name in names)


def payload_hashes(request: SignedRequest, signature: Signature) -> tuple[str, ...]:
    """What the signer may have put as the payload hash: the body's SHA-256, or what
    ``x-amz-content-sha256`` declares, which must then be the body's. An unsigned
    payload is accepted only for a presigned request without a body (a presigned URL
    with a body would otherwise let anyone holding it send anything)."""
    actual = hashlib.sha256(request.body).hexdigest() if request.body else EMPTY_SHA256
    declared = request.headers.get("x-amz-content-sha256")
    if declared is None and signature.presigned:
        for name, value in query_pairs(request.query):
            if name == b"X-Amz-Content-Sha256":
                declared = value.decode("latin-1")
    if declared is None:
        if signature.presigned and not request.body:
            return actual, UNSIGNED_PAYLOAD
        return (actual,)
    declared = declared.strip()
    if declared == UNSIGNED_PAYLOAD and signature.presigned and not request.body:
        return (UNSIGNED_PAYLOAD,)
    if declared.lower() != actual:
        raise SignatureDoesNotMatch(
            "The provided x-amz-content-sha256 header does not match what was computed."
        )
    return (declared,)


def canonical_request(request: SignedRequest, signature: Signature, payload_hash: str) -> str:
    return "\n".join(
        (
            request.method.upper(),
            canonical_uri(request.path),
            canonical_query(request.query, presigned=signature.presigned),
            canonical_headers(request.headers, signature.signed_headers),
            ";".join(signature.signed_headers),
            payload_hash,
        )
    )


def string_to_sign(signature: Signature, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()
    return "\n".join((ALGORITHM, signature.timestamp, signature.scope, digest))


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """HMAC-SHA256 chained over the scope, starting from ``"AWS4" + secret``."""
    key = ("AWS4" + secret).encode("utf-8")
    for part in (date, region, service, TERMINATOR):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


def compute(request: SignedRequest, signature: Signature, secret: str, payload_hash: str) -> str:
    """The hex signature ``secret`` gives this request."""
    key = signing_key(secret, signature.date, signature.region, signature.service)
    text = string_to_sign(signature, canonical_request(request, signature, payload_hash))
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def matches(request: SignedRequest, signature: Signature, secret: str) -> bool:
    """Whether the request was signed with ``secret`` (compared in constant time)."""
    given = signature.signature.encode("ascii", "replace")
    found = False
    for payload_hash in payload_hashes(request, signature):
        expected = compute(request, signature, secret, payload_hash).encode("ascii")
        found |= hmac.compare_digest(expected, given)
    return found


def verify(request: SignedRequest, signature: Signature, secret: str) -> None:
    """Raise ``SignatureDoesNotMatch`` unless the request was signed with ``secret``."""
    if not matches(request, signature, secret):
        raise SignatureDoesNotMatch()


def _raw_bytes(text: str) -> bytes:
    """The bytes a latin-1-decoded request line held (any other text: its UTF-8)."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")
