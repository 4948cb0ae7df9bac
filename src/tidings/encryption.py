"""Message bodies at rest under AES-256-GCM, for queues with ``_enable_encrypt_messages``.

A sealed body is stored as a JSON string, so every store keeps it like any other body::

    "tidings-aes256gcm-v1:<key id>:<base64url(nonce | ciphertext | tag)>"

The plaintext is the body's JSON text exactly as posted (never pickled). The key id
lets a body find its key after rotation: new bodies use the first configured key, and
any listed key opens the bodies it sealed. The storage project is authenticated with
the body, so a sealed body copied to another tenant does not open.

Opening goes by the body's form, not the queue's current setting: bodies moved to a
dead-letter queue, or left behind when a queue stops encrypting, still read as
plaintext. Posting a plaintext body that looks sealed is refused (``check_plain``), so
no client can make the server try to open what it did not seal.

Neutral ground: the operations (every transport) and the notifier both use this module.
"""

from __future__ import annotations

import base64
import binascii
import functools
import os
from collections.abc import Iterable, Sequence

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tidings.config import EncryptionKey, TransportSettings, decode_key
from tidings.errors import BadRequest, TidingsError
from tidings.model import Delivery, DeliveryKind, Message

PREFIX = "tidings-aes256gcm-v1:"
_SEALED_START = b'"' + PREFIX.encode()
NONCE_BYTES = 12
SETTING = "[transport] message_encryption_keys"


class UnreadableBody(TidingsError):
    """A stored body is sealed with a key the server no longer has, or was altered."""

    status = 500
    title = "Message could not be decrypted"


class Keyring:
    """The configured keys: the first seals, any of them opens what it sealed."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys}
        self._current = keys[0][0] if keys else None

    @property
    def can_seal(self) -> bool:
        return self._current is not None

    def seal(self, body: bytes, project: str) -> bytes:
        """The sealed form of a JSON body (RuntimeError without a key: check first)."""
        if self._current is None:
            raise RuntimeError(f"no key to encrypt with: {SETTING} is empty")
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self._current].encrypt(
            nonce, body, _associated(self._current, project)
        )
        text = base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=")
        return b"%s%s:%s\"" % (_SEALED_START, self._current.encode(), text)

    def open(self, body: bytes, project: str) -> bytes:
        """The JSON body as posted; bodies that are not sealed come back unchanged."""
        if not body.startswith(_SEALED_START):
            return body
        key_id, _, text = body[len(_SEALED_START) : -1].decode("ascii", "replace").partition(":")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise UnreadableBody(
                f"A message is encrypted with key {key_id!r}, which {SETTING} does not "
                "list; the operator must list that key again to read it."
            )
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            nonce, sealed = raw[:NONCE_BYTES], raw[NONCE_BYTES:]
            return cipher.decrypt(nonce, sealed, _associated(key_id, project))
        except (InvalidTag, binascii.Error, ValueError):
            raise UnreadableBody(
                f"A message encrypted with key {key_id!r} fails its integrity check: it "
                "was altered at rest, or belongs to another project."
            ) from None

    def open_messages(self, messages: Iterable[Message], project: str) -> list[Message]:
        return [self.open_message(m, project) for m in messages]

    def open_message(self, message: Message, project: str) -> Message:
        if not message.body.startswith(_SEALED_START):
            return message
        return msgspec.structs.replace(message, body=self.open(message.body, project))

    def open_delivery(self, delivery: Delivery) -> Delivery:
        """A notification with its message body in clear (confirmations are never sealed)."""
        if delivery.kind is not DeliveryKind.NOTIFICATION or not is_sealed(delivery.payload):
            return delivery
        return msgspec.structs.replace(
            delivery, payload=self.open(delivery.payload, delivery.project)
        )


def _associated(key_id: str, project: str) -> bytes:
    return f"{PREFIX}{key_id}:".encode() + project.encode()


def is_sealed(body: bytes) -> bool:
    return body.startswith(_SEALED_START)


def check_plain(body: bytes) -> None:
    """Refuse a posted body that would be taken for a sealed one when read."""
    if not body.startswith(b'"'):
        return  # only a JSON string can look sealed
    try:
        text = msgspec.json.decode(body, type=str)
    except msgspec.DecodeError:
        return  # not a plain string: the body's own checks judge it
    if text.startswith(PREFIX):
        raise BadRequest(
            f"A message body may not be text that begins with {PREFIX!r}: the server "
            "marks encrypted bodies that way."
        )


def require_key(keyring: Keyring) -> None:
    if not keyring.can_seal:
        raise BadRequest(
            "_enable_encrypt_messages needs an encryption key, and this server has none: "
            f"the operator must configure {SETTING}."
        )


@functools.lru_cache(maxsize=8)
def _keyring(keys: tuple[EncryptionKey, ...]) -> Keyring:
    return Keyring([(k.id, decode_key(k.key) or b"") for k in keys])


def keyring(settings: TransportSettings) -> Keyring:
    """The keyring for these settings (built once per key list)."""
    return _keyring(tuple(settings.message_encryption_keys))
