"""notify.destinations and the post_data bound of notify.payloads, without a server."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import msgspec
import pytest

from tidings.config import ConfigError, NotificationSettings, Settings, load_settings
from tidings.model import Delivery, DeliveryKind
from tidings.notify import destinations, payloads

PLACEHOLDER = payloads.POST_DATA_PLACEHOLDER
DEFAULTS = NotificationSettings()


def deny(**env: str) -> destinations.DenyList:
    environ = {f"TIDINGS_{key.upper()}": value for key, value in env.items()}
    return destinations.deny_list(load_settings(environ=environ))


def test_defaults_cover_loopback_and_link_local() -> None:
    assert load_settings(environ={}).notification.subscriber_deny_networks == [
        "127.0.0.0/8", "::1/128", "169.254.0.0/16", "fe80::/10"
    ]
    denied = deny()
    for address in ("127.0.0.1", "127.9.9.9", "::1", "169.254.169.254", "fe80::1%eth0",
                    "::ffff:127.0.0.1", "::ffff:169.254.169.254", "0.0.0.0", "::"):
        assert destinations.is_denied(address, 80, denied), address
    for address in ("10.0.0.1", "192.168.1.1", "172.16.0.1", "fd00::1", "93.184.216.34"):
        assert not destinations.is_denied(address, 80, denied), address


def test_the_setting_is_validated() -> None:
    with pytest.raises(ConfigError, match="subscriber_deny_networks"):
        load_settings(environ={"TIDINGS_NOTIFICATION__SUBSCRIBER_DENY_NETWORKS": '["10.0.0.0/33"]'})
    with pytest.raises(ConfigError, match="subscriber_deny_networks"):
        load_settings(environ={"TIDINGS_NOTIFICATION__SUBSCRIBER_DENY_NETWORKS": '["nope"]'})


def test_an_empty_list_still_denies_the_server_itself() -> None:
    denied = deny(notification__subscriber_deny_networks="[]", server__port="8888")
    assert destinations.is_denied("127.0.0.1", 8888, denied)
    assert destinations.is_denied("::ffff:127.0.0.1", 8888, denied)
    assert destinations.is_denied("0.0.0.0", 8888, denied)  # reaches loopback
    assert not destinations.is_denied("127.0.0.1", 8889, denied)
    assert not destinations.is_denied("127.0.0.2", 8888, denied)  # not where it listens
    assert not destinations.is_denied("169.254.169.254", 80, denied)
    reason = destinations.denial("127.0.0.1", 8888, denied)
    assert reason is not None and "this Tidings server itself" in reason


def test_a_wildcard_listen_address_makes_every_local_address_ours() -> None:
    for host in ("0.0.0.0", "::"):
        denied = deny(notification__subscriber_deny_networks="[]", server__host=host,
                      server__port="8888")
        assert destinations.is_denied("127.0.0.1", 8888, denied)
        assert destinations.is_denied("127.3.2.1", 8888, denied)
        assert destinations.is_denied("::1", 8888, denied)
        # 203.0.113.0/24 is documentation space: no address of this machine
        assert not destinations.is_denied("203.0.113.7", 8888, denied)
        assert not destinations.is_denied("127.0.0.1", 8887, denied)


def test_listen_names_are_resolved() -> None:
    denied = deny(notification__subscriber_deny_networks="[]", server__host="localhost",
                  server__port="7000")
    assert destinations.is_denied("127.0.0.1", 7000, denied)


def test_deny_lists_are_built_once_per_configuration() -> None:
    settings = Settings()
    assert destinations.deny_list(settings) is destinations.deny_list(Settings())


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://2130706433/", "127.0.0.0/8"),
        ("http://0x7f.1/", "127.0.0.0/8"),
        ("http://[::ffff:7f00:1]/", "127.0.0.0/8"),
        ("http://localhost:8080/", "127.0.0.0/8"),
        ("http://0.0.0.0/", "that is, 127.0.0.1"),
        (f"http://{'a' * 64}.example/", "does not resolve"),
    ],
)
def test_subscriber_check_judges_resolved_addresses(url: str, fragment: str) -> None:
    with pytest.raises(destinations.DeniedDestination, match=fragment.replace(".", r"\.")):
        asyncio.run(destinations.check_subscriber_destination(url, deny(), 5.0))


def test_subscriber_check_passes_other_schemes_and_private_literals() -> None:
    for url in ("mailto:a@example.com", "http://10.1.2.3/", "https://[fd00::1]:8443/x"):
        asyncio.run(destinations.check_subscriber_destination(url, deny(), 5.0))


class GatedResolverLoop(asyncio.SelectorEventLoop):
    """An event loop whose name lookups hang until ``gate`` opens (a stuck DNS server)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.started = 0
        self.finished = 0

    async def getaddrinfo(self, host: Any, port: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.started += 1
        await self.gate.wait()
        self.finished += 1
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.1", port))]


def test_stuck_lookups_hold_at_most_a_few_resolver_threads() -> None:
    loop = GatedResolverLoop()

    async def scenario() -> None:
        for _ in range(destinations.MAX_LOOKUPS):
            with pytest.raises(destinations.UnresolvedDestination, match="did not resolve"):
                await destinations.resolve("stuck.example", 80, 0.05)
        # the timed-out lookups still hold their slots: the next one is told to come
        # back later (a 503, not the subscriber's fault) and never starts
        with pytest.raises(destinations.LookupsBusy):
            await destinations.resolve("stuck.example", 80, 0.05)
        assert loop.started == destinations.MAX_LOOKUPS
        # literals need no lookup at all
        assert await destinations.resolve("2130706433", 80, 0.05) == ["127.0.0.1"]
        loop.gate.set()
        async with asyncio.timeout(5):
            while loop.finished < destinations.MAX_LOOKUPS:
                await asyncio.sleep(0)
        assert await destinations.resolve("back.example", 80, 5.0) == ["10.0.0.1"]

    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()


def delivery(post_data: str | None, payload: bytes = b'{"k": "v"}') -> Delivery:
    return Delivery(
        id="d", project="p", source="q", subscription_id="s",
        kind=DeliveryKind.NOTIFICATION, message_id="m", payload=payload, ttl=60, delay=0,
        attempts=0, subscriber="http://10.1.2.3/",
        options={} if post_data is None else {"post_data": post_data},
    )


def test_webhook_body_fills_at_most_the_allowed_placeholders() -> None:
    plain = payloads.webhook_body(delivery(None), DEFAULTS)
    filled = payloads.webhook_body(delivery(f"[{PLACEHOLDER}, {PLACEHOLDER}]"), DEFAULTS)
    assert msgspec.json.decode(filled) == [msgspec.json.decode(plain)] * 2
    with pytest.raises(ValueError, match="max_post_data_placeholders"):
        payloads.webhook_body(delivery(PLACEHOLDER * 5), DEFAULTS)
    strict = NotificationSettings(max_post_data_placeholders=1, max_post_data_size=100)
    with pytest.raises(ValueError, match="max_post_data_placeholders"):
        payloads.webhook_body(delivery(PLACEHOLDER * 2), strict)
    with pytest.raises(ValueError, match="max_post_data_size"):
        payloads.webhook_body(delivery(PLACEHOLDER + " " * 100), strict)


def test_webhook_body_size_is_bounded_by_template_and_document() -> None:
    big = b'"' + b"x" * 200_000 + b'"'
    template = "[" + ", ".join([PLACEHOLDER] * 4) + "]" + " " * 60_000
    body = payloads.webhook_body(delivery(template, big), DEFAULTS)
    document = payloads.document(delivery(None, big))
    assert len(body) <= len(template.encode()) + 4 * len(document)
