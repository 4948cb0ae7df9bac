"""No subscriber or retry policy can exhaust the delivery engine (issue 7).

Real servers on every store deliver to real loopback listeners that misbehave: one
never answers (a tarpit), one answers a 1.5 GB body, one a gzip bomb, and a closed port
refuses everything. The server's RSS is sampled (psutil, the whole process tree) while
they do, retries are bounded by ``[notification] max_delivery_attempts`` (also for a
delivery whose worker is killed every time), and a second tenant's notification still
arrives promptly while the first tenant's tarpit holds its share of the slots.

Senders are also driven directly (no server) where the API refuses the input up front:
a subscription stored before a limit was lowered must still fail cleanly when sent.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests import notify_listeners
from tests.notify_listeners import SmtpSink, WebhookListener
from tests.outbox import dues
from tests.server import TidingsServer, client_headers, free_port, wait_until
from tidings.config import NotificationSettings, Settings
from tidings.model import Delivery, DeliveryKind
from tidings.notify.destinations import deny_list
from tidings.notify.senders import DeliveryError, EmailSender, WebhookSender

webhook_listener = notify_listeners.webhook_listener
smtp_sink = notify_listeners.smtp_sink

LOOPBACK_ALLOWED = {
    "TIDINGS_NOTIFICATION__SUBSCRIBER_DENY_NETWORKS": "[]",
    "TIDINGS_NOTIFICATION__POLL_INTERVAL": "0.1",
}
# Few, quick tries: a doomed delivery reaches the failures list in well under a second.
FEW_TRIES = {
    **LOOPBACK_ALLOWED,
    "TIDINGS_NOTIFICATION__MAX_DELIVERY_ATTEMPTS": "3",
    "TIDINGS_NOTIFICATION__MIN_RETRY_DELAY": "0.05",
}
# Far more memory than a bounded delivery needs, far less than reading what they send.
RSS_ALLOWANCE = 150 * 1024 * 1024
WAIT = 30.0


# --------------------------------------------------------------------------- helpers


class RssSampler:
    """The peak RSS of a process tree, sampled every 20 ms on a thread until stopped."""

    def __init__(self, pid: int) -> None:
        self._root = psutil.Process(pid)
        self.baseline = self._rss()
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        total = 0
        for process in [self._root, *self._root.children(recursive=True)]:
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return total

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


def subscribe(client: httpx.Client, queue: str, subscriber: str, **options: Any) -> str:
    resp = client.post(f"/queues/{queue}/subscriptions",
                       json={"subscriber": subscriber, "options": options})
    assert resp.status_code == 201, resp.text
    sid: str = resp.json()["subscription_id"]
    return sid


def post(client: httpx.Client, queue: str, count: int = 1) -> list[str]:
    resp = client.post(f"/queues/{queue}/messages",
                       json={"messages": [{"body": {"n": n}} for n in range(count)]})
    assert resp.status_code == 201, resp.text
    return [href.rsplit("/", 1)[1] for href in resp.json()["resources"]]


def wait_failures(client: httpx.Client, queue: str, sid: str, count: int = 1,
                  timeout: float = WAIT) -> list[dict[str, Any]]:
    def listed() -> list[dict[str, Any]]:
        resp = client.get(f"/queues/{queue}/subscriptions/{sid}/failures")
        assert resp.status_code == 200, resp.text
        found: list[dict[str, Any]] = resp.json()["failures"]
        return found if len(found) >= count else []

    return wait_until(listed, f"{count} failure(s) of {queue}/{sid}", timeout=timeout,
                      interval=0.1)


def warm_up(client: httpx.Client, listener: WebhookListener) -> None:
    """One ordinary delivery, so the baseline RSS includes the sender's machinery."""
    path = listener.new_path("warm")
    subscribe(client, "warm", listener.url(path))
    post(client, "warm")
    listener.wait_for(path, 1)


@pytest.fixture
def hostile_listener() -> Iterator[WebhookListener]:
    """A second listener (its own port, so its own host:port share of the slots)."""
    listener = WebhookListener().start()
    yield listener
    listener.stop()


# ---------------------------------------------------------------------- retry policy


