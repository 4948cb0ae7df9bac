"""Long polling over HTTP (``?wait=N`` on claims and listings, ``tidings.ops.waiting``),
against real servers on every store.

A test knows a request is waiting (its first try found nothing, its feed watch is open)
from the server's own debug log line for its queue; queue names are unique per test.
Deadlines are short where a test runs into them; no test asserts on speed.
"""

from __future__ import annotations

import re
import socket
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.backends import StoreNamespace
from tests.server import TidingsServer, wait_until

# A wait no test should run into unless it means to (the herd's waiters keep waiting).
LONG = 20
SETTINGS = {
    "TIDINGS_SERVER__LOG_LEVEL": "debug",
    "TIDINGS_TRANSPORT__MAX_WAITING_REQUESTS_PER_PROJECT": "8",
}


def start(
    store_kind: str, data_dir: Path, workers: int = 1, **env: str
) -> tuple[TidingsServer, StoreNamespace]:
    namespace = StoreNamespace(store_kind, data_dir)
    srv = TidingsServer(
        data_dir, env={**SETTINGS, **env}, workers=workers, store_uri=namespace.uri
    )
    srv.start()
    return srv, namespace


@pytest.fixture(scope="module")
def poller(store_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TidingsServer]:
    srv, namespace = start(store_kind, tmp_path_factory.mktemp(f"longpoll-{store_kind}"))
    yield srv
    srv.stop()
    namespace.drop()


class Log:
    """The server's log, read for the waiting module's lines about one queue."""

    def __init__(self, server: TidingsServer, queue: str) -> None:
        self.path = server.log_path
        self.queue = queue

    def count(self, what: str) -> int:
        text = self.path.read_text(errors="replace")
        return len(re.findall(rf"long poll on '{re.escape(self.queue)}' {what}", text))

    def wait_for(self, what: str, count: int = 1) -> None:
        wait_until(lambda: self.count(what) >= count, f"{count} x {what!r} for {self.queue}")


def name() -> str:
    return f"lp-{uuid.uuid4().hex[:10]}"


_opened: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _opened:
        _opened.pop().close()


def clients(server: TidingsServer, count: int, project: str | None = None) -> list[httpx.Client]:
    """Clients of one project, each its own connection and Client-ID (closed after the
    test)."""
    project = project or f"lp-{uuid.uuid4().hex[:12]}"
    made = [server.client(project=project) for _ in range(count)]
    _opened.extend(made)
    return made


def post(client: httpx.Client, source: str, *bodies: Any) -> list[str]:
    resp = client.post(f"/{source}/messages", json={"messages": [{"body": b} for b in bodies]})
    assert resp.status_code == 201, resp.text
    return [href.rsplit("/", 1)[1] for href in resp.json()["resources"]]


def claim(client: httpx.Client, queue: str, wait: float | str, **params: Any) -> httpx.Response:
    return client.post(
        f"/queues/{queue}/claims", params={"wait": wait, **params}, json={"ttl": 60}
    )


def claimed_ids(resp: httpx.Response) -> list[str]:
    assert resp.status_code == 201, resp.text
    return [m["id"] for m in resp.json()["messages"]]


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=8) as executor:
        yield executor


def in_background(pool: ThreadPoolExecutor, call: Callable[[], httpx.Response]) -> Future[Any]:
    return pool.submit(call)


# --- waking ---------------------------------------------------------------------------


def test_a_waiting_claim_gets_a_message_posted_later(
    poller: TidingsServer, pool: ThreadPoolExecutor
) -> None:
    waiter, producer = clients(poller, 2)
    queue = name()
    log = Log(poller, queue)
    pending = in_background(pool, lambda: claim(waiter, queue, LONG))
    log.wait_for("waiting")
    (posted,) = post(producer, f"queues/{queue}", {"n": 1})
    resp = pending.result(timeout=LONG + 10)
    assert claimed_ids(resp) == [posted]
    assert resp.json()["messages"][0]["body"] == {"n": 1}
    assert resp.headers["location"].startswith(f"/v2/queues/{queue}/claims/")
    log.wait_for("ended: got messages")


