"""Schemathesis against a started server, on every store: the served OpenAPI document
(``GET /v2/openapi.json``) must describe what the server really answers.

Each operation of the document gets a bounded number of generated requests
(``EXAMPLES``, derandomized: the same requests every run) and every response must pass
``not_a_server_error``, ``status_code_conformance``, ``content_type_conformance`` and
``response_schema_conformance``. Requests carry a fixed project, Client-ID and the admin
role, so they get past admission and reach the operations (admin mode is on, and the
pooled server routes pools and flavors). Before the generated requests, a queue, topic,
message, claim and subscription are made, and each operation also runs on them, so that
successful answers (not only 404s) are checked against their schemas. (Schemathesis
leaves out the operation that serves the document it loaded; tests/api/test_openapi.py
checks that one.)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.backends import StoreNamespace
from tests.server import TidingsServer
from tidings.http.queues import PATCH_MEDIA_TYPE

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Generated requests per operation, and requests on the resources made beforehand.
EXAMPLES = 6
SEEDED_EXAMPLES = 3
# Long polling: a generated ``wait`` would hold a request up to 20 s for nothing.
WAIT = 0.01
SETTINGS = {
    "TIDINGS_ADMIN_MODE": "true",
    # Subscribers the generator makes are never reached: mail goes nowhere, and no
    # webhook may connect anywhere.
    "TIDINGS_TRANSPORT__SUBSCRIBER_TYPES": '["mailto"]',
    "TIDINGS_NOTIFICATION__SMTP_COMMAND": "sh -c 'cat >/dev/null'",
    "TIDINGS_NOTIFICATION__SUBSCRIBER_DENY_NETWORKS": '["0.0.0.0/0", "::/0"]',
    "TIDINGS_SIGNED_URL__SECRET_KEY": "openapi-live-test",
}


# Zaqar's JSON-patch media type is JSON.
schemathesis.serializer.alias(PATCH_MEDIA_TYPE, "application/json")


def start(data_dir: Path, store_uri: str, **env: str) -> TidingsServer:
    return TidingsServer(data_dir, env={**SETTINGS, **env}, store_uri=store_uri).start()


@pytest.fixture
def plain_server(store_kind: str, tmp_path: Path) -> Iterator[TidingsServer]:
    namespace = StoreNamespace(store_kind, tmp_path)
    srv = start(tmp_path, namespace.uri)
    yield srv
    srv.stop()
    namespace.drop()


@pytest.fixture
def pooled_server(tmp_path: Path) -> Iterator[TidingsServer]:
    """Pooling with the message store as the virtual pool (SQLite: pools are global, so
    one pooled run covers their routes)."""
    srv = start(
        tmp_path,
        f"sqlite:///{tmp_path / 'tidings.db'}",
        TIDINGS_POOLING="true",
        TIDINGS_POOLING_CATALOG__ENABLE_VIRTUAL_POOL="true",
        TIDINGS_DRIVERS__MANAGEMENT_STORE=f"sqlite:///{tmp_path / 'management.db'}",
    )
    yield srv
    srv.stop()


def test_every_operation_conforms(plain_server: TidingsServer) -> None:
    run_schemathesis(plain_server)


def test_every_operation_conforms_pooled(pooled_server: TidingsServer) -> None:
    run_schemathesis(pooled_server)


class Seeded:
    """Resources made before the run, so that operations on them succeed."""

    def __init__(self, srv: TidingsServer, headers: dict[str, str]) -> None:
        self.queue = f"seed-{uuid.uuid4().hex[:8]}"
        with httpx.Client(base_url=srv.url + "/v2", headers=headers, timeout=30) as api:
            api.put(f"/queues/{self.queue}", json={"_default_message_ttl": 3600})
            api.put(f"/topics/{self.queue}").raise_for_status()
            posted = api.post(
                f"/queues/{self.queue}/messages",
                json={"messages": [{"body": {"n": n}} for n in range(4)]},
            )
            posted.raise_for_status()
            self.message_id = posted.json()["resources"][0].rsplit("/", 1)[1]
            claim = api.post(f"/queues/{self.queue}/claims?limit=2", json={"ttl": 300})
            claim.raise_for_status()
            self.claim_id = claim.headers["location"].rsplit("/", 1)[1]
            subscribed = api.post(
                f"/queues/{self.queue}/subscriptions",
                json={"subscriber": "mailto:nobody@example.com", "ttl": 3600},
            )
            subscribed.raise_for_status()
            self.subscription_id = subscribed.json()["subscription_id"]

    def path_parameters(self, names: set[str]) -> dict[str, str] | None:
        """Values for an operation's path parameters, if they are all seeded ones."""
        known = {
            "queue": self.queue,
            "message_id": self.message_id,
            "claim_id": self.claim_id,
            "subscription_id": self.subscription_id,
        }
        if not names or not names <= set(known):
            return None
        return {name: known[name] for name in names}


def run_schemathesis(srv: TidingsServer) -> None:
    # Loaded as any client would: over HTTP, without credentials.
    schema = schemathesis.openapi.from_url(srv.url + "/v2/openapi.json")
    headers = {
        "Client-ID": str(uuid.uuid4()),
        "X-Project-ID": f"openapi-{uuid.uuid4().hex[:8]}",
        "X-Roles": "admin",
    }
    seeded = Seeded(srv, headers)
    operations = [result.ok() for result in schema.get_all_operations()]
    # Deletions (and purges) last: the seeded resources serve every other operation first.
    operations.sort(key=lambda op: (removes(op), op.path, op.method))
    failures: list[str] = []
    with requests.Session() as session:
        for operation in operations:
            names = {p.name for p in operation.path_parameters}
            fixed = seeded.path_parameters(names)
            runs = [(None, EXAMPLES)]
            if fixed is not None:
                runs.append((fixed, SEEDED_EXAMPLES))
            for path_parameters, examples in runs:
                try:
                    check_operation(operation, srv, session, headers, path_parameters, examples)
                except Exception as exc:  # each operation's failure is reported, all at once
                    failures.append(f"{operation.label} {path_parameters or ''}:\n{exc}")
    assert not failures, "\n\n".join(failures)


def removes(operation: Any) -> bool:
    return bool(operation.method.upper() == "DELETE" or operation.path.endswith("/purge"))


def check_operation(
    operation: Any,
    srv: TidingsServer,
    session: requests.Session,
    headers: dict[str, str],
    path_parameters: dict[str, str] | None,
    examples: int,
) -> None:
    strategy = operation.as_strategy(headers=headers, path_parameters=path_parameters)

    @settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: report the first failure
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        if case.query and "wait" in case.query:
            case.query["wait"] = WAIT
        case.call_and_validate(base_url=srv.url, session=session, checks=CHECKS, timeout=30)

    run()
