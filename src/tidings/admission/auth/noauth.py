"""``noauth``: the caller is whoever the headers say, as in Zaqar, but never admin by
default.

The project comes from ``X-Project-ID`` and the roles from ``X-Roles``. Anyone who can
reach the server can send those, so the ``admin`` role is honoured only with
``admin_mode = true`` (otherwise it is dropped before policy sees it), and a server
listening beyond loopback in this mode says so in its log.
"""

from __future__ import annotations

import ipaddress
import logging
import socket

from tidings.admission import identity
from tidings.admission.auth import Headers, Identity
from tidings.config import Settings

log = logging.getLogger("tidings.auth")

ADMIN_ROLE = "admin"
KNOWN_MAX = 4096
KNOWN_KEY_LENGTH = 512


class NoAuthAuthenticator:
    """Trusts the identity headers; vouches for nothing (``authenticated`` is False)."""

    def __init__(self, settings: Settings) -> None:
        self._admin_mode = settings.admin_mode
        # The identities of recent header values (immutable, so shared): a client sends
        # the same ones on every request. Bounded: cleared when full.
        self._known: dict[tuple[str, str | None], Identity] = {}

    async def authenticate(self, headers: Headers) -> Identity:
        raw_roles = headers.get("x-roles")
        project = headers.get("x-project-id") or ""
        key = (project, raw_roles)
        found = self._known.get(key)
        if found is not None:
            return found
        roles = identity.roles(raw_roles)
        if roles and not self._admin_mode:
            roles = roles - {ADMIN_ROLE}
        # Unchecked here: admission checks the header after the Client-ID, in Zaqar's order.
        found = Identity(project=project, roles=roles)
        if len(project) + len(raw_roles or "") <= KNOWN_KEY_LENGTH:
            if len(self._known) >= KNOWN_MAX:
                self._known.clear()
            self._known[key] = found
        return found

    async def close(self) -> None:
        return None


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback one (unresolvable: no)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        # At start-up only, before serving: a blocking lookup is fine here.
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(
        ipaddress.ip_address(str(a).split("%", 1)[0]).is_loopback for a in addresses
    )


def warn_if_exposed(settings: Settings, host: str) -> bool:
    """Log a warning when ``noauth`` listens beyond loopback; whether it did."""
    if settings.auth_strategy != "noauth" or is_loopback(host):
        return False
    log.warning(
        "auth_strategy is noauth and the server listens on %s, beyond loopback: anyone "
        "who can reach it can act as any project by sending X-Project-ID%s. Set "
        'auth_strategy = "keystone" or "tokens", or listen on 127.0.0.1 behind a proxy '
        "that authenticates.",
        host,
        " and, with admin_mode on, as admin by sending X-Roles: admin"
        if settings.admin_mode
        else "",
    )
    return True
