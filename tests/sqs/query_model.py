"""A real SQS query-protocol client for tests: botocore's own query serializer and parser
driven by SQS's query model, plus a strict check of every XML answer against that model.

botocore's current SQS model is the JSON protocol's; the query model (protocol "query",
the query API's element names, the XML namespace) is the one botocore shipped before
the switch, read from a botocore 1.29 wheel downloaded once into a cache directory.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.model import ServiceModel, Shape
from botocore.parsers import create_parser
from botocore.serialize import create_serializer
from botocore.utils import percent_encode_sequence

QUERY_BOTOCORE = "botocore==1.29.165"
WHEEL = "botocore-1.29.165-py3-none-any.whl"
MODEL_PATH = "botocore/data/sqs/2012-11-05/service-2.json"
CACHE = Path(sys.prefix) / "share" / "tidings-tests"
NAMESPACE = "{http://queue.amazonaws.com/doc/2012-11-05/}"
REGION = "us-east-1"
# What the operation stubs answer until their owners land them.
NOT_YET = "not yet"


@functools.cache
def query_model() -> ServiceModel:
    """SQS's query-protocol model (the wheel is downloaded once, atomically: xdist
    workers may ask together)."""
    wheel = CACHE / WHEEL
    if not wheel.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=CACHE) as scratch:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                 QUERY_BOTOCORE, "-d", scratch],
                check=True,
                timeout=300,
            )
            os.replace(Path(scratch) / WHEEL, wheel)
    with zipfile.ZipFile(wheel) as archive:
        document = json.loads(archive.read(MODEL_PATH))
    assert document["metadata"]["protocol"] == "query"
    return ServiceModel(document, "sqs")


class QueryError(Exception):
    """An error answer, as botocore's query parser reads it."""

    def __init__(self, status: int, error: dict[str, Any], response: httpx.Response):
        super().__init__(f"{status} {error.get('Code')}: {error.get('Message')}")
        self.status = status
        self.code: str = error.get("Code", "")
        self.type: str = error.get("Type", "")
        self.message: str = error.get("Message", "")
        self.response = response


