"""Project A's world for the tenant-isolation tests (HTTP: ``test_isolation``,
WebSocket: ``test_ws_isolation``): a server per auth strategy, A's resources made over
HTTP, the names and ids B's requests are filled with (A's real ones and controls of the
same shapes that exist nowhere), A's secrets, and A's data as A reads it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.keystone import Keystone
from tests.server import TidingsServer

SECRET_KEY = "isolation-secret"
TIMEOUT = 30.0
JSON = "application/json"
# What A's signed URL grants (share body in populate): GET on the queue's messages.
SIGNED_METHODS = ("GET",)
PURGE = {"resource_types": ["messages", "subscriptions"]}


@dataclass(frozen=True)
class World:
    """A's resources, and the names and ids B's requests are filled with.

    ``fields(collection)`` are A's real values; ``control(collection)`` values of the
    same shapes that exist nowhere.
    """

    queue: str
    topic: str
    hidden: str  # a queue of A's that B never names
    queue_messages: list[str]
    topic_messages: list[str]
    claim: str
    queue_subscription: str
    topic_subscription: str
    subscriber: str
    body_marker: str
    metadata_marker: str
    control_tag: str

    def fields(self, collection: str) -> dict[str, str]:
        topics = collection == "topics"
        ids = self.topic_messages if topics else self.queue_messages
        return {
            "queue": self.topic if topics else self.queue,
            "message_id": ids[0],
            "message_id_2": ids[1],
            "claim_id": self.claim,
            "subscription_id": self.topic_subscription if topics else self.queue_subscription,
            "subscriber": self.subscriber,
        }

    def control(self, collection: str) -> dict[str, str]:
        tag = self.control_tag
        return {
            "queue": f"c-{collection[:5]}-{tag}",
            "message_id": stable_uuid(f"{tag}-m1"),
            "message_id_2": stable_uuid(f"{tag}-m2"),
            "claim_id": stable_uuid(f"{tag}-c"),
            "subscription_id": stable_uuid(f"{tag}-s-{collection}"),
            "subscriber": f"http://c-hook-{tag}.invalid:8080/h",
        }

    def secrets(self, project: str) -> dict[str, str]:
        """Everything of A's that B must not learn, by name."""
        found = {
            "A's project": project,
            "A's queue": self.queue,
            "A's topic": self.topic,
            "A's hidden queue": self.hidden,
            "A's claim": self.claim,
            "A's queue subscription": self.queue_subscription,
            "A's topic subscription": self.topic_subscription,
            "A's subscriber": self.subscriber,
            "A's message bodies": self.body_marker,
            "A's queue metadata": self.metadata_marker,
        }
        for n, message in enumerate([*self.queue_messages, *self.topic_messages]):
            found[f"A's message {n}"] = message
        return found


def stable_uuid(seed: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, seed))


