"""aws-cli (v1, from the venv) against Tidings: a create, send, receive, delete round trip
with ``--endpoint-url``, in a clean environment (no configuration of the machine's)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.server import TidingsServer

AWS = Path(sys.executable).with_name("aws")

pytestmark = pytest.mark.skipif(not AWS.exists(), reason="aws-cli is not installed in the venv")


class AwsCli:
    def __init__(self, endpoint: str, access_key: str, home: Path) -> None:
        self.endpoint = endpoint
        home.mkdir(parents=True, exist_ok=True)
        config, credentials = home / "config", home / "credentials"
        config.write_text("")
        credentials.write_text("")
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "AWS_ACCESS_KEY_ID": access_key,
            "AWS_SECRET_ACCESS_KEY": "x",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": str(config),
            "AWS_SHARED_CREDENTIALS_FILE": str(credentials),
            "AWS_MAX_ATTEMPTS": "1",
        }

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(AWS), "sqs", *args, "--endpoint-url", self.endpoint, "--output", "json"],
            env=self.env, capture_output=True, text=True, timeout=120, check=False,
        )

    def __call__(self, *args: str) -> Any:
        done = self.run(*args)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout) if done.stdout.strip() else {}


@pytest.fixture
def aws(server: TidingsServer, tmp_path: Path) -> AwsCli:
    return AwsCli(server.url, f"cli-{uuid.uuid4().hex[:12]}", tmp_path / "home")


def test_create_send_receive_delete_round_trip(aws: AwsCli) -> None:
    url = aws("create-queue", "--queue-name", "cli-queue")["QueueUrl"]
    assert url.endswith("/cli-queue")
    body = "hello from aws-cli: ü 😀"
    sent = aws("send-message", "--queue-url", url, "--message-body", body,
               "--message-attributes", '{"k": {"DataType": "String", "StringValue": "v"}}')
    assert sent["MD5OfMessageBody"] == hashlib.md5(body.encode()).hexdigest()
    assert sent["MD5OfMessageAttributes"]

    got = aws("receive-message", "--queue-url", url, "--wait-time-seconds", "5",
              "--attribute-names", "All", "--message-attribute-names", "All",
              "--visibility-timeout", "600")
    (message,) = got["Messages"]
    assert message["MessageId"] == sent["MessageId"]
    assert message["Body"] == body
    assert message["MD5OfBody"] == sent["MD5OfMessageBody"]
    assert message["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    assert message["MessageAttributes"] == {"k": {"DataType": "String", "StringValue": "v"}}
    assert message["Attributes"]["ApproximateReceiveCount"] == "1"

    aws("delete-message", "--queue-url", url, "--receipt-handle", message["ReceiptHandle"])
    assert aws("receive-message", "--queue-url", url).get("Messages", []) == []


def test_errors_reach_the_cli(aws: AwsCli) -> None:
    url = aws("create-queue", "--queue-name", "cli-errors")["QueueUrl"]
    missing = url.rsplit("/", 1)[0] + "/nowhere"
    done = aws.run("receive-message", "--queue-url", missing)
    assert done.returncode != 0
    assert "NonExistentQueue" in done.stderr or "QueueDoesNotExist" in done.stderr
    done = aws.run("delete-message", "--queue-url", url, "--receipt-handle", "bogus")
    assert done.returncode != 0
    assert "ReceiptHandleIsInvalid" in done.stderr
