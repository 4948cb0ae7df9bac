"""``auth_strategy = "tokens"`` for the SQS face: access key pairs in the tokens file.

Pairs are made with ``tidings token create --aws`` (the real command) and used by boto3
against a real server: the key decides the project, the user and the roles; policy
applies to them; deleting the line revokes the key; an expired key is refused; a Zaqar
token and an access key of the same project see the same queues. Source:
/work/notes/issue14.md item 2.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.auth.test_tokens import create_token
from tests.server import TidingsServer, wait_until
from tests.sqs.conftest import sqs_client
from tests.sqs.test_sigv4 import KeyPair, create_key_pair
from tidings.admission.auth.tokens import (
    AccessKeyRecord,
    TokensFile,
    parse_tokens,
    record_line,
    token_hash,
)

CLI_TIMEOUT = 60
# Members may not delete queues, nor may observers send: an operator's policy file.
POLICY = """\
"queues:delete": "role:admin"
"messages:create": "not role:observer"
"""


def code_of(exc: ClientError) -> str:
    return str(exc.response["Error"]["Code"])


def refused_with(call: Any, *args: Any, **kwargs: Any) -> str:
    """The error code ``call`` raises (it must raise)."""
    with pytest.raises(ClientError) as refused:
        call(*args, **kwargs)
    return code_of(refused.value)


@dataclass
class Deployment:
    server: TidingsServer
    tokens_file: Path
    member_a: KeyPair  # project A, roles member, user alice
    admin_a: KeyPair  # project A, roles admin and member
    observer_a: KeyPair  # project A, role observer
    member_b: KeyPair  # project B
    token_a: str  # a Zaqar API token of project A

    def sqs(self, pair: KeyPair) -> Any:
        return sqs_client(self.server.url, pair.access_key, pair.secret_key)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A tokens server over SQLite (the identity does not depend on the store)."""
    data_dir = tmp_path_factory.mktemp("sqs-tokens")
    tokens_file = data_dir / "tokens.jsonl"
    policy_file = data_dir / "policy.yaml"
    policy_file.write_text(POLICY)
    project_a, project_b = f"pa-{uuid.uuid4().hex[:8]}", f"pb-{uuid.uuid4().hex[:8]}"
    member_a = create_key_pair(tokens_file, project_a, "--user", "alice")
    admin_a = create_key_pair(tokens_file, project_a, "--roles", "admin,member")
    observer_a = create_key_pair(tokens_file, project_a, "--roles", "observer")
    member_b = create_key_pair(tokens_file, project_b)
    token_a = create_token(tokens_file, project_a)
    server = TidingsServer(
        data_dir,
        env={
            "TIDINGS_AUTH_STRATEGY": "tokens",
            "TIDINGS_AUTH__TOKENS_FILE": str(tokens_file),
            "TIDINGS_OSLO_POLICY__POLICY_FILE": str(policy_file),
        },
    )
    server.start()
    yield Deployment(server, tokens_file, member_a, admin_a, observer_a, member_b, token_a)
    server.stop()


def test_the_command_appends_the_pair_to_a_private_file(deployment: Deployment) -> None:
    pair = deployment.member_a
    assert deployment.tokens_file.stat().st_mode & 0o777 == 0o600
    table = parse_tokens(deployment.tokens_file.read_bytes())
    assert not table.errors
    grant = table.by_access_key[pair.access_key]
    # The secret is stored: SigV4 verification recomputes signatures with it.
    assert grant.secret_key == pair.secret_key
    assert (grant.identity.project, grant.identity.user_id, grant.identity.roles) == (
        pair.project,
        "alice",
        frozenset({"member"}),
    )
    assert grant.identity.authenticated
    # 20 upper-case characters, as AWS's; 40-character secrets.
    assert len(pair.access_key) == 20 and pair.access_key.isupper()
    assert len(pair.secret_key) == 40
    # The token of the same file is still a token (its hash only).
    assert token_hash(deployment.token_a) in table.by_hash


def test_the_key_decides_the_project(deployment: Deployment) -> None:
    a, b = deployment.sqs(deployment.member_a), deployment.sqs(deployment.member_b)
    url = a.create_queue(QueueName="by-key")["QueueUrl"]
    assert url == f"{deployment.server.url}/{deployment.member_a.project}/by-key"
    # Project B has its own namespace: the same name is another queue, A's is not listed.
    assert url not in b.list_queues().get("QueueUrls", [])
    own = b.create_queue(QueueName="by-key")["QueueUrl"]
    assert own == f"{deployment.server.url}/{deployment.member_b.project}/by-key"
    # Zaqar's API with a token of project A sees the queue A's key made.
    with httpx.Client(
        base_url=deployment.server.url + "/v2",
        headers={"X-Auth-Token": deployment.token_a, "Client-ID": str(uuid.uuid4())},
    ) as zaqar:
        listed = zaqar.get("/queues").json()["queues"]
    assert "by-key" in [queue["name"] for queue in listed]


def test_roles_and_policy_apply(deployment: Deployment) -> None:
    member, admin = deployment.sqs(deployment.member_a), deployment.sqs(deployment.admin_a)
    observer = deployment.sqs(deployment.observer_a)
    url = member.create_queue(QueueName="guarded")["QueueUrl"]
    # queues:delete is role:admin: the member's key is denied, the admin's is not.
    assert refused_with(member.delete_queue, QueueUrl=url) == "AccessDenied"
    # messages:create refuses observers.
    assert refused_with(observer.send_message, QueueUrl=url, MessageBody="x") == "AccessDenied"
    admin.delete_queue(QueueUrl=url)
    assert url not in admin.list_queues().get("QueueUrls", [])


