"""SigV4 verification (``tidings.admission.sigv4``): botocore signs, Tidings verifies.

First the canonicalisation on its own, against requests signed by botocore's own signers
(``SigV4Auth`` for the Authorization header, ``SigV4QueryAuth`` for presigned URLs) over
awkward paths, queries and header values. Then a real server under ``auth_strategy =
"tokens"`` with an access key pair made by ``tidings token create --aws``: good requests
pass; a wrong secret, a tampered body or header, a date beyond the clock skew and an
expired presigned URL are refused with SQS's error codes. Source: /work/notes/issue14.md
items 2 and 5.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import httpx
import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.server import TidingsServer
from tests.sqs.conftest import sqs_client
from tidings.admission import sigv4
from tidings.admission.sigv4 import SignedRequest
from tidings.sqs.errors import (
    IncompleteSignature,
    MissingAuthenticationToken,
    RequestExpired,
    SignatureDoesNotMatch,
    SqsError,
)

CLI_TIMEOUT = 60
JSON_TYPE = "application/x-amz-json-1.0"
MAX_SKEW = 300  # the server's [sqs] max_clock_skew in these tests (default 900)
EXAMPLE = Credentials("TDKEXAMPLE0123456789", "example-secret-0123456789abcdef")


# ---------------------------------------------------------------- signing with botocore


@dataclass(frozen=True)
class Outgoing:
    """A request botocore signed, as it goes on the wire."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes

    def received(self) -> SignedRequest:
        """What the server gets: the raw path and query, lower-case headers (Host as the
        HTTP client adds it)."""
        parts = urlsplit(self.url)
        headers = {name.lower(): value for name, value in self.headers.items()}
        headers.setdefault("host", parts.netloc)
        return SignedRequest(self.method, parts.path or "/", parts.query, headers, self.body)

    def send(self, **changes: Any) -> httpx.Response:
        sent = replace(self, **changes)
        return httpx.request(
            sent.method, sent.url, headers=sent.headers, content=sent.body, timeout=30.0
        )


def sign(
    url: str,
    *,
    credentials: Credentials = EXAMPLE,
    method: str = "POST",
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    expires: int | None = None,
    at: datetime | None = None,
    region: str = "us-east-1",
) -> Outgoing:
    """``url`` signed by botocore: in the Authorization header, or presigned (query)
    when ``expires`` is given; at ``at`` (default: now)."""
    request = AWSRequest(method, url, data=body, headers=dict(headers or {}), params=params)
    signer: SigV4Auth = (
        SigV4Auth(credentials, "sqs", region)
        if expires is None
        else SigV4QueryAuth(credentials, "sqs", region, expires=expires)
    )
    if at is None:
        signer.add_auth(request)
    else:
        with mock.patch("botocore.auth.get_current_datetime", return_value=at):
            signer.add_auth(request)
    prepared = request.prepare()
    body_sent = prepared.body or b""
    if isinstance(body_sent, str):
        body_sent = body_sent.encode()
    return Outgoing(prepared.method, prepared.url, dict(prepared.headers.items()), body_sent)


def sqs_call(
    server_url: str,
    operation: str,
    params: Mapping[str, Any] | None = None,
    **options: Any,
) -> Outgoing:
    """A JSON-protocol SQS request (as current SDKs send it), signed."""
    return sign(
        server_url + "/",
        body=json.dumps(dict(params or {})).encode(),
        headers={"X-Amz-Target": f"AmazonSQS.{operation}", "Content-Type": JSON_TYPE},
        **options,
    )


def error_code(response: httpx.Response) -> str:
    """The code SDKs read (``x-amzn-query-error``), checked against the JSON shape."""
    assert response.status_code in (400, 403), (response.status_code, response.text)
    code = response.headers["x-amzn-query-error"].split(";")[0]
    assert response.json()["__type"].startswith("com.amazonaws.sqs#")
    return code


