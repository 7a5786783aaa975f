"""Trusted timestamps end to end: the real agent with ``--tsa-url`` against moto's S3
server and a real local TSA (``openssl ts -reply``), then the real ``verify``.

Attacks first: tokens swapped between segments, a flipped signature byte, a
token from a TSA not given with ``--tsa-cert``, a token removed; a TSA that is
down, hangs, or answers hostile bytes never blocks ingest and is never stored.
Expected verdicts are stated by hand; the by-hand check of FORMAT.md section
13 runs with openssl and coreutils only.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import wait_for
from tests.integration.agent_process import (
    AgentProcess,
    download_latest,
    metric_value,
    ndjson,
    verify_in_bucket,
)
from tests.integration.cli import run_cli
from tests.s3server import create_locked_bucket, s3_client, unique_bucket_name
from tests.tsa import LocalTsa, closed_port_url

STREAM = "web-1"
SEGMENTS = 3
PER_SEGMENT = 5


@dataclass(frozen=True)
class Archive:
    """What one agent run left: the bucket, its key, a synced copy and its metrics."""

    endpoint: str
    bucket: str
    public_key: Path
    copy: Path
    metrics: dict[str, float]
    alerts: tuple[str, ...] = ()


@pytest.fixture(scope="module")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTsa]:
    with LocalTsa(tmp_path_factory.mktemp("tsa")) as server:
        yield server


@pytest.fixture(scope="module")
def other_tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTsa]:
    with LocalTsa(tmp_path_factory.mktemp("other-tsa"), "Other TSA") as server:
        yield server


def _run_agent(
    work: Path, endpoint: str, tsa_url: str, *extra: str, batches: int = SEGMENTS
) -> Archive:
    """Run an agent with ``--tsa-url``, send ``batches`` batches (each one segment), wait
    until S3 has them all, stop it, and sync the prefix into ``work/copy``."""
    bucket = create_locked_bucket(s3_client(endpoint), unique_bucket_name("tsa"))
    agent = AgentProcess(
        work,
        endpoint,
        bucket,
        stream=STREAM,
        args=("--tsa-url", tsa_url, "--batch-max-events", str(PER_SEGMENT), *extra),
    )
    try:
        agent.start()
        agent.wait_ready()
        for n in range(batches):
            started = time.monotonic()
            status, answer = agent.post(ndjson(n * PER_SEGMENT, PER_SEGMENT))
            assert status == 200, answer
            assert time.monotonic() - started < 1.0  # ingest never waits for the TSA
        wait_for(
            lambda: metric_value(agent, "audit_archiver_segments_uploaded_total") >= batches,
            timeout=30,
            what="every segment in S3",
        )
        _, text = agent.get("/metrics")
        metrics = _samples(text.decode())
        _, ready = agent.get("/readyz")
        alerts = tuple(ready["alerts"])
        assert agent.terminate() == 0
    finally:
        agent.stop_quietly()
    copy = work / "copy"
    download_latest(endpoint, bucket, "audit", copy)
    return Archive(endpoint, bucket, agent.public_key, copy, metrics, alerts)


def _samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith("audit_archiver_") and ("tsa" in line or "timestamped" in line):
            series, _, value = line.rpartition(" ")
            out[series] = float(value)
    return out


@pytest.fixture(scope="module")
def stamped(tmp_path_factory: pytest.TempPathFactory, moto_endpoint: str, tsa: LocalTsa) -> Archive:
    work = tmp_path_factory.mktemp("stamped")
    return _run_agent(work, moto_endpoint, tsa.url, "--tsa-cert", str(tsa.ca_pem))


def _segment(root: Path, n: int) -> Path:
    return root / STREAM / f"{n:012d}.ndjson.zst"


def _key(n: int) -> str:
    return f"{STREAM}/{n:012d}.ndjson.zst"


def _lines(path: Path) -> tuple[list[bytes], bytes]:
    """The seal block's lines of a zstd segment file, and the stored body."""
    data = path.read_bytes()
    assert data[:4] == b"\x5a\x2a\x4d\x18"
    size = int.from_bytes(data[4:8], "little")
    block = data[8 : 8 + size]
    assert block.endswith(b"\n")
    return block[:-1].split(b"\n"), data[8 + size :]


