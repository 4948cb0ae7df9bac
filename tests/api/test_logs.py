"""Logs (issue 13 item 4): with ``[server] log_format = "json"`` every line the server
writes is one JSON object, with one access line per HTTP request and per WebSocket
action; and no log line, in either format and at debug level, shows a token, a
signature, a signing key, a store password, a subscriber's credentials, a subscription's
options or a message body.

Real servers (SQLite for the access lines; a private password-protected Redis for the
secrets), their whole stderr read back from the log file.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from botocore.exceptions import ClientError

from tests import notify_listeners
from tests.instances import RedisInstance
from tests.notify_listeners import WebhookListener
from tests.server import TidingsServer, client_headers, free_port, wait_until
from tests.sqs.conftest import sqs_client
from tests.ws.wire import FRAME_BOUND, Wire, ws_url
from tidings.admission.auth.tokens import (
    AccessKeyRecord,
    TokenRecord,
    record_line,
    token_hash,
)

webhook_listener = notify_listeners.webhook_listener

REQUEST_ID = "x-openstack-request-id"
LINE_KEYS = {"time", "level", "logger", "message"}
ACCESS_KEYS = LINE_KEYS | {
    "request_id",
    "project",
    "operation",
    "status",
    "duration_ms",
    "bytes",
    "transport",
}
MAX_HEADER_SIZE = 4096


def log_text(server: TidingsServer) -> str:
    """The server's whole log so far (``ServerProcess.log`` keeps only its tail)."""
    return server.log_path.read_text(errors="replace")


def json_lines(server: TidingsServer) -> list[dict[str, Any]]:
    """Every line of the log, each of which must be a JSON object with the common keys."""
    lines = []
    for line in log_text(server).splitlines():
        document = json.loads(line)  # fails the test on any line that is not JSON
        assert isinstance(document, dict), line
        assert document.keys() >= LINE_KEYS, line
        assert document["level"] in {"debug", "info", "warning", "error", "critical"}, line
        when = datetime.strptime(document["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
        assert when.year >= 2024, line
        lines.append(document)
    return lines


def access_lines(server: TidingsServer) -> list[dict[str, Any]]:
    return [line for line in json_lines(server) if line["logger"] == "tidings.access"]


def access_line(server: TidingsServer, request_id: str) -> dict[str, Any]:
    """The one access line of a request, once it is written."""
    found = wait_until(
        lambda: [line for line in access_lines(server) if line["request_id"] == request_id],
        f"the access line of {request_id}",
    )
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope="module")
def json_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TidingsServer]:
    server = TidingsServer(
        tmp_path_factory.mktemp("json-logs"),
        env={
            "TIDINGS_SERVER__LOG_FORMAT": "json",
            "TIDINGS_SERVER__LOG_LEVEL": "info",
            "TIDINGS_SERVER__MAX_HEADER_SIZE": str(MAX_HEADER_SIZE),
        },
    )
    server.start()
    yield server
    server.stop()


def test_one_json_access_line_per_http_request(json_server: TidingsServer) -> None:
    project = f"logs-{uuid.uuid4().hex[:12]}"
    headers = client_headers(project)
    base = json_server.url
    post = {"messages": [{"body": {"n": 1}, "ttl": 60}]}
    cases: list[tuple[httpx.Response, str, str | None]] = [
        (httpx.put(f"{base}/v2/queues/lq", headers=headers), "queue_create", project),
        (httpx.post(f"{base}/v2/queues/lq/messages", json=post, headers=headers),
         "message_post", project),
        (httpx.get(f"{base}/v2/queues/lq/stats", headers=headers), "queue_get_stats", project),
        (httpx.get(f"{base}/v2/nowhere", headers=headers), "unknown", project),
        (httpx.post(f"{base}/v2/queues", headers=headers), "unknown", project),  # 405
        # Refused by admission (no Client-ID): the project the client named.
        (httpx.get(f"{base}/v2/queues", headers={"X-Project-ID": project}), "queue_list",
         project),
        (httpx.get(f"{base}/v2/queues", headers={"Client-ID": str(uuid.uuid4())}),
         "queue_list", None),
        # Refused before the application reads it: no operation, no project.
        (httpx.get(f"{base}/v2/queues", headers={**headers, "X-Big": "a" * MAX_HEADER_SIZE}),
         "unknown", None),
    ]
    statuses = [response.status_code for response, _, _ in cases]
    assert statuses == [201, 201, 200, 404, 405, 400, 400, 431]
    for response, operation, named in cases:
        line = access_line(json_server, response.headers[REQUEST_ID])
        assert line.keys() == ACCESS_KEYS, line
        assert line["level"] == "info"
        assert line["transport"] == "http"
        assert line["operation"] == operation, line
        assert line["status"] == response.status_code, line
        assert line["project"] == named, line
        assert line["bytes"] == len(response.content), line
        assert isinstance(line["duration_ms"], int | float) and line["duration_ms"] >= 0
    json_lines(json_server)  # every line is JSON, uvicorn's start-up lines included


