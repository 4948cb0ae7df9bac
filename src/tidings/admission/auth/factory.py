"""The authenticator for ``auth_strategy``, built once per server process."""

from __future__ import annotations

from tidings.admission.auth import Authenticator
from tidings.admission.auth.noauth import NoAuthAuthenticator
from tidings.admission.auth.tokens import TokenAuthenticator, check_tokens_file
from tidings.config import Settings


def create_authenticator(settings: Settings) -> Authenticator:
    """The strategy's authenticator; the caller closes it at shutdown."""
    if settings.auth_strategy == "keystone":
        # Imported only when used: keystoneauth1 is heavy and noauth/tokens need none of it.
        from tidings.admission.auth.keystone import KeystoneAuthenticator

        return KeystoneAuthenticator(settings)
    if settings.auth_strategy == "tokens":
        return TokenAuthenticator(settings)
    return NoAuthAuthenticator(settings)


def check_auth_settings(settings: Settings) -> None:
    """Raise ``ConfigError`` at start-up for what would leave the strategy unusable."""
    if settings.auth_strategy == "tokens":
        check_tokens_file(settings)