RANGE = ("Invalid API request", "Retry policy: {} may not exceed {}.")
HUGE_POLICIES: list[tuple[dict[str, int], tuple[str, str]]] = [
    ({"retries_with_no_delay": 2147483648},
     (RANGE[0], RANGE[1].format("retries_with_no_delay", 1000))),
    ({"minimum_delay_retries": 2**63 - 1},
     (RANGE[0], RANGE[1].format("minimum_delay_retries", 1000))),
    ({"maximum_delay_retries": 100000},
     (RANGE[0], RANGE[1].format("maximum_delay_retries", 1000))),
    ({"maximum_delay": 2**62}, (RANGE[0], RANGE[1].format("maximum_delay", 86400))),
    ({"minimum_delay": 2**61, "maximum_delay": 2**62},
     (RANGE[0], RANGE[1].format("minimum_delay", 86400))),  # checked first
    # past int64: refused while decoding
    ({"minimum_delay_retries": 2**63},
     ("Invalid request body", "JSON contains integer that is too large.")),
]


def test_huge_retry_policies_are_refused(
    make_server: type[TidingsServer], tmp_path: Path
) -> None:
    srv = make_server(tmp_path, env=LOOPBACK_ALLOWED).start()
    with srv.client() as c:
        sid = subscribe(c, "q", "http://127.0.0.1:9/y")
        for policy, (title, description) in HUGE_POLICIES:
            for method, url, body in (
                ("POST", "/queues/q/subscriptions",
                 {"subscriber": "http://127.0.0.1:9/x", "options": {"_retry_policy": policy}}),
                ("PATCH", f"/queues/q/subscriptions/{sid}",
                 {"options": {"_retry_policy": policy}}),
                ("PUT", "/queues/q2", {"_retry_policy": policy}),
            ):
                resp = c.request(method, url, json=body)
                assert resp.status_code == 400, (method, policy, resp.text)
                assert resp.json() == {"title": title, "description": description}, method


def test_subscription_ttl_past_int32_is_stored(
    make_server: type[TidingsServer], tmp_path: Path
) -> None:
    """Zaqar's only bound is an expiry before the year 9999 (PostgreSQL once broke)."""
    srv = make_server(tmp_path, env=LOOPBACK_ALLOWED).start()
    ttl = 2**31 + 7
    with srv.client() as c:
        resp = c.post("/queues/q/subscriptions",
                      json={"subscriber": "http://127.0.0.1:9/long", "ttl": ttl})
        assert resp.status_code == 201, resp.text
        sid = resp.json()["subscription_id"]
        assert c.get(f"/queues/q/subscriptions/{sid}").json()["ttl"] == ttl
        resp = c.patch(f"/queues/q/subscriptions/{sid}", json={"ttl": ttl + 1})
        assert resp.status_code == 204, resp.text
        assert c.get(f"/queues/q/subscriptions/{sid}").json()["ttl"] == ttl + 1
        assert c.get("/queues/q/subscriptions").status_code == 200  # connections still fine


def test_largest_policy_to_a_closed_port_is_bounded(
    make_server: type[TidingsServer], tmp_path: Path, webhook_listener: WebhookListener
) -> None:
    srv = make_server(tmp_path, env=FEW_TRIES).start()
    closed = f"http://127.0.0.1:{free_port()}/nobody"
    policy = {"retries_with_no_delay": 1000, "minimum_delay_retries": 1000,
              "maximum_delay_retries": 1000, "minimum_delay": 1, "maximum_delay": 86400}
    with srv.client() as c:
        warm_up(c, webhook_listener)
        with RssSampler(srv.pid) as rss:
            sid = subscribe(c, "doomed", closed, _retry_policy=policy)
            post(c, "doomed", 20)
            found = wait_failures(c, "doomed", sid, 20)
    assert {f["attempts"] for f in found} == {3}  # max_delivery_attempts, not 3001
    assert all("Connect" in f["error"] for f in found), found[0]["error"]
    assert rss.growth < RSS_ALLOWANCE, rss.growth


def test_immediate_retries_wait_the_floor(
    make_server: type[TidingsServer], tmp_path: Path, webhook_listener: WebhookListener
) -> None:
    """An "immediate" retry is scheduled min_retry_delay later: here an hour, so a due
    time past the lease (60 s) can only be the floor's."""
    floor = 3600.0
    env = {**LOOPBACK_ALLOWED, "TIDINGS_NOTIFICATION__MIN_RETRY_DELAY": str(floor)}
    srv = make_server(tmp_path, env=env).start()
    path = webhook_listener.new_path()
    webhook_listener.fail(path, times=None, status=503)
    with srv.client() as c:
        project = str(c.headers["X-Project-ID"])
        sid = subscribe(c, "floor", webhook_listener.url(path),
                        _retry_policy={"retries_with_no_delay": 1000})
        posted = time.time()
        post(c, "floor")
        webhook_listener.wait_for(path, 1)
        (due,) = wait_until(
            lambda: [d for d in dues(srv.store_uri, project, "floor") if d >= posted + floor],
            "the retry to be scheduled at the floor",
        )
        # scheduled after the first attempt's answer, so not before the floor from then
        assert due >= webhook_listener.requests(path)[0].wall + floor
        assert len(webhook_listener.requests(path)) == 1  # and not tried again meanwhile
        resp = c.get(f"/queues/floor/subscriptions/{sid}/failures")
        assert resp.json()["failures"] == []