@pytest.mark.parametrize("binary", [False, True], ids=["json", "msgpack"])
def test_one_json_access_line_per_websocket_action(
    json_server: TidingsServer, binary: bool
) -> None:
    project = f"logs-ws-{uuid.uuid4().hex[:12]}"
    frames = [
        ("queue_create", {"queue_name": "wq"}, "queue_create", 201),
        ("message_post", {"queue_name": "wq", "messages": [{"body": "x", "ttl": 60}]},
         "message_post", 201),
        ("queue_list", {}, "queue_list", 200),
        ("no_such_action", {}, "unknown", 400),
    ]
    sizes = []
    with Wire(ws_url(json_server.url), project=project, binary=binary) as wire:
        for action, body, _, status in frames:
            wire.send(wire.frame(action, body))
            raw = wire.ws.recv(timeout=FRAME_BOUND)
            if isinstance(raw, str):
                sizes.append(len(raw.encode()))
                answer = json.loads(raw)
            else:
                sizes.append(len(raw))
                answer = msgspec.msgpack.decode(raw)
            assert answer["headers"]["status"] == status, answer

    def mine() -> list[dict[str, Any]]:
        return [
            line for line in access_lines(json_server)
            if line["transport"] == "websocket" and line["project"] == project
        ]

    found = wait_until(lambda: len(mine()) >= len(frames) and mine(), "the WebSocket lines")
    assert len(found) == len(frames)
    for line, (_, _, operation, status), size in zip(found, frames, sizes, strict=True):
        assert line.keys() == ACCESS_KEYS, line
        assert (line["operation"], line["status"], line["bytes"]) == (operation, status, size)
        assert line["request_id"].startswith("req-")
    assert len({line["request_id"] for line in found}) == len(found)


# ------------------------------------------------------------------------ secrets


class Sentinels:
    """Unique strings that must never reach a log line."""

    def __init__(self) -> None:
        def mark(name: str) -> str:
            return f"{name}{random_part()}"

        self.token = secrets.token_urlsafe(32)
        self.bad_token = mark("badtoken")
        self.signing_key = mark("signingkey")
        self.bad_signature = mark("badsignature")
        self.body = mark("messagebody")
        self.hook_user = mark("hookuser")
        self.hook_password = mark("hookpassword")
        self.hook_path = mark("hookpath")
        self.hook_query = mark("hookquery")
        self.option = mark("hookoption")
        # An AWS access key pair of the tokens file (SQS), and a wrong secret for it.
        self.aws_secret = mark("awssecret")
        self.bad_aws_secret = mark("badawssecret")
        self.sqs_body = mark("sqsbody")
        self.sqs_attribute = mark("sqsattribute")
        self.signature = ""  # the server's (hexadecimal), once it has signed
        self.sqs_signatures: list[str] = []  # the SigV4 signatures the SQS calls sent

    def ours(self) -> dict[str, str]:
        return {
            k: v for k, v in vars(self).items() if k not in ("signature", "sqs_signatures")
        }


def random_part() -> str:
    """32 random characters of 64 kinds: 8 of them in a row never appear by chance."""
    return secrets.token_urlsafe(24)


def leaks(text: str, secrets_by_name: dict[str, str], fragment: int = 8) -> list[str]:
    """The names of the secrets that ``text`` shows, whole or any ``fragment`` characters
    of their (random) last 32 (a truncated quote, say, of a frame holding a token)."""
    found = []
    for name, value in secrets_by_name.items():
        tail = value[-32:]
        if value in text or any(
            tail[i : i + fragment] in text for i in range(len(tail) - fragment + 1)
        ):
            found.append(name)
    return found


