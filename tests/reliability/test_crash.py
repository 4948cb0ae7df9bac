"""Crash safety: SIGKILL the server while clients write, restart it on the same SQLite file.

Whatever the server acknowledged before dying must be there after the restart:
messages acknowledged with 201 (ids taken from ``resources``), claims acknowledged with
201, and deletes acknowledged with 204. The restart itself must be clean (WAL recovery).
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server import TidingsServer, client_headers, wait_until

POSTERS = 6
BATCH = 5
QUEUE = "crashy"
CHUNK = 20


@dataclass
class Ledger:
    """What the server acknowledged, as seen by the client threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    posted: dict[str, Any] = field(default_factory=dict)  # id -> body, acknowledged 201
    attempted_bodies: list[Any] = field(default_factory=list)  # every body ever sent
    claims: dict[str, set[str]] = field(default_factory=dict)  # claim id -> message ids
    delete_attempted: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)  # acknowledged 204 (with claim id)
    server_errors: list[str] = field(default_factory=list)  # 5xx / odd statuses while up
    alive: bool = True  # False once the kill has been ordered
    refused: int = 0  # requests that found no server (after the kill)

    def unanswered(self) -> None:
        with self.lock:
            self.refused += 1

    def problem(self, text: str) -> None:
        with self.lock:
            if self.alive and len(self.server_errors) < 20:
                self.server_errors.append(text)


def poster(url: str, project: str, index: int, ledger: Ledger, stop: threading.Event,
           deadline: float) -> None:
    seq = 0
    with httpx.Client(base_url=url + "/v2", headers=client_headers(project),
                      timeout=5.0) as client:
        while not stop.is_set() and time.monotonic() < deadline:
            bodies = [{"poster": index, "seq": seq + k, "nonce": uuid.uuid4().hex}
                      for k in range(BATCH)]
            seq += BATCH
            with ledger.lock:
                ledger.attempted_bodies.extend(bodies)
            try:
                resp = client.post(f"/queues/{QUEUE}/messages",
                                   json={"messages": [{"body": b} for b in bodies]})
            except httpx.HTTPError:
                ledger.unanswered()
                time.sleep(0.05)  # server down: keep trying until told to stop
                continue
            if resp.status_code != 201:
                ledger.problem(f"POST messages -> {resp.status_code} {resp.text[:200]}")
                continue
            ids = [href.rsplit("/", 1)[1] for href in resp.json()["resources"]]
            with ledger.lock:
                ledger.posted.update(zip(ids, bodies, strict=True))


def consumer(url: str, project: str, ledger: Ledger, stop: threading.Event,
             deadline: float) -> None:
    """Claims messages (ttl 300) and deletes about half of them with their claim id."""
    rng = random.Random(7)
    with httpx.Client(base_url=url + "/v2", headers=client_headers(project),
                      timeout=5.0) as client:
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                resp = client.post(f"/queues/{QUEUE}/claims", params={"limit": 5},
                                   json={"ttl": 300, "grace": 60})
            except httpx.HTTPError:
                ledger.unanswered()
                time.sleep(0.05)
                continue
            if resp.status_code == 204:
                time.sleep(0.01)
                continue
            if resp.status_code != 201:
                ledger.problem(f"POST claims -> {resp.status_code} {resp.text[:200]}")
                continue
            claim_id = resp.headers["location"].rsplit("/", 1)[1]
            mids = [m["id"] for m in resp.json()["messages"]]
            with ledger.lock:
                ledger.claims[claim_id] = set(mids)
            for mid in mids:
                if rng.random() < 0.5:
                    continue
                with ledger.lock:
                    ledger.delete_attempted.add(mid)
                try:
                    deleted = client.delete(f"/queues/{QUEUE}/messages/{mid}",
                                            params={"claim_id": claim_id})
                except httpx.HTTPError:
                    continue
                if deleted.status_code == 204:
                    with ledger.lock:
                        ledger.deleted.add(mid)
                else:
                    ledger.problem(f"DELETE message -> {deleted.status_code} "
                                   f"{deleted.text[:200]}")