# ------------------------------------------------------------------ poison pills


def test_a_delivery_that_kills_its_worker_goes_to_failures(
    make_server: type[TidingsServer], tmp_path: Path, webhook_listener: WebhookListener
) -> None:
    """The worker dies mid-delivery every time: each lost lease counts as a try."""
    env = {**LOOPBACK_ALLOWED, "TIDINGS_NOTIFICATION__LEASE": "2",
           "TIDINGS_NOTIFICATION__MAX_DELIVERY_ATTEMPTS": "2",
           "TIDINGS_NOTIFICATION__DELIVERY_TIMEOUT": "60"}
    srv = make_server(tmp_path, env=env).start()
    path = webhook_listener.new_path("pill")
    webhook_listener.tarpit(path)  # the delivery hangs: the worker is killed meanwhile
    headers = client_headers()
    with httpx.Client(base_url=srv.url + "/v2", headers=headers, timeout=10) as c:
        sid = subscribe(c, "pill", webhook_listener.url(path))
        post(c, "pill")
    for attempt in (1, 2):
        webhook_listener.wait_for(path, attempt)
        srv.kill()
        srv.start()
    with httpx.Client(base_url=srv.url + "/v2", headers=headers, timeout=10) as c:
        (failure,) = wait_failures(c, "pill", sid)
    assert failure["attempts"] == 2
    assert "without an outcome" in failure["error"]
    assert len(webhook_listener.requests(path)) == 2  # not tried a third time


# ------------------------------------------------------------- webhook answers


@pytest.mark.parametrize("answer", ["huge", "gzip-bomb"])
def test_huge_or_compressed_answers_are_not_read(
    make_server: type[TidingsServer],
    tmp_path: Path,
    webhook_listener: WebhookListener,
    hostile_listener: WebhookListener,
    answer: str,
) -> None:
    srv = make_server(tmp_path, env=LOOPBACK_ALLOWED).start()
    path = hostile_listener.new_path(answer)
    if answer == "huge":
        hostile_listener.huge(path)
    else:
        hostile_listener.gzip_bomb(path)
    with srv.client() as c:
        warm_up(c, webhook_listener)
        with RssSampler(srv.pid) as rss:
            sid = subscribe(c, "big", hostile_listener.url(path))
            ids = post(c, "big", 8)
            records = hostile_listener.wait_for(path, 8)
            # Answered 200: delivered once each, not failed, not retried.
            later = webhook_listener.new_path("after")
            subscribe(c, "after", webhook_listener.url(later))
            post(c, "after")
            webhook_listener.wait_for(later, 1)
        resp = c.get(f"/queues/big/subscriptions/{sid}/failures")
        assert resp.json()["failures"] == []
    assert sorted(r.json()["message_id"] for r in records) == sorted(ids)
    assert rss.growth < RSS_ALLOWANCE, rss.growth


# ------------------------------------------------------------------------ fairness


def test_a_tarpit_tenant_does_not_delay_another(
    make_server: type[TidingsServer],
    tmp_path: Path,
    webhook_listener: WebhookListener,
    hostile_listener: WebhookListener,
) -> None:
    # Without per-project shares the tarpit would hold all 10 slots for 60 s.
    env = {**LOOPBACK_ALLOWED, "TIDINGS_NOTIFICATION__DELIVERY_TIMEOUT": "60"}
    srv = make_server(tmp_path, env=env).start()
    tarpits = [hostile_listener.new_path(f"tarpit{n}") for n in range(3)]
    for path in tarpits:
        hostile_listener.tarpit(path)
    with srv.client() as hostile, srv.client() as normal:
        for path in tarpits:
            subscribe(hostile, "flood", hostile_listener.url(path))
        post(hostile, "flood", 20)  # 60 deliveries owed to tarpits
        wait_until(lambda: hostile_listener.held() >= 4, "the tarpits to hold 4 deliveries",
                   timeout=WAIT)
        assert len(hostile_listener.requests()) == 4  # its share, held

        path = webhook_listener.new_path("normal")
        subscribe(normal, "orders", webhook_listener.url(path))
        (mid,) = post(normal, "orders")
        (record,) = webhook_listener.wait_for(path, 1, timeout=WAIT)
        # Delivered while the tarpits still held all four connections (none has timed out
        # and none was retried): it waited for no slot of theirs to free.
        assert hostile_listener.held() == 4
    assert record.json()["message_id"] == mid
    assert len(hostile_listener.requests()) == 4  # the tarpit still holds only its share


