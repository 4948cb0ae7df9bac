"""``tokens``: static API tokens and AWS access keys, for deployments without OpenStack.

The client sends its token in ``X-Auth-Token``; the token decides the project, the user
and the roles (``X-Project-ID`` may be left out; naming another project is a 403). An
SQS client signs with an access key pair instead (SigV4, ``admission.sigv4``); the key
decides the same things.

The file named by ``[auth] tokens_file`` is JSON Lines, UTF-8, one record per line. A
token::

    {"sha256": "<64 hex digits>", "project": "p1", "user": "alice", "roles": ["member"],
     "created": "2025-01-01T00:00:00Z", "expires": "2025-02-01T00:00:00Z"}

an access key pair (for the SQS API)::

    {"access_key": "TDKA3X6P2Q7R4M5N8B9C", "secret_key": "<the secret>", "project": "p1",
     "user": "alice", "roles": ["member"], "created": "2025-01-01T00:00:00Z"}

(each record on one line; wrapped here for width).

* ``sha256``: the SHA-256 of the token's UTF-8 bytes, in lower-case hex. The token
  itself is never stored: ``tidings token create`` prints it once and appends this line.
  (Tokens are 256 random bits, so a fast hash is enough: nobody can guess back.)
* ``access_key`` (16 to 128 letters, digits or ``_``) and ``secret_key`` (16 to 256
  printable ASCII characters, no spaces): the secret IS stored, in clear, because SigV4
  verification needs it (the server recomputes each signature with it); keep the file
  private (mode 0600). ``tidings token create --aws`` prints a new pair once and
  appends this line.
* ``project`` is required; ``user`` (default none), ``roles`` (default none),
  ``created`` (free text, for operators) and ``expires`` (an RFC 3339 time with its
  offset, e.g. ``...Z``; default: never) are optional. Other keys are refused. A token
  or key past its ``expires`` is refused, and a WebSocket connection authenticated with
  a token is closed then (4003).
* Blank lines and lines starting with ``#`` are ignored. Delete a line to revoke its
  token or key. A malformed line is skipped (and logged with its number); it never stops
  the others from loading. An access key given twice: the later line wins.

The server looks at the file's size, mtime and inode at most once per
``RELOAD_INTERVAL`` and rereads it when they change, off the event loop. A missing or
unreadable file revokes every token and key until it is back (failing closed).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated

import msgspec

from tidings.admission.auth import Headers, Identity
from tidings.config import ConfigError, Settings
from tidings.errors import Unauthorized

log = logging.getLogger("tidings.auth")

TOKEN_HEADER = "x-auth-token"
# Seconds between two looks at the file: a change (or a revocation) takes effect
# within this, and a busy server stats the file no more often.
RELOAD_INTERVAL = 1.0
# Longer tokens are refused unhashed (ours are 43 characters).
MAX_TOKEN_LENGTH = 1024

Digest = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]+$")]
Role = Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f,]+$")]
# AWS's own bounds for access key ids; secrets: printable ASCII, as every SDK sends them.
AccessKeyId = Annotated[str, msgspec.Meta(pattern="^[A-Za-z0-9_]{16,128}$")]
SecretKey = Annotated[str, msgspec.Meta(pattern="^[\x21-\x7e]{16,256}$")]
Expiry = Annotated[datetime, msgspec.Meta(tz=True)]


class TokenRecord(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """A token's line of the tokens file."""

    sha256: Digest
    project: Name
    user: Name | None = None
    roles: list[Role] = msgspec.field(default_factory=list)
    created: str | None = None
    expires: Expiry | None = None


class AccessKeyRecord(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """An AWS access key pair's line of the tokens file (SigV4 needs the secret itself)."""

    access_key: AccessKeyId
    secret_key: SecretKey
    project: Name
    user: Name | None = None
    roles: list[Role] = msgspec.field(default_factory=list)
    created: str | None = None
    expires: Expiry | None = None


def token_hash(token: str) -> str:
    """What the file stores for ``token``."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def record_line(record: TokenRecord | AccessKeyRecord) -> bytes:
    """``record`` as one line of the file, newline included."""
    return msgspec.json.encode(record) + b"\n"


@dataclass(frozen=True, slots=True)
class Grant:
    """What one token grants, and the hash it was stored under."""

    digest: str
    identity: Identity


@dataclass(frozen=True, slots=True)
class KeyGrant:
    """What one access key grants, and its secret."""

    access_key: str
    secret_key: str
    identity: Identity


@dataclass(frozen=True, slots=True)
class TokenTable:
    """The tokens a file grants, by hash, its access keys, and what was wrong with its
    other lines."""

    by_hash: dict[str, Grant]
    errors: list[str]
    by_access_key: dict[str, KeyGrant] = field(default_factory=dict)


def _identity(record: TokenRecord | AccessKeyRecord) -> Identity:
    return Identity(
        project=record.project,
        user_id=record.user,
        roles=frozenset(role.strip().lower() for role in record.roles),
        authenticated=True,
        expires_at=None if record.expires is None else record.expires.timestamp(),
    )


def parse_tokens(data: bytes) -> TokenTable:
    by_hash: dict[str, Grant] = {}
    by_access_key: dict[str, KeyGrant] = {}
    errors: list[str] = []
    lines = data.split(b"\n")
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        try:
            fields = msgspec.json.decode(line)
        except msgspec.DecodeError as exc:
            if number == len(lines):
                # The last line without its newline: an append still being written.
                # The next look at the file (its size changes) reads it whole.
                continue
            errors.append(f"line {number}: {exc}")
            continue
        try:
            # The kind is told by its key: a token has "sha256", a key pair "access_key".
            if isinstance(fields, dict) and "access_key" in fields:
                pair = msgspec.convert(fields, AccessKeyRecord)
                by_access_key[pair.access_key] = KeyGrant(
                    pair.access_key, pair.secret_key, _identity(pair)
                )
            else:
                record = msgspec.convert(fields, TokenRecord)
                by_hash[record.sha256] = Grant(record.sha256, _identity(record))
        except msgspec.ValidationError as exc:
            # Never the secret in a log: msgspec's messages name the field, not its value.
            errors.append(f"line {number}: {exc}")
    return TokenTable(by_hash, errors, by_access_key)


# (inode, size, mtime in ns): when any changes, the file is read again.
Signature = tuple[int, int, int]


def read_tokens(path: Path) -> tuple[Signature, TokenTable]:
    """The file's signature and table (blocking: call at start-up or in a thread)."""
    with path.open("rb") as file:
        # Taken before reading: a write racing the read changes it again, so the next
        # look rereads the file.
        stat = os.fstat(file.fileno())
        data = file.read()
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns), parse_tokens(data)


