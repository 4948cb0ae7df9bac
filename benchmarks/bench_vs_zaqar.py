"""Tidings against real OpenStack Zaqar 23.0.1, side by side, in one run on one machine.

What it does:

* installs Zaqar 23.0.1 from PyPI (with gunicorn and the redis client) into a scratch venv
  outside the repository, cached under ``~/.cache/tidings-bench/zaqar-venv`` and reused;
* runs Zaqar's WSGI app under gunicorn (2 sync workers) over a private redis-server with
  no persistence (Zaqar's default there), a SQLite management store, no auth;
* runs ``tidings serve`` (2 workers) over Redis configured as Zaqar's (``redis-volatile``:
  no persistence, the like-for-like comparison), over Redis with AOF ``appendfsync
  always`` (``redis``: what the README recommends, every acknowledged message on disk),
  SQLite (a fresh file) and PostgreSQL (a schema of its own on the machine's server,
  dropped after);
* drives the same load against each with the same client, in this order:

  - ``post-1``   single-message posts at concurrency 32 (server CPU per post measured here);
  - ``post-10``  10-message batch posts at concurrency 32;
  - ``consume``  claim 10, then DELETE each claimed message with its claim id, at
                 concurrency 32, from a backlog: the queue ``post-10`` filled (loadgen), or
                 one ``tidings bench --prefill`` puts there first (no more than post-10
                 stored, 3x what post-1 reached); "(drained)" marks a backlog that ran out;
  - ``post-64``  single-message posts at concurrency 64: p50/p99 latency and worker RSS
                 under load.

  Message bodies are realistic JSON objects of 256-1,024 bytes. The client is
  ``tidings bench`` (run as a subprocess, ``--json``) when it is installed; otherwise, or
  with ``--client loadgen``, the in-process asyncio client of ``benchmarks/loadgen.py``.

It prints one table: Zaqar, then each Tidings store with its ratio to Zaqar, next to the
issue's targets (>= 10x posts and consumption, >= 5x batches, <= 0.25 ms server CPU per
post, p99 at concurrency 64 below Zaqar's p50 there), plus the machine, the date and the
exact command. Server CPU is the user+system time of the server's whole process tree
(master and workers; not the redis-server or PostgreSQL behind it) over the phase,
divided by its requests.

Run:  .venv/bin/python benchmarks/bench_vs_zaqar.py [--quick]
      [--stores zaqar,redis-volatile,redis,sqlite,postgres]
      [--json out.json] [--client auto|tidings|loadgen]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from loadgen import Client, Step, percentile, run_phase
from servers import BENCH_DIR, TreeSampler, tidings_server
from stores import bench_store

from tests.instances import RedisInstance
from tests.server import ServerProcess, free_port

ZAQAR_VERSION = "23.0.1"
ZAQAR_SPEC = [f"zaqar=={ZAQAR_VERSION}", "gunicorn", "redis"]
DEFAULT_VENV = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / (
    "tidings-bench/zaqar-venv"
)
SERVERS = ("zaqar", "redis-volatile", "redis", "sqlite", "postgres")
LABELS = {
    "zaqar": "Zaqar (Redis)",
    # The like-for-like comparison: Redis configured as Zaqar's here (no persistence).
    "redis-volatile": "Tidings Redis, no AOF",
    "redis": "Tidings Redis",
    "sqlite": "Tidings SQLite",
    "postgres": "Tidings PostgreSQL",
}
MIB = 1024 * 1024
FULL = {"duration": 10.0, "warmup": 2.0}
QUICK = {"duration": 2.0, "warmup": 0.5}
BODY_SIZES = (256, 1024)
MESSAGE_SIZE = sum(BODY_SIZES) // 2  # what `tidings bench` is given: one size, the middle
MESSAGE_TTL = 600
CLAIM_LIMIT = 10
CLAIM_BODY = json.dumps({"ttl": 60, "grace": 60}).encode()
TARGET_THROUGHPUT = {"post-1": 10.0, "consume": 10.0, "post-10": 5.0}
TARGET_CPU_MS = 0.25


# Zaqar --------------------------------------------------------------------------------


def ensure_zaqar_venv(venv: Path) -> Path:
    """The venv's python, installing Zaqar into it first unless a finished install is there."""
    python = venv / "bin" / "python"
    marker = venv / ".tidings-bench-installed"
    if marker.exists() and marker.read_text().split() == ZAQAR_SPEC and python.exists():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    log = venv.parent / "zaqar-pip.log"
    print(f"installing Zaqar {ZAQAR_VERSION} into {venv} (log: {log})", file=sys.stderr)
    with open(log, "wb") as out:
        # The base interpreter, not this venv's: Zaqar's dependencies must not mix with ours.
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(venv)], check=True, stdout=out, stderr=out)
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *ZAQAR_SPEC],
            stdout=out, stderr=out, check=False,
        )
    if done.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-10:]
        raise RuntimeError("installing Zaqar failed:\n" + "\n".join(tail))
    marker.write_text(" ".join(ZAQAR_SPEC) + "\n")
    return python