def refusal(request: SignedRequest, secret: str, now: float | None = None) -> str | None:
    """What verification says: None when it passes, or the SQS error code."""
    try:
        signature = sigv4.parse(request)
        if now is not None:
            sigv4.check_time(signature, now, MAX_SKEW)
        sigv4.verify(request, signature, secret)
    except SqsError as exc:
        return exc.code
    return None


# ---------------------------------------------------------------- canonicalisation

PATHS = [
    "/",
    "",
    "/project-1/queue_name",
    "/a//b/",
    "/a/./b/../c",
    "/a/b/..",
    "/with%20space/and%2Fslash",
    "/tilde~/colon:at@/excl!/paren(s)",
    "/caf%C3%A9/%E2%9C%93",
]
QUERIES: list[dict[str, str]] = [
    {},
    {"Action": "ListQueues"},
    {"b": "2", "a": "1", "A": "0"},
    {"space": "x y", "plus": "1+2", "slash": "a/b", "eq": "k=v", "amp": "a&b"},
    {"unicode": "caf\u00e9 \u2713", "\u00e9": "key"},
    {"empty": "", "tilde": "~-_."},
]
HEADER_VALUES = [
    "plain",
    "  leading and trailing  ",
    "inner    runs   of   spaces",
    "tabs\tand  spaces",
    'quoted "  kept  " as is',
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("presigned", [False, True])
def test_paths_signed_by_botocore_verify(path: str, presigned: bool) -> None:
    outgoing = sign(f"http://127.0.0.1:9{path}", expires=60 if presigned else None)
    request = outgoing.received()
    assert refusal(request, EXAMPLE.secret_key) is None
    assert refusal(request, EXAMPLE.secret_key + "x") == "SignatureDoesNotMatch"


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: ",".join(q) or "none")
@pytest.mark.parametrize("presigned", [False, True])
def test_query_strings_signed_by_botocore_verify(query: dict[str, str], presigned: bool) -> None:
    outgoing = sign(
        "http://localhost:8888/p/q", method="GET", params=query, expires=60 if presigned else None
    )
    request = outgoing.received()
    assert refusal(request, EXAMPLE.secret_key) is None
    if query:
        # Any parameter changed after signing breaks it.
        first = next(iter(query))
        tampered = replace(request, query=request.query + "&" + "zz=1")
        assert refusal(tampered, EXAMPLE.secret_key) == "SignatureDoesNotMatch", first


@pytest.mark.parametrize("value", HEADER_VALUES)
def test_header_values_are_trimmed_and_their_spaces_collapsed(value: str) -> None:
    outgoing = sign("http://127.0.0.1:9/", headers={"X-Custom-Header": value}, body=b"{}")
    request = outgoing.received()
    assert refusal(request, EXAMPLE.secret_key) is None
    # The same value with its white space spread differently is the same signed value.
    respaced = {**request.headers, "x-custom-header": "  " + value.replace(" ", "   ") + " "}
    assert refusal(replace(request, headers=respaced), EXAMPLE.secret_key) is None
    changed = {**request.headers, "x-custom-header": value + "!"}
    assert refusal(replace(request, headers=changed), EXAMPLE.secret_key) == (
        "SignatureDoesNotMatch"
    )


def test_the_canonical_request_is_botocores() -> None:
    """Our canonical request, string by string, is the one botocore signed."""
    when = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
    url = "http://127.0.0.1:9/a//b/./c%20d/~e:f"
    headers = {"X-Amz-Target": "AmazonSQS.ListQueues", "X-Spaced": "  a   b "}
    params = {"b": "x y", "a": "1+2"}
    body = b'{"QueueNamePrefix": "q"}'
    outgoing = sign(url, headers=headers, params=params, body=body, at=when)

    reference = AWSRequest("POST", url, data=body, headers=dict(headers), params=params)
    reference.context["timestamp"] = "20250304T050607Z"
    signer = SigV4Auth(EXAMPLE, "sqs", "us-east-1")
    signer._modify_request_before_signing(reference)  # X-Amz-Date, as add_auth sets it
    expected = signer.canonical_request(reference)

    request = outgoing.received()
    signature = sigv4.parse(request)
    payload = sigv4.payload_hashes(request, signature)[0]
    assert sigv4.canonical_request(request, signature, payload) == expected
    assert sigv4.string_to_sign(signature, expected) == signer.string_to_sign(reference, expected)


