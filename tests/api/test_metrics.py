"""Prometheus metrics (issue 13 item 1): ``GET /metrics`` on real servers.

Off by default (not routed); on, for callers that pass ``metrics:get`` (admin), with
the counts of every worker process added up: a server with two workers, posted to over
many connections, reports exactly what was posted. ``[metrics] port`` serves them on a
port of their own without auth. Per-queue gauges only for the projects opted in.

Counts are compared before and after what a test does (the module's server is shared),
and waited for: a worker hands its counts over at most a second after it made them.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import notify_listeners
from tests.backends import StoreNamespace
from tests.notify_listeners import WebhookListener
from tests.server import TidingsServer, client_headers, free_port, wait_until

webhook_listener = notify_listeners.webhook_listener
# One worker starts the module's servers (one per store), not each worker that runs a test.
pytestmark = pytest.mark.xdist_group("metrics")

GAUGED = f"gauged-{uuid.uuid4().hex[:8]}"  # the project opted in to per-queue gauges
METERED = {
    "TIDINGS_ADMIN_MODE": "true",
    "TIDINGS_METRICS__ENABLED": "true",
    "TIDINGS_METRICS__QUEUE_GAUGE_PROJECTS": f'["{GAUGED}"]',
    # Webhooks to the loopback listener, delivered and retried without delay.
    "TIDINGS_NOTIFICATION__SUBSCRIBER_DENY_NETWORKS": "[]",
    "TIDINGS_NOTIFICATION__POLL_INTERVAL": "0.1",
    "TIDINGS_NOTIFICATION__MIN_RETRY_DELAY": "0.1",
}
ADMIN = {"X-Roles": "admin"}
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def metered(store_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TidingsServer]:
    """Two workers, metrics on, per-queue gauges for GAUGED."""
    data_dir = tmp_path_factory.mktemp(f"metered-{store_kind}")
    namespace = StoreNamespace(store_kind, data_dir)
    srv = TidingsServer(data_dir, env=METERED, workers=2, store_uri=namespace.uri)
    srv.start()
    yield srv
    srv.stop()
    namespace.drop()


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(server: TidingsServer) -> Samples:
    resp = httpx.get(server.url + "/metrics", headers={**client_headers(), **ADMIN})
    assert resp.status_code == 200, resp.text
    return parse(resp.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def settles_at(
    server: TidingsServer, expected: float, name: str, **labels: str
) -> None:
    """Wait until the scraped ``name{labels}`` is ``expected`` (other workers' counts
    arrive within a second); fail if it is anything else by then."""
    wait_until(
        lambda: value(scrape(server), name, **labels) == expected,
        f"{name}{labels} == {expected}",
    )


def client(server: TidingsServer, project: str | None = None) -> httpx.Client:
    return server.client(project)


def post_one(api: httpx.Client, queue: str) -> None:
    resp = api.post(f"/queues/{queue}/messages", json={"messages": [{"body": 1}]})
    assert resp.status_code == 201


# -- off, and who may read them ------------------------------------------------------------


def test_metrics_off_by_default_are_not_routed(server: TidingsServer) -> None:
    resp = httpx.get(server.url + "/metrics", headers={**client_headers(), **ADMIN})
    assert resp.status_code == 404


def test_only_callers_passing_metrics_get_may_read(metered: TidingsServer) -> None:
    denied = httpx.get(metered.url + "/metrics", headers=client_headers())
    assert denied.status_code == 403
    assert set(denied.json()) == {"title", "description"}
    resp = httpx.get(metered.url + "/metrics", headers={**client_headers(), **ADMIN})
    assert resp.status_code == 200
    assert resp.headers["content-type"] == CONTENT_TYPE
    names = {family.name for family in text_string_to_metric_families(resp.text)}
    assert {
        "tidings_requests",
        "tidings_request_duration_seconds",
        "tidings_messages_posted",
        "tidings_messages_claimed",
        "tidings_messages_deleted",
        "tidings_messages_expired",
        "tidings_messages_dead_lettered",
        "tidings_longpoll_waiters",
        "tidings_websocket_connections",
        "tidings_store_operation_duration_seconds",
    } <= names
    # The denied scrape was counted (once its worker handed its counts over).
    wait_until(
        lambda: value(scrape(metered), "tidings_requests_total",
                      operation="get_metrics", transport="http", status="4xx") >= 1,
        "the 403 counted",
    )  # fmt: skip


# -- counts, added up over two workers -------------------------------------------------------


def test_posts_over_many_connections_are_counted_exactly(metered: TidingsServer) -> None:
    before = scrape(metered)
    posted_before = value(before, "tidings_messages_posted_total")
    labels = {"operation": "message_post", "transport": "http", "status": "2xx"}
    requests_before = value(before, "tidings_requests_total", **labels)
    project = f"posts-{uuid.uuid4().hex[:8]}"
    posts_per_connection, connections = 6, 8
    failures: list[Any] = []

    def post_some(index: int) -> None:
        # A client each: its own connection, landing on either worker.
        with client(metered, project) as api:
            for turn in range(posts_per_connection):
                batch = [{"body": {"n": turn}} for _ in range(1 + (index + turn) % 3)]
                resp = api.post(f"/queues/q{index % 3}/messages", json={"messages": batch})
                if resp.status_code != 201:
                    failures.append(resp.text)

    threads = [threading.Thread(target=post_some, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    sent = sum(
        1 + (index + turn) % 3
        for index in range(connections)
        for turn in range(posts_per_connection)
    )
    settles_at(metered, posted_before + sent, "tidings_messages_posted_total")
    settles_at(
        metered, requests_before + posts_per_connection * connections,
        "tidings_requests_total", **labels,
    )  # fmt: skip
    histogram = value(scrape(metered), "tidings_request_duration_seconds_count", **labels)
    assert histogram == requests_before + posts_per_connection * connections


def test_claims_deletes_and_pops_are_counted(metered: TidingsServer) -> None:
    before = scrape(metered)
    with client(metered) as api:
        messages = [{"body": i} for i in range(7)]
        assert api.post("/queues/work/messages", json={"messages": messages}).status_code == 201
        claim = api.post("/queues/work/claims?limit=4", json={"ttl": 60, "grace": 60})
        assert claim.status_code == 201
        held = claim.json()["messages"]
        assert len(held) == 4
        for message in held[:2]:  # its href names the claim
            assert api.delete(message["href"].removeprefix("/v2")).status_code == 204
        popped = api.delete("/queues/work/messages?pop=2")
        assert popped.status_code == 200
        assert len(popped.json()["messages"]) == 2
    settles_at(
        metered, value(before, "tidings_messages_claimed_total") + 4,
        "tidings_messages_claimed_total",
    )  # fmt: skip
    settles_at(
        metered, value(before, "tidings_messages_deleted_total") + 4,
        "tidings_messages_deleted_total",
    )  # fmt: skip


def test_dead_lettered_messages_are_counted(metered: TidingsServer) -> None:
    before = value(scrape(metered), "tidings_messages_dead_lettered_total")
    with client(metered) as api:
        policy = {"_max_claim_count": 1, "_dead_letter_queue": "graveyard"}
        assert api.put("/queues/fragile", json=policy).status_code == 201
        posted = [{"body": i} for i in range(3)]
        assert api.post("/queues/fragile/messages", json={"messages": posted}).status_code == 201
        first = api.post("/queues/fragile/claims?limit=3", json={"ttl": 60, "grace": 60})
        assert first.status_code == 201
        assert api.delete(first.headers["location"].removeprefix("/v2")).status_code == 204
        # Claimed once already: this claim moves all three to the dead-letter queue.
        again = api.post("/queues/fragile/claims?limit=3", json={"ttl": 60, "grace": 60})
        assert again.status_code == 204
        moved = api.get("/queues/graveyard/messages?echo=true")
        assert len(moved.json()["messages"]) == 3
    settles_at(metered, before + 3, "tidings_messages_dead_lettered_total")


def test_webhook_deliveries_are_counted_by_outcome(
    metered: TidingsServer, webhook_listener: WebhookListener
) -> None:
    before = scrape(metered)
    path = webhook_listener.new_path()
    webhook_listener.fail(path, times=1)  # the first try fails: retried, then delivered
    with client(metered) as api:
        subscribed = api.post(
            "/queues/hooked/subscriptions",
            json={"subscriber": webhook_listener.url(path), "ttl": 3600},
        )
        assert subscribed.status_code == 201
        post_one(api, "hooked")
    webhook_listener.wait_for(path, 2)
    for outcome in ("retried", "delivered"):
        settles_at(
            metered,
            value(before, "tidings_deliveries_total", scheme="http", outcome=outcome) + 1,
            "tidings_deliveries_total", scheme="http", outcome=outcome,
        )  # fmt: skip


def test_long_poll_waiters_are_a_gauge(metered: TidingsServer) -> None:
    project = f"waits-{uuid.uuid4().hex[:8]}"
    answered: list[int] = []

    def wait_for_messages() -> None:
        with client(metered, project) as api:
            answered.append(api.post("/queues/idle/claims?wait=20", json={}).status_code)

    waiter = threading.Thread(target=wait_for_messages)
    waiter.start()
    try:
        wait_until(
            lambda: value(scrape(metered), "tidings_longpoll_waiters") >= 1, "a waiter counted"
        )
    finally:
        with client(metered, project) as api:
            post_one(api, "idle")
        waiter.join()
    assert answered == [201]
    settles_at(metered, 0, "tidings_longpoll_waiters")


def test_store_operations_are_timed_by_store(metered: TidingsServer, store_kind: str) -> None:
    with client(metered) as api:
        assert api.put("/queues/timed").status_code == 201
    wait_until(
        lambda: value(
            scrape(metered), "tidings_store_operation_duration_seconds_count",
            store=store_kind, pool="", operation="queues.create",
        ) >= 1,
        "queues.create timed",
    )  # fmt: skip
    samples = scrape(metered)
    # Counted when a store call fails; none has here.
    assert not [
        key for key, count in samples.items() if key[0] == "tidings_store_errors_total" and count
    ]


# -- per-queue gauges -----------------------------------------------------------------------


def test_queue_gauges_only_for_projects_opted_in(metered: TidingsServer) -> None:
    with client(metered, GAUGED) as api:
        batch = [{"body": i} for i in range(5)]
        assert api.post("/queues/deep/messages", json={"messages": batch}).status_code == 201
        claim = api.post("/queues/deep/claims?limit=2", json={"ttl": 60, "grace": 60})
        assert claim.status_code == 201
    other = f"other-{uuid.uuid4().hex[:8]}"
    with client(metered, other) as api:
        post_one(api, "deep")
    samples = scrape(metered)
    depth = "tidings_queue_messages"
    assert value(samples, depth, project=GAUGED, queue="deep", state="claimed") == 2
    assert value(samples, depth, project=GAUGED, queue="deep", state="ready") == 3
    assert (
        "tidings_queue_oldest_message_age_seconds",
        frozenset({("project", GAUGED), ("queue", "deep")}),
    ) in samples
    assert not [key for key in samples if ("project", other) in key[1]]


# -- [metrics] port ---------------------------------------------------------------------------


def test_a_metrics_port_serves_them_without_auth(tmp_path: Any) -> None:
    port = free_port()
    srv = TidingsServer(
        tmp_path,
        env={"TIDINGS_METRICS__ENABLED": "true", "TIDINGS_METRICS__PORT": str(port)},
        workers=2,
    )
    srv.start()
    try:
        with srv.client() as api:
            post_one(api, "q")
        # Not on the main port, whoever asks.
        main = httpx.get(srv.url + "/metrics", headers={**client_headers(), **ADMIN})
        assert main.status_code == 404

        def posted() -> float:
            resp = httpx.get(f"http://127.0.0.1:{port}/metrics")
            assert resp.status_code == 200
            assert resp.headers["content-type"] == CONTENT_TYPE
            return value(parse(resp.text), "tidings_messages_posted_total")

        wait_until(lambda: posted() == 1, "the post counted on the metrics port")
        assert httpx.get(f"http://127.0.0.1:{port}/other").status_code == 404
    finally:
        srv.stop()


def test_pooled_store_calls_are_labelled_by_pool(tmp_path: Any) -> None:
    srv = TidingsServer(
        tmp_path,
        env={
            "TIDINGS_METRICS__ENABLED": "true",
            "TIDINGS_ADMIN_MODE": "true",
            "TIDINGS_POOLING": "true",
            "TIDINGS_DRIVERS__MANAGEMENT_STORE": f"sqlite:///{tmp_path / 'management.db'}",
        },
    )
    srv.start()
    try:
        with srv.client() as api:
            api.headers.update(ADMIN)
            made = api.put("/pools/lake", json={"uri": f"sqlite:///{tmp_path / 'lake.db'}",
                                                "weight": 100})  # fmt: skip
            assert made.status_code == 201, made.text
            post_one(api, "pooled")
        samples = scrape(srv)
        count = "tidings_store_operation_duration_seconds_count"
        assert value(samples, count, store="sqlite", pool="lake", operation="messages.post") == 1
        assert value(samples, count, store="sqlite", pool="(management)",
                     operation="catalog.pool_put") == 1  # fmt: skip
    finally:
        srv.stop()
