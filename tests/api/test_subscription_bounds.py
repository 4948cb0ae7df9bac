"""What a tenant may subscribe (issue 7): destinations and bounds, over real HTTP.

Subscribers that pass are loopback's discard port (with servers that allow loopback) or a
private 10.x literal that is validated only: no message is posted to a queue whose
subscriber is not on this machine, so nothing is ever sent off it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server import TidingsServer

LOOPBACK_ALLOWED = {"TIDINGS_NOTIFICATION__SUBSCRIBER_DENY_NETWORKS": "[]"}
PRIVATE = "http://10.20.30.40:8080/hook"  # allowed by default; never connected to
NOWHERE = "http://127.0.0.1:9/"  # loopback's discard port: nobody listens
PLACEHOLDER = '"$zaqar_message$"'
DENY_SETTING = "subscriber_deny_networks"


def subscribe(client: httpx.Client, subscriber: str, source: str = "bounded",
              collection: str = "queues", **extra: Any) -> httpx.Response:
    return client.post(f"/{collection}/{source}/subscriptions",
                       json={"subscriber": subscriber, **extra})


def refused(resp: httpx.Response, *fragments: str) -> str:
    """Assert a 400 in Zaqar's error format whose description holds every fragment."""
    assert resp.status_code == 400, resp.text
    error = resp.json()
    assert set(error) == {"title", "description"}
    description: str = error["description"]
    for fragment in fragments:
        assert fragment in description, description
    return description


@pytest.fixture
def open_server(make_server: type[TidingsServer], tmp_path: Path) -> TidingsServer:
    """A server whose deny list is empty: only its own address stays refused."""
    return make_server(tmp_path, env=LOOPBACK_ALLOWED).start()


@pytest.fixture
def open_api(open_server: TidingsServer) -> Iterator[httpx.Client]:
    with open_server.client() as client:
        yield client


# ------------------------------------------------------------------- request forgery


def denied_by_default(server: TidingsServer) -> list[str]:
    return [
        f"http://127.0.0.1:{server.port}/",
        "http://127.0.0.1:9/hook",
        "http://localhost/",
        "http://[::1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:127.0.0.1]/",
        "http://2130706433/",
        "http://0x7f.0.0.1/",
        "http://0177.0.0.1/",
        "http://0.0.0.0/",
        "https://127.1/",
        "http://[fe80::1]/",
    ]


def test_loopback_and_link_local_are_refused_by_default(
    server: TidingsServer, api: httpx.Client
) -> None:
    for subscriber in denied_by_default(server):
        refused(subscribe(api, subscriber), DENY_SETTING)
    listed = api.get("/queues/bounded/subscriptions")
    assert listed.json()["subscriptions"] == [], listed.text


def test_refusal_names_the_setting_and_the_network(api: httpx.Client) -> None:
    text = refused(subscribe(api, "http://169.254.169.254/"), "169.254.0.0/16")
    assert "[notification] subscriber_deny_networks" in text
    assert "TIDINGS_NOTIFICATION__SUBSCRIBER_DENY_NETWORKS" in text


def test_topics_and_updates_are_checked_too(api: httpx.Client) -> None:
    refused(subscribe(api, "http://[::1]/", collection="topics"), DENY_SETTING)
    created = subscribe(api, PRIVATE)
    assert created.status_code == 201, created.text
    sid = created.json()["subscription_id"]
    patched = api.patch(f"/queues/bounded/subscriptions/{sid}",
                        json={"subscriber": "http://127.0.0.1:8080/hook"})
    refused(patched, DENY_SETTING)
    assert api.get(f"/queues/bounded/subscriptions/{sid}").json()["subscriber"] == PRIVATE


def test_private_ranges_are_allowed_by_default(api: httpx.Client) -> None:
    for subscriber in (PRIVATE, "https://192.168.1.20/hook", "http://[fd00::20]:8080/"):
        resp = subscribe(api, subscriber)
        assert resp.status_code == 201, resp.text


def test_a_host_that_does_not_resolve_yet_is_accepted(api: httpx.Client) -> None:
    # Zaqar's own tests subscribe names such as http://fake:8080; there is nothing to
    # judge until the name has an address, and every connection is checked when made.
    # A label longer than 63 characters cannot be looked up: no DNS query leaves the host.
    assert subscribe(api, f"http://{'a' * 64}.example/").status_code == 201


