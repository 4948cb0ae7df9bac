"""SQS-shaped load against Tidings' SQS face, the same load through its Zaqar API, and moto.

The load is what a boto3 consumer and producer do:

* ``SendMessageBatch`` of 10 messages, each a JSON text of 256-1,024 bytes carrying its
  send time (``time.time()``) and a sequence number;
* ``ReceiveMessage`` with ``MaxNumberOfMessages=10`` and ``WaitTimeSeconds=20``, then
  ``DeleteMessageBatch`` of what was received.

Targets, one after the other, in one run:

* **Tidings, SQS face**: ``tidings serve`` (``--workers``, default 2) on each store of
  ``--stores`` (SQLite file; a private redis-server with AOF ``appendfsync always``;
  PostgreSQL in a schema of its own, dropped after: benchmarks/stores.py), JSON protocol on
  its HTTP port, ``noauth`` (the access key id is the project);
* **Tidings, Zaqar API**, the same server and store: ``POST /v2/queues/q/messages`` with
  10 messages; ``POST /v2/queues/q/claims?limit=10&wait=20`` (Tidings' long polling) with
  ``{"ttl": 60, "grace": 60}`` (Zaqar's smallest grace is 60 s); ``DELETE
  /v2/queues/q/messages?ids=...&claim_ids=...`` (the claimed ids, their claim);
* **moto** (``moto_server`` of moto[server], in-memory), a peer reference, same client.

The client (``--client``):

* ``raw`` (default): one ``http.client`` keep-alive connection per thread sending exactly
  the JSON-protocol requests boto3 sends (same headers, same JSON, a real SigV4 signature,
  which ``noauth`` and moto do not check), at about a third of boto3's client CPU
  (boto3: about a millisecond per call), which on a small machine takes the cores the
  server would use;
* ``boto3``: one boto3 client per thread (retries off, so errors show);
* ``both``: the SQS targets twice, once with each. The Zaqar API is always driven raw.

Phases per target, each ``--seconds`` measured after ``--warmup`` seconds unmeasured:

a. ``produce``: ``--concurrency`` producer threads sending batches back to back, into an
   empty queue: messages/s sent;
b. ``consume``: as many consumer threads draining the backlog (a) left: messages/s
   deleted; "drained" marks a backlog that ran out first (its time ends at the last
   delete);
c. ``mixed``: producers paced at ``--rate`` messages/s in all (default: half of the
   target's own min(a, b), so every target runs at the same share of its capacity) and
   consumers, on a fresh queue: end-to-end messages/s (deleted) and the delay from send
   to receive (p50/p99).

Server CPU per message: user+system time of the server's process tree over the measured
window (Tidings: master and workers, not the redis-server or PostgreSQL behind it; moto:
its one process), divided by the messages of that phase. The load generator's CPU share of
the machine is shown too: where it is high, the client, not the server, set the pace.

Consumers long-poll 20 s: when a phase ends, the consumers still waiting are woken by a
few "wake" batches posted to the queue (not counted), so every phase ends within bounds.
Queues are not deleted one by one: the store (file, schema, private Redis) and moto go.

Run:  .venv/bin/python benchmarks/bench_sqs.py [--quick] [--stores sqlite,redis,postgres]
      [--targets sqs,zaqar,moto] [--client raw|boto3|both] [--seconds S] [--concurrency N]
      [--rate MSGS] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import hashlib
import hmac
import http.client
import itertools
import json
import os
import random
import shlex
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import psutil
from bench_vs_zaqar import machine_info
from loadgen import percentile
from servers import BENCH_DIR, TreeSampler, tidings_server
from stores import STORES, bench_store

from tests.server import ServerProcess, free_port

PROJECT = "bench-sqs"  # noauth: the access key id is the project
SECRET = "bench-secret"  # signed with, never checked (noauth, moto)
REGION = "us-east-1"
BATCH = 10
WAIT_SECONDS = 20
BODY_SIZES = (256, 1024)
CLAIM_BODY = b'{"ttl": 60, "grace": 60}'
FULL = {"seconds": 10.0, "warmup": 1.0}
QUICK = {"seconds": 3.0, "warmup": 0.5}
# A socket read never waits longer than this: a 20 s long poll, and room for a slow answer
# (moto's receive recounts the whole queue per message: seconds with a deep backlog).
HTTP_TIMEOUT = WAIT_SECONDS + 70
# Threads still running this long after their phase ended are counted as stuck.
JOIN_TIMEOUT = HTTP_TIMEOUT + 5
# After a phase: seconds to let threads end by themselves before waking consumers, and
# rounds of wake batches at most (then threads get the rest of JOIN_TIMEOUT).
WAKE_AFTER = 1.0
WAKE_ROUNDS = 3
# Tidings answers at once (no wait) past max_waiting_requests_per_project (default 50).
MAX_CONSUMERS = 50
TARGETS = ("sqs", "zaqar", "moto")
CLIENTS = ("raw", "boto3", "both")
STORE_LABELS = {"sqlite": "SQLite", "redis": "Redis", "postgres": "PostgreSQL"}
JSON_TYPE = "application/x-amz-json-1.0"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "0"


# boto3's user agent, so that the raw client's requests are boto3's byte for byte in shape.
USER_AGENT = (
    f"Boto3/{_version('boto3')} md/Botocore#{_version('botocore')} ua/2.1 os/linux "
    f"lang/python#{sys.version_info.major}.{sys.version_info.minor} "
    f"Botocore/{_version('botocore')} bench_sqs/raw"
)


# Message bodies -----------------------------------------------------------------------


_BODY_OVERHEAD = len('{"t":1700000000.000000,"seq":1000000,"data":""}')


class Bodies:
    """JSON texts of 256-1,024 bytes (evenly spread): send time, sequence number, padding."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        self._pads = ["x" * max(0, rng.randint(*BODY_SIZES) - _BODY_OVERHEAD)
                      for _ in range(256)]
        self._seq = itertools.count(seed * 10_000_000)

    def batch(self) -> list[str]:
        sent = time.time()
        pads = self._pads
        return [f'{{"t":{sent:.6f},"seq":{n},"data":"{pads[n % len(pads)]}"}}'
                for n in itertools.islice(self._seq, BATCH)]


