"""Policy: Zaqar's rule names and defaults on oslo.policy, and operators' policy files.

Source: /work/shared/spec/api-v2-extended.md §9 (rule names, defaults, the 403 body) and
§11 item 9. Servers run noauth with ``admin_mode`` on, so that ``X-Roles`` (admin
included) reaches policy; the store does not matter here, so each server uses SQLite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.server import TidingsServer, client_headers, wait_until
from tidings.admission import policy
from tidings.admission.actions import Action
from tidings.config import ConfigError, OsloPolicySettings, Settings
from tidings.errors import Forbidden
from tidings.namespace import TOPIC_NAMESPACE
from tidings.ops.context import Caller

DENIED = {
    "title": "Not authorized",
    "description": "You are not authorized to complete this action.",
}
ADMIN = "role:admin"
# Zaqar 23.0.1's rules (`oslopolicy-sample-generator --namespace zaqar`): every other
# rule is "" (anyone with access to the project).
ZAQAR_ADMIN_RULES = {
    "context_is_admin": ADMIN,
    "admin_or_owner": "is_admin:True or project_id:%(project_id)s",
    "pools:get_all": ADMIN,
    "pools:create": ADMIN,
    "pools:get": ADMIN,
    "pools:delete": ADMIN,
    "pools:update": ADMIN,
    "flavors:create": ADMIN,
    "flavors:delete": ADMIN,
    "flavors:update": ADMIN,
    "health:get": ADMIN,
    "metrics:get": ADMIN,
}
ZAQAR_OPEN_RULES = [
    *(f"queues:{v}" for v in ("get_all", "create", "get", "delete", "update", "stats")),
    "queues:share",
    "queues:purge",
    *(f"messages:{v}" for v in ("get_all", "create", "get", "delete", "delete_all")),
    *(f"claims:{v}" for v in ("create", "get", "delete", "update")),
    *(f"subscription:{v}" for v in ("get_all", "create", "get", "delete", "update", "confirm")),
    *(f"topics:{v}" for v in ("get_all", "create", "get", "delete", "update", "stats", "purge")),
    "flavors:get_all",
    "flavors:get",
    "ping:get",
]

# An operator's Zaqar policy.yaml: rule references, roles, project templates and literals,
# not/or/and, parentheses, "!" (never). Rules it leaves out keep their defaults.
ZAQAR_STYLE_POLICY = """\
# policy.yaml as a Zaqar deployment might have it
"context_is_admin": "role:admin"
"admin_or_owner": "is_admin:True or project_id:%(project_id)s"
"queues:delete": "rule:context_is_admin"
"queues:get_all": "role:admin or project_id:team-a"
"messages:create": "rule:admin_or_owner and not role:observer"
"claims:create": "(role:worker or role:admin) and project_id:%(project_id)s"
"queues:stats": "!"
"topics:create": "role:admin"
"""


def start_server(data_dir: Path, **env: str) -> TidingsServer:
    settings = {
        "TIDINGS_ADMIN_MODE": "true",
        "TIDINGS_SIGNED_URL__SECRET_KEY": "policy-test-key",
        **env,
    }
    return TidingsServer(data_dir, env=settings).start()


def as_(srv: TidingsServer, roles: str, project: str | None = None) -> httpx.Client:
    client = srv.client(project=project)
    client.headers["X-Roles"] = roles
    return client


def denied(resp: httpx.Response) -> bool:
    return resp.status_code == 403 and resp.json() == DENIED


@pytest.fixture(scope="module")
def default_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TidingsServer]:
    srv = start_server(tmp_path_factory.mktemp("policy-default"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def zaqar_policy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TidingsServer]:
    data_dir = tmp_path_factory.mktemp("policy-zaqar")
    policy_file = data_dir / "policy.yaml"
    policy_file.write_text(ZAQAR_STYLE_POLICY)
    srv = start_server(data_dir, TIDINGS_OSLO_POLICY__POLICY_FILE=str(policy_file))
    yield srv
    srv.stop()


def test_default_rules_let_a_member_use_the_data_plane(default_server: TidingsServer) -> None:
    with as_(default_server, "member") as api:
        assert api.put("/queues/q").status_code == 201
        assert api.get("/queues").status_code == 200
        assert api.get("/queues/q").status_code == 200
        assert api.head("/queues/q").status_code == 204
        patch = {"Content-Type": "application/openstack-messaging-v2.0-json-patch"}
        body = [{"op": "add", "path": "/metadata/k", "value": 1}]
        assert api.patch("/queues/q", json=body, headers=patch).status_code == 200
        assert api.get("/queues/q/stats").status_code == 200
        assert api.post("/queues/q/share", json={}).status_code == 200
        posted = api.post("/queues/q/messages", json={"messages": [{"body": 1}, {"body": 2}]})
        assert posted.status_code == 201
        first, second = (h.rsplit("/", 1)[1] for h in posted.json()["resources"])
        assert api.get("/queues/q/messages", params={"echo": "true"}).status_code == 200
        assert api.get("/queues/q/messages", params={"ids": first}).status_code == 200
        assert api.get(f"/queues/q/messages/{first}").status_code == 200
        claim = api.post("/queues/q/claims", json={"ttl": 60, "grace": 60})
        assert claim.status_code == 201
        claim_path = claim.headers["Location"].removeprefix("/v2")
        assert api.get(claim_path).status_code == 200
        assert api.patch(claim_path, json={"ttl": 120}).status_code == 204
        assert api.delete(claim_path).status_code == 204
        assert api.delete(f"/queues/q/messages/{first}").status_code == 204
        assert api.delete("/queues/q/messages", params={"ids": second}).status_code == 204
        sub = api.post(
            "/queues/q/subscriptions",
            json={"subscriber": "mailto:someone@example.com", "ttl": 3600},
        )
        assert sub.status_code == 201, sub.text
        sub_path = f"/queues/q/subscriptions/{sub.json()['subscription_id']}"
        assert api.get("/queues/q/subscriptions").status_code == 200
        assert api.get(sub_path).status_code == 200
        assert api.patch(sub_path, json={"ttl": 7200}).status_code == 204
        assert api.delete(sub_path).status_code == 204
        assert api.post("/queues/q/purge", json={"resource_types": ["messages"]}).status_code == 204
        assert api.delete("/queues/q").status_code == 204
        assert api.put("/topics/t").status_code == 201
        assert api.get("/topics").status_code == 200
        assert api.delete("/topics/t").status_code == 204
        assert api.get("/ping").status_code == 204


def test_default_rules_keep_health_for_admins(default_server: TidingsServer) -> None:
    with as_(default_server, "member") as member, as_(default_server, "admin") as admin:
        assert denied(member.get("/health"))
        assert admin.get("/health").status_code == 200


def test_zaqar_policy_file_rule_references_and_roles(zaqar_policy_server: TidingsServer) -> None:
    with as_(zaqar_policy_server, "member") as member:
        project = member.headers["X-Project-ID"]
        assert member.put("/queues/q").status_code == 201
        assert denied(member.delete("/queues/q"))
        with as_(zaqar_policy_server, "admin", project) as admin:
            assert admin.delete("/queues/q").status_code == 204


def test_zaqar_policy_file_project_checks(zaqar_policy_server: TidingsServer) -> None:
    with as_(zaqar_policy_server, "member", "team-a") as team_a:
        assert team_a.get("/queues").status_code == 200
    with as_(zaqar_policy_server, "member") as other:
        assert denied(other.get("/queues"))
    with as_(zaqar_policy_server, "admin") as admin:
        assert admin.get("/queues").status_code == 200


def test_zaqar_policy_file_not_and_or(zaqar_policy_server: TidingsServer) -> None:
    message = {"messages": [{"body": 1}]}
    with as_(zaqar_policy_server, "member") as member:
        project = member.headers["X-Project-ID"]
        assert member.post("/queues/q/messages", json=message).status_code == 201
        assert denied(member.post("/queues/q/claims", json={"ttl": 60}))
    with as_(zaqar_policy_server, "member,observer", project) as observer:
        assert denied(observer.post("/queues/q/messages", json=message))
    with as_(zaqar_policy_server, "worker", project) as worker:
        assert worker.post("/queues/q/claims", json={"ttl": 60}).status_code == 201


def test_zaqar_policy_file_never_rule_and_untouched_defaults(
    zaqar_policy_server: TidingsServer,
) -> None:
    with as_(zaqar_policy_server, "member") as member:
        project = member.headers["X-Project-ID"]
        assert member.put("/queues/q").status_code == 201
        assert denied(member.get("/queues/q/stats"))
        # Left out of the file: the defaults hold.
        assert member.get("/queues/q/messages").status_code == 200
        assert denied(member.get("/health"))
    with as_(zaqar_policy_server, "admin", project) as admin:
        assert denied(admin.get("/queues/q/stats"))
        assert admin.get("/health").status_code == 200


def test_policy_file_is_reloaded_when_it_changes(
    tmp_path: Path,
) -> None:
    policy_file = tmp_path / "policy.json"  # JSON files work too, as in Zaqar

    def write(text: str) -> None:
        before = policy_file.stat().st_mtime_ns if policy_file.exists() else 0
        policy_file.write_text(text)
        after = policy_file.stat().st_mtime_ns
        if after <= before:  # a coarse file system clock: make the change visible
            os.utime(policy_file, ns=(before + 1_000_000_000, before + 1_000_000_000))

    write(json.dumps({"queues:create": "role:admin"}))
    srv = start_server(tmp_path, TIDINGS_OSLO_POLICY__POLICY_FILE=str(policy_file))
    try:
        with as_(srv, "member") as member:
            assert denied(member.put("/queues/q1"))
            write(json.dumps({"queues:create": ""}))
            wait_until(
                lambda: member.put("/queues/q1").status_code == 201,
                "queues:create to be opened by the rewritten policy file",
            )
            write(json.dumps({"queues:create": "role:admin"}))
            wait_until(
                lambda: denied(member.put("/queues/q2")),
                "queues:create to be closed again",
            )
            # A file that no longer parses: the rules loaded before it stay in force.
            write('{"queues:create": ')
            assert denied(member.put("/queues/q2"))
            assert member.get("/queues").status_code == 200
            wait_until(
                lambda: "keeping the previous rules" in srv.log(),
                "the server to log that the policy file could not be reloaded",
            )
            write(json.dumps({}))
            wait_until(
                lambda: member.put("/queues/q2").status_code == 201,
                "the defaults to apply again once the file names no rule",
            )
    finally:
        srv.stop()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        ('"queues:get": [', "cannot load"),
        ('"queues:get": "rule:nowhere"', "not defined"),
        ('"a": "rule:b"\n"b": "rule:a"', "cycle"),
    ],
)
def test_an_unusable_policy_file_is_refused(
    tmp_path: Path, content: str | None, message: str
) -> None:
    policy_file = tmp_path / "policy.yaml"
    if content is not None:
        policy_file.write_text(content)
    with pytest.raises(ConfigError, match=message):
        policy.enforcer(str(policy_file))


def test_the_server_does_not_start_with_an_unusable_policy_file(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env["TIDINGS_OSLO_POLICY__POLICY_FILE"] = str(tmp_path / "missing.yaml")
    env["TIDINGS_DRIVERS__MESSAGE_STORE"] = f"sqlite:///{tmp_path / 'tidings.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "tidings.cli", "serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "oslo_policy.policy_file" in done.stderr and "does not exist" in done.stderr


def test_topic_routes_are_judged_by_the_topic_rules(zaqar_policy_server: TidingsServer) -> None:
    with as_(zaqar_policy_server, "member") as member:
        project = member.headers["X-Project-ID"]
        assert member.put("/queues/same-name").status_code == 201  # queues:create
        assert denied(member.put("/topics/same-name"))  # topics:create
        with as_(zaqar_policy_server, "admin", project) as admin:
            assert admin.put("/topics/same-name").status_code == 201


def test_topics_are_judged_by_the_topic_rules(tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text('"topics:create": "role:admin"\n"topics:purge": "!"\n')
    settings = Settings(oslo_policy=OsloPolicySettings(policy_file=str(policy_file)))
    member = Caller(project="p", client_id=str(uuid.uuid4()), roles=frozenset({"member"}))
    on_topics = Caller(project="p" + TOPIC_NAMESPACE, client_id=member.client_id,
                       roles=member.roles)
    policy.authorize(Action.QUEUE_CREATE, member, settings)
    policy.authorize(Action.MESSAGE_POST, on_topics, settings)  # messages:create
    with pytest.raises(Forbidden):
        policy.authorize(Action.QUEUE_CREATE, on_topics, settings)
    with pytest.raises(Forbidden):
        policy.authorize(Action.QUEUE_PURGE, on_topics, settings)


def test_policy_defaults_command_prints_every_rule_as_yaml() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tidings.cli", "policy", "defaults"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rules = yaml.safe_load(done.stdout)
    assert rules == {**dict.fromkeys(ZAQAR_OPEN_RULES, ""), **ZAQAR_ADMIN_RULES}
    for action in Action:
        for collection in ("queues", "topics"):
            rule = policy.rule_for(action, collection)
            assert rule is None or rule in rules, (action, collection)
        # Each action is named next to the rule that guards it (or as unguarded).
        assert action.value in done.stdout, action
    assert {a for a in Action if policy.rule_for(a) is None} == {Action.VERSIONS, Action.HOME}


def test_a_caller_without_roles_gets_the_data_plane_not_health(
    default_server: TidingsServer,
) -> None:
    # No X-Roles at all: the default rules still admit the data plane.
    with httpx.Client(base_url=default_server.url + "/v2", headers=client_headers()) as api:
        assert api.put("/queues/noroles").status_code == 201
        assert denied(api.get("/health"))
