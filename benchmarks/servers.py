"""Server processes for the benchmarks, and a sampler of their memory and CPU use."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

STARTUP_TIMEOUT = 30.0
BENCH_DIR = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """One server (and its worker processes) in its own session on a loopback port."""

    def __init__(
        self, name: str, argv: Sequence[str], port: int, log_path: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        env.update(self.env)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # so stop() reaches every worker
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/", timeout=1.0):
                    return
            except urllib.error.HTTPError:
                return  # any HTTP answer (Tidings says 300) means it is serving
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start in {STARTUP_TIMEOUT}s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)
        except ProcessLookupError:
            pass
        self.process = None


def tidings_server(data_dir: Path, workers: int) -> ServerProcess:
    port = free_port()
    return ServerProcess(
        "tidings",
        [sys.executable, "-m", "tidings.cli", "serve", "--host", "127.0.0.1",
         "--port", str(port), "--workers", str(workers)],
        port,
        data_dir / "tidings.log",
        env={
            "TIDINGS_DRIVERS__MESSAGE_STORE": f"sqlite:///{data_dir / 'tidings.db'}",
            "TIDINGS_SERVER__LOG_LEVEL": "warning",
        },
    )


def ceiling_server(data_dir: Path, workers: int) -> ServerProcess:
    port = free_port()
    return ServerProcess(
        "ceiling",
        [sys.executable, "-m", "uvicorn", "--app-dir", str(BENCH_DIR), "--factory",
         "ceiling_app:create_app", "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers), "--loop", "uvloop", "--http", "httptools",
         "--lifespan", "off", "--no-access-log", "--no-server-header",
         "--log-level", "warning"],
        port,
        data_dir / "ceiling.log",
    )


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


class TreeSampler:
    """Samples the RSS of a process tree on a background thread; CPU time on demand."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_rss = 0
        self.window_peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> TreeSampler:
        self.sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> int:
        total = 0
        for proc in _tree(self.pid):
            with contextlib.suppress(psutil.NoSuchProcess):
                total += proc.memory_info().rss
        self.peak_rss = max(self.peak_rss, total)
        self.window_peak_rss = max(self.window_peak_rss, total)
        return total

    def reset_window(self) -> None:
        self.window_peak_rss = self.sample()

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in _tree(self.pid):
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total