ZAQAR_CONF = """\
[DEFAULT]
auth_strategy =
unreliable = True
debug = False
[drivers]
transport = wsgi
message_store = redis
management_store = sqlalchemy
[drivers:message_store:redis]
uri = redis://127.0.0.1:{redis_port}
[drivers:management_store:sqlalchemy]
uri = sqlite:///{mgmt}
[storage]
message_pipeline = {pipeline}
"""


class ZaqarServer(ServerProcess):
    """Zaqar's WSGI app (zaqar.transport.wsgi.app) under gunicorn over its own redis-server.

    The app reads no command line (it parses ``args=[]``) and finds its configuration in
    oslo.config's standard places, the first being ``~/.zaqar/zaqar.conf``: the server runs
    with HOME set to its own directory, which holds that file.
    """

    def __init__(self, python: Path, data_dir: Path, workers: int, notifier: bool) -> None:
        self.python = python
        self.home = data_dir / "home"
        self.redis = RedisInstance(data_dir / "redis", appendonly=False)
        port = free_port()
        argv = [str(python), "-m", "gunicorn", "--workers", str(workers),
                "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
                "zaqar.transport.wsgi.app:app"]
        super().__init__("zaqar", argv, port, data_dir / "zaqar.log",
                         env={"HOME": str(self.home)})
        self.notifier = notifier

    def start(self) -> ZaqarServer:
        self.redis.start()
        conf_dir = self.home / ".zaqar"
        conf_dir.mkdir(parents=True, exist_ok=True)
        mgmt = self.home / "mgmt.sqlite"
        (conf_dir / "zaqar.conf").write_text(ZAQAR_CONF.format(
            redis_port=self.redis.port, mgmt=mgmt,
            pipeline="zaqar.notification.notifier" if self.notifier else "",
        ))
        # Zaqar's migration tool fails on SQLite: create its management tables directly.
        subprocess.run(
            [str(self.python), "-c",
             "import sys, sqlalchemy as sa\n"
             "from zaqar.storage.sqlalchemy import tables\n"
             "tables.metadata.create_all(sa.create_engine(sys.argv[1]))",
             f"sqlite:///{mgmt}"],
            check=True, capture_output=True, timeout=120,
        )
        super().start()
        return self

    def worker_pids(self) -> set[int]:
        """gunicorn's workers are the master's direct children."""
        try:
            return {child.pid for child in psutil.Process(self.pid).children()}
        except psutil.NoSuchProcess:
            return set()

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self.redis.stop()


def tidings_worker_pids(server: ServerProcess) -> set[int]:
    found = server.worker_pids()
    return found or {server.pid}  # one worker: the server process itself serves


def smoke_test(url: str) -> None:
    """Post, claim and delete one message: the server answers the API, not just a socket."""
    headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": "bench-smoke"}
    with httpx.Client(base_url=url + "/v2", headers=headers, timeout=30) as http:
        posted = http.post("/queues/smoke/messages",
                           json={"messages": [{"body": {"hello": 1}, "ttl": 60}]})
        claimed = http.post("/queues/smoke/claims?limit=1", json={"ttl": 60, "grace": 60})
        if posted.status_code != 201 or claimed.status_code != 201:
            raise RuntimeError(f"{url} failed the smoke test: post {posted.status_code} "
                               f"{posted.text[:200]!r}; claim {claimed.status_code}")
        href = claimed.json()["messages"][0]["href"]
        deleted = http.delete(url + href)
        if deleted.status_code != 204:
            raise RuntimeError(f"{url}: delete of a claimed message gave {deleted.status_code}")


# Load ---------------------------------------------------------------------------------


