"""Admission from plain values, as any transport calls it (no HTTP involved)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tidings.admission import bodies, identity, params, policy, requests
from tidings.admission.actions import Action
from tidings.admission.auth import Identity
from tidings.admission.auth.noauth import NoAuthAuthenticator
from tidings.admission.gate import admit
from tidings.config import DriverSettings, Settings, TransportSettings
from tidings.errors import (
    BadRequest,
    Forbidden,
    HeaderError,
    InvalidBody,
    InvalidParameter,
    InvalidQueueIdentification,
    NotFound,
)
from tidings.ops.context import Caller, Services
from tidings.storage import create_storage
from tidings.storage.fairness import BACKGROUND, current_tenant

CLIENT = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
HEADERS = {"client-id": CLIENT, "x-project-id": "p1", "x-roles": "Admin, member"}


def _services(tmp_path: Path, **settings: Any) -> Services:
    config = Settings(
        drivers=DriverSettings(message_store=f"sqlite:///{tmp_path / 'never-opened.db'}"),
        **settings,
    )
    return Services(settings=config, storage=create_storage(config))


def _admit(
    settings: Settings, action: Action, headers: dict[str, str], signed_project: str | None = None
) -> Caller:
    # asyncio.run runs it in a task, with a context of its own as each request has, so
    # current_tenant does not leak.
    return asyncio.run(
        admit(
            settings,
            NoAuthAuthenticator(settings),
            action,
            headers,
            {},
            signed_project=signed_project,
        )
    )


def test_admit_yields_the_caller_and_names_its_tenant() -> None:
    settings = Settings(admin_mode=True)

    async def run() -> tuple[Caller, str]:
        caller = await admit(
            settings, NoAuthAuthenticator(settings), Action.QUEUE_LIST, HEADERS, {"limit": 5}
        )
        return caller, current_tenant.get()

    caller, tenant = asyncio.run(run())
    assert caller == Caller(project="p1", client_id=CLIENT, roles=frozenset({"admin", "member"}))
    assert tenant == "p1"
    assert current_tenant.get() == BACKGROUND


def test_noauth_drops_the_admin_role_unless_admin_mode() -> None:
    assert _admit(Settings(), Action.QUEUE_LIST, HEADERS).roles == {"member"}
    assert _admit(Settings(admin_mode=True), Action.QUEUE_LIST, HEADERS).roles == {
        "admin",
        "member",
    }


def test_an_authenticated_identity_decides_the_project() -> None:
    who = Identity(project="p1", user_id="u1", roles=frozenset({"member"}), authenticated=True)
    limits = TransportSettings()
    expected = Caller(project="p1", client_id=CLIENT, roles=who.roles, user_id="u1")
    # X-Project-ID may be left out (or empty); X-Roles is not the token's to extend.
    for headers in ({"client-id": CLIENT}, {"client-id": CLIENT, "x-project-id": ""}, HEADERS):
        assert identity.caller(who, headers, limits) == expected
    with pytest.raises(Forbidden):
        identity.caller(who, {**HEADERS, "x-project-id": "p2"}, limits)
    # The Client-ID is still checked first.
    with pytest.raises(HeaderError, match="Client-Id"):
        identity.caller(who, {"x-project-id": "p2"}, limits)


def test_a_signed_request_acts_in_the_signed_project_without_roles() -> None:
    caller = _admit(Settings(admin_mode=True), Action.MESSAGE_LIST, HEADERS, signed_project="p1")
    assert caller == Caller(project="p1", client_id=CLIENT)
    with pytest.raises(HeaderError, match="Client-Id"):
        _admit(Settings(), Action.MESSAGE_LIST, {"x-project-id": "p1"}, signed_project="p1")


@pytest.mark.parametrize(
    ("headers", "error", "title"),
    [
        ({"x-project-id": "p"}, HeaderError, "Missing header value"),
        ({"client-id": "nope", "x-project-id": "p"}, HeaderError, "Wrong UUID value"),
        ({"client-id": CLIENT}, HeaderError, "Project-Id Missing"),
        (
            {"client-id": CLIENT, "x-project-id": ""},
            HeaderError,
            "Empty project header not allowed",
        ),
        # Control characters would reach the topics' namespace.
        (
            {"client-id": CLIENT, "x-project-id": "p\x1ftopics"},
            InvalidQueueIdentification,
            "Invalid queue identification",
        ),
    ],
)
def test_identity_is_refused_in_zaqars_order(
    headers: dict[str, str], error: type[Exception], title: str
) -> None:
    with pytest.raises(error) as raised:
        _admit(Settings(), Action.QUEUE_LIST, headers)
    assert getattr(raised.value, "title", None) == title


def test_client_id_is_canonical_or_bounded_by_length() -> None:
    assert identity.client_id(CLIENT.upper(), TransportSettings()) == CLIENT
    loose = TransportSettings(client_id_uuid_safe="off")
    assert identity.client_id("0123456789", loose) == "0123456789"
    with pytest.raises(HeaderError):
        identity.client_id("short", loose)


def test_health_is_for_admins_in_admin_mode_only() -> None:
    member = {**HEADERS, "x-roles": "member"}
    assert not policy.offered(Action.HEALTH, Settings())
    assert policy.offered(Action.QUEUE_LIST, Settings())
    with pytest.raises(NotFound):
        _admit(Settings(), Action.HEALTH, HEADERS)
    with pytest.raises(Forbidden):
        _admit(Settings(admin_mode=True), Action.HEALTH, member)
    assert _admit(Settings(admin_mode=True), Action.HEALTH, HEADERS).project == "p1"
    # A signed request has no roles, whatever X-Roles says.
    with pytest.raises(Forbidden):
        _admit(Settings(admin_mode=True), Action.HEALTH, HEADERS, signed_project="p1")


def test_parameters_decode_from_text_and_from_json_values() -> None:
    text_params = {"limit": "7", "echo": "Yes", "ids": ["a,b", " c "], "marker": ["1", "2"]}
    json_params: dict[str, object] = {"limit": 7, "echo": True, "ids": ["a", "b", "c"]}
    for given in (text_params, json_params):
        assert params.integer(given, "limit") == 7
        assert params.boolean(given, "echo") is True
        assert params.id_list(given, "ids") == ["a", "b", "c"]
    assert params.text(text_params, "marker") == "2"  # a repeated parameter: the last
    assert params.boolean({}, "echo") is False
    for bad in ({"limit": "x"}, {"limit": True}, {"limit": 1.5}):
        with pytest.raises(InvalidParameter):
            params.integer(bad, "limit")
    with pytest.raises(InvalidParameter):
        params.boolean({"echo": "maybe"}, "echo")


def test_nul_is_refused_in_parameters_but_not_in_ids() -> None:
    params.check_parameters({"ids": "a\x00b", "claim_id": "\x00"})
    with pytest.raises(InvalidParameter):
        params.check_parameters({"marker": ["ok", "x\x00"]})


def test_message_removal_is_exactly_one_of_ids_and_pop() -> None:
    assert requests.message_removal({"pop": "3"}) == requests.MessagePop(count=3)
    assert requests.message_removal({"ids": "a,b", "claim_ids": "c"}) == (
        requests.MessageDeletion(ids=["a", "b"], claim_ids=["c"])
    )
    with pytest.raises(BadRequest, match="cannot be present together"):
        requests.message_removal({"pop": "1", "ids": "a"})
    with pytest.raises(BadRequest, match='either "ids" or "pop"'):
        requests.message_removal({})


def test_every_other_listing_parameter_filters_on_metadata() -> None:
    listing = requests.queue_listing(
        {"limit": "5", "detailed": "true", "colour": "red", "size": "3", "twice": ["1", "2"]}
    )
    assert listing.limit == 5 and listing.detailed
    assert listing.metadata_equals == {"colour": "red", "size": 3}


def test_message_reading_is_by_ids_or_a_page() -> None:
    assert requests.message_reading({"ids": "a"}) == requests.MessageSelection(ids=["a"])
    page = requests.message_reading({"include_claimed": "true"})
    assert isinstance(page, requests.MessageListing) and page.include_claimed


@pytest.mark.parametrize(
    "raw",
    [b" \n", b"null", b'{"a": "\xff"}', b'{"a": "\xed\xa0\x80"}', b"[" * 10_000, b'{"a": 1'],
)
def test_bodies_that_cannot_be_parsed(raw: bytes) -> None:
    with pytest.raises(InvalidBody, match="could not be parsed"):
        bodies.decode(raw)


def test_an_absent_body_is_none_and_huge_integers_are_refused() -> None:
    assert bodies.decode(b"") is None
    assert bodies.decode(b'{"a": [1]}') == {"a": [1]}
    with pytest.raises(InvalidBody, match="integer that is too large"):
        bodies.decode(b'{"a": ' + b"9" * 400 + b"}")


def test_each_action_has_its_size_rule(tmp_path: Path) -> None:
    svc = _services(tmp_path)
    assert bodies.read_limit(svc, Action.CLAIM_CREATE) == bodies.SMALL_BODY_LIMIT
    assert bodies.read_limit(svc, Action.MESSAGE_POST) == 262144
    with pytest.raises(InvalidBody, match="Max size: 4096"):
        bodies.document(svc, Action.SUBSCRIPTION_CONFIRM, b"{}", 4097)
    with pytest.raises(BadRequest, match="Queue metadata is too large") as raised:
        bodies.document(svc, Action.QUEUE_CREATE, b"{}", 65537)
    assert raised.value.title == "Invalid API request"
    with pytest.raises(BadRequest, match="Queue metadata is too large") as raised:
        bodies.document(svc, Action.QUEUE_UPDATE, b"[]", 65537)
    assert raised.value.title == "Invalid request body"  # as Zaqar words it on PATCH
    bodies.check_size(svc, Action.MESSAGE_POST, 10**9)  # the queue's limit: the op's
    with pytest.raises(ValueError, match="takes no body"):
        bodies.read_limit(svc, Action.QUEUE_GET)