@pytest.fixture(scope="module")
def locked_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisInstance, str]]:
    """A private Redis that wants a password (a store URI that holds one)."""
    redis = RedisInstance(tmp_path_factory.mktemp("locked-redis"), appendonly=False).start()
    password = f"storepassword{random_part()}"
    subprocess.run(
        ["redis-cli", "-p", str(redis.port), "config", "set", "requirepass", password],
        check=True, capture_output=True, timeout=10,
    )
    yield redis, password
    redis.stop()


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_no_secret_token_or_body_in_any_log_line(
    log_format: str,
    locked_redis: tuple[RedisInstance, str],
    webhook_listener: WebhookListener,
    tmp_path: Path,
) -> None:
    redis, store_password = locked_redis
    marks = Sentinels()
    project = f"secrets-{uuid.uuid4().hex[:12]}"
    tokens_file = tmp_path / "tokens.jsonl"
    tokens_file.write_bytes(
        record_line(TokenRecord(sha256=token_hash(marks.token), project=project,
                                roles=["member"]))
        + record_line(AccessKeyRecord(access_key=AWS_KEY, secret_key=marks.aws_secret,
                                      project=project, roles=["member"]))
    )
    tokens_file.chmod(0o600)
    server = TidingsServer(
        tmp_path,
        env={
            "TIDINGS_SERVER__LOG_FORMAT": log_format,
            "TIDINGS_SERVER__LOG_LEVEL": "debug",
            "TIDINGS_AUTH_STRATEGY": "tokens",
            "TIDINGS_AUTH__TOKENS_FILE": str(tokens_file),
            "TIDINGS_SIGNED_URL__SECRET_KEY": marks.signing_key,
            "TIDINGS_NOTIFICATION__SUBSCRIBER_DENY_NETWORKS": "[]",
            "TIDINGS_NOTIFICATION__MAX_DELIVERY_ATTEMPTS": "2",
            "TIDINGS_NOTIFICATION__MIN_RETRY_DELAY": "0",
        },
        store_uri=f"redis://:{store_password}@127.0.0.1:{redis.port}/0"
        f"?prefix=logs-{uuid.uuid4().hex[:8]}",
    )
    server.start()
    try:
        failing_hook, closed_hook = _provoke_everything(
            server, marks, webhook_listener, project
        )
        _provoke_sqs(server, marks)
        # Both deliveries end, after a retry each; the last line about them is written.
        wait_until(
            lambda: all(
                any("giving up" in line and subscription in line
                    for line in log_text(server).splitlines())
                for subscription in (failing_hook, closed_hook)
            ),
            "both deliveries given up in the log",
        )
    finally:
        server.stop()  # shutdown lines too
    text = log_text(server)
    assert not leaks(text, {**marks.ours(), "store_password": store_password})
    assert not leaks(text, {"signature": marks.signature}, fragment=16)
    assert marks.sqs_signatures
    assert not leaks(
        text, {f"sqs_signature_{i}": v for i, v in enumerate(marks.sqs_signatures)}, 16
    )
    # Not vacuous: the server did log these requests and deliveries.
    assert "giving up" in text and "retrying" in text
    if log_format == "json":
        statuses = {line["status"] for line in access_lines(server)}
        assert {201, 401, 404, 400} <= statuses
        sqs_statuses = {line["status"] for line in access_lines(server)
                        if line.get("transport") == "sqs"}
        assert {200, 400, 403} <= sqs_statuses