def message_bodies(count: int, seed: int = 12) -> list[dict[str, Any]]:
    """JSON bodies whose serialized size is spread evenly over 256-1,024 bytes."""
    rng = random.Random(seed)
    bodies = []
    for i in range(count):
        size = rng.randint(*BODY_SIZES)
        body: dict[str, Any] = {"event": "order.updated", "seq": i, "source": "bench",
                                "attributes": {"region": "eu-west", "priority": i % 5},
                                "data": ""}
        body["data"] = "x" * max(0, size - len(json.dumps(body)))
        bodies.append(body)
    return bodies


def payloads(per_request: int, count: int = 64) -> list[bytes]:
    bodies = message_bodies(count * per_request)
    return [
        json.dumps({"messages": [{"body": b, "ttl": MESSAGE_TTL}
                                 for b in bodies[i * per_request:(i + 1) * per_request]]}).encode()
        for i in range(count)
    ]


def post_step(url: str, per_request: int) -> Step:
    cycle = itertools.cycle(payloads(per_request))

    async def step(client: Client) -> None:
        status, _ = await client.call("POST", url, "post", next(cycle))
        if status == 201:
            client.rec.messages += per_request

    return step


def consume_step(server_url: str, queue_url: str, limit: int) -> Step:
    """Claim up to ``limit`` messages, then delete each one with its claim (its href)."""
    claim_url = f"{queue_url}/claims?limit={limit}"

    async def step(client: Client) -> None:
        status, body = await client.call("POST", claim_url, "claim", CLAIM_BODY)
        if status == 204:
            client.rec.done = True  # the queue is drained
            return
        if status != 201:
            return
        for message in json.loads(body)["messages"]:
            status, _ = await client.call("DELETE", server_url + message["href"], "delete")
            if status == 204:
                client.rec.messages += 1

    return step


@dataclass
class Phase:
    name: str
    concurrency: int
    per_request: int = 1


PHASES = (Phase("post-1", 32), Phase("post-10", 32, 10), Phase("consume", 32),
          Phase("post-64", 64))


@dataclass
class PhaseFigures:
    phase: str
    concurrency: int
    elapsed_s: float
    requests: int
    messages: int
    req_per_s: float
    msgs_per_s: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int]
    server_cpu_s: float
    server_cpu_ms_per_req: float
    bench_cpu_share: float  # of the whole machine (all cores)
    drained: bool = False
    ops: dict[str, dict[str, float]] = field(default_factory=dict)


class WorkerRss:
    """Samples each worker's RSS on a thread; keeps each worker's peak since reset()."""

    def __init__(self, pids: Callable[[], set[int]], interval: float = 0.1) -> None:
        self._pids = pids
        self.interval = interval
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="worker-rss", daemon=True)

    def now(self) -> dict[int, int]:
        found = {}
        for pid in self._pids():
            with contextlib.suppress(psutil.Error):
                found[pid] = psutil.Process(pid).memory_info().rss
        return found

    def sample(self) -> None:
        for pid, rss in self.now().items():
            self.peaks[pid] = max(self.peaks.get(pid, 0), rss)

    def reset(self) -> None:
        self.peaks = {}
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> WorkerRss:
        self.reset()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def _own_cpu() -> float:
    """This process alone: its children are the servers under test."""
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


def _event_loop_runner() -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        return asyncio.run
    return uvloop.run


