"""Where webhooks may go: no subscriber may point into a denied network or at us.

``[notification] subscriber_deny_networks`` lists the CIDRs no webhook may reach
(loopback and link-local by default, which covers cloud metadata services); the
server's own listen addresses are denied whatever the list says. Addresses are judged
after resolution, so spellings such as ``2130706433``, ``0x7f.1`` or
``[::ffff:127.0.0.1]`` cannot slip through. Subscriptions are checked when they are
made (``check_subscriber_destination``) and deliveries when they connect
(``is_denied`` / ``denial`` on every address the client is about to use).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import socket
import weakref
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from tidings.config import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SETTING = "[notification] subscriber_deny_networks"
SETTING_ENV = "TIDINGS_NOTIFICATION__SUBSCRIBER_DENY_NETWORKS"
DEFAULT_PORTS = {"http": 80, "https": 443}
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})
# A name lookup holds a thread of the loop's resolver pool until the resolver answers,
# whatever our timeout (libuv has 4, shared with deliveries): subscribing holds at most these.
MAX_LOOKUPS = 2
# How long a subscribe waits for one of those slots before answering "busy, retry".
LOOKUP_SLOT_WAIT = 1.0
NUMERIC = socket.AI_NUMERICHOST
_lookup_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)
# Connecting to an unspecified address reaches this machine (Linux routes it to loopback).
_UNSPECIFIED_V4 = ipaddress.IPv4Network("0.0.0.0/8")


class DeniedDestination(Exception):
    """The subscriber may not be used; the message says why and which setting allows it."""


class UnresolvedDestination(DeniedDestination):
    """The subscriber's host has no address (or none in time)."""


class LookupsBusy(Exception):
    """Every name-lookup slot is taken (by slow lookups): not the subscriber's fault."""


@dataclass(frozen=True, slots=True)
class DenyList:
    """Parsed deny networks plus the endpoints this server listens on."""

    networks: tuple[IPNetwork, ...]
    # The listen addresses (empty with ``any_local``) and port (0: any port).
    listen_addresses: frozenset[IPAddress]
    listen_port: int
    # The server listens on a wildcard address: every address of this machine is ours.
    any_local: bool


def parse_networks(cidrs: list[str]) -> tuple[IPNetwork, ...]:
    """The CIDRs as networks; ValueError names the one that is not a network."""
    networks: list[IPNetwork] = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"{SETTING}: {cidr!r} is not a network in CIDR form ({exc})") from None
    return tuple(networks)


def deny_list(settings: Settings) -> DenyList:
    """The deny list for these settings (built once per distinct configuration)."""
    server = settings.server
    return _build(tuple(settings.notification.subscriber_deny_networks), server.host, server.port)


@lru_cache(maxsize=8)
def _build(cidrs: tuple[str, ...], host: str, port: int) -> DenyList:
    any_local = host.strip() in WILDCARD_HOSTS
    addresses: set[IPAddress] = set()
    if not any_local:
        # Usually a literal; a name (``localhost``) is resolved once, at start-up.
        with contextlib.suppress(OSError, UnicodeError):
            for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
                addresses.add(normalise(str(sockaddr[0])))
    return DenyList(
        networks=parse_networks(list(cidrs)),
        listen_addresses=frozenset(addresses),
        listen_port=port,
        any_local=any_local,
    )


def normalise(address: str) -> IPAddress:
    """The address a connection really reaches: IPv4-mapped IPv6 as IPv4, 0.0.0.0 as loopback."""
    ip = ipaddress.ip_address(address.partition("%")[0])  # drop an IPv6 zone
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip.is_unspecified:
            return ipaddress.IPv6Address("::1")
    if isinstance(ip, ipaddress.IPv4Address) and ip in _UNSPECIFIED_V4:
        return ipaddress.IPv4Address("127.0.0.1")
    return ip