def _provoke_everything(
    server: TidingsServer, marks: Sentinels, listener: WebhookListener, project: str
) -> tuple[str, str]:
    """Every request that carries a secret or a body, good and bad; the ids of two
    subscriptions whose deliveries fail."""
    good = {"Client-ID": str(uuid.uuid4()), "X-Auth-Token": marks.token}
    body = {"messages": [{"body": {"secret": marks.body}, "ttl": 300}]}
    with httpx.Client(base_url=server.url + "/v2", timeout=30.0) as http:
        assert http.put("/queues/sq", headers=good).status_code == 201
        assert http.post("/queues/sq/messages", json=body, headers=good).status_code == 201
        # A wrong token, and none.
        bad = {**good, "X-Auth-Token": marks.bad_token}
        assert http.get("/queues", headers=bad).status_code == 401
        assert http.post("/queues/sq/messages", json=body, headers=bad).status_code == 401
        # Bodies that are refused, holding the sentinel.
        broken = json.dumps(body)[:-3].encode()
        refused = http.post("/queues/sq/messages", content=broken,
                            headers={**good, "Content-Type": "application/json"})
        assert refused.status_code == 400
        wrong = {"messages": [{"body": marks.body, "ttl": marks.body}]}
        assert http.post("/queues/sq/messages", json=wrong, headers=good).status_code == 400
        # A signed URL, used with its signature and with a forged one.
        shared = http.post("/queues/sq/share", headers=good,
                           json={"methods": ["GET", "POST"], "paths": ["messages"]})
        assert shared.status_code == 200, shared.text
        signed = shared.json()
        marks.signature = signed["signature"]
        signed_headers = {
            "Client-ID": str(uuid.uuid4()),
            "X-Project-ID": signed["project"],
            "URL-Signature": signed["signature"],
            "URL-Expires": signed["expires"],
            "URL-Methods": ",".join(signed["methods"]),
            "URL-Paths": ",".join(signed["paths"]),
        }
        assert http.get("/queues/sq/messages", headers=signed_headers).status_code in (200, 204)
        assert http.post("/queues/sq/messages", json=body,
                         headers=signed_headers).status_code == 201
        forged = {**signed_headers, "URL-Signature": marks.bad_signature}
        assert http.get("/queues/sq/messages", headers=forged).status_code == 404
        # Webhooks with credentials in their URLs and a secret in their options: one
        # answering 500 (retryable), one where nothing listens.
        credentials = f"{marks.hook_user}:{marks.hook_password}"
        path = f"/{marks.hook_path}"
        listener.fail(path, None, 500)
        subscribers = [
            f"http://{credentials}@127.0.0.1:{listener.port}{path}?code={marks.hook_query}",
            f"http://{credentials}@127.0.0.1:{free_port()}{path}?code={marks.hook_query}",
        ]
        subscriptions = []
        for subscriber in subscribers:
            made = http.post("/queues/sq/subscriptions", headers=good, json={
                "subscriber": subscriber,
                "ttl": 3600,
                "options": {"post_headers": {"X-Hook-Secret": marks.option}},
            })
            assert made.status_code == 201, made.text
            subscriptions.append(made.json()["subscription_id"])
        assert http.post("/queues/sq/messages", json=body, headers=good).status_code == 201
    # The webhook got the body (so the sentinel went through the server) and the option.
    delivered = listener.wait_for(path, 2)
    assert marks.body in delivered[0].body.decode()
    assert delivered[0].headers["x-hook-secret"] == marks.option
    # WebSocket: a wrong token, the right one, a post.
    with Wire(ws_url(server.url)) as wire:
        wire.headers = {"Client-ID": str(uuid.uuid4()), "X-Project-ID": project}
        assert wire.call("authenticate", {}, **{"X-Auth-Token": marks.bad_token})[0] != 200
        assert wire.call("authenticate", {}, **{"X-Auth-Token": marks.token})[0] == 200
        status, _ = wire.call("message_post", {"queue_name": "sq", **body})
        assert status == 201
    return subscriptions[0], subscriptions[1]


AWS_KEY = "TDKLOGSTESTKEY000001"


def _provoke_sqs(server: TidingsServer, marks: Sentinels) -> None:
    """SQS calls signed with the access key's secret (and a wrong one), with a body and a
    message attribute that hold sentinels, and a signature in an Authorization header."""
    def remember(request: Any, **_: Any) -> None:
        authorization = request.headers.get("Authorization", b"")
        if isinstance(authorization, bytes):
            authorization = authorization.decode()
        marks.sqs_signatures.append(authorization.rpartition("Signature=")[2])

    good = sqs_client(server.url, AWS_KEY, marks.aws_secret)
    good.meta.events.register("before-send.sqs.*", remember)
    url = good.create_queue(QueueName="sqs-secrets")["QueueUrl"]
    good.send_message(
        QueueUrl=url,
        MessageBody=marks.sqs_body,
        MessageAttributes={"a": {"DataType": "String", "StringValue": marks.sqs_attribute}},
    )
    got = good.receive_message(QueueUrl=url, MessageAttributeNames=["All"])
    assert got["Messages"][0]["Body"] == marks.sqs_body
    bad = sqs_client(server.url, AWS_KEY, marks.bad_aws_secret)
    with pytest.raises(ClientError) as refused:
        bad.send_message(QueueUrl=url, MessageBody=marks.sqs_body)
    assert refused.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    # A refused body that holds the sentinel (a character SQS does not allow).
    with pytest.raises(ClientError):
        good.send_message(QueueUrl=url, MessageBody=marks.sqs_body + "\x00")
