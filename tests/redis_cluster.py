"""A throwaway 3-master Redis Cluster on free loopback ports, for tests."""

from __future__ import annotations

import random
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.server import bindable

NODES = 3
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
COMMAND_TIMEOUT = 10.0
BUS_OFFSET = 10000


def _free_port(taken: list[int]) -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    for _ in range(200):
        port = random.randint(33000, 50000)  # clear of tests.server.PORT_RANGE
        if port not in taken and bindable(port) and bindable(port + BUS_OFFSET):
            return port
    raise RuntimeError("no free loopback port pair for a Redis cluster node")


def _require(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise RuntimeError(f"{program} is not on PATH; install Redis to run cluster tests")
    return path


class RedisCluster:
    """Starts ``redis-server`` processes, joins them into a cluster, stops them."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.ports: list[int] = []
        self._processes: list[subprocess.Popen[bytes]] = []

    @property
    def uri(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def start(self) -> RedisCluster:
        server, cli = _require("redis-server"), _require("redis-cli")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            for _ in range(NODES):
                self._spawn(server, _free_port(self.ports))
            for port in self.ports:
                self._wait_for(lambda port=port: self._answers(cli, port), "node start")
            subprocess.run(
                [
                    cli,
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{p}" for p in self.ports),
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=COMMAND_TIMEOUT,
            )
            self._wait_for(lambda: all(self._state_ok(cli, p) for p in self.ports), "cluster ok")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
        for process in self._processes:
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT)
        self._processes.clear()

    def _spawn(self, server: str, port: int) -> None:
        log = (self.data_dir / f"redis-{port}.log").open("wb")
        with log:
            process = subprocess.Popen(
                [
                    server,
                    "--port",
                    str(port),
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(self.data_dir / f"nodes-{port}.conf"),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--bind",
                    "127.0.0.1",
                    "--daemonize",
                    "no",
                    "--dir",
                    str(self.data_dir),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.ports.append(port)
        self._processes.append(process)

    @staticmethod
    def _query(cli: str, port: int, *command: str) -> str:
        try:
            done = subprocess.run(
                [cli, "-h", "127.0.0.1", "-p", str(port), *command],
                capture_output=True,
                timeout=COMMAND_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return ""
        return done.stdout.decode(errors="replace")

    def _answers(self, cli: str, port: int) -> bool:
        return "PONG" in self._query(cli, port, "ping")

    def _state_ok(self, cli: str, port: int) -> bool:
        return "cluster_state:ok" in self._query(cli, port, "cluster", "info")

    def _wait_for(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._exited():
                raise RuntimeError(f"a redis-server exited during {what}; see {self.data_dir}")
            if condition():
                return
            time.sleep(0.1)
        raise RuntimeError(f"Redis cluster: timed out waiting for {what}")

    def _exited(self) -> bool:
        return any(p.poll() is not None for p in self._processes)
