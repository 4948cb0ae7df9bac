"""Starts real Tidings server processes for tests and benchmarks."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import httpx

STARTUP_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def client_headers(project: str | None = None, client_id: str | None = None) -> dict[str, str]:
    return {
        "Client-ID": client_id or str(uuid.uuid4()),
        "X-Project-ID": project or f"test-{uuid.uuid4().hex[:12]}",
    }


class TidingsServer:
    """One ``tidings serve`` process on a free loopback port, over its own SQLite file."""

    def __init__(
        self,
        data_dir: Path,
        env: Mapping[str, str] | None = None,
        workers: int = 1,
        store_uri: str | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.store_uri = store_uri or f"sqlite:///{data_dir / 'tidings.db'}"
        self.env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / f"server-{self.port}.log"

    def start(self) -> TidingsServer:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        env.update({"TIDINGS_DRIVERS__MESSAGE_STORE": self.store_uri,
                    "TIDINGS_SERVER__LOG_LEVEL": "warning"})
        env.update(self.env)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tidings.cli", "serve", "--port", str(self.port),
                 "--workers", str(self.workers)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # so kill() reaches every worker process
            )
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                if httpx.get(self.url + "/", timeout=1.0).status_code == 300:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not start in {STARTUP_TIMEOUT}s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Graceful shutdown (SIGTERM), escalating to SIGKILL."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            self.kill()
        self.process = None

    def kill(self) -> None:
        """SIGKILL the whole process group: no shutdown code runs."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=15)
        self.process = None

    def client(self, project: str | None = None, client_id: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.url + "/v2",
            headers=client_headers(project, client_id),
            timeout=30.0,
        )
