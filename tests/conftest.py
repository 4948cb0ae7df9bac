"""Shared fixtures: real server processes, one per store kind and test session.

Every test that uses ``server``, ``api`` or ``make_server`` runs once per store in
``tests.backends.STORE_KINDS`` (SQLite, Redis, PostgreSQL), each server in a namespace
of its own that is removed afterwards.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import certifi
import httpx
import httpx._transports.default as httpx_transports
import pytest
from _pytest.nodeid import coerce_node_id

from tests.backends import STORE_KINDS, StoreNamespace
from tests.keystone import Keystone
from tests.redis_cluster import RedisCluster
from tests.server import TidingsServer, server_reports

# httpx builds a new SSL context, loading the whole CA bundle (~0.1 s of CPU), for every
# client it makes, even one that only ever speaks plain HTTP to loopback; the tests make
# thousands. Clients with the default verification share one context instead; any other
# (a test's own certificate, verify=False) is built as httpx builds it.
_DEFAULT_TLS = ssl.create_default_context(cafile=certifi.where())
_build_tls = httpx_transports.create_ssl_context


def _shared_tls(verify: Any = True, cert: Any = None, trust_env: bool = True) -> ssl.SSLContext:
    if verify is True and cert is None:
        return _DEFAULT_TLS
    return _build_tls(verify=verify, cert=cert, trust_env=trust_env)


httpx_transports.create_ssl_context = _shared_tls  # type: ignore[assignment]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Make ``--dist loadgroup`` group again: pytest-xdist (3.8) marks an item's group by
    setting ``item._nodeid``, which pytest 9 no longer reads (``nodeid`` comes from
    ``item._id``). Without this, every worker starts its own Keystone and module servers."""
    for item in items:
        grouped = item.__dict__.get("_nodeid")
        if isinstance(grouped, str) and grouped != item.nodeid:
            item._id = coerce_node_id(grouped)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failing test's report carries the logs of the servers it ran against: under
    load in CI, a server's own words are often the only clue."""
    report = yield
    if report.failed:
        for title, text in server_reports():
            report.sections.append((title, text or "(nothing logged)"))
    return report


@pytest.fixture(scope="session", params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture(scope="session")
def server(store_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TidingsServer]:
    """The default server: default limits, admin mode on."""
    data_dir = tmp_path_factory.mktemp(f"server-{store_kind}")
    namespace = StoreNamespace(store_kind, data_dir)
    srv = TidingsServer(data_dir, env={"TIDINGS_ADMIN_MODE": "true"}, store_uri=namespace.uri)
    srv.start()
    yield srv
    srv.stop()
    namespace.drop()


@pytest.fixture
def api(server: TidingsServer) -> Iterator[httpx.Client]:
    """An HTTP client for ``/v2`` in a project of its own (tests never share data)."""
    with server.client() as client:
        yield client


@pytest.fixture
def make_server(store_kind: str, tmp_path: Path) -> Iterator[type[TidingsServer]]:
    """Start extra servers with their own settings on the same kind of store.

    Each gets a fresh namespace unless ``store_uri`` is given; all are stopped and their
    namespaces dropped after the test.
    """
    started: list[TidingsServer] = []
    namespaces: list[StoreNamespace] = []

    class _Server(TidingsServer):
        def __init__(
            self,
            data_dir: Path,
            env: Mapping[str, str] | None = None,
            workers: int = 1,
            store_uri: str | None = None,
        ) -> None:
            if store_uri is None:
                namespace = StoreNamespace(store_kind, data_dir)
                namespaces.append(namespace)
                store_uri = namespace.uri
            super().__init__(data_dir, env=env, workers=workers, store_uri=store_uri)

        def start(self) -> TidingsServer:
            started.append(self)
            super().start()
            return self

    yield _Server
    for srv in started:
        srv.stop()
    for namespace in namespaces:
        namespace.drop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A real 3-master Redis Cluster on free loopback ports, for this test session."""
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster")).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def keystone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keystone]:
    """A real Keystone (tests/keystone.py) on a free loopback port, for this test session."""
    deployment = Keystone(tmp_path_factory.mktemp("keystone"))
    try:
        yield deployment.start()
    finally:
        deployment.resume()
        deployment.stop()
