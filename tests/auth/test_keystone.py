"""``auth_strategy = "keystone"`` against a real Keystone (tests/keystone.py).

First the authenticator on its own, then a real Tidings server that uses it, then the
stock ``openstack messaging`` CLI finding that server through Keystone's catalog. No
mocks: Keystone issues, validates and revokes the tokens; its access log tells how
many validations reached it. Source: /work/notes/issue9.md items 1 (keystone) and 5,
spec api-v2-extended.md §9 and §11.9.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from websockets.exceptions import ConnectionClosed

from tests.keystone import Account, Keystone, Token
from tests.server import TidingsServer, wait_until
from tests.ws.wire import Wire, ws_url
from tidings.admission.auth import Identity
from tidings.admission.auth.keystone import KeystoneAuthenticator
from tidings.config import ConfigError, KeystoneAuthtokenSettings, Settings, StorageSettings
from tidings.errors import Forbidden, ServiceUnavailable, TidingsError, Unauthorized

# One Keystone for these tests: xdist (--dist loadgroup) keeps them on one worker.
pytestmark = pytest.mark.xdist_group("keystone")

# Every validation must answer within it: on a loaded CI machine Keystone's one sync
# worker has taken over a second; a 503 test waits it out once or twice.
OPERATION_TIMEOUT = 3.0
# The client's bound while Keystone is away: the answer (503) is due within
# operation_timeout; the margin is for a loaded machine. Past it, the test fails.
CLIENT_BOUND = OPERATION_TIMEOUT + 10.0
CLI_TIMEOUT = 120.0
NOT_AUTHORIZED = {
    "title": "Not authorized",
    "description": "You are not authorized to complete this action.",
}


def make_authenticator(keystone: Keystone, **authtoken: Any) -> KeystoneAuthenticator:
    """Authenticating with ``keystone``; ``authtoken`` overrides [keystone_authtoken]."""
    options = {**keystone.authtoken_options(), **authtoken}
    settings = Settings(
        keystone_authtoken=msgspec.convert(options, KeystoneAuthtokenSettings),
        storage=StorageSettings(operation_timeout=OPERATION_TIMEOUT),
    )
    return KeystoneAuthenticator(settings)


async def outcome(
    auth: KeystoneAuthenticator, token: str | None, project: str | None = None
) -> Identity | TidingsError:
    """What ``authenticate`` gives for these headers: the identity, or the error raised."""
    headers = {}
    if token is not None:
        headers["x-auth-token"] = token
    if project is not None:
        headers["x-project-id"] = project
    try:
        return await asyncio.wait_for(auth.authenticate(headers), CLIENT_BOUND)
    except TidingsError as exc:
        return exc


def assert_challenged(found: object, keystone: Keystone) -> None:
    """A 401 that tells the client where to get a token."""
    assert isinstance(found, Unauthorized), found
    assert found.status == 401
    assert found.challenge == f'Keystone uri="{keystone.auth_url}"'


def assert_identity(found: object, account: Account, token: Token) -> None:
    assert isinstance(found, Identity), found
    assert replace(found, expires_at=None) == Identity(
        project=account.project_id,
        user_id=account.user_id,
        roles=token.roles,
        authenticated=True,
    )
    # The token's own expiry (what closes a WebSocket connection with 4003).
    assert found.expires_at is not None
    assert abs(found.expires_at - token.expires_at.timestamp()) < 1.0


def settled_validations(keystone: Keystone) -> int:
    """Validations Keystone has answered so far. Its one sync worker answers in order,
    so once a marker request is in its access log, every earlier request is too."""
    return keystone.answered("GET /v3/auth/tokens")


# ---------------------------------------------------------------- the authenticator


def test_tokens_of_two_projects_with_member_and_admin_roles(keystone: Keystone) -> None:
    names = ("alpha-member", "alpha-admin", "beta-member", "beta-admin")
    tokens = {name: keystone.token_for(keystone.accounts[name]) for name in names}
    # Keystone's role names, implied ones included (admin implies member and reader).
    assert tokens["alpha-member"].roles == {"member", "reader"}
    assert tokens["beta-admin"].roles == {"admin", "manager", "member", "reader"}

    async def check() -> None:
        auth = make_authenticator(keystone)
        try:
            for name, token in tokens.items():
                account = keystone.accounts[name]
                assert_identity(await outcome(auth, token.value), account, token)
                # Naming the token's own project is fine.
                found = await outcome(auth, token.value, project=account.project_id)
                assert_identity(found, account, token)
        finally:
            await auth.close()

    asyncio.run(check())


def test_missing_invalid_and_unscoped_tokens_get_401_with_challenge(keystone: Keystone) -> None:
    valid = keystone.token_for(keystone.accounts["alpha-member"]).value
    # Well formed but not Keystone's: one character of a real token changed.
    forged = valid[:-8] + ("A" if valid[-8] != "A" else "B") + valid[-7:]
    unscoped = keystone.issue_token("alpha-member", keystone.accounts["alpha-member"].password,
                                    project=None).value  # fmt: skip

    async def check() -> None:
        auth = make_authenticator(keystone)
        try:
            for token in (None, "", "not-a-token", forged, "caf\u00e9", "a b", unscoped):
                assert_challenged(await outcome(auth, token), keystone)
        finally:
            await auth.close()

    asyncio.run(check())


def test_other_project_header_is_403(keystone: Keystone) -> None:
    alpha = keystone.accounts["alpha-member"]
    beta = keystone.accounts["beta-member"]
    token = keystone.token_for(alpha)

    async def check() -> None:
        auth = make_authenticator(keystone)
        try:
            for project in (beta.project_id, alpha.project, "anything-else"):
                found = await outcome(auth, token.value, project=project)
                assert isinstance(found, Forbidden), found
                assert found.status == 403
        finally:
            await auth.close()

    asyncio.run(check())


def test_concurrent_validations_share_one_call_and_are_cached(keystone: Keystone) -> None:
    account = keystone.accounts["beta-member"]
    token = keystone.token_for(account)

    async def check() -> None:
        auth = make_authenticator(keystone)
        try:
            await outcome(auth, keystone.token_for(account).value)  # service user logged in
            before = await asyncio.to_thread(settled_validations, keystone)
            found = await asyncio.gather(*(outcome(auth, token.value) for _ in range(20)))
            for one in found:
                assert_identity(one, account, token)
            assert await asyncio.to_thread(settled_validations, keystone) == before + 1
            assert_identity(await outcome(auth, token.value), account, token)  # cached
            assert await asyncio.to_thread(settled_validations, keystone) == before + 1
        finally:
            await auth.close()

    asyncio.run(check())


def test_cache_holds_at_most_token_cache_size_validations(keystone: Keystone) -> None:
    account = keystone.accounts["alpha-admin"]
    first, second = keystone.token_for(account), keystone.token_for(account)

    async def check() -> None:
        auth = make_authenticator(keystone, token_cache_size=1)
        try:
            before = await asyncio.to_thread(settled_validations, keystone)
            for token in (first, second, second, first):  # the second evicts the first
                assert_identity(await outcome(auth, token.value), account, token)
            assert await asyncio.to_thread(settled_validations, keystone) == before + 3
        finally:
            await auth.close()

    asyncio.run(check())


def test_missing_keystone_settings_are_a_config_error() -> None:
    needs = (
        'auth_strategy = "keystone" needs keystone_authtoken.auth_url, '
        "keystone_authtoken.username, keystone_authtoken.password, "
        "keystone_authtoken.project_name"
    )
    with pytest.raises(ConfigError, match=re.escape(needs)):
        KeystoneAuthenticator(Settings(auth_strategy="keystone"))


def test_expired_token_gets_401_even_while_cached(keystone: Keystone) -> None:
    """The cache never outlives the token: past its expiry Keystone is asked again."""
    account = keystone.accounts["alpha-admin"]
    token = keystone.short_lived_token(account, lifetime=5.0)
    # Keystone capped it at the application credential's expiry.
    assert token.expires_at <= datetime.now(UTC) + timedelta(seconds=6)

    async def check() -> None:
        auth = make_authenticator(keystone, token_cache_time=300.0)
        try:
            assert_identity(await outcome(auth, token.value), account, token)
            await asyncio.to_thread(
                wait_until,
                lambda: datetime.now(UTC) > token.expires_at,
                "the token's expiry",
                timeout=30.0,
            )
            assert_challenged(await outcome(auth, token.value), keystone)
        finally:
            await auth.close()

    asyncio.run(check())


def test_revoked_token_gets_401_once_its_cache_entry_lapses(keystone: Keystone) -> None:
    account = keystone.accounts["alpha-member"]
    token = keystone.token_for(account)

    async def check() -> None:
        cached = make_authenticator(keystone, token_cache_time=0.5)
        fresh = make_authenticator(keystone)
        try:
            assert_identity(await outcome(cached, token.value), account, token)
            await asyncio.to_thread(keystone.revoke, token.value)
            assert_challenged(await outcome(fresh, token.value), keystone)

            async def refused() -> bool:
                return isinstance(await outcome(cached, token.value), Unauthorized)

            for _ in range(200):  # bounded: 0.5 s of cache time, polled every 0.05 s
                if await refused():
                    break
                await asyncio.sleep(0.05)
            assert_challenged(await outcome(cached, token.value), keystone)
        finally:
            await cached.close()
            await fresh.close()

    asyncio.run(check())


def test_keystone_not_answering_is_503_and_cached_tokens_keep_working(
    keystone: Keystone,
) -> None:
    alpha = keystone.accounts["alpha-member"]
    beta = keystone.accounts["beta-member"]
    cached_token = keystone.token_for(alpha)
    uncached_token = keystone.token_for(beta)

    async def check() -> None:
        auth = make_authenticator(keystone)
        try:
            assert_identity(await outcome(auth, cached_token.value), alpha, cached_token)
            keystone.pause()  # accepts connections, never answers
            try:
                # outcome() bounds the wait by CLIENT_BOUND: a hang fails the test.
                found = await outcome(auth, uncached_token.value)
                assert isinstance(found, ServiceUnavailable), found
                assert found.status == 503
                assert_identity(await outcome(auth, cached_token.value), alpha, cached_token)
                # Concurrent requests with the same token all get the 503, none hangs.
                many = await asyncio.gather(
                    *(outcome(auth, uncached_token.value) for _ in range(5))
                )
                assert all(isinstance(one, ServiceUnavailable) for one in many), many
            finally:
                keystone.resume()
            # Back, once it has worked through the requests queued while it was stopped
            # (one sync worker: behind them, a validation can outlast the operation timeout).
            await asyncio.to_thread(keystone.settle)
            # The same token validates.
            assert_identity(await outcome(auth, uncached_token.value), beta, uncached_token)
        finally:
            await auth.close()

    asyncio.run(check())


# ---------------------------------------------------------------- a Tidings server


@pytest.fixture(scope="module")
def tidings(
    keystone: Keystone, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TidingsServer]:
    """A server with ``auth_strategy = "keystone"``, in the catalog as ``messaging``."""
    data_dir = tmp_path_factory.mktemp("tidings-keystone")
    env = {
        **keystone.server_env(),
        "TIDINGS_ADMIN_MODE": "true",
        "TIDINGS_STORAGE__OPERATION_TIMEOUT": str(OPERATION_TIMEOUT),
    }
    server = TidingsServer(data_dir, env=env)
    server.start()
    endpoints = keystone.register_messaging(server.url)
    try:
        yield server
    finally:
        server.stop()
        if keystone.running:
            keystone.unregister(endpoints)


def client(server: TidingsServer, token: str | None, project: str | None = None) -> httpx.Client:
    headers = {"Client-ID": str(uuid.uuid4())}
    if token is not None:
        headers["X-Auth-Token"] = token
    if project is not None:
        headers["X-Project-ID"] = project
    return httpx.Client(base_url=server.url + "/v2", headers=headers, timeout=CLIENT_BOUND)


def queue_names(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [q["name"] for q in response.json()["queues"]]


def test_server_admits_by_token_and_scopes_by_its_project(
    keystone: Keystone, tidings: TidingsServer
) -> None:
    alpha = keystone.accounts["alpha-member"]
    alpha_admin = keystone.accounts["alpha-admin"]
    beta = keystone.accounts["beta-member"]
    alpha_token = keystone.token_for(alpha).value
    beta_token = keystone.token_for(beta).value
    name = f"ks-{uuid.uuid4().hex[:8]}"

    # X-Project-ID may be left out: the token decides the project.
    with client(tidings, alpha_token) as api:
        assert api.put(f"/queues/{name}").status_code == 201
        assert name in queue_names(api.get("/queues"))
        posted = api.post(f"/queues/{name}/messages", json={"messages": [{"body": 1}]})
        assert posted.status_code == 201, posted.text
    with client(tidings, alpha_token, project=alpha.project_id) as api:
        assert name in queue_names(api.get("/queues"))
    # Another project's token does not see it; naming alpha's project is a 403.
    with client(tidings, beta_token) as api:
        assert name not in queue_names(api.get("/queues"))
        # Zaqar's queues are lazy: beta's queue of that name is an empty one.
        stats = api.get(f"/queues/{name}/stats")
        assert stats.status_code == 200
        assert stats.json()["messages"]["total"] == 0
    with client(tidings, beta_token, project=alpha.project_id) as api:
        response = api.get("/queues")
        assert response.status_code == 403
        assert response.json() == NOT_AUTHORIZED
    # Roles come from the token: health is for admins (admin_mode is on).
    with client(tidings, alpha_token) as api:
        assert api.get("/health").status_code == 403
    with client(tidings, keystone.token_for(alpha_admin).value) as api:
        assert api.get("/health").status_code == 200
    # X-Roles from the client count for nothing.
    with httpx.Client(base_url=tidings.url + "/v2", timeout=CLIENT_BOUND) as raw:
        response = raw.get(
            "/health",
            headers={"X-Auth-Token": alpha_token, "X-Roles": "admin",
                     "Client-ID": str(uuid.uuid4())},
        )  # fmt: skip
        assert response.status_code == 403


def test_server_refuses_missing_invalid_and_revoked_tokens(
    keystone: Keystone, tidings: TidingsServer
) -> None:
    account = keystone.accounts["beta-admin"]
    revoked = keystone.token_for(account).value
    keystone.revoke(revoked)  # never seen by the server, so never cached
    challenge = f'Keystone uri="{keystone.auth_url}"'
    for token in (None, "not-a-token", revoked):
        with client(tidings, token, project=account.project_id) as api:
            response = api.get("/queues")
        assert response.status_code == 401, response.text
        assert response.headers["WWW-Authenticate"] == challenge
        assert response.json()["title"] == "Unauthorized"
    # The versions document never needs a token.
    assert httpx.get(tidings.url + "/", timeout=CLIENT_BOUND).status_code == 300


def test_server_while_keystone_is_stopped(keystone: Keystone, tidings: TidingsServer) -> None:
    alpha = keystone.accounts["alpha-member"]
    cached = keystone.token_for(alpha).value
    uncached = keystone.token_for(keystone.accounts["beta-member"]).value
    with client(tidings, cached) as api:
        assert api.get("/queues").status_code == 200  # now in the server's cache
    keystone.stop()
    try:
        # The client's timeout bounds it: a hang fails the test, not a slow 503.
        with client(tidings, uncached) as api:
            response = api.get("/queues")
        assert response.status_code == 503, response.text
        assert response.json()["title"] == "Service temporarily unavailable"
        with client(tidings, cached) as api:
            assert api.get("/queues").status_code == 200
    finally:
        keystone.start()
    with client(tidings, uncached) as api:
        assert api.get("/queues").status_code == 200


def test_websocket_authenticates_with_keystone_and_closes_at_expiry(
    keystone: Keystone, tidings: TidingsServer
) -> None:
    """Spec 8.4 over a real connection: refused until ``authenticate``, then the token's
    project only, and closed with 4003 when the token expires."""
    alpha = keystone.accounts["alpha-member"]
    beta = keystone.accounts["beta-member"]
    with Wire(ws_url(tidings.url), project=alpha.project_id) as wire:
        assert wire.call("queue_list") == (403, {"error": "Not authentified."})
        status, body = wire.call("authenticate", **{"X-Auth-Token": "not-a-token"})
        assert (status, body) == (401, {"error": "Authentication failed."})
        token = keystone.token_for(alpha).value
        assert wire.call("authenticate", **{"X-Auth-Token": token}) == (
            200,
            {"message": "Authentified."},
        )
        assert wire.call("queue_list")[0] == 200
        mismatch = wire.call("queue_list", **{"X-Project-ID": beta.project_id})
        assert mismatch == (403, {"error": "Not authenticated."})
    lifetime = 8.0
    short = keystone.short_lived_token(alpha, lifetime=lifetime)
    with Wire(ws_url(tidings.url), project=alpha.project_id) as wire:
        assert wire.call("authenticate", **{"X-Auth-Token": short.value})[0] == 200
        # The server closes the connection itself; the bound only fails a hang.
        with pytest.raises(ConnectionClosed) as closed:
            wire.ws.recv(timeout=lifetime + CLIENT_BOUND)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4003
        assert closed.value.rcvd.reason == "Authentication expired."


def test_openstack_cli_finds_tidings_in_the_catalog(
    keystone: Keystone, tidings: TidingsServer, tmp_path: Path
) -> None:
    """``openstack messaging queue create/list`` with ordinary password auth."""
    account = keystone.accounts["alpha-admin"]
    openstack = shutil.which("openstack", path=str(Path(sys.executable).parent))
    assert openstack is not None, "python-openstackclient is a test dependency"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.update(
        OS_AUTH_URL=keystone.auth_url,
        OS_IDENTITY_API_VERSION="3",
        OS_USERNAME=account.name,
        OS_PASSWORD=account.password,
        OS_PROJECT_NAME=account.project,
        OS_USER_DOMAIN_NAME="Default",
        OS_PROJECT_DOMAIN_NAME="Default",
        OS_REGION_NAME="RegionOne",
        OS_INTERFACE="public",
        HOME=str(tmp_path),  # no clouds.yaml or cache from the machine
    )
    name = f"cli-{uuid.uuid4().hex[:8]}"

    def cli(*args: str) -> str:
        done = subprocess.run(
            [openstack, "messaging", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    cli("queue", "create", name)
    listed = json.loads(cli("queue", "list", "-f", "json"))
    assert name in [row["Name"] for row in listed]
    # It is in the token's project, seen through the API with a token of that project.
    with client(tidings, keystone.token_for(keystone.accounts["alpha-member"]).value) as api:
        assert name in queue_names(api.get("/queues"))
    with client(tidings, keystone.token_for(keystone.accounts["beta-member"]).value) as api:
        assert name not in queue_names(api.get("/queues"))