def test_queues_and_topics_of_one_project_share_one_share(
    make_server: type[TidingsServer],
    tmp_path: Path,
    webhook_listener: WebhookListener,
    hostile_listener: WebhookListener,
) -> None:
    """Tarpits on two hosts, one fed by a queue and one by a topic of the same project:
    together they hold the project's share (4), not a share each."""
    env = {**LOOPBACK_ALLOWED, "TIDINGS_NOTIFICATION__DELIVERY_TIMEOUT": "60"}
    srv = make_server(tmp_path, env=env).start()
    queue_trap, topic_trap = hostile_listener.new_path("qtrap"), webhook_listener.new_path("ttrap")
    hostile_listener.tarpit(queue_trap)
    webhook_listener.tarpit(topic_trap)
    normal_listener = WebhookListener().start()
    try:
        with srv.client() as hostile, srv.client() as normal:
            subscribe(hostile, "flood", hostile_listener.url(queue_trap))
            resp = hostile.post(
                "/topics/flood/subscriptions",
                json={"subscriber": webhook_listener.url(topic_trap)},
            )
            assert resp.status_code == 201, resp.text
            post(hostile, "flood", 10)
            resp = hostile.post(
                "/topics/flood/messages", json={"messages": [{"body": n} for n in range(10)]}
            )
            assert resp.status_code == 201, resp.text

            def held() -> int:
                return len(hostile_listener.requests(queue_trap)) + len(
                    webhook_listener.requests(topic_trap)
                )

            wait_until(lambda: held() >= 4, "the traps to hold the project's share",
                       timeout=WAIT)
            assert held() == 4
            # Rounds go on meanwhile: another project's delivery comes through...
            path = normal_listener.new_path("normal")
            subscribe(normal, "orders", normal_listener.url(path))
            post(normal, "orders")
            normal_listener.wait_for(path, 1, timeout=WAIT)
            assert held() == 4  # ...and the flooding project still holds only its share
    finally:
        normal_listener.stop()


def test_concurrent_posts_of_one_project_all_deliver(
    make_server: type[TidingsServer], tmp_path: Path, webhook_listener: WebhookListener
) -> None:
    """Posts, takes and retries of one project update its outbox score concurrently:
    none fails, none is lost."""
    srv = make_server(tmp_path, env=LOOPBACK_ALLOWED).start()
    paths = [webhook_listener.new_path(f"c{n}") for n in range(2)]
    webhook_listener.fail(paths[1], times=20, status=503)  # retries re-due deliveries too
    headers = client_headers()
    with httpx.Client(base_url=srv.url + "/v2", headers=headers, timeout=10) as c:
        for path in paths:
            subscribe(c, "busy", webhook_listener.url(path),
                      _retry_policy={"minimum_delay": 1, "maximum_delay": 11})

    async def post_all() -> list[int]:
        limits = httpx.Limits(max_connections=16)
        async with httpx.AsyncClient(base_url=srv.url + "/v2", headers=headers,
                                     timeout=30, limits=limits) as client:
            answers = await asyncio.gather(*(
                client.post("/queues/busy/messages", json={"messages": [{"body": n}]})
                for n in range(120)
            ))
        return [a.status_code for a in answers]

    assert set(asyncio.run(post_all())) == {201}
    for path in paths:
        delivered = webhook_listener.wait_for(path, 120, where=lambda r: r.answered == "204")
        assert len({r.json()["message_id"] for r in delivered}) == 120


# --------------------------------------------------------- limits changed or DNS moved


