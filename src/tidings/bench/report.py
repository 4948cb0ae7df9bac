"""The results of ``tidings bench``: the JSON document, the table, and the side-by-side
table of a ``--compare`` run."""

from __future__ import annotations

import os
from array import array
from typing import Any

from tidings.bench.options import ROLES, BenchOptions
from tidings.bench.runner import RunOutcome
from tidings.bench.stats import PERCENTILES, RoleRecord, summary

Document = dict[str, Any]


def document(options: BenchOptions, outcome: RunOutcome) -> Document:
    """The plan's JSON document for one run (roles without workers are left out)."""
    duration = outcome.elapsed
    roles: dict[str, Any] = {}
    delays: array[float] = array("d")
    for role in ROLES:
        if not options.workers(role):
            continue
        merged = RoleRecord()
        for result in outcome.results:
            if role in result.roles:
                merged.merge(result.roles[role])
        samples: array[float] = array("d")
        for values in merged.latency.values():
            samples.extend(values)
        entry: dict[str, Any] = {
            "requests": merged.requests,
            "messages": merged.messages,
            "errors": dict(sorted(merged.errors.items())),
            "throughput_rps": round(merged.requests / duration, 1) if duration else 0.0,
            "throughput_mps": round(merged.messages / duration, 1) if duration else 0.0,
            "latency_ms": summary(samples),
            "latency_ms_by_operation": {
                op: summary(values) for op, values in sorted(merged.latency.items())
            },
        }
        if role == "consumer":
            entry["claims_empty"] = merged.claims_empty
        roles[role] = entry
    for result in outcome.results:
        delays.extend(result.post_to_claim)
    post_to_claim: dict[str, Any] = summary(delays)
    post_to_claim["count"] = len(delays)
    cores = os.cpu_count() or 1
    share = outcome.cpu_seconds / (duration * cores) if duration else 0.0
    return {
        "url": outcome.url,
        "run_id": outcome.run_id,
        "settings": options.settings(),
        "duration": round(duration, 3),
        "roles": roles,
        "post_to_claim_ms": post_to_claim,
        "bench_cpu_share": round(share, 3),
        "bench_cpu_seconds": round(outcome.cpu_seconds, 3),
        "cpu_count": cores,
        "interrupted": outcome.interrupted,
        "setup_errors": dict(outcome.setup_errors),
        "teardown_errors": dict(outcome.teardown_errors),
        "processes_failed": sum(1 for r in outcome.results if r.failure),
    }


def _errors_text(errors: dict[str, int]) -> str:
    return ", ".join(f"{kind} x{n}" for kind, n in errors.items()) or "0"


def table(doc: Document) -> str:
    """The final table of one run."""
    settings = doc["settings"]
    head = (
        f"tidings bench {doc['url']}: {doc['duration']:.1f} s, "
        f"{settings['processes']} process(es), concurrency {settings['concurrency']} per role, "
        f"{settings['message_size']} B messages, batch {settings['batch']}, "
        f"claim limit {settings['claim_limit']}"
        + (f", wait {settings['wait']:g} s" if settings["wait"] is not None else ", no wait")
    )
    columns = ("role", "requests", "req/s", "messages", "msg/s",
               "p50 ms", "p90 ms", "p99 ms", "max ms", "errors")
    rows: list[tuple[str, ...]] = [columns]
    notes = []
    for role, entry in doc["roles"].items():
        lat = entry["latency_ms"]
        rows.append((
            role, str(entry["requests"]), f"{entry['throughput_rps']:.0f}",
            str(entry["messages"]), f"{entry['throughput_mps']:.0f}",
            f"{lat['p50']:.2f}", f"{lat['p90']:.2f}", f"{lat['p99']:.2f}", f"{lat['max']:.1f}",
            str(sum(entry["errors"].values())),
        ))
        if entry["errors"]:
            notes.append(f"{role} errors: {_errors_text(entry['errors'])}")
        if "claims_empty" in entry:
            notes.append(f"consumer claims that found nothing: {entry['claims_empty']}")
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = [head, ""]
    for row in rows:
        lines.append("  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ))
    delay = doc["post_to_claim_ms"]
    if delay["count"]:
        lines.append("")
        lines.append(
            f"post-to-claim delay: p50 {delay['p50']:.2f} ms  p90 {delay['p90']:.2f} ms  "
            f"p99 {delay['p99']:.2f} ms  max {delay['max']:.1f} ms  ({delay['count']} messages)"
        )
    lines.extend(notes)
    for key, label in (("setup_errors", "setup errors"), ("teardown_errors", "cleanup errors")):
        if doc[key]:
            lines.append(f"{label}: {_errors_text(doc[key])}")
    lines.append(
        f"bench CPU: {doc['bench_cpu_share'] * 100:.0f}% of the machine's {doc['cpu_count']} "
        f"core(s) ({doc['bench_cpu_seconds']:.1f} CPU seconds)"
        + ("; interrupted" if doc["interrupted"] else "")
    )
    return "\n".join(lines)


def _figures(doc: Document) -> list[tuple[str, float]]:
    """(label, value) for the side-by-side table."""
    found: list[tuple[str, float]] = []
    for role in ROLES:
        entry = doc["roles"].get(role)
        if entry is None:
            continue
        found.append((f"{role} req/s", entry["throughput_rps"]))
        found.append((f"{role} msg/s", entry["throughput_mps"]))
        for name, _ in PERCENTILES:
            found.append((f"{role} {name} ms", entry["latency_ms"][name]))
        found.append((f"{role} max ms", entry["latency_ms"]["max"]))
        found.append((f"{role} errors", float(sum(entry["errors"].values()))))
    delay = doc["post_to_claim_ms"]
    if delay["count"]:
        for name, _ in PERCENTILES:
            found.append((f"post-to-claim {name} ms", delay[name]))
    found.append(("bench CPU share", doc["bench_cpu_share"]))
    return found


def compare_table(first: Document, second: Document) -> str:
    """Both runs side by side; the ratio is second / first."""
    a = dict(_figures(first))
    b = dict(_figures(second))
    labels = list(a)
    labels += [label for label in b if label not in a]
    rows = [("", "A", "B", "B/A")]
    for label in labels:
        x, y = a.get(label), b.get(label)
        ratio = f"{y / x:.2f}" if x and y is not None else "-"
        rows.append((label, _number(x), _number(y), ratio))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [f"A = {first['url']}", f"B = {second['url']}", ""]
    for row in rows:
        lines.append("  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ))
    return "\n".join(lines)


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1000 or value == int(value):
        return f"{value:.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"