@pytest.mark.parametrize("collection", ["queues", "topics"])
def test_a_waiting_listing_gets_a_message_posted_later(
    poller: TidingsServer, pool: ThreadPoolExecutor, collection: str
) -> None:
    # Topics live in a namespace of their own: the waiter must watch what posts signal.
    waiter, producer = clients(poller, 2)
    source = name()
    log = Log(poller, source)
    pending = in_background(
        pool, lambda: waiter.get(f"/{collection}/{source}/messages", params={"wait": LONG})
    )
    log.wait_for("waiting")
    (posted,) = post(producer, f"{collection}/{source}", "hello")
    resp = pending.result(timeout=LONG + 10)
    assert resp.status_code == 200, resp.text
    assert [m["id"] for m in resp.json()["messages"]] == [posted]
    assert resp.json()["links"][0]["rel"] == "next"


def test_every_waiting_listing_sees_the_message(
    poller: TidingsServer, pool: ThreadPoolExecutor
) -> None:
    # Listing takes nothing: unlike claims, each waiting listing answers with it.
    *waiters, producer = clients(poller, 4)
    queue = name()
    log = Log(poller, queue)
    pending = [
        in_background(pool, lambda c=c: c.get(f"/queues/{queue}/messages", params={"wait": LONG}))
        for c in waiters
    ]
    log.wait_for("waiting", len(waiters))
    (posted,) = post(producer, f"queues/{queue}", "all")
    for future in pending:
        resp = future.result(timeout=LONG + 10)
        assert [m["id"] for m in resp.json()["messages"]] == [posted]


def test_a_waiting_claim_gets_a_released_message(
    poller: TidingsServer, pool: ThreadPoolExecutor
) -> None:
    first, waiter = clients(poller, 2)
    queue = name()
    log = Log(poller, queue)
    (posted,) = post(first, f"queues/{queue}", "x")
    held = first.post(f"/queues/{queue}/claims", json={"ttl": 60})
    assert claimed_ids(held) == [posted]
    pending = in_background(pool, lambda: claim(waiter, queue, LONG))
    log.wait_for("waiting")
    assert first.delete(held.headers["location"].removeprefix("/v2")).status_code == 204
    assert claimed_ids(pending.result(timeout=LONG + 10)) == [posted]


def test_a_waiting_claim_gets_a_delayed_message_when_its_delay_ends(
    poller: TidingsServer,
) -> None:
    # No signal marks the end of a delay: the waiter's timer (from next_ready) does.
    (client,) = clients(poller, 1)
    queue = name()
    created = client.put(f"/queues/{queue}", json={"_default_message_delay": 1})
    assert created.status_code == 201, created.text
    (posted,) = post(client, f"queues/{queue}", "later")
    resp = claim(client, queue, LONG)
    assert claimed_ids(resp) == [posted]
    log = Log(poller, queue)
    assert log.count("waiting") == 1  # its first try found nothing: it waited


# --- deadlines, bad values, the unchanged default ------------------------------------


def test_the_deadline_gives_zaqars_empty_answers(poller: TidingsServer) -> None:
    (client,) = clients(poller, 1)
    queue = name()
    resp = claim(client, queue, 0.3)
    assert resp.status_code == 204 and resp.content == b""
    listed = client.get(f"/queues/{queue}/messages", params={"wait": "0.3"})
    assert listed.status_code == 200
    assert listed.json() == client.get(f"/queues/{queue}/messages").json()
    assert listed.json() == {"messages": [], "links": []}
    Log(poller, queue).wait_for("ended: deadline", 2)


@pytest.mark.parametrize(
    "value", ["abc", "0", "0.0", "-1", "20.5", "21", "1e1", "nan", "inf", " 5", "0x10", "1_0"]
)
def test_bad_wait_values_are_refused(poller: TidingsServer, value: str) -> None:
    (client,) = clients(poller, 1)
    queue = name()
    for resp in (
        claim(client, queue, value),
        client.get(f"/queues/{queue}/messages", params={"wait": value}),
        client.get(f"/topics/{queue}/messages", params={"wait": value}),
    ):
        assert resp.status_code == 400, resp.text
        body = resp.json()
        assert body["title"] == "Invalid parameter"
        assert '"wait"' in body["description"], body


