"""Who signed an SQS request: AWS access keys mapped to projects by ``auth_strategy``.

* ``noauth``: the access key id is the project (as LocalStack does); signatures are not
  checked, so anyone who can reach the server can act as any project.
* ``tokens``: access key pairs in the tokens file (``admission.auth.tokens``), verified
  by SigV4 (``admission.sigv4``): the key decides the project, the user and the roles.
* ``keystone``: Keystone EC2 credentials, verified through ``/v3/ec2tokens``
  (``admission.auth.keystone_ec2``).

Whatever the strategy, the identity's project is the only one the caller acts in: queue
URLs and ARNs naming another project resolve to nothing (``sqs.urls``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from tidings.admission import identity, sigv4
from tidings.admission.auth import Authenticator, Identity
from tidings.admission.auth.tokens import TokenAuthenticator, TokensFile, tokens_path
from tidings.admission.sigv4 import SignedRequest
from tidings.config import Settings
from tidings.errors import TidingsError
from tidings.sqs.errors import InvalidClientTokenId

__all__ = [
    "AwsAuthenticator",
    "AwsIdentity",
    "NoauthAwsAuthenticator",
    "SignedRequest",
    "TokensAwsAuthenticator",
    "create_aws_authenticator",
]


@dataclass(frozen=True, slots=True)
class AwsIdentity:
    identity: Identity
    access_key: str


class AwsAuthenticator(Protocol):
    async def authenticate(self, request: SignedRequest, now: float) -> AwsIdentity:
        """The signer's identity, or raise an ``SqsError`` (403/400 with SQS's code)."""
        ...

    async def close(self) -> None: ...


class NoauthAwsAuthenticator:
    """The access key id names the project; nothing is verified."""

    async def authenticate(self, request: SignedRequest, now: float) -> AwsIdentity:
        # The access key id's form is checked, its signature not.
        key = sigv4.parse(request).access_key
        try:
            project = identity.project(key)
        except TidingsError:
            raise InvalidClientTokenId(
                "Under auth_strategy noauth the access key id is the project id: it "
                "must be a valid project id."
            ) from None
        return AwsIdentity(Identity(project=project), key)

    async def close(self) -> None:
        return None


class TokensAwsAuthenticator:
    """Access key pairs of the tokens file; SigV4 decides whether the pair signed."""

    def __init__(self, tokens: TokensFile, settings: Settings) -> None:
        self._file = tokens
        self._max_skew = settings.sqs.max_clock_skew

    async def authenticate(self, request: SignedRequest, now: float) -> AwsIdentity:
        signature = sigv4.parse(request)
        table = await self._file.table()
        grant = table.by_access_key.get(signature.access_key)
        if grant is None:
            raise InvalidClientTokenId()
        expires_at = grant.identity.expires_at
        if expires_at is not None and now >= expires_at:
            raise InvalidClientTokenId("The security token included in the request is expired.")
        sigv4.check_time(signature, now, self._max_skew)
        sigv4.verify(request, signature, grant.secret_key)
        return AwsIdentity(grant.identity, signature.access_key)

    async def close(self) -> None:
        return None


def create_aws_authenticator(settings: Settings, http: Authenticator) -> AwsAuthenticator:
    """The SQS face's authenticator for ``auth_strategy``, beside the HTTP API's ``http``
    (whose tokens file it shares); the caller closes it."""
    if settings.auth_strategy == "keystone":
        # Imported only when used: keystoneauth1 is heavy and noauth/tokens need none of it.
        from tidings.admission.auth.keystone import KeystoneAuthenticator
        from tidings.admission.auth.keystone_ec2 import KeystoneEc2Authenticator

        # One service user's session for both faces.
        service = http.service if isinstance(http, KeystoneAuthenticator) else None
        return KeystoneEc2Authenticator(settings, service)
    if settings.auth_strategy == "tokens":
        tokens = http.file if isinstance(http, TokenAuthenticator) else None
        return TokensAwsAuthenticator(tokens or TokensFile(tokens_path(settings)), settings)
    return NoauthAwsAuthenticator()
