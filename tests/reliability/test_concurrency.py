"""Producers and consumers in separate OS processes against one multi-worker server.

Each process has its own httpx client and records what it saw (with ``time.time()``
stamps) to a JSON file; the test process then checks the delivery guarantees of §6:

* at-least-once: every message acknowledged to a producer is eventually deleted by a
  consumer, nothing is lost and the queue ends empty;
* one claimant at a time: for two claims A and B of the same message, with A's response
  received first, B's response must not arrive before ``A.sent + A.ttl`` (the server made
  claim A after A was sent, so A is live until at least then);
* a message whose delete was acknowledged is never claimed again;
* every request succeeds (no 5xx, no transport errors).
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import random
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.backends import STORE_KINDS, StoreNamespace
from tests.server import TidingsServer, client_headers

SPAWN = multiprocessing.get_context("spawn")
PRODUCERS = 4
CONSUMERS = 4


@dataclass
class Job:
    """What one worker process is asked to do (picklable for spawn)."""

    url: str
    project: str
    queue: str
    index: int
    out: str
    deadline: float  # time.time() after which the process stops, whatever happens
    # producers
    batches: int = 0
    batch_size: int = 10
    pause: float = 0.0
    # consumers
    claim_ttls: tuple[int, ...] = (60,)
    abandon_probability: float = 0.0
    # Abandoning is possible for this long after the consumer's first claim (measured
    # from there, not from the test's start: starting the processes may take a while).
    abandon_for: float = 0.0
    idle_sleep: float = 0.05


@dataclass
class Report:
    statuses: dict[str, int] = field(default_factory=dict)  # "METHOD kind status" -> count
    errors: list[str] = field(default_factory=list)  # first few unexpected outcomes
    unexpected: int = 0
    server_errors: int = 0
    transport_errors: int = 0
    posted: list[str] = field(default_factory=list)
    # (message id, claim id, sent, received, claim ttl)
    claims: list[tuple[str, str, float, float, int]] = field(default_factory=list)
    # (message id, claim id, delete response received)
    deleted: list[tuple[str, str, float]] = field(default_factory=list)
    abandoned: list[tuple[str, str]] = field(default_factory=list)
    bodies: dict[str, Any] = field(default_factory=dict)
    finished: bool = False
    timed_out: bool = False


class Recorder:
    def __init__(self, report: Report) -> None:
        self.report = report
        self.counts: Counter[str] = Counter()

    def request(
        self, client: httpx.Client, method: str, kind: str, url: str, expected: set[int],
        **kwargs: Any,
    ) -> httpx.Response | None:
        try:
            resp = client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            self.report.transport_errors += 1
            self.note(f"{method} {url}: transport error {exc!r}")
            return None
        self.counts[f"{method} {kind} {resp.status_code}"] += 1
        if resp.status_code >= 500:
            self.report.server_errors += 1
        if resp.status_code not in expected:
            self.report.unexpected += 1
            self.note(f"{method} {url}: {resp.status_code} {resp.text[:300]}")
            return None
        return resp

    def note(self, text: str) -> None:
        if len(self.report.errors) < 20:
            self.report.errors.append(text)

    def save(self, path: str) -> None:
        self.report.statuses = dict(self.counts)
        Path(path).write_text(json.dumps(asdict(self.report)))


def produce(job: Job) -> None:
    report = Report()
    rec = Recorder(report)
    headers = client_headers(job.project)
    try:
        with httpx.Client(base_url=job.url + "/v2", headers=headers, timeout=30.0) as client:
            for b in range(job.batches):
                if time.time() > job.deadline:
                    report.timed_out = True
                    break
                messages = [
                    {"body": {"p": job.index, "n": b * job.batch_size + k}, "ttl": 3600}
                    for k in range(job.batch_size)
                ]
                resp = rec.request(client, "POST", "post", f"/queues/{job.queue}/messages",
                                   {201}, json={"messages": messages})
                if resp is not None:
                    ids = [href.rsplit("/", 1)[1] for href in resp.json()["resources"]]
                    report.posted.extend(ids)
                    for mid, msg in zip(ids, messages, strict=True):
                        report.bodies[mid] = msg["body"]
                if job.pause:
                    time.sleep(job.pause)
            else:
                report.finished = True
    finally:
        rec.save(job.out)


def consume(job: Job, producers_done: Any) -> None:
    """Claim (limit 10), then delete each message with its claim id; maybe abandon claims."""
    report = Report()
    rec = Recorder(report)
    rng = random.Random(job.index)
    headers = client_headers(job.project)
    queue = f"/queues/{job.queue}"
    first_claim: float | None = None
    try:
        with httpx.Client(base_url=job.url + "/v2", headers=headers, timeout=30.0) as client:
            while True:
                if time.time() > job.deadline:
                    report.timed_out = True
                    break
                ttl = rng.choice(job.claim_ttls)
                sent = time.time()
                resp = rec.request(client, "POST", "claim", f"{queue}/claims", {201, 204},
                                   params={"limit": 10}, json={"ttl": ttl, "grace": 60})
                received = time.time()
                if resp is None:
                    time.sleep(0.1)
                    continue
                if resp.status_code == 204:
                    # nothing claimable: stop once producers are done and the queue is empty
                    if producers_done.is_set():
                        stats = rec.request(client, "GET", "stats", f"{queue}/stats", {200})
                        if stats is not None and stats.json()["messages"]["total"] == 0:
                            report.finished = True
                            break
                    time.sleep(job.idle_sleep)
                    continue
                claim_id = resp.headers["location"].rsplit("/", 1)[1]
                messages = resp.json()["messages"]
                for m in messages:
                    report.claims.append((m["id"], claim_id, sent, received, ttl))
                    report.bodies[m["id"]] = m["body"]
                if first_claim is None:
                    first_claim = sent
                if (sent < first_claim + job.abandon_for
                        and rng.random() < job.abandon_probability):
                    # abandon: neither delete nor release; let the claim lapse
                    report.abandoned.extend((m["id"], claim_id) for m in messages)
                    continue
                for m in messages:
                    deleted = rec.request(client, "DELETE", "delete",
                                          f"{queue}/messages/{m['id']}", {204},
                                          params={"claim_id": claim_id})
                    if deleted is not None:
                        report.deleted.append((m["id"], claim_id, time.time()))
    finally:
        rec.save(job.out)


@dataclass
class Outcome:
    project: str
    queue: str
    producers: list[Report]
    consumers: list[Report]
    elapsed: float

    @property
    def everyone(self) -> list[Report]:
        return self.producers + self.consumers


def load(path: Path) -> Report:
    raw = json.loads(path.read_text())
    report = Report(**raw)
    report.claims = [tuple(c) for c in raw["claims"]]  # type: ignore[misc]
    report.deleted = [tuple(d) for d in raw["deleted"]]  # type: ignore[misc]
    report.abandoned = [tuple(a) for a in raw["abandoned"]]  # type: ignore[misc]
    return report


def run(
    server: TidingsServer, tmp_path: Path, *, budget: float,
    producer_job: dict[str, Any], consumer_job: dict[str, Any] | None = None,
) -> Outcome:
    """Start the producers and consumers together, wait (bounded), collect their reports."""
    project = f"conc-{uuid.uuid4().hex[:10]}"
    queue = "work"
    start = time.time()
    deadline = start + budget
    producers_done = SPAWN.Event()
    consumer_job = consumer_job or {}

    def job(role: str, i: int, extra: dict[str, Any]) -> Job:
        return Job(url=server.url, project=project, queue=queue, index=i,
                   out=str(tmp_path / f"{role}-{i}.json"), deadline=deadline, **extra)

    producers = [SPAWN.Process(target=produce, args=(job("producer", i, producer_job),))
                 for i in range(PRODUCERS)]
    consumers = [SPAWN.Process(target=consume,
                               args=(job("consumer", i, consumer_job.get(i, {})),
                                     producers_done))
                 for i in range(CONSUMERS)]
    try:
        for proc in producers + consumers:
            proc.start()
        for proc in producers:
            proc.join(timeout=max(1.0, deadline + 10 - time.time()))
        producers_done.set()
        for proc in consumers:
            proc.join(timeout=max(1.0, deadline + 10 - time.time()))
    finally:
        for proc in producers + consumers:
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
    elapsed = time.time() - start
    for role, procs in (("producer", producers), ("consumer", consumers)):
        for i, proc in enumerate(procs):
            assert proc.exitcode == 0, f"{role} {i} exit code {proc.exitcode}"
    return Outcome(
        project=project,
        queue=queue,
        producers=[load(tmp_path / f"producer-{i}.json") for i in range(PRODUCERS)],
        consumers=[load(tmp_path / f"consumer-{i}.json") for i in range(CONSUMERS)],
        elapsed=elapsed,
    )


def summary(outcome: Outcome) -> str:
    statuses: Counter[str] = Counter()
    for r in outcome.everyone:
        statuses.update(r.statuses)
    errors = [e for r in outcome.everyone for e in r.errors][:10]
    return (f"elapsed {outcome.elapsed:.1f}s; statuses {dict(sorted(statuses.items()))}; "
            f"first errors: {errors}")


def check_no_double_claims(claims: list[tuple[str, str, float, float, int]]) -> list[str]:
    """Claims of one message must not overlap: B.received >= A.sent + A.ttl."""
    by_message: dict[str, list[tuple[str, str, float, float, int]]] = defaultdict(list)
    for c in claims:
        by_message[c[0]].append(c)
    violations = []
    for mid, its in by_message.items():
        its.sort(key=lambda c: c[3])
        for i, a in enumerate(its):
            for b in its[i + 1:]:
                if b[1] == a[1]:
                    violations.append(f"{mid}: claim {a[1]} returned the message twice")
                elif b[3] < a[2] + a[4]:
                    violations.append(
                        f"{mid}: claim {b[1]} received at +{b[3] - a[2]:.2f}s after claim "
                        f"{a[1]} (ttl {a[4]}) was sent")
    return violations


def reclaim_margins(claims: list[tuple[str, str, float, float, int]]) -> list[float]:
    """For each re-claim B following claim A: B.received - (A.sent + A.ttl)."""
    by_message: dict[str, list[tuple[str, str, float, float, int]]] = defaultdict(list)
    for c in claims:
        by_message[c[0]].append(c)
    margins = []
    for its in by_message.values():
        its.sort(key=lambda c: c[3])
        margins.extend(b[3] - (a[2] + a[4]) for a, b in itertools.pairwise(its))
    return margins or [0.0]


def check_common(server: TidingsServer, outcome: Outcome) -> None:
    """The checks shared by both scenarios."""
    info = summary(outcome)
    for r in outcome.everyone:
        assert not r.timed_out, f"a worker hit the hard deadline; {info}"
        assert r.finished, f"a worker did not finish; {info}"
    assert sum(r.server_errors for r in outcome.everyone) == 0, f"5xx responses; {info}"
    assert sum(r.transport_errors for r in outcome.everyone) == 0, f"transport errors; {info}"
    assert sum(r.unexpected for r in outcome.everyone) == 0, f"unexpected statuses; {info}"

    posted = [mid for r in outcome.producers for mid in r.posted]
    assert len(posted) == len(set(posted)), "the server handed out a message id twice"
    posted_bodies = {mid: body for r in outcome.producers for mid, body in r.bodies.items()}
    claims = [c for r in outcome.consumers for c in r.claims]
    deleted = [d for r in outcome.consumers for d in r.deleted]

    claimed_ids = {c[0] for c in claims}
    deleted_ids = [d[0] for d in deleted]
    assert claimed_ids <= set(posted), "a claim returned a message nobody posted"
    lost = set(posted) - set(deleted_ids)
    assert not lost, f"{len(lost)} acknowledged messages never consumed, e.g. {sorted(lost)[:5]}"
    twice = [mid for mid, n in Counter(deleted_ids).items() if n > 1]
    assert not twice, f"{len(twice)} messages deleted (with a claim) twice, e.g. {twice[:5]}"
    consumed_bodies = {mid: body for r in outcome.consumers for mid, body in r.bodies.items()}
    assert consumed_bodies == posted_bodies

    violations = check_no_double_claims(claims)
    assert not violations, f"{len(violations)} overlapping claims: {violations[:5]}"

    deleted_at = {d[0]: d[2] for d in deleted}
    resurrected = [c for c in claims if c[2] > deleted_at[c[0]]]
    assert not resurrected, f"deleted messages claimed again: {resurrected[:5]}"

    queue = outcome.queue
    with server.client(project=outcome.project) as client:
        stats = client.get(f"/queues/{queue}/stats")
        assert stats.status_code == 200
        assert stats.json()["messages"] == {"claimed": 0, "free": 0, "total": 0}
        left = client.get(f"/queues/{queue}/messages",
                          params={"echo": "true", "include_claimed": "true"})
        assert left.status_code == 200
        assert left.json()["messages"] == []


def test_many_producers_and_consumers_lose_nothing(
    make_server: type[TidingsServer], tmp_path: Path,
) -> None:
    """4 producers post 4,000 messages in batches of 10 while 4 consumers claim and delete."""
    server = make_server(tmp_path / "srv", workers=2).start()
    total = 4_000
    outcome = run(
        server, tmp_path, budget=120.0,
        producer_job={"batches": total // PRODUCERS // 10, "batch_size": 10},
    )
    posted = [mid for r in outcome.producers for mid in r.posted]
    assert len(posted) == total, summary(outcome)
    check_common(server, outcome)
    print(f"\n[concurrency] 4k: {summary(outcome)}")


@pytest.mark.slow
def test_abandoned_claims_lapse_out_of_order_without_double_delivery(tmp_path: Path) -> None:
    """Two consumers abandon some claims early on; the claims (ttl 60..75 s) lapse out of
    order while everybody keeps claiming; the lapsed messages are then re-claimed and
    consumed. No message may reach a second claimant while an earlier claim is live.

    Every store at once, each with its own server and processes: the scenario mostly
    waits for claims to lapse (Zaqar's shortest claim is 60 s), and the stores share that
    wait instead of holding a test worker each for it."""
    namespaces = [StoreNamespace(kind, tmp_path / kind) for kind in STORE_KINDS]
    servers = [
        TidingsServer(tmp_path / ns.kind, workers=2, store_uri=ns.uri) for ns in namespaces
    ]
    try:
        for server in servers:
            server.start()
        with ThreadPoolExecutor(len(servers)) as pool:
            outcomes = list(pool.map(
                lambda server: _abandon_claims(server, server.data_dir), servers
            ))
        for namespace, server, outcome in zip(namespaces, servers, outcomes, strict=True):
            _check_abandoned(namespace.kind, server, outcome)
    finally:
        for server in servers:
            server.stop()
        for namespace in namespaces:
            namespace.drop()


def _abandon_claims(server: TidingsServer, tmp_path: Path) -> Outcome:
    ttls = (60, 65, 70, 75)
    return run(
        server, tmp_path, budget=135.0,
        # ~10 s of steady production: 4 x 60 batches of 10, a short pause between batches
        producer_job={"batches": 60, "batch_size": 10, "pause": 0.15},
        consumer_job={
            i: {"claim_ttls": ttls, "idle_sleep": 0.2,
                "abandon_probability": 0.3 if i < 2 else 0.0,
                "abandon_for": 8.0}
            for i in range(CONSUMERS)
        },
    )


def _check_abandoned(kind: str, server: TidingsServer, outcome: Outcome) -> None:
    info = f"{kind}: {summary(outcome)}"
    posted = [mid for r in outcome.producers for mid in r.posted]
    assert len(posted) == PRODUCERS * 60 * 10, info
    abandoned = [a for r in outcome.consumers for a in r.abandoned]
    assert abandoned, f"no claim was abandoned, the scenario did not happen; {info}"
    check_common(server, outcome)

    # every abandoned message was claimed again (after its claim lapsed) and consumed
    claims = [c for r in outcome.consumers for c in r.claims]
    claims_per_message = Counter(c[0] for c in claims)
    not_reclaimed = [mid for mid, _ in abandoned if claims_per_message[mid] < 2]
    assert not not_reclaimed, f"abandoned messages never re-claimed: {not_reclaimed[:5]}"

    # the abandoned claims really did lapse out of order (different ttls, interleaved)
    abandoned_claims = {cid for _, cid in abandoned}
    lapse = sorted(
        {(c[1], c[2], c[2] + c[4]) for c in claims if c[1] in abandoned_claims},
        key=lambda c: c[1],
    )
    expiries = [e for _, _, e in lapse]
    out_of_order = sum(1 for a, b in itertools.pairwise(expiries) if b < a)
    margins = reclaim_margins(claims)
    print(f"\n[concurrency] abandon ({kind}): {len(abandoned)} messages in {len(abandoned_claims)} "
          f"abandoned claims ({out_of_order} expiry inversions); "
          f"{sum(1 for n in claims_per_message.values() if n > 1)} messages delivered twice "
          f"(re-claim margin after A.sent + A.ttl: min {min(margins):.2f}s, "
          f"max {max(margins):.2f}s); "
          f"{info}")