def denial(address: str, port: int, deny: DenyList) -> str | None:
    """Why ``address:port`` may not be reached (reads after "the address is"), or None."""
    try:
        ip = normalise(address)
    except ValueError:
        return "not an IP address"
    if _is_this_server(ip, port, deny):
        return (
            f"this Tidings server itself (port {port}), which no subscriber may be, "
            f"whatever {SETTING} allows"
        )
    for network in deny.networks:
        if ip.version == network.version and ip in network:
            return (
                f"inside {network}, which {SETTING} ({SETTING_ENV}) denies; an operator "
                "may allow it by removing that network from the setting"
            )
    return None


def is_denied(address: str, port: int, deny: DenyList) -> bool:
    """Whether a connection to ``address:port`` must not be made."""
    return denial(address, port, deny) is not None


def _is_this_server(ip: IPAddress, port: int, deny: DenyList) -> bool:
    if deny.listen_port and port != deny.listen_port:
        return False
    if ip in deny.listen_addresses:
        return True
    return deny.any_local and _is_local(ip)


def _is_local(ip: IPAddress) -> bool:
    """Whether ``ip`` belongs to this machine: it can be bound to."""
    if ip.is_loopback:
        return True
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((str(ip), 0))
    except OSError as exc:
        # Only "no such local address" proves it is not ours. Anything else (such as no
        # descriptor left while connections are at their cap) must not let one through.
        return exc.errno != errno.EADDRNOTAVAIL
    return True


async def resolve(host: str, port: int, timeout: float) -> list[str]:
    """Every address ``host`` resolves to; names through the event loop's resolver."""
    try:
        # Numeric forms (any the C library accepts) need no lookup, nor a thread.
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=NUMERIC)
    except (OSError, UnicodeError, ValueError):
        return await _look_up(host, port, timeout)
    return [str(sockaddr[0]) for *_, sockaddr in infos]


async def _look_up(host: str, port: int, timeout: float) -> list[str]:
    loop = asyncio.get_running_loop()
    slots = _lookup_slots.get(loop)
    if slots is None:
        slots = _lookup_slots[loop] = asyncio.Semaphore(MAX_LOOKUPS)
    try:
        async with asyncio.timeout(LOOKUP_SLOT_WAIT):
            await slots.acquire()
    except TimeoutError:
        raise LookupsBusy(
            "Too many subscriber host names are being looked up at the moment; "
            "please try again in a few seconds."
        ) from None
    try:
        async with asyncio.timeout(timeout):
            lookup = asyncio.ensure_future(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM))
            lookup.add_done_callback(lambda done: _lookup_finished(done, slots))
            # Shielded: the thread runs on after a timeout, and so must our hold on the slot.
            infos = await asyncio.shield(lookup)
    except TimeoutError:
        raise UnresolvedDestination(
            f"The host {host!r} did not resolve within {timeout:g} seconds."
        ) from None
    except (OSError, UnicodeError, ValueError) as exc:
        raise UnresolvedDestination(
            f"The host {host!r} does not resolve to an address ({exc})."
        ) from None
    return [str(sockaddr[0]) for *_, sockaddr in infos]


def _lookup_finished(lookup: asyncio.Future[Any], slots: asyncio.Semaphore) -> None:
    slots.release()
    if not lookup.cancelled():
        lookup.exception()  # seen: after a timeout nobody else will look


async def check_subscriber_destination(url: str, deny: DenyList, timeout: float) -> None:
    """Refuse an http(s) subscriber any of whose addresses is denied (others pass)."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return
    port = parts.port or DEFAULT_PORTS[parts.scheme]
    for address in await resolve(parts.hostname, port, timeout):
        reason = denial(address, port, deny)
        if reason is not None:
            reached = str(normalise(address))
            shown = address if reached == address else f"{address} (that is, {reached})"
            raise DeniedDestination(
                f"The subscriber {url!r} is refused: its host resolves to {shown}, {reason}."
            )
