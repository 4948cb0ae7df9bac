"""``[sqs] port`` (issue 14, item 1): the SQS face alone on a port of its own, served by
every worker, besides the HTTP port; SQS requests counted in the metrics; ``[sqs]
enabled = false`` leaves the HTTP port to Zaqar.

The store does not matter here: SQLite.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from prometheus_client.parser import text_string_to_metric_families

from tests.server import TidingsServer, client_headers, free_port, listeners, wait_until
from tests.sqs.conftest import sqs_client
from tests.sqs.query_model import QueryClient, check_error_xml, queue_path

pytestmark = pytest.mark.xdist_group("sqs-port")


class SqsPortServer(TidingsServer):
    def __init__(self, data_dir: Path, sqs_port: int) -> None:
        self.sqs_port = sqs_port
        super().__init__(
            data_dir,
            workers=2,
            env={
                "TIDINGS_SQS__PORT": str(sqs_port),
                "TIDINGS_ADMIN_MODE": "true",
                "TIDINGS_METRICS__ENABLED": "true",
            },
        )
        self.sqs_url = f"http://127.0.0.1:{sqs_port}"

    def ready(self) -> bool:
        """Every worker listens on the SQS port (each binds it after its store opened)."""
        return super().ready() and len(listeners(self.pid, self.sqs_port)) == self.workers


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqsPortServer]:
    server = SqsPortServer(tmp_path_factory.mktemp("sqs-port"), free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def project() -> str:
    return f"sqsp-{uuid.uuid4().hex[:12]}"


def test_the_port_serves_sqs(srv: SqsPortServer, project: str) -> None:
    on_port = sqs_client(srv.sqs_url, project)
    url = on_port.create_queue(QueueName="q")["QueueUrl"]
    assert url == f"{srv.sqs_url}/{project}/q"  # queue URLs point where the client called
    on_port.send_message(QueueUrl=url, MessageBody="hello")
    # The same queue on the HTTP port: one engine.
    on_main = sqs_client(srv.url, project)
    assert on_main.list_queues()["QueueUrls"] == [f"{srv.url}/{project}/q"]
    [message] = on_main.receive_message(QueueUrl=url)["Messages"]
    assert message["Body"] == "hello"


def test_the_query_protocol_at_any_path(srv: SqsPortServer, project: str) -> None:
    client = QueryClient(srv.sqs_url, project)
    url = client.call("CreateQueue", {"QueueName": "by-query"})["QueueUrl"]
    fields = client.form("GetQueueAttributes", {"QueueUrl": url, "AttributeNames": ["All"]})
    del fields["QueueUrl"]
    shown = client.parse("GetQueueAttributes", client.send(fields, path=queue_path(url)))
    assert shown["Attributes"]["VisibilityTimeout"] == "30"
    fields = client.form("GetQueueUrl", {"QueueName": "by-query"})
    assert client.parse("GetQueueUrl", client.send(fields, method="GET")) == {"QueueUrl": url}


def test_zaqar_is_not_on_the_port(srv: SqsPortServer) -> None:
    """Everything on the port is an SQS request: Zaqar's paths get SQS's answer."""
    for method, path in [("GET", "/v2/queues"), ("GET", "/"), ("PUT", "/v2/queues/q")]:
        response = httpx.request(method, srv.sqs_url + path, headers=client_headers())
        assert response.status_code == 403, (method, path, response.text)
        check_error_xml(response.content, response.headers["x-amzn-requestid"])
        assert b"<Code>MissingAuthenticationToken</Code>" in response.content
    client = QueryClient(srv.sqs_url, "p")
    response = client.send({"QueueNamePrefix": "x"}, path="/v2/queues", method="GET")
    assert response.status_code == 400
    check_error_xml(response.content, response.headers["x-amzn-requestid"])
    assert b"<Code>MissingAction</Code>" in response.content


def _count(srv: TidingsServer, name: str = "tidings_requests_total", **labels: str) -> float:
    response = httpx.get(
        srv.url + "/metrics", headers={**client_headers(), "X-Roles": "admin"}
    )
    assert response.status_code == 200, response.text
    return sum(
        sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def test_sqs_requests_are_counted(srv: SqsPortServer, project: str) -> None:
    client: Any = sqs_client(srv.sqs_url, project)
    before = _count(srv, transport="sqs", operation="ListQueueTags", status="4xx")
    for _ in range(3):
        with pytest.raises(client.exceptions.QueueDoesNotExist):
            client.list_queue_tags(QueueUrl=f"{srv.sqs_url}/{project}/missing")
    wait_until(
        lambda: _count(srv, transport="sqs", operation="ListQueueTags", status="4xx")
        == before + 3,
        "three ListQueueTags counted",
    )


def test_disabled(tmp_path: Path) -> None:
    """``[sqs] enabled = false``: an SQS request on the HTTP port is Zaqar's to refuse."""
    server = TidingsServer(tmp_path, env={"TIDINGS_SQS__ENABLED": "false"})
    server.start()
    try:
        client = sqs_client(server.url, "p")
        with pytest.raises(Exception) as caught:
            client.list_queues()
        assert "x-amzn-requestid" not in str(caught.value).lower()
        response = httpx.post(
            server.url + "/", content=b"Action=ListQueues",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 405
        assert "x-amzn-requestid" not in response.headers
    finally:
        server.stop()


def test_a_receive_whose_client_left_takes_nothing(srv: SqsPortServer, project: str) -> None:
    """A long poll is dropped as soon as its client disconnects: a message sent after
    that is there for the next receive, not claimed for nobody."""
    client = sqs_client(srv.sqs_url, project)
    url = client.create_queue(QueueName="left")["QueueUrl"]
    waiters = _count(srv, "tidings_longpoll_waiters")
    body = msgspec.json.encode({"QueueUrl": url, "WaitTimeSeconds": 20})
    request = AWSRequest(
        method="POST",
        url=srv.sqs_url + "/",
        data=body,
        headers={
            "X-Amz-Target": "AmazonSQS.ReceiveMessage",
            "Content-Type": "application/x-amz-json-1.0",
        },
    )
    SigV4Auth(Credentials(project, "unused"), "sqs", "us-east-1").add_auth(request)
    head = "".join(f"{k}: {v}\r\n" for k, v in request.headers.items())
    wire = (
        f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{srv.sqs_port}\r\n{head}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection(("127.0.0.1", srv.sqs_port), timeout=10) as sock:
        sock.sendall(wire)
        wait_until(
            lambda: _count(srv, "tidings_longpoll_waiters") == waiters + 1, "the receive waiting"
        )
    wait_until(
        lambda: _count(srv, "tidings_longpoll_waiters") == waiters,
        "the abandoned receive dropped",
        timeout=10,
    )
    client.send_message(QueueUrl=url, MessageBody="for whoever asks next")
    [message] = client.receive_message(QueueUrl=url)["Messages"]
    assert message["Body"] == "for whoever asks next"
