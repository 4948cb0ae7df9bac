"""``keystone``: the caller is whoever Keystone says the ``X-Auth-Token`` belongs to.

Tokens are validated with Keystone v3 (``GET /v3/auth/tokens``, the token in
``X-Subject-Token``) through a keystoneauth1 session that authenticates as the service
user of ``[keystone_authtoken]`` (``keystone_service``). keystoneauth1 blocks, so each
call runs on a small pool of threads and is bounded by ``[storage] operation_timeout``:
past it, or when Keystone cannot be reached, a token that is not cached gets a 503.
Validations are cached in-process for ``token_cache_time`` seconds (never past the
token's expiry), and concurrent requests with the same token share one call.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
import time
from dataclasses import dataclass

import cachetools
from keystoneauth1 import access
from keystoneauth1 import exceptions as ks_exceptions

from tidings.admission.auth import Headers, Identity
from tidings.admission.auth.keystone_service import KeystoneService
from tidings.config import Settings
from tidings.errors import Forbidden, ServiceUnavailable, Unauthorized

log = logging.getLogger("tidings.auth")

# A token is opaque printable ASCII (Fernet tokens are URL-safe base64); anything else
# is refused without asking Keystone.
TOKEN_FORM = re.compile(r"[\x21-\x7e]{1,8192}")


@dataclass(frozen=True, slots=True)
class _Validated:
    identity: Identity
    # time.monotonic() past which the validation is asked again.
    valid_until: float


class _TokenInvalid(Exception):
    """Keystone does not know the token (invalid, expired or revoked) or it has no project."""


class KeystoneAuthenticator:
    """Validates ``X-Auth-Token`` against Keystone v3; the token decides the project."""

    def __init__(self, settings: Settings) -> None:
        conf = settings.keystone_authtoken
        self._cache_time = conf.token_cache_time
        self._cache_size = conf.token_cache_size
        uri = conf.www_authenticate_uri or conf.auth_url
        self._challenge = f'Keystone uri="{uri}"'
        # The SQS face's EC2-credential strategy uses it too (auth.aws), and leaves
        # closing it to this one.
        self.service = KeystoneService(settings)
        # Keyed by the token's SHA-256, so the process holds no usable tokens.
        # Least recently used first out; an entry lapses at its valid_until.
        self._cache: cachetools.TLRUCache[bytes, _Validated] = cachetools.TLRUCache(
            maxsize=self._cache_size, ttu=_valid_until, timer=time.monotonic
        )
        self._inflight: dict[bytes, asyncio.Task[_Validated]] = {}

    async def authenticate(self, headers: Headers) -> Identity:
        token = headers.get("x-auth-token")
        if not token:
            raise self._unauthorized()
        if not TOKEN_FORM.fullmatch(token):
            raise self._unauthorized("The token is not valid.")
        key = hashlib.sha256(token.encode("ascii")).digest()
        validated = self._cached(key) or await self._validate(key, token)
        found = validated.identity
        # The token decides the project; a header naming another one is refused.
        claimed = headers.get("x-project-id")
        if claimed and claimed != found.project:
            raise Forbidden()
        return found

    async def close(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()
        self._inflight.clear()
        self._cache.clear()
        self.service.close()

    def _unauthorized(self, description: str | None = None) -> Unauthorized:
        return Unauthorized(description, challenge=self._challenge)

    def _cached(self, key: bytes) -> _Validated | None:
        return self._cache.get(key)

    def _remember(self, key: bytes, entry: _Validated) -> None:
        self._cache[key] = entry  # not kept when already lapsed

    async def _validate(self, key: bytes, token: str) -> _Validated:
        """One Keystone call per token at a time; every request with it awaits that call."""
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._fetch(key, token))
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._settled(key, done))
        try:
            # Shielded: a request that goes away does not cancel the others' call.
            return await asyncio.shield(task)
        except _TokenInvalid as exc:
            raise self._unauthorized(str(exc)) from None

    def _settled(self, key: bytes, task: asyncio.Task[_Validated]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved even when every waiter went away

    async def _fetch(self, key: bytes, token: str) -> _Validated:
        started = time.monotonic()
        identity, expires_at = await self.service.call(self._ask_keystone, token)
        # Never trusted past the token's own expiry (wall clock, as Keystone states it).
        lifetime = min(self._cache_time, expires_at - time.time())
        entry = _Validated(identity=identity, valid_until=started + lifetime)
        self._remember(key, entry)
        return entry

    def _ask_keystone(self, token: str) -> tuple[Identity, float]:
        """Runs on a validation thread: the token's identity and expiry (epoch seconds)."""
        try:
            response = self.service.identity.get(
                "/auth/tokens?nocatalog",
                headers={"X-Subject-Token": token},
                raise_exc=False,
            )
        except ks_exceptions.ClientException as exc:
            # Unreachable, timed out, or the service user's own credentials refused.
            raise ServiceUnavailable("The identity service is unavailable.") from exc
        if response.status_code == 404:
            raise _TokenInvalid("The token is invalid, expired or revoked.")
        if response.status_code in (401, 403):
            log.error(
                "Keystone refused to validate a token for the service user (%d): check "
                "[keystone_authtoken] username, password, project and its service role",
                response.status_code,
            )
        if response.status_code != 200:
            raise ServiceUnavailable("The identity service is unavailable.") from RuntimeError(
                f"token validation answered {response.status_code}: {response.text[:200]}"
            )
        try:
            info = access.create(body=response.json(), auth_token=token)
        except (ValueError, KeyError, TypeError) as exc:
            raise ServiceUnavailable("The identity service is unavailable.") from exc
        if not isinstance(info, access.AccessInfoV3) or not info.project_id:
            raise _TokenInvalid("The token is not scoped to a project.")
        return identity_of(info)


def identity_of(info: access.AccessInfoV3) -> tuple[Identity, float]:
    """The identity a validated token (or EC2 exchange) states, and its expiry in epoch
    seconds (infinite when Keystone states none: the cache time alone bounds it then).
    The callers have refused a token without a project."""
    assert info.project_id is not None
    expires = info.expires.timestamp() if info.expires is not None else math.inf
    identity = Identity(
        project=info.project_id,
        user_id=info.user_id,
        roles=frozenset(role.lower() for role in info.role_names or ()),
        authenticated=True,
        expires_at=expires if math.isfinite(expires) else None,
    )
    return identity, expires


def _valid_until(_key: object, entry: _Validated, _now: float) -> float:
    return entry.valid_until
