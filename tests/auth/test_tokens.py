"""``auth_strategy = "tokens"``: static API tokens, end to end.

Tokens are made with ``tidings token create`` (the real command), served by a real
server over its own SQLite file, and used with httpx, the stock python-zaqarclient and
the stock ``openstack`` CLI (``--os-auth-type admin_token``: a token and an endpoint,
no Keystone at all). Source: /work/notes/issue9.md item 1 (tokens) and 5, spec
api-v2-extended.md §9.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from zaqarclient.queues import client as zaqar

from tests.server import TidingsServer, free_port, wait_until
from tidings.admission.auth.tokens import (
    RELOAD_INTERVAL,
    TokenAuthenticator,
    parse_tokens,
    token_hash,
)
from tidings.config import AuthSettings, Settings
from tidings.errors import Unauthorized

SECRET_KEY = "tokens-test-secret"
UNAUTHORIZED = {
    "title": "Unauthorized",
    "description": "The request you have made requires authentication.",
}
NOT_AUTHORIZED = {
    "title": "Not authorized",
    "description": "You are not authorized to complete this action.",
}
CLI_TIMEOUT = 60


def create_token(tokens_file: Path, project: str, *extra: str) -> str:
    """``tidings token create``: the token it prints on stdout (once)."""
    done = subprocess.run(
        [sys.executable, "-m", "tidings.cli", "token", "create", "--project", project,
         "--tokens-file", str(tokens_file), *extra],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert token and "\n" not in token
    return token


@dataclass
class Deployment:
    server: TidingsServer
    tokens_file: Path
    project_a: str
    project_b: str
    member_a: str  # project A, role member, user alice
    admin_b: str  # project B, roles admin and member, user bob

    def client(self, token: str | None, **headers: str) -> httpx.Client:
        sent = {"Client-ID": str(uuid.uuid4()), **headers}
        if token is not None:
            sent["X-Auth-Token"] = token
        return httpx.Client(base_url=self.server.url + "/v2", headers=sent, timeout=30.0)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    data_dir = tmp_path_factory.mktemp("tokens")
    tokens_file = data_dir / "tokens.jsonl"
    project_a, project_b = f"pa-{uuid.uuid4().hex[:8]}", f"pb-{uuid.uuid4().hex[:8]}"
    member_a = create_token(tokens_file, project_a, "--user", "alice")
    admin_b = create_token(tokens_file, project_b, "--user", "bob", "--roles", "admin,member")
    server = TidingsServer(
        data_dir,
        env={
            "TIDINGS_AUTH_STRATEGY": "tokens",
            "TIDINGS_AUTH__TOKENS_FILE": str(tokens_file),
            "TIDINGS_ADMIN_MODE": "true",
            "TIDINGS_SIGNED_URL__SECRET_KEY": SECRET_KEY,
        },
    )
    server.start()
    yield Deployment(server, tokens_file, project_a, project_b, member_a, admin_b)
    server.stop()


def test_the_command_stores_only_a_hash_in_a_private_file(deployment: Deployment) -> None:
    text = deployment.tokens_file.read_text()
    assert deployment.member_a not in text and deployment.admin_b not in text
    assert token_hash(deployment.member_a) in text
    assert deployment.tokens_file.stat().st_mode & 0o777 == 0o600
    table = parse_tokens(text.encode())
    assert not table.errors
    grant = table.by_hash[token_hash(deployment.admin_b)].identity
    assert (grant.project, grant.user_id, grant.roles) == (
        deployment.project_b, "bob", frozenset({"admin", "member"})
    )


def test_each_token_acts_in_its_own_project(deployment: Deployment) -> None:
    with deployment.client(deployment.member_a) as a, deployment.client(deployment.admin_b) as b:
        # X-Project-ID may be left out: the token decides.
        assert a.put("/queues/shared-name").status_code == 201
        posted = a.post("/queues/shared-name/messages", json={"messages": [{"body": "for A"}]})
        assert posted.status_code == 201, posted.text
        assert [q["name"] for q in a.get("/queues").json()["queues"]] == ["shared-name"]
        # B sees nothing of A's, even under the same queue name.
        assert b.get("/queues").json()["queues"] == []
        assert b.get("/queues/shared-name/stats").json()["messages"]["total"] == 0
        # Naming the token's own project is fine.
        own = a.get("/queues", headers={"X-Project-ID": deployment.project_a})
        assert own.status_code == 200
        # Naming another one is a 403, whatever the route.
        for response in (
            b.get("/queues", headers={"X-Project-ID": deployment.project_a}),
            b.get(
                "/queues/shared-name/messages",
                headers={"X-Project-ID": deployment.project_a},
            ),
            a.delete("/queues/shared-name", headers={"X-Project-ID": deployment.project_b}),
        ):
            assert response.status_code == 403, response.text
            assert response.json() == NOT_AUTHORIZED
        assert a.get("/queues/shared-name/stats").json()["messages"]["total"] == 1


def test_roles_come_from_the_token_not_from_x_roles(deployment: Deployment) -> None:
    with deployment.client(deployment.member_a, **{"X-Roles": "admin"}) as a:
        refused = a.get("/health")
        assert refused.status_code == 403, refused.text
        assert refused.json() == NOT_AUTHORIZED
    with deployment.client(deployment.admin_b) as b:
        assert b.get("/health").status_code == 200


def test_a_missing_or_unknown_token_is_a_401(deployment: Deployment) -> None:
    for token in (None, "", "not-a-token", deployment.member_a + "x", "x" * 5000):
        with deployment.client(token, **{"X-Project-ID": deployment.project_a}) as c:
            for response in (c.get("/queues"), c.get("/ping"), c.post("/queues/q/messages",
                                                                      json={"messages": []})):
                assert response.status_code == 401, (token, response.text)
                assert response.json() == UNAUTHORIZED
    # The versions document needs no token.
    assert httpx.get(deployment.server.url + "/", timeout=30.0).status_code == 300


def test_tokens_are_reloaded_when_the_file_changes(deployment: Deployment) -> None:
    project = f"pc-{uuid.uuid4().hex[:8]}"
    token = create_token(deployment.tokens_file, project, "--roles", "member")

    def answer() -> int:
        with deployment.client(token) as c:
            return c.get("/queues").status_code

    wait_until(lambda: answer() == 200, "the new token to be accepted")
    # Revoke it: the file is replaced without its line (as an editor would save it).
    kept = [line for line in deployment.tokens_file.read_text().splitlines(keepends=True)
            if token_hash(token) not in line]
    replacement = deployment.tokens_file.with_suffix(".new")
    replacement.write_text("# revoked one\n" + "".join(kept))
    os.replace(replacement, deployment.tokens_file)
    wait_until(lambda: answer() == 401, "the revoked token to be refused")
    with deployment.client(deployment.member_a) as a:
        assert a.get("/queues").status_code == 200


def test_a_signed_url_needs_no_token_and_serves_its_project_only(deployment: Deployment) -> None:
    with deployment.client(deployment.member_a) as a:
        posted = a.post("/queues/signed/messages", json={"messages": [{"body": 1}]})
        assert posted.status_code == 201, posted.text
        shared: dict[str, Any] = a.post("/queues/signed/share", json={"methods": ["GET"]}).json()
    assert shared["project"] == deployment.project_a
    signed = {
        "Client-ID": str(uuid.uuid4()),
        "X-Project-ID": shared["project"],
        "URL-Signature": shared["signature"],
        "URL-Expires": shared["expires"],
        "URL-Methods": ",".join(shared["methods"]),
        "URL-Paths": ",".join(shared["paths"]),
    }
    url = deployment.server.url + "/v2/queues/signed/messages?echo=true"
    listed = httpx.get(url, headers=signed, timeout=30.0)
    assert listed.status_code == 200, listed.text
    assert [m["body"] for m in listed.json()["messages"]] == [1]
    # Another project, another route, or another method: the same plain 404.
    for response in (
        httpx.get(url, headers={**signed, "X-Project-ID": deployment.project_b}, timeout=30.0),
        httpx.get(deployment.server.url + "/v2/queues/signed/stats", headers=signed,
                  timeout=30.0),
        httpx.delete(url, headers=signed, timeout=30.0),
    ):
        assert response.status_code == 404, response.text


def test_python_zaqarclient_with_a_token(deployment: Deployment) -> None:
    conf = {"auth_opts": {"backend": "keystone",
                          "options": {"os_auth_token": deployment.admin_b}}}
    client = zaqar.Client(deployment.server.url, version=2, conf=conf)
    queue = client.queue("zc-token", force_create=True)
    queue.post([{"body": {"n": 1}, "ttl": 300}])
    assert [m.body for m in queue.messages(echo=True)] == [{"n": 1}]
    # It landed in the token's project.
    with deployment.client(deployment.admin_b) as b:
        assert "zc-token" in [q["name"] for q in b.get("/queues").json()["queues"]]
    with deployment.client(deployment.member_a) as a:
        assert "zc-token" not in [q["name"] for q in a.get("/queues").json()["queues"]]


def openstack(deployment: Deployment, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("openstack", path=str(Path(sys.executable).parent))
    if executable is None:
        pytest.skip("python-openstackclient is not installed (test extras)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["OS_MESSAGE_CLIENT_ID"] = str(uuid.uuid4())
    return subprocess.run(
        [executable, "--os-auth-type", "admin_token", "--os-endpoint", deployment.server.url,
         "--os-token", token, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=CLI_TIMEOUT,
        check=False,
    )


def test_openstack_cli_with_a_static_token(deployment: Deployment) -> None:
    done = openstack(
        deployment, deployment.member_a,
        "messaging", "message", "post", "osc-token", '[{"body": "from the CLI", "ttl": 300}]',
    )
    assert done.returncode == 0, done.stderr
    with deployment.client(deployment.member_a) as a:
        listed = a.get("/queues/osc-token/messages", params={"echo": "true"}).json()
    assert [m["body"] for m in listed["messages"]] == ["from the CLI"]
    refused = openstack(deployment, "not-a-token", "messaging", "queue", "list")
    assert refused.returncode != 0
    assert "401" in refused.stderr and "Unauthorized" in refused.stderr


def test_serve_refuses_a_missing_tokens_file(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env.update({
        "TIDINGS_AUTH_STRATEGY": "tokens",
        "TIDINGS_DRIVERS__MESSAGE_STORE": f"sqlite:///{tmp_path / 't.db'}",
    })
    argv = [sys.executable, "-m", "tidings.cli", "serve", "--port", str(free_port())]
    for extra, said in (({}, "tokens_file"),
                        ({"TIDINGS_AUTH__TOKENS_FILE": str(tmp_path / "none")}, "cannot read")):
        done = subprocess.run(argv, env={**env, **extra}, capture_output=True, text=True,
                              timeout=CLI_TIMEOUT, check=False)
        assert done.returncode == 2, done.stderr
        assert said in done.stderr


def test_a_malformed_line_is_skipped_not_fatal() -> None:
    good = (f'{{"sha256": "{token_hash("t1")}", "project": "p", "roles": ["Member "]}}'
            .encode())
    table = parse_tokens(b"# comment\n\n" + good + b'\n{"sha256": "short", "project": "p"}\n'
                         + b'{"sha256": "' + token_hash("t2").encode() + b'", "proj')
    assert list(table.by_hash) == [token_hash("t1")]
    assert table.by_hash[token_hash("t1")].identity.roles == {"member"}
    # The bad line is reported; the unfinished last one (an append in progress) is not.
    assert len(table.errors) == 1 and table.errors[0].startswith("line 4:")


def test_token_create_refuses_bad_values(tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    for args in (
        ["--project", "", "--tokens-file", str(tokens_file)],
        ["--project", "p\x01", "--tokens-file", str(tokens_file)],
        ["--project", "p", "--roles", "ok,bad\x7f", "--tokens-file", str(tokens_file)],
        ["--project", "p"],  # no file given, none configured
    ):
        done = subprocess.run(
            [sys.executable, "-m", "tidings.cli", "token", "create", *args],
            capture_output=True, text=True, env=env, timeout=CLI_TIMEOUT, check=False,
        )
        assert done.returncode == 2, (args, done.stderr)
        assert done.stdout == ""
    assert not tokens_file.exists()


def test_an_unreadable_file_refuses_every_token_until_it_is_back(tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens.jsonl"
    token = create_token(tokens_file, "p")
    settings = Settings(auth_strategy="tokens", auth=AuthSettings(tokens_file=str(tokens_file)))
    now = [0.0]  # the authenticator's clock: each step passes the reload interval
    authenticator = TokenAuthenticator(settings, clock=lambda: now[0])

    async def outcome() -> str:
        now[0] += RELOAD_INTERVAL
        try:
            return (await authenticator.authenticate({"x-auth-token": token})).project
        except Unauthorized:
            return "refused"

    async def scenario() -> list[str]:
        seen = [await outcome()]
        moved = tokens_file.rename(tmp_path / "elsewhere")
        seen.append(await outcome())
        moved.rename(tokens_file)
        seen.append(await outcome())
        return seen

    assert asyncio.run(scenario()) == ["p", "refused", "p"]
