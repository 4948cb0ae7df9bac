"""Sending one delivery: webhooks over HTTP, email over SMTP or sendmail.

Every call is bounded by ``[notification] delivery_timeout``. A sender returns normally
on success and raises ``DeliveryError`` saying whether trying again may help.

A webhook's answer is judged by its status alone: its body is never decompressed and
never read past ``RESPONSE_PREFIX`` bytes (a longer one closes the connection instead),
so a huge or compressed-bomb answer costs nothing. Every address the client connects
to is checked against ``[notification] subscriber_deny_networks`` and the server's own
listen addresses (``destinations``), when resolving and again when opening the socket,
since DNS can change after a subscription was accepted.
"""

from __future__ import annotations

import asyncio
import email.errors
import shlex
import socket
from email.message import EmailMessage
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import aiohttp
import aiosmtplib
import msgspec
from aiohttp.abc import AbstractResolver, ResolveResult

from tidings.config import NotificationSettings
from tidings.model import Delivery, DeliveryKind
from tidings.namespace import split_namespace
from tidings.notify import payloads
from tidings.notify.destinations import DenyList, denial

# Statuses worth retrying: the receiver is failing or asks us to slow down.
RETRYABLE_STATUSES = frozenset({408, 425, 429}) | frozenset(range(500, 600))
# Bytes of a webhook's answer read at most (only to keep a connection reusable).
RESPONSE_PREFIX = 16384


class DeliveryError(Exception):
    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.retryable = retryable


class DeniedAddress(OSError):
    """A connection was about to reach a denied address."""


class Sender(Protocol):
    async def send(self, delivery: Delivery) -> None: ...

    async def close(self) -> None: ...


class _GuardedResolver(AbstractResolver):
    """Resolves as aiohttp does, then drops the addresses no webhook may reach."""

    def __init__(self, deny: DenyList) -> None:
        self._deny = deny
        self._inner = aiohttp.DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        allowed, reasons = [], []
        for found in await self._inner.resolve(host, port, family):
            reason = denial(found["host"], found["port"] or port, self._deny)
            if reason is None:
                allowed.append(found)
            else:
                reasons.append(f"{found['host']} is {reason}")
        if not allowed:
            raise DeniedAddress(f"{host} resolves only to denied addresses: {'; '.join(reasons)}")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def _guarded_socket_factory(deny: DenyList) -> Any:
    """A socket factory refusing denied addresses (covers IP literals, which skip DNS)."""

    def create(addr_info: Any) -> socket.socket:
        family, kind, proto, _, address = addr_info
        reason = denial(str(address[0]), int(address[1]), deny)
        if reason is not None:
            raise DeniedAddress(f"the address {address[0]} is {reason}")
        return socket.socket(family=family, type=kind, proto=proto)

    return create