def write_and_kill(server: TidingsServer, project: str, ledger: Ledger,
                   min_acks: int) -> None:
    """Run posters + a consumer, SIGKILL the server mid-stream, then stop the threads."""
    stop = threading.Event()
    deadline = time.monotonic() + 30.0
    before = len(ledger.posted)
    threads = [threading.Thread(target=poster,
                                args=(server.url, project, i, ledger, stop, deadline))
               for i in range(POSTERS)]
    threads.append(threading.Thread(target=consumer,
                                    args=(server.url, project, ledger, stop, deadline)))
    for t in threads:
        t.start()
    try:
        # land the kill at an arbitrary point: after a random number of further acks
        target = before + min_acks + random.randrange(0, 20 * BATCH)
        wait_until(lambda: len(ledger.posted) >= target, "acknowledged posts", timeout=10)
        with ledger.lock:
            ledger.alive = False
            refused = ledger.refused
        server.kill()
        # clients run into the dead server for a while (as many refusals as posters)
        wait_until(lambda: ledger.refused >= refused + POSTERS, "clients refused", timeout=10)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)
    assert not any(t.is_alive() for t in threads), "client threads did not stop"
    assert len(ledger.posted) - before >= min_acks, "too few messages acknowledged before kill"


def fetch_by_ids(client: httpx.Client, ids: list[str], *, present: bool) -> dict[str, Any]:
    """GET ?ids= in chunks of 20: id -> body of every message found. ``present`` says
    whether the ids should be there: then every chunk answers 200, else 404 (none found).
    """
    found: dict[str, Any] = {}
    for i in range(0, len(ids), CHUNK):
        chunk = ids[i:i + CHUNK]
        resp = client.get(f"/queues/{QUEUE}/messages",
                          params={"ids": ",".join(chunk), "echo": "true"})
        assert resp.status_code == (200 if present else 404), resp.text
        if resp.status_code == 200:
            found.update({m["id"]: m["body"] for m in resp.json()["messages"]})
    return found


def list_everything(client: httpx.Client) -> list[dict[str, Any]]:
    """Follow the paged listing (echo + include_claimed) until an empty page (bounded)."""
    items: list[dict[str, Any]] = []
    params: dict[str, str] = {"echo": "true", "include_claimed": "true", "limit": "20"}
    for _ in range(5000):
        resp = client.get(f"/queues/{QUEUE}/messages", params=params)
        assert resp.status_code == 200, resp.text
        page = resp.json()["messages"]
        if not page:
            return items
        items.extend(page)
        params["marker"] = httpx.URL(resp.json()["links"][0]["href"]).params["marker"]
    raise AssertionError("listing did not end")