class LoadgenClient:
    """The in-process aiohttp client of benchmarks/loadgen.py."""

    name = "loadgen (benchmarks/loadgen.py, in-process asyncio + aiohttp, one process)"
    bodies = f"message bodies of {BODY_SIZES[0]}-{BODY_SIZES[1]} bytes of JSON, spread evenly"

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run = _event_loop_runner()

    def phase(self, url: str, queue: str, phase: Phase, sampler: TreeSampler,
              prefill: int = 0) -> PhaseFigures:
        """``prefill`` is unused: consumers drain the queue the batch posts filled."""
        headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": "bench",
                   "Content-Type": "application/json", "Accept": "application/json"}
        queue_url = f"{url}/v2/queues/{queue}"
        step = (consume_step(url, queue_url, CLAIM_LIMIT) if phase.name == "consume"
                else post_step(f"{queue_url}/messages", phase.per_request))
        marks: dict[bool, tuple[float, float]] = {}

        def on_window(opening: bool) -> None:
            marks[opening] = (sampler.cpu_seconds(), _own_cpu())

        done = self.run(run_phase(headers, phase.concurrency, self.args.duration, 10_000_000,
                                  step, warmup=self.args.warmup, on_window=on_window))
        server_cpu = marks[False][0] - marks[True][0]
        own_cpu = marks[False][1] - marks[True][1]
        rec = done.recorder
        latencies = rec.all_latencies()
        ops = {}
        for op, values in rec.latencies.items():
            values.sort()
            ops[op] = {"count": len(values), "p50_ms": 1000 * percentile(values, 0.5),
                       "p99_ms": 1000 * percentile(values, 0.99)}
        return PhaseFigures(
            phase=phase.name, concurrency=phase.concurrency, elapsed_s=done.elapsed,
            requests=rec.requests, messages=rec.messages,
            req_per_s=rec.requests / done.elapsed, msgs_per_s=rec.messages / done.elapsed,
            p50_ms=1000 * percentile(latencies, 0.5), p99_ms=1000 * percentile(latencies, 0.99),
            errors=dict(rec.errors), server_cpu_s=server_cpu,
            server_cpu_ms_per_req=1000 * server_cpu / rec.requests if rec.requests else 0.0,
            bench_cpu_share=own_cpu / done.elapsed / psutil.cpu_count(),
            drained=rec.done, ops=ops,
        )


class TidingsBenchClient:
    """``tidings bench`` as a subprocess, reading its ``--json`` document.

    It has no warm-up. The server CPU window spans the whole subprocess (queue creation
    and deletion, and the consumers' prefill, included), so the CPU per request it gives
    is, if anything, a little high (and meaningless for ``consume``).
    """

    name = "tidings bench (subprocess, its default worker processes)"
    bodies = f"messages of ~{MESSAGE_SIZE} bytes of JSON each (--message-size {MESSAGE_SIZE})"

    def __init__(self, args: argparse.Namespace, executable: str) -> None:
        self.args = args
        self.executable = executable

    def phase(self, url: str, queue: str, phase: Phase, sampler: TreeSampler,
              prefill: int = 0) -> PhaseFigures:
        """``queue`` is unused: each run of ``tidings bench`` makes (and deletes) queues of
        its own, so consumers drain ``prefill`` messages it posts to theirs first."""
        consume = phase.name == "consume"
        argv = [self.executable, "bench", url,
                "--producers", "0" if consume else "1",
                "--consumers", "1" if consume else "0",
                "--concurrency", str(phase.concurrency),
                "--message-size", str(MESSAGE_SIZE),
                "--batch", str(phase.per_request), "--claim-limit", str(CLAIM_LIMIT),
                "--duration", str(self.args.duration),
                "--queues", "1", "--projects", "1", "--quiet"]
        if consume:
            argv += ["--prefill", str(prefill)]
        if self.args.bench_processes:
            argv += ["--processes", str(self.args.bench_processes)]
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            argv += ["--json", out.name]
            before = sampler.cpu_seconds()
            started = time.perf_counter()
            done = subprocess.run(argv, capture_output=True, timeout=600, check=False)
            wall = time.perf_counter() - started
            server_cpu = sampler.cpu_seconds() - before
            if done.returncode != 0:
                raise RuntimeError(f"{shlex.join(argv)} failed ({done.returncode}):\n"
                                   f"{done.stderr.decode(errors='replace')[-2000:]}")
            doc = json.loads(Path(out.name).read_text())
        role = doc["roles"]["consumer" if consume else "producer"]
        requests = sum(int(r.get("requests", 0)) for r in doc["roles"].values())
        latency = role.get("latency_ms", {})
        elapsed = float(doc.get("duration") or wall)
        return PhaseFigures(
            phase=phase.name, concurrency=phase.concurrency, elapsed_s=elapsed,
            requests=requests, messages=int(role.get("messages", 0)),
            req_per_s=float(role.get("throughput_rps", 0.0)),
            msgs_per_s=float(role.get("throughput_mps", 0.0)),
            p50_ms=float(latency.get("p50", 0.0)), p99_ms=float(latency.get("p99", 0.0)),
            errors={str(k): int(v) for k, v in role.get("errors", {}).items()},
            server_cpu_s=server_cpu,
            server_cpu_ms_per_req=1000 * server_cpu / requests if requests else 0.0,
            bench_cpu_share=float(doc.get("bench_cpu_share", 0.0)),
            # Claims find nothing once the backlog is claimed: a drained queue, as against
            # the few empty claims of consumers racing for the last messages.
            drained=consume and bool(role.get("claims_empty", 0))
            and int(role.get("messages", 0)) + phase.concurrency * CLAIM_LIMIT >= prefill,
        )


