"""Private Redis and PostgreSQL servers for tests that stop, crash and restart them.

The machine's shared services must never be disturbed, so fault tests run their own on
free loopback ports, in temporary directories, and remove them afterwards.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO

from tests.server import free_port, listeners

WAIT = 30.0


def _wait_until(check: object, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up within {WAIT}s")


class RedisInstance:
    """A redis-server of our own; ``appendfsync`` 'always' makes every write durable."""

    def __init__(self, data_dir: Path, *, appendonly: bool, appendfsync: str = "always") -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisInstance:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.data_dir), "--save", "", "--daemonize", "no",
                "--appendonly", "yes" if self.appendonly else "no",
                "--appendfsync", self.appendfsync]
        self._close_log()
        self._log = open(self.data_dir / "redis.log", "ab")  # noqa: SIM115 - closed in _reap
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        _wait_until(self._answers, f"redis on port {self.port}")
        return self

    def _answers(self) -> bool:
        assert self.process is not None
        if not listeners(self.process.pid, self.port):
            return False  # not (yet) ours: another redis may hold the port
        done = subprocess.run(["redis-cli", "-p", str(self.port), "ping"],
                              capture_output=True, timeout=5, check=False)
        return done.stdout.strip() == b"PONG"

    def kill(self) -> None:
        """SIGKILL: nothing is flushed beyond what the fsync policy already wrote."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=15)
        self._reap()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reap()

    def _reap(self) -> None:
        self.process = None
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed")
    return found[-1]


class PostgresInstance:
    """A PostgreSQL cluster of our own, run as the 'postgres' user (it refuses root)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="tidings-pg-", dir="/tmp"))
        self.data_dir = self.root / "data"
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *argv: str) -> None:
        command = ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else list(argv)
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def init(self) -> PostgresInstance:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._as_postgres(_pg_bin("initdb"), "-D", str(self.data_dir), "-A", "trust",
                          "-U", "postgres", "--no-sync")
        return self

    def start(self) -> PostgresInstance:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
                   "-c fsync=on -c synchronous_commit=on")
        self._as_postgres(_pg_bin("pg_ctl"), "-D", str(self.data_dir), "-o", options,
                          "-l", str(self.root / "pg.log"), "-w", "-t", "60", "start")
        return self

    def crash(self) -> None:
        """Immediate shutdown: like a power cut for everything not yet committed."""
        self._as_postgres(_pg_bin("pg_ctl"), "-D", str(self.data_dir), "-m", "immediate",
                          "-w", "stop")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self._as_postgres(_pg_bin("pg_ctl"), "-D", str(self.data_dir), "-m", "fast",
                              "-w", "stop")

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
