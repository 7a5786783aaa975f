"""``verify --bucket`` against moto's S3 server over HTTP, each problem produced for real.

Segments are uploaded with the real S3 driver (COMPLIANCE, checksum, If-None-Match);
tampering goes through S3's own API (a new version, a delete marker, GOVERNANCE
or short retention) or, as a storage-level attacker would, through moto's backend.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from audit_archiver.core.segment import SealedSegment
from audit_archiver.storage.s3 import S3Store
from audit_archiver.verify.worker import PROCESS_THRESHOLD
from tests.helpers import BASE_TIME, OTHER_SEED, build_stream, fixed_signer, forge
from tests.integration.agent_process import verify_in_bucket
from tests.integration.cli import run_cli
from tests.s3server import (
    create_plain_bucket,
    moto_s3_backend,
    overwrite_stored_bytes,
    s3_client,
    unique_bucket_name,
)
from tests.vectors.generate import HERE as VECTORS

PUBLIC = VECTORS / "public.pem"
RETAIN = datetime.now(UTC) + timedelta(days=400)


def upload(
    endpoint: str,
    bucket: str,
    segments: list[SealedSegment],
    retain_until: datetime | None = RETAIN,
) -> None:
    store = S3Store.connect(bucket, region="us-east-1", endpoint_url=endpoint)
    for segment in segments:
        store.put_new(segment.key, segment.data, retain_until=retain_until)


def verify(endpoint: str, bucket: str, *args: str | Path) -> tuple[int, dict[str, Any]]:
    return verify_in_bucket(
        endpoint, bucket, "--region", "us-east-1", "--public-key", PUBLIC, *args
    )


def kinds(report: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((p["kind"], p["key"]) for p in report["problems"])


def key(stream: str, n: int) -> str:
    return f"audit/{stream}/{n:012d}.ndjson.zst"


@pytest.fixture
def archive(locked_bucket: tuple[str, str]) -> tuple[str, str]:
    endpoint, bucket = locked_bucket
    upload(endpoint, bucket, build_stream(None, "app-1", segments=3))
    upload(endpoint, bucket, build_stream(None, "app-2", segments=2, per_segment=5))
    return endpoint, bucket


def test_clean_archive_of_several_streams(archive: tuple[str, str]) -> None:
    code, report = verify(*archive)
    assert code == 0
    assert (report["streams"], report["segments"], report["events"]) == (2, 5, 22)
    assert report["problems"] == []
    text = run_cli(
        "verify",
        "--bucket",
        archive[1],
        "--prefix",
        "audit",
        "--endpoint-url",
        archive[0],
        "--public-key",
        PUBLIC,
    )
    assert text.returncode == 0, text.stderr
    assert "stream app-2: 2 segment(s), 10 event(s)" in text.stdout


def test_new_version_over_a_segment(archive: tuple[str, str]) -> None:
    endpoint, bucket = archive
    forged = forge(build_stream(None, "app-1", segments=3)[1], fixed_signer(OTHER_SEED))
    s3_client(endpoint).put_object(
        Bucket=bucket, Key=key("app-1", 1), Body=forged, ChecksumAlgorithm="SHA256"
    )
    _, report = verify(endpoint, bucket)
    assert kinds(report) == [("extra_version", key("app-1", 1))]
    assert report["segments"] == 5


def test_delete_marker_hides_a_segment(archive: tuple[str, str]) -> None:
    endpoint, bucket = archive
    s3_client(endpoint).delete_object(Bucket=bucket, Key=key("app-2", 0))
    _, report = verify(endpoint, bucket)
    assert kinds(report) == [("delete_marker", key("app-2", 0))]
    assert "hides the segment" in report["problems"][0]["detail"]
    assert report["events"] == 22


def test_bytes_altered_behind_s3s_back(archive: tuple[str, str]) -> None:
    endpoint, bucket = archive
    head = s3_client(endpoint).head_object(Bucket=bucket, Key=key("app-1", 2))
    overwrite_stored_bytes(bucket, key("app-1", 2), head["VersionId"], b"forged" * 100)
    _, report = verify(endpoint, bucket)
    assert kinds(report) == [("checksum_mismatch", key("app-1", 2))]


def test_object_removed_behind_s3s_back(archive: tuple[str, str]) -> None:
    endpoint, bucket = archive
    moto_s3_backend().buckets[bucket].keys.pop(key("app-1", 1))
    _, report = verify(endpoint, bucket)
    assert kinds(report) == [("sequence_gap", key("app-1", 2))]


def test_governance_and_short_retention(locked_bucket: tuple[str, str]) -> None:
    endpoint, bucket = locked_bucket
    first, second, third = build_stream(None, "app-1", segments=3)
    client = s3_client(endpoint)
    upload(endpoint, bucket, [first])
    client.put_object(
        Bucket=bucket,
        Key=second.key,
        Body=second.data,
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=RETAIN,
        ChecksumAlgorithm="SHA256",
    )
    upload(endpoint, bucket, [third], retain_until=BASE_TIME + timedelta(hours=1))
    _, report = verify(endpoint, bucket, "--min-retention-days", "2")
    assert kinds(report) == [
        ("retention_governance", second.key),
        ("retention_too_short", third.key),
    ]


def test_bucket_without_versioning_or_lock(moto_endpoint: str) -> None:
    client = s3_client(moto_endpoint)
    bucket = create_plain_bucket(client, unique_bucket_name("plain"))
    segments = build_stream(None, "app-1", segments=2)
    for segment in segments:
        client.put_object(Bucket=bucket, Key=segment.key, Body=segment.data)
    _, report = verify(moto_endpoint, bucket)
    assert kinds(report) == [
        ("bucket_default_retention", bucket),
        ("bucket_object_lock_disabled", bucket),
        ("bucket_versioning_disabled", bucket),
        ("retention_missing", segments[0].key),
        ("retention_missing", segments[1].key),
    ]


def test_legal_hold_is_a_notice(archive: tuple[str, str]) -> None:
    endpoint, bucket = archive
    s3_client(endpoint).put_object_legal_hold(
        Bucket=bucket, Key=key("app-1", 0), LegalHold={"Status": "ON"}
    )
    code, report = verify(endpoint, bucket)
    assert code == 0
    assert [(n["kind"], n["key"]) for n in report["notices"]] == [("legal_hold", key("app-1", 0))]


def test_state_catches_a_rolled_back_tail_and_runs_incrementally(
    archive: tuple[str, str], tmp_path: Path
) -> None:
    endpoint, bucket = archive
    state = tmp_path / "state.json"
    assert verify(endpoint, bucket, "--state", state)[0] == 0
    saved = json.loads(state.read_text())["streams"]
    assert saved["app-1"]["segment_seq"] == 2
    more = build_stream(None, "app-1", segments=5)[3:]
    upload(endpoint, bucket, more)
    code, report = verify(endpoint, bucket, "--state", state)
    assert code == 0
    assert (report["segments"], report["events"]) == (2, 8)
    assert json.loads(state.read_text())["streams"]["app-1"]["segment_seq"] == 4
    backend = moto_s3_backend().buckets[bucket].keys
    backend.pop(key("app-1", 4))
    backend.pop(key("app-1", 3))
    _, report = verify(endpoint, bucket, "--state", state)
    assert kinds(report) == [("truncated", key("app-1", 4))]
    assert json.loads(state.read_text())["streams"]["app-1"]["segment_seq"] == 4


def test_state_catches_a_rewritten_head(archive: tuple[str, str], tmp_path: Path) -> None:
    endpoint, bucket = archive
    state = tmp_path / "state.json"
    assert verify(endpoint, bucket, "--state", state)[0] == 0
    moto_s3_backend().buckets[bucket].keys.pop(key("app-2", 1))
    other = build_stream(None, "app-2", segments=2, per_segment=5)[1]
    rewritten = forge(other, fixed_signer(), sealed_at="2026-01-02T03:04:59.000000Z")
    store = S3Store.connect(bucket, region="us-east-1", endpoint_url=endpoint)
    store.put_new(key("app-2", 1), rewritten, retain_until=RETAIN)
    _, report = verify(endpoint, bucket, "--state", state)
    assert kinds(report) == [("history_rewritten", key("app-2", 1))]


def test_stale_stream_caught_by_max_age(archive: tuple[str, str]) -> None:
    endpoint, bucket = archive
    _, report = verify(endpoint, bucket, "--max-age", "3600")
    assert kinds(report) == [("stale_stream", "app-1"), ("stale_stream", "app-2")]
    age = (datetime.now(UTC) - BASE_TIME).total_seconds()
    assert verify(endpoint, bucket, "--max-age", str(age + 86400))[0] == 0


def test_since_checks_new_segments_and_the_link_into_them(archive: tuple[str, str]) -> None:
    endpoint, bucket = archive
    code, report = verify(endpoint, bucket, "--since", "2999-01-01T00:00:00Z")
    assert code == 0
    assert report["segments"] == 2
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert verify(endpoint, bucket, "--since", past)[1]["segments"] == 5


def test_state_file_for_another_archive_is_refused(
    archive: tuple[str, str], tmp_path: Path
) -> None:
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"version": 1, "source": "s3://elsewhere/audit", "streams": {}}))
    result = run_cli(
        "verify",
        "--bucket",
        archive[1],
        "--prefix",
        "audit",
        "--endpoint-url",
        archive[0],
        "--public-key",
        PUBLIC,
        "--state",
        state,
    )
    assert result.returncode == 2
    assert "records 's3://elsewhere/audit'" in result.stderr


def test_many_segments_use_worker_processes(locked_bucket: tuple[str, str]) -> None:
    endpoint, bucket = locked_bucket
    assert PROCESS_THRESHOLD <= 80  # enough segments for the worker-process path
    upload(endpoint, bucket, build_stream(None, "app-1", segments=80, per_segment=2))
    code, report = verify(endpoint, bucket, "--workers", "4")
    assert code == 0
    assert (report["segments"], report["events"]) == (80, 160)
    (summary,) = report["stream_summaries"]
    assert (summary["head_segment_seq"], summary["segments"]) == (79, 80)


def test_stream_in_state_but_gone_from_the_bucket(archive: tuple[str, str], tmp_path: Path) -> None:
    endpoint, bucket = archive
    state = tmp_path / "state.json"
    assert verify(endpoint, bucket, "--state", state)[0] == 0
    backend = moto_s3_backend().buckets[bucket].keys
    for n in range(2):
        backend.pop(key("app-2", n))
    _, report = verify(endpoint, bucket, "--state", state)
    assert kinds(report) == [("stream_missing", "app-2")]