def _write(path: Path, lines: list[bytes], body: bytes) -> None:
    block = b"".join(line + b"\n" for line in lines)
    path.write_bytes(b"\x5a\x2a\x4d\x18" + len(block).to_bytes(4, "little") + block + body)


def _verify_local(root: Path, archive: Archive, *args: str | Path) -> tuple[int, dict[str, Any]]:
    done = run_cli(
        "verify",
        "--local-dir",
        root,
        "--prefix",
        "audit",
        "--public-key",
        archive.public_key,
        *args,
        "--json",
        "--no-progress",
    )
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def _problems(report: dict[str, Any]) -> list[tuple[str, str]]:
    return sorted((p["kind"], p["key"]) for p in report["problems"])


def _copy(archive: Archive, tmp_path: Path) -> Path:
    root = tmp_path / "copy"
    shutil.copytree(archive.copy, root)
    return root


# -- the agent stamps, verify passes -----------------------------------------------


def test_agent_stamps_every_segment_and_verify_checks_them(stamped: Archive, tsa: LocalTsa) -> None:
    assert stamped.metrics["audit_archiver_segments_timestamped_total"] == SEGMENTS
    assert stamped.alerts == ()  # --tsa-cert given: the start-up probe verified a token
    assert not any(k.startswith("audit_archiver_tsa_failures_total") for k in stamped.metrics)
    for n in range(SEGMENTS):
        lines, _ = _lines(_segment(stamped.copy, n))
        assert len(lines) == 3 and lines[2].startswith(b'{"timestamp":"')
    code, report = verify_in_bucket(
        stamped.endpoint,
        stamped.bucket,
        "--public-key",
        str(stamped.public_key),
        "--tsa-cert",
        str(tsa.ca_pem),
        "--require-timestamps",
    )
    assert code == 0, report["problems"]
    assert report["notices"] == []
    (summary,) = report["stream_summaries"]
    assert summary["timestamped_segments"] == SEGMENTS == summary["segments"]
    newest = datetime.strptime(summary["newest_timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert abs(newest.replace(tzinfo=UTC) - datetime.now(UTC)) < timedelta(minutes=5)
    text = run_cli(
        "verify",
        "--local-dir",
        stamped.copy,
        "--public-key",
        stamped.public_key,
        "--tsa-cert",
        tsa.ca_pem,
        "--no-progress",
    )
    assert text.returncode == 0, text.stderr
    expected = (
        f"  time-stamped:    {SEGMENTS} segment(s), newest TSA time {summary['newest_timestamp']}"
    )
    assert expected in text.stdout.splitlines()


def test_without_tsa_cert_tokens_are_a_notice(stamped: Archive) -> None:
    code, report = _verify_local(stamped.copy, stamped)
    assert code == 0, report["problems"]
    assert [(n["kind"], n["key"]) for n in report["notices"]] == [
        ("timestamp_not_checked", _key(0))
    ]
    (summary,) = report["stream_summaries"]
    assert summary["timestamped_segments"] == SEGMENTS
    assert summary["newest_timestamp"] is None


def test_by_hand_check_of_format_section_13(
    stamped: Archive, tsa: LocalTsa, tmp_path: Path
) -> None:
    """The shell steps of docs/FORMAT.md section 13, as written, with openssl."""
    doc = (Path(__file__).parents[2] / "docs" / "FORMAT.md").read_text()
    section = doc[doc.index("## 13. Trusted timestamps") :]
    script = section[section.index("```sh\n") + 6 :]
    script = script[: script.index("```")]
    shutil.copy(_segment(stamped.copy, 1), tmp_path / "seg.zst")
    shutil.copy(tsa.ca_pem, tmp_path / "tsa-ca.pem")
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Verification: OK" in done.stdout
    assert "Time stamp:" in done.stdout


# -- attacks on a copy ---------------------------------------------------------------


def test_tokens_swapped_between_segments_are_invalid(
    stamped: Archive, tsa: LocalTsa, tmp_path: Path
) -> None:
    root = _copy(stamped, tmp_path)
    first, body_0 = _lines(_segment(root, 0))
    second, body_1 = _lines(_segment(root, 1))
    first[2], second[2] = second[2], first[2]
    _write(_segment(root, 0), first, body_0)
    _write(_segment(root, 1), second, body_1)
    expected = [("timestamp_invalid", _key(0)), ("timestamp_invalid", _key(1))]
    code, report = _verify_local(root, stamped, "--tsa-cert", tsa.ca_pem)
    assert (code, _problems(report)) == (1, expected)
    assert all("another seal" in p["detail"] for p in report["problems"])
    # The imprint is checked even without --tsa-cert.
    code, report = _verify_local(root, stamped)
    assert (code, _problems(report)) == (1, expected)
    (summary,) = report["stream_summaries"]
    assert summary["events"] == SEGMENTS * PER_SEGMENT  # the events are still authenticated


def test_flipped_tsa_signature_byte_is_invalid(
    stamped: Archive, tsa: LocalTsa, tmp_path: Path
) -> None:
    root = _copy(stamped, tmp_path)
    lines, body = _lines(_segment(root, 2))
    token = bytearray(base64.b64decode(json.loads(lines[2])["timestamp"]))
    token[-8] ^= 0x01  # inside the TSA's ECDSA signature, the token's last field
    lines[2] = b'{"timestamp":"' + base64.b64encode(bytes(token)) + b'"}'
    _write(_segment(root, 2), lines, body)
    code, report = _verify_local(root, stamped, "--tsa-cert", tsa.ca_pem)
    assert (code, _problems(report)) == (1, [("timestamp_invalid", _key(2))])


def test_token_of_a_tsa_not_given_is_invalid(stamped: Archive, other_tsa: LocalTsa) -> None:
    code, report = _verify_local(stamped.copy, stamped, "--tsa-cert", other_tsa.ca_pem)
    assert (code, _problems(report)) == (
        1,
        [("timestamp_invalid", _key(n)) for n in range(SEGMENTS)],
    )
    (summary,) = report["stream_summaries"]
    assert summary["timestamped_segments"] == 0


def test_removed_token_is_missing_only_when_required(
    stamped: Archive, tsa: LocalTsa, tmp_path: Path
) -> None:
    root = _copy(stamped, tmp_path)
    lines, body = _lines(_segment(root, 1))
    _write(_segment(root, 1), lines[:2], body)  # a valid v1 segment again
    code, report = _verify_local(root, stamped, "--tsa-cert", tsa.ca_pem)
    assert (code, _problems(report)) == (0, [])
    assert [(n["kind"], n["key"]) for n in report["notices"]] == [("not_timestamped", _key(1))]
    assert report["stream_summaries"][0]["timestamped_segments"] == SEGMENTS - 1
    code, report = _verify_local(root, stamped, "--tsa-cert", tsa.ca_pem, "--require-timestamps")
    assert (code, _problems(report)) == (1, [("timestamp_missing", _key(1))])


@pytest.mark.parametrize(
    "line",
    [b'{"timestamp": "AAAA"}', b'{"timestamp":"!!"}', b"garbage"],
    ids=["not-canonical", "not-base64", "not-json"],
)
def test_hostile_timestamp_lines_are_invalid(
    stamped: Archive, tsa: LocalTsa, tmp_path: Path, line: bytes
) -> None:
    root = _copy(stamped, tmp_path)
    lines, body = _lines(_segment(root, 0))
    _write(_segment(root, 0), [*lines[:2], line], body)
    code, report = _verify_local(root, stamped, "--tsa-cert", tsa.ca_pem)
    assert (code, _problems(report)) == (1, [("timestamp_invalid", _key(0))])


def test_usage_errors(stamped: Archive, tmp_path: Path) -> None:
    base: list[str | Path] = [
        "verify",
        "--local-dir",
        stamped.copy,
        "--public-key",
        stamped.public_key,
    ]
    done = run_cli(*base, "--require-timestamps")
    assert done.returncode == 2
    assert "--require-timestamps needs --tsa-cert" in done.stderr
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    done = run_cli(*base, "--tsa-cert", tmp_path / "junk.pem")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "--tsa-cert" in done.stderr


# -- the state file records the time-stamp policy (review 2, M5) ---------------------


def _fingerprint(pem: Path) -> str:
    """SHA-256 of a certificate's DER, by openssl and coreutils (not the code under test)."""
    der = subprocess.run(
        ["openssl", "x509", "-in", str(pem), "-outform", "DER"], capture_output=True, check=True
    ).stdout
    return (
        subprocess.run(["sha256sum"], input=der, capture_output=True, check=True)
        .stdout[:64]
        .decode()
    )


def test_state_saved_under_a_weaker_policy_is_not_trusted_for_tokens(
    stamped: Archive, tsa: LocalTsa, other_tsa: LocalTsa, tmp_path: Path
) -> None:
    """Heads saved without --tsa-cert vouch for no token: a later run with --tsa-cert
    (or --require-timestamps) against that state file is refused, never a silent pass
    over segments it does not download again."""
    root = _copy(stamped, tmp_path)
    weak = tmp_path / "weak.json"
    code, report = _verify_local(root, stamped, "--state", weak)
    assert (code, report["segments"]) == (0, SEGMENTS)
    recorded = json.loads(weak.read_text())["timestamps"]
    assert recorded == {"tsa_cert_sha256": [], "require_timestamps": False}
    base: list[str | Path] = ["verify", "--local-dir", root, "--prefix", "audit"]
    base += ["--public-key", stamped.public_key, "--no-progress"]
    done = run_cli(*base, "--state", weak, "--tsa-cert", tsa.ca_pem)
    assert done.returncode == 2, done.stderr
    assert "weaker time-stamp policy" in done.stderr and "new --state" in done.stderr
    assert "Traceback" not in done.stderr

    strong = tmp_path / "strong.json"
    code, report = _verify_local(root, stamped, "--state", strong, "--tsa-cert", tsa.ca_pem)
    assert code == 0 and report["stream_summaries"][0]["timestamped_segments"] == SEGMENTS
    recorded = json.loads(strong.read_text())["timestamps"]
    assert recorded == {"tsa_cert_sha256": [_fingerprint(tsa.ca_pem)], "require_timestamps": False}
    # The same policy, or more anchors: the heads are trusted (an incremental run).
    code, report = _verify_local(root, stamped, "--state", strong, "--tsa-cert", tsa.ca_pem)
    assert (code, report["incremental"], report["segments"]) == (0, True, 0)
    more = ("--tsa-cert", tsa.ca_pem, "--tsa-cert", other_tsa.ca_pem)
    code, report = _verify_local(root, stamped, "--state", strong, *more)
    assert code == 0
    assert sorted(json.loads(strong.read_text())["timestamps"]["tsa_cert_sha256"]) == sorted(
        [_fingerprint(tsa.ca_pem), _fingerprint(other_tsa.ca_pem)]
    )
    # Stronger again: --require-timestamps was off, or an anchor is dropped.
    for args in (
        (*more, "--require-timestamps"),
        ("--tsa-cert", tsa.ca_pem),
    ):
        done = run_cli(*base, "--state", strong, *args)
        assert done.returncode == 2, (args, done.stderr)
        assert "weaker time-stamp policy" in done.stderr


# -- a TSA that fails never blocks ingest ---------------------------------------------


@pytest.mark.parametrize("failure", ["down", "hang"])
def test_failing_tsa_leaves_segments_unstamped(
    tmp_path: Path, moto_endpoint: str, tsa: LocalTsa, failure: str
) -> None:
    if failure == "down":
        archive = _run_agent(tmp_path, moto_endpoint, closed_port_url(), "--tsa-timeout", "1")
        reason = "unreachable"
    else:
        with LocalTsa(tmp_path / "hanging") as hanging:
            hanging.mode = "hang"
            archive = _run_agent(tmp_path, moto_endpoint, hanging.url, "--tsa-timeout", "1")
        reason = "timeout"
    assert archive.metrics[f'audit_archiver_tsa_failures_total{{reason="{reason}"}}'] >= 1
    failures = sum(v for k, v in archive.metrics.items() if "tsa_failures_total" in k)
    assert failures == SEGMENTS  # every segment: a failure, or skipped by the breaker
    assert archive.metrics["audit_archiver_segments_timestamped_total"] == 0
    code, report = verify_in_bucket(
        archive.endpoint,
        archive.bucket,
        "--public-key",
        str(archive.public_key),
        "--tsa-cert",
        str(tsa.ca_pem),
        "--require-timestamps",
    )
    assert code == 1
    assert _problems(report) == [("timestamp_missing", f"audit/{_key(n)}") for n in range(SEGMENTS)]
    assert report["events"] == SEGMENTS * PER_SEGMENT
    code, report = _verify_local(archive.copy, archive, "--tsa-cert", tsa.ca_pem)
    assert code == 0
    assert [n["kind"] for n in report["notices"]] == ["not_timestamped"]
    assert str(SEGMENTS) in report["notices"][0]["detail"]


def test_agent_with_tsa_cert_stores_only_tokens_that_verify(
    tmp_path: Path, moto_endpoint: str, tsa: LocalTsa, other_tsa: LocalTsa
) -> None:
    """Review 2, M2: given another TSA's CA, the agent's tokens do not verify: none is
    stored, each counts ``invalid``, and /readyz names the misconfiguration."""
    archive = _run_agent(
        tmp_path, moto_endpoint, tsa.url, "--tsa-cert", str(other_tsa.ca_pem), batches=1
    )
    assert archive.metrics['audit_archiver_tsa_failures_total{reason="invalid"}'] == 1
    assert archive.metrics["audit_archiver_segments_timestamped_total"] == 0
    assert any("--tsa-cert" in alert for alert in archive.alerts), archive.alerts
    lines, _ = _lines(_segment(archive.copy, 0))
    assert len(lines) == 2


@pytest.mark.parametrize(
    ("mode", "reason"),
    [("garbage", "invalid_response"), ("huge", "too_large"), ("wrong_nonce", "wrong_nonce")],
)
def test_hostile_tsa_answers_are_never_stored(
    tmp_path: Path, moto_endpoint: str, mode: str, reason: str
) -> None:
    with LocalTsa(tmp_path / "hostile") as hostile:
        hostile.mode = mode
        archive = _run_agent(tmp_path, moto_endpoint, hostile.url, batches=1)
        assert hostile.answered >= 1
    assert archive.metrics[f'audit_archiver_tsa_failures_total{{reason="{reason}"}}'] == 1
    lines, _ = _lines(_segment(archive.copy, 0))
    assert len(lines) == 2  # seal and signature only: nothing of the answer was kept
    code, report = _verify_local(archive.copy, archive, "--tsa-cert", hostile.ca_pem)
    assert (code, _problems(report)) == (0, [])
    code, report = _verify_local(
        archive.copy, archive, "--tsa-cert", hostile.ca_pem, "--require-timestamps"
    )
    assert (code, _problems(report)) == (1, [("timestamp_missing", _key(0))])
