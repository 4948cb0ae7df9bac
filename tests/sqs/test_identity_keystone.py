"""``auth_strategy = "keystone"`` for the SQS face: Keystone EC2 credentials.

A real Keystone (tests/keystone.py) makes the credentials (``POST /v3/users/{id}/
credentials/OS-EC2``, what ``openstack ec2 credentials create`` calls) and verifies
signatures through ``POST /v3/ec2tokens``; its access log tells how many reached it.
boto3 signs with the credentials against real Tidings servers. Source:
/work/notes/issue14.md item 2 (keystone).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.keystone import DOMAIN, HTTP_TIMEOUT, Account, Keystone
from tests.server import TidingsServer
from tests.sqs.conftest import sqs_client

# One Keystone for these tests: xdist (--dist loadgroup) keeps them on one worker.
pytestmark = pytest.mark.xdist_group("keystone")

# Every validation must answer within it: on a loaded CI machine Keystone's one sync
# worker has taken over a second; a 503 test waits it out once or twice.
OPERATION_TIMEOUT = 3.0
# Roles come from Keystone's token: only admins delete queues here.
POLICY = '"queues:delete": "role:admin"\n'


@dataclass(frozen=True)
class Ec2Credential:
    access: str
    secret: str
    project_id: str
    user_id: str


def create_ec2_credential(keystone: Keystone, account: Account) -> Ec2Credential:
    """The user makes an EC2 credential for its project with its own token."""
    token = keystone.token_for(account).value
    response = httpx.post(
        f"{keystone.auth_url}/users/{account.user_id}/credentials/OS-EC2",
        headers={"X-Auth-Token": token},
        json={"tenant_id": account.project_id},
        timeout=HTTP_TIMEOUT,
    )
    assert response.status_code == 201, response.text
    made = response.json()["credential"]
    return Ec2Credential(made["access"], made["secret"], account.project_id, account.user_id)


def admin_token(keystone: Keystone) -> str:
    return keystone.issue_token("admin", keystone.admin_password, "admin").value


def service_user_who_reads_credentials(keystone: Keystone) -> dict[str, str]:
    """A service user with the ``admin`` role besides ``service``: Keystone lets it read
    other users' EC2 credentials, so Tidings can cache secrets. Its [keystone_authtoken]."""
    token = admin_token(keystone)
    headers = {"X-Auth-Token": token}

    def call(method: str, path: str, json: Any = None) -> Any:
        response = httpx.request(
            method, keystone.auth_url + path, headers=headers, json=json, timeout=HTTP_TIMEOUT
        )
        assert response.status_code < 400, response.text
        return response.json() if response.content else None

    roles = {role["name"]: role["id"] for role in call("GET", "/roles")["roles"]}
    project = call("GET", "/projects?name=service")["projects"][0]["id"]
    name, password = f"tidings-ec2-{secrets.token_hex(4)}", secrets.token_urlsafe(12)
    user = call(
        "POST",
        "/users",
        {"user": {"name": name, "password": password, "domain_id": "default"}},
    )["user"]["id"]
    for role in ("service", "admin"):
        call("PUT", f"/projects/{project}/users/{user}/roles/{roles[role]}")
    return {
        **keystone.authtoken_options(),
        "username": name,
        "password": password,
        "project_name": "service",
        "user_domain_name": DOMAIN,
    }


def ec2tokens_seen(keystone: Keystone) -> int:
    return keystone.answered("POST /v3/ec2tokens")


def start_server(tmp_path: Any, keystone: Keystone, authtoken: dict[str, str]) -> TidingsServer:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(POLICY)
    env = {
        "TIDINGS_AUTH_STRATEGY": "keystone",
        "TIDINGS_STORAGE__OPERATION_TIMEOUT": str(OPERATION_TIMEOUT),
        "TIDINGS_OSLO_POLICY__POLICY_FILE": str(policy_file),
    }
    for option, value in authtoken.items():
        env[f"TIDINGS_KEYSTONE_AUTHTOKEN__{option.upper()}"] = value
    server = TidingsServer(tmp_path, env=env)
    server.start()
    return server


