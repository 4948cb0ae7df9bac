"""A real Keystone for the tests of ``auth_strategy = "keystone"``.

Keystone (from PyPI, in a venv of its own made by ``scripts/keystone-venv``: its pinned
dependencies need not agree with ours) runs from a temporary directory: an SQLite
database, Fernet tokens, ``keystone-manage db_sync``, ``fernet_setup``,
``credential_setup`` and ``bootstrap``, served by gunicorn on a free loopback port.
Keystone's WSGI entry parses ``sys.argv`` through oslo.config, so gunicorn loads a
three-line module that clears it first.

Once it serves, its own REST API makes what the tests need: two projects with member
and admin users, a service user for Tidings, and a ``messaging`` service whose
endpoint tests point at the Tidings server they start.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.server import ServerProcess, free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
KEYSTONE_VENV = Path(os.environ.get("TIDINGS_KEYSTONE_VENV", ROOT / ".venv-keystone"))
INSTALL_TIMEOUT = 600.0  # a fresh `pip install keystone` (measured: about 30 s)
MANAGE_TIMEOUT = 120.0
HTTP_TIMEOUT = 30.0
REGION = "RegionOne"
DOMAIN = "Default"

WSGI_MODULE = """\
import sys
sys.argv = sys.argv[:1]  # oslo.config would otherwise parse gunicorn's arguments
from keystone.server import wsgi; application = wsgi.initialize_public_application()
"""

# keystone-manage db_sync, fernet_setup, ... as its entry point runs them: argv[1] is the
# config file, argv[2] the steps (JSON), each a keystone-manage command line.
MANAGE_DRIVER = """\
import json, sys
from keystone.cmd import cli
for step in json.loads(sys.argv[2]):
    cli.CONF.clear()  # each step parses its own command line
    cli.main(argv=["keystone-manage", "--config-file", sys.argv[1], *step])
"""

CONFIG = """\
[DEFAULT]
log_file = {base}/keystone.log

[database]
connection = sqlite:///{base}/keystone.db

[identity]
# Test users only: bcrypt's cheapest cost keeps user creation and password logins fast.
password_hash_rounds = 4

[token]
provider = fernet
expiration = 3600

[fernet_tokens]
key_repository = {base}/fernet-keys

