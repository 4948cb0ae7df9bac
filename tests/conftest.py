"""Shared fixtures: a real server process per test session (per xdist worker)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.redis_cluster import RedisCluster
from tests.server import TidingsServer


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TidingsServer]:
    """The default server: embedded store, default limits, admin mode on."""
    srv = TidingsServer(
        tmp_path_factory.mktemp("server"), env={"TIDINGS_ADMIN_MODE": "true"}
    ).start()
    yield srv
    srv.stop()


@pytest.fixture
def api(server: TidingsServer) -> Iterator[httpx.Client]:
    """An HTTP client for ``/v2`` in a project of its own (tests never share data)."""
    with server.client() as client:
        yield client


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[type[TidingsServer]]:
    """Start extra servers with their own settings; all are stopped after the test."""
    started: list[TidingsServer] = []

    class _Server(TidingsServer):
        def start(self) -> TidingsServer:
            started.append(self)
            return super().start()

    yield _Server
    for srv in started:
        srv.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A real 3-master Redis Cluster on free loopback ports, for this test session."""
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster")).start()
    yield cluster
    cluster.stop()
