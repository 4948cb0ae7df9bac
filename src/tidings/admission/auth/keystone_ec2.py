"""``keystone`` for the SQS face: Keystone EC2 credentials (``openstack ec2 credentials
create``) signing SigV4 requests, verified the way OpenStack Swift's S3 API does.

A request from a key not known yet goes to Keystone's ``POST /v3/ec2tokens`` with what
the signature covers (the canonical parts this server computed, ``admission.sigv4``);
Keystone recomputes the signature with the secret it keeps and answers with a token of
the credential's user, scoped to the credential's project: the identity. Keystone
refuses that call unless the service user of ``[keystone_authtoken]`` has the
``service`` or ``admin`` role.

Every signature differs, so what is cached is what lets later requests be verified
here: after a successful exchange the credential's secret is read back
(``GET /v3/users/{user}/credentials/OS-EC2/{access}``, as Swift's s3token secret cache
does) and kept with the identity for ``token_cache_time`` seconds (never past the
token's expiry), at most ``token_cache_size`` keys. Keystone lets only an admin read
another user's credential: without that right, every request is verified by Keystone
(a warning says so once).

Calls run on a small pool of threads, each bounded by ``[storage] operation_timeout``:
past it, or with Keystone unreachable, a key that is not cached gets a 503.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import cachetools
from keystoneauth1 import access
from keystoneauth1 import exceptions as ks_exceptions

from tidings.admission import sigv4
from tidings.admission.auth import Identity
from tidings.admission.auth.aws import AwsIdentity
from tidings.admission.auth.keystone import identity_of
from tidings.admission.auth.keystone_service import KeystoneService
from tidings.admission.sigv4 import Signature, SignedRequest
from tidings.config import Settings
from tidings.errors import ServiceUnavailable as TidingsServiceUnavailable
from tidings.sqs.errors import InvalidClientTokenId, ServiceUnavailable, SignatureDoesNotMatch

log = logging.getLogger("tidings.auth")

T = TypeVar("T")
UNAVAILABLE = "The identity service is unavailable."


class _SecretsRefused(Exception):
    """Keystone does not let the service user read other users' EC2 credentials."""


@dataclass(frozen=True, slots=True)
class _Known:
    """A verified key: its secret (None: Keystone would not tell) and identity."""

    secret: str | None
    identity: Identity
    # time.monotonic() past which Keystone is asked again.
    valid_until: float


