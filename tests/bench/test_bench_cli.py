"""``tidings bench`` (src/tidings/bench) run as a command against real Tidings servers on
SQLite: the JSON document's shape and consistency, ``--compare``, errors counted rather
than fatal, Ctrl-C, and usage errors. No assertion depends on the machine's speed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server import TidingsServer, free_port, wait_until
from tidings.cli import main

RUN_TIMEOUT = 180  # seconds a short bench run may take on a loaded machine, start-up included


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[TidingsServer]]:
    started = []
    try:
        for name in ("a", "b"):
            started.append(TidingsServer(tmp_path_factory.mktemp(f"bench-{name}")).start())
        yield started
    finally:
        for server in started:
            server.stop()


def bench(*argv: str, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tidings.cli", "bench", *argv],
        capture_output=True, text=True, timeout=timeout, check=False,
    )


LOAD = ("--duration", "2", "--producers", "2", "--consumers", "2", "--observers", "1",
        "--processes", "2", "--concurrency", "4", "--message-size", "300", "--queues", "2")


def check_run(doc: dict[str, Any], url: str) -> None:
    """The plan's document, consistent with itself, for a run without errors."""
    assert doc["url"] == url
    assert doc["duration"] > 0
    assert doc["settings"]["processes"] == 2
    assert set(doc["roles"]) == {"producer", "consumer", "observer"}
    for role, entry in doc["roles"].items():
        assert entry["errors"] == {}, role
        assert entry["requests"] > 0, role
        assert entry["throughput_rps"] > 0, role
        assert entry["throughput_mps"] >= 0, role
        lat = entry["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"], (role, lat)
    producer, consumer = doc["roles"]["producer"], doc["roles"]["consumer"]
    assert producer["messages"] == producer["requests"]  # one message per post
    assert 0 < consumer["messages"] <= producer["messages"]
    assert consumer["claims_empty"] >= 0
    delay = doc["post_to_claim_ms"]
    assert 0 < delay["count"] <= producer["messages"]
    assert delay["p50"] <= delay["p90"] <= delay["p99"] <= delay["max"]
    assert doc["bench_cpu_share"] > 0
    assert doc["interrupted"] is False
    assert doc["setup_errors"] == {} and doc["teardown_errors"] == {}


def remaining_queues(server: TidingsServer, doc: dict[str, Any]) -> list[Any]:
    """The run's queues still on the server (its first project)."""
    headers = {"Client-ID": "4a3e0f8c-6c1e-4b59-9d8a-1f0e2d3c4b5a",
               "X-Project-ID": f"bench-{doc['run_id']}-p0"}
    answer = httpx.get(server.url + "/v2/queues", headers=headers, timeout=30)
    assert answer.status_code in (200, 204)
    return answer.json()["queues"] if answer.status_code == 200 else []


def test_run_writes_a_consistent_document(servers: list[TidingsServer], tmp_path: Path) -> None:
    server = servers[0]
    out = tmp_path / "run.json"
    done = bench(server.url, *LOAD, "--json", str(out))
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    check_run(doc, server.url)
    assert doc["roles"]["consumer"]["latency_ms_by_operation"].keys() == {"claim", "delete"}
    # The table is printed; progress lines (stderr is not a terminal) are plain lines.
    assert "post-to-claim delay" in done.stdout
    assert "producer" in done.stdout and "bench CPU" in done.stdout
    assert "req/s" in done.stderr
    assert remaining_queues(server, doc) == []


def test_compare_runs_both_servers(servers: list[TidingsServer], tmp_path: Path) -> None:
    first, second = servers
    out = tmp_path / "compare.json"
    done = bench(first.url, *LOAD, "--compare", second.url, "--json", str(out), "--quiet",
                 "--bulk-delete")
    assert done.returncode == 0, done.stderr
    runs = json.loads(out.read_text())["runs"]
    assert [run["url"] for run in runs] == [first.url, second.url]
    assert runs[0]["run_id"] != runs[1]["run_id"]  # fresh queues for each run
    for run, server in zip(runs, servers, strict=True):
        check_run(run, server.url)
        assert remaining_queues(server, run) == []
    assert "B/A" in done.stdout and "producer req/s" in done.stdout
    assert done.stderr == ""  # --quiet


def test_json_to_stdout_keeps_stdout_parseable(
    servers: list[TidingsServer], tmp_path: Path
) -> None:
    done = bench(servers[0].url, "--duration", "1", "--producers", "1", "--consumers", "0",
                 "--processes", "1", "--concurrency", "2", "--batch", "3", "--json", "-",
                 "--keep")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert set(doc["roles"]) == {"producer"}
    producer = doc["roles"]["producer"]
    assert producer["messages"] == 3 * producer["requests"]
    assert doc["post_to_claim_ms"]["count"] == 0
    assert "bench CPU" in done.stderr  # the table went to stderr
    assert len(remaining_queues(servers[0], doc)) == 1  # --keep


def test_unreachable_server_is_counted_not_fatal(tmp_path: Path) -> None:
    out = tmp_path / "down.json"
    url = f"http://127.0.0.1:{free_port()}"
    done = bench(url, "--duration", "1", "--processes", "1", "--concurrency", "1",
                 "--json", str(out), "--quiet")
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    for role in ("producer", "consumer"):
        entry = doc["roles"][role]
        assert set(entry["errors"]) == {"connection refused"}
        assert entry["messages"] == 0
    assert doc["setup_errors"]
    assert "connection refused" in done.stdout


def test_ctrl_c_stops_and_still_reports(servers: list[TidingsServer], tmp_path: Path) -> None:
    out, err = tmp_path / "stopped.json", tmp_path / "stderr.txt"
    with err.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "tidings.cli", "bench", servers[0].url, "--duration", "600",
             "--processes", "2", "--concurrency", "2", "--json", str(out)],
            stdout=subprocess.PIPE, stderr=stderr, text=True,
            start_new_session=True,  # so SIGINT reaches the workers too, as Ctrl-C does
        )
    try:
        wait_until(lambda: "req/s" in err.read_text(), "a progress line", timeout=RUN_TIMEOUT)
        os.killpg(process.pid, signal.SIGINT)
        stdout, _ = process.communicate(timeout=RUN_TIMEOUT)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 130
    assert "interrupted" in stdout
    doc = json.loads(out.read_text())
    assert doc["interrupted"] is True
    assert doc["roles"]["producer"]["requests"] > 0
    assert remaining_queues(servers[0], doc) == []


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--processes", "0"], "--processes"),
        (["--concurrency", "0"], "--concurrency"),
        (["--wait", "30"], "--wait"),
        (["--wait", "0"], "--wait"),
        (["--duration", "0"], "--duration"),
        (["--message-size", "10"], "--message-size"),
        (["--producers", "0", "--consumers", "0"], "nothing to do"),
        (["--producers", "-1"], "--producers"),
        (["--json", "/no/such/dir/out.json"], "--json"),
        (["--compare", "ftp://example.com"], "--compare"),
        (["--batch", "many"], "--batch"),
    ],
)
def test_bad_options_are_usage_errors(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["bench", "http://127.0.0.1:1", *argv])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "usage: tidings bench" in err and says in err


def test_a_url_without_a_host_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["bench", "127.0.0.1:8888"])
    assert stopped.value.code == 2
    assert "URL must be an http:// or https:// URL" in capsys.readouterr().err
