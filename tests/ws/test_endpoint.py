"""Where the WebSocket API is served: ``/`` and ``/v2/ws`` on the HTTP port, any path on
``[websocket] port`` in every worker, and over TLS (``wss://``) with ``[server]
ssl_certfile`` / ``ssl_keyfile``, which make the HTTP API ``https://`` too.

One server covers it all: TLS on, the separate port set, two workers (each binds the
separate port with SO_REUSEPORT; a worker that could not would stop the server).
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.exceptions import InvalidStatus

from tests.server import TidingsServer, free_port, listeners
from tests.ws.wire import Wire


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tidings-test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class TlsServer(TidingsServer):
    """A server speaking https and wss, trusted through its own certificate."""

    def __init__(self, data_dir: Path, ws_port: int) -> None:
        self.cert, key = self_signed(data_dir)
        self.ws_port = ws_port
        super().__init__(
            data_dir,
            workers=2,
            env={
                "TIDINGS_SERVER__SSL_CERTFILE": str(self.cert),
                "TIDINGS_SERVER__SSL_KEYFILE": str(key),
                "TIDINGS_WEBSOCKET__PORT": str(ws_port),
                # Under the full suite a TLS handshake and upgrade has once outlasted the
                # default 10 s head timeout (the connection closed unanswered): these
                # tests are about where the API is served, not about slow clients.
                "TIDINGS_SERVER__HEADER_TIMEOUT": "60",
            },
        )
        self.url = f"https://127.0.0.1:{self.port}"
        self.context = ssl.create_default_context(cafile=str(self.cert))
        # The websockets sync client reads in a thread of its own while the caller writes
        # the upgrade request on the same SSL socket; with TLS 1.3 the session tickets the
        # server sends right after the handshake race that write, and about one connection
        # in 250 hangs with its request unsent (reproduced with a bare uvicorn server too,
        # not with a single-threaded client). TLS 1.2 has no post-handshake tickets.
        self.ws_context = ssl.create_default_context(cafile=str(self.cert))
        self.ws_context.maximum_version = ssl.TLSVersion.TLSv1_2

    def ready(self) -> bool:
        """HTTPS answers, and every worker listens on the separate port: each binds its
        own socket after the store opened, so the first answer says nothing of the rest."""
        try:
            httpx.get(self.url + "/", timeout=1.0, verify=self.context)
        except httpx.HTTPError:
            return False
        return bool(listeners(self.pid, self.port)) and (
            len(listeners(self.pid, self.ws_port)) == self.workers
        )

    def wire(self, path: str, *, port: int | None = None, binary: bool = False) -> Wire:
        url = f"wss://127.0.0.1:{port or self.port}{path}"
        return Wire(url, ssl_context=self.ws_context, binary=binary)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    srv = TlsServer(tmp_path_factory.mktemp("ws-endpoint"), free_port())
    srv.start()
    yield srv
    srv.stop()


@pytest.mark.parametrize("path", ["/", "/v2/ws"])
def test_the_http_port_serves_the_api_at_its_paths(tls_server: TlsServer, path: str) -> None:
    with tls_server.wire(path) as wire:
        assert wire.call("queue_create", {"queue_name": "here"}) == (201, "Queue here created.")
        assert wire.call("queue_list") == (200, {"queues": [{"name": "here"}]})


@pytest.mark.parametrize("path", ["/v2", "/v2/queues", "/v2/ws/more"])
def test_other_paths_of_the_http_port_refuse_the_upgrade(
    tls_server: TlsServer, path: str
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        tls_server.wire(path)
    assert refused.value.response.status_code == 403


def test_the_http_api_goes_on_over_https(tls_server: TlsServer) -> None:
    answer = httpx.get(tls_server.url + "/", timeout=20, verify=tls_server.context)
    assert answer.status_code == 300
    # Plain text on a TLS port is no request.
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{tls_server.port}/", timeout=20)


@pytest.mark.parametrize("path", ["/", "/v2/ws", "/any/path?at=all"])
def test_the_separate_port_serves_the_api_at_any_path(tls_server: TlsServer, path: str) -> None:
    with tls_server.wire(path, port=tls_server.ws_port, binary=True) as wire:
        assert wire.call("queue_create", {"queue_name": "there"})[0] in (201, 204)
        status, listed = wire.call("queue_list")
        assert status == 200 and {"name": "there"} in listed["queues"]


def test_every_worker_listens_on_the_separate_port(tls_server: TlsServer) -> None:
    listening = listeners(tls_server.pid, tls_server.ws_port)
    # Two workers, each with its own socket (SO_REUSEPORT: the kernel spreads accepts).
    assert len(listening) == 2 and set(listening) <= tls_server.worker_pids(), listening
    wires = [tls_server.wire("/", port=tls_server.ws_port) for _ in range(4)]
    try:
        assert all(wire.call("queue_list")[0] == 200 for wire in wires)
    finally:
        for wire in wires:
            wire.ws.close()


def test_plain_http_on_the_separate_port_is_told_to_upgrade(tls_server: TlsServer) -> None:
    answer = httpx.get(
        f"https://127.0.0.1:{tls_server.ws_port}/", timeout=20, verify=tls_server.context
    )
    assert answer.status_code == 426
    assert answer.headers["upgrade"] == "websocket"
    assert answer.json() == {
        "title": "Upgrade Required",
        "description": "This port serves the WebSocket API only.",
    }