def test_a_token_is_not_an_access_key(deployment: Deployment) -> None:
    """The file's two kinds do not mix: a token is no access key id, nor a secret."""
    as_key = sqs_client(deployment.server.url, deployment.token_a, "any-secret-0123456789")
    assert refused_with(as_key.list_queues) in ("InvalidClientTokenId", "IncompleteSignature")
    with httpx.Client(base_url=deployment.server.url + "/v2") as client:
        answer = client.get(
            "/queues",
            headers={
                "X-Auth-Token": deployment.member_a.secret_key,
                "Client-ID": str(uuid.uuid4()),
            },
        )
    assert answer.status_code == 401


def test_deleting_the_line_revokes_the_key(deployment: Deployment) -> None:
    pair = create_key_pair(deployment.tokens_file, deployment.member_a.project)
    sqs = deployment.sqs(pair)
    wait_until(lambda: _works(sqs), "the new key to be loaded")
    text = deployment.tokens_file.read_text()
    kept = [line for line in text.splitlines() if pair.access_key not in line]
    deployment.tokens_file.write_text("\n".join(kept) + "\n")
    # Within the reload interval (a second), bounded here by wait_until's.
    wait_until(lambda: not _works(sqs), "the revoked key to be refused")
    assert refused_with(sqs.list_queues) == "InvalidClientTokenId"


def test_an_expired_key_is_refused(deployment: Deployment) -> None:
    past = AccessKeyRecord(
        access_key="TDKEXPIRED" + uuid.uuid4().hex[:10].upper(),
        secret_key="expired-secret-0123456789abcdef",
        project=deployment.member_a.project,
        expires=datetime.now(UTC) - timedelta(seconds=1),
    )
    future = AccessKeyRecord(
        access_key="TDKFUTURE0" + uuid.uuid4().hex[:10].upper(),
        secret_key="future-secret-0123456789abcdef",
        project=deployment.member_a.project,
        expires=datetime.now(UTC) + timedelta(days=1),
    )
    with deployment.tokens_file.open("ab") as file:
        file.write(record_line(past) + record_line(future))
    fresh = sqs_client(deployment.server.url, future.access_key, future.secret_key)
    wait_until(lambda: _works(fresh), "the new keys to be loaded")
    stale = sqs_client(deployment.server.url, past.access_key, past.secret_key)
    assert refused_with(stale.list_queues) == "InvalidClientTokenId"


def test_the_command_refuses_bad_values(tmp_path: Path) -> None:
    tokens_file = tmp_path / "tokens.jsonl"
    for args in (
        ["--project", ""],
        ["--project", "p\x01"],
        ["--project", "p", "--roles", "ok,bad\x7f"],
        ["--project", "p", "--expires-in", "0"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "tidings.cli", "token", "create", "--aws", *args,
             "--tokens-file", str(tokens_file)],
            capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False,
        )  # fmt: skip
        assert done.returncode == 2, (args, done.stderr)
        assert done.stdout == ""
    assert not tokens_file.exists()


def test_malformed_key_lines_are_skipped_and_never_echo_the_secret() -> None:
    good = {"access_key": "TDKGOOD0000000000001", "secret_key": "s" * 40, "project": "p"}
    lines = [
        json.dumps(good),
        json.dumps({**good, "access_key": "short"}),
        json.dumps({**good, "access_key": "TDKGOOD0000000000002", "secret_key": "tiny-secret"}),
        json.dumps({**good, "access_key": "TDKGOOD0000000000003", "extra": 1}),
        json.dumps({**good, "access_key": "TDKGOOD0000000000004", "secret_key": "with space" * 3}),
        json.dumps({**good, "sha256": "0" * 64}),  # both kinds in one line
    ]
    table = parse_tokens("\n".join(lines).encode() + b"\n")
    assert list(table.by_access_key) == ["TDKGOOD0000000000001"]
    assert [error.split(":")[0] for error in table.errors] == [
        "line 2",
        "line 3",
        "line 4",
        "line 5",
        "line 6",
    ]
    assert not any("tiny-secret" in error or "with space" in error for error in table.errors)


def test_the_file_is_failing_closed_for_keys_too(tmp_path: Path) -> None:
    import asyncio

    tokens_file = tmp_path / "tokens.jsonl"
    pair = create_key_pair(tokens_file, "p")
    now = [0.0]
    watched = TokensFile(tokens_file, clock=lambda: now[0])

    async def keys() -> list[str]:
        now[0] += 10.0
        return list((await watched.table()).by_access_key)

    async def scenario() -> list[list[str]]:
        seen = [await keys()]
        moved = tokens_file.rename(tmp_path / "elsewhere")
        seen.append(await keys())
        moved.rename(tokens_file)
        seen.append(await keys())
        return seen

    assert asyncio.run(scenario()) == [[pair.access_key], [], [pair.access_key]]


def _works(sqs: Any) -> bool:
    try:
        sqs.list_queues()
    except ClientError:
        return False
    return True