[credential]
key_repository = {base}/credential-keys
"""


def ensure_venv() -> Path:
    """The Keystone venv, installed first if missing (idempotent, safe in parallel)."""
    script = ROOT / "scripts" / "keystone-venv"
    subprocess.run(
        [str(script)],
        check=True,
        timeout=INSTALL_TIMEOUT,
        env={**os.environ, "TIDINGS_KEYSTONE_VENV": str(KEYSTONE_VENV)},
    )
    return KEYSTONE_VENV


@dataclass(frozen=True)
class Account:
    """A Keystone user with a role on one project."""

    name: str
    password: str
    user_id: str
    project: str
    project_id: str


@dataclass(frozen=True)
class Token:
    value: str
    project_id: str | None
    user_id: str
    roles: frozenset[str]
    expires_at: datetime


def _token(value: str, body: dict[str, Any]) -> Token:
    token = body["token"]
    return Token(
        value=value,
        project_id=(token.get("project") or {}).get("id"),
        user_id=token["user"]["id"],
        roles=frozenset(role["name"] for role in token.get("roles", [])),
        expires_at=datetime.fromisoformat(token["expires_at"]),
    )


class Keystone:
    """One Keystone deployment: ``start()`` installs and serves it, ``stop()`` ends it.

    ``stop()``/``start()`` and ``pause()``/``resume()`` may be repeated (same port,
    same data): tests take Keystone away mid-run and bring it back.
    """

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.auth_url = f"{self.url}/v3"
        self.admin_password = secrets.token_urlsafe(16)
        self.venv = KEYSTONE_VENV
        self.access_log = base / "access.log"
        self.process: ServerProcess | None = None
        self.accounts: dict[str, Account] = {}
        self.service_account: Account | None = None
        self.messaging_service_id = ""
        self._admin_token: str | None = None

    # ------------------------------------------------------------ lifecycle

    def install(self) -> None:
        """The config file, the database, the keys and the bootstrap admin."""
        self.venv = ensure_venv()
        self.base.mkdir(parents=True, exist_ok=True)
        config = self.base / "keystone.conf"
        config.write_text(CONFIG.format(base=self.base))
        (self.base / "keystone_wsgi.py").write_text(WSGI_MODULE)
        owner = ["--keystone-user", str(os.getuid()), "--keystone-group", str(os.getgid())]
        steps = [
            ["db_sync"],
            ["fernet_setup", *owner],
            ["credential_setup", *owner],
            [
                "bootstrap",
                f"--bootstrap-password={self.admin_password}",
                "--bootstrap-region-id", REGION,
                "--bootstrap-admin-url", self.auth_url,
                "--bootstrap-internal-url", self.auth_url,
                "--bootstrap-public-url", self.auth_url,
            ],
        ]  # fmt: skip
        # keystone-manage's own entry, once per step, in one interpreter: each start
        # of keystone-manage costs seconds of imports.
        driver = self.base / "manage_all.py"
        driver.write_text(MANAGE_DRIVER)
        log_path = self.base / "manage.log"
        with open(log_path, "ab") as log:
            done = subprocess.run(
                [str(self.venv / "bin" / "python"), str(driver), str(config), json.dumps(steps)],
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=MANAGE_TIMEOUT,
                check=False,
            )
        if done.returncode != 0:
            tail = log_path.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"keystone-manage failed ({done.returncode}):\n{tail}")
        self.process = ServerProcess(
            "keystone",
            [
                str(self.venv / "bin" / "gunicorn"),
                "--chdir", str(self.base),
                "--bind", f"127.0.0.1:{self.port}",
                "--workers", "1",
                # Counted by tests: how many validations reached Keystone.
                "--access-logfile", str(self.access_log),
                "keystone_wsgi:application",
            ],
            self.port,
            self.base / "gunicorn.log",
            env={"OS_KEYSTONE_CONFIG_DIR": str(self.base)},
        )  # fmt: skip

    def start(self) -> Keystone:
        if self.process is None:
            self.install()
        assert self.process is not None
        self.process.start()  # returns once it answers HTTP (bounded poll)
        if not self.accounts:
            self._populate()
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def pause(self) -> None:
        """SIGSTOP: connections are accepted by the kernel and never answered."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if not self.running:
            return
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGCONT)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.process is not None

    # ------------------------------------------------------------ REST API

    def issue_token(
        self, name: str, password: str, project: str | None, domain: str = DOMAIN
    ) -> Token:
        """POST /v3/auth/tokens with a password, scoped to ``project`` (None: unscoped)."""
        auth: dict[str, Any] = {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": name, "password": password, "domain": {"name": domain}}
                },
            }
        }
        if project is not None:
            auth["scope"] = {"project": {"name": project, "domain": {"name": domain}}}
        response = httpx.post(
            f"{self.auth_url}/auth/tokens?nocatalog", json={"auth": auth}, timeout=HTTP_TIMEOUT
        )
        response.raise_for_status()
        return _token(response.headers["X-Subject-Token"], response.json())

    def token_for(self, account: Account) -> Token:
        return self.issue_token(account.name, account.password, account.project)

    def revoke(self, token: str) -> None:
        """DELETE /v3/auth/tokens: a token may revoke itself."""
        response = httpx.delete(
            f"{self.auth_url}/auth/tokens",
            headers={"X-Auth-Token": token, "X-Subject-Token": token},
            timeout=HTTP_TIMEOUT,
        )
        assert response.status_code == 204, response.text

    def short_lived_token(self, account: Account, lifetime: float) -> Token:
        """A token of ``account`` that expires ``lifetime`` seconds from now.

        Keystone caps a token issued for an application credential at the credential's
        expiry, so a credential that lapses soon makes a token that does.
        """
        owner = self.token_for(account)
        expires = datetime.now(UTC) + timedelta(seconds=lifetime)
        created = self._call(
            "POST",
            f"/users/{account.user_id}/application_credentials",
            token=owner.value,
            json={
                "application_credential": {
                    "name": f"short-{secrets.token_hex(6)}",
                    "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%S.%f"),
                }
            },
        )["application_credential"]
        response = httpx.post(
            f"{self.auth_url}/auth/tokens?nocatalog",
            json={
                "auth": {
                    "identity": {
                        "methods": ["application_credential"],
                        "application_credential": {
                            "id": created["id"],
                            "secret": created["secret"],
                        },
                    }
                }
            },
            timeout=HTTP_TIMEOUT,
        )
        response.raise_for_status()
        return _token(response.headers["X-Subject-Token"], response.json())

    def answered(self, request_line: str) -> int:
        """Requests starting with ``request_line`` (say ``POST /v3/ec2tokens``) Keystone
        has answered so far, every one sent before this call included."""
        self.settle()
        text = self.access_log.read_text(errors="replace")
        return sum(1 for line in text.splitlines() if f'"{request_line}' in line)

    def mark_access_log(self) -> str:
        """A request whose access-log line follows every earlier request's (one sync
        worker answers in order): returns the marker to wait for."""
        marker = secrets.token_hex(8)
        httpx.get(f"{self.auth_url}?marker={marker}", timeout=HTTP_TIMEOUT)
        return marker

    def settle(self) -> None:
        """Wait until Keystone has answered every request sent to it so far (a backlog
        built up while it was paused is answered in order, clients gone or not)."""
        marker = self.mark_access_log()
        wait_until(lambda: self.access_log_has(marker), "Keystone's access log")

    def access_log_has(self, marker: str) -> bool:
        try:
            return marker in self.access_log.read_text(errors="replace")
        except FileNotFoundError:
            return False

    def register_messaging(self, url: str) -> list[str]:
        """Endpoints of the ``messaging`` service at ``url``; returns their ids."""
        ids = []
        for interface in ("public", "internal", "admin"):
            endpoint = self._admin(
                "POST",
                "/endpoints",
                json={
                    "endpoint": {
                        "service_id": self.messaging_service_id,
                        "interface": interface,
                        "url": url,
                        "region_id": REGION,
                    }
                },
            )["endpoint"]
            ids.append(endpoint["id"])
        return ids

    def unregister(self, endpoint_ids: list[str]) -> None:
        for endpoint_id in endpoint_ids:
            self._admin("DELETE", f"/endpoints/{endpoint_id}")

    def _admin(self, method: str, path: str, json: Any = None) -> Any:
        if self._admin_token is None:
            self._admin_token = self.issue_token("admin", self.admin_password, "admin").value
        return self._call(method, path, token=self._admin_token, json=json)

    def _call(self, method: str, path: str, *, token: str, json: Any = None) -> Any:
        response = httpx.request(
            method,
            self.auth_url + path,
            headers={"X-Auth-Token": token},
            json=json,
            timeout=HTTP_TIMEOUT,
        )
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json() if response.content else None

    def _populate(self) -> None:
        """Two projects with member and admin users, Tidings' service user, and the
        ``messaging`` service (its endpoints come with each Tidings server)."""
        roles = {r["name"]: r["id"] for r in self._admin("GET", "/roles")["roles"]}
        projects: dict[str, str] = {}
        for name in ("alpha", "beta", "service"):
            projects[name] = self._admin(
                "POST", "/projects", json={"project": {"name": name, "domain_id": "default"}}
            )["project"]["id"]

        def account(name: str, project: str, role: str) -> Account:
            password = secrets.token_urlsafe(12)
            user_id = self._admin(
                "POST",
                "/users",
                json={"user": {"name": name, "password": password, "domain_id": "default"}},
            )["user"]["id"]
            self._admin("PUT", f"/projects/{projects[project]}/users/{user_id}/roles/{roles[role]}")
            return Account(name, password, user_id, project, projects[project])

        for name, project, role in (
            ("alpha-member", "alpha", "member"),
            ("alpha-admin", "alpha", "admin"),
            ("beta-member", "beta", "member"),
            ("beta-admin", "beta", "admin"),
        ):
            self.accounts[name] = account(name, project, role)
        # Keystone lets the "service" role validate other users' tokens.
        self.service_account = account("tidings", "service", "service")
        self.messaging_service_id = self._admin(
            "POST",
            "/services",
            json={"service": {"type": "messaging", "name": "tidings", "enabled": True}},
        )["service"]["id"]

    # ------------------------------------------------------------ Tidings' settings

    def authtoken_options(self) -> dict[str, str]:
        """``[keystone_authtoken]`` for Tidings' service user."""
        service = self.service_account
        assert service is not None
        return {
            "www_authenticate_uri": self.auth_url,
            "auth_url": self.url,
            "username": service.name,
            "password": service.password,
            "project_name": service.project,
            "user_domain_name": DOMAIN,
            "project_domain_name": DOMAIN,
            "region_name": REGION,
        }

    def server_env(self) -> dict[str, str]:
        """Environment for a Tidings server that authenticates with this Keystone."""
        env = {"TIDINGS_AUTH_STRATEGY": "keystone"}
        for option, value in self.authtoken_options().items():
            env[f"TIDINGS_KEYSTONE_AUTHTOKEN__{option.upper()}"] = value
        return env
