"""Connection limits: what the guarded protocol costs, and what it saves under attack.

Starts two servers over SQLite files of their own, with the same app and stack (uvicorn,
uvloop, httptools, one worker): ``guarded`` is ``tidings serve`` (the [server] limits,
tidings.http.server_protocol, default settings), ``plain`` is ``uvicorn --factory
tidings.app:create_app --http httptools``. Then:

* ``protocol``: the HTTP layer alone, in this process (uvicorn's HttpToolsProtocol and
  the guarded subclass over a null transport and an empty ASGI app): CPU µs per
  keep-alive request, best of ``--protocol-reps`` runs; the machine's noise cannot hide
  a cost there;
* ``cost``: closed-loop ``ping`` (GET /v2/ping) and ``post-1`` (one-message POST) at
  ``--concurrency``, alternating guarded and plain for ``--rounds`` rounds, with the
  server's CPU per request;
* ``hostile``: against each server in turn, a separate process opens ``--idle`` silent
  connections, ``--slow`` connections that send a header line per second and never end
  their head, ``--stalled`` POSTs whose 256 KiB body stops 122 bytes short, and one
  header streamed without end (up to ``--huge-header-mb``). Beside it a normal client
  (ping + post-1, ``--normal-concurrency`` keep-alive connections opened before the
  attack) runs for ``--duration`` seconds, and a probe opens a fresh connection for a
  ping every 0.5 s. The attack holds what it got until ``--hold`` seconds, then stops;
  hostile connections are never reopened, so the unguarded run ends too.

Reported: requests/s and p50/p99; under attack the normal client's p50/p99 and errors,
the probe's outcomes, the server's peak and final RSS, and how many hostile connections
the server was still holding at the end.

Run:  .venv/bin/python benchmarks/bench_connections.py [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from loadgen import Client, PhaseRun, Step, message_payload, percentile, run_phase
from servers import ServerProcess, TreeSampler, free_port, tidings_server

MIB = 1024 * 1024
STALLED_BODY = 256 * 1024
SHORT_BY = 122
FULL: dict[str, Any] = {"duration": 20.0, "hold": 40.0, "cost_duration": 6.0, "rounds": 4,
                        "protocol_reps": 10}
QUICK: dict[str, Any] = {"duration": 3.0, "hold": 5.0, "cost_duration": 1.0, "rounds": 1,
                         "protocol_reps": 2}


def plain_server(data_dir: Path, store_uri: str) -> ServerProcess:
    port = free_port()
    return ServerProcess(
        "plain",
        [sys.executable, "-m", "uvicorn", "--factory", "tidings.app:create_app",
         "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop",
         "--http", "httptools", "--lifespan", "on", "--no-access-log",
         "--no-server-header", "--log-level", "warning"],
        port,
        data_dir / "plain.log",
        env={"TIDINGS_DRIVERS__MESSAGE_STORE": store_uri,
             "TIDINGS_SERVER__HOST": "127.0.0.1", "TIDINGS_SERVER__PORT": str(port)},
    )


def headers() -> dict[str, str]:
    return {"Client-ID": str(uuid.uuid4()), "X-Project-ID": "bench-conn",
            "Content-Type": "application/json"}


def ping_post_step(base: str, payload: bytes) -> Step:
    async def step(client: Client) -> None:
        await client.call("GET", f"{base}/v2/ping", "ping")
        await client.call("POST", f"{base}/v2/queues/conn/messages", "post", payload)

    return step


def only_step(base: str, op: str, payload: bytes) -> Step:
    async def step(client: Client) -> None:
        if op == "ping":
            await client.call("GET", f"{base}/v2/ping", "ping")
        else:
            await client.call("POST", f"{base}/v2/queues/conn/messages", "post", payload)

    return step


def latency_row(run: PhaseRun, op: str) -> dict[str, float]:
    values = sorted(run.recorder.latencies.get(op, []))
    return {
        "count": len(values),
        "req_per_s": len(values) / run.elapsed if run.elapsed else 0.0,
        "p50_ms": percentile(values, 0.50) * 1000,
        "p99_ms": percentile(values, 0.99) * 1000,
    }


# Hostile client (its own process) ----------------------------------------------------


@dataclass
class HostileReport:
    opened: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)  # failed to connect
    closed_by_server: Counter[str] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)  # "kind status"
    huge_header_sent_mib: float = 0.0


def _request_head(extra: str = "") -> bytes:
    return (f"POST /v2/queues/hostile/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Client-ID: {uuid.uuid4()}\r\nX-Project-ID: bench-hostile\r\n"
            f"Content-Type: application/json\r\n{extra}").encode()


async def _hold(kind: str, port: int, rep: HostileReport, until: float, huge_mb: int) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        rep.refused[kind] += 1
        return
    rep.opened[kind] += 1
    reading = asyncio.ensure_future(reader.read(200))
    try:
        if kind == "stalled":
            writer.write(_request_head(f"Content-Length: {STALLED_BODY}\r\n\r\n"))
            writer.write(b" " * (STALLED_BODY - SHORT_BY))
        elif kind == "slow":
            writer.write(_request_head())
        elif kind == "huge":
            writer.write(_request_head("X-Huge: "))
        await writer.drain()
        chunk = b"h" * 65536
        while time.time() < until and not reading.done():
            if kind == "huge" and rep.huge_header_sent_mib < huge_mb:
                writer.write(chunk)
                rep.huge_header_sent_mib += len(chunk) / MIB
                draining = asyncio.ensure_future(writer.drain())
                await asyncio.wait([draining, reading], timeout=max(0.0, until - time.time()),
                                   return_when=asyncio.FIRST_COMPLETED)
                if not draining.done():
                    draining.cancel()  # answered, or the server stopped reading: hold on
                    await asyncio.wait([reading], timeout=max(0.0, until - time.time()))
                    break
                draining.result()
            elif kind == "slow":
                writer.write(b"X-Slow: 1\r\n")
                await asyncio.wait([reading], timeout=min(1.0, max(0.0, until - time.time())))
            else:
                await asyncio.wait([reading], timeout=max(0.0, until - time.time()))
        if reading.done():
            answer = reading.result()
            rep.closed_by_server[kind] += 1
            status = answer.split(b" ", 2)[1].decode() if answer else "none"
            rep.answers[f"{kind} {status}"] += 1
        else:
            reading.cancel()
    except OSError:
        rep.closed_by_server[kind] += 1
        rep.answers[f"{kind} reset"] += 1
    finally:
        if not reading.done():
            reading.cancel()
        elif not reading.cancelled():
            reading.exception()  # seen: a reset after an answer is not news
        writer.close()


async def _attack(port: int, counts: dict[str, int], start: float, until: float,
                  huge_mb: int) -> HostileReport:
    rep = HostileReport()
    await asyncio.sleep(max(0.0, start - time.time()))
    # Kinds interleaved, so that each gets its share of a capped server's connections.
    left = dict(counts)
    order: list[str] = []
    while any(left.values()):
        for kind in left:
            if left[kind]:
                order.append(kind)
                left[kind] -= 1
    tasks = []
    for kind in order:
        tasks.append(asyncio.ensure_future(_hold(kind, port, rep, until, huge_mb)))
        if len(tasks) % 100 == 0:
            await asyncio.sleep(0)  # let the server accept in step
    await asyncio.gather(*tasks)
    return rep


def hostile_process(port: int, counts: dict[str, int], start: float, until: float,
                    huge_mb: int, out: str) -> None:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    rep = asyncio.run(_attack(port, counts, start, until, huge_mb))
    Path(out).write_text(json.dumps(vars(rep)))


# Fresh-connection probe ---------------------------------------------------------------


async def probe(port: int, until: float, outcomes: Counter[str], latencies: list[float]) -> None:
    request = (f"GET /v2/ping HTTP/1.1\r\nHost: 127.0.0.1\r\nClient-ID: {uuid.uuid4()}\r\n"
               "X-Project-ID: bench-probe\r\nConnection: close\r\n\r\n").encode()
    while time.time() < until:
        began = time.perf_counter()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port), 10)
            writer.write(request)
            answer = await asyncio.wait_for(reader.read(64), 10)
            writer.close()
            status = answer.split(b" ", 2)[1].decode() if answer else "closed"
        except (OSError, TimeoutError) as exc:
            status = type(exc).__name__
        outcomes[status] += 1
        if status == "204":
            latencies.append(time.perf_counter() - began)
        await asyncio.sleep(0.5)


# Protocol layer alone -----------------------------------------------------------------


class _NullTransport(asyncio.Transport):
    """Swallows what the protocol writes; enough transport for one keep-alive connection."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = False

    def write(self, data: Any) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8888), "peername": ("127.0.0.1", 50000)}.get(
            name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _empty_app(scope: Any, receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


PROTOCOL_REQUESTS = {
    "ping": (b"GET /v2/ping HTTP/1.1\r\nHost: 127.0.0.1:8888\r\n"
             b"Client-ID: 3a6ff3ee-1a2c-4b4f-9c59-6b0f3f4bfe2e\r\nX-Project-ID: bench\r\n"
             b"Accept: */*\r\n\r\n"),
    "post": (b"POST /v2/queues/conn/messages HTTP/1.1\r\nHost: 127.0.0.1:8888\r\n"
             b"Client-ID: 3a6ff3ee-1a2c-4b4f-9c59-6b0f3f4bfe2e\r\nX-Project-ID: bench\r\n"
             b"Content-Type: application/json\r\nAccept: */*\r\n"
             b"Content-Length: %d\r\n\r\n%s" % (len(message_payload(1)), message_payload(1))),
}


async def _protocol_us(factory: Callable[..., Any], request: bytes, count: int) -> float:
    """CPU µs per request through one protocol instance and an empty ASGI app."""
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    config = Config(app=_empty_app, lifespan="off", log_level="warning")
    config.load()
    state = ServerState()
    protocol = factory(config=config, server_state=state, app_state={})
    protocol.connection_made(_NullTransport())
    began = time.process_time()
    for _ in range(count):
        protocol.data_received(request)
        while state.tasks:
            await asyncio.sleep(0)
    return 1e6 * (time.process_time() - began) / count


async def protocol_phase(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The HTTP layer alone, in this process: best of ``--protocol-reps`` runs each."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from tidings.config import ServerSettings
    from tidings.http.server_protocol import GuardedHttpToolsProtocol

    factories = {"plain": HttpToolsProtocol,
                 "guarded": GuardedHttpToolsProtocol.factory(ServerSettings())}
    rows = []
    for op, request in PROTOCOL_REQUESTS.items():
        runs: dict[str, list[float]] = {name: [] for name in factories}
        for _ in range(args.protocol_reps):
            for name, factory in factories.items():
                runs[name].append(await _protocol_us(factory, request, 20_000))
        for name, values in runs.items():
            rows.append({"op": op, "server": name, "best_us": min(values),
                         "median_us": sorted(values)[len(values) // 2]})
            print(f"  protocol {name:<7} {op:<4} best {min(values):5.1f} us/req",
                  file=sys.stderr, flush=True)
    return rows


# Phases ----------------------------------------------------------------------------


def cpu_marker(pid: int, marks: list[float]) -> Callable[[bool], None]:
    """An ``on_window`` that notes the server's CPU seconds as the window opens and closes."""
    sampler = TreeSampler(pid)
    return lambda _opening: marks.append(sampler.cpu_seconds())


async def cost_phase(
    args: argparse.Namespace, servers: list[ServerProcess]
) -> list[dict[str, Any]]:
    payload = message_payload(1)
    rows = []
    for round_no in range(args.rounds):
        order = servers if round_no % 2 == 0 else list(reversed(servers))
        for op in ("ping", "post"):
            for server in order:
                marks: list[float] = []
                run = await run_phase(headers(), args.concurrency, args.cost_duration,
                                      1_000_000, only_step(server.url, op, payload),
                                      warmup=0.5, on_window=cpu_marker(server.pid, marks))
                row = {"round": round_no + 1, "server": server.name, "op": op,
                       "errors": sum(run.recorder.errors.values()), **latency_row(run, op)}
                row["server_us_per_req"] = (
                    1e6 * (marks[1] - marks[0]) / row["count"] if row["count"] else 0.0)
                rows.append(row)
                print(f"  cost r{round_no + 1} {server.name:<7} {op:<4} "
                      f"{row['req_per_s']:7.0f} req/s  p50 {row['p50_ms']:5.2f} ms  "
                      f"p99 {row['p99_ms']:5.2f} ms  server CPU "
                      f"{row['server_us_per_req']:4.0f} us/req  errors {row['errors']}",
                      file=sys.stderr, flush=True)
    return rows


async def hostile_phase(args: argparse.Namespace, server: ServerProcess,
                        tmp: Path) -> dict[str, Any]:
    counts = {"huge": 1, "idle": args.idle, "slow": args.slow, "stalled": args.stalled}
    sampler = TreeSampler(server.pid).start()
    baseline = sampler.sample()
    start = time.time() + args.warmup  # the normal client's connections exist by then
    until = start + args.hold
    out = tmp / f"hostile-{server.name}.json"
    attacker = multiprocessing.get_context("spawn").Process(
        target=hostile_process,
        args=(server.port, counts, start, until, args.huge_header_mb, str(out)),
    )
    attacker.start()
    outcomes: Counter[str] = Counter()
    probe_latencies: list[float] = []
    probing = asyncio.ensure_future(probe(server.port, start + args.duration, outcomes,
                                          probe_latencies))
    run = await run_phase(headers(), args.normal_concurrency, args.duration, 10_000_000,
                          ping_post_step(server.url, message_payload(1)),
                          warmup=args.warmup)
    await probing
    # Sample the end state while the attacker still holds what it has.
    await asyncio.sleep(max(0.0, until - 1.0 - time.time()))
    held = _established(server.pid, server.port)
    end_rss = sampler.sample()
    attacker.join(timeout=args.hold + 60)
    sampler.stop()
    report = json.loads(out.read_text()) if out.exists() else {}
    probe_latencies.sort()
    result = {
        "server": server.name,
        "ping": latency_row(run, "ping"),
        "post": latency_row(run, "post"),
        "normal_errors": dict(run.recorder.errors),
        "probe": dict(outcomes),
        "probe_p50_ms": percentile(probe_latencies, 0.5) * 1000,
        "baseline_rss_mib": baseline / MIB,
        "peak_rss_mib": sampler.peak_rss / MIB,
        "end_rss_mib": end_rss / MIB,
        "connections_held_at_end": held,
        "hostile": report,
    }
    print(f"  hostile {server.name:<7} ping p50 {result['ping']['p50_ms']:.1f} "
          f"p99 {result['ping']['p99_ms']:.1f} ms, post p50 {result['post']['p50_ms']:.1f} "
          f"p99 {result['post']['p99_ms']:.1f} ms, errors {sum(run.recorder.errors.values())}, "
          f"probe {dict(outcomes)}, RSS peak {result['peak_rss_mib']:.0f} "
          f"end {result['end_rss_mib']:.0f} MiB, held {held}",
          file=sys.stderr, flush=True)
    return result


def _established(pid: int, port: int) -> int:
    """TCP connections the server still has open on its listening port."""
    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return -1
    return sum(1 for c in conns
               if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port)


def markdown(protocol: list[dict[str, Any]], cost: list[dict[str, Any]],
             hostile: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = ["| HTTP layer alone | plain µs/req (best / median) "
             "| guarded µs/req (best / median) |", "|---|---:|---:|"]
    for op in PROTOCOL_REQUESTS:
        cells = {r["server"]: f"{r['best_us']:.1f} / {r['median_us']:.1f}"
                 for r in protocol if r["op"] == op}
        lines.append(f"| {op} | {cells.get('plain', '—')} | {cells.get('guarded', '—')} |")
    lines += ["", "| round | op | server | req/s | p50 ms | p99 ms | server CPU µs/req | errors |",
              "|---:|---|---|---:|---:|---:|---:|---:|"]
    for r in cost:
        lines.append(f"| {r['round']} | {r['op']} | {r['server']} | {r['req_per_s']:,.0f} "
                     f"| {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['server_us_per_req']:.0f} "
                     f"| {r['errors']} |")
    for op in ("ping", "post"):
        means = {}
        for name in ("guarded", "plain"):
            mine = [r for r in cost if r["op"] == op and r["server"] == name]
            if mine:
                means[name] = (sum(r["req_per_s"] for r in mine) / len(mine),
                               sum(r["server_us_per_req"] for r in mine) / len(mine))
        if len(means) == 2:
            (g_rps, g_us), (p_rps, p_us) = means["guarded"], means["plain"]
            lines.append(f"\nMean {op}: guarded {g_rps:,.0f} req/s at {g_us:.0f} µs of server "
                         f"CPU per request, plain {p_rps:,.0f} req/s at {p_us:.0f} µs.")
    lines += ["", f"Under attack ({args.idle} idle, {args.slow} slow-header, {args.stalled} "
              f"stalled-body connections and one endless header of up to "
              f"{args.huge_header_mb} MiB; normal client at concurrency "
              f"{args.normal_concurrency}, {args.duration:g} s):", "",
              "| server | ping p50 / p99 ms | post p50 / p99 ms | normal errors "
              "| fresh-connection probe | RSS before / peak / end MiB "
              "| hostile connections held at end | endless header sent MiB |",
              "|---|---:|---:|---|---|---:|---:|---:|"]
    for h in hostile:
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(h["normal_errors"].items())) or "0"
        probe_cell = ", ".join(f"{k}: {v}" for k, v in sorted(h["probe"].items()))
        lines.append(
            f"| {h['server']} | {h['ping']['p50_ms']:.1f} / {h['ping']['p99_ms']:.1f} "
            f"| {h['post']['p50_ms']:.1f} / {h['post']['p99_ms']:.1f} | {errors} "
            f"| {probe_cell} | {h['baseline_rss_mib']:.0f} / {h['peak_rss_mib']:.0f} / "
            f"{h['end_rss_mib']:.0f} | {h['connections_held_at_end']} "
            f"| {h['hostile'].get('huge_header_sent_mib', 0):.2f} |")
    lines += ["", "What the attacker saw (server answers or closes, by kind):", ""]
    for h in hostile:
        answers = h["hostile"].get("answers", {})
        lines.append(f"* {h['server']}: opened {h['hostile'].get('opened', {})}; "
                     + (", ".join(f"{k}: {v}" for k, v in sorted(answers.items())) or "none"))
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=16, help="cost phase (default 16)")
    parser.add_argument("--cost-duration", type=float, help="seconds per cost run (default 6)")
    parser.add_argument("--rounds", type=int, help="cost rounds, order alternating (default 4)")
    parser.add_argument("--protocol-reps", type=int, help="protocol runs each (default 10)")
    parser.add_argument("--normal-concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float,
                        help="seconds the normal client is measured under attack (default 20)")
    parser.add_argument("--hold", type=float,
                        help="seconds the attack holds its connections (default 40, past "
                             "body_timeout)")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--slow", type=int, default=300)
    parser.add_argument("--stalled", type=int, default=400)
    parser.add_argument("--huge-header-mb", type=int, default=128)
    parser.add_argument("--only", choices=("guarded", "plain"), help="hostile phase for one")
    parser.add_argument("--quick", action="store_true", help="smoke run (small, short)")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--tmp-dir")
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.quick:
        args.idle, args.slow, args.stalled, args.huge_header_mb = 50, 20, 20, 8
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import uvloop

    tmp = Path(tempfile.mkdtemp(prefix="bench-conn-", dir=args.tmp_dir))
    guarded = tidings_server(tmp / "guarded", 1, f"sqlite:///{tmp / 'guarded.db'}")
    guarded.name = "guarded"
    plain = plain_server(tmp, f"sqlite:///{tmp / 'plain.db'}")
    cost: list[dict[str, Any]] = []
    hostile: list[dict[str, Any]] = []
    protocol = uvloop.run(protocol_phase(args))
    try:
        guarded.start()
        plain.start()
        cost = uvloop.run(cost_phase(args, [guarded, plain]))
        for server in (guarded, plain):
            if args.only in (None, server.name):
                hostile.append(uvloop.run(hostile_phase(args, server, tmp)))
    finally:
        guarded.stop()
        plain.stop()
    print(markdown(protocol, cost, hostile, args))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"protocol": protocol, "cost": cost, "hostile": hostile, "args": vars(args),
             "loadavg": os.getloadavg()}, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