class WebhookSender:
    """POSTs the document to the subscriber URL (with ``post_headers``/``post_data``)."""

    def __init__(self, settings: NotificationSettings, *, deny: DenyList | None = None) -> None:
        self._settings = settings
        self._deny = deny
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Made lazily: a session belongs to the event loop that first uses it.
        if self._session is None:
            guard: dict[str, Any] = {}
            if self._deny is not None:
                guard = {
                    "resolver": _GuardedResolver(self._deny),
                    "socket_factory": _guarded_socket_factory(self._deny),
                }
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._settings.delivery_timeout),
                connector=aiohttp.TCPConnector(
                    limit=self._settings.max_notifier_workers * 2, **guard
                ),
                skip_auto_headers=("Content-Type",),
                auto_decompress=False,
            )
        return self._session

    async def send(self, delivery: Delivery) -> None:
        headers = {"Content-Type": "application/json"}
        extra = delivery.options.get("post_headers")
        if isinstance(extra, dict):
            headers.update({str(k): str(v) for k, v in extra.items()})
        try:
            async with self._client().post(
                delivery.subscriber,
                data=payloads.webhook_body(delivery, self._settings),
                headers=headers,
                allow_redirects=False,
            ) as answer:
                status = answer.status
                await _settle(answer)
        except aiohttp.ClientConnectorError as exc:
            denied = isinstance(exc.os_error, DeniedAddress)
            reason = str(exc.os_error) if denied else f"{type(exc).__name__}: {exc}"
            raise DeliveryError(reason, retryable=not denied) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:  # refused, reset, timed out...
            raise DeliveryError(f"{type(exc).__name__}: {exc}", retryable=True) from exc
        except ValueError as exc:  # a URL, header or body we refuse: retrying won't help
            raise DeliveryError(f"{type(exc).__name__}: {exc}", retryable=False) from exc
        if status >= 400:
            raise DeliveryError(
                f"HTTP {status} from {delivery.subscriber}",
                retryable=status in RETRYABLE_STATUSES,
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


async def _settle(answer: aiohttp.ClientResponse) -> None:
    """Finish a short announced body so the connection can be reused; drop any other."""
    length = answer.content_length
    if length is not None and length <= RESPONSE_PREFIX:
        try:
            await answer.read()  # raw bytes: decompression is off
        except (aiohttp.ClientError, TimeoutError):
            answer.close()  # the status is the answer; a stalled body is not our concern
        return
    answer.close()


class EmailSender:
    """Mails notifications and confirmation links to ``mailto:`` subscribers."""

    def __init__(self, settings: NotificationSettings) -> None:
        self._settings = settings

    async def send(self, delivery: Delivery) -> None:
        try:
            message = self.compose(delivery)
        except (ValueError, email.errors.MessageError) as exc:  # the mail library refuses it
            raise DeliveryError(f"{type(exc).__name__}: {exc}", retryable=False) from exc
        try:
            async with asyncio.timeout(self._settings.delivery_timeout):
                if self._settings.smtp_mode == "self_local":
                    await self._smtp(message)
                else:
                    await self._sendmail(message)
        except TimeoutError as exc:
            raise DeliveryError("the mail server did not answer in time", retryable=True) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}", retryable=True) from exc
        except ValueError as exc:  # a message the mail library refuses: retrying won't help
            raise DeliveryError(f"{type(exc).__name__}: {exc}", retryable=False) from exc

    def compose(self, delivery: Delivery) -> EmailMessage:
        address = urlsplit(delivery.subscriber)
        query = parse_qs(address.query)
        recipient = unquote(address.path)
        if "," in recipient or ";" in recipient:
            raise DeliveryError(
                f"{delivery.subscriber} names more than one recipient; a mailto: "
                "subscriber must name exactly one",
                retryable=False,
            )
        message = EmailMessage()
        message["To"] = _header_value("recipient", recipient)
        if delivery.kind is DeliveryKind.NOTIFICATION:
            # The URI's ?subject= wins over options.subject (Zaqar fails on it).
            subject = (
                query["subject"][0] if query.get("subject") else delivery.options.get("subject")
            )
            sender = delivery.options.get("from") or self._settings.email_sender
            message.set_content(payloads.document(delivery).decode())
        else:
            template = (
                self._settings.subscription_confirmation_email_template
                if delivery.kind is DeliveryKind.CONFIRMATION
                else self._settings.unsubscribe_confirmation_email_template
            )
            project, _ = split_namespace(delivery.project)
            subject, sender = template.topic, template.sender
            message.set_content(
                template.body.format(delivery.source, project, self._link(delivery))
            )
        if sender:
            message["From"] = _header_value("sender", str(sender))
        if subject:
            message["Subject"] = _header_value("subject", str(subject))
        return message

    def _link(self, delivery: Delivery) -> str:
        """The operator's confirmation page, with the signed request in its query."""
        base = self._settings.external_confirmation_url
        if not base:
            raise DeliveryError(
                "notification.external_confirmation_url is not set, so no confirmation "
                "link can be mailed",
                retryable=False,
            )
        signed = msgspec.json.decode(delivery.payload)
        query = urlencode(
            {
                "Signature": signed["URL-Signature"],
                "Methods": signed["URL-Methods"],
                "Paths": signed["URL-Paths"],
                "Project": signed["X-Project-ID"],
                "Expires": signed["URL-Expires"],
                "Url": "",
                "Queue": delivery.source,
            }
        )
        return f"{base}?{query}"

    async def _smtp(self, message: EmailMessage) -> None:
        settings = self._settings
        await aiosmtplib.send(
            message,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_user_name,
            password=settings.smtp_user_password,
            use_tls=settings.smtp_security == "ssl",
            start_tls=settings.smtp_security == "starttls",
            timeout=settings.delivery_timeout,
        )

    async def _sendmail(self, message: EmailMessage) -> None:
        process = await asyncio.create_subprocess_exec(
            *shlex.split(self._settings.smtp_command),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            _, errors = await process.communicate(message.as_bytes())
        except (BrokenPipeError, ConnectionResetError, RuntimeError) as exc:
            # The command closed its input (or exited) before taking the whole message:
            # asyncio reports the write to a closed pipe as one of these.
            raise DeliveryError(
                f"{self._settings.smtp_command!r} did not read the whole message",
                retryable=True,
            ) from exc
        finally:
            if process.returncode is None:
                process.kill()
        if process.returncode != 0:
            raise DeliveryError(
                f"{self._settings.smtp_command!r} exited with {process.returncode}: "
                f"{errors.decode(errors='replace').strip()[:200]}",
                retryable=True,
            )

    async def close(self) -> None:
        return None


def _header_value(what: str, value: str) -> str:
    """A header value, refused (for good) when a line break could inject headers."""
    if "\r" in value or "\n" in value:
        raise DeliveryError(
            f"the email {what} contains a line break, which could inject mail headers",
            retryable=False,
        )
    return value