def pick_client(args: argparse.Namespace) -> LoadgenClient | TidingsBenchClient:
    executable = str(Path(sys.executable).with_name("tidings"))
    if args.client in ("auto", "tidings"):
        probe = subprocess.run([executable, "bench", "--help"], capture_output=True,
                               timeout=60, check=False) if Path(executable).exists() else None
        if probe is not None and probe.returncode == 0:
            return TidingsBenchClient(args, executable)
        if args.client == "tidings":
            raise SystemExit(f"{executable} bench is not usable")
        print("`tidings bench` is not available: falling back to benchmarks/loadgen.py",
              file=sys.stderr)
    return LoadgenClient(args)


# One server ---------------------------------------------------------------------------


@dataclass
class ServerFigures:
    server: str
    workers: int
    phases: dict[str, PhaseFigures] = field(default_factory=dict)
    rss_idle_mib: list[float] = field(default_factory=list)  # per worker
    rss_load_mib: list[float] = field(default_factory=list)  # per worker, peak at c=64
    log_tail: str = ""


def consume_prefill(figures: ServerFigures) -> int:
    """Messages to put before consumers start: no more than the batch posts stored (what
    the in-process client drains), and three times what single posts reached over the
    same time, which claim-then-delete (1.1 requests per message) should not exceed;
    posting the backlog one batch at a time costs time, so no more than that."""
    batch = figures.phases["post-10"].messages
    single = figures.phases["post-1"]
    in_flight = 4 * 32 * CLAIM_LIMIT  # what concurrent claims hold at once, with room
    return max(in_flight, min(batch, int(3 * single.msgs_per_s * single.elapsed_s)))


def measure_server(
    kind: str, server: ServerProcess, workers: Callable[[], set[int]],
    client: LoadgenClient | TidingsBenchClient,
) -> ServerFigures:
    figures = ServerFigures(server=kind, workers=len(workers()))
    smoke_test(server.url)
    rss = WorkerRss(workers)
    figures.rss_idle_mib = sorted(v / MIB for v in rss.now().values())
    sampler = TreeSampler(server.pid)
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    for phase in PHASES:
        if phase.name == "post-64":
            with rss:
                result = client.phase(server.url, queue + "-64", phase, sampler)
            figures.rss_load_mib = sorted(v / MIB for v in rss.peaks.values())
        elif phase.name == "consume":
            result = client.phase(server.url, queue + "-10", phase, sampler,
                                  prefill=consume_prefill(figures))
        else:
            target = queue + ("-1" if phase.name == "post-1" else "-10")
            result = client.phase(server.url, target, phase, sampler)
        figures.phases[phase.name] = result
        errors = sum(result.errors.values())
        print(f"  {LABELS[kind]:<21} {phase.name:<8} c={phase.concurrency:<3} "
              f"{result.msgs_per_s:8,.0f} msg/s {result.req_per_s:8,.0f} req/s  "
              f"p50 {result.p50_ms:6.1f} ms p99 {result.p99_ms:6.1f} ms  "
              f"server {result.server_cpu_ms_per_req:.3f} ms CPU/req  errors {errors}"
              + (f" {result.errors}" if errors else "")
              + ("  (queue drained)" if result.drained else ""),
              file=sys.stderr, flush=True)
    return figures


def run_zaqar(args: argparse.Namespace, data_dir: Path,
              client: LoadgenClient | TidingsBenchClient) -> ServerFigures:
    python = ensure_zaqar_venv(Path(args.zaqar_venv).expanduser())
    server = ZaqarServer(python, data_dir / "zaqar", args.workers, notifier=args.zaqar_notifier)
    try:
        server.start()
        figures = measure_server("zaqar", server, server.worker_pids, client)
    finally:
        log = server.log()
        server.stop()
    # Its start-up always logs that osprofiler (unconfigured) is off: not worth showing.
    figures.log_tail = "\n".join(
        line for line in log.splitlines() if "osprofiler" not in line
    )[-3000:]
    return figures


