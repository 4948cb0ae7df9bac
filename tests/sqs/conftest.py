"""SQS clients against the shared per-store servers: boto3 as a real client, each test in
a project of its own (under ``noauth`` the access key id is the project)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config

from tests.backends import STORE_KINDS
from tests.server import TidingsServer


def sqs_client(url: str, access_key: str, secret_key: str = "unused-under-noauth") -> Any:
    """A boto3 SQS client for ``url`` (no retries: a test sees the first answer)."""
    return boto3.client(
        "sqs",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=40),
    )


@pytest.fixture
def project() -> str:
    return f"sqs-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def sqs(server: TidingsServer, project: str) -> Any:
    """boto3's SQS client in this test's project."""
    return sqs_client(server.url, project)


@pytest.fixture
def zaqar(server: TidingsServer, project: str) -> Iterator[httpx.Client]:
    """Zaqar's API (``/v2``) in the same project as ``sqs``."""
    with server.client(project=project) as client:
        yield client


@pytest.fixture
def other_sqs(server: TidingsServer) -> Callable[[], Any]:
    """Clients in other projects, made on demand."""
    return lambda: sqs_client(server.url, f"sqs-{uuid.uuid4().hex[:12]}")


# Modules whose subject does not depend on the store (the URL and ARN checks before any
# store call; aws-cli's own parsing) run on the first store of STORE_KINDS only: the operations
# themselves run on every store in test_queues.py, test_messages.py and test_interop.py.
ONE_STORE_MODULES = ("test_isolation.py", "test_awscli.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    keep = []
    for item in items:
        spec = getattr(item, "callspec", None)
        kind = spec.params.get("store_kind") if spec is not None else None
        if (
            kind is not None
            and kind != STORE_KINDS[0]
            and item.path.name in ONE_STORE_MODULES
            and item.path.parent.name == "sqs"
        ):
            continue
        keep.append(item)
    items[:] = keep
