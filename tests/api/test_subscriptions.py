"""The subscription API (spec api-v2-extended §1) and topics (§6) over real HTTP.

Every test works in a project of its own (the ``api`` fixture), so fixed queue and topic
names are safe under pytest-xdist. Subscribers here point at loopback's discard port, where
nobody listens: nothing is delivered (every attempt is refused at once, on this machine),
only the API is exercised (delivery is in tests/reliability/test_notifications.py). The
servers of this module therefore allow loopback subscribers (the default denies them).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.backends import StoreNamespace
from tests.server import TidingsServer, age_bound, wait_until

SUBSCRIPTIONS = ("queues", "topics")
CONFLICT_ON_CREATE = (
    "Such subscription already exists."
    "Subscriptions are unique by project + queue + subscriber URI."
)
CONFLICT_ON_UPDATE = (
    "Such subscription already exists. "
    "Subscriptions are unique by project + queue + subscriber URI."
)
LIMIT_ERROR = "Limit must be at least 1 and may not be greater than 20."
# Lets subscribers point at loopback (denied by default, against request forgery).
LOOPBACK_ALLOWED = {"TIDINGS_NOTIFICATION__SUBSCRIBER_DENY_NETWORKS": "[]"}


@pytest.fixture(scope="module")
def server(store_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TidingsServer]:
    """The default server (admin mode on), except that loopback subscribers are allowed."""
    data_dir = tmp_path_factory.mktemp(f"server-{store_kind}")
    namespace = StoreNamespace(store_kind, data_dir)
    srv = TidingsServer(
        data_dir, env={"TIDINGS_ADMIN_MODE": "true", **LOOPBACK_ALLOWED}, store_uri=namespace.uri
    )
    srv.start()
    yield srv
    srv.stop()
    namespace.drop()


def hook(name: str = "") -> str:
    return f"http://127.0.0.1:9/{name or uuid.uuid4().hex[:10]}"


def create(
    client: httpx.Client, source: str, subscriber: str, collection: str = "queues", **extra: Any
) -> str:
    resp = client.post(
        f"/{collection}/{source}/subscriptions", json={"subscriber": subscriber, **extra}
    )
    assert resp.status_code == 201, resp.text
    sid: str = resp.json()["subscription_id"]
    return sid


def api_error(resp: httpx.Response, description: str, status: int = 400,
              title: str = "Invalid API request") -> None:
    assert resp.status_code == status, resp.text
    assert resp.json() == {"title": title, "description": description}


@pytest.fixture
def other_project(server: TidingsServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


@pytest.fixture(params=SUBSCRIPTIONS)
def collection(request: pytest.FixtureRequest) -> str:
    """Queues and topics have the same subscription API."""
    name: str = request.param
    return name


# --------------------------------------------------------------------------- create


def test_create_returns_201_location_and_id(api: httpx.Client, collection: str) -> None:
    subscriber = hook()
    created = time.monotonic()
    resp = api.post(
        f"/{collection}/src1/subscriptions",
        json={"subscriber": subscriber, "ttl": 600, "options": {"k": [1, {"x": None}]}},
    )
    assert resp.status_code == 201, resp.text
    assert resp.headers["location"] == f"/v2/{collection}/src1/subscriptions"
    assert list(resp.json()) == ["subscription_id"]
    sid = resp.json()["subscription_id"]
    assert uuid.UUID(sid).version == 4

    got = api.get(f"/{collection}/src1/subscriptions/{sid}")
    assert got.status_code == 200
    assert got.json() == {
        "id": sid,
        "source": "src1",
        "subscriber": subscriber,
        "ttl": 600,
        "age": got.json()["age"],
        "options": {"k": [1, {"x": None}]},
        "confirmed": False,
    }
    assert 0 <= got.json()["age"] <= age_bound(created)


def test_create_defaults_and_ignores_unknown_keys(api: httpx.Client) -> None:
    sid = create(api, "defaults", hook(), unknown="ignored")
    got = api.get(f"/queues/defaults/subscriptions/{sid}").json()
    assert got["ttl"] == 3600
    assert got["options"] == {}
    assert got["confirmed"] is False
    assert "unknown" not in got


def test_create_accepts_https_and_mailto(api: httpx.Client) -> None:
    create(api, "schemes", "https://127.0.0.1:9/secure")
    create(api, "schemes", "mailto:ops@example.com")
    create(api, "schemes", "mailto:ops@example.com?subject=Hi")
    listed = api.get("/queues/schemes/subscriptions").json()["subscriptions"]
    assert sorted(s["subscriber"] for s in listed) == [
        "https://127.0.0.1:9/secure",
        "mailto:ops@example.com",
        "mailto:ops@example.com?subject=Hi",
    ]


def test_create_auto_creates_the_queue(api: httpx.Client) -> None:
    create(api, "born-by-subscription", hook())
    names = [q["name"] for q in api.get("/queues").json()["queues"]]
    assert names == ["born-by-subscription"]


def test_rejected_create_leaves_no_queue_behind(api: httpx.Client) -> None:
    resp = api.post("/queues/never-born/subscriptions", json={"subscriber": "ftp://x"})
    assert resp.status_code == 400
    assert api.get("/queues").json()["queues"] == []


SUBSCRIBER_TYPES = (
    "The subscriber type of subscription must be supported in the list "
    "['http', 'https', 'mailto']."
)


@pytest.mark.parametrize(
    ("body", "description"),
    [
        ({}, "Missing parameter subscriber in body."),
        ({"ttl": 120}, "Missing parameter subscriber in body."),
        ({"subscriber": ""}, "Missing parameter subscriber in body."),  # Zaqar: 503
        ({"subscriber": None}, "Missing parameter subscriber in body."),
        ({"subscriber": "ftp://hooks.invalid/x"}, SUBSCRIBER_TYPES),
        ({"subscriber": "trust+http://127.0.0.1:9/x"}, SUBSCRIBER_TYPES),
        ({"subscriber": "hooks.invalid/x"}, SUBSCRIBER_TYPES),
        ({"subscriber": hook(), "options": [1]}, "Options must be a dict."),
        ({"subscriber": hook(), "options": "x"}, "Options must be a dict."),
        ({"subscriber": hook(), "options": 3}, "Options must be a dict."),
        ({"subscriber": hook(), "ttl": "600"}, "TTL must be an integer."),
        ({"subscriber": hook(), "ttl": 600.5}, "TTL must be an integer."),
        ({"subscriber": hook(), "ttl": True}, "TTL must be an integer."),
        (
            {"subscriber": hook(), "ttl": 0},  # Zaqar stores it and answers 500
            "The TTL for a subscription must be at least 60 seconds long.",
        ),
        (
            {"subscriber": hook(), "ttl": 59},
            "The TTL for a subscription must be at least 60 seconds long.",
        ),
        (
            {"subscriber": hook(), "ttl": -1},
            "The TTL for a subscription must be at least 60 seconds long.",
        ),
        (
            {"subscriber": hook(), "ttl": 10**12},
            "The TTL seconds for a subscription plus current time must be less than "
            "9999-12-31 23:59:59.999999.",
        ),
        (
            {"subscriber": hook(), "options": {"_retry_policy": 1}},
            "retry_policy must be a dict.",
        ),
        (
            {"subscriber": hook(), "options": {"_retry_policy": {"retry_backoff_function": 1}}},
            "retry_backoff_function must be a string.",
        ),
        (
            {"subscriber": hook(), "options": {"_retry_policy": {"retry_backoff_function": "x"}}},
            "invalid retry_backoff_function.",
        ),
        (
            {"subscriber": hook(),
             "options": {"_retry_policy": {"ignore_subscription_override": "yes"}}},
            "ignore_subscription_override must be a boolean.",
        ),
        (
            {"subscriber": hook(), "options": {"_retry_policy": {"minimum_delay": "5"}}},
            "Retry policy: minimum_delay must be a integer.",
        ),
        (
            {"subscriber": hook(),
             "options": {"_retry_policy": {"minimum_delay": 20, "maximum_delay": 10}}},
            "minimum_delay must less than maximum_delay.",
        ),
        (
            {"subscriber": hook(),
             "options": {"_retry_policy": {"minimum_delay": 5, "maximum_delay": 10}}},
            "invalid minimum_delay and maximum_delay.",
        ),
    ],
)
def test_create_validation(
    api: httpx.Client, collection: str, body: dict[str, Any], description: str
) -> None:
    resp = api.post(f"/{collection}/invalid/subscriptions", json=body)
    api_error(resp, description)


def test_create_with_an_unparsable_subscriber_uri(api: httpx.Client) -> None:
    resp = api.post("/queues/badurl/subscriptions", json={"subscriber": "http://[::1"})
    assert resp.status_code == 400, resp.text


@pytest.mark.parametrize(
    "body",
    [
        {"subscriber": "mailto:a@example.com\r\nBcc: evil@example.com"},
        {"subscriber": hook(), "options": {"post_headers": {"X-Bad": "a\r\nInjected: 1"}}},
    ],
)
def test_create_refuses_line_breaks_in_headers(api: httpx.Client, body: dict[str, Any]) -> None:
    resp = api.post("/queues/crlf/subscriptions", json=body)
    assert resp.status_code == 400, resp.text


def test_create_without_body(api: httpx.Client) -> None:
    api_error(api.post("/queues/nobody/subscriptions"), "Missing parameter subscriber in body.")


def test_create_with_unparsable_or_non_object_body(api: httpx.Client) -> None:
    resp = api.post(
        "/queues/badbody/subscriptions",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    api_error(resp, "Request body could not be parsed.", title="Invalid request body")
    # Zaqar answers 503 "Subscription could not be created." for a JSON array
    for document in ([1], "subscriber", 7):
        resp = api.post("/queues/badbody/subscriptions", json=document)
        assert resp.status_code == 400, resp.text
        assert resp.json()["title"] == "Invalid request body"


def test_create_on_an_invalid_queue_name(api: httpx.Client) -> None:
    for name in ("x" * 65, "bad$name"):
        resp = api.post(f"/queues/{name}/subscriptions", json={"subscriber": hook()})
        assert resp.status_code == 400
        assert resp.json()["title"] == "Invalid queue identification"
        assert api.get(f"/queues/{name}/subscriptions").status_code == 400


def test_create_on_an_invalid_topic_name(api: httpx.Client) -> None:
    resp = api.post(f"/topics/{'x' * 65}/subscriptions", json={"subscriber": hook()})
    assert resp.status_code == 400
    assert resp.json()["title"] == "Invalid topic identification"


# ------------------------------------------------------------------------ duplicates


def test_duplicate_of_unconfirmed_returns_201_and_the_same_id(
    api: httpx.Client, collection: str
) -> None:
    subscriber = hook()
    first = create(api, "dup", subscriber, collection, ttl=600, options={"a": 1})
    again = api.post(
        f"/{collection}/dup/subscriptions",
        json={"subscriber": subscriber, "ttl": 900, "options": {"b": 2}},
    )
    assert again.status_code == 201
    assert again.json() == {"subscription_id": first}
    # the duplicate's ttl and options are ignored, not applied
    got = api.get(f"/{collection}/dup/subscriptions/{first}").json()
    assert (got["ttl"], got["options"]) == (600, {"a": 1})
    assert len(api.get(f"/{collection}/dup/subscriptions").json()["subscriptions"]) == 1


def test_duplicate_key_is_the_exact_subscriber_string(api: httpx.Client) -> None:
    a = create(api, "dupkey", "http://127.0.0.1:9/x")
    b = create(api, "dupkey", "http://127.0.0.1:9/x/")
    c = create(api, "dupkey2", "http://127.0.0.1:9/x")
    assert len({a, b, c}) == 3


def test_duplicate_of_confirmed_is_409(api: httpx.Client, collection: str) -> None:
    subscriber = hook()
    sid = create(api, "dupc", subscriber, collection)
    confirm = api.put(f"/{collection}/dupc/subscriptions/{sid}/confirm", json={"confirmed": True})
    assert confirm.status_code == 204
    resp = api.post(f"/{collection}/dupc/subscriptions", json={"subscriber": subscriber})
    api_error(resp, CONFLICT_ON_CREATE, status=409, title="Resource conflict")
    assert resp.headers["location"] == f"/v2/{collection}/dupc/subscriptions"
    # unconfirming makes the subscriber re-subscribable (201, same id)
    api.put(f"/{collection}/dupc/subscriptions/{sid}/confirm", json={"confirmed": False})
    again = api.post(f"/{collection}/dupc/subscriptions", json={"subscriber": subscriber})
    assert again.status_code == 201
    assert again.json() == {"subscription_id": sid}


# ----------------------------------------------------------------------------- list


def test_list_pages_with_limit_marker_and_next_links(api: httpx.Client, collection: str) -> None:
    created = {create(api, "paged", hook(f"p{i}"), collection) for i in range(5)}
    seen: list[str] = []
    url: str | None = f"/{collection}/paged/subscriptions?limit=2"
    pages = 0
    while url is not None and pages < 10:
        resp = api.get(url)
        assert resp.status_code == 200
        document = resp.json()
        pages += 1
        items = document["subscriptions"]
        assert len(items) <= 2
        if not items:
            assert document["links"] == []
            break
        seen.extend(s["id"] for s in items)
        (link,) = document["links"]
        assert link["rel"] == "next"
        parts = urlsplit(link["href"])
        assert parts.path == f"/v2/{collection}/paged/subscriptions"
        assert parse_qs(parts.query) == {"limit": ["2"], "marker": [items[-1]["id"]]}
        url = link["href"].removeprefix("/v2")
    assert pages == 4  # 2 + 2 + 1 + the empty page
    assert sorted(seen) == sorted(created)
    assert len(seen) == len(set(seen))


def test_list_items_are_full_objects(api: httpx.Client) -> None:
    sid = create(api, "full", hook("one"), ttl=120, options={"post_headers": {"X": "y"}})
    (item,) = api.get("/queues/full/subscriptions").json()["subscriptions"]
    assert item == {
        "id": sid,
        "source": "full",
        "subscriber": hook("one"),
        "ttl": 120,
        "age": item["age"],
        "options": {"post_headers": {"X": "y"}},
        "confirmed": False,
    }


def test_list_default_page_size_is_10_and_max_is_20(api: httpx.Client) -> None:
    for i in range(21):
        create(api, "many", hook(f"m{i:02d}"))
    assert len(api.get("/queues/many/subscriptions").json()["subscriptions"]) == 10
    assert len(api.get("/queues/many/subscriptions?limit=20").json()["subscriptions"]) == 20


@pytest.mark.parametrize("limit", ["0", "21", "-1", "100"])
def test_list_limit_out_of_range(api: httpx.Client, collection: str, limit: str) -> None:
    api_error(api.get(f"/{collection}/q/subscriptions", params={"limit": limit}), LIMIT_ERROR)


def test_list_limit_not_an_integer(api: httpx.Client) -> None:
    resp = api.get("/queues/q/subscriptions", params={"limit": "ten"})
    assert resp.status_code == 400
    assert resp.json()["title"] == "Invalid parameter"


def test_list_of_unknown_queue_is_empty(api: httpx.Client, collection: str) -> None:
    resp = api.get(f"/{collection}/nothing-here/subscriptions")
    assert resp.status_code == 200
    assert resp.json() == {"subscriptions": [], "links": []}


# ------------------------------------------------------------------------------ get


def test_get_unknown_is_404(api: httpx.Client, collection: str) -> None:
    sid = str(uuid.uuid4())
    api_error(
        api.get(f"/{collection}/q/subscriptions/{sid}"),
        f"Subscription {sid} does not exist",
        status=404,
        title="Not found",
    )
    # an id of another queue is not found either
    other = create(api, "elsewhere", hook(), collection)
    assert api.get(f"/{collection}/q/subscriptions/{other}").status_code == 404


# ---------------------------------------------------------------------------- patch


def test_patch_updates_and_answers_204_with_location(api: httpx.Client, collection: str) -> None:
    sid = create(api, "upd", hook("before"), collection, options={"a": 1, "b": 2})
    resp = api.patch(
        f"/{collection}/upd/subscriptions/{sid}",
        json={"subscriber": hook("after"), "options": {"c": 3}},
    )
    assert resp.status_code == 204, resp.text
    assert resp.headers["location"] == f"/v2/{collection}/upd/subscriptions/{sid}"
    got = api.get(f"/{collection}/upd/subscriptions/{sid}").json()
    assert got["subscriber"] == hook("after")
    assert got["options"] == {"c": 3}  # replaced, not merged
    assert got["ttl"] == 3600


def test_patch_of_subscriber_keeps_confirmed(api: httpx.Client) -> None:
    sid = create(api, "keep", hook("a"))
    api.put(f"/queues/keep/subscriptions/{sid}/confirm", json={"confirmed": True})
    assert api.patch(f"/queues/keep/subscriptions/{sid}", json={"subscriber": hook("b")}) \
        .status_code == 204
    assert api.get(f"/queues/keep/subscriptions/{sid}").json()["confirmed"] is True


def test_patch_new_ttl_resets_age(api: httpx.Client) -> None:
    sid = create(api, "aging", hook(), ttl=600)

    def age() -> int:
        value: int = api.get(f"/queues/aging/subscriptions/{sid}").json()["age"]
        return value

    wait_until(lambda: age() >= 2, "the subscription to be 2 s old", interval=0.2)
    # changing something else does not restart the clock
    api.patch(f"/queues/aging/subscriptions/{sid}", json={"options": {"x": 1}})
    assert age() >= 2
    patched = time.monotonic()
    assert api.patch(f"/queues/aging/subscriptions/{sid}", json={"ttl": 900}).status_code == 204
    after = api.get(f"/queues/aging/subscriptions/{sid}").json()
    assert after["ttl"] == 900
    assert after["age"] <= age_bound(patched)  # counted from the new ttl, not from creation


def test_patch_empty_body(api: httpx.Client, collection: str) -> None:
    sid = create(api, "pe", hook(), collection)
    api_error(api.patch(f"/{collection}/pe/subscriptions/{sid}", json={}),
              "No subscription to create.")
    api_error(api.patch(f"/{collection}/pe/subscriptions/{sid}"), "No subscription to create.")


def test_patch_only_unknown_keys(api: httpx.Client, collection: str) -> None:
    sid = create(api, "pu", hook(), collection)
    api_error(
        api.patch(f"/{collection}/pu/subscriptions/{sid}", json={"foo": 1}),
        f"Subscription {sid} could not be updated.",
        title="Unable to update subscription",
    )


@pytest.mark.parametrize(
    ("body", "description"),
    [
        ({"ttl": 0}, "The TTL for a subscription must be at least 60 seconds long."),
        ({"ttl": "x"}, "TTL must be an integer."),
        ({"subscriber": ""}, "Missing parameter subscriber in body."),
        ({"subscriber": "ftp://x"}, SUBSCRIBER_TYPES),
        ({"options": [1]}, "Options must be a dict."),
        ({"options": {"_retry_policy": "x"}}, "retry_policy must be a dict."),
    ],
)
def test_patch_validation(api: httpx.Client, body: dict[str, Any], description: str) -> None:
    sid = create(api, "pv", hook("pv"), ttl=300)
    api_error(api.patch(f"/queues/pv/subscriptions/{sid}", json=body), description)
    got = api.get(f"/queues/pv/subscriptions/{sid}").json()
    assert (got["subscriber"], got["ttl"], got["options"]) == (hook("pv"), 300, {})


def test_patch_unknown_is_404(api: httpx.Client, collection: str) -> None:
    sid = str(uuid.uuid4())
    api_error(
        api.patch(f"/{collection}/q/subscriptions/{sid}", json={"ttl": 120}),
        f"Subscription {sid} does not exist",
        status=404,
        title="Not found",
    )


def test_patch_to_a_taken_subscriber_is_409(api: httpx.Client, collection: str) -> None:
    create(api, "taken", hook("one"), collection)
    sid = create(api, "taken", hook("two"), collection)
    api_error(
        api.patch(f"/{collection}/taken/subscriptions/{sid}", json={"subscriber": hook("one")}),
        CONFLICT_ON_UPDATE,
        status=409,
        title="Resource conflict",
    )
    # to its own subscriber is fine, and a subscriber of another queue is free
    assert api.patch(f"/{collection}/taken/subscriptions/{sid}",
                     json={"subscriber": hook("two")}).status_code == 204
    create(api, "taken-other", hook("three"), collection)
    assert api.patch(f"/{collection}/taken/subscriptions/{sid}",
                     json={"subscriber": hook("three")}).status_code == 204


# --------------------------------------------------------------------------- delete


def test_delete_is_always_204(api: httpx.Client, collection: str) -> None:
    sid = create(api, "del", hook(), collection)
    assert api.delete(f"/{collection}/del/subscriptions/{sid}").status_code == 204
    assert api.get(f"/{collection}/del/subscriptions/{sid}").status_code == 404
    assert api.delete(f"/{collection}/del/subscriptions/{sid}").status_code == 204
    assert api.delete(f"/{collection}/nowhere/subscriptions/{uuid.uuid4()}").status_code == 204
    assert api.get(f"/{collection}/del/subscriptions").json()["subscriptions"] == []


def test_delete_through_another_queue_does_nothing(api: httpx.Client) -> None:
    sid = create(api, "mine", hook())
    assert api.delete(f"/queues/other/subscriptions/{sid}").status_code == 204
    assert api.get(f"/queues/mine/subscriptions/{sid}").status_code == 200


# -------------------------------------------------------------------------- confirm


def test_confirm_and_unconfirm(api: httpx.Client, collection: str) -> None:
    sid = create(api, "conf", hook(), collection)
    path = f"/{collection}/conf/subscriptions/{sid}/confirm"
    resp = api.put(path, json={"confirmed": True})
    assert resp.status_code == 204
    assert resp.headers["location"] == f"/v2{path}"
    assert api.get(f"/{collection}/conf/subscriptions/{sid}").json()["confirmed"] is True
    assert api.put(path, json={"confirmed": False}).status_code == 204
    assert api.get(f"/{collection}/conf/subscriptions/{sid}").json()["confirmed"] is False


@pytest.mark.parametrize("body", [{}, {"confirmed": "true"}, {"confirmed": 1}, {"confirmed": None},
                                  {"other": True}])
def test_confirm_needs_a_boolean(api: httpx.Client, body: dict[str, Any]) -> None:
    sid = create(api, "confb", hook())
    api_error(
        api.put(f"/queues/confb/subscriptions/{sid}/confirm", json=body),
        "The 'confirmed' should be boolean.",
    )
    assert api.get(f"/queues/confb/subscriptions/{sid}").json()["confirmed"] is False


def test_confirm_unknown_is_404(api: httpx.Client, collection: str) -> None:
    sid = str(uuid.uuid4())
    api_error(
        api.put(f"/{collection}/q/subscriptions/{sid}/confirm", json={"confirmed": True}),
        f"Subscription {sid} does not exist",
        status=404,
        title="Not found",
    )


# ---------------------------------------------------------- lifecycle with the queue


def test_subscriptions_survive_queue_deletion(api: httpx.Client, collection: str) -> None:
    api.put(f"/{collection}/doomed", json={})
    sid = create(api, "doomed", hook(), collection)
    assert api.delete(f"/{collection}/doomed").status_code == 204
    assert api.get(f"/{collection}/doomed/subscriptions/{sid}").status_code == 200
    # a new queue of the same name inherits them
    assert api.put(f"/{collection}/doomed", json={}).status_code == 201
    listed = api.get(f"/{collection}/doomed/subscriptions").json()["subscriptions"]
    assert [s["id"] for s in listed] == [sid]


def test_purge_subscriptions(api: httpx.Client, collection: str) -> None:
    base = f"/{collection}/purged"
    sids = [create(api, "purged", hook(), collection) for _ in range(3)]
    api.post(f"{base}/messages", json={"messages": [{"body": 1}]})
    # purging messages only leaves the subscriptions alone
    assert api.post(f"{base}/purge", json={"resource_types": ["messages"]}).status_code == 204
    assert len(api.get(f"{base}/subscriptions").json()["subscriptions"]) == 3
    resp = api.post(f"{base}/purge", json={"resource_types": ["subscriptions"]})
    assert resp.status_code == 204
    assert api.get(f"{base}/subscriptions").json() == {"subscriptions": [], "links": []}
    for sid in sids:
        assert api.get(f"{base}/subscriptions/{sid}").status_code == 404
    # and a new one can be made afterwards
    create(api, "purged", hook(), collection)


def test_purge_of_one_queue_leaves_others(api: httpx.Client) -> None:
    keep = create(api, "keep-subs", hook())
    create(api, "drop-subs", hook())
    api.post("/queues/drop-subs/purge", json={"resource_types": ["subscriptions"]})
    assert api.get(f"/queues/keep-subs/subscriptions/{keep}").status_code == 200


# -------------------------------------------------------------------------- isolation


def test_project_isolation(api: httpx.Client, other_project: httpx.Client) -> None:
    subscriber = hook()
    sid = create(api, "shared-name", subscriber)
    assert other_project.get("/queues/shared-name/subscriptions").json()["subscriptions"] == []
    assert other_project.get(f"/queues/shared-name/subscriptions/{sid}").status_code == 404
    assert other_project.patch(f"/queues/shared-name/subscriptions/{sid}",
                               json={"ttl": 120}).status_code == 404
    assert other_project.put(f"/queues/shared-name/subscriptions/{sid}/confirm",
                             json={"confirmed": True}).status_code == 404
    assert other_project.delete(f"/queues/shared-name/subscriptions/{sid}").status_code == 204
    other_project.post("/queues/shared-name/purge", json={"resource_types": ["subscriptions"]})
    # the same subscriber in another project is a different subscription
    theirs = create(other_project, "shared-name", subscriber)
    assert theirs != sid
    got = api.get(f"/queues/shared-name/subscriptions/{sid}").json()
    assert (got["ttl"], got["confirmed"]) == (3600, False)


def test_queue_and_topic_subscriptions_are_separate(api: httpx.Client) -> None:
    subscriber = hook()
    on_queue = create(api, "same", subscriber, "queues")
    on_topic = create(api, "same", subscriber, "topics")
    assert on_queue != on_topic
    assert [s["id"] for s in api.get("/queues/same/subscriptions").json()["subscriptions"]] == [
        on_queue
    ]
    assert [s["id"] for s in api.get("/topics/same/subscriptions").json()["subscriptions"]] == [
        on_topic
    ]
    assert api.get(f"/queues/same/subscriptions/{on_topic}").status_code == 404
    assert api.get(f"/topics/same/subscriptions/{on_queue}").status_code == 404
    api.post("/topics/same/purge", json={"resource_types": ["subscriptions"]})
    assert api.get(f"/queues/same/subscriptions/{on_queue}").status_code == 200


def test_failures_of_a_fresh_subscription_are_empty(api: httpx.Client, collection: str) -> None:
    sid = create(api, "nofail", hook(), collection)
    resp = api.get(f"/{collection}/nofail/subscriptions/{sid}/failures")
    assert resp.status_code == 200
    assert resp.json() == {"failures": []}
    missing = str(uuid.uuid4())
    api_error(
        api.get(f"/{collection}/nofail/subscriptions/{missing}/failures"),
        f"Subscription {missing} does not exist",
        status=404,
        title="Not found",
    )


# ---------------------------------------------------------------------------- topics


def test_topic_put_get_list_delete(api: httpx.Client) -> None:
    first = api.put("/topics/news", json={"color": "red"})
    assert first.status_code == 201
    assert first.headers["location"] == "/v2/topics/news"
    # as for queues, PUT on an existing topic does not change its metadata
    assert api.put("/topics/news", json={"color": "blue"}).status_code == 204
    api.put("/topics/alerts", json={})
    got = api.get("/topics/news").json()
    assert got["color"] == "red"
    assert got["_default_message_ttl"] == 3600

    listed = api.get("/topics").json()
    assert [t["name"] for t in listed["topics"]] == ["alerts", "news"]
    assert [t["href"] for t in listed["topics"]] == ["/v2/topics/alerts", "/v2/topics/news"]
    assert "queues" not in listed
    detailed = api.get("/topics", params={"detailed": "true"}).json()["topics"]
    assert detailed[1]["metadata"]["color"] == "red"
    paged = api.get("/topics", params={"limit": 1}).json()
    assert [t["name"] for t in paged["topics"]] == ["alerts"]
    assert paged["links"][0]["href"].startswith("/v2/topics?")

    assert api.delete("/topics/news").status_code == 204
    assert [t["name"] for t in api.get("/topics").json()["topics"]] == ["alerts"]


def test_topic_messages_post_list_get_delete_stats(api: httpx.Client) -> None:
    posted = api.post("/topics/feed/messages",
                      json={"messages": [{"body": {"n": 1}, "ttl": 120}, {"body": "two"}]})
    assert posted.status_code == 201
    hrefs = posted.json()["resources"]
    assert all(h.startswith("/v2/topics/feed/messages/") for h in hrefs)
    ids = [h.rsplit("/", 1)[1] for h in hrefs]

    listed = api.get("/topics/feed/messages", params={"echo": "true"}).json()["messages"]
    assert [(m["id"], m["body"]) for m in listed] == [(ids[0], {"n": 1}), (ids[1], "two")]
    assert listed[0]["href"] == hrefs[0]

    one = api.get(f"/topics/feed/messages/{ids[0]}")
    assert one.status_code == 200
    assert (one.json()["body"], one.json()["ttl"]) == ({"n": 1}, 120)

    stats = api.get("/topics/feed/stats").json()["messages"]
    assert (stats["total"], stats["free"], stats["claimed"]) == (2, 2, 0)
    assert stats["newest"]["href"] == hrefs[1]

    assert api.delete(f"/topics/feed/messages/{ids[0]}").status_code == 204
    assert api.get(f"/topics/feed/messages/{ids[0]}").status_code == 404
    assert api.delete("/topics/feed/messages", params={"ids": ids[1]}).status_code == 204
    assert api.get("/topics/feed/stats").json()["messages"]["total"] == 0


def test_topic_has_no_claims(api: httpx.Client) -> None:
    api.post("/topics/noclaims/messages", json={"messages": [{"body": 1}]})
    assert api.post("/topics/noclaims/claims", json={}).status_code == 404


def test_topics_and_queues_of_the_same_name_are_separate(api: httpx.Client) -> None:
    api.put("/topics/twin", json={"kind": "topic"})
    api.put("/queues/twin", json={"kind": "queue"})
    api.post("/topics/twin/messages", json={"messages": [{"body": "t"}]})
    api.post("/queues/twin/messages", json={"messages": [{"body": "q1"}, {"body": "q2"}]})

    assert api.get("/topics/twin").json()["kind"] == "topic"
    assert api.get("/queues/twin").json()["kind"] == "queue"
    assert api.get("/topics/twin/stats").json()["messages"]["total"] == 1
    assert api.get("/queues/twin/stats").json()["messages"]["total"] == 2
    listed = api.get("/topics/twin/messages", params={"echo": "true"}).json()["messages"]
    topic_bodies = [m["body"] for m in listed]
    assert topic_bodies == ["t"]
    assert [q["name"] for q in api.get("/queues").json()["queues"]] == ["twin"]
    assert [t["name"] for t in api.get("/topics").json()["topics"]] == ["twin"]

    api.delete("/topics/twin")
    assert api.get("/queues/twin/stats").json()["messages"]["total"] == 2
    assert api.get("/topics").json()["topics"] == []
    assert [q["name"] for q in api.get("/queues").json()["queues"]] == ["twin"]


def test_topic_only_queue_list_stays_empty(api: httpx.Client) -> None:
    api.put("/topics/only-topic", json={})
    assert api.get("/queues").json() == {"queues": [], "links": []}
    topic_message = api.post("/topics/only-topic/messages", json={"messages": [{"body": 1}]})
    mid = topic_message.json()["resources"][0].rsplit("/", 1)[1]
    assert api.get(f"/queues/only-topic/messages/{mid}").status_code == 404


def test_topic_message_not_found_text_names_the_project(api: httpx.Client) -> None:
    project = str(api.headers["X-Project-ID"])
    resp = api.get(f"/topics/t404/messages/{uuid.uuid4().hex}")
    assert resp.status_code == 404
    description = resp.json()["description"]
    assert "\x1f" not in description, description  # no internal namespace leaks out
    assert description.endswith(f"for project {project}")