def run_tidings(args: argparse.Namespace, kind: str, data_dir: Path,
                client: LoadgenClient | TidingsBenchClient) -> ServerFigures:
    with bench_store(kind, data_dir / kind) as store:
        server = tidings_server(store.data_dir, args.workers, store.uri)
        try:
            server.start()
            figures = measure_server(kind, server, lambda: tidings_worker_pids(server), client)
        finally:
            log = server.log()
            server.stop()
    figures.log_tail = "\n".join(
        line for line in log.splitlines()[-20:] if " serving on " not in line
    )
    return figures


# Report -------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "ram_gib": round(psutil.virtual_memory().total / 1024**3, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def report(results: dict[str, ServerFigures], meta: dict[str, Any]) -> str:
    zaqar = results.get("zaqar")
    kinds = list(results)

    def ratio(kind: str, value: float, base: float | None) -> str:
        if kind == "zaqar" or not base:
            return ""
        return f" (x{value / base:.1f})"

    def throughput(phase: str) -> list[str]:
        base = zaqar.phases[phase].msgs_per_s if zaqar else None
        cells = []
        for kind in kinds:
            f = results[kind].phases[phase]
            cell = f"{f.msgs_per_s:,.0f}{ratio(kind, f.msgs_per_s, base)}"
            if base and kind != "zaqar":
                cell += " ✓" if f.msgs_per_s >= TARGET_THROUGHPUT[phase] * base else " ✗"
            if f.drained:
                cell += " (drained)"
            cells.append(cell)
        return cells

    def row(name: str, target: str, cells: list[str]) -> str:
        return f"| {name} | {target} | " + " | ".join(cells) + " |"

    cpu_cells = []
    for kind in kinds:
        ms = results[kind].phases["post-1"].server_cpu_ms_per_req
        mark = "" if kind == "zaqar" else (" ✓" if ms <= TARGET_CPU_MS else " ✗")
        cpu_cells.append(f"{ms:.3f}{mark}")
    zaqar_p50 = zaqar.phases["post-64"].p50_ms if zaqar else None
    p99_cells = []
    for kind in kinds:
        p99 = results[kind].phases["post-64"].p99_ms
        mark = "" if kind == "zaqar" or zaqar_p50 is None else (
            " ✓" if p99 < zaqar_p50 else " ✗")
        p99_cells.append(f"{p99:.1f}{mark}")

    def per_kind(get: Callable[[ServerFigures], str]) -> list[str]:
        return [get(results[kind]) for kind in kinds]

    lines = [
        "| c=32 unless said | target | " + " | ".join(LABELS[k] for k in kinds) + " |",
        "|---|---|" + "---:|" * len(kinds),
        row("single-message posts, msg/s", "≥ 10x Zaqar", throughput("post-1")),
        row("consumption (claim 10, delete each), msg/s", "≥ 10x Zaqar", throughput("consume")),
        row("10-message batch posts, msg/s", "≥ 5x Zaqar", throughput("post-10")),
        row("server CPU per single post, ms", f"≤ {TARGET_CPU_MS}", cpu_cells),
        row("single posts at c=64: p50, ms", "", per_kind(
            lambda r: f"{r.phases['post-64'].p50_ms:.1f}")),
        row("single posts at c=64: p99, ms", "< Zaqar's p50", p99_cells),
        row("RSS per worker, idle, MiB", "", per_kind(
            lambda r: f"{_mean(r.rss_idle_mib):.0f}")),
        row("RSS per worker at c=64, MiB", "", per_kind(
            lambda r: f"{_mean(r.rss_load_mib):.0f}")),
        row("errors (all phases)", "0", per_kind(
            lambda r: str(sum(sum(p.errors.values()) for p in r.phases.values())))),
        row("bench CPU share of the machine", "", per_kind(lambda r: "/".join(
            f"{100 * r.phases[p.name].bench_cpu_share:.0f}%" for p in PHASES))),
    ]
    m = meta["machine"]
    for kind, why in meta.get("failed", {}).items():
        lines += ["", f"{LABELS[kind]}: not measured: {why.splitlines()[0][:300]}"]
    lines += [
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['ram_gib']} GiB RAM, "
        f"Python {m['python']}; load average at start {m['loadavg_at_start']}. "
        f"Date: {meta['date']}.",
        f"Command: `{meta['command']}`",
        f"Client: {meta['client']}; {meta['duration_s']} s measured per phase"
        + (f" after {meta['warmup_s']} s warm-up" if meta["client"].startswith("loadgen") else "")
        + f"; {meta['bodies']}.",
        f"Servers: {meta['workers']} workers each. Zaqar {ZAQAR_VERSION}: gunicorn sync "
        "workers, Redis message store without persistence (Zaqar's default), SQLite "
        "management store, no auth"
        + (", notifier pipeline on" if meta["zaqar_notifier"] else "")
        + ". Tidings Redis, no AOF: Redis as Zaqar's; Tidings Redis: AOF appendfsync "
        "always; SQLite: one file; PostgreSQL: the "
        "machine's server, own schema.",
        "Server CPU: user+sys of the server's process tree (not its Redis/PostgreSQL) over "
        "the post-1 phase / requests. Bench CPU share: post-1/post-10/consume/post-64, "
        "fraction of all cores. The load generator shares the machine's cores with the "
        "servers. ✓/✗: target met/missed.",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", default=",".join(SERVERS),
                        help=f"comma-separated servers to run, any of {','.join(SERVERS)} "
                             "(zaqar is real Zaqar; the others are Tidings' stores)")
    parser.add_argument("--quick", action="store_true",
                        help="short run: 2 s phases (and 0.5 s warm-up with loadgen); "
                             "default 10 s / 2 s")
    parser.add_argument("--duration", type=float, help="measured seconds per phase")
    parser.add_argument("--warmup", type=float, help="unmeasured warm-up seconds per phase")
    parser.add_argument("--workers", type=int, default=2, help="server workers (default 2)")
    parser.add_argument("--client", choices=("auto", "tidings", "loadgen"), default="auto",
                        help="load generator: `tidings bench` (auto: when installed) or "
                             "benchmarks/loadgen.py")
    parser.add_argument("--bench-processes", type=int, default=0,
                        help="--processes for `tidings bench` (default: its own)")
    parser.add_argument("--zaqar-venv", default=str(DEFAULT_VENV),
                        help=f"where Zaqar is installed (cached; default {DEFAULT_VENV})")
    parser.add_argument("--zaqar-notifier", action=argparse.BooleanOptionalAction, default=True,
                        help="Zaqar's notifier in its message pipeline, as Tidings always "
                             "has subscriptions on (default on)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--tmp-dir", help="parent for the temporary data directory")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    if not args.stores or not set(args.stores) <= set(SERVERS):
        parser.error(f"--stores takes some of {', '.join(SERVERS)}")
    return args


