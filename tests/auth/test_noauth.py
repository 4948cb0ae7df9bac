"""``auth_strategy = "noauth"``: headers are trusted, but never for ``admin`` by default.

Source: /work/notes/issue9.md item 1 (noauth) and 5; spec api-v2-extended.md §9 and
§11 item 9 (Zaqar makes anyone admin who sends ``X-Roles: admin``; Tidings honours the
role only with ``admin_mode = true``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server import TidingsServer
from tidings.admission.auth.noauth import is_loopback

WARNING = "beyond loopback"
# A policy file that makes listing queues an admin's action, so that the admin role
# is visible on a data route too (health exists only with admin_mode).
ADMIN_LISTING_POLICY = '"queues:get_all": "role:admin"\n'


def _server(data_dir: Path, admin_mode: bool, host: str = "127.0.0.1") -> TidingsServer:
    policy_file = data_dir / "policy.yaml"
    policy_file.write_text(ADMIN_LISTING_POLICY)
    server = TidingsServer(
        data_dir,
        env={
            "TIDINGS_ADMIN_MODE": "true" if admin_mode else "false",
            "TIDINGS_OSLO_POLICY__POLICY_FILE": str(policy_file),
        },
    )
    server.argv[server.argv.index("--host") + 1] = host
    return server


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TidingsServer]:
    """noauth with admin_mode off (the defaults), on loopback."""
    server = _server(tmp_path_factory.mktemp("noauth-plain"), admin_mode=False).start()
    yield server
    server.stop()


def _get(server: TidingsServer, path: str, roles: str | None) -> httpx.Response:
    headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": "noauth-p"}
    if roles is not None:
        headers["X-Roles"] = roles
    return httpx.get(server.url + path, headers=headers, timeout=30.0)


def test_x_roles_admin_gets_nothing_without_admin_mode(plain: TidingsServer) -> None:
    for roles in ("admin", "Admin", "member, admin"):
        listing = _get(plain, "/v2/queues", roles)
        assert listing.status_code == 403, (roles, listing.text)
        assert listing.json()["title"] == "Not authorized"
        assert _get(plain, "/v2/health", roles).status_code == 404
    # Other roles are still honoured.
    assert _get(plain, "/v2/ping", "member").status_code == 204


def test_x_roles_admin_works_with_admin_mode(tmp_path: Path) -> None:
    server = _server(tmp_path, admin_mode=True).start()
    try:
        assert _get(server, "/v2/queues", "admin").status_code == 200
        assert _get(server, "/v2/health", "member, admin").status_code == 200
        assert _get(server, "/v2/queues", "member").status_code == 403
        assert _get(server, "/v2/health", None).status_code == 403
    finally:
        server.stop()


def test_a_warning_is_logged_when_listening_beyond_loopback(
    plain: TidingsServer, tmp_path: Path
) -> None:
    exposed = _server(tmp_path, admin_mode=False, host="0.0.0.0").start()
    try:
        # Logged before the server starts serving: its log has it once it answers.
        assert WARNING in exposed.log()
        assert "0.0.0.0" in exposed.log()
    finally:
        exposed.stop()
    assert WARNING not in plain.log()


def test_what_counts_as_loopback() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "10.1.2.3"):
        assert not is_loopback(host), host