def tokens_path(settings: Settings) -> Path:
    if not settings.auth.tokens_file:
        raise ConfigError(
            'auth_strategy = "tokens" needs [auth] tokens_file (env TIDINGS_AUTH__TOKENS_FILE); '
            "create it with `tidings token create --project P --tokens-file FILE`"
        )
    return Path(settings.auth.tokens_file)


def check_tokens_file(settings: Settings) -> None:
    """Refuse to start on a tokens file that is missing, unreadable or malformed."""
    path = tokens_path(settings)
    try:
        _, table = read_tokens(path)
    except OSError as exc:
        raise ConfigError(f"cannot read tokens file {path}: {exc}") from exc
    if table.errors:
        raise ConfigError(f"malformed tokens file {path}: " + "; ".join(table.errors[:5]))


_EMPTY = TokenTable({}, [])


class TokensFile:
    """The tokens file's current table, reread (off the event loop) when it changes."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self._path = path
        self._clock = clock
        self._lock = asyncio.Lock()
        self._signature: Signature | None = None
        self._table = _EMPTY
        self._failure: str | None = None
        # At start-up, before serving: reading here blocks nothing.
        self._apply(self._look(None))
        self._next_look = clock() + RELOAD_INTERVAL

    async def table(self) -> TokenTable:
        """The table as of at most ``RELOAD_INTERVAL`` ago."""
        now = self._clock()
        if now >= self._next_look:
            self._next_look = now + RELOAD_INTERVAL
            async with self._lock:
                self._apply(await asyncio.to_thread(self._look, self._signature))
        return self._table

    def _look(self, known: Signature | None) -> tuple[Signature, TokenTable] | str | None:
        """A new table, an error (the file is gone or unreadable), or None: unchanged."""
        try:
            stat = self._path.stat()
            if known == (stat.st_ino, stat.st_size, stat.st_mtime_ns):
                return None
            return read_tokens(self._path)
        except OSError as exc:
            return f"{type(exc).__name__}: {exc}"

    def _apply(self, outcome: tuple[Signature, TokenTable] | str | None) -> None:
        if outcome is None:
            return
        if isinstance(outcome, str):
            # Failing closed: a token revoked by replacing the file must not live on.
            if outcome != self._failure:
                log.error(
                    "tokens file %s unreadable, refusing every token: %s", self._path, outcome
                )
            self._failure, self._signature, self._table = outcome, None, _EMPTY
            return
        self._signature, table = outcome
        for error in table.errors:
            log.error("tokens file %s: skipped %s", self._path, error)
        if self._failure is not None:
            log.warning("tokens file %s readable again", self._path)
        log.info(
            "tokens file %s: %d token(s) and %d access key(s) loaded",
            self._path,
            len(table.by_hash),
            len(table.by_access_key),
        )
        self._failure = None
        self._table = table


class TokenAuthenticator:
    """Checks ``X-Auth-Token`` against the tokens file, rereading it when it changes."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic) -> None:
        # Shared with the SQS face's access keys (admission.auth.aws): one file, one watch.
        self.file = TokensFile(tokens_path(settings), clock)

    async def authenticate(self, headers: Headers) -> Identity:
        token = headers.get(TOKEN_HEADER)
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise Unauthorized()
        table = await self.file.table()
        digest = token_hash(token)
        # The key is a hash of the secret, so the lookup's timing says nothing about the
        # token; the comparison is constant-time anyway.
        found = table.by_hash.get(digest)
        if found is None or not hmac.compare_digest(found.digest, digest):
            raise Unauthorized()
        expires_at = found.identity.expires_at
        if expires_at is not None and time.time() >= expires_at:
            raise Unauthorized("The token has expired.")
        return found.identity

    async def close(self) -> None:
        return None
