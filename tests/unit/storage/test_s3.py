"""S3Store against moto's server over HTTP, plus error mapping with botocore's Stubber.

Also covers the ``local-s3`` helpers and command, which run the same server.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
    SSLError,
)
from botocore.stub import Stubber
from click.testing import CliRunner

from audit_archiver._cli import main
from audit_archiver.errors import (
    ConfigurationError,
    IntegrityError,
    ObjectExistsError,
    ObjectNotFoundError,
    StorageError,
    StoragePermanentError,
    StorageUnavailableError,
    TransportChecksumError,
)
from audit_archiver.storage import local_s3
from audit_archiver.storage import s3 as s3_module
from audit_archiver.storage.base import ObjectInfo, ObjectVersion
from audit_archiver.storage.s3 import BucketSettings, S3Store, _page_entries
from tests.integration.cli import BIN
from tests.s3server import (
    create_locked_bucket,
    create_plain_bucket,
    held_object,
    moto_s3_backend,
    overwrite_stored_bytes,
    s3_client,
    unique_bucket_name,
)

RETAIN_UNTIL = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
ALL_FLAGS_OFF = {
    "BlockPublicAcls": False,
    "IgnorePublicAcls": False,
    "BlockPublicPolicy": False,
    "RestrictPublicBuckets": False,
}


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def connect(endpoint: str, bucket: str, page_size: int | None = None) -> S3Store:
    return S3Store.connect(bucket, region="us-east-1", endpoint_url=endpoint, page_size=page_size)


def raw_put(endpoint: str, bucket: str, key: str, data: bytes) -> str:
    """An unconditional PutObject (a locked bucket still needs a checksum); the version id."""
    response = s3_client(endpoint).put_object(
        Bucket=bucket, Key=key, Body=data, ChecksumAlgorithm="SHA256"
    )
    return str(response["VersionId"])


def shape(versions: list[ObjectVersion]) -> list[tuple[str, str | None, bool, bool]]:
    return [(v.key, v.version_id, v.is_delete_marker, v.is_latest) for v in versions]


# --- writing under Object Lock ---------------------------------------------------------


def test_put_new_sets_compliance_retention(locked_bucket: tuple[str, str]) -> None:
    store = connect(*locked_bucket)
    info = store.put_new("seg/0", b"sealed bytes", retain_until=RETAIN_UNTIL)
    assert info.retention_mode == "COMPLIANCE"
    assert info.retain_until == RETAIN_UNTIL
    assert info.checksum_sha256 == sha256_b64(b"sealed bytes")
    assert info.version_id
    head = store.head("seg/0")
    assert head.retention_mode == "COMPLIANCE"
    assert head.retain_until == RETAIN_UNTIL
    assert head.retain_until.tzinfo is UTC
    assert head.legal_hold is False
    assert head.checksum_sha256 == sha256_b64(b"sealed bytes")
    assert (head.size, head.version_id) == (12, info.version_id)


def test_put_new_without_date_gets_the_bucket_default(locked_bucket: tuple[str, str]) -> None:
    store = connect(*locked_bucket)
    before = datetime.now(UTC)
    store.put_new("seg/0", b"x", retain_until=None)
    head = store.head("seg/0")
    assert head.retention_mode == "COMPLIANCE"
    assert head.retain_until is not None
    assert before + timedelta(hours=23) < head.retain_until < before + timedelta(days=1, hours=1)


def test_locked_version_cannot_be_deleted(locked_bucket: tuple[str, str]) -> None:
    endpoint, bucket = locked_bucket
    info = connect(endpoint, bucket).put_new("seg/0", b"kept", retain_until=RETAIN_UNTIL)
    with pytest.raises(ClientError) as raised:
        s3_client(endpoint).delete_object(Bucket=bucket, Key="seg/0", VersionId=info.version_id)
    assert raised.value.response["Error"]["Code"] == "AccessDenied"
    assert connect(endpoint, bucket).get("seg/0", info.version_id) == b"kept"


def test_unconditional_put_adds_a_version_listed_newest_first(
    locked_bucket: tuple[str, str],
) -> None:
    endpoint, bucket = locked_bucket
    store = connect(endpoint, bucket)
    first = store.put_new("seg/0", b"original", retain_until=None)
    second = raw_put(endpoint, bucket, "seg/0", b"overwritten")
    assert shape(list(store.list_versions("seg/"))) == [
        ("seg/0", second, False, True),
        ("seg/0", first.version_id, False, False),
    ]
    assert store.get("seg/0") == b"overwritten"
    assert store.get("seg/0", first.version_id) == b"original"
    with pytest.raises(ObjectExistsError):
        store.put_new("seg/0", b"third", retain_until=None)


def test_delete_marker_is_listed_and_hides_nothing_by_version(
    locked_bucket: tuple[str, str],
) -> None:
    endpoint, bucket = locked_bucket
    store = connect(endpoint, bucket)
    first = store.put_new("seg/0", b"original", retain_until=None)
    marker = s3_client(endpoint).delete_object(Bucket=bucket, Key="seg/0")["VersionId"]
    listed = list(store.list_versions(""))
    assert shape(listed) == [
        ("seg/0", marker, True, True),
        ("seg/0", first.version_id, False, False),
    ]
    assert listed[0].size == 0
    with pytest.raises(ObjectNotFoundError):
        store.get("seg/0")
    with pytest.raises(ObjectNotFoundError):
        store.head("seg/0")
    assert store.get("seg/0", first.version_id) == b"original"
    assert store.head("seg/0", first.version_id).size == 8
    with pytest.raises(ObjectNotFoundError, match=re.escape(f"seg/0?versionId={marker}")):
        store.get("seg/0", marker)
    with pytest.raises(ObjectNotFoundError):
        store.head("seg/0", marker)
    with pytest.raises(ObjectNotFoundError):
        store.get("seg/0", "no-such-version")


def test_put_new_after_a_delete_marker_adds_a_version(locked_bucket: tuple[str, str]) -> None:
    """If-None-Match only looks at the current object: a delete marker lets a put through."""
    endpoint, bucket = locked_bucket
    store = connect(endpoint, bucket)
    first = store.put_new("seg/0", b"original", retain_until=None)
    s3_client(endpoint).delete_object(Bucket=bucket, Key="seg/0")
    second = store.put_new("seg/0", b"again", retain_until=None)
    listed = list(store.list_versions("seg/"))
    assert listed[0].version_id == second.version_id
    assert listed[0].is_latest
    assert {v.version_id for v in listed[1:] if not v.is_delete_marker} == {first.version_id}
    assert [v.is_delete_marker for v in listed].count(True) == 1


def test_fetch_reads_retention_from_the_get_response(locked_bucket: tuple[str, str]) -> None:
    """One GetObject per object: no HeadObject for retention, legal hold or checksum."""
    store, info, operations = held_object(*locked_bucket, b"sealed bytes", RETAIN_UNTIL)
    data, fetched = store.fetch("seg/0", info.version_id)
    assert operations == ["GetObject"]
    assert data == b"sealed bytes"
    assert fetched == ObjectInfo(
        key="seg/0",
        version_id=info.version_id,
        size=12,
        retention_mode="COMPLIANCE",
        retain_until=RETAIN_UNTIL,
        legal_hold=True,
        checksum_sha256=sha256_b64(b"sealed bytes"),
    )
    assert fetched.retain_until is not None
    assert fetched.retain_until.tzinfo is UTC


# --- listing ---------------------------------------------------------------------------


@pytest.mark.parametrize("page_size", [1, 2, 3, 1000])
def test_listing_is_ordered_across_pages(locked_bucket: tuple[str, str], page_size: int) -> None:
    endpoint, bucket = locked_bucket
    client = s3_client(endpoint)
    a1 = raw_put(endpoint, bucket, "p/a", b"a1")
    b1 = raw_put(endpoint, bucket, "p/b", b"b1")
    b2 = raw_put(endpoint, bucket, "p/b", b"b2")
    b_marker = client.delete_object(Bucket=bucket, Key="p/b")["VersionId"]
    c1 = raw_put(endpoint, bucket, "p/c", b"c1")
    c2 = raw_put(endpoint, bucket, "p/c", b"c2")
    raw_put(endpoint, bucket, "q/x", b"other prefix")
    requests: list[str] = []
    client.meta.events.register(
        "after-call.s3.ListObjectVersions", lambda **_: requests.append("page")
    )
    listed = list(S3Store(bucket, client, page_size=page_size).list_versions("p/"))
    assert len(requests) >= math.ceil(6 / page_size)
    assert shape(listed) == [
        ("p/a", a1, False, True),
        ("p/b", b_marker, True, True),
        ("p/b", b2, False, False),
        ("p/b", b1, False, False),
        ("p/c", c2, False, True),
        ("p/c", c1, False, False),
    ]


@pytest.mark.parametrize("page_size", [1, 2, 3, 1000])
def test_marker_between_versions_is_placed_by_time(
    locked_bucket: tuple[str, str], page_size: int
) -> None:
    """botocore splits versions and markers into two lists; the driver merges them by time.

    moto lists at one-second resolution like S3, so the stored times are spread
    over seconds here (in moto's backend) to make the order observable.
    """
    endpoint, bucket = locked_bucket
    old = raw_put(endpoint, bucket, "k", b"old")
    marker = s3_client(endpoint).delete_object(Bucket=bucket, Key="k")["VersionId"]
    new = raw_put(endpoint, bucket, "k", b"new")
    stored = moto_s3_backend().buckets[bucket].keys.getlist("k")
    assert [entry.version_id for entry in stored] == [old, marker, new]
    for seconds, entry in enumerate(stored):
        entry.last_modified = datetime(2026, 1, 1, 0, 0, seconds)  # moto keeps naive UTC
    assert shape(list(connect(endpoint, bucket, page_size).list_versions("k"))) == [
        ("k", new, False, True),
        ("k", marker, True, False),
        ("k", old, False, False),
    ]


def test_listing_records_the_xml_order_of_entries(locked_bucket: tuple[str, str]) -> None:
    endpoint, bucket = locked_bucket
    client = s3_client(endpoint)
    raw_put(endpoint, bucket, "k", b"x")
    client.delete_object(Bucket=bucket, Key="k")
    S3Store(bucket, client)  # registers the hook on this client
    page = client.list_object_versions(Bucket=bucket)
    assert page["AuditArchiverEntryOrder"] == ["Version", "DeleteMarker"]  # moto: versions first


def _entry(key: str, version: str, second: int, *, latest: bool = False) -> dict[str, Any]:
    return {
        "Key": key,
        "VersionId": version,
        "IsLatest": latest,
        "LastModified": datetime(2026, 1, 1, 0, 0, second, tzinfo=UTC),
        "Size": 1,
    }


def test_page_merge_uses_recorded_document_order_for_ties() -> None:
    """Same-second entries: S3's XML order (recorded by a hook) decides; without it, versions
    come before markers."""
    page: dict[str, Any] = {
        "Versions": [_entry("k", "v3", 5, latest=True), _entry("k", "v1", 4)],
        "DeleteMarkers": [_entry("k", "m2", 4), _entry("j", "m0", 1, latest=True)],
    }
    assert [v.version_id for v in _page_entries(page)] == ["m0", "v3", "v1", "m2"]
    page["AuditArchiverEntryOrder"] = ["DeleteMarker", "Version", "DeleteMarker", "Version"]
    assert [v.version_id for v in _page_entries(page)] == ["m0", "v3", "m2", "v1"]
    page["AuditArchiverEntryOrder"] = ["Version"]  # inconsistent: ignored
    assert [v.version_id for v in _page_entries(page)] == ["m0", "v3", "v1", "m2"]


def test_listing_a_missing_bucket_is_refused(moto_endpoint: str) -> None:
    store = connect(moto_endpoint, unique_bucket_name("absent"))
    with pytest.raises(StorageError, match=r"ListObjectVersions.*NoSuchBucket") as raised:
        list(store.list_versions(""))
    assert not isinstance(raised.value, StorageUnavailableError)


# --- integrity and transport -------------------------------------------------------------


def test_tampered_bytes_raise_transport_checksum_error(locked_bucket: tuple[str, str]) -> None:
    """moto keeps the checksum given at upload; botocore checks the body against it on GET."""
    endpoint, bucket = locked_bucket
    store = connect(endpoint, bucket)
    info = store.put_new("seg/0", b"sealed bytes", retain_until=None)
    assert info.version_id is not None
    overwrite_stored_bytes(bucket, "seg/0", info.version_id, b"forged bytes")
    with pytest.raises(TransportChecksumError) as raised:
        store.get("seg/0")
    error = raised.value
    assert isinstance(error, IntegrityError)
    assert error.key == "seg/0"
    assert error.expected == sha256_b64(b"sealed bytes")
    assert error.found == sha256_b64(b"forged bytes")
    assert "s3://" in str(error)
    assert "forged" not in str(error)
    with pytest.raises(TransportChecksumError):
        store.get("seg/0", info.version_id)
    assert store.head("seg/0").checksum_sha256 == sha256_b64(b"sealed bytes")
    # Without checksum validation the forged bytes would come back silently:
    unchecked = boto3.client(
        "s3",
        endpoint_url=endpoint,
        config=Config(response_checksum_validation="when_required"),
    )
    assert unchecked.get_object(Bucket=bucket, Key="seg/0")["Body"].read() == b"forged bytes"


def test_connect_refuses_an_unusable_endpoint() -> None:
    with pytest.raises(ConfigurationError, match="cannot set up an S3 client for bucket b"):
        S3Store.connect("b", region="us-east-1", endpoint_url="not a url")


@pytest.mark.usefixtures("aws_test_environment")
def test_unreachable_endpoint_is_unavailable_quickly() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again before the request: connection refused
    store = S3Store.connect("bucket", region="us-east-1", endpoint_url=f"http://127.0.0.1:{port}")
    started = time.monotonic()
    with pytest.raises(StorageUnavailableError, match=r"GetObject s3://bucket/k unavailable"):
        store.get("k")
    assert time.monotonic() - started < 5


# --- error mapping (botocore Stubber: no network) ---------------------------------------


@pytest.fixture
def stubbed() -> tuple[S3Store, Stubber]:
    client = boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    return S3Store("bkt", client), Stubber(client)


@pytest.mark.parametrize(
    ("code", "status", "unavailable"),
    [
        ("SlowDown", 503, True),
        ("InternalError", 500, True),
        ("ServiceUnavailable", 503, True),
        ("RequestTimeout", 400, True),
        ("AccessDenied", 403, False),
        ("NoSuchBucket", 404, False),
        ("InvalidRequest", 400, False),
        ("Throttling", 400, True),
        ("TooManyRequestsException", 429, True),
        ("InvalidAccessKeyId", 403, False),
        ("SignatureDoesNotMatch", 403, False),
        ("PermanentRedirect", 301, False),
        ("AuthorizationHeaderMalformed", 400, False),
        ("KMS.DisabledException", 400, False),
        ("KMS.NotFoundException", 400, False),
    ],
)
def test_client_errors_are_unavailable_or_refused(
    stubbed: tuple[S3Store, Stubber], code: str, status: int, unavailable: bool
) -> None:
    store, stubber = stubbed
    stubber.add_client_error("put_object", code, "the message", http_status_code=status)
    with stubber, pytest.raises(StorageError) as raised:
        store.put_new("seg/0", b"secret contents", retain_until=None)
    assert isinstance(raised.value, StorageUnavailableError) is unavailable
    assert isinstance(raised.value, StoragePermanentError) is not unavailable
    assert isinstance(raised.value.__cause__, ClientError)
    message = str(raised.value)
    assert f"PutObject s3://bkt/seg/0 {'unavailable' if unavailable else 'refused'}" in message
    assert f"{code} (HTTP {status})" in message
    assert "secret" not in message


@pytest.mark.parametrize("code", ["PreconditionFailed", "ConditionalRequestConflict"])
def test_conditional_put_conflicts_mean_the_object_exists(
    stubbed: tuple[S3Store, Stubber], code: str
) -> None:
    store, stubber = stubbed
    stubber.add_client_error("put_object", code, http_status_code=412 if code[0] == "P" else 409)
    with stubber, pytest.raises(ObjectExistsError) as raised:
        store.put_new("seg/0", b"x", retain_until=None)
    assert raised.value.key == "seg/0"


def test_put_new_checks_the_echoed_checksum(stubbed: tuple[S3Store, Stubber]) -> None:
    store, stubber = stubbed
    stubber.add_response("put_object", {"ChecksumSHA256": sha256_b64(b"other"), "VersionId": "v"})
    with stubber, pytest.raises(StorageError, match="S3 reports checksum") as raised:
        store.put_new("seg/0", b"x", retain_until=None)
    assert not isinstance(raised.value, StorageUnavailableError)


def test_refused_get_is_not_a_missing_object(stubbed: tuple[S3Store, Stubber]) -> None:
    store, stubber = stubbed
    stubber.add_client_error("get_object", "AccessDenied", http_status_code=403)
    stubber.add_client_error("head_object", "403", http_status_code=403)
    with stubber:
        with pytest.raises(StorageError, match="GetObject s3://bkt/k refused: AccessDenied"):
            store.get("k")
        with pytest.raises(StorageError, match="HeadObject s3://bkt/k refused") as raised:
            store.head("k")
    assert not isinstance(raised.value, ObjectNotFoundError)


# --- bucket configuration ----------------------------------------------------------------


def test_object_lock_enabled(moto_endpoint: str) -> None:
    client = s3_client(moto_endpoint)
    locked = create_locked_bucket(client, unique_bucket_name("lock"))
    plain = create_plain_bucket(client, unique_bucket_name("plain"))
    assert connect(moto_endpoint, locked).object_lock_enabled() is True
    assert connect(moto_endpoint, plain).object_lock_enabled() is False
    missing = unique_bucket_name("missing")
    with pytest.raises(ConfigurationError, match=f"bucket {missing} does not exist"):
        connect(moto_endpoint, missing).object_lock_enabled()


def test_bucket_settings_locked_and_plain(moto_endpoint: str) -> None:
    client = s3_client(moto_endpoint)
    locked = create_locked_bucket(client, unique_bucket_name("lock"), retention_days=7)
    plain = create_plain_bucket(client, unique_bucket_name("plain"))
    assert connect(moto_endpoint, locked).bucket_settings() == BucketSettings(
        object_lock_enabled=True,
        default_retention_mode="COMPLIANCE",
        default_retention_days=7,
        versioning_status="Enabled",
        encryption_algorithm=None,
        kms_key_id=None,
        bucket_key_enabled=False,
        public_access_block=ALL_FLAGS_OFF,
        bucket_policy=None,
        ownership_controls=None,
    )
    assert connect(moto_endpoint, plain).bucket_settings() == BucketSettings(
        object_lock_enabled=False,
        default_retention_mode=None,
        default_retention_days=None,
        versioning_status=None,
        encryption_algorithm=None,
        kms_key_id=None,
        bucket_key_enabled=False,
        public_access_block=ALL_FLAGS_OFF,
        bucket_policy=None,
        ownership_controls=None,
    )
    with pytest.raises(ConfigurationError, match="does not exist"):
        connect(moto_endpoint, unique_bucket_name("missing")).bucket_settings()


def test_bucket_settings_of_a_hardened_bucket(moto_endpoint: str) -> None:
    client = s3_client(moto_endpoint)
    bucket = create_locked_bucket(client, unique_bucket_name("hard"))
    client.put_object_lock_configuration(
        Bucket=bucket,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Years": 2}},
        },
    )
    kms_key = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
    client.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {
                        "SSEAlgorithm": "aws:kms",
                        "KMSMasterKeyID": kms_key,
                    },
                    "BucketKeyEnabled": True,
                }
            ]
        },
    )
    flags = dict.fromkeys(ALL_FLAGS_OFF, True)
    client.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=flags)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }
    client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    client.put_bucket_ownership_controls(
        Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    )
    settings = connect(moto_endpoint, bucket).bucket_settings()
    assert settings == BucketSettings(
        object_lock_enabled=True,
        default_retention_mode="GOVERNANCE",
        default_retention_days=730,
        versioning_status="Enabled",
        encryption_algorithm="aws:kms",
        kms_key_id=kms_key,
        bucket_key_enabled=True,
        public_access_block=flags,
        bucket_policy=policy,
        ownership_controls="BucketOwnerEnforced",
    )


# --- local-s3 -------------------------------------------------------------------------------


@pytest.mark.usefixtures("aws_test_environment")
def test_start_local_s3_in_process() -> None:
    bucket = unique_bucket_name("inproc")
    settings = local_s3.LocalS3Settings(bucket=bucket, retention_days=3)
    with local_s3.start_local_s3(settings) as server:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.endpoint_url)
        settings_seen = connect(server.endpoint_url, bucket).bucket_settings()
        assert settings_seen.object_lock_enabled
        assert settings_seen.default_retention_days == 3
    store = S3Store.connect(bucket, region="us-east-1", endpoint_url=server.endpoint_url)
    with pytest.raises(StorageUnavailableError):
        store.object_lock_enabled()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1", "example.com"])
def test_local_s3_refuses_other_hosts(host: str) -> None:
    with pytest.raises(ConfigurationError, match="loopback only"):
        local_s3.start_server(host, 0)
    result = CliRunner().invoke(main, ["local-s3", "--host", host])
    assert result.exit_code == 2
    assert "loopback only" in result.output


def test_local_s3_reports_a_taken_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["local-s3", "--port", str(port)])
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.output


def test_local_s3_needs_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "moto.server", None)
    with pytest.raises(ConfigurationError, match=r"pip install 'audit-archiver\[local-s3\]'"):
        local_s3.start_server()


def _lines(stream: IO[str]) -> queue.Queue[str]:
    """Lines of ``stream`` as they arrive, read by a helper thread ("" at the end)."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            lines.put(line)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    return lines


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_local_s3_command_serves_until_signalled(tmp_path: Path, signum: int) -> None:
    command = [str(BIN), "local-s3", "--port", "0", "--retention-days", "2"]
    with (
        (tmp_path / "stderr").open("w+") as stderr,
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True) as process,
    ):
        try:
            assert process.stdout is not None
            lines = _lines(process.stdout)
            first = lines.get(timeout=30)
            match = re.fullmatch(
                r"local-s3: serving (http://127\.0\.0\.1:\d+) bucket=(\S+)\n", first
            )
            assert match, first
            endpoint, bucket = match.groups()
            assert bucket == "audit-archive"
            environment = lines.get(timeout=5)
            assert f"AWS_ENDPOINT_URL_S3={endpoint}" in environment
            assert "AWS_ACCESS_KEY_ID=testing" in environment
            client = s3_client(endpoint)
            configuration = client.get_object_lock_configuration(Bucket=bucket)
            assert configuration["ObjectLockConfiguration"] == {
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 2, "Years": 0}},
            }
            assert client.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
            store = S3Store(bucket, client)
            store.put_new("seg/0", b"x", retain_until=None)
            assert store.head("seg/0").retention_mode == "COMPLIANCE"
            process.send_signal(signum)
            assert process.wait(timeout=10) == 0
            assert lines.get(timeout=5) == ""
        finally:
            if process.poll() is None:
                process.kill()
        stderr.seek(0)
        assert stderr.read() == ""