WAKE_BODY = '{"wake":1}'


# Clients ------------------------------------------------------------------------------


class CallError(Exception):
    """A request that failed as a whole; its text is the error's tally key."""


Handle = Any  # a receipt handle (SQS) or (message id, claim id) (Zaqar API)


class QueueClient(Protocol):
    name: str

    def create_queue(self, name: str) -> str: ...
    def send_batch(self, queue: str, bodies: list[str]) -> tuple[int, int]: ...
    def receive(self, queue: str) -> list[tuple[Handle, Any]]: ...
    def delete_batch(self, queue: str, handles: list[Handle]) -> tuple[int, int]: ...
    def reset(self) -> None: ...


class Http:
    """One keep-alive HTTP/1.1 connection (http.client reconnects when it was closed)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.netloc = f"{self.host}:{self.port}"
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=HTTP_TIMEOUT)

    def request(
        self, op: str, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body, headers)
                resp = self.conn.getresponse()
                return resp.status, resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                # A keep-alive connection the server closed while idle: one more try.
                self.conn.close()
                if attempt == 2:
                    raise CallError(f"{op} {type(e).__name__}") from None
            except (OSError, http.client.HTTPException) as e:
                self.conn.close()
                raise CallError(f"{op} {type(e).__name__}") from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


class SqsCalls:
    """SQS operations over one ``call(operation, params)``: what boto3's methods send."""

    def call(self, op: str, params: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def create_queue(self, name: str) -> str:
        return str(self.call("CreateQueue", {"QueueName": name})["QueueUrl"])

    def send_batch(self, queue: str, bodies: list[str]) -> tuple[int, int]:
        entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies)]
        result = self.call("SendMessageBatch", {"QueueUrl": queue, "Entries": entries})
        return len(result.get("Successful", ())), len(result.get("Failed", ()))

    def receive(self, queue: str) -> list[tuple[Handle, Any]]:
        result = self.call("ReceiveMessage", {"QueueUrl": queue, "MaxNumberOfMessages": BATCH,
                                              "WaitTimeSeconds": WAIT_SECONDS})
        return [(m["ReceiptHandle"], m["Body"]) for m in result.get("Messages", ())]

    def delete_batch(self, queue: str, handles: list[Handle]) -> tuple[int, int]:
        entries = [{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(handles)]
        result = self.call("DeleteMessageBatch", {"QueueUrl": queue, "Entries": entries})
        return len(result.get("Successful", ())), len(result.get("Failed", ()))


class RawSqs(SqsCalls):
    """boto3's JSON-protocol requests, sent over http.client: the same headers (a real
    SigV4 signature included) and the same JSON, without boto3's per-call CPU."""

    name = "raw"

    def __init__(self, endpoint: str, access_key: str) -> None:
        self.http = Http(endpoint)
        self.access_key = access_key
        self._keys: dict[str, bytes] = {}

    def _signing_key(self, day: str) -> bytes:
        key = self._keys.get(day)
        if key is None:
            key = _hmac(("AWS4" + SECRET).encode(), day)
            for part in (REGION, "sqs", "aws4_request"):
                key = _hmac(key, part)
            self._keys = {day: key}
        return key

    def call(self, op: str, params: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(params).encode()  # botocore's separators, too
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        day = amz_date[:8]
        target = "AmazonSQS." + op
        signed = "content-type;host;x-amz-date;x-amz-target;x-amzn-query-mode"
        canonical = (
            f"POST\n/\n\ncontent-type:{JSON_TYPE}\nhost:{self.http.netloc}\n"
            f"x-amz-date:{amz_date}\nx-amz-target:{target}\nx-amzn-query-mode:true\n\n"
            f"{signed}\n{hashlib.sha256(body).hexdigest()}"
        )
        scope = f"{day}/{REGION}/sqs/aws4_request"
        to_sign = (f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n"
                   f"{hashlib.sha256(canonical.encode()).hexdigest()}")
        signature = hmac.new(self._signing_key(day), to_sign.encode(), hashlib.sha256)
        headers = {
            "X-Amz-Target": target,
            "Content-Type": JSON_TYPE,
            "x-amzn-query-mode": "true",
            "User-Agent": USER_AGENT,
            "X-Amz-Date": amz_date,
            "Authorization": f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
                             f"SignedHeaders={signed}, Signature={signature.hexdigest()}",
            "amz-sdk-invocation-id": str(uuid.uuid4()),
            "amz-sdk-request": "attempt=1; max=1",
            "Content-Length": str(len(body)),
        }
        status, payload = self.http.request(op, "POST", "/", body, headers)
        if status != 200:
            code = "?"
            with contextlib.suppress(ValueError, AttributeError):
                code = str(json.loads(payload).get("__type", "?")).rpartition("#")[2]
            raise CallError(f"{op} {status} {code}")
        try:
            result: dict[str, Any] = json.loads(payload)
        except ValueError:
            raise CallError(f"{op} 200 undecodable answer") from None
        return result

    def reset(self) -> None:
        self.http.close()


class Boto3Sqs(SqsCalls):
    """A boto3 client (one per thread), retries off so that errors are counted."""

    name = "boto3"

    def __init__(self, client: Any) -> None:
        import botocore.exceptions

        self.client = client
        self._methods = {op: getattr(client, _snake(op)) for op in (
            "CreateQueue", "SendMessageBatch", "ReceiveMessage", "DeleteMessageBatch")}
        self._client_error = botocore.exceptions.ClientError
        self._boto_error = botocore.exceptions.BotoCoreError

    def call(self, op: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            result: dict[str, Any] = self._methods[op](**params)
        except self._client_error as e:
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
            raise CallError(f"{op} {status} {e.response.get('Error', {}).get('Code')}") from None
        except self._boto_error as e:
            raise CallError(f"{op} {type(e).__name__}") from None
        return result

    def reset(self) -> None:
        pass  # urllib3 keeps and checks its own connections


def _snake(op: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in op).lstrip("_")


class Boto3Factory:
    """boto3 clients from one session, made in the main thread (Session.client is not
    thread-safe) before the threads that use them start."""

    def __init__(self, endpoint: str, access_key: str) -> None:
        import boto3
        from botocore.config import Config

        self.session = boto3.session.Session(
            aws_access_key_id=access_key, aws_secret_access_key=SECRET, region_name=REGION
        )
        self.endpoint = endpoint
        self.config = Config(retries={"total_max_attempts": 1, "mode": "standard"},
                             read_timeout=HTTP_TIMEOUT, connect_timeout=10)

    def __call__(self) -> Boto3Sqs:
        return Boto3Sqs(self.session.client("sqs", endpoint_url=self.endpoint,
                                            config=self.config))


class ZaqarApi:
    """The same load through Tidings' Zaqar API (v2), raw, as Zaqar's clients send it."""

    name = "raw"

    def __init__(self, endpoint: str, project: str) -> None:
        self.http = Http(endpoint)
        self.headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": project,
                        "Content-Type": "application/json", "Accept": "application/json",
                        "User-Agent": "bench_sqs/zaqar"}

    def _request(self, op: str, method: str, path: str, body: bytes, ok: int) -> bytes:
        status, payload = self.http.request(op, method, path, body, self.headers)
        if status not in (ok, 204):
            raise CallError(f"{op} {status}")
        return payload if status == ok else b""

    def create_queue(self, name: str) -> str:
        self._request("PUT /queues/q", "PUT", f"/v2/queues/{quote(name)}", b"{}", 201)
        return name

    def send_batch(self, queue: str, bodies: list[str]) -> tuple[int, int]:
        # The bodies are JSON texts already: put them in the document as they are.
        doc = '{"messages": [' + ", ".join(f'{{"body": {b}}}' for b in bodies) + "]}"
        payload = self._request("POST messages", "POST", f"/v2/queues/{queue}/messages",
                                doc.encode(), 201)
        if not payload:
            raise CallError("POST messages 204")
        return len(bodies), 0

    def receive(self, queue: str) -> list[tuple[Handle, Any]]:
        payload = self._request(
            "POST claims", "POST",
            f"/v2/queues/{queue}/claims?limit={BATCH}&wait={WAIT_SECONDS}", CLAIM_BODY, 201)
        if not payload:
            return []  # 204: nothing came within the wait
        try:
            return [((m["id"], m["href"].rpartition("claim_id=")[2]), m["body"])
                    for m in json.loads(payload)["messages"]]
        except (ValueError, KeyError, TypeError):
            raise CallError("POST claims 201 undecodable answer") from None

    def delete_batch(self, queue: str, handles: list[Handle]) -> tuple[int, int]:
        ids = ",".join(h[0] for h in handles)
        claims = ",".join(sorted({h[1] for h in handles}))
        self._request("DELETE messages", "DELETE",
                      f"/v2/queues/{queue}/messages?ids={ids}&claim_ids={claims}", b"", 204)
        return len(handles), 0

    def reset(self) -> None:
        self.http.close()


class ClientPool:
    """Clients reused across a target's phases: a thread takes one, gives it back when done
    (a thread stuck past its phase keeps its own)."""

    def __init__(self, make: Callable[[], QueueClient]) -> None:
        self._make = make
        self._idle: list[QueueClient] = []
        self._lock = threading.Lock()

    def take(self, count: int) -> list[QueueClient]:
        with self._lock:
            got = self._idle[:count]
            del self._idle[:count]
        return got + [self._make() for _ in range(count - len(got))]

    def give(self, client: QueueClient) -> None:
        client.reset()  # between phases: a fresh connection, not one the server timed out
        with self._lock:
            self._idle.append(client)

    def close(self) -> None:
        with self._lock:
            for client in self._idle:
                client.reset()
            self._idle.clear()


# Phases -------------------------------------------------------------------------------


@dataclass
class Window:
    """The measured part of a phase, in time.monotonic() seconds."""

    start: float
    end: float

    def holds(self, t: float) -> bool:
        return self.start <= t <= self.end


@dataclass
class Tally:
    """What one thread saw (merged after the phase: no locks on the hot path)."""

    sent: int = 0  # messages sent inside the window
    deleted: int = 0  # messages deleted inside the window
    sent_total: int = 0  # every message sent, window or not: the backlog left behind
    delays: list[float] = field(default_factory=list)  # send to receive, seconds
    calls: dict[str, list[float]] = field(default_factory=dict)  # request latencies
    errors: Counter[str] = field(default_factory=Counter)

    def call(self, op: str, seconds: float) -> None:
        self.calls.setdefault(op, []).append(seconds)


class Drain:
    """Counts deleted messages; notes when a known backlog is all gone."""

    def __init__(self, backlog: int) -> None:
        self.backlog = backlog
        self.deleted = 0
        self.at: float | None = None
        self.event = threading.Event()
        self._lock = threading.Lock()

    def add(self, count: int) -> None:
        with self._lock:
            self.deleted += count
            if self.backlog and self.at is None and self.deleted >= self.backlog:
                self.at = time.monotonic()
                self.event.set()


ERROR_PAUSE = 0.01  # after a failed request: no spinning on a server that refuses


def producer(client: QueueClient, queue: str, bodies: Bodies, window: Window,
             stop: threading.Event, tally: Tally, interval: float | None, offset: float) -> None:
    """Send batches until the window ends: back to back, or one every ``interval`` s."""
    due = time.monotonic() + offset
    while not stop.is_set() and time.monotonic() < window.end:
        if interval is not None:
            late = due - time.monotonic()
            due += interval
            if late > 0 and stop.wait(late):
                break
        batch = bodies.batch()
        started = time.monotonic()
        try:
            ok, failed = client.send_batch(queue, batch)
        except CallError as e:
            tally.errors[str(e)] += 1
            stop.wait(ERROR_PAUSE)
            continue
        done = time.monotonic()
        tally.sent_total += ok
        if failed:
            tally.errors["SendMessageBatch failed entries"] += failed
        if window.holds(done):
            tally.sent += ok
            tally.call("send", done - started)


def consumer(client: QueueClient, queue: str, window: Window, stop: threading.Event,
             tally: Tally, drain: Drain) -> None:
    """Receive (long poll) and delete what came, until the window ends or stop is set."""
    while not stop.is_set() and time.monotonic() < window.end:
        started = time.monotonic()
        try:
            got = client.receive(queue)
        except CallError as e:
            tally.errors[str(e)] += 1
            stop.wait(ERROR_PAUSE)
            continue
        arrived = time.time()
        received = time.monotonic()
        if stop.is_set():
            break  # woken at the phase's end: what came is not counted
        if window.holds(received):
            tally.call("receive", received - started)
        if not got:
            continue
        delays = []
        for _, body in got:
            try:
                doc = body if isinstance(body, dict) else json.loads(body)
                delays.append(arrived - float(doc["t"]))
            except (ValueError, KeyError, TypeError):
                tally.errors["a body not sent by this benchmark"] += 1
        try:
            ok, failed = client.delete_batch(queue, [h for h, _ in got])
        except CallError as e:
            tally.errors[str(e)] += 1
            continue
        done = time.monotonic()
        if failed:
            tally.errors["DeleteMessageBatch failed entries"] += failed
        drain.add(ok)
        if window.holds(done):
            tally.deleted += ok
            tally.delays += delays
            tally.call("delete", done - received)


@dataclass
class PhaseFigures:
    phase: str
    producers: int
    consumers: int
    elapsed_s: float
    messages: int  # deleted (phases with consumers) or sent (produce) in the window
    msgs_per_s: float
    sent: int  # sent in the window (mixed: what producers achieved of the offered rate)
    offered_msgs_per_s: float | None
    delay_p50_ms: float | None
    delay_p99_ms: float | None
    calls: dict[str, dict[str, float]]
    server_cpu_s: float
    server_cpu_us_per_msg: float
    client_cpu_share: float  # of the whole machine (all cores)
    errors: dict[str, int]
    drained: bool = False
    backlog: int = 0
    sent_total: int = 0
    stuck_threads: int = 0


def _own_cpu() -> float:
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


def _sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


@dataclass
class Target:
    key: str
    label: str
    client: str
    pool: ClientPool
    cpu_seconds: Callable[[], float]


def run_phase(target: Target, name: str, queue: str, args: argparse.Namespace,
              producers: int = 0, consumers: int = 0, backlog: int = 0,
              rate: float | None = None) -> PhaseFigures:
    clients = target.pool.take(producers + consumers)
    stop = threading.Event()
    drain = Drain(backlog)
    now = time.monotonic()
    window = Window(now + args.warmup, now + args.warmup + args.seconds)
    interval = producers * BATCH / rate if rate else None
    tallies = [Tally() for _ in clients]
    threads = []
    for i, (client, tally) in enumerate(zip(clients, tallies, strict=True)):
        work: Callable[[], None]
        if i < producers:
            offset = i * interval / producers if interval else 0.0
            work = functools.partial(producer, client, queue, Bodies(i + 1), window, stop,
                                     tally, interval, offset)
        else:
            work = functools.partial(consumer, client, queue, window, stop, tally, drain)
        threads.append(threading.Thread(target=_returning(work, target.pool, client),
                                        name=f"{name}-{i}", daemon=True))
    for thread in threads:
        thread.start()
    _sleep_until(window.start)
    cpu_before, own_before, opened = target.cpu_seconds(), _own_cpu(), time.monotonic()
    if backlog:
        drain.event.wait(max(0.0, window.end - time.monotonic()))
    else:
        _sleep_until(window.end)
    cpu_after, own_after = target.cpu_seconds(), _own_cpu()
    closed = drain.at if drain.at is not None and drain.at < window.end else window.end
    elapsed = max(closed - max(opened, window.start), 1e-6)
    stop.set()
    stuck = finish(target, queue, threads, threads[producers:])

    merged = Tally()
    for tally in tallies:
        merged.sent += tally.sent
        merged.deleted += tally.deleted
        merged.sent_total += tally.sent_total
        merged.delays += tally.delays
        merged.errors.update(tally.errors)
        for op, values in tally.calls.items():
            merged.calls.setdefault(op, []).extend(values)
    if stuck:
        merged.errors["threads stuck past the phase"] += stuck
    merged.delays.sort()
    calls = {}
    for op, values in merged.calls.items():
        values.sort()
        calls[op] = {"count": len(values), "p50_ms": 1000 * percentile(values, 0.5),
                     "p99_ms": 1000 * percentile(values, 0.99)}
    server_cpu = cpu_after - cpu_before
    # A message is counted once: deleted where there are consumers, else sent.
    messages = merged.deleted if consumers else merged.sent
    delays = merged.delays if consumers and producers else []
    return PhaseFigures(
        phase=name, producers=producers, consumers=consumers, elapsed_s=elapsed,
        messages=messages, msgs_per_s=messages / elapsed, sent=merged.sent,
        offered_msgs_per_s=rate,
        delay_p50_ms=1000 * percentile(delays, 0.5) if delays else None,
        delay_p99_ms=1000 * percentile(delays, 0.99) if delays else None,
        calls=calls, server_cpu_s=server_cpu,
        server_cpu_us_per_msg=1e6 * server_cpu / messages if messages else 0.0,
        client_cpu_share=(own_after - own_before) / elapsed / len(os.sched_getaffinity(0)),
        errors=dict(merged.errors), drained=drain.at is not None, backlog=backlog,
        sent_total=merged.sent_total, stuck_threads=stuck,
    )


def _returning(work: Callable[[], None], pool: ClientPool,
               client: QueueClient) -> Callable[[], None]:
    def run() -> None:
        try:
            work()
        finally:
            pool.give(client)

    return run


def _join(threads: list[threading.Thread], until: float) -> None:
    for thread in threads:
        thread.join(max(0.0, until - time.monotonic()))


def finish(target: Target, queue: str, threads: list[threading.Thread],
           consumers: list[threading.Thread]) -> int:
    """Let a stopped phase's threads end; the threads still running at the deadline.

    Consumers still there after a second are most likely long-polling an empty queue:
    each round posts a wake batch per such consumer (a batch wakes at least one waiter),
    so that none sits out its 20 s wait."""
    deadline = time.monotonic() + JOIN_TIMEOUT
    _join(threads, min(deadline, time.monotonic() + WAKE_AFTER))
    for _ in range(WAKE_ROUNDS):
        waiting = sum(thread.is_alive() for thread in consumers)
        if not waiting:
            break
        (client,) = target.pool.take(1)
        try:
            for _ in range(waiting):
                with contextlib.suppress(CallError):
                    client.send_batch(queue, [WAKE_BODY] * BATCH)
        finally:
            target.pool.give(client)
        _join(consumers, min(deadline, time.monotonic() + WAKE_AFTER))
    _join(threads, deadline)
    return sum(thread.is_alive() for thread in threads)


@dataclass
class TargetFigures:
    key: str
    label: str
    client: str
    phases: dict[str, PhaseFigures] = field(default_factory=dict)
    failed: str | None = None


def measure(target: Target, args: argparse.Namespace) -> TargetFigures:
    figures = TargetFigures(target.key, target.label, target.client)
    (setup,) = target.pool.take(1)
    try:
        stem = f"bench-{uuid.uuid4().hex[:8]}"
        backlog_queue = setup.create_queue(stem + "-backlog")
        mixed_queue = setup.create_queue(stem + "-mixed")
    finally:
        target.pool.give(setup)
    n = args.concurrency
    produce = run_phase(target, "produce", backlog_queue, args, producers=n)
    _progress(target, produce)
    consume = run_phase(target, "consume", backlog_queue, args, consumers=n,
                        backlog=produce.sent_total)
    _progress(target, consume)
    rate = args.rate or max(10.0, 0.5 * min(produce.msgs_per_s, consume.msgs_per_s))
    mixed = run_phase(target, "mixed", mixed_queue, args, producers=n, consumers=n, rate=rate)
    _progress(target, mixed)
    figures.phases = {p.phase: p for p in (produce, consume, mixed)}
    return figures


def _progress(target: Target, p: PhaseFigures) -> None:
    delay = (f"  delay p50 {p.delay_p50_ms:.1f} ms p99 {p.delay_p99_ms:.1f} ms"
             if p.delay_p50_ms is not None and p.delay_p99_ms is not None else "")
    offered = f" (offered {p.offered_msgs_per_s:,.0f})" if p.offered_msgs_per_s else ""
    errors = sum(p.errors.values())
    print(f"  {target.label:<34} {p.phase:<8} {p.msgs_per_s:8,.0f} msg/s{offered}{delay}  "
          f"server {p.server_cpu_us_per_msg:,.0f} us CPU/msg  client "
          f"{100 * p.client_cpu_share:.0f}% of machine  errors {errors}"
          + (f" {p.errors}" if errors else "") + ("  (drained)" if p.drained else ""),
          file=sys.stderr, flush=True)


# Servers ------------------------------------------------------------------------------


def smoke(target: Target) -> None:
    """Send, receive and delete one message: the target answers this load, not just HTTP."""
    (client,) = target.pool.take(1)
    try:
        queue = client.create_queue(f"smoke-{uuid.uuid4().hex[:8]}")
        client.send_batch(queue, Bodies(0).batch()[:1])
        got = client.receive(queue)
        if not got:
            raise RuntimeError(f"{target.label}: a message sent was not received")
        client.delete_batch(queue, [h for h, _ in got])
    except CallError as e:
        raise RuntimeError(f"{target.label} failed the smoke test: {e}") from None
    finally:
        target.pool.give(client)


def sqs_clients(args: argparse.Namespace) -> list[str]:
    return ["raw", "boto3"] if args.client == "both" else [args.client]


def sqs_target(key: str, label: str, client: str, endpoint: str, access_key: str,
               cpu: Callable[[], float]) -> Target:
    make: Callable[[], QueueClient]
    if client == "boto3":
        make = Boto3Factory(endpoint, access_key)
    else:
        make = lambda: RawSqs(endpoint, access_key)  # noqa: E731
    return Target(f"{key}/{client}", f"{label} [{client}]", client,
                  ClientPool(make), cpu)


def run_target(target: Target, args: argparse.Namespace,
               results: list[TargetFigures]) -> None:
    print(f"{target.label}:", file=sys.stderr, flush=True)
    try:
        smoke(target)
        results.append(measure(target, args))
    except (RuntimeError, OSError, CallError) as e:
        # One target failing must not cost the figures of the others.
        why = f"{type(e).__name__}: {e}"
        print(f"  {target.label} failed: {why}", file=sys.stderr, flush=True)
        results.append(TargetFigures(target.key, target.label, target.client, failed=why))
    finally:
        target.pool.close()


def run_tidings(kind: str, args: argparse.Namespace, data_dir: Path,
                results: list[TargetFigures]) -> None:
    with bench_store(kind, data_dir / kind) as store:
        server = tidings_server(store.data_dir, args.workers, store.uri)
        try:
            try:
                server.start()
            except RuntimeError as e:  # it may still run (not ready in time): stopped below
                results.append(TargetFigures(f"tidings-{kind}", f"Tidings {kind}", "-",
                                             failed=str(e)[:500]))
                return
            sampler = TreeSampler(server.pid)
            store_label = STORE_LABELS.get(kind, kind)
            targets = []
            if "sqs" in args.targets:
                targets += [sqs_target(f"sqs-{kind}", f"Tidings SQS face, {store_label}",
                                       client, server.url, PROJECT, sampler.cpu_seconds)
                            for client in sqs_clients(args)]
            if "zaqar" in args.targets:
                targets.append(Target(
                    f"zaqar-{kind}/raw", f"Tidings Zaqar API, {store_label} [raw]", "raw",
                    ClientPool(lambda: ZaqarApi(server.url, PROJECT)), sampler.cpu_seconds))
            for target in targets:
                run_target(target, args, results)
        finally:
            server.stop()


def run_moto(args: argparse.Namespace, data_dir: Path, results: list[TargetFigures]) -> None:
    executable = Path(sys.executable).with_name("moto_server")
    if not executable.exists():
        found = shutil.which("moto_server")
        if found is None:
            results.append(TargetFigures("moto", "moto", "-",
                                         failed="moto_server not found (pip install moto[server])"))
            return
        executable = Path(found)
    port = free_port()
    server = ServerProcess("moto", [str(executable), "-H", "127.0.0.1", "-p", str(port)],
                           port, data_dir / "moto.log")
    try:
        try:
            server.start()
        except RuntimeError as e:  # it may still run (not ready in time): stopped below
            results.append(TargetFigures("moto", "moto", "-", failed=str(e)[:500]))
            return
        sampler = TreeSampler(server.pid)
        for client in sqs_clients(args):
            # moto's default account; any access key works.
            run_target(sqs_target("moto", f"moto {_version('moto')} (in-memory)", client,
                                  server.url, "AKIAIOSFODNN7EXAMPLE", sampler.cpu_seconds),
                       args, results)
    finally:
        server.stop()


# Report -------------------------------------------------------------------------------


def report(results: list[TargetFigures], meta: dict[str, Any]) -> str:
    done = [r for r in results if r.failed is None]

    def cells(get: Callable[[TargetFigures], str]) -> list[str]:
        return [get(r) for r in done]

    def row(name: str, values: list[str]) -> str:
        return f"| {name} | " + " | ".join(values) + " |"

    def rate(phase: str) -> Callable[[TargetFigures], str]:
        def get(r: TargetFigures) -> str:
            p = r.phases[phase]
            return f"{p.msgs_per_s:,.0f}" + (" (drained)" if p.drained else "")
        return get

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:,.1f}"

    def per_phase(get: Callable[[PhaseFigures], str]) -> Callable[[TargetFigures], str]:
        return lambda r: " / ".join(get(r.phases[p]) for p in ("produce", "consume", "mixed"))

    def call_ms(r: TargetFigures, phase: str, op: str) -> str:
        c = r.phases[phase].calls.get(op)
        return "-" if not c else f"{c['p50_ms']:,.1f} / {c['p99_ms']:,.1f}"

    n = meta["concurrency"]
    lines = [
        "| | " + " | ".join(r.label for r in done) + " |",
        "|---|" + "---:|" * len(done),
        row(f"produce: {n} producers, SendMessageBatch x10, msg/s", cells(rate("produce"))),
        row("  send p50 / p99, ms", cells(lambda r: call_ms(r, "produce", "send"))),
        row(f"consume from backlog: {n} consumers, receive (wait 20 s) + delete batch, msg/s",
            cells(rate("consume"))),
        row(f"mixed: {n} producers (paced) + {n} consumers, offered msg/s",
            cells(lambda r: f"{r.phases['mixed'].offered_msgs_per_s or 0:,.0f}")),
        row("mixed: end to end (deleted), msg/s", cells(rate("mixed"))),
        row("mixed: send to receive delay, p50 ms",
            cells(lambda r: ms(r.phases["mixed"].delay_p50_ms))),
        row("mixed: send to receive delay, p99 ms",
            cells(lambda r: ms(r.phases["mixed"].delay_p99_ms))),
        row("server CPU per message, us: produce / consume / mixed",
            cells(per_phase(lambda p: f"{p.server_cpu_us_per_msg:,.0f}"))),
        row("load generator CPU, share of machine: produce / consume / mixed",
            cells(per_phase(lambda p: f"{100 * p.client_cpu_share:.0f}%"))),
        row("errors (all phases)",
            cells(lambda r: str(sum(sum(p.errors.values()) for p in r.phases.values())))),
    ]
    for r in results:
        if r.failed is not None:
            lines += ["", f"{r.label}: not measured: {r.failed.splitlines()[0][:300]}"]
    m = meta["machine"]
    lines += [
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['ram_gib']} GiB RAM, "
        f"Python {m['python']}; load average at start {m['loadavg_at_start']}. "
        f"Date: {meta['date']}.",
        f"Command: `{meta['command']}`",
        f"Phases: {meta['seconds']:g} s measured each, after {meta['warmup']:g} s unmeasured. "
        f"Bodies: JSON texts of {BODY_SIZES[0]}-{BODY_SIZES[1]} bytes, evenly spread. "
        "Mixed: producers paced at the offered rate "
        + ("given by --rate" if meta["rate"] else "(half of the target's own min of produce "
           "and consume)") + ".",
        "Clients: [raw] = boto3's JSON-protocol requests (same headers, JSON and SigV4 "
        "signature) over one http.client keep-alive connection per thread; [boto3] = one "
        f"boto3 {_version('boto3')} client per thread, retries off. The Zaqar API: POST "
        "messages (10), POST claims?limit=10&wait=20 {ttl 60, grace 60}, DELETE "
        "messages?ids&claim_ids, raw.",
        servers_line(meta),
        "Server CPU: user+sys of the server's process tree (not its Redis/PostgreSQL) over "
        "the measured window / messages. The load generator shares the machine's cores with "
        "the servers: where its share is high, it set the pace.",
    ]
    return "\n".join(lines)