class QueryClient:
    """SQS's query protocol as old SDKs speak it: form-encoded POSTs (or presigned GETs),
    SigV4-signed, answered in XML."""

    def __init__(self, url: str, access_key: str, secret_key: str = "unused-under-noauth"):
        self.url = url.rstrip("/")
        self.model = query_model()
        self.credentials = Credentials(access_key, secret_key)
        self._serializer = create_serializer("query")
        self._parser = create_parser("query")

    def form(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        """The flat parameters botocore's query serializer makes of ``params``."""
        request = self._serializer.serialize_to_request(
            params, self.model.operation_model(operation)
        )
        body: dict[str, Any] = request["body"]
        return body

    def send(
        self,
        fields: dict[str, Any] | list[tuple[str, str]],
        *,
        path: str = "/",
        method: str = "POST",
        presigned: bool = False,
        signed: bool = True,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Raw flat parameters, form-encoded in the body (POST) or in the query string."""
        encoded = percent_encode_sequence(fields)
        url = self.url + path
        body = encoded.encode() if method == "POST" else b""
        if method != "POST":
            url += "?" + encoded
        request = AWSRequest(method=method, url=url, data=body, headers={})
        if method == "POST":
            request.headers["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"
        if presigned:
            SigV4QueryAuth(self.credentials, "sqs", REGION, expires=300).add_auth(request)
        elif signed:
            SigV4Auth(self.credentials, "sqs", REGION).add_auth(request)
        sent = {**dict(request.headers.items()), **(headers or {})}
        return httpx.request(method, request.url, content=body, headers=sent, timeout=40.0)

    def send_raw(
        self, target: str, body: bytes, content_type: str = "application/x-www-form-urlencoded"
    ) -> httpx.Response:
        """A POST of ``body`` as it is to ``target`` (a path and query), SigV4-signed."""
        request = AWSRequest(
            method="POST", url=self.url + target, data=body, headers={"Content-Type": content_type}
        )
        SigV4Auth(self.credentials, "sqs", REGION).add_auth(request)
        return httpx.post(
            request.url, content=body, headers=dict(request.headers.items()), timeout=40.0
        )

    def call(self, operation: str, params: dict[str, Any], **options: Any) -> dict[str, Any]:
        """The operation's parsed result; every answer is first checked against the
        model's XML shape. Raises ``QueryError`` for an error answer; skips the test when
        the operation is still a stub."""
        response = self.send(self.form(operation, params), **options)
        return self.parse(operation, response)

    def parse(self, operation: str, response: httpx.Response) -> dict[str, Any]:
        request_id = response.headers.get("x-amzn-requestid")
        assert request_id, response.headers
        assert response.headers["content-type"].startswith("text/xml"), response.headers
        if response.status_code != 200:
            check_error_xml(response.content, request_id)
        else:
            check_result_xml(self.model, operation, response.content, request_id)
        model = self.model.operation_model(operation)
        parsed: dict[str, Any] = self._parser.parse(
            {
                "status_code": response.status_code,
                "headers": dict(response.headers),
                "body": response.content,
            },
            model.output_shape,
        )
        if response.status_code != 200:
            error = parsed["Error"]
            if error.get("Code") == "AWS.SimpleQueueService.UnsupportedOperation" and (
                error.get("Message") == NOT_YET
            ):
                pytest.skip(f"{operation} is not implemented yet")
            raise QueryError(response.status_code, error, response)
        assert parsed["ResponseMetadata"]["RequestId"] == request_id
        parsed.pop("ResponseMetadata")
        return parsed


def queue_path(queue_url: str) -> str:
    """The path of a queue URL (``/<project>/<queue>``)."""
    return "/" + queue_url.split("://", 1)[1].split("/", 1)[1]


# The XML check ---------------------------------------------------------------------------


def check_result_xml(
    model: ServiceModel, operation: str, content: bytes, request_id: str
) -> None:
    """The answer is ``<XResponse><XResult>`` holding exactly the output shape's members
    under their query names, with values of their types, then the request id."""
    root = ElementTree.fromstring(content)
    assert root.tag == f"{NAMESPACE}{operation}Response", root.tag
    children = list(root)
    output = model.operation_model(operation).output_shape
    if output is not None:
        assert children and children[0].tag == f"{NAMESPACE}{operation}Result", content
        _check_structure(output, children[0])
        children = children[1:]
    assert [child.tag for child in children] == [f"{NAMESPACE}ResponseMetadata"], content
    metadata = children[0]
    assert [child.tag for child in metadata] == [f"{NAMESPACE}RequestId"]
    assert metadata[0].text == request_id


def check_error_xml(content: bytes, request_id: str) -> None:
    """``<ErrorResponse><Error><Type/><Code/><Message/><Detail/></Error><RequestId/>``."""
    root = ElementTree.fromstring(content)
    assert root.tag == f"{NAMESPACE}ErrorResponse", content
    assert [child.tag for child in root] == [f"{NAMESPACE}Error", f"{NAMESPACE}RequestId"]
    error, found_id = root
    names = [child.tag.removeprefix(NAMESPACE) for child in error]
    assert names == ["Type", "Code", "Message", "Detail"], content
    assert error[0].text in ("Sender", "Receiver")
    assert error[1].text
    assert found_id.text == request_id


def _local(element: ElementTree.Element) -> str:
    assert element.tag.startswith(NAMESPACE), element.tag
    return element.tag.removeprefix(NAMESPACE)


def _element_names(shape: Shape) -> dict[str, tuple[str, Shape]]:
    """A structure's members by the element name each item or value comes in."""
    names = {}
    for name, member in shape.members.items():
        if member.type_name == "list" and member.serialization.get("flattened"):
            element = member.member.serialization.get("name", name)
        else:
            element = member.serialization.get("name", name)
        names[element] = (name, member)
    return names


def _check_structure(shape: Shape, element: ElementTree.Element) -> None:
    assert not element.attrib and not (element.text or "").strip(), ElementTree.tostring(element)
    names = _element_names(shape)
    seen: set[str] = set()
    for child in element:
        local = _local(child)
        assert local in names, f"<{local}> is not a member of {shape.name}"
        name, member = names[local]
        flattened = member.serialization.get("flattened")
        if not flattened:
            assert name not in seen, f"<{local}> twice in {shape.name}"
        seen.add(name)
        if member.type_name == "list":
            assert flattened, member.name
            _check_value(member.member, child)
        elif member.type_name == "map":
            assert flattened, member.name
            key_name = member.key.serialization.get("name", "key")
            value_name = member.value.serialization.get("name", "value")
            assert [_local(c) for c in child] == [key_name, value_name], ElementTree.tostring(
                child
            )
            _check_value(member.key, child[0])
            _check_value(member.value, child[1])
        else:
            _check_value(member, child)
    for name in shape.required_members:
        member = shape.members[name]
        if member.type_name not in ("list", "map"):  # an empty list has no element
            assert name in seen, f"{shape.name} lacks its required {name}"


def _check_value(shape: Shape, element: ElementTree.Element) -> None:
    if shape.type_name == "structure":
        _check_structure(shape, element)
        return
    assert len(element) == 0 and not element.attrib, ElementTree.tostring(element)
    text = element.text or ""
    if shape.type_name in ("integer", "long"):
        int(text)
    elif shape.type_name == "boolean":
        assert text in ("true", "false"), text
    elif shape.type_name == "blob":
        base64.b64decode(text, validate=True)
    else:
        assert shape.type_name == "string", shape.type_name


@contextlib.contextmanager
def raises_query_error(code: str, status: int = 400) -> Any:
    """Expects a ``QueryError`` with ``code`` and ``status`` (yields it for more checks)."""
    box: list[QueryError] = []
    with pytest.raises(QueryError) as caught:
        yield box
    assert caught.value.code == code, caught.value
    assert caught.value.status == status, caught.value
    box.append(caught.value)
