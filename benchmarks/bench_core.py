"""Core throughput/latency benchmark for Tidings, with an in-run HTTP-stack ceiling.

Starts ``tidings serve`` over a fresh store for each of ``--stores`` (SQLite file,
private Redis with AOF ``appendfsync always``, PostgreSQL schema), plus a
trivial Falcon ASGI app on the same server stack (uvicorn + uvloop + httptools, same
worker count) as the "ceiling", then drives both from this process with an asyncio
aiohttp client at each concurrency:

* ``post-1``   single-message posts (POST /v2/queues/{q}/messages, 1 message);
* ``ceiling``  the same request to the trivial app (right after ``post-1``);
* ``post-10``  10-message batch posts;
* ``consume``  claim 10 (POST .../claims?limit=10), then bulk-delete exactly those ids
               (DELETE .../messages?ids=a,b,...&claim_ids=c); drains the ``post-10``
               queue, so that phase doubles as the pre-fill.

After the phases, ``footprint`` posts 20,000 more messages and reports the storage they
take per message (Redis memory, PostgreSQL rows and bytes, SQLite file growth).

Run:  /work/venv/bin/python benchmarks/bench_core.py [--stores sqlite,redis,postgres]
      [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
from loadgen import (
    PhaseRun,
    Step,
    consume_step,
    message_payload,
    percentile,
    post_step,
    run_phase,
)
from servers import ServerProcess, TreeSampler, ceiling_server, tidings_server
from stores import STORES, BenchStore, Footprint, bench_store

MIB = 1024 * 1024
FULL: dict[str, Any] = {
    "concurrency": "8,32,64", "duration": 8.0, "warmup": 1.0, "max_requests": 1_000_000
}
QUICK: dict[str, Any] = {"concurrency": "8", "duration": 1.0, "warmup": 0.2, "max_requests": 20_000}


@dataclass
class PhaseResult:
    concurrency: int
    phase: str
    target: str
    elapsed_s: float
    requests: int
    messages: int
    req_per_s: float
    msgs_per_s: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int]
    error_count: int
    server_cpu_pct: float
    client_cpu_pct: float
    server_peak_rss_mib: float
    server_us_per_req: float = 0.0
    machine_cpu_pct: float = 0.0
    steal_pct: float = 0.0
    ops: dict[str, dict[str, float]] = field(default_factory=dict)
    drained: bool = False
    store: str = "sqlite"


def machine_info() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": os.getloadavg(),
    }


def summarize(
    run: PhaseRun, concurrency: int, phase: str, target: str,
    server_cpu: float, client_cpu: float, peak_rss: int,
) -> PhaseResult:
    rec = run.recorder
    lat = rec.all_latencies()
    ops = {}
    for op, values in rec.latencies.items():
        values.sort()
        ops[op] = {
            "count": len(values),
            "p50_ms": percentile(values, 0.50) * 1000,
            "p99_ms": percentile(values, 0.99) * 1000,
        }
    elapsed = run.elapsed
    return PhaseResult(
        concurrency=concurrency,
        phase=phase,
        target=target,
        elapsed_s=round(elapsed, 3),
        requests=rec.requests,
        messages=rec.messages,
        req_per_s=rec.requests / elapsed,
        msgs_per_s=rec.messages / elapsed,
        p50_ms=percentile(lat, 0.50) * 1000,
        p99_ms=percentile(lat, 0.99) * 1000,
        errors=dict(rec.errors),
        error_count=sum(rec.errors.values()),
        server_cpu_pct=100 * server_cpu / elapsed,
        client_cpu_pct=100 * client_cpu / elapsed,
        server_peak_rss_mib=peak_rss / MIB,
        server_us_per_req=1e6 * server_cpu / rec.requests if rec.requests else 0.0,
        ops=ops,
        drained=rec.done,
    )


def _client_cpu() -> float:
    times = psutil.Process().cpu_times()
    return times.user + times.system


def _machine_cpu() -> tuple[float, float]:
    """Busy and stolen CPU seconds over all cores since boot."""
    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0)
    return sum(times) - idle, getattr(times, "steal", 0.0)


async def measure(
    args: argparse.Namespace,
    server: ServerProcess,
    sampler: TreeSampler,
    concurrency: int,
    phase: str,
    step: Step,
    headers: dict[str, str],
) -> PhaseResult:
    marks: dict[bool, tuple[float, float, float, float]] = {}

    def on_window(opening: bool) -> None:
        if opening:
            sampler.reset_window()
        marks[opening] = (sampler.cpu_seconds(), _client_cpu(), *_machine_cpu())

    run = await run_phase(
        headers, concurrency, args.duration, args.max_requests, step,
        warmup=args.warmup, on_window=on_window,
    )
    server_cpu, client_cpu, busy, steal = (
        end - begin for begin, end in zip(marks[True], marks[False], strict=True)
    )
    sampler.sample()
    result = summarize(
        run, concurrency, phase, server.name, server_cpu, client_cpu, sampler.window_peak_rss
    )
    result.machine_cpu_pct = 100 * busy / run.elapsed
    result.steal_pct = 100 * steal / run.elapsed
    note = " (queue drained)" if result.drained else ""
    print(
        f"  c={concurrency:<3} {phase:<8} {result.req_per_s:8.0f} req/s "
        f"{result.msgs_per_s:8.0f} msg/s  p50 {result.p50_ms:6.1f} ms  "
        f"p99 {result.p99_ms:6.1f} ms  errors {result.error_count}{note}",
        file=sys.stderr,
        flush=True,
    )
    return result


async def run_all(
    args: argparse.Namespace,
    tidings: ServerProcess,
    ceiling: ServerProcess | None,
    t_sampler: TreeSampler,
    c_sampler: TreeSampler | None,
) -> list[PhaseResult]:
    headers = {
        "Client-ID": str(uuid.uuid4()),
        "X-Project-ID": "bench",
        "Content-Type": "application/json",
        "Accept": "application/json",
    }
    base = tidings.url + "/v2"
    one = message_payload(1, ttl=args.message_ttl)
    ten = message_payload(10, ttl=args.message_ttl)
    results: list[PhaseResult] = []
    for c in args.concurrency:
        q1, q10 = f"post1-c{c}", f"post10-c{c}"
        results.append(await measure(
            args, tidings, t_sampler, c, "post-1",
            post_step(f"{base}/queues/{q1}/messages", one, 1), headers,
        ))
        if ceiling is not None and c_sampler is not None:
            results.append(await measure(
                args, ceiling, c_sampler, c, "ceiling",
                post_step(f"{ceiling.url}/v2/queues/{q1}/messages", one, 1), headers,
            ))
        results.append(await measure(
            args, tidings, t_sampler, c, "post-10",
            post_step(f"{base}/queues/{q10}/messages", ten, 10), headers,
        ))
        results.append(await measure(
            args, tidings, t_sampler, c, "consume",
            consume_step(base, q10, limit=10), headers,
        ))
    return results


async def fill_for_footprint(args: argparse.Namespace, tidings: ServerProcess) -> int:
    """Post ``--footprint-messages`` messages in batches of 10; returns how many stored."""
    headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": "bench-footprint",
               "Content-Type": "application/json"}
    ten = message_payload(10, ttl=args.message_ttl)
    run = await run_phase(
        headers, 16, 600.0, args.footprint_messages // 10,
        post_step(f"{tidings.url}/v2/queues/footprint/messages", ten, 10), warmup=0.0,
    )
    return run.recorder.messages


def markdown(results: list[PhaseResult], meta: dict[str, Any]) -> str:
    lines = [
        "| store | conc. | phase | target | requests | req/s | msgs/s | p50 ms | p99 ms | errors "
        "| server CPU | client CPU | machine CPU | server RSS MiB |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        errors = str(r.error_count)
        if r.errors:
            errors += " (" + ", ".join(f"{k}: {v}" for k, v in sorted(r.errors.items())) + ")"
        msgs = f"{r.msgs_per_s:,.0f}" if r.phase != "ceiling" else "—"
        if r.drained:
            msgs += " (drained)"
        lines.append(
            f"| {r.store} | {r.concurrency} | {r.phase} | {r.target} | {r.requests:,} "
            f"| {r.req_per_s:,.0f} "
            f"| {msgs} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {errors} "
            f"| {r.server_cpu_pct:.0f}% | {r.client_cpu_pct:.0f}% | {r.machine_cpu_pct:.0f}% "
            f"| {r.server_peak_rss_mib:.0f} |"
        )
    consume = [r for r in results if r.phase == "consume" and r.ops]
    if consume:
        lines += ["", "Consume phase per operation:", "",
                  "| store | conc. | claim p50 ms | claim p99 ms | delete p50 ms | delete p99 ms |",
                  "|---|---:|---:|---:|---:|---:|"]
        for r in consume:
            claim, delete = r.ops.get("claim", {}), r.ops.get("delete", {})
            lines.append(
                f"| {r.store} | {r.concurrency} "
                f"| {claim.get('p50_ms', 0):.1f} | {claim.get('p99_ms', 0):.1f} "
                f"| {delete.get('p50_ms', 0):.1f} | {delete.get('p99_ms', 0):.1f} |"
            )
    ceilings = {(r.store, r.concurrency): r for r in results if r.phase == "ceiling"}
    if ceilings:
        lines += ["", "Single-message posts against the ceiling (target ≥ 40%):", "",
                  "| store | conc. | post-1 req/s | ceiling req/s | % of ceiling "
                  "| server CPU µs/req post-1 | ceiling | CPU-efficiency % |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in results:
            if r.phase == "post-1" and (r.store, r.concurrency) in ceilings:
                top = ceilings[(r.store, r.concurrency)]
                pct = 100 * r.req_per_s / top.req_per_s if top.req_per_s else 0.0
                us = r.server_us_per_req
                eff = 100 * top.server_us_per_req / us if us else 0.0
                lines.append(
                    f"| {r.store} | {r.concurrency} | {r.req_per_s:,.0f} | {top.req_per_s:,.0f} "
                    f"| {pct:.0f}% "
                    f"| {r.server_us_per_req:.0f} | {top.server_us_per_req:.0f} | {eff:.0f}% |"
                )
    lines += side_by_side(results)
    footprints: dict[str, dict[str, Any]] = meta.get("footprint", {})
    if footprints:
        lines += ["", "Storage per message (~90-byte bodies posted in batches of 10):", "",
                  "| store | messages | bytes | bytes/message | how measured |",
                  "|---|---:|---:|---:|---|"]
        for kind, f in footprints.items():
            lines.append(f"| {kind} | {f['messages']:,} | {f['bytes_total']:,} "
                         f"| {f['bytes_per_message']:,.0f} | {f['detail']} |")
    lines += [
        "",
        f"CPU columns: 100% = one core; the machine has {meta['machine']['nproc']} "
        "(machine CPU = all processes, all cores). CPU-efficiency = ceiling server CPU per "
        "request / Tidings server CPU per request (independent of the load generator).",
        "",
        "Peak RSS of the Tidings server process tree over each store's run: "
        + ", ".join(f"{k} {v:.1f} MiB" for k, v in meta["tidings_peak_rss_mib"].items())
        + f" ({meta['workers']} worker(s); ceiling app: {meta['ceiling_peak_rss_mib']:.1f} MiB).",
    ]
    return "\n".join(lines)


def side_by_side(results: list[PhaseResult]) -> list[str]:
    """msgs/s and p50/p99 of every phase, one column per store."""
    stores = list(dict.fromkeys(r.store for r in results))
    if len(stores) < 2:
        return []
    cell = {(r.store, r.concurrency, r.phase): r for r in results}
    rows = list(dict.fromkeys((r.concurrency, r.phase) for r in results if r.phase != "ceiling"))
    lines = ["", "Side by side (messages/s, p50 / p99 ms):", "",
             "| conc. | phase | " + " | ".join(stores) + " |",
             "|---:|---|" + "---:|" * len(stores)]
    for concurrency, phase in rows:
        cells = []
        for store in stores:
            r = cell.get((store, concurrency, phase))
            cells.append(f"{r.msgs_per_s:,.0f} ({r.p50_ms:.1f} / {r.p99_ms:.1f})" if r else "—")
        lines.append(f"| {concurrency} | {phase} | " + " | ".join(cells) + " |")
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency",
                        help="comma-separated concurrency levels (default 8,32,64; quick: 8)")
    parser.add_argument("--duration", type=float,
                        help="measured seconds per phase (default 8; quick: 1)")
    parser.add_argument("--warmup", type=float,
                        help="unrecorded warm-up seconds before each phase (default 1; quick: 0.2)")
    parser.add_argument("--max-requests", type=int,
                        help="request budget per phase (default 1,000,000; quick: 20,000)")
    parser.add_argument("--workers", type=int, default=1,
                        help="server worker processes, for Tidings and the ceiling (default 1)")
    parser.add_argument("--message-ttl", type=int, default=300)
    parser.add_argument("--no-ceiling", action="store_true", help="skip the ceiling app")
    parser.add_argument("--stores", default="sqlite",
                        help=f"comma-separated stores to run over (default sqlite; any of "
                             f"{','.join(STORES)})")
    parser.add_argument("--footprint-messages", type=int, default=20_000,
                        help="messages posted to measure storage per message (0: skip)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: concurrency 8, 1 s phases, short warm-up "
                             "(explicit options still win)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--tmp-dir", help="parent for the temporary data directory")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.concurrency = [int(c) for c in str(args.concurrency).split(",") if c.strip()]
    args.stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    if not set(args.stores) <= set(STORES):
        parser.error(f"--stores takes {', '.join(STORES)}")
    if not args.concurrency or min(args.concurrency) < 1:
        parser.error("--concurrency needs positive integers")
    return args


def _event_loop_runner() -> Any:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        return asyncio.run
    return uvloop.run


def run_store(
    args: argparse.Namespace, store: BenchStore, meta: dict[str, Any]
) -> tuple[list[PhaseResult], str]:
    """Every phase over one store; returns the results and the server's log worth showing."""
    tidings = tidings_server(store.data_dir, args.workers, store.uri)
    ceiling = None if args.no_ceiling else ceiling_server(store.data_dir, args.workers)
    samplers: list[TreeSampler] = []
    run = _event_loop_runner()
    try:
        tidings.start()
        t_sampler = TreeSampler(tidings.pid).start()
        samplers.append(t_sampler)
        c_sampler = None
        if ceiling is not None:
            ceiling.start()
            c_sampler = TreeSampler(ceiling.pid).start()
            samplers.append(c_sampler)
        results = run(run_all(args, tidings, ceiling, t_sampler, c_sampler))
        if args.footprint_messages:
            store.mark_baseline()
            stored = run(fill_for_footprint(args, tidings))
            footprint: Footprint = store.footprint(stored)
            meta.setdefault("footprint", {})[store.kind] = {
                **asdict(footprint), "bytes_per_message": footprint.bytes_per_message
            }
        meta.setdefault("tidings_peak_rss_mib", {})[store.kind] = t_sampler.peak_rss / MIB
        meta["ceiling_peak_rss_mib"] = max(
            meta.get("ceiling_peak_rss_mib", 0.0), c_sampler.peak_rss / MIB if c_sampler else 0.0
        )
    finally:
        for sampler in samplers:
            sampler.stop()
        tidings.stop()
        if ceiling is not None:
            ceiling.stop()
    for r in results:
        r.store = store.kind
    # Anything beyond the start-up banner (warnings, tracebacks) is worth showing.
    server_log = "\n".join(
        line for line in tidings.log().splitlines() if " serving on " not in line
    ).strip()
    return results, server_log


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data_dir = Path(tempfile.mkdtemp(prefix="tidings-bench-", dir=args.tmp_dir))
    meta: dict[str, Any] = {
        "machine": machine_info(),
        "workers": args.workers,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "concurrency": args.concurrency,
        "stores": args.stores,
        "consume_mode": "claim limit=10, then bulk DELETE ?ids=...&claim_ids=<claim>",
        "data_dir": str(data_dir),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    print(f"data dir: {data_dir}", file=sys.stderr)
    results: list[PhaseResult] = []
    logs: dict[str, str] = {}
    try:
        for kind in args.stores:
            print(f"store: {kind}", file=sys.stderr)
            with bench_store(kind, data_dir / kind) as store:
                store_results, logs[kind] = run_store(args, store, meta)
            results += store_results
    finally:
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    print(markdown(results, meta))
    for kind, log in logs.items():
        if log:
            print(f"\nTidings server log over {kind} (tail):\n{log}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(
            json.dumps({"meta": meta, "results": [asdict(r) for r in results]}, indent=2) + "\n"
        )
    return 1 if any(r.error_count for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
