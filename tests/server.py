"""Starts real server processes for tests and benchmarks."""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import httpx
import psutil

STARTUP_TIMEOUT = 30.0
WAIT_TIMEOUT = 20.0

T = TypeVar("T")

RESERVED_DEFAULTS = {
    "_max_messages_post_size": 262144,
    "_default_message_ttl": 3600,
    "_default_message_delay": 0,
    "_dead_letter_queue": None,
    "_dead_letter_queue_messages_ttl": None,
    "_max_claim_count": None,
    "_enable_encrypt_messages": False,
}
"""What GET on a queue shows for reserved keys it has not set, with default settings."""


def wait_until(
    probe: Callable[[], T],
    what: str,
    timeout: float = WAIT_TIMEOUT,
    interval: float = 0.05,
) -> T:
    """Poll ``probe`` until it returns something truthy (returned), or fail after ``timeout``.

    The way tests wait for something to happen: on a condition, with a bound, never a
    fixed sleep. ``what`` names the condition in the failure.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found or time.monotonic() >= deadline:
            break
        time.sleep(interval)
    if not found:
        raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {found!r})")
    return found


def age_bound(since: float) -> int:
    """The largest ``age`` the server may show for something made after ``since``
    (``time.monotonic()``): the whole seconds elapsed, plus one for stored timestamps
    that are rounded to the second. A causal bound, not a guess at the machine's speed."""
    return math.ceil(time.monotonic() - since) + 1


# Ports for the servers tests start: below Linux's ephemeral range (32768 and up), so no
# outgoing connection holds one, and a slice of their own for each xdist worker, so two
# workers never pick the same port and start two servers on it (the second would fail to
# bind, and its readiness probe would be answered by the first).
PORT_RANGE = range(20000, 32000)


def _worker_ports() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    size = len(PORT_RANGE) // count
    start = PORT_RANGE.start + (index % count) * size
    return range(start, start + size)


_port_cursor = itertools.count(random.randrange(len(PORT_RANGE)))


def bindable(port: int) -> bool:
    """Whether a loopback socket can bind ``port`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback port nothing listens on now, from this worker's own slice; successive
    calls give different ports, so two servers started together do not collide."""
    ports = _worker_ports()
    for _ in range(len(ports)):
        port = ports[next(_port_cursor) % len(ports)]
        if bindable(port):
            return port
    raise RuntimeError(f"no free port in {ports}")


def listeners(pid: int, port: int) -> list[int]:
    """The processes of ``pid``'s tree that listen on TCP ``port``: how a test knows the
    server that answers on a port is the one it started."""
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    found = []
    for process in tree:
        try:
            sockets = process.net_connections(kind="tcp")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in sockets):
            found.append(process.pid)
    return found


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends on ``sock`` until it closes the connection; a hang
    past ``timeout`` seconds fails the test."""
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no close within {timeout}s; got {data[:300]!r}")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise AssertionError(f"the server hung; got {data[:300]!r}") from None
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def client_headers(project: str | None = None, client_id: str | None = None) -> dict[str, str]:
    return {
        "Client-ID": client_id or str(uuid.uuid4()),
        "X-Project-ID": project or f"test-{uuid.uuid4().hex[:12]}",
    }


RUNNING: weakref.WeakSet[ServerProcess] = weakref.WeakSet()
"""Every server a test made: a failing test's report shows their logs (tests/conftest.py)."""


def server_reports() -> list[tuple[str, str]]:
    """(title, text) for each started server that logged something or has died."""
    sections = []
    for server in list(RUNNING):
        if server.process is None:
            continue
        died = server.process.poll()
        text = server.log()
        if text or died is not None:
            state = f"exited with {died}" if died is not None else "running"
            sections.append((f"{server.name} on port {server.port} ({state})", text))
    return sections


class ServerProcess:
    """A server (and its worker processes) in its own session on a loopback port.

    ``start()`` may be called again after ``stop()`` or ``kill()``: same port, same files.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        port: int,
        log_path: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        RUNNING.add(self)

    def start(self) -> ServerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        env.update(self.env)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # so stop() and kill() reach every worker
            )
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log()}")
            if self.ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start in {STARTUP_TIMEOUT}s:\n{self.log()}")

    def ready(self) -> bool:
        """Any HTTP answer, from a process of this server's own tree."""
        try:
            httpx.get(self.url + "/", timeout=1.0)
        except httpx.HTTPError:
            return False
        return bool(listeners(self.pid, self.port))

    def worker_pids(self) -> set[int]:
        """The worker processes of a multi-worker server (uvicorn spawns them)."""
        try:
            children = psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return set()
        found = set()
        for child in children:
            with contextlib.suppress(psutil.Error):
                if any("spawn_main" in part for part in child.cmdline()):
                    found.add(child.pid)
        return found

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


class TidingsServer(ServerProcess):
    """``tidings serve`` on a free loopback port, over its own SQLite file by default."""

    def __init__(
        self,
        data_dir: Path,
        env: Mapping[str, str] | None = None,
        workers: int = 1,
        store_uri: str | None = None,
    ) -> None:
        port = free_port()
        self.data_dir = data_dir
        self.workers = workers
        self.store_uri = store_uri or f"sqlite:///{data_dir / 'tidings.db'}"
        settings = {
            "TIDINGS_DRIVERS__MESSAGE_STORE": self.store_uri,
            "TIDINGS_SERVER__LOG_LEVEL": "warning",
            **(env or {}),
        }
        argv = [sys.executable, "-m", "tidings.cli", "serve", "--host", "127.0.0.1",
                "--port", str(port), "--workers", str(workers)]
        super().__init__("tidings", argv, port, data_dir / f"server-{port}.log", settings)

    def client(self, project: str | None = None, client_id: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.url + "/v2",
            headers=client_headers(project, client_id),
            timeout=30.0,
        )