STORE_NOTES = {
    "sqlite": "SQLite: a fresh file",
    "redis": "Redis: a private redis-server, AOF appendfsync always",
    "postgres": "PostgreSQL: the machine's server, a schema of its own",
}


def servers_line(meta: dict[str, Any]) -> str:
    parts = []
    if {"sqs", "zaqar"} & set(meta["targets"]):
        stores = "; ".join(STORE_NOTES[kind] for kind in meta["stores"])
        parts.append(f"Tidings `tidings serve --workers {meta['workers']}`, noauth, the SQS "
                     f"face and the Zaqar API on one server and store ({stores})")
    if "moto" in meta["targets"]:
        parts.append(f"moto {_version('moto')} `moto_server` (werkzeug, threaded, in memory; "
                     "its sends and receives recount the whole queue, so they slow down as "
                     "the backlog grows)")
    return "Servers: " + "; ".join(parts) + "."


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--stores", default="sqlite",
                        help=f"comma-separated Tidings stores, any of {','.join(STORES)} "
                             "(default sqlite)")
    parser.add_argument("--targets", default=",".join(TARGETS),
                        help="comma-separated: sqs (Tidings' SQS face), zaqar (Tidings' "
                             "Zaqar API), moto (default all)")
    parser.add_argument("--client", choices=CLIENTS, default="raw",
                        help="SQS client: raw (boto3's requests over http.client, default), "
                             "boto3, or both")
    parser.add_argument("--quick", action="store_true",
                        help=f"short phases: {QUICK['seconds']:g} s after "
                             f"{QUICK['warmup']:g} s (default {FULL['seconds']:g} s after "
                             f"{FULL['warmup']:g} s)")
    parser.add_argument("--seconds", type=float, help="measured seconds per phase")
    parser.add_argument("--warmup", type=float, help="unmeasured seconds before each phase")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="producer threads, and consumer threads (default 8 each)")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="mixed phase: messages/s offered in all (default: half of each "
                             "target's own min of produce and consume)")
    parser.add_argument("--workers", type=int, default=2, help="Tidings workers (default 2)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--tmp-dir", help="parent for the temporary data directory")
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    if not set(args.stores) <= set(STORES):
        parser.error(f"--stores takes some of {', '.join(STORES)}")
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if not args.targets or not set(args.targets) <= set(TARGETS):
        parser.error(f"--targets takes some of {', '.join(TARGETS)}")
    if not 1 <= args.concurrency <= MAX_CONSUMERS:
        parser.error(f"--concurrency must be 1-{MAX_CONSUMERS} (Tidings answers long polls "
                     "past max_waiting_requests_per_project at once)")
    if args.seconds <= 0 or args.warmup < 0 or args.rate < 0:
        parser.error("--seconds must be > 0, --warmup and --rate >= 0")
    return args