def test_the_published_signing_key_example() -> None:
    """AWS's documented derivation example (secret, 20120215, us-east-1, iam)."""
    key = sigv4.signing_key(
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam"
    )
    assert key.hex() == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"


def test_a_tampered_body_or_declared_payload_hash_is_refused() -> None:
    outgoing = sign("http://127.0.0.1:9/", body=b'{"QueueName": "a"}')
    request = outgoing.received()
    assert refusal(request, EXAMPLE.secret_key) is None
    assert refusal(replace(request, body=b'{"QueueName": "b"}'), EXAMPLE.secret_key) == (
        "SignatureDoesNotMatch"
    )
    # A declared hash must be the body's: a request cannot sign one body and carry another.
    declared = sign(
        "http://127.0.0.1:9/",
        body=b"signed",
        headers={"X-Amz-Content-SHA256": hashlib.sha256(b"signed").hexdigest()},
    ).received()
    assert refusal(declared, EXAMPLE.secret_key) is None
    assert refusal(replace(declared, body=b"other"), EXAMPLE.secret_key) == (
        "SignatureDoesNotMatch"
    )
    unsigned = sign(
        "http://127.0.0.1:9/",
        body=b"anything",
        headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"},
    ).received()
    assert refusal(unsigned, EXAMPLE.secret_key) == "SignatureDoesNotMatch"


def test_a_presigned_url_covers_its_body() -> None:
    presigned = sign("http://127.0.0.1:9/", expires=60).received()
    assert refusal(presigned, EXAMPLE.secret_key) is None
    # A body added to a URL presigned without one is not covered: refused.
    assert refusal(replace(presigned, body=b"{}"), EXAMPLE.secret_key) == "SignatureDoesNotMatch"


def test_clock_skew_and_presigned_expiry() -> None:
    now = datetime(2025, 3, 4, 12, 0, 0, tzinfo=UTC)

    def header_form(offset: float) -> str | None:
        request = sign("http://127.0.0.1:9/", at=now + timedelta(seconds=offset)).received()
        return refusal(request, EXAMPLE.secret_key, now.timestamp())

    assert header_form(0) is None
    assert header_form(-MAX_SKEW + 1) is None
    assert header_form(MAX_SKEW - 1) is None
    assert header_form(-MAX_SKEW - 1) == "SignatureDoesNotMatch"
    assert header_form(MAX_SKEW + 1) == "SignatureDoesNotMatch"

    def presigned(offset: float, expires: int) -> str | None:
        at = now + timedelta(seconds=offset)
        request = sign("http://127.0.0.1:9/", at=at, expires=expires).received()
        return refusal(request, EXAMPLE.secret_key, now.timestamp())

    # Valid from its date (give or take the skew) until its date plus X-Amz-Expires.
    assert presigned(-3000, 3600) is None
    assert presigned(-3601, 3600) == "RequestExpired"
    assert presigned(MAX_SKEW + 1, 3600) == "SignatureDoesNotMatch"


def test_the_expiry_messages_are_awss() -> None:
    signature = sigv4.Signature(
        access_key="k",
        date="20250304",
        region="r",
        service="sqs",
        timestamp="20250304T120000Z",
        signed_headers=("host",),
        signature="0" * 64,
    )
    now = datetime(2025, 3, 4, 12, 30, 0, tzinfo=UTC).timestamp()
    with pytest.raises(SignatureDoesNotMatch) as expired:
        sigv4.check_time(signature, now, 900)
    assert expired.value.message == (
        "Signature expired: 20250304T120000Z is now earlier than 20250304T121500Z "
        "(20250304T123000Z - 15 min.)"
    )
    with pytest.raises(RequestExpired):
        sigv4.check_time(replace(signature, expires=60), now, 900)