@pytest.fixture(scope="module")
def plain(keystone: Keystone, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TidingsServer]:
    """A server whose service user has only the ``service`` role (tests/keystone.py)."""
    server = start_server(
        tmp_path_factory.mktemp("ec2-plain"), keystone, keystone.authtoken_options()
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def caching(
    keystone: Keystone, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TidingsServer]:
    """A server whose service user may read EC2 credentials (secrets are cached)."""
    authtoken = service_user_who_reads_credentials(keystone)
    server = start_server(tmp_path_factory.mktemp("ec2-caching"), keystone, authtoken)
    yield server
    server.stop()


def client(server: TidingsServer, credential: Ec2Credential, secret: str | None = None) -> Any:
    return sqs_client(server.url, credential.access, secret or credential.secret)


def code_of(call: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as refused:
        call(**kwargs)
    return str(refused.value.response["Error"]["Code"])


def test_ec2_credentials_act_in_their_project(keystone: Keystone, plain: TidingsServer) -> None:
    alpha = create_ec2_credential(keystone, keystone.accounts["alpha-member"])
    beta = create_ec2_credential(keystone, keystone.accounts["beta-member"])
    a, b = client(plain, alpha), client(plain, beta)
    url = a.create_queue(QueueName="ec2-queue")["QueueUrl"]
    # The credential's project (Keystone's id), not anything the client names.
    assert url == f"{plain.url}/{alpha.project_id}/ec2-queue"
    assert url in a.list_queues().get("QueueUrls", [])
    assert url not in b.list_queues().get("QueueUrls", [])
    assert code_of(b.get_queue_url, QueueName="ec2-queue") == (
        "AWS.SimpleQueueService.NonExistentQueue"
    )
    assert b.create_queue(QueueName="ec2-queue")["QueueUrl"] == (
        f"{plain.url}/{beta.project_id}/ec2-queue"
    )


def test_roles_come_from_keystone(keystone: Keystone, plain: TidingsServer) -> None:
    member = client(plain, create_ec2_credential(keystone, keystone.accounts["alpha-member"]))
    admin = client(plain, create_ec2_credential(keystone, keystone.accounts["alpha-admin"]))
    url = member.create_queue(QueueName="roles")["QueueUrl"]
    assert code_of(member.delete_queue, QueueUrl=url) == "AccessDenied"
    admin.delete_queue(QueueUrl=url)  # same project (alpha), the admin role


def test_a_wrong_secret_or_unknown_key_is_refused(keystone: Keystone, plain: TidingsServer) -> None:
    alpha = create_ec2_credential(keystone, keystone.accounts["alpha-member"])
    wrong = client(plain, alpha, secret=alpha.secret[:-2] + "xx")
    assert code_of(wrong.list_queues) == "SignatureDoesNotMatch"
    unknown = sqs_client(plain.url, uuid.uuid4().hex, alpha.secret)
    assert code_of(unknown.list_queues) == "InvalidClientTokenId"
    # The right secret still works.
    client(plain, alpha).list_queues()


def test_without_the_right_to_read_secrets_keystone_verifies_each_request(
    keystone: Keystone, plain: TidingsServer
) -> None:
    alpha = create_ec2_credential(keystone, keystone.accounts["alpha-member"])
    sqs = client(plain, alpha)
    sqs.list_queues()
    before = ec2tokens_seen(keystone)
    for _ in range(3):
        sqs.list_queues()
    assert ec2tokens_seen(keystone) == before + 3


def test_cached_secrets_verify_locally_and_survive_keystone_going_away(
    keystone: Keystone, caching: TidingsServer
) -> None:
    alpha = create_ec2_credential(keystone, keystone.accounts["alpha-member"])
    beta = create_ec2_credential(keystone, keystone.accounts["beta-member"])
    a = client(caching, alpha)
    url = a.create_queue(QueueName="cached")["QueueUrl"]
    assert url == f"{caching.url}/{alpha.project_id}/cached"
    before = ec2tokens_seen(keystone)
    for _ in range(5):
        assert url in a.list_queues().get("QueueUrls", [])
    # Every one verified here with the cached secret: none reached Keystone.
    assert ec2tokens_seen(keystone) == before
    # A wrong secret for a cached key is still refused (Keystone says so).
    wrong = client(caching, alpha, secret="not-the-secret-" + "0" * 20)
    assert code_of(wrong.list_queues) == "SignatureDoesNotMatch"

    keystone.pause()  # accepts connections, never answers
    try:
        assert url in a.list_queues().get("QueueUrls", [])  # cached: no Keystone needed
        # Not cached: answered 503 within operation_timeout (the client's read timeout,
        # 40 s, bounds a hang).
        with pytest.raises(ClientError) as refused:
            client(caching, beta).list_queues()
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert refused.value.response["Error"]["Code"] == "ServiceUnavailable"
        # Concurrent requests with that key: each gets the 503, none hangs.
        clients = [client(caching, beta) for _ in range(4)]
        with ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(lambda one: code_of(one.list_queues), clients))
        assert codes == ["ServiceUnavailable"] * 4
    finally:
        keystone.resume()
    # Back, once it has worked through the requests queued while it was stopped (one
    # sync worker: behind them, a verification can outlast the operation timeout).
    keystone.settle()
    # The uncached key verifies again.
    client(caching, beta).list_queues()


def test_the_zaqar_api_and_the_sqs_face_share_one_service_login(
    keystone: Keystone, tmp_path: Any
) -> None:
    alpha = keystone.accounts["alpha-member"]
    token = keystone.token_for(alpha).value
    credential = create_ec2_credential(keystone, alpha)
    # Logins (and user tokens) are POST /v3/auth/tokens; nothing else asks for one here.
    before = keystone.answered("POST /v3/auth/tokens")
    server = start_server(tmp_path, keystone, keystone.authtoken_options())
    try:
        headers = {"X-Auth-Token": token, "Client-ID": str(uuid.uuid4())}
        response = httpx.get(f"{server.url}/v2/queues", headers=headers, timeout=HTTP_TIMEOUT)
        assert response.status_code == 200, response.text
        client(server, credential).list_queues()
        # The token's validation and the signature's exchange went through one session.
        assert keystone.answered("POST /v3/auth/tokens") == before + 1
    finally:
        server.stop()


def test_concurrent_first_requests_of_a_key_share_one_exchange(
    keystone: Keystone, caching: TidingsServer
) -> None:
    beta = create_ec2_credential(keystone, keystone.accounts["beta-member"])
    clients = [client(caching, beta) for _ in range(6)]
    before = ec2tokens_seen(keystone)
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda one: one.list_queues(), clients))
    assert len(answers) == 6
    # One exchange: the others waited for it, then verified with the secret it cached.
    assert ec2tokens_seen(keystone) == before + 1