@contextlib.contextmanager
def data_directory(args: argparse.Namespace) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tidings-bench-sqs-", dir=args.tmp_dir))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    python = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd()) else (
        sys.executable)
    script = os.path.relpath(BENCH_DIR / "bench_sqs.py")
    meta: dict[str, Any] = {
        "machine": machine_info(),
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "command": shlex.join([python, script, *(sys.argv[1:] if argv is None else argv)]),
        "seconds": args.seconds, "warmup": args.warmup, "concurrency": args.concurrency,
        "rate": args.rate, "workers": args.workers, "client": args.client,
        "stores": args.stores, "targets": args.targets, "body_bytes": list(BODY_SIZES),
        "versions": {p: _version(p) for p in ("boto3", "botocore", "moto", "tidings")},
    }
    results: list[TargetFigures] = []
    with data_directory(args) as data_dir:
        if "sqs" in args.targets or "zaqar" in args.targets:
            for kind in args.stores:
                try:
                    run_tidings(kind, args, data_dir, results)
                except Exception as e:  # a store that would not start: the others still run
                    why = f"{type(e).__name__}: {e}"
                    print(f"Tidings on {kind} failed: {why}", file=sys.stderr, flush=True)
                    results.append(TargetFigures(f"tidings-{kind}", f"Tidings {kind}", "-",
                                                 failed=why[:500]))
        if "moto" in args.targets:
            run_moto(args, data_dir, results)
    print(report(results, meta), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"meta": meta, "results": [asdict(r) for r in results]}, indent=2) + "\n")
    failed = any(r.failed is not None for r in results)
    errors = any(sum(p.errors.values()) for r in results for p in r.phases.values())
    return 1 if failed or errors or not results else 0


if __name__ == "__main__":
    sys.exit(main())
