"""``tidings bench``: load a Zaqar-compatible server with producers, consumers and
observers spread over worker processes, and report throughput and latency.

``options`` defines and validates the command line, ``workers`` runs inside each
worker process, ``runner`` drives one run, ``report`` renders the results.
"""

from __future__ import annotations

import argparse
import json
import sys

from tidings.bench.options import BenchOptions, add_arguments, options_from_args

__all__ = ["BenchOptions", "add_parser", "main"]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = commands.add_parser(
        "bench",
        help="load a server with producers, consumers and observers; report throughput",
        description="Load a Zaqar-compatible server with producers, consumers and observers "
        "spread over worker processes; report throughput and latency percentiles.",
    )
    add_arguments(bench)
    bench.set_defaults(bench_parser=bench)


def main(args: argparse.Namespace) -> int:
    """Run the bench; 0, or 130 when Ctrl-C cut it short (the table is printed anyway)."""
    from tidings.bench.report import compare_table, document, table
    from tidings.bench.runner import run_once

    options = options_from_args(args.bench_parser, args)
    # With the JSON on stdout, the tables go to stderr so that stdout stays parseable.
    out = sys.stderr if options.json == "-" else sys.stdout
    docs = []
    interrupted = False
    for url in (options.url, options.compare):
        if url is None or interrupted:
            continue
        outcome = run_once(options, url)
        interrupted = outcome.interrupted
        docs.append(document(options, outcome))
        print(table(docs[-1]), file=out, flush=True)
        print(file=out)
    if len(docs) == 2:
        print(compare_table(docs[0], docs[1]), file=out, flush=True)
    if options.json:
        text = json.dumps({"runs": docs} if options.compare else docs[0], indent=2)
        if options.json == "-":
            print(text)
        else:
            with open(options.json, "w", encoding="utf-8") as file:
                file.write(text + "\n")
    return 130 if interrupted else 0
