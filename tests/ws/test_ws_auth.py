"""Auth over WebSocket (spec 8.4) under ``auth_strategy = "tokens"``, over real
connections: ``authenticate``, the 403s before it and for another project, signed-URL
frames, and the 4003 close when the token expires or is revoked.

Tokens are made with ``tidings token create`` (``--expires-in`` for short-lived ones).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.auth.test_tokens import create_token
from tests.server import TidingsServer, wait_until
from tests.ws.wire import Wire, ws_url
from tidings.admission.auth.tokens import parse_tokens, token_hash

SECRET_KEY = "ws-auth-secret"
NOT_AUTHENTIFIED = {"error": "Not authentified."}
NOT_AUTHENTICATED = {"error": "Not authenticated."}
AUTHENTIFIED = {"message": "Authentified."}
AUTH_FAILED = {"error": "Authentication failed."}
SHORT_LIFE = 8  # seconds: room to start using the token before it expires


@dataclass
class Deployment:
    server: TidingsServer
    tokens_file: Any
    project_a: str
    project_b: str
    token_a: str
    token_b: str

    def wire(self, project: str, *, binary: bool = False) -> Wire:
        return Wire(ws_url(self.server.url), project=project, binary=binary)

    def http_status(self, token: str) -> int:
        headers = {"Client-ID": str(uuid.uuid4()), "X-Auth-Token": token}
        return httpx.get(self.server.url + "/v2/queues", headers=headers, timeout=20).status_code

    def new_token(self, project: str, *extra: str) -> str:
        """A token made now, once the server has reloaded the file and accepts it."""
        token = create_token(self.tokens_file, project, *extra)
        wait_until(lambda: self.http_status(token) == 200, "the new token to be accepted")
        return token


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    data_dir = tmp_path_factory.mktemp("ws-auth")
    tokens_file = data_dir / "tokens.jsonl"
    project_a, project_b = f"pa-{uuid.uuid4().hex[:8]}", f"pb-{uuid.uuid4().hex[:8]}"
    token_a = create_token(tokens_file, project_a)
    token_b = create_token(tokens_file, project_b)
    server = TidingsServer(
        data_dir,
        env={
            "TIDINGS_AUTH_STRATEGY": "tokens",
            "TIDINGS_AUTH__TOKENS_FILE": str(tokens_file),
            "TIDINGS_SIGNED_URL__SECRET_KEY": SECRET_KEY,
        },
    )
    server.start()
    yield Deployment(server, tokens_file, project_a, project_b, token_a, token_b)
    server.stop()


def closed_with(wire: Wire) -> tuple[int | None, str | None]:
    """The close code and reason, once the server has closed the connection."""
    with pytest.raises(ConnectionClosed):
        wire.ws.recv(timeout=SHORT_LIFE + 20)
    return wire.ws.close_code, wire.ws.close_reason


def test_frames_before_authenticate_are_refused(deployment: Deployment) -> None:
    with deployment.wire(deployment.project_a) as wire:
        assert wire.call("queue_list") == (403, NOT_AUTHENTIFIED)
        assert wire.call("authenticate") == (401, AUTH_FAILED)
        assert wire.call("authenticate", **{"X-Auth-Token": "not-a-token"}) == (401, AUTH_FAILED)
        # A token of another project than the frame names.
        assert wire.call("authenticate", **{"X-Auth-Token": deployment.token_b}) == (
            403,
            AUTH_FAILED,
        )
        assert wire.call("queue_create", {"queue_name": "q"}) == (403, NOT_AUTHENTIFIED)
        # Still open, and authenticating works now.
        assert wire.call("authenticate", **{"X-Auth-Token": deployment.token_a}) == (
            200,
            AUTHENTIFIED,
        )


@pytest.mark.parametrize("binary", [False, True], ids=["json", "msgpack"])
def test_after_authenticate_frames_act_in_the_tokens_project(
    deployment: Deployment, binary: bool
) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    with deployment.wire(deployment.project_a, binary=binary) as wire:
        assert wire.call("authenticate", **{"X-Auth-Token": deployment.token_a}) == (
            200,
            AUTHENTIFIED,
        )
        assert wire.call("queue_create", {"queue_name": queue}) == (
            201,
            f"Queue {queue} created.",
        )
        # Another project in a frame: refused, whatever the action.
        for action, body in (("queue_list", None), ("queue_delete", {"queue_name": queue})):
            assert wire.call(action, body, **{"X-Project-ID": deployment.project_b}) == (
                403,
                NOT_AUTHENTICATED,
            )
        status, listed = wire.call("queue_list")
        assert status == 200 and {"name": queue} in listed["queues"]
    # Over HTTP, project B sees nothing of it.
    headers = {"Client-ID": str(uuid.uuid4()), "X-Auth-Token": deployment.token_b}
    listed_b = httpx.get(deployment.server.url + "/v2/queues", headers=headers, timeout=20)
    assert listed_b.json()["queues"] == []


def test_signed_frames_need_no_token_and_only_do_what_was_signed(
    deployment: Deployment,
) -> None:
    api_headers = {"Client-ID": str(uuid.uuid4()), "X-Auth-Token": deployment.token_a}
    with httpx.Client(
        base_url=deployment.server.url + "/v2", headers=api_headers, timeout=20
    ) as api:
        assert api.put("/queues/signed").status_code == 201
        shared: dict[str, Any] = api.post(
            "/queues/signed/share", json={"methods": ["GET", "POST"]}
        ).json()
    signed = {
        "URL-Signature": shared["signature"],
        "URL-Expires": shared["expires"],
        "URL-Methods": ",".join(shared["methods"]),
        "URL-Paths": ",".join(shared["paths"]),
    }
    with deployment.wire(shared["project"]) as wire:
        status, posted = wire.call(
            "message_post", {"queue_name": "signed", "messages": [{"body": 1}]}, **signed
        )
        assert status == 201, posted
        (message_id,) = posted["message_ids"]
        status, listed = wire.call("message_list", {"queue_name": "signed", "echo": True},
                                   **signed)
        assert status == 200 and [m["body"] for m in listed["messages"]] == [1], listed
        # One message: the HTTP path .../messages/<id>, which the signed path grants.
        status, got = wire.call(
            "message_get", {"queue_name": "signed", "message_id": message_id}, **signed
        )
        assert status == 200, got
        for action, body, headers in (
            # Another queue: the path does not match.
            ("message_post", {"queue_name": "other", "messages": [{"body": 1}]}, signed),
            ("message_list", {"queue_name": "signed/../other"}, signed),
            # DELETE was not signed.
            ("message_delete", {"queue_name": "signed", "message_id": message_id}, signed),
            # Not a message action: never signable.
            ("queue_list", None, signed),
            # Tampered with, or for another project.
            ("message_list", {"queue_name": "signed"}, {**signed, "URL-Methods": "GET"}),
            ("message_list", {"queue_name": "signed"},
             {**signed, "X-Project-ID": deployment.project_b}),
        ):
            assert wire.call(action, body, **headers) == (403, NOT_AUTHENTIFIED), action


def test_the_connection_closes_with_4003_when_the_token_expires(
    deployment: Deployment,
) -> None:
    project = deployment.project_a
    short = deployment.new_token(project, "--expires-in", str(SHORT_LIFE))
    grant = parse_tokens(deployment.tokens_file.read_bytes()).by_hash[token_hash(short)]
    expires_at = grant.identity.expires_at
    assert expires_at is not None
    with deployment.wire(project) as expiring, deployment.wire(project) as renewed:
        for wire in (expiring, renewed):
            assert wire.call("authenticate", **{"X-Auth-Token": short}) == (200, AUTHENTIFIED)
        # Authenticating again (here with a token that does not expire) resets the timer.
        assert renewed.call("authenticate", **{"X-Auth-Token": deployment.token_a}) == (
            200,
            AUTHENTIFIED,
        )
        assert expiring.call("queue_list")[0] == 200
        assert closed_with(expiring) == (4003, "Authentication expired.")
        # Past the expiry (a timer may fire a clock tick early), the other one still works.
        assert time.time() >= expires_at - 0.1
        assert renewed.call("queue_list")[0] == 200
    assert deployment.http_status(short) == 401


def test_a_revoked_token_stops_working_on_an_open_connection(deployment: Deployment) -> None:
    project = deployment.project_a
    token = deployment.new_token(project)
    with deployment.wire(project) as wire:
        assert wire.call("authenticate", **{"X-Auth-Token": token}) == (200, AUTHENTIFIED)
        assert wire.call("queue_list")[0] == 200
        kept = [
            line
            for line in deployment.tokens_file.read_text().splitlines(keepends=True)
            if token_hash(token) not in line
        ]
        replacement = deployment.tokens_file.with_suffix(".new")
        replacement.write_text("".join(kept))
        os.replace(replacement, deployment.tokens_file)
        wait_until(lambda: deployment.http_status(token) == 401, "the token to be revoked")
        status, body = wire.call("queue_list")
        assert status == 401 and body["error"] is None, body
        assert closed_with(wire) == (4003, "Authentication expired.")
