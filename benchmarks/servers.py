"""Server processes for the benchmarks, and a sampler of their memory and CPU use."""

from __future__ import annotations

import contextlib
import sys
import threading
from pathlib import Path

import psutil

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))  # the server launcher is shared with the tests

from tests.server import ServerProcess, TidingsServer, free_port  # noqa: E402


def tidings_server(data_dir: Path, workers: int, store_uri: str) -> ServerProcess:
    return TidingsServer(data_dir, workers=workers, store_uri=store_uri)


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
