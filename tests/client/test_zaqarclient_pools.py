"""python-zaqarclient's pool and flavor calls (``Client.pool``/``pools``/``flavor``/
``flavors``) and the stock ``openstack messaging pool|flavor ...`` CLI, end to end
against a pooled Tidings.

The clients send no ``X-Roles`` (noauth would make them members), so the module's
server uses static API tokens (``auth_strategy = "tokens"``, made with the real
``tidings token create``): an administrator's token for the pool and flavor calls, a
member's to see them refused. Pools point at SQLite files beside the server's own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from zaqarclient.queues import client as zaqar
from zaqarclient.queues.v2.client import Client
from zaqarclient.queues.v2.flavor import Flavor
from zaqarclient.queues.v2.pool import Pool
from zaqarclient.transport import errors

from tests.auth.isolation_world import create_token
from tests.server import TidingsServer, free_port

# One server for the module: its tests on one worker where xdist groups them.
pytestmark = pytest.mark.xdist_group("zaqarclient-pools")

CLI_TIMEOUT = 60
SQLITE_CAPABILITIES = ["FIFO", "CLAIMS", "DURABILITY", "AOD"]


@dataclass
class Deployment:
    server: TidingsServer
    data_dir: Path
    admin: str  # an administrator's token
    member: str  # a member's token, same project

    def client(self, token: str | None = None) -> Client:
        conf = {
            "auth_opts": {"backend": "keystone", "options": {"os_auth_token": token or self.admin}}
        }
        made: Client = zaqar.Client(self.server.url, version=2, conf=conf)
        return made

    def http(self) -> httpx.Client:
        headers = {"Client-ID": str(uuid.uuid4()), "X-Auth-Token": self.admin}
        return httpx.Client(base_url=self.server.url + "/v2", headers=headers, timeout=30.0)

    def store(self) -> str:
        return f"sqlite:///{self.data_dir / (uuid.uuid4().hex[:12] + '.db')}"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    data_dir = tmp_path_factory.mktemp("zaqarclient-pools")
    tokens = data_dir / "tokens.jsonl"
    project = f"zc-pools-{uuid.uuid4().hex[:8]}"
    admin = create_token(tokens, project, "admin,member")
    member = create_token(tokens, project, "member")
    server = TidingsServer(
        data_dir,
        env={
            "TIDINGS_ADMIN_MODE": "true",
            "TIDINGS_POOLING": "true",
            "TIDINGS_DRIVERS__MANAGEMENT_STORE": f"sqlite:///{data_dir / 'management.db'}",
            "TIDINGS_AUTH_STRATEGY": "tokens",
            "TIDINGS_AUTH__TOKENS_FILE": str(tokens),
        },
    )
    server.start()
    try:
        yield Deployment(server, data_dir, admin, member)
    finally:
        server.stop()


def tag() -> str:
    return uuid.uuid4().hex[:8]


# ---------------------------------------------------------------- python-zaqarclient


def test_pool_calls(deployment: Deployment) -> None:
    client = deployment.client()
    t = tag()
    name, uri = f"zc-{t}", deployment.store()
    pool = client.pool(name, uri=uri, weight=10, options={"busy_timeout": 2.0})
    assert isinstance(pool, Pool)
    href = f"/v2/pools/{name}"
    assert pool.get() == {"name": name, "uri": uri, "weight": 10, "flavor": None, "href": href}

    listed = {p.name: p for p in client.pools(detailed=True)}
    assert listed[name].uri == uri and listed[name].weight == 10
    assert listed[name].options == {"busy_timeout": 2.0}
    # The iterator follows the next links page by page.
    others = [client.pool(f"zc-{t}-{n}", uri=deployment.store(), weight=1) for n in "ab"]
    streamed = [p.name for p in client.pools(limit=1).stream() if p.name.startswith(name)]
    assert streamed == [name, *(p.name for p in others)]

    pool.update({"weight": 20, "flavor": "gold"})
    assert (pool.weight, pool.flavor) == (20, "gold")
    assert pool.get()["weight"] == 20

    # Zaqar's faults, fixed: a store another pool has is a conflict (Zaqar: 500).
    with pytest.raises(errors.ConflictError):
        client.pool(f"zc-dup-{tag()}", uri=uri, weight=1)
    with pytest.raises(errors.MalformedRequest):
        client.pool(f"zc-down-{tag()}", uri=f"redis://127.0.0.1:{free_port()}", weight=1)
    with pytest.raises(errors.ForbiddenError):
        deployment.client(deployment.member).pool(name, auto_create=False).get()

    for each in (pool, *others):
        each.delete()
    with pytest.raises(errors.ResourceNotFound):
        client.pool(name, auto_create=False).get()
    pool.delete()  # an unknown pool: 204


def test_flavor_calls(deployment: Deployment) -> None:
    client = deployment.client()
    first, second = (client.pool(f"zf-{tag()}", uri=deployment.store(), weight=5) for _ in "ab")
    name = f"zf-{tag()}"
    flavor = client.flavor(name, pool_list=[first.name])
    assert isinstance(flavor, Flavor)
    href = f"/v2/flavors/{name}"
    assert flavor.get() == {
        "name": name,
        "capabilities": SQLITE_CAPABILITIES,
        "pool_list": [first.name],
        "href": href,
    }
    assert first.get()["flavor"] == name

    flavor.update({"pool_list": [second.name]})
    assert flavor.get()["pool_list"] == [second.name]
    assert first.get()["flavor"] is None

    listed = [f for f in client.flavors(detailed=True) if f.name == name]
    assert [(f.pool_list, f.capabilities) for f in listed] == [([second.name], SQLITE_CAPABILITIES)]
    # Flavor reads are open to members, writes are not (Zaqar's policy defaults).
    member = deployment.client(deployment.member)
    assert member.flavor(name, auto_create=False).get()["name"] == name
    with pytest.raises(errors.ForbiddenError):
        member.flavor(name, auto_create=False).delete()
    with pytest.raises(errors.MalformedRequest):
        client.flavor(f"zf-{tag()}", pool_list=["no-such-pool"])

    flavor.delete()
    assert second.get()["flavor"] is None
    with pytest.raises(errors.ResourceNotFound):
        flavor.get()
    for pool in (first, second):
        pool.delete()


# ---------------------------------------------------------------- the openstack CLI


def openstack(deployment: Deployment, *args: str) -> Any:
    """``openstack messaging <args>`` with the admin token; its JSON output, if any."""
    executable = shutil.which("openstack", path=str(Path(sys.executable).parent))
    assert executable is not None, "python-openstackclient is a test dependency"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env["OS_MESSAGE_CLIENT_ID"] = str(uuid.uuid4())
    shows = args[1] in ("create", "show", "list", "update")
    done = subprocess.run(
        [
            executable,
            "--os-auth-type",
            "admin_token",
            "--os-endpoint",
            deployment.server.url,
            "--os-token",
            deployment.admin,
            "messaging",
            *args,
            *(("-f", "json") if shows else ()),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"openstack messaging {' '.join(args)}: {done.stderr}"
    return json.loads(done.stdout) if shows else None


def together(deployment: Deployment, *commands: tuple[str, ...]) -> list[Any]:
    """Independent commands at once (each CLI start costs a second of CPU)."""
    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        return list(pool.map(lambda args: openstack(deployment, *args), commands))


def test_openstack_messaging_pool_and_flavor_commands(deployment: Deployment) -> None:
    first, second, flavor = f"osc-{tag()}", f"osc-{tag()}", f"osc-{tag()}"
    uri_1, uri_2 = deployment.store(), deployment.store()
    made = together(
        deployment,
        ("pool", "create", first, uri_1, "10", "--pool_options", '{"busy_timeout": 2.0}'),
        ("pool", "create", second, uri_2, "20"),
    )
    assert made[0] == {
        "Name": first,
        "Weight": 10,
        "URI": uri_1,
        "Flavor": None,
        "Options": {"busy_timeout": 2.0},
    }
    updated, flavored = together(
        deployment,
        ("pool", "update", first, "--pool_weight", "15"),
        ("flavor", "create", flavor, "--pool_list", second),
    )
    assert (updated["Name"], updated["Weight"], updated["URI"]) == (first, 15, uri_1)
    assert (flavored["Name"], flavored["Pool list"]) == (flavor, [second])

    shown, listed, flavor_shown = together(
        deployment,
        ("pool", "show", first),
        ("pool", "list", "--detailed"),
        ("flavor", "show", flavor),
    )
    assert (shown["Name"], shown["Weight"], shown["URI"]) == (first, 15, uri_1)
    assert {
        p["Name"]: (p["Weight"], p["Flavor"]) for p in listed if p["Name"] in (first, second)
    } == {first: (15, None), second: (20, flavor)}
    assert flavor_shown == {
        "Name": flavor,
        "Pool list": [second],
        "Capabilities": SQLITE_CAPABILITIES,
    }

    flavor_updated = openstack(deployment, "flavor", "update", flavor, "--pool_list", first)
    assert flavor_updated["Pool_list"] == [first]
    flavors = openstack(deployment, "flavor", "list", "--detailed")
    assert [f for f in flavors if f["Name"] == flavor] == [
        {"Name": flavor, "Pool list": [first], "Capabilities": SQLITE_CAPABILITIES}
    ]

    together(
        deployment,
        ("flavor", "delete", flavor),
        ("pool", "delete", first),
        ("pool", "delete", second),
    )
    with deployment.http() as api:
        assert api.get(f"/flavors/{flavor}").status_code == 404
        for name in (first, second):
            assert api.get(f"/pools/{name}").status_code == 404