@pytest.mark.parametrize(
    ("authorization", "error"),
    [
        ("AWS4-HMAC-SHA256", IncompleteSignature),
        ("AWS4-HMAC-SHA256 Credential=k/20250304/us-east-1/sqs/aws4_request", IncompleteSignature),
        ("AWS k:signature", IncompleteSignature),
        ("AWS4-ECDSA-P256-SHA256 Credential=k/20250304/sqs/aws4_request", IncompleteSignature),
        (
            "AWS4-HMAC-SHA256 Credential=k/20250304/us-east-1/sqs/aws4_request, "
            "SignedHeaders=host, Signature",
            IncompleteSignature,
        ),
        (
            "AWS4-HMAC-SHA256 Credential=k/us-east-1/sqs/aws4_request, "
            "SignedHeaders=host, Signature=00",
            IncompleteSignature,
        ),
        (
            "AWS4-HMAC-SHA256 Credential=k/20250304/us-east-1/sqs/aws4_request, "
            "SignedHeaders=x-amz-date, Signature=00",
            IncompleteSignature,  # Host must be signed
        ),
        (
            "AWS4-HMAC-SHA256 Credential=k/20250304/us-east-1/sns/aws4_request, "
            "SignedHeaders=host, Signature=00",
            SignatureDoesNotMatch,  # another service's scope
        ),
        (
            "AWS4-HMAC-SHA256 Credential=k/20250303/us-east-1/sqs/aws4_request, "
            "SignedHeaders=host, Signature=00",
            SignatureDoesNotMatch,  # the scope's date is not the request's
        ),
    ],
)
def test_malformed_authorization_headers(authorization: str, error: type[SqsError]) -> None:
    request = SignedRequest(
        "POST",
        "/",
        "",
        {"host": "h", "x-amz-date": "20250304T050607Z", "authorization": authorization},
        b"",
    )
    with pytest.raises(error):
        sigv4.parse(request)


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("", MissingAuthenticationToken),
        ("X-Amz-Algorithm=AWS4-HMAC-SHA256", IncompleteSignature),
        (
            "X-Amz-Signature=00&X-Amz-Credential=k%2F20250304%2Fr%2Fsqs%2Faws4_request",
            IncompleteSignature,
        ),
    ],
)
def test_missing_or_incomplete_presigned_queries(query: str, error: type[SqsError]) -> None:
    with pytest.raises(error):
        sigv4.parse(SignedRequest("GET", "/", query, {"host": "h"}, b""))


@pytest.mark.parametrize("expires", ["0", "604801", "-1", "ten", "1e3"])
def test_presigned_expiry_bounds(expires: str) -> None:
    outgoing = sign("http://127.0.0.1:9/", expires=60).received()
    query = outgoing.query.replace("X-Amz-Expires=60", f"X-Amz-Expires={expires}")
    with pytest.raises(IncompleteSignature):
        sigv4.parse(replace(outgoing, query=query))


def test_both_forms_at_once_are_refused() -> None:
    presigned = sign("http://127.0.0.1:9/", expires=60).received()
    header = sign("http://127.0.0.1:9/").received()
    both = replace(presigned, headers={**presigned.headers, **header.headers})
    with pytest.raises(IncompleteSignature):
        sigv4.parse(both)


def test_a_date_header_may_stand_for_x_amz_date() -> None:
    when = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
    request = sign("http://127.0.0.1:9/", at=when).received()
    headers = dict(request.headers)
    del headers["x-amz-date"]
    headers["date"] = "Tue, 04 Mar 2025 05:06:07 GMT"
    assert sigv4.parse(replace(request, headers=headers)).timestamp == "20250304T050607Z"


# ---------------------------------------------------------------- a real server, tokens


@dataclass(frozen=True)
class KeyPair:
    access_key: str
    secret_key: str
    project: str

    @property
    def credentials(self) -> Credentials:
        return Credentials(self.access_key, self.secret_key)


