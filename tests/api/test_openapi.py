"""The OpenAPI 3.1 document (``tidings.http.openapi``, ``GET /v2/openapi.json``).

It must be valid OpenAPI 3.1, describe every route Falcon's router has (read from the
router, as tests/routes.py does for other suites, so a new route cannot be missed)
under every configuration that changes the routes, follow the settings, mark Zaqar's
extensions, and be served without credentials. Views still built as dicts (the
WebSocket transport shares them) must encode exactly as the Structs the document
publishes for them. Whether the live server answers as documented is
tests/api/test_openapi_live.py's question.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import msgspec
import pytest
import schemathesis

from tests.routes import responders
from tests.server import TidingsServer
from tidings import views
from tidings.app import build_app
from tidings.config import AuthSettings, DriverSettings, Settings, SignedUrlSettings
from tidings.http import openapi
from tidings.http import schemas as wire
from tidings.http.metrics import Metrics
from tidings.http.queues import PATCH_MEDIA_TYPE
from tidings.model import DeliveryFailure, DeliveryKind, Message, MessageSummary
from tidings.model import QueueStats as Stats
from tidings.model import Subscription as SubscriptionRecord

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def settings(**changes: Any) -> Settings:
    data_dir = Path(f"/tmp/tidings-openapi-{uuid.uuid4().hex}")
    return Settings(
        drivers=DriverSettings(
            message_store=f"sqlite:///{data_dir / 'unused.db'}",
            management_store=f"sqlite:///{data_dir / 'unused-management.db'}",
        ),
        **changes,
    )


def document_for(config: Settings) -> dict[str, Any]:
    """The document of an app built with ``config`` (routes only: no store is opened)."""
    return openapi.document(build_app(config), config)


CONFIGURATIONS = {
    "default": settings(),
    "admin": settings(admin_mode=True),
    "admin-pooling": settings(admin_mode=True, pooling=True),
    "tokens-signed": settings(
        auth_strategy="tokens",
        auth=AuthSettings(tokens_file="/nonexistent/tokens.jsonl"),
        signed_url=SignedUrlSettings(secret_key="k"),
    ),
}


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def resolve(document: dict[str, Any], value: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in value:
        node: Any = document
        for part in value["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        value = node
    return value


# ------------------------------------------------------------------- valid OpenAPI 3.1


@pytest.mark.parametrize("name", CONFIGURATIONS)
def test_the_document_is_valid_openapi_31(name: str) -> None:
    document = document_for(CONFIGURATIONS[name])
    assert document["openapi"] == "3.1.0"
    json.dumps(document)  # plain JSON
    schema = schemathesis.openapi.from_dict(document)
    schema.validate()  # against the OpenAPI 3.1 meta-schema
    loaded = list(schema.get_all_operations())
    assert all(result.ok() for result in loaded)  # every $ref resolves
    assert len(loaded) == len(operations(document))
    for component in document["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(component)
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids))


# ------------------------------------------------------------------- every route


def test_every_route_of_the_router_is_documented() -> None:
    """With admin mode and pooling, every route there is (tests/routes.py's app)."""
    document = document_for(CONFIGURATIONS["admin-pooling"])
    routed = {(method, template) for method, template, _ in responders()}
    documented = {(method, path) for method, path, _ in operations(document)}
    assert documented == routed
    assert ("GET", "/v2/openapi.json") in documented
    assert ("PUT", "/v2/pools/{pool}") in documented


@pytest.mark.parametrize("name", CONFIGURATIONS)
def test_every_operation_has_its_description(name: str) -> None:
    """A responder without an entry in the operation table is marked; none may be."""
    document = document_for(CONFIGURATIONS[name])
    undocumented = [
        f"{method} {path}"
        for method, path, operation in operations(document)
        if operation.get(openapi.UNDOCUMENTED)
    ]
    assert undocumented == []


def test_the_routes_follow_the_settings() -> None:
    default = document_for(CONFIGURATIONS["default"])["paths"]
    assert "/v2/pools" not in default and "/v2/flavors/{flavor}" not in default
    assert "/v2/health" not in default  # an admin action: routed in admin mode only
    assert "/v2/health" in document_for(CONFIGURATIONS["admin"])["paths"]
    assert "/v2/pools/{pool}" in document_for(CONFIGURATIONS["admin-pooling"])["paths"]


def test_metrics_are_documented_when_on_the_main_port() -> None:
    """The route ``[metrics] enabled`` adds (added here by hand: enabling metrics in this
    process would turn them on for every test after)."""
    config = settings(admin_mode=True)
    app = build_app(config)
    app.add_route("/metrics", Metrics(None))  # type: ignore[arg-type]  # never called
    document = openapi.document(app, config)
    get = document["paths"]["/metrics"]["get"]
    assert not get.get(openapi.UNDOCUMENTED)
    assert "text/plain" in next(iter(get["responses"]["200"]["content"]))


# --------------------------------------------------------------- settings in the schemas


def test_limits_and_authentication_follow_the_settings() -> None:
    config = msgspec.structs.replace(
        settings(),
        transport=msgspec.structs.replace(
            settings().transport, max_messages_per_page=7, max_message_ttl=600
        ),
    )
    document = document_for(config)
    listing = document["paths"]["/v2/queues/{queue}/messages"]["get"]
    limit = next(p for p in listing["parameters"] if p.get("name") == "limit")
    assert limit["schema"]["maximum"] == 7
    ttl = document["components"]["schemas"]["MessageIn"]["properties"]["ttl"]
    assert (ttl["minimum"], ttl["maximum"]) == (60, 600)
    parameters = document["components"]["parameters"]
    assert parameters["ProjectId"]["required"] is True
    assert "securitySchemes" not in document["components"]

    tokens = document_for(CONFIGURATIONS["tokens-signed"])
    assert tokens["components"]["parameters"]["ProjectId"]["required"] is False
    assert "Roles" not in tokens["components"]["parameters"]
    assert set(tokens["components"]["securitySchemes"]) == {"token", "signedUrl"}
    post = tokens["paths"]["/v2/queues/{queue}/messages"]["post"]
    assert post["security"] == [{"token": []}, {"signedUrl": []}]
    assert "401" in post["responses"]


def test_request_bodies_are_the_servers_types() -> None:
    """Message posts are described by the Structs the server decodes them with."""
    from tidings.ops.messages import MessageIn, _PostDocument

    document = document_for(CONFIGURATIONS["admin-pooling"])
    schemas = document["components"]["schemas"]
    post = document["paths"]["/v2/queues/{queue}/messages"]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert resolve(document, body) is schemas["MessagePost"]
    assert list(schemas["MessagePost"]["properties"]) == list(_PostDocument.__struct_fields__)
    assert list(schemas["MessageIn"]["properties"]) == list(MessageIn.__struct_fields__)
    pool_options = schemas["PoolRequest"]["properties"]["options"]
    assert pool_options == {"$ref": "#/components/schemas/StorageSettings"}


# ------------------------------------------------------------------ Zaqar's extensions


def test_zaqar_extensions_are_marked() -> None:
    document = document_for(CONFIGURATIONS["admin-pooling"])
    request_id = document["components"]["headers"]["RequestId"]
    assert request_id["required"] is True and request_id[openapi.EXTENSION]
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            headers = resolve(document, response).get("headers", {})
            assert "x-openstack-request-id" in headers, f"{method} {path} {status}"
    patch = document["paths"]["/v2/queues/{queue}"]["patch"]
    media = patch["requestBody"]["content"][PATCH_MEDIA_TYPE]
    assert media[openapi.EXTENSION]
    assert "415" in patch["responses"]
    parameters = document["components"]["parameters"]
    for name in ("ClientId", "ProjectId", "Roles", "RequestIdIn"):
        assert parameters[name][openapi.EXTENSION]


def test_errors_have_zaqars_body() -> None:
    document = document_for(CONFIGURATIONS["admin"])
    error = document["components"]["schemas"]["Error"]
    assert error["required"] == ["title"] and set(error["properties"]) == {
        "title",
        "description",
    }
    get = document["paths"]["/v2/queues/{queue}/messages/{message_id}"]["get"]
    for status in ("400", "403", "404", "500", "503"):
        content = resolve(document, get["responses"][status])["content"]
        assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert "content" not in resolve(document, get["responses"]["406"])  # Zaqar's: no body


# -------------------------------------------------- views still built as dicts


NOW = 1_700_000_000.5


def message(**changes: Any) -> Message:
    base = Message(
        id="m1",
        marker="7",
        body=b'{"event":"x"}',
        ttl=300,
        created=NOW - 4,
        expires=NOW + 296,
        client_id="c",
        claim_count=1,
    )
    return msgspec.structs.replace(base, **changes)


CLAIMED = {"claim_id": "c1", "claim_expires": NOW + 60}
SUMMARY = MessageSummary(id="a", created=NOW - 9)
DICT_VIEWS = [
    (wire.Message, views.message(message(), "q", NOW)),
    (wire.Message, views.message(message(**CLAIMED), "q", NOW, with_checksum=True)),
    (wire.PoppedMessage, views.popped_message(message(), NOW)),
    (wire.PoppedMessage, views.popped_message(message(), NOW, with_checksum=True)),
    (wire.QueueStats, views.stats(Stats(total=0, claimed=0), "q", NOW)),
    (
        wire.QueueStats,
        views.stats(Stats(total=2, claimed=1, oldest=SUMMARY, newest=SUMMARY), "t", NOW, "topics"),
    ),
    (
        wire.Subscription,
        views.subscription(
            SubscriptionRecord(
                id="s",
                source="q",
                subscriber="mailto:a@b.c",
                ttl=60,
                options={"k": 1},
                confirmed=False,
                updated=NOW - 1,
                expires=NOW + 59,
            ),
            NOW,
        ),
    ),
    (
        wire.DeliveryFailure,
        views.delivery_failure(
            DeliveryFailure(
                subscription_id="s",
                kind=DeliveryKind.NOTIFICATION,
                message_id="m",
                attempts=3,
                error="HTTP 500",
                failed=NOW,
            )
        ),
    ),
]


@pytest.mark.parametrize(("struct", "view"), DICT_VIEWS)
def test_dict_views_encode_as_their_structs(struct: type[msgspec.Struct], view: Any) -> None:
    """Decoded strictly (no unknown field) and encoded again, byte for byte: the same
    fields in the same order."""
    encoded = msgspec.json.encode(view)
    assert msgspec.json.encode(msgspec.json.decode(encoded, type=struct)) == encoded


# ---------------------------------------------------------------------------- served


def test_the_document_is_served_without_credentials(server: TidingsServer) -> None:
    """The session server (admin mode): its document is the one built for its settings,
    and no Client-ID or project is needed to read it."""
    answer = httpx.get(server.url + "/v2/openapi.json", timeout=30)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["x-openstack-request-id"].startswith("req-")
    assert answer.json() == document_for(settings(admin_mode=True))
    again = httpx.get(server.url + "/v2/openapi.json", timeout=30)
    assert again.content == answer.content