def test_an_empty_deny_list_allows_all_but_the_server_itself(
    open_server: TidingsServer, open_api: httpx.Client
) -> None:
    port = open_server.port
    for subscriber in (
        NOWHERE,
        "http://localhost:9/",
        "http://[::1]:9/",
        "http://169.254.169.254/",
        f"http://127.0.0.2:{port}/",  # another loopback address: not where it listens
    ):
        resp = subscribe(open_api, subscriber)
        assert resp.status_code == 201, f"{subscriber}: {resp.text}"
    for subscriber in (
        f"http://127.0.0.1:{port}/v2/queues/loop/messages",
        f"http://localhost:{port}/",
        f"http://[::ffff:127.0.0.1]:{port}/",
        f"http://2130706433:{port}/",
        f"http://0.0.0.0:{port}/",
    ):
        refused(subscribe(open_api, subscriber), "this Tidings server itself", DENY_SETTING)


# ----------------------------------------------------------------------- subscribers


def test_subscriber_length_is_bounded(api: httpx.Client) -> None:
    base = "http://10.20.30.40/"
    longest = base + "a" * (2048 - len(base))
    assert subscribe(api, longest).status_code == 201
    refused(subscribe(api, longest + "a"), "2048", "max_subscriber_length")


@pytest.mark.parametrize(
    "subscriber",
    [
        "mailto:a@example.com,b@example.com",
        "mailto:a@example.com;b@example.com",
        "mailto:a@example.com%2Cb@example.com",
        "mailto:a@example.com?cc=b@example.com",
        "mailto:a@example.com?bcc=b@example.com",
        "mailto:a@example.com?to=b@example.com",
        "mailto:a@example.com%0D%0ABcc:b@example.com",
        "mailto:a@example.com?subject=Hi%0D%0ABcc:%20b@example.com",
        "mailto:nobody",
    ],
)
def test_mailto_names_exactly_one_safe_address(api: httpx.Client, subscriber: str) -> None:
    refused(subscribe(api, subscriber))


@pytest.mark.parametrize("name", ["subject", "from"])
@pytest.mark.parametrize("value", ["Hi\r\nBcc: b@example.com", "tab\there", 7, ["x"]])
def test_mail_options_are_text_without_control_characters(
    api: httpx.Client, name: str, value: Any
) -> None:
    refused(subscribe(api, "mailto:a@example.com", options={name: value}), name)


def test_mail_options_that_are_plain_text_pass(api: httpx.Client) -> None:
    resp = subscribe(api, "mailto:a@example.com?subject=Hello",
                     options={"subject": "Hi", "from": "Ops <ops@example.com>"})
    assert resp.status_code == 201, resp.text


# ------------------------------------------------------------- subscriptions per queue


@pytest.mark.parametrize("collection", ["queues", "topics"])
def test_subscriptions_per_queue_are_bounded(api: httpx.Client, collection: str) -> None:
    hooks = [f"http://10.20.30.40/{i}" for i in range(50)]
    ids = []
    for hook in hooks:
        resp = subscribe(api, hook, source="full", collection=collection)
        assert resp.status_code == 201, resp.text
        ids.append(resp.json()["subscription_id"])
    refused(subscribe(api, "http://10.20.30.40/one-more", source="full", collection=collection),
            "50", "max_subscriptions_per_queue")
    # subscribing an existing subscriber again is no new subscription
    again = subscribe(api, hooks[0], source="full", collection=collection)
    assert again.status_code == 201
    assert again.json()["subscription_id"] == ids[0]
    # other queues are not affected, and deleting one makes room
    assert subscribe(api, PRIVATE, source="other", collection=collection).status_code == 201
    deleted = api.delete(f"/{collection}/full/subscriptions/{ids[-1]}")
    assert deleted.status_code == 204
    resp = subscribe(api, "http://10.20.30.40/one-more", source="full", collection=collection)
    assert resp.status_code == 201, resp.text


def test_the_bound_is_a_setting(make_server: type[TidingsServer], tmp_path: Path) -> None:
    srv = make_server(tmp_path, env={
        "TIDINGS_TRANSPORT__MAX_SUBSCRIPTIONS_PER_QUEUE": "2",
        "TIDINGS_TRANSPORT__MAX_SUBSCRIBER_LENGTH": "40",
        "TIDINGS_NOTIFICATION__MAX_POST_DATA_SIZE": "100",
        "TIDINGS_NOTIFICATION__MAX_POST_DATA_PLACEHOLDERS": "1",
    }).start()
    with srv.client() as api:
        for i in range(2):
            assert subscribe(api, f"http://10.20.30.40/{i}").status_code == 201
        refused(subscribe(api, "http://10.20.30.40/2"), "already has 2 subscriptions")
        refused(subscribe(api, "http://10.20.30.40/" + "a" * 30, source="long"), "40")
        refused(subscribe(api, PRIVATE, source="data", options={"post_data": "x" * 101}),
                "100 bytes", "max_post_data_size")
        refused(subscribe(api, PRIVATE, source="data",
                          options={"post_data": f"[{PLACEHOLDER}, {PLACEHOLDER}]"}),
                "max_post_data_placeholders")
        resp = subscribe(api, PRIVATE, source="data", options={"post_data": f"[{PLACEHOLDER}]"})
        assert resp.status_code == 201, resp.text


