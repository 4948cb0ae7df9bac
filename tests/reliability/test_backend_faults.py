"""A backend that fails: bounded 503s, recovery without a restart, nothing acknowledged lost.

Each test runs its own Redis or PostgreSQL (tests/instances.py) so that stopping and
crashing it disturbs nobody else, and a real Tidings server over it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.instances import PostgresInstance, RedisInstance
from tests.server import TidingsServer, client_headers

OPERATION_TIMEOUT = 2.0
# A failing request must be answered within the backend bound plus HTTP slack: clients
# wait this long for an answer, and one that does not come is a transport error (599).
ANSWER_BOUND = OPERATION_TIMEOUT + 3.0
# 503s per poster (counted together) before the backend comes back: the outage is felt.
OUTAGE_503S = 20
UNAVAILABLE = "Service temporarily unavailable"
POSTERS = 3


class PostingLoad:
    """Threads posting one message per request, recording every answer."""

    def __init__(self, server: TidingsServer, queue: str = "faults") -> None:
        self.url = f"{server.url}/v2/queues/{queue}/messages"
        self.headers = {**client_headers(project=f"p-{uuid.uuid4().hex[:8]}"),
                        "Content-Type": "application/json"}
        self.project_headers = self.headers
        self.acked: list[str] = []
        self.statuses: Counter[int] = Counter()
        self.bad_bodies: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(n,)) for n in range(POSTERS)]

    def start(self) -> PostingLoad:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def acks(self) -> int:
        with self._lock:
            return len(self.acked)

    def _run(self, n: int) -> None:
        with httpx.Client(headers=self.headers, timeout=ANSWER_BOUND) as client:
            sent = 0
            while not self._stop.is_set() and sent < 100_000:
                sent += 1
                try:
                    answer = client.post(
                        self.url, json={"messages": [{"body": {"n": n, "i": sent}}]}
                    )
                except httpx.HTTPError as exc:  # no answer in time, or a dropped connection
                    self._record(599, f"transport error: {exc!r}")
                    continue
                self._record(answer.status_code, answer.text)
                if answer.status_code == 201:
                    with self._lock:
                        self.acked.extend(h.rsplit("/", 1)[1] for h in answer.json()["resources"])
                elif answer.status_code == 503:
                    time.sleep(0.05)

    def _record(self, status: int, text: str) -> None:
        with self._lock:
            self.statuses[status] += 1
            if status != 201 and (status != 503 or UNAVAILABLE not in text):
                self.bad_bodies.append(f"{status}: {text[:200]}")


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {seconds}s waiting for {what}")


def missing_acked(server: TidingsServer, load: PostingLoad) -> list[str]:
    """Acknowledged ids the server cannot return now."""
    missing: list[str] = []
    with httpx.Client(headers=load.headers, timeout=30.0) as client:
        for start in range(0, len(load.acked), 20):
            chunk = load.acked[start : start + 20]
            answer = client.get(load.url, params={"ids": ",".join(chunk)})
            found = set()
            if answer.status_code == 200:
                found = {m["id"] for m in answer.json()["messages"]}
            missing.extend(i for i in chunk if i not in found)
    return missing


def outage(
    server: TidingsServer, take_down: Callable[[], None], bring_back: Callable[[], None]
) -> PostingLoad:
    """Post under load, take the backend down for a while, bring it back, stop."""
    load = PostingLoad(server).start()
    try:
        wait_for(lambda: load.acks() >= 100, 60, "acknowledged posts before the fault")
        take_down()
        failures_before = load.statuses[503]
        wait_for(lambda: load.statuses[503] >= failures_before + OUTAGE_503S * POSTERS, 30,
                 "503s during the outage")
        bring_back()
        recovered_from = load.acks()
        wait_for(lambda: load.acks() >= recovered_from + 100, 60, "recovery without a restart")
    finally:
        load.stop()
    return load


def assert_clean_outage(server: TidingsServer, load: PostingLoad) -> None:
    # every request answered within ANSWER_BOUND (else 599), with a 201 or a clean 503
    assert set(load.statuses) <= {201, 503}, (load.statuses, load.bad_bodies[:5])
    assert not load.bad_bodies, load.bad_bodies[:5]
    assert missing_acked(server, load) == []
    assert "Traceback" not in server.log(), server.log()


def tidings_over(data_dir: Path, store_uri: str, **env: str) -> TidingsServer:
    settings = {"TIDINGS_STORAGE__OPERATION_TIMEOUT": str(OPERATION_TIMEOUT),
                "TIDINGS_ADMIN_MODE": "true", **env}
    return TidingsServer(data_dir, env=settings, store_uri=store_uri)


@pytest.fixture
def postgres() -> Iterator[PostgresInstance]:
    instance = PostgresInstance().init().start()
    yield instance
    instance.remove()


def post_one(client: httpx.Client, body: int) -> int:
    return client.post("/queues/q/messages", json={"messages": [{"body": body}]}).status_code


def health(server: TidingsServer) -> dict[str, object]:
    headers = {**client_headers(), "X-Roles": "admin"}
    answer = httpx.get(f"{server.url}/v2/health", headers=headers, timeout=30.0)
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()
    return body


def test_redis_outage_with_aof_loses_nothing(tmp_path: Path) -> None:
    redis = RedisInstance(tmp_path / "redis", appendonly=True, appendfsync="always").start()
    server = tidings_over(tmp_path / "tidings", f"{redis.url}?prefix=f").start()
    try:
        load = outage(server, redis.kill, redis.start)
        assert_clean_outage(server, load)
        assert health(server)["problems"] == []
    finally:
        server.stop()
        redis.stop()


def test_redis_that_restarts_empty_is_reported(tmp_path: Path) -> None:
    redis = RedisInstance(tmp_path / "redis", appendonly=False).start()
    server = tidings_over(tmp_path / "tidings", f"{redis.url}?prefix=f").start()
    try:
        with server.client() as client:
            assert post_one(client, 1) == 201
            assert health(server)["problems"] == []
            redis.kill()
            redis.start()  # no persistence: it comes back empty
            wait_for(lambda: bool(health(server)["problems"]), 30, "the data loss to be reported")
            problems = health(server)["problems"]
            assert isinstance(problems, list) and "lost" in problems[0].lower()
            assert problems[0] in server.log()  # and logged for the operator
            # The service carries on for new work.
            assert post_one(client, 2) == 201
    finally:
        server.stop()
        redis.stop()


def test_postgres_crash_loses_nothing_committed(tmp_path: Path, postgres: PostgresInstance) -> None:
    server = tidings_over(tmp_path / "tidings", f"{postgres.dsn}?schema=faults").start()
    try:
        load = outage(server, postgres.crash, postgres.start)
        assert_clean_outage(server, load)
    finally:
        server.stop()


@pytest.mark.parametrize("backend", ["redis", "postgres"])
def test_server_starts_while_backend_is_down_and_recovers(tmp_path: Path, backend: str) -> None:
    if backend == "redis":
        instance: RedisInstance | PostgresInstance = RedisInstance(
            tmp_path / "redis", appendonly=False
        )
        uri = f"{instance.url}?prefix=late"
    else:
        instance = PostgresInstance().init()
        uri = f"{instance.dsn}?schema=late"
    server = tidings_over(tmp_path / "tidings", uri).start()
    try:
        with server.client() as client:
            down = client.get("/queues", timeout=ANSWER_BOUND)  # no answer in time: raises
            assert down.status_code == 503, down.text
            assert down.json()["title"] == UNAVAILABLE
            # the operator finds the failure, and its cause, by the id the client got
            assert down.headers["x-openstack-request-id"] in server.log()
            assert client.get("/ping").status_code == 503
            instance.start()
            wait_for(lambda: client.get("/queues").status_code == 200, 60, "recovery")
            assert post_one(client, 1) == 201
            assert client.get("/ping").status_code == 204
    finally:
        server.stop()
        if isinstance(instance, PostgresInstance):
            instance.remove()
        else:
            instance.stop()
