"""Settings that were shown or validated but did nothing now act (see the settings audit).

One server per store with non-default settings serves the module; each test works in a
project of its own.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.backends import StoreNamespace
from tests.server import TidingsServer, wait_until
from tidings.config import ConfigError, load_settings

DELAY = 600
SETTINGS = {
    "TIDINGS_TRANSPORT__DEFAULT_MESSAGE_DELAY": str(DELAY),
    "TIDINGS_ENABLE_CHECKSUM": "true",
}


@pytest.fixture(scope="module")
def tuned(store_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TidingsServer]:
    data_dir = tmp_path_factory.mktemp(f"tuned-{store_kind}")
    namespace = StoreNamespace(store_kind, data_dir)
    srv = TidingsServer(data_dir, env=SETTINGS, store_uri=namespace.uri)
    srv.start()
    yield srv
    srv.stop()
    namespace.drop()


@pytest.fixture
def client(tuned: TidingsServer) -> Iterator[httpx.Client]:
    with tuned.client() as c:
        yield c


def post(client: httpx.Client, queue: str, *messages: dict[str, Any]) -> list[str]:
    resp = client.post(f"/{queue}/messages", json={"messages": list(messages)})
    assert resp.status_code == 201, resp.text
    return [href.rsplit("/", 1)[1] for href in resp.json()["resources"]]


def listed(client: httpx.Client, queue: str, **params: str) -> list[str]:
    resp = client.get(f"/{queue}/messages", params={"echo": "true", **params})
    assert resp.status_code == 200, resp.text
    return [m["id"] for m in resp.json()["messages"]]


@pytest.mark.parametrize("collection", ["queues", "topics"])
def test_default_message_delay_delays_posts_that_give_none(
    client: httpx.Client, collection: str
) -> None:
    source = f"{collection}/d"
    assert client.get(f"/{source}").json()["_default_message_delay"] == DELAY
    (delayed,) = post(client, source, {"body": "later"})
    (now,) = post(client, source, {"body": "now", "delay": 0})  # a message's own delay wins
    assert listed(client, source) == [now]
    assert listed(client, source, include_delayed="true") == [delayed, now]
    stats = client.get(f"/{source}/stats").json()["messages"]
    assert stats["total"] == 2


def test_default_message_delay_holds_back_claims_and_pops(client: httpx.Client) -> None:
    (delayed,) = post(client, "queues/dc", {"body": "later"})
    (now,) = post(client, "queues/dc", {"body": "now", "delay": 0})
    claimed = client.post("/queues/dc/claims", json={"ttl": 60, "grace": 60})
    assert claimed.status_code == 201, claimed.text
    assert [m["id"] for m in claimed.json()["messages"]] == [now]
    assert client.post("/queues/dc/claims", json={"ttl": 60, "grace": 60}).status_code == 204
    popped = client.delete("/queues/dc/messages", params={"pop": 5})
    assert popped.json() == {"messages": []}
    assert client.get(f"/queues/dc/messages/{delayed}").status_code == 200


def test_a_queue_delay_still_overrides_the_setting(client: httpx.Client) -> None:
    assert client.put("/queues/own", json={"_default_message_delay": 30}).status_code == 201
    assert client.get("/queues/own").json()["_default_message_delay"] == 30
    post(client, "queues/own", {"body": 1})
    assert listed(client, "queues/own") == []


def test_enable_checksum_covers_pop(client: httpx.Client) -> None:
    """Pop answers with the checksum a listing shows, as Zaqar's pop (a claim) does."""
    body = {"x": [1, "two", None]}
    post(client, "queues/ck", {"body": body, "delay": 0})
    (shown,) = client.get("/queues/ck/messages", params={"echo": "true"}).json()["messages"]
    assert shown["checksum"].startswith("MD5:")
    (popped,) = client.delete("/queues/ck/messages", params={"pop": 1}).json()["messages"]
    assert popped["body"] == body
    assert popped["checksum"] == shown["checksum"]


@pytest.mark.parametrize(
    ("default", "maximum"),
    [
        ("DEFAULT_MESSAGE_TTL", "MAX_MESSAGE_TTL"),
        ("DEFAULT_MESSAGE_DELAY", "MAX_MESSAGE_DELAY"),
        ("DEFAULT_CLAIM_TTL", "MAX_CLAIM_TTL"),
        ("DEFAULT_CLAIM_GRACE", "MAX_CLAIM_GRACE"),
    ],
)
def test_a_default_past_its_maximum_is_refused_at_start(default: str, maximum: str) -> None:
    """Otherwise every request relying on the default would fail."""
    environ = {f"TIDINGS_TRANSPORT__{default}": "120", f"TIDINGS_TRANSPORT__{maximum}": "100"}
    with pytest.raises(ConfigError, match=f"{default.lower()} exceeds transport.{maximum.lower()}"):
        load_settings(environ=environ)


def test_a_worker_that_stops_answering_is_replaced(tmp_path: Path) -> None:
    """[server] worker_healthcheck_timeout reaches uvicorn's supervisor: a stopped
    worker (SIGSTOP: alive, but deaf to the health ping) is killed and replaced."""
    srv = TidingsServer(
        tmp_path, workers=2, env={"TIDINGS_SERVER__WORKER_HEALTHCHECK_TIMEOUT": "1"}
    )
    srv.start()
    try:
        workers = wait_until(lambda: len(pids := srv.worker_pids()) == 2 and pids, "workers")
        stopped = min(workers)
        os.kill(stopped, signal.SIGSTOP)
        wait_until(
            lambda: stopped not in srv.worker_pids() and len(srv.worker_pids()) == 2,
            "the stopped worker replaced",
        )
        with srv.client() as client:
            assert client.put("/queues/after").status_code == 201
    finally:
        srv.stop()