# ---------------------------------------------------------------------------- options


def test_post_data_size_and_placeholders_are_bounded(api: httpx.Client) -> None:
    largest = "x" * 65536
    assert subscribe(api, PRIVATE, source="pd1", options={"post_data": largest}).status_code == 201
    refused(subscribe(api, PRIVATE, source="pd2", options={"post_data": largest + "x"}),
            "65536", "max_post_data_size")
    # bytes, not characters
    refused(subscribe(api, PRIVATE, source="pd2", options={"post_data": "é" * 32769}),
            "max_post_data_size")
    four = "[" + ", ".join([PLACEHOLDER] * 4) + "]"
    five = "[" + ", ".join([PLACEHOLDER] * 5) + "]"
    assert subscribe(api, PRIVATE, source="pd3", options={"post_data": four}).status_code == 201
    refused(subscribe(api, PRIVATE, source="pd4", options={"post_data": five}),
            "at most 4 times", "max_post_data_placeholders")
    # thousands of placeholders, as in the issue, within the size bound
    refused(subscribe(api, PRIVATE, source="pd4", options={"post_data": PLACEHOLDER * 3000}),
            "max_post_data_placeholders")


def test_post_data_bounds_apply_to_updates(api: httpx.Client) -> None:
    sid = subscribe(api, PRIVATE, source="pdu").json()["subscription_id"]
    resp = api.patch(f"/queues/pdu/subscriptions/{sid}",
                     json={"options": {"post_data": PLACEHOLDER * 5}})
    refused(resp, "max_post_data_placeholders")


def test_post_headers_are_bounded(api: httpx.Client) -> None:
    fifty = {f"X-H{i}": "v" for i in range(50)}
    assert subscribe(api, PRIVATE, source="h1",
                     options={"post_headers": fifty}).status_code == 201
    refused(subscribe(api, PRIVATE, source="h2",
                      options={"post_headers": {**fifty, "X-One-More": "v"}}), "50 headers")
    refused(subscribe(api, PRIVATE, source="h2",
                      options={"post_headers": {"X-Big": "v" * 8200}}), "8192")


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Length": "0"},
        {"transfer-encoding": "chunked"},
        {"Bad Name": "v"},
        {"X-Bad:": "v"},
        {"": "v"},
        {"X-Line": "a\nb"},
        {"X-List": ["a"]},
    ],
)
def test_post_headers_must_be_plain_headers(api: httpx.Client, headers: dict[str, Any]) -> None:
    refused(subscribe(api, PRIVATE, source="h3", options={"post_headers": headers}))


def test_other_options_are_bounded(api: httpx.Client) -> None:
    refused(subscribe(api, PRIVATE, options={"note": "n" * 16400}), "16384")
    deep: Any = "leaf"
    for _ in range(40):
        deep = {"d": deep}
    refused(subscribe(api, PRIVATE, options={"deep": deep}), "nested")


def test_ttl_keeps_zaqars_rule(api: httpx.Client) -> None:
    # Beyond a 32-bit integer, yet before the year 9999: stored and read back on every store.
    ttl = 2**31 + 1
    resp = subscribe(api, PRIVATE, source="ttl", ttl=ttl)
    assert resp.status_code == 201, resp.text
    sid = resp.json()["subscription_id"]
    assert api.get(f"/queues/ttl/subscriptions/{sid}").json()["ttl"] == ttl
    too_far = int(253402300799 - time.time()) + 10  # past 9999-12-31 23:59:59
    refused(subscribe(api, PRIVATE, source="ttl2", ttl=too_far), "9999-12-31")
    refused(api.patch(f"/queues/ttl/subscriptions/{sid}", json={"ttl": too_far}), "9999-12-31")
    refused(subscribe(api, PRIVATE, source="ttl2", ttl=2**63 - 1), "9999-12-31")


def test_a_large_valid_document_is_read_whole(api: httpx.Client) -> None:
    # post_data at its bound, JSON-escaped in the request, fits the body limit.
    template = '{"m": ' + PLACEHOLDER + ', "q": "' + "\\u00e9" * 100 + '"}'
    template += '"' * (65536 - len(template.encode()))
    resp = subscribe(api, PRIVATE, source="big",
                     options={"post_data": template, "post_headers": {"X-Token": uuid.uuid4().hex}})
    assert resp.status_code == 201, resp.text