def create_key_pair(tokens_file: Path, project: str, *extra: str) -> KeyPair:
    """``tidings token create --aws``: the pair it prints on stdout (once)."""
    done = subprocess.run(
        [sys.executable, "-m", "tidings.cli", "token", "create", "--aws", "--project", project,
         "--tokens-file", str(tokens_file), *extra],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = dict(line.split(" = ", 1) for line in done.stdout.splitlines())
    assert set(printed) == {"aws_access_key_id", "aws_secret_access_key"}
    return KeyPair(printed["aws_access_key_id"], printed["aws_secret_access_key"], project)


@dataclass
class Deployment:
    server: TidingsServer
    tokens_file: Path
    pair: KeyPair


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A server under ``tokens`` (SQLite: signatures do not depend on the store)."""
    data_dir = tmp_path_factory.mktemp("sigv4")
    tokens_file = data_dir / "tokens.jsonl"
    pair = create_key_pair(tokens_file, f"sig-{uuid.uuid4().hex[:8]}")
    server = TidingsServer(
        data_dir,
        env={
            "TIDINGS_AUTH_STRATEGY": "tokens",
            "TIDINGS_AUTH__TOKENS_FILE": str(tokens_file),
            "TIDINGS_SQS__MAX_CLOCK_SKEW": str(MAX_SKEW),
        },
    )
    server.start()
    yield Deployment(server, tokens_file, pair)
    server.stop()


def test_boto3_with_the_pair_works(deployment: Deployment) -> None:
    pair = deployment.pair
    sqs = sqs_client(deployment.server.url, pair.access_key, pair.secret_key)
    url = sqs.create_queue(QueueName="signed")["QueueUrl"]
    assert url == f"{deployment.server.url}/{pair.project}/signed"
    assert url in sqs.list_queues().get("QueueUrls", [])


def test_a_wrong_secret_is_refused(deployment: Deployment) -> None:
    pair = deployment.pair
    sqs = sqs_client(deployment.server.url, pair.access_key, pair.secret_key[:-1] + "x")
    with pytest.raises(ClientError) as refused:
        sqs.list_queues()
    assert refused.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_an_unknown_access_key_is_refused(deployment: Deployment) -> None:
    sqs = sqs_client(deployment.server.url, "TDKUNKNOWN0000000000", deployment.pair.secret_key)
    with pytest.raises(ClientError) as refused:
        sqs.list_queues()
    assert refused.value.response["Error"]["Code"] == "InvalidClientTokenId"


def test_raw_good_requests_pass_in_both_forms(deployment: Deployment) -> None:
    creds = deployment.pair.credentials
    url = deployment.server.url
    header = sqs_call(url, "ListQueues", credentials=creds).send()
    assert header.status_code == 200, header.text
    # Presigned: the operation in the signed X-Amz-Target header, no body.
    presigned = sign(
        url + "/",
        headers={"X-Amz-Target": "AmazonSQS.ListQueues", "Content-Type": JSON_TYPE},
        credentials=creds,
        expires=60,
    )
    assert "X-Amz-Signature=" in presigned.url and "authorization" not in {
        name.lower() for name in presigned.headers
    }
    answered = presigned.send()
    assert answered.status_code == 200, answered.text


def test_a_tampered_body_is_refused(deployment: Deployment) -> None:
    creds = deployment.pair.credentials
    outgoing = sqs_call(
        deployment.server.url, "CreateQueue", {"QueueName": "intended"}, credentials=creds
    )
    tampered = outgoing.send(body=json.dumps({"QueueName": "tampered"}).encode())
    assert error_code(tampered) == "SignatureDoesNotMatch"
    assert tampered.status_code == 403
    # A signed header changed on the way is refused the same way.
    headers = {**outgoing.headers, "X-Amz-Target": "AmazonSQS.GetQueueUrl"}
    assert error_code(outgoing.send(headers=headers)) == "SignatureDoesNotMatch"
    # The untouched request passes.
    assert outgoing.send().status_code == 200


@pytest.mark.parametrize("minutes", [-10, 10])
def test_a_date_beyond_the_clock_skew_is_refused(deployment: Deployment, minutes: int) -> None:
    creds = deployment.pair.credentials
    at = datetime.now(UTC) + timedelta(minutes=minutes)
    refused = sqs_call(deployment.server.url, "ListQueues", credentials=creds, at=at).send()
    assert error_code(refused) == "SignatureDoesNotMatch"
    expected = "Signature expired" if minutes < 0 else "Signature not yet current"
    assert refused.json()["message"].startswith(expected)
    # Within the skew (2 minutes off, the skew is 5), the same request passes.
    near = datetime.now(UTC) + timedelta(minutes=2 if minutes > 0 else -2)
    passed = sqs_call(deployment.server.url, "ListQueues", credentials=creds, at=near).send()
    assert passed.status_code == 200, passed.text


def test_an_expired_presigned_url_is_refused(deployment: Deployment) -> None:
    creds = deployment.pair.credentials
    headers = {"X-Amz-Target": "AmazonSQS.ListQueues", "Content-Type": JSON_TYPE}
    signed_at = datetime.now(UTC) - timedelta(minutes=2)
    expired = sign(
        deployment.server.url + "/", headers=headers, credentials=creds, expires=60, at=signed_at
    ).send()
    assert error_code(expired) == "RequestExpired"
    # Signed as long ago but valid for longer: it passes (the skew is not its bound).
    valid = sign(
        deployment.server.url + "/", headers=headers, credentials=creds, expires=600, at=signed_at
    ).send()
    assert valid.status_code == 200, valid.text


def test_missing_and_malformed_signatures(deployment: Deployment) -> None:
    url = deployment.server.url + "/"
    headers = {"X-Amz-Target": "AmazonSQS.ListQueues", "Content-Type": JSON_TYPE}
    unsigned = httpx.post(url, headers=headers, content=b"{}")
    assert error_code(unsigned) == "MissingAuthenticationToken"
    assert unsigned.status_code == 403
    malformed = httpx.post(
        url, headers={**headers, "Authorization": "AWS4-HMAC-SHA256 Credential=x"}, content=b"{}"
    )
    assert error_code(malformed) == "IncompleteSignature"
    assert malformed.status_code == 400


def test_the_signature_is_checked_before_the_parameters(deployment: Deployment) -> None:
    """As AWS: a caller who cannot sign learns nothing, not even which parameters are
    wrong."""
    wrong = Credentials(deployment.pair.access_key, "not-the-secret-0123456789")
    for operation, params in (
        ("DeleteQueue", {}),
        ("CreateQueue", {"QueueName": "x" * 200}),
        ("SendMessage", {"QueueUrl": 5}),
    ):
        refused = sqs_call(deployment.server.url, operation, params, credentials=wrong).send()
        assert error_code(refused) == "SignatureDoesNotMatch", (operation, refused.text)


# ---------------------------------------------------------------- noauth


@pytest.mark.parametrize(
    ("credential", "outcome"),
    [
        ("p1/20250304/us-east-1/sqs/aws4_request", "p1"),
        ("%01p/20250304/us-east-1/sqs/aws4_request", "InvalidClientTokenId"),
        ("/20250304/us-east-1/sqs/aws4_request", "IncompleteSignature"),
        ("x" * 257 + "/20250304/us-east-1/sqs/aws4_request", "IncompleteSignature"),
    ],
)
def test_noauth_takes_the_access_key_as_a_valid_project_id(credential: str, outcome: str) -> None:
    """Signatures are not checked, but the key must be a project id Zaqar accepts."""
    import asyncio

    from tidings.admission.auth.aws import NoauthAwsAuthenticator

    query = (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
        + credential.replace("/", "%2F")
        + "&X-Amz-Date=20250304T050607Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host"
        + "&X-Amz-Signature=not-checked"
    )
    request = SignedRequest("POST", "/", query, {"host": "h"}, b"")
    try:
        found = asyncio.run(NoauthAwsAuthenticator().authenticate(request, 0.0))
    except SqsError as exc:
        assert exc.code == outcome
    else:
        assert (found.identity.project, found.access_key) == (outcome, outcome)
        assert not found.identity.authenticated