@contextlib.contextmanager
def data_directory(args: argparse.Namespace) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tidings-vs-zaqar-", dir=args.tmp_dir))
    try:
        yield path
    finally:
        if not args.keep:
            shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    client = pick_client(args)
    python = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd()) else (
        sys.executable)
    script = os.path.relpath(BENCH_DIR / "bench_vs_zaqar.py")
    meta: dict[str, Any] = {
        "machine": machine_info(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "command": shlex.join([python, script, *(sys.argv[1:] if argv is None else argv)]),
        "client": client.name,
        "bodies": client.bodies,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "workers": args.workers,
        "zaqar_version": ZAQAR_VERSION,
        "zaqar_notifier": args.zaqar_notifier,
        "phases": [asdict(p) for p in PHASES],
        "body_bytes": list(BODY_SIZES),
    }
    results: dict[str, ServerFigures] = {}
    failed: dict[str, str] = {}
    with data_directory(args) as data_dir:
        for kind in args.stores:
            print(f"{LABELS[kind]}:", file=sys.stderr, flush=True)
            try:
                if kind == "zaqar":
                    results[kind] = run_zaqar(args, data_dir, client)
                else:
                    results[kind] = run_tidings(args, kind, data_dir, client)
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                # One server failing must not cost the figures of the others.
                failed[kind] = f"{type(exc).__name__}: {exc}"
                print(f"  {LABELS[kind]} failed: {failed[kind]}", file=sys.stderr, flush=True)
    meta["failed"] = failed
    if not results:
        return 1
    print(report(results, meta), flush=True)
    for kind, figures in results.items():
        if figures.log_tail.strip():
            print(f"\n{LABELS[kind]} log (tail):\n{figures.log_tail}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"meta": meta, "results": {k: asdict(v) for k, v in results.items()}}, indent=2
        ) + "\n")
    return 1 if failed or any(sum(p.errors.values()) for r in results.values()
                              for p in r.phases.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
