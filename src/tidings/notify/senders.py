"""Sending one delivery: webhooks over HTTP, email over SMTP or sendmail.

Every call is bounded by ``[notification] delivery_timeout``. A sender returns normally
on success and raises ``DeliveryError`` saying whether trying again may help.
"""

from __future__ import annotations

import asyncio
import shlex
from email.message import EmailMessage
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import aiohttp
import aiosmtplib
import msgspec

from tidings.config import NotificationSettings
from tidings.model import Delivery, DeliveryKind
from tidings.notify import payloads
from tidings.ops.context import split_namespace

# Statuses worth retrying: the receiver is failing or asks us to slow down.
RETRYABLE_STATUSES = frozenset({408, 425, 429}) | frozenset(range(500, 600))


class DeliveryError(Exception):
    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.retryable = retryable


class Sender(Protocol):
    async def send(self, delivery: Delivery) -> None: ...

    async def close(self) -> None: ...


class WebhookSender:
    """POSTs the document to the subscriber URL (with ``post_headers``/``post_data``)."""

    def __init__(self, settings: NotificationSettings) -> None:
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Made lazily: a session belongs to the event loop that first uses it.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._settings.delivery_timeout),
                connector=aiohttp.TCPConnector(limit=self._settings.max_notifier_workers * 2),
                skip_auto_headers=("Content-Type",),
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
                data=payloads.webhook_body(delivery),
                headers=headers,
                allow_redirects=False,
            ) as answer:
                await answer.read()
                status = answer.status
        except (aiohttp.ClientError, TimeoutError) as exc:  # refused, reset, timed out...
            raise DeliveryError(f"{type(exc).__name__}: {exc}", retryable=True) from exc
        except ValueError as exc:  # a URL or header the client refuses: retrying won't help
            raise DeliveryError(f"{type(exc).__name__}: {exc}", retryable=False) from exc
        if status >= 400:
            raise DeliveryError(
                f"HTTP {status} from {delivery.subscriber}",
                retryable=status in RETRYABLE_STATUSES,
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class EmailSender:
    """Mails notifications and confirmation links to ``mailto:`` subscribers."""

    def __init__(self, settings: NotificationSettings) -> None:
        self._settings = settings

    async def send(self, delivery: Delivery) -> None:
        message = self.compose(delivery)
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
        message = EmailMessage()
        message["To"] = unquote(address.path)
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
            message["From"] = str(sender)
        if subject:
            message["Subject"] = str(subject)
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
