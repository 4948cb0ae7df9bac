"""tidings.encryption on its own: the sealed form, rotation, tampering, and the refusals."""

from __future__ import annotations

import base64
import os

import msgspec
import pytest

from tidings import encryption
from tidings.config import ConfigError, load_settings
from tidings.encryption import Keyring, UnreadableBody
from tidings.errors import BadRequest
from tidings.model import Delivery, DeliveryKind

BODY = b'{"a": [1, "two", null]}'


def key() -> bytes:
    return os.urandom(32)


def test_seal_then_open_gives_the_exact_json_back() -> None:
    ring = Keyring([("k1", key())])
    sealed = ring.seal(BODY, "p")
    assert encryption.is_sealed(sealed)
    assert b"two" not in sealed
    assert msgspec.json.decode(sealed, type=str).startswith("tidings-aes256gcm-v1:k1:")
    assert ring.open(sealed, "p") == BODY
    assert ring.seal(BODY, "p") != sealed  # a fresh nonce every time


def test_plain_bodies_pass_through() -> None:
    assert Keyring([]).open(BODY, "p") == BODY


def test_new_writes_use_the_first_key_and_old_ones_stay_readable() -> None:
    a, b = key(), key()
    old = Keyring([("a", a)]).seal(BODY, "p")
    rotated = Keyring([("b", b), ("a", a)])
    assert rotated.open(old, "p") == BODY
    assert b'"tidings-aes256gcm-v1:b:' in rotated.seal(BODY, "p")


def test_a_missing_key_names_itself_and_the_setting() -> None:
    sealed = Keyring([("gone", key())]).seal(BODY, "p")
    with pytest.raises(UnreadableBody, match=r"'gone'.*message_encryption_keys"):
        Keyring([("other", key())]).open(sealed, "p")


@pytest.mark.parametrize("change", ["project", "ciphertext"])
def test_altered_or_moved_bodies_do_not_open(change: str) -> None:
    ring = Keyring([("k", key())])
    sealed = ring.seal(BODY, "p")
    if change == "ciphertext":
        sealed = sealed[:-3] + (b"A" if sealed[-3:-2] != b"A" else b"B") + sealed[-2:]
    with pytest.raises(UnreadableBody, match="integrity"):
        ring.open(sealed, "other" if change == "project" else "p")


def test_sealing_needs_a_key() -> None:
    with pytest.raises(BadRequest, match="message_encryption_keys"):
        encryption.require_key(Keyring([]))


@pytest.mark.parametrize(
    "body", [b'"tidings-aes256gcm-v1:k:x"', b'"\\u0074idings-aes256gcm-v1:k:x"']
)
def test_plaintext_posing_as_sealed_is_refused(body: bytes) -> None:
    with pytest.raises(BadRequest):
        encryption.check_plain(body)


@pytest.mark.parametrize("body", [b'"tidings"', b"1", b'{"tidings-aes256gcm-v1:": 1}'])
def test_other_bodies_are_plain(body: bytes) -> None:
    encryption.check_plain(body)


def test_notifications_open_and_confirmations_pass() -> None:
    ring = Keyring([("k", key())])

    def delivery(kind: DeliveryKind, payload: bytes) -> Delivery:
        return Delivery(id="1", project="p", source="q", subscription_id="s", kind=kind,
                        message_id="m", payload=payload, ttl=60, delay=0, attempts=1,
                        subscriber="http://x", options={})  # fmt: skip

    note = delivery(DeliveryKind.NOTIFICATION, ring.seal(BODY, "p"))
    assert ring.open_delivery(note).payload == BODY
    confirm = delivery(DeliveryKind.CONFIRMATION, b"{}")
    assert ring.open_delivery(confirm) is confirm


def test_keys_come_from_settings_and_environment() -> None:
    raw = base64.b64encode(key()).decode()
    env = {"TIDINGS_TRANSPORT__MESSAGE_ENCRYPTION_KEYS": f'[{{"id": "k1", "key": "{raw}"}}]'}
    settings = load_settings(environ=env)
    assert encryption.keyring(settings.transport).can_seal
    assert raw not in repr(settings)  # the key never shows in logs
    assert not encryption.keyring(load_settings(environ={}).transport).can_seal


@pytest.mark.parametrize(
    ("keys", "complaint"),
    [
        ('[{"id": "k", "key": "c2hvcnQ="}]', "32 random bytes"),
        ('[{"id": "a b", "key": "KEY"}]', "letters, digits"),
        ('[{"id": "k", "key": "KEY"}, {"id": "k", "key": "KEY"}]', "unique"),
    ],
)
def test_bad_keys_are_refused_at_start(keys: str, complaint: str) -> None:
    raw = base64.b64encode(key()).decode()
    env = {"TIDINGS_TRANSPORT__MESSAGE_ENCRYPTION_KEYS": keys.replace("KEY", raw)}
    with pytest.raises(ConfigError, match=complaint) as caught:
        load_settings(environ=env)
    assert raw not in str(caught.value)