def test_decimal_and_edge_waits_are_accepted(poller: TidingsServer) -> None:
    (client,) = clients(poller, 1)
    queue = name()
    values = ("20", "20.0", "0.25", ".5", "3.")
    post(client, f"queues/{queue}", *range(len(values)))
    for value in values:
        assert claim(client, queue, value, limit=1).status_code == 201


def test_a_claim_without_wait_answers_at_once(poller: TidingsServer) -> None:
    (client,) = clients(poller, 1)
    queue = name()
    assert client.post(f"/queues/{queue}/claims", json={}).status_code == 204
    assert Log(poller, queue).count("") == 0  # never went near the waiting rule


# --- the herd -------------------------------------------------------------------------


def test_one_message_wakes_one_of_many_waiting_claims(
    poller: TidingsServer, pool: ThreadPoolExecutor
) -> None:
    *waiters, producer = clients(poller, 5)
    queue = name()
    log = Log(poller, queue)
    # One message per claim, so that each later message is one waiter's.
    pending = [in_background(pool, lambda c=c: claim(c, queue, LONG, limit=1)) for c in waiters]
    log.wait_for("waiting", len(waiters))
    (first,) = post(producer, f"queues/{queue}", 0)
    done = wait_until(lambda: [f for f in pending if f.done()], "one waiter to get it")
    assert len(done) == 1 and claimed_ids(done[0].result()) == [first]
    # The others still wait (an early empty answer would show as a 204 below): each
    # gets one of the next messages, and no message goes to two of them.
    rest = post(producer, f"queues/{queue}", *range(1, len(waiters)))
    got = [claimed_ids(f.result(timeout=LONG + 10)) for f in pending if f is not done[0]]
    assert sorted(i for ids in got for i in ids) == sorted(rest)


def test_waiters_past_the_deadline_answer_empty_while_one_got_the_message(
    poller: TidingsServer, pool: ThreadPoolExecutor
) -> None:
    *waiters, producer = clients(poller, 4)
    queue = name()
    log = Log(poller, queue)
    pending = [in_background(pool, lambda c=c: claim(c, queue, 2)) for c in waiters]
    log.wait_for("waiting", len(waiters))
    post(producer, f"queues/{queue}", "only")
    statuses = sorted(f.result(timeout=LONG).status_code for f in pending)
    # Unless a waiter's deadline passed before the post landed (a stalled machine).
    if log.count("ended: deadline") < len(waiters):
        assert statuses == [201] + [204] * (len(waiters) - 1)


# --- the caller goes away ------------------------------------------------------------


def raw_request(server: TidingsServer, head: str, body: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=LONG)
    sock.sendall(head.encode() + body)
    return sock


def test_a_client_that_disconnects_stops_waiting(poller: TidingsServer) -> None:
    (client,) = clients(poller, 1)
    queue = name()
    log = Log(poller, queue)
    headers = "".join(f"{k}: {v}\r\n" for k, v in client.headers.items() if k.lower() in
                      ("client-id", "x-project-id"))
    body = b'{"ttl": 60}'
    sock = raw_request(
        poller,
        f"POST /v2/queues/{queue}/claims?wait={LONG} HTTP/1.1\r\nHost: x\r\n{headers}"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n",
        body,
    )
    log.wait_for("waiting")
    sock.close()
    log.wait_for("ended: cancelled")
    # Nobody waits any more: the message stays for the next claimer.
    (posted,) = post(client, f"queues/{queue}", "kept")
    assert claimed_ids(client.post(f"/queues/{queue}/claims", json={})) == [posted]


def test_a_listing_client_that_disconnects_stops_waiting(poller: TidingsServer) -> None:
    (client,) = clients(poller, 1)
    queue = name()
    log = Log(poller, queue)
    headers = "".join(f"{k}: {v}\r\n" for k, v in client.headers.items() if k.lower() in
                      ("client-id", "x-project-id"))
    sock = raw_request(
        poller, f"GET /v2/queues/{queue}/messages?wait={LONG} HTTP/1.1\r\nHost: x\r\n{headers}\r\n"
    )
    log.wait_for("waiting")
    sock.close()
    log.wait_for("ended: cancelled")


# --- bounds ---------------------------------------------------------------------------