def verify(server: TidingsServer, project: str, ledger: Ledger) -> None:
    assert not ledger.server_errors, f"errors while the server was up: {ledger.server_errors}"
    # a delete in flight at the kill may or may not have committed: only messages never
    # sent for deletion are certain to exist
    survivors = {mid: body for mid, body in ledger.posted.items()
                 if mid not in ledger.delete_attempted}
    with server.client(project=project) as client:
        # acknowledged, never deleted -> present with the same body
        found = fetch_by_ids(client, sorted(survivors), present=True)
        missing = sorted(set(survivors) - set(found))
        assert not missing, (f"{len(missing)} of {len(survivors)} acknowledged messages lost, "
                             f"e.g. {missing[:5]}")
        assert {mid: found[mid] for mid in survivors} == survivors

        # acknowledged deletes stay deleted
        resurrected = fetch_by_ids(client, sorted(ledger.deleted), present=False)
        assert not resurrected, f"deleted messages came back: {sorted(resurrected)[:5]}"

        # the full listing: every acknowledged survivor, no duplicates, nothing invented
        listed = list_everything(client)
        listed_ids = [m["id"] for m in listed]
        assert len(listed_ids) == len(set(listed_ids)), "listing repeats messages"
        assert set(survivors) <= set(listed_ids)
        attempted = {(b["poster"], b["nonce"]) for b in ledger.attempted_bodies}
        assert all((m["body"]["poster"], m["body"]["nonce"]) in attempted for m in listed)
        unacked = set(listed_ids) - set(ledger.posted)
        # unacknowledged but committed posts (in flight at the kill) are allowed, no more
        assert len(unacked) <= POSTERS * BATCH * 3, f"{len(unacked)} unexpected messages"

        stats = client.get(f"/queues/{QUEUE}/stats")
        assert stats.status_code == 200
        assert stats.json()["messages"]["total"] == len(listed_ids)

        # acknowledged claims survive too (ttl 300 has not run out)
        for claim_id, mids in ledger.claims.items():
            resp = client.get(f"/queues/{QUEUE}/claims/{claim_id}")
            still = mids - ledger.delete_attempted
            if not (mids - ledger.deleted):
                continue  # every message deleted: the claim may legitimately be gone
            assert resp.status_code == 200, f"claim {claim_id} lost: {resp.text}"
            held = {m["id"] for m in resp.json()["messages"]}
            assert still <= held <= mids, f"claim {claim_id}: {held} vs {mids}"


def check_functional(server: TidingsServer) -> None:
    """A fresh round trip works after the restart."""
    with server.client() as client:
        assert client.get("/ping").status_code == 204
        posted = client.post("/queues/after/messages", json={"messages": [{"body": "ok"}]})
        assert posted.status_code == 201, posted.text
        claim = client.post("/queues/after/claims", json={"ttl": 60, "grace": 60})
        assert claim.status_code == 201, claim.text
        claim_id = claim.headers["location"].rsplit("/", 1)[1]
        [msg] = claim.json()["messages"]
        deleted = client.delete(f"/queues/after/messages/{msg['id']}",
                                params={"claim_id": claim_id})
        assert deleted.status_code == 204


def db_path(server: TidingsServer) -> Path | None:
    """The SQLite file behind the server, when it runs on the embedded store."""
    if not server.store_uri.startswith("sqlite:///"):
        return None
    return Path(server.store_uri.removeprefix("sqlite:///"))


def wal_bytes(server: TidingsServer) -> int:
    path = db_path(server)
    if path is None:
        return 0
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def integrity(path: Path) -> str:
    with sqlite3.connect(path) as db:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])


@pytest.mark.parametrize("workers", [1, 2])
def test_acknowledged_writes_survive_kill_9(
    make_server: type[TidingsServer], tmp_path: Path, workers: int,
) -> None:
    server = make_server(tmp_path / "srv", workers=workers).start()
    project = f"crash-{uuid.uuid4().hex[:10]}"
    ledger = Ledger()

    for cycle in range(2):  # crash, recover, crash the recovered database again
        ledger.alive = True
        write_and_kill(server, project, ledger, min_acks=300)
        wal_size = wal_bytes(server)
        try:
            server.start()  # same port, same SQLite file; waits until it answers
        except RuntimeError as exc:  # pragma: no cover - reported as a failure
            pytest.fail(f"cycle {cycle}: restart after SIGKILL failed (wal {wal_size} B): {exc}")
        verify(server, project, ledger)
        print(f"\n[crash] workers={workers} cycle {cycle}: {len(ledger.posted)} posts acked, "
              f"{len(ledger.attempted_bodies)} attempted, {len(ledger.claims)} claims, "
              f"{len(ledger.deleted)} deletes acked; wal at kill {wal_size} B")

    check_functional(server)
    log = server.log()
    assert "Traceback" not in log, log

    server.stop()
    path = db_path(server)
    if path is not None:
        assert integrity(path) == "ok"