def test_connect_time_check_refuses_a_now_denied_address(
    make_server: type[TidingsServer], tmp_path: Path, webhook_listener: WebhookListener
) -> None:
    """Accepted while loopback was allowed; by delivery time it is denied (as if its DNS
    had moved): the delivery fails for good, and nothing reaches the listener."""
    srv = make_server(tmp_path, env={**LOOPBACK_ALLOWED, "TIDINGS_NOTIFICATION__LEASE": "1"})
    srv.start()
    path = webhook_listener.new_path("moved")
    headers = client_headers()
    with httpx.Client(base_url=srv.url + "/v2", headers=headers, timeout=10) as c:
        sid = subscribe(c, "moved", f"http://localhost:{webhook_listener.port}{path}")
        literal = subscribe(c, "moved", webhook_listener.url(path))
    srv.stop()
    del srv.env["TIDINGS_NOTIFICATION__SUBSCRIBER_DENY_NETWORKS"]  # back to the default
    srv.start()
    with httpx.Client(base_url=srv.url + "/v2", headers=headers, timeout=10) as c:
        post(c, "moved")
        for subscription in (sid, literal):
            (failure,) = wait_failures(c, "moved", subscription)
            assert failure["attempts"] == 1, failure
            assert "subscriber_deny_networks" in failure["error"], failure["error"]
    assert webhook_listener.requests(path) == []


def test_post_data_stored_past_the_limits_fails_at_send(
    make_server: type[TidingsServer], tmp_path: Path, webhook_listener: WebhookListener
) -> None:
    env = {**LOOPBACK_ALLOWED, "TIDINGS_NOTIFICATION__MAX_POST_DATA_PLACEHOLDERS": "1000"}
    srv = make_server(tmp_path, env=env).start()
    path = webhook_listener.new_path("expand")
    headers = client_headers()
    template = "[" + ",".join(['"$zaqar_message$"'] * 1000) + "]"
    with httpx.Client(base_url=srv.url + "/v2", headers=headers, timeout=10) as c:
        sid = subscribe(c, "expand", webhook_listener.url(path), post_data=template)
    srv.stop()
    del srv.env["TIDINGS_NOTIFICATION__MAX_POST_DATA_PLACEHOLDERS"]  # back to 4
    srv.start()
    with httpx.Client(base_url=srv.url + "/v2", headers=headers, timeout=10) as c:
        post(c, "expand")
        (failure,) = wait_failures(c, "expand", sid)
    assert failure["attempts"] == 1
    assert "max_post_data_placeholders" in failure["error"]
    assert webhook_listener.requests(path) == []


# ------------------------------------------------------------ senders, driven directly


def delivery(subscriber: str, **options: Any) -> Delivery:
    return Delivery(
        id="1", project="p", source="q", subscription_id=str(uuid.uuid4()),
        kind=DeliveryKind.NOTIFICATION, message_id=str(uuid.uuid4()), payload=b'{"a": 1}',
        ttl=60, delay=0, attempts=1, subscriber=subscriber, options=options,
    )


@pytest.mark.parametrize(
    ("subscriber", "options", "reason"),
    [
        ("mailto:a@example.com?subject=hi%0D%0ABcc:%20x@evil.example", {}, "line break"),
        ("mailto:a@example.com", {"subject": "hi\r\nBcc: x@evil.example"}, "line break"),
        ("mailto:a@example.com", {"from": "me@example.com\nBcc: x@evil.example"},
         "line break"),
        ("mailto:a@example.com,b@example.com", {}, "more than one recipient"),
        ("mailto:a@example.com%2Cb@example.com", {}, "more than one recipient"),
    ],
)
def test_email_header_injection_fails_for_good(
    smtp_sink: SmtpSink, subscriber: str, options: dict[str, Any], reason: str
) -> None:
    settings = NotificationSettings(smtp_mode="self_local", smtp_host="127.0.0.1",
                                    smtp_port=smtp_sink.port, smtp_security="none")
    with pytest.raises(DeliveryError) as failed:
        asyncio.run(EmailSender(settings).send(delivery(subscriber, **options)))
    assert not failed.value.retryable
    assert reason in str(failed.value)
    assert smtp_sink.mails() == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_webhook_sender_refuses_denied_addresses_when_connecting(
    webhook_listener: WebhookListener, host: str
) -> None:
    deny = deny_list(Settings())  # loopback and link-local denied
    path = webhook_listener.new_path("denied")

    async def send() -> None:
        sender = WebhookSender(NotificationSettings(), deny=deny)
        try:
            await sender.send(delivery(f"http://{host}:{webhook_listener.port}{path}"))
        finally:
            await sender.close()

    with pytest.raises(DeliveryError) as failed:
        asyncio.run(send())
    assert not failed.value.retryable
    assert "subscriber_deny_networks" in str(failed.value)
    assert webhook_listener.requests(path) == []