@dataclass
class Deployment:
    strategy: str
    server: TidingsServer
    http: httpx.Client
    project_a: str
    project_b: str
    a: dict[str, str]  # A's credential headers (Client-ID included)
    b: dict[str, str]  # B's
    # Set by populate: A's resources, A's signed-URL headers (GET on its queue's
    # messages) and A's data as A reads it before B does anything.
    world: World = field(init=False)
    signed: dict[str, str] = field(init=False)
    baseline: dict[str, Any] = field(init=False)

    @property
    def authenticated(self) -> bool:
        return self.strategy != "noauth"

    def send(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        media_type: str = JSON,
    ) -> httpx.Response:
        sent = dict(headers)
        content = None
        if body is not None:
            content = json.dumps(body).encode()
            sent["Content-Type"] = media_type
        return self.http.request(method, path, params=query, content=content, headers=sent)

    def as_a(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return self.send(method, path, self.a, body=body)

    def as_b(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return self.send(method, path, self.b, body=body)

    def snapshot(self) -> dict[str, Any]:
        """A's data as A reads it (ages left out: they move by themselves)."""
        w = self.world
        paths = [
            "/v2/queues?detailed=true",
            "/v2/topics?detailed=true",
            f"/v2/queues/{w.queue}/messages?echo=true&include_claimed=true",
            f"/v2/topics/{w.topic}/messages?echo=true&include_claimed=true",
            f"/v2/queues/{w.hidden}/messages?echo=true&include_claimed=true",
            f"/v2/queues/{w.queue}/stats",
            f"/v2/topics/{w.topic}/stats",
            f"/v2/queues/{w.queue}/claims/{w.claim}",
            f"/v2/queues/{w.queue}/subscriptions",
            f"/v2/topics/{w.topic}/subscriptions",
        ]
        found = {}
        for path in paths:
            response = self.as_a("GET", path)
            assert response.status_code == 200, (path, response.text)
            found[path] = without_ages(response.json())
        return found


def without_ages(document: Any) -> Any:
    if isinstance(document, dict):
        return {k: without_ages(v) for k, v in document.items() if k != "age"}
    if isinstance(document, list):
        return [without_ages(v) for v in document]
    return document


def populate(dep: Deployment) -> None:
    """A's resources, then its baseline snapshot and signed URL."""
    tag = uuid.uuid4().hex[:8]
    queue, topic, hidden = f"a-queue-{tag}", f"a-topic-{tag}", f"a-hidden-{tag}"
    body_marker, metadata_marker = f"a-body-{tag}", f"a-meta-{tag}"
    subscriber = f"http://a-hook-{tag}.invalid:8080/h"

    def post_messages(path: str, count: int) -> list[str]:
        messages = [{"body": {"secret": body_marker, "n": n}, "ttl": 3600} for n in range(count)]
        posted = dep.as_a("POST", path, {"messages": messages})
        assert posted.status_code == 201, posted.text
        return [href.rsplit("/", 1)[1] for href in posted.json()["resources"]]

    def subscribe(path: str) -> str:
        created = dep.as_a("POST", path, {"subscriber": subscriber, "ttl": 3600})
        assert created.status_code == 201, created.text
        subscription_id: str = created.json()["subscription_id"]
        return subscription_id

    for source in (f"/v2/queues/{queue}", f"/v2/topics/{topic}", f"/v2/queues/{hidden}"):
        made = dep.as_a("PUT", source, {"owner": metadata_marker})
        assert made.status_code == 201, made.text
    queue_messages = post_messages(f"/v2/queues/{queue}/messages", 3)
    topic_messages = post_messages(f"/v2/topics/{topic}/messages", 2)
    post_messages(f"/v2/queues/{hidden}/messages", 1)
    # Two of the queue's three messages claimed, for long enough to outlast the module.
    claimed = dep.as_a("POST", f"/v2/queues/{queue}/claims?limit=2", {"ttl": 3000, "grace": 60})
    assert claimed.status_code == 201, claimed.text
    claim = claimed.headers["location"].rsplit("/", 1)[1]
    held = [m["href"].split("?")[0].rsplit("/", 1)[1] for m in claimed.json()["messages"]]
    # The message named in paths is a claimed one, so its claim id is A's real one.
    queue_messages = held + [m for m in queue_messages if m not in held]
    dep.world = World(
        queue=queue,
        topic=topic,
        hidden=hidden,
        queue_messages=queue_messages,
        topic_messages=topic_messages,
        claim=claim,
        queue_subscription=subscribe(f"/v2/queues/{queue}/subscriptions"),
        topic_subscription=subscribe(f"/v2/topics/{topic}/subscriptions"),
        subscriber=subscriber,
        body_marker=body_marker,
        metadata_marker=metadata_marker,
        control_tag=uuid.uuid4().hex[:8],
    )
    shared = dep.as_a(
        "POST",
        f"/v2/queues/{queue}/share",
        {"paths": ["messages"], "methods": list(SIGNED_METHODS)},
    )
    assert shared.status_code == 200, shared.text
    grant = shared.json()
    assert grant["project"] == dep.project_a
    dep.signed = {
        "Client-ID": dep.a["Client-ID"],
        "X-Project-ID": grant["project"],
        "URL-Signature": grant["signature"],
        "URL-Expires": grant["expires"],
        "URL-Methods": ",".join(grant["methods"]),
        "URL-Paths": ",".join(grant["paths"]),
    }
    dep.baseline = dep.snapshot()


def create_token(tokens_file: Path, project: str, roles: str) -> str:
    """``tidings token create`` (the real command): the token it prints."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tidings.cli",
            "token",
            "create",
            "--project",
            project,
            "--roles",
            roles,
            "--tokens-file",
            str(tokens_file),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 2,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@contextmanager
def deploy(
    strategy: str,
    data_dir: Path,
    *,
    keystone: Callable[[], Keystone] | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[Deployment]:
    """A server for ``strategy`` ("noauth", "tokens" or "keystone", which needs
    ``keystone``), admin mode on and a signed-URL key set, with A's world populated.

    B is an admin of its own project: under noauth its ``X-Roles: admin`` is honoured
    (admin mode is on), with tokens and Keystone its credential has the admin role.
    """
    settings = {
        "TIDINGS_ADMIN_MODE": "true",
        "TIDINGS_SIGNED_URL__SECRET_KEY": SECRET_KEY,
        **(env or {}),
    }
    client_a, client_b = str(uuid.uuid4()), str(uuid.uuid4())
    if strategy == "noauth":
        project_a, project_b = f"proj-a-{uuid.uuid4().hex[:8]}", f"proj-b-{uuid.uuid4().hex[:8]}"
        a = {"X-Project-ID": project_a}
        # admin_mode is on, so B's X-Roles: admin is honoured: B is as strong as can be.
        b = {"X-Project-ID": project_b, "X-Roles": "admin"}
    elif strategy == "tokens":
        project_a, project_b = f"proj-a-{uuid.uuid4().hex[:8]}", f"proj-b-{uuid.uuid4().hex[:8]}"
        tokens_file = data_dir / "tokens.jsonl"
        a = {"X-Auth-Token": create_token(tokens_file, project_a, "member")}
        b = {"X-Auth-Token": create_token(tokens_file, project_b, "admin,member")}
        settings.update(TIDINGS_AUTH_STRATEGY="tokens", TIDINGS_AUTH__TOKENS_FILE=str(tokens_file))
    else:
        assert keystone is not None, f"{strategy}: needs the keystone fixture"
        identity = keystone()
        alpha, beta = identity.accounts["alpha-member"], identity.accounts["beta-admin"]
        project_a, project_b = alpha.project_id, beta.project_id
        a = {"X-Auth-Token": identity.token_for(alpha).value}
        b = {"X-Auth-Token": identity.token_for(beta).value}
        settings.update(identity.server_env())
    server = TidingsServer(data_dir, env=settings)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=TIMEOUT) as http:
            dep = Deployment(
                strategy,
                server,
                http,
                project_a,
                project_b,
                a={"Client-ID": client_a, **a},
                b={"Client-ID": client_b, **b},
            )
            populate(dep)
            yield dep
    finally:
        server.stop()


def clean_b(dep: Deployment, names: list[tuple[str, str]]) -> None:
    """Remove what B's request may have made in B's own project, so the next request
    starts from the same (empty) project."""
    for collection, name in names:
        base = f"/v2/{collection}/{name}"
        purged = dep.as_b("POST", f"{base}/purge", PURGE)
        assert purged.status_code == 204, purged.text
        assert dep.as_b("DELETE", base).status_code == 204


# ---------------------------------------------------------------- comparing answers

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
HEX_DIGEST = re.compile(r"\b[0-9a-f]{64}\b")
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})?")
FRACTION = re.compile(r"-?\d+\.\d+(?:e-?\d+)?")


def fill(template: Any, values: dict[str, str]) -> Any:
    """``template`` with ``{name}`` in its strings (at any depth) set from ``values``."""
    if isinstance(template, str):
        return template.format_map(values)
    if isinstance(template, list):
        return [fill(v, values) for v in template]
    if isinstance(template, dict):
        return {k: fill(v, values) for k, v in template.items()}
    return template


def normalized_text(text: str, fields: dict[str, str]) -> str:
    """``text`` with the request's own names and ids, fresh ids, signatures, times and
    durations replaced by placeholders."""
    for name, value in sorted(fields.items(), key=lambda kv: -len(kv[1])):
        text = text.replace(value, f"<{name}>")
    for pattern, placeholder in (
        (UUID, "<uuid>"),
        (HEX_DIGEST, "<hex>"),
        (TIMESTAMP, "<time>"),
        (FRACTION, "<number>"),
    ):
        text = pattern.sub(placeholder, text)
    return text