class KeystoneEc2Authenticator:
    """SigV4 with Keystone EC2 credentials; the credential decides the project."""

    def __init__(
        self,
        settings: Settings,
        service: KeystoneService | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        conf = settings.keystone_authtoken
        # The HTTP API's keystone strategy's service user, session and threads when
        # given (that strategy closes them); else its own.
        self._owns_service = service is None
        self._service = service or KeystoneService(settings)
        self._clock = clock
        self._max_skew = settings.sqs.max_clock_skew
        self._cache_time = conf.token_cache_time
        self._cache_size = conf.token_cache_size
        # Least recently used first out; an entry lapses at its valid_until.
        self._cache: cachetools.TLRUCache[str, _Known] = cachetools.TLRUCache(
            maxsize=self._cache_size, ttu=_valid_until, timer=self._clock
        )
        # The first exchange of a key: requests with the same key wait for it, then
        # verify locally when it cached the secret.
        self._inflight: dict[str, asyncio.Task[_Known]] = {}
        # Until when reading secrets is not tried again after Keystone refused it.
        self._secrets_refused_until = -math.inf

    async def authenticate(self, request: SignedRequest, now: float) -> AwsIdentity:
        signature = sigv4.parse(request)
        # Checked here, before any Keystone call: Keystone's own window may be wider.
        sigv4.check_time(signature, now, self._max_skew)
        key = signature.access_key
        pending = self._inflight.get(key)
        if pending is not None:
            # Judged on its own below, unless Keystone could not be reached at all.
            await asyncio.wait([pending])
            failure = None if pending.cancelled() else pending.exception()
            if isinstance(failure, ServiceUnavailable):
                raise ServiceUnavailable(failure.message)
        known = self._cached(key)
        if (
            known is not None
            and known.secret is not None
            and sigv4.matches(request, signature, known.secret)
        ):
            return AwsIdentity(known.identity, key)
        # Not cached, or not this secret (the credential may have been replaced): Keystone
        # decides, and its answer refreshes the cache.
        task = asyncio.create_task(self._exchange(request, signature))
        if key not in self._inflight:
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._settled(key, done))
        else:
            task.add_done_callback(_retrieve)
        # Shielded: a request that goes away does not cancel a call others wait for.
        found = await asyncio.shield(task)
        return AwsIdentity(found.identity, key)

    async def close(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()
        self._inflight.clear()
        self._cache.clear()
        if self._owns_service:
            self._service.close()

    # ------------------------------------------------------------ cache

    def _cached(self, key: str) -> _Known | None:
        return self._cache.get(key)

    def _remember(self, key: str, entry: _Known) -> None:
        if entry.secret is not None:  # else nothing to verify later requests with
            self._cache[key] = entry  # not kept when already lapsed

    def _settled(self, key: str, task: asyncio.Task[_Known]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        _retrieve(task)

    # ------------------------------------------------------------ Keystone

    async def _exchange(self, request: SignedRequest, signature: Signature) -> _Known:
        started = self._clock()
        identity, expires_at, user_id = await self._call(
            self._ec2tokens, ec2_credentials(request, signature)
        )
        secret = None
        if self._cache_time > 0 and started >= self._secrets_refused_until:
            try:
                secret = await self._call(self._secret, user_id, signature.access_key, identity)
            except _SecretsRefused:
                # Not asked again for a while: the answer would be the same.
                self._secrets_refused_until = started + max(self._cache_time, 60.0)
            except ServiceUnavailable:
                pass  # the exchange succeeded: this request stands, unremembered
        lifetime = min(self._cache_time, expires_at - time.time())
        entry = _Known(secret=secret, identity=identity, valid_until=started + lifetime)
        self._remember(signature.access_key, entry)
        return entry

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        try:
            return await self._service.call(function, *args)
        except TidingsServiceUnavailable as exc:  # said in SQS's terms
            raise ServiceUnavailable(exc.description or UNAVAILABLE) from None

    def _ec2tokens(self, credentials: dict[str, Any]) -> tuple[Identity, float, str]:
        """Runs on a thread: the identity, its expiry (epoch seconds) and user id."""
        try:
            response = self._service.identity.post(
                "/ec2tokens", json={"credentials": credentials}, raise_exc=False
            )
        except ks_exceptions.ClientException as exc:
            # Unreachable, timed out, or the service user's own credentials refused.
            raise ServiceUnavailable(UNAVAILABLE) from exc
        status = response.status_code
        if status == 404:
            raise InvalidClientTokenId()
        if status == 401:
            # A wrong signature, or a disabled user or project: Keystone says which only
            # in its text, and the client learns no more than AWS would tell.
            raise SignatureDoesNotMatch()
        if status == 403:
            log.error(
                "Keystone refused POST /v3/ec2tokens to the service user (403): give the "
                "[keystone_authtoken] user the service or admin role"
            )
        if status != 200:
            raise ServiceUnavailable(UNAVAILABLE) from RuntimeError(
                f"ec2tokens answered {status}: {response.text[:200]}"
            )
        try:
            info = access.create(
                body=response.json(), auth_token=response.headers.get("X-Subject-Token")
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ServiceUnavailable(UNAVAILABLE) from exc
        if not isinstance(info, access.AccessInfoV3) or not info.project_id or not info.user_id:
            raise InvalidClientTokenId()
        identity, expires = identity_of(info)
        return identity, expires, info.user_id

    def _secret(self, user_id: str, access_key: str, identity: Identity) -> str | None:
        """Runs on a thread: the credential's secret (None: not found or not for this
        project); ``_SecretsRefused`` when the service user may not read it."""
        path = f"/users/{quote(user_id, safe='')}/credentials/OS-EC2/{quote(access_key, safe='')}"
        try:
            response = self._service.identity.get(path, raise_exc=False)
        except ks_exceptions.ClientException as exc:
            raise ServiceUnavailable(UNAVAILABLE) from exc
        if response.status_code in (401, 403):
            if self._secrets_refused_until == -math.inf:
                log.warning(
                    "Keystone does not let the [keystone_authtoken] user read EC2 credentials "
                    "(%d): every SQS request is verified by Keystone. Grant it the admin "
                    "role (identity:ec2_get_credential) to verify signatures locally for "
                    "token_cache_time seconds.",
                    response.status_code,
                )
            raise _SecretsRefused()
        if response.status_code != 200:
            return None
        try:
            credential = response.json()["credential"]
            secret = credential["secret"]
            project = credential.get("tenant_id") or credential.get("project_id")
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(secret, str) or project != identity.project:
            return None
        return secret


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a task's exception retrieved, even when every waiter went away."""
    if not task.cancelled():
        task.exception()


def ec2_credentials(request: SignedRequest, signature: Signature) -> dict[str, Any]:
    """The body of ``POST /v3/ec2tokens`` for a SigV4 request, in the shape Keystone's
    EC2 signer reads (keystoneclient.contrib.ec2.utils): the canonical URI this server
    computed as ``path``, the query as ``params`` (without X-Amz-Signature), the signed
    headers (canonical values) and the payload hash as ``body_hash``."""
    headers = {
        name: sigv4.header_value(request.headers.get(name, "")) for name in signature.signed_headers
    }
    params = {
        name.decode("utf-8", "replace"): value.decode("utf-8", "replace")
        for name, value in sigv4.query_pairs(request.query)
        if not (signature.presigned and name == b"X-Amz-Signature")
    }
    if not signature.presigned:
        # Keystone reads these two by their exact names, and the signed headers' list
        # from the Authorization header: rebuilt from the parsed signature.
        headers["Authorization"] = (
            f"{sigv4.ALGORITHM} Credential={signature.access_key}/{signature.scope}, "
            f"SignedHeaders={';'.join(signature.signed_headers)}, "
            f"Signature={signature.signature}"
        )
        headers["X-Amz-Date"] = signature.timestamp
    return {
        "access": signature.access_key,
        "signature": signature.signature,
        "host": request.headers.get("host", ""),
        "verb": request.method.upper(),
        "path": sigv4.canonical_uri(request.path),
        "params": params,
        "headers": headers,
        "body_hash": sigv4.payload_hashes(request, signature)[0],
    }


def _valid_until(_key: object, entry: _Known, _now: float) -> float:
    return entry.valid_until
