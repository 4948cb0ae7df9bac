"""``_enable_encrypt_messages`` end to end: AES-256-GCM at rest on every store, plaintext
on every read path (list, get, get many, claim, claim get, pop, dead-letter moves,
webhook notifications), key rotation across restarts, and refusals without a key.

"At rest" is read from the store itself, whatever its layout: every value of every
table (SQLite, PostgreSQL) or key (Redis) in the server's namespace is searched for the
plaintext. A plaintext queue beside the encrypted one proves the search sees bodies.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from tests import notify_listeners
from tests.backends import POSTGRES_DSN, REDIS_URL
from tests.notify_listeners import WebhookListener
from tests.server import TidingsServer

webhook_listener = notify_listeners.webhook_listener

SEALED = b"tidings-aes256gcm-v1:"
KEYS_ENV = "TIDINGS_TRANSPORT__MESSAGE_ENCRYPTION_KEYS"
SETTING = "[transport] message_encryption_keys"
LOOPBACK_ALLOWED = {"TIDINGS_NOTIFICATION__SUBSCRIBER_DENY_NETWORKS": "[]"}


def new_key(key_id: str) -> dict[str, str]:
    return {"id": key_id, "key": base64.b64encode(os.urandom(32)).decode()}


def keys_env(*keys: dict[str, str]) -> dict[str, str]:
    return {KEYS_ENV: json.dumps(list(keys))}


# ---------------------------------------------------------------------- at rest


def stored_bytes(store_uri: str) -> bytes:
    """Every value the store holds for this server, joined (to search for text in)."""
    scheme = store_uri.partition("://")[0]
    query = parse_qs(urlsplit(store_uri).query)
    if scheme == "sqlite":
        return _sqlite_bytes(Path(store_uri.removeprefix("sqlite:///")))
    if scheme == "redis":
        return asyncio.run(_redis_bytes(query["prefix"][0]))
    return asyncio.run(_postgres_bytes(query["schema"][0]))


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode()


def _sqlite_bytes(path: Path) -> bytes:
    db = sqlite3.connect(path)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return b"\n".join(
            _as_bytes(value)
            for table in tables
            for row in db.execute(f'SELECT * FROM "{table}"')
            for value in row
        )
    finally:
        db.close()


async def _postgres_bytes(schema: str) -> bytes:
    connection = await asyncpg.connect(POSTGRES_DSN)
    try:
        tables = await connection.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
        )
        parts = []
        for (table,) in tables:
            for row in await connection.fetch(f'SELECT * FROM "{schema}"."{table}"'):
                parts.extend(_as_bytes(value) for value in row.values())
        return b"\n".join(parts)
    finally:
        await connection.close()


async def _redis_bytes(prefix: str) -> bytes:
    client = aioredis.Redis.from_url(REDIS_URL)
    parts: list[bytes] = []
    try:
        async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            kind = (await client.type(key)).decode()
            if kind == "string":
                parts.append(await client.get(key))
            elif kind == "hash":
                for field, value in (await client.hgetall(key)).items():
                    parts += [field, value]
            elif kind == "zset":
                parts += await client.zrange(key, 0, -1)
            elif kind == "set":
                parts += list(await client.smembers(key))
            elif kind == "list":
                parts += await client.lrange(key, 0, -1)
            elif kind == "none":
                continue  # removed since the scan saw it (the dispatcher empties queues)
            else:
                raise AssertionError(f"no reader for Redis {kind} {key!r}")
    finally:
        await client.aclose()
    return b"\n".join(parts)


# ---------------------------------------------------------------------- helpers


@pytest.fixture
def keyed(make_server: type[TidingsServer], tmp_path: Path) -> Iterator[TidingsServer]:
    """A server with one key ("a"), checksums on, loopback webhooks allowed."""
    env = {**keys_env(new_key("a")), **LOOPBACK_ALLOWED, "TIDINGS_ENABLE_CHECKSUM": "true"}
    yield make_server(tmp_path, env=env).start()


def post(client: httpx.Client, queue: str, *bodies: Any) -> list[str]:
    messages = [{"body": body} for body in bodies]
    resp = client.post(f"/queues/{queue}/messages", json={"messages": messages})
    assert resp.status_code == 201, resp.text
    return [href.rsplit("/", 1)[1] for href in resp.json()["resources"]]


def bodies(messages: list[dict[str, Any]]) -> list[Any]:
    return [m["body"] for m in messages]


# ---------------------------------------------------------------------- tests


def test_ciphertext_at_rest_plaintext_on_every_read_path(
    keyed: TidingsServer, webhook_listener: WebhookListener
) -> None:
    secret = f"secret-{uuid.uuid4().hex}"
    plain = f"visible-{uuid.uuid4().hex}"
    sent = [{"secret": secret, "n": [1, 2.5, None, True]}, f"{secret} as text", [secret], 7]
    with keyed.client() as api:
        assert api.put("/queues/enc", json={"_enable_encrypt_messages": True}).status_code == 201
        assert api.get("/queues/enc").json()["_enable_encrypt_messages"] is True
        path = webhook_listener.new_path()
        hooked = api.post("/queues/enc/subscriptions",
                          json={"subscriber": webhook_listener.url(path), "ttl": 3600})
        assert hooked.status_code == 201, hooked.text
        # Notifications owed for later keep their body in the store meanwhile.
        api.put("/queues/held", json={"_enable_encrypt_messages": True,
                                      "_default_message_delay": 900})
        api.post("/queues/held/subscriptions",
                 json={"subscriber": webhook_listener.url(webhook_listener.new_path())})
        post(api, "held", {"held": secret})
        ids = post(api, "enc", *sent)
        post(api, "plain", {"plain": plain}, {"plain": plain})

        at_rest = stored_bytes(keyed.store_uri)
        assert plain.encode() in at_rest  # the search does see bodies...
        assert secret.encode() not in at_rest  # ...and none of these is readable
        assert SEALED in at_rest

        # webhooks get the body in clear
        delivered = webhook_listener.wait_for(path, len(sent))
        assert sorted(map(repr, (r.json()["body"] for r in delivered))) == sorted(map(repr, sent))

        listing = api.get("/queues/enc/messages", params={"echo": "true"}).json()["messages"]
        assert bodies(listing) == sent
        # checksums are of the plaintext: the same body in a plain queue has the same one
        post(api, "twin", sent[0])
        (twin,) = api.get("/queues/twin/messages", params={"echo": "true"}).json()["messages"]
        assert listing[0]["checksum"] == twin["checksum"]
        assert api.get(f"/queues/enc/messages/{ids[1]}").json()["body"] == sent[1]
        many = api.get("/queues/enc/messages", params={"ids": ",".join(ids[:3])}).json()
        assert sorted(map(repr, bodies(many["messages"]))) == sorted(map(repr, sent[:3]))

        claim = api.post("/queues/enc/claims", params={"limit": 2}, json={"ttl": 60})
        assert claim.status_code == 201, claim.text
        assert bodies(claim.json()["messages"]) == sent[:2]
        claim_href = claim.headers["location"].removeprefix("/v2")
        assert bodies(api.get(claim_href).json()["messages"]) == sent[:2]
        popped = api.delete("/queues/enc/messages", params={"pop": 2}).json()["messages"]
        assert bodies(popped) == sent[2:]
        stats = api.get("/queues/enc/stats").json()["messages"]
        assert (stats["total"], stats["claimed"]) == (2, 2)


def test_dead_letter_moves_stay_readable(keyed: TidingsServer) -> None:
    """The dead-letter queue needs no encryption of its own to read what moves there,
    and what moves stays encrypted at rest."""
    secret = f"secret-{uuid.uuid4().hex}"
    with keyed.client() as api:
        meta = {"_enable_encrypt_messages": True, "_max_claim_count": 1,
                "_dead_letter_queue": "dlq"}  # fmt: skip
        assert api.put("/queues/src", json=meta).status_code == 201
        post(api, "src", {"job": secret})
        claim = api.post("/queues/src/claims", json={"ttl": 60})
        assert claim.status_code == 201, claim.text
        assert api.delete(claim.headers["location"].removeprefix("/v2")).status_code == 204
        assert api.post("/queues/src/claims", json={"ttl": 60}).status_code == 204  # moved
        moved = api.get("/queues/dlq/messages", params={"echo": "true"}).json()["messages"]
        assert bodies(moved) == [{"job": secret}]
        assert secret.encode() not in stored_bytes(keyed.store_uri)


def test_key_rotation_across_restarts(make_server: type[TidingsServer], tmp_path: Path) -> None:
    key_a, key_b = new_key("a"), new_key("b")
    srv = make_server(tmp_path, env=keys_env(key_a)).start()
    with srv.client() as api:
        project = api.headers["X-Project-ID"]
        api.put("/queues/rot", json={"_enable_encrypt_messages": True})
        (old,) = post(api, "rot", "written with a")
    srv.stop()
    srv.env.update(keys_env(key_b, key_a))
    srv.start()
    with srv.client(project=project) as api:
        assert api.get(f"/queues/rot/messages/{old}").json()["body"] == "written with a"
        (new,) = post(api, "rot", "written with b")
        listing = api.get("/queues/rot/messages", params={"echo": "true"}).json()["messages"]
        assert bodies(listing) == ["written with a", "written with b"]
    at_rest = stored_bytes(srv.store_uri)
    assert at_rest.count(SEALED + b"a:") == 1
    assert at_rest.count(SEALED + b"b:") == 1
    # Without key a, its body cannot be read: a clear error, never ciphertext.
    srv.stop()
    srv.env.update(keys_env(key_b))
    srv.start()
    with srv.client(project=project) as api:
        assert api.get(f"/queues/rot/messages/{new}").json()["body"] == "written with b"
        resp = api.get(f"/queues/rot/messages/{old}")
        assert resp.status_code == 500
        assert resp.json()["title"] == "Message could not be decrypted"
        assert "'a'" in resp.json()["description"]
        assert SETTING in resp.json()["description"]


def test_encryption_without_a_key_is_refused(api: httpx.Client) -> None:
    """The default server has no key: asking for encryption says which setting is missing."""
    resp = api.put("/queues/nokey", json={"_enable_encrypt_messages": True})
    assert resp.status_code == 400
    assert SETTING in resp.json()["description"]
    assert resp.json()["title"] == "Invalid API request"
    assert api.get("/queues/nokey").json()["_enable_encrypt_messages"] is False

    assert api.put("/queues/later", json={}).status_code == 201
    resp = api.patch(
        "/queues/later",
        json=[{"op": "add", "path": "/metadata/_enable_encrypt_messages", "value": True}],
        headers={"Content-Type": "application/openstack-messaging-v2.0-json-patch"},
    )
    assert resp.status_code == 400
    assert SETTING in resp.json()["description"]
    assert api.get("/queues/later").json()["_enable_encrypt_messages"] is False


@pytest.mark.parametrize(
    "raw_body", ['"tidings-aes256gcm-v1:a:AAAA"', '"\\u0074idings-aes256gcm-v1:x"']
)
def test_a_plaintext_body_cannot_pose_as_a_sealed_one(api: httpx.Client, raw_body: str) -> None:
    resp = api.post(
        "/queues/posing/messages",
        content=f'{{"messages": [{{"body": {raw_body}}}]}}',
        headers={"Content-Type": "application/json"},
    )
    assert resp.status_code == 400, resp.text
    assert "tidings-aes256gcm-v1:" in resp.json()["description"]
    # other text is fine
    assert post(api, "posing", "tidings-aes256gcm") != []
