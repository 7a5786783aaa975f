"""S3Store.open_object: one checked GetObject, read in bounded pieces, every failure wrapped.

Against moto's server over HTTP (checksums, retention, tampered bytes) and with
botocore's Stubber where S3 itself cannot misbehave on demand (a lying
``ContentLength``, a connection that breaks mid-body).
"""

from __future__ import annotations

import base64
import hashlib
import io
import pickle
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError

from audit_archiver.errors import (
    IntegrityError,
    ObjectTooLargeError,
    StorageError,
    StoragePermanentError,
    StorageUnavailableError,
    TransportChecksumError,
)
from audit_archiver.storage.base import ObjectInfo, ObjectStream
from audit_archiver.storage.s3 import S3Store
from tests.s3server import held_object, overwrite_stored_bytes, s3_client

RETAIN_UNTIL = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def drain(stream: ObjectStream, size: int, received: list[bytes]) -> None:
    """Read to the end, keeping each chunk in ``received`` (so a test sees what came first)."""
    while chunk := stream.read(size):
        received.append(chunk)


def test_open_object_is_one_get_with_retention_from_its_headers(
    locked_bucket: tuple[str, str],
) -> None:
    store, info, operations = held_object(*locked_bucket, b"sealed bytes", RETAIN_UNTIL)
    with store.open_object("seg/0", info.version_id, max_bytes=12) as stream:
        assert stream.info == ObjectInfo(
            key="seg/0",
            version_id=info.version_id,
            size=12,
            retention_mode="COMPLIANCE",
            retain_until=RETAIN_UNTIL,
            legal_hold=True,
            checksum_sha256=sha256_b64(b"sealed bytes"),
        )
        assert stream.read(5) + stream.read(100) == b"sealed bytes"
        assert stream.read(1) == b""
    assert operations == ["GetObject"]


@pytest.mark.parametrize("size", [1, 5, 12, 4096])
def test_tampered_bytes_fail_the_checksum_at_the_end(
    locked_bucket: tuple[str, str], size: int
) -> None:
    """moto keeps the upload's checksum; botocore checks the body when the read reaches the end."""
    endpoint, bucket = locked_bucket
    store = S3Store(bucket, s3_client(endpoint))
    info = store.put_new("seg/0", b"sealed bytes", retain_until=None)
    assert info.version_id is not None
    overwrite_stored_bytes(bucket, "seg/0", info.version_id, b"forged bytes")
    stream = store.open_object("seg/0", max_bytes=100)
    received: list[bytes] = []
    with pytest.raises(TransportChecksumError) as raised:
        drain(stream, size, received)
    # The mismatch is raised with the last bytes: no read after the end is needed.
    assert len(b"".join(received)) < len(b"forged bytes")
    error = raised.value
    assert isinstance(error, IntegrityError)
    assert (error.key, error.expected, error.found) == (
        "seg/0",
        sha256_b64(b"sealed bytes"),
        sha256_b64(b"forged bytes"),
    )
    assert "forged" not in str(error)
    with pytest.raises(ValueError, match="closed"):
        stream.read(1)


# --- Stubber: a body that S3 would not send ---------------------------------------------


class RawStream(io.BytesIO):
    """The HTTP response under a StreamingBody: records read sizes, optionally fails."""

    def __init__(self, data: bytes, failure: Exception | None = None) -> None:
        super().__init__(data)
        self.reads: list[int | None] = []
        self._failure = failure

    def read(self, amt: int | None = -1) -> bytes:
        self.reads.append(amt)
        if self._failure is not None:
            raise self._failure
        return super().read(amt)


class RecordingBody(StreamingBody):  # type: ignore[misc]
    """botocore's StreamingBody over a RawStream, recording whether it was closed."""

    def __init__(
        self, data: bytes, failure: Exception | None = None, *, length: int | None = None
    ) -> None:
        self.raw = RawStream(data, failure)
        super().__init__(self.raw, len(data) if length is None else length)
        self.was_closed = False

    @property
    def reads(self) -> list[int | None]:
        return self.raw.reads

    def close(self) -> None:
        self.was_closed = True
        super().close()


def stubbed_get(body: RecordingBody, content_length: int) -> tuple[S3Store, Stubber]:
    client = boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    stubber = Stubber(client)
    response: dict[str, Any] = {"Body": body, "ContentLength": content_length}
    stubber.add_response(
        "get_object", response, {"Bucket": "bkt", "Key": "k", "ChecksumMode": "ENABLED"}
    )
    return S3Store("bkt", client), stubber


def test_an_object_over_the_limit_is_refused_unread() -> None:
    body = RecordingBody(b"x" * 1000)
    store, stubber = stubbed_get(body, 1000)
    with stubber, pytest.raises(ObjectTooLargeError) as raised:
        store.open_object("k", max_bytes=999)
    assert (raised.value.key, raised.value.expected, raised.value.found) == ("k", "999", "1000")
    assert body.reads == []
    assert body.was_closed


def test_a_lying_content_length_is_cut_at_the_limit() -> None:
    body = RecordingBody(b"x" * 10_000)
    store, stubber = stubbed_get(body, 3)
    with stubber:
        stream = store.open_object("k", max_bytes=100)
    received: list[bytes] = []
    with pytest.raises(ObjectTooLargeError) as raised:
        drain(stream, 64, received)
    assert (raised.value.expected, raised.value.found) == ("100", "more than 100")
    assert len(b"".join(received)) <= 100
    assert all(amount is not None and amount <= 101 for amount in body.reads)
    assert body.was_closed


@pytest.mark.parametrize(
    ("failure", "unavailable"),
    [
        (ProtocolError("Connection broken: IncompleteRead"), True),
        (ReadTimeoutError(None, "/k", "Read timed out."), True),  # type: ignore[arg-type]
        (ConnectionResetError(104, "Connection reset by peer"), True),
        (DecodeError("bad gzip"), False),  # permanent: the same bytes decode no better
    ],
)
def test_read_failures_are_wrapped(failure: Exception, unavailable: bool) -> None:
    body = RecordingBody(b"secret contents", failure)
    store, stubber = stubbed_get(body, 15)
    with stubber:
        stream = store.open_object("k", max_bytes=100)
    with pytest.raises(StorageError) as raised:
        stream.read(10)
    assert isinstance(raised.value, StorageUnavailableError) is unavailable
    assert isinstance(raised.value, StoragePermanentError) is not unavailable
    assert "GetObject s3://bkt/k" in str(raised.value)
    assert "secret" not in str(raised.value)
    assert body.was_closed


def test_a_short_body_is_unavailable_not_ok() -> None:
    body = RecordingBody(b"short", length=100)  # botocore checks the promised length at the end
    store, stubber = stubbed_get(body, 100)
    with stubber:
        stream = store.open_object("k", max_bytes=1000)
    with pytest.raises(StorageUnavailableError, match="IncompleteReadError"):
        drain(stream, 64, [])


def test_too_large_error_carries_its_evidence_through_pickle() -> None:
    for error in (
        ObjectTooLargeError("a/b", limit=10, size=11),
        ObjectTooLargeError("a/b", limit=10, size=None),
    ):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is ObjectTooLargeError
        assert (copy.key, copy.expected, copy.found, copy.limit, copy.size, str(copy)) == (
            error.key,
            error.expected,
            error.found,
            error.limit,
            error.size,
            str(error),
        )