def test_past_the_project_share_a_request_is_answered_without_waiting(
    store_kind: str, tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    srv, namespace = start(
        store_kind, tmp_path, TIDINGS_TRANSPORT__MAX_WAITING_REQUESTS_PER_PROJECT="1"
    )
    try:
        first, second, producer = clients(srv, 3)
        (other,) = clients(srv, 1)
        queue = name()
        log = Log(srv, queue)
        pending = in_background(pool, lambda: claim(first, queue, LONG))
        log.wait_for("waiting")
        # Same project, over its share: answered at once (204) instead of waiting.
        assert claim(second, queue, LONG).status_code == 204
        assert log.count("answered without waiting") == 1
        # Another project has a share of its own.
        other_pending = in_background(pool, lambda: claim(other, queue, LONG))
        log.wait_for("waiting", 2)
        (posted,) = post(producer, f"queues/{queue}", "x")
        assert claimed_ids(pending.result(timeout=LONG + 10)) == [posted]
        other.post(f"/queues/{queue}/messages", json={"messages": [{"body": 1}]})
        assert other_pending.result(timeout=LONG + 10).status_code == 201
    finally:
        srv.stop()
        namespace.drop()


def test_the_servers_own_timeouts_do_not_cut_a_wait(
    store_kind: str, tmp_path: Path
) -> None:
    srv, namespace = start(
        store_kind,
        tmp_path,
        TIDINGS_SERVER__HEADER_TIMEOUT="0.5",
        TIDINGS_SERVER__BODY_TIMEOUT="0.5",
        TIDINGS_SERVER__KEEPALIVE_TIMEOUT="0.5",
    )
    try:
        (client,) = clients(srv, 1)
        queue = name()
        resp = claim(client, queue, 2)
        assert resp.status_code == 204
        Log(srv, queue).wait_for("ended: deadline")
        # The same connection goes on serving.
        assert client.get(f"/queues/{queue}/stats").status_code == 200
    finally:
        srv.stop()
        namespace.drop()


def test_a_stopping_server_answers_its_waiters_at_once(
    store_kind: str, tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    # Not at their deadline: a graceful stop (a restart, a deploy) would wait that long.
    srv, namespace = start(store_kind, tmp_path)
    try:
        (client,) = clients(srv, 1)
        queue = name()
        log = Log(srv, queue)
        pending = in_background(pool, lambda: claim(client, queue, LONG))
        log.wait_for("waiting")
        srv.stop()
        assert pending.result(timeout=LONG + 10).status_code == 204
        assert log.count("ended: server stopping") == 1
    finally:
        srv.stop()
        namespace.drop()


# --- several workers ------------------------------------------------------------------


def test_waiters_on_two_workers_all_get_messages(
    store_kind: str, tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    srv, namespace = start(store_kind, tmp_path, workers=2)
    try:
        *waiters, producer = clients(srv, 5)
        queue = name()
        log = Log(srv, queue)
        pending = [
            in_background(pool, lambda c=c: claim(c, queue, LONG, limit=1)) for c in waiters
        ]
        log.wait_for("waiting", len(waiters))
        posted = post(producer, f"queues/{queue}", *range(len(waiters)))
        got = [claimed_ids(f.result(timeout=LONG + 10)) for f in pending]
        assert sorted(i for ids in got for i in ids) == sorted(posted)
    finally:
        srv.stop()
        namespace.drop()


# --- pooled mode ----------------------------------------------------------------------


def test_pooled_waiters_get_messages(
    store_kind: str, tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    # The store as the virtual pool of a pooled node: a queue no node has placed yet is
    # watched in every pool, a placed one in its own.
    srv, namespace = start(
        store_kind,
        tmp_path,
        TIDINGS_POOLING="true",
        TIDINGS_POOLING_CATALOG__ENABLE_VIRTUAL_POOL="true",
        TIDINGS_DRIVERS__MANAGEMENT_STORE=f"sqlite:///{tmp_path / 'management.db'}",
    )
    try:
        waiter, producer = clients(srv, 2)
        queue = name()
        log = Log(srv, queue)
        for round_ in (1, 2):
            pending = in_background(pool, lambda: claim(waiter, queue, LONG))
            log.wait_for("waiting", round_)
            (posted,) = post(producer, f"queues/{queue}", round_)
            assert claimed_ids(pending.result(timeout=LONG + 10)) == [posted]
    finally:
        srv.stop()
        namespace.drop()