def test_a_wrong_region_names_the_bucket_region(stubbed: tuple[S3Store, Stubber]) -> None:
    store, stubber = stubbed
    stubber.add_client_error(
        "put_object",
        "AuthorizationHeaderMalformed",
        "the region 'us-east-1' is wrong; expecting 'eu-west-1'",
        http_status_code=400,
        response_meta={"HTTPHeaders": {"x-amz-bucket-region": "eu-west-1"}},
    )
    with stubber, pytest.raises(StoragePermanentError, match=r"region eu-west-1; set --region"):
        store.put_new("seg/0", b"x", retain_until=None)
    redirect = ClientError(
        {
            "Error": {
                "Code": "PermanentRedirect",
                "Message": "use the specified endpoint",
                "Endpoint": "bkt.s3.eu-west-1.amazonaws.com",
            },
            "ResponseMetadata": {"HTTPStatusCode": 301},
        },
        "PutObject",
    )

    def fail(**_: object) -> None:
        raise redirect

    store._client.put_object = fail  # type: ignore[attr-defined]
    with pytest.raises(StoragePermanentError, match=r"endpoint bkt.s3.eu-west-1.*--region"):
        store.put_new("seg/0", b"x", retain_until=None)


@pytest.mark.parametrize(
    ("error", "unavailable"),
    [
        (EndpointConnectionError(endpoint_url="http://x"), True),
        (ConnectTimeoutError(endpoint_url="http://x"), True),
        (ReadTimeoutError(endpoint_url="http://x"), True),
        (ConnectionClosedError(endpoint_url="http://x"), True),
        (NoCredentialsError(), False),
        (SSLError(endpoint_url="http://x", error="certificate verify failed"), False),
    ],
)
def test_transport_errors_are_unavailable_or_refused(
    stubbed: tuple[S3Store, Stubber], error: Exception, unavailable: bool
) -> None:
    store, _ = stubbed

    def fail(**_: object) -> None:
        raise error

    store._client.put_object = fail  # type: ignore[attr-defined]
    with pytest.raises(StorageError) as raised:
        store.put_new("seg/0", b"x", retain_until=None)
    assert isinstance(raised.value, StorageUnavailableError) is unavailable
    assert isinstance(raised.value, StoragePermanentError) is not unavailable


def test_botocore_makes_two_tries_with_bounded_timeouts() -> None:
    config = s3_module._client_config()
    # botocore's "max_attempts" counts retries; "total_max_attempts" counts tries.
    assert config.retries == {"total_max_attempts": 2, "mode": "standard"}
    assert (config.connect_timeout, config.read_timeout) == (3.0, 10.0)


@pytest.mark.usefixtures("aws_test_environment")
def test_a_refused_connection_costs_two_tries_not_three() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = S3Store.connect("bucket", region="us-east-1", endpoint_url=f"http://127.0.0.1:{port}")
    sent: list[str] = []
    store._client.meta.events.register(  # type: ignore[attr-defined]
        "before-send.s3.GetObject", lambda request, **_: sent.append(request.url)
    )
    with pytest.raises(StorageUnavailableError):
        store.get("k")
    assert len(sent) == 2
