"""``verify --shard K/N`` as N separate processes over one bucket, then ``report merge``.

The archive in moto's S3 holds several streams, one of them long enough to be
split into several work units (the hidden ``--shard-unit-segments 3`` stands
in for the 4,096 of a real run), and one tampered segment. The merged report
must be the report of one full run, and the tampered segment must be found by
exactly one shard.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from audit_archiver.verify.shard import Unit, owner
from tests.helpers import build_stream, fixed_signer, forge
from tests.integration.agent_process import verify_in_bucket
from tests.integration.cli import BIN, TIMEOUT_SECONDS, run_cli
from tests.integration.test_verify_bucket import PUBLIC, key, upload
from tests.s3server import overwrite_stored_bytes, s3_client

N = 3
UNIT = 3
TAMPERED = ("big-1", 4)


def problem_set(report: dict[str, Any]) -> set[str]:
    return {json.dumps(p, sort_keys=True) for p in report["problems"]}


@pytest.fixture
def archive(locked_bucket: tuple[str, str]) -> tuple[str, str]:
    endpoint, bucket = locked_bucket
    big = build_stream(None, "big-1", segments=11, per_segment=2)
    upload(endpoint, bucket, big)
    upload(endpoint, bucket, build_stream(None, "app-2", segments=3))
    upload(endpoint, bucket, build_stream(None, "app-3", segments=2, per_segment=5))
    upload(endpoint, bucket, build_stream(None, "web-4", segments=1))
    stream, number = TAMPERED
    tampered = key(stream, number)
    (version,) = s3_client(endpoint).list_object_versions(Bucket=bucket, Prefix=tampered)[
        "Versions"
    ]
    data = bytearray(big[number].data)
    data[-20] ^= 0x01  # a byte of the body: the seal still authenticates
    overwrite_stored_bytes(bucket, tampered, version["VersionId"], bytes(data))
    return endpoint, bucket


def shard_args(endpoint: str, bucket: str, k: int) -> list[str]:
    return [
        "verify",
        "--bucket",
        bucket,
        "--prefix",
        "audit",
        "--endpoint-url",
        endpoint,
        "--region",
        "us-east-1",
        "--public-key",
        str(PUBLIC),
        "--shard",
        f"{k}/{N}",
        "--shard-unit-segments",
        str(UNIT),
        "--json",
        "--no-progress",
    ]


def run_shards(endpoint: str, bucket: str, out: Path) -> list[Path]:
    """Start the N shards at once, as N separate processes; each writes its report."""
    processes = []
    for k in range(1, N + 1):
        path = out / f"shard-{k}.json"
        with open(path, "w") as handle:
            processes.append(
                (
                    path,
                    subprocess.Popen(
                        [str(BIN), *shard_args(endpoint, bucket, k)],
                        stdout=handle,
                        stderr=subprocess.PIPE,
                        env=dict(os.environ),
                        text=True,
                    ),
                )
            )
    for path, process in processes:
        _, err = process.communicate(timeout=TIMEOUT_SECONDS)
        assert process.returncode in (0, 1), err
        report = json.loads(path.read_text())
        assert process.returncode == (0 if report["ok"] else 1)
    return [path for path, _ in processes]


def test_merged_shards_equal_one_full_run(archive: tuple[str, str], tmp_path: Path) -> None:
    endpoint, bucket = archive
    code, full = verify_in_bucket(endpoint, bucket, "--region", "us-east-1", "--public-key", PUBLIC)
    assert code == 1
    tampered = key(*TAMPERED)
    assert {p["key"] for p in full["problems"]} == {tampered}

    paths = run_shards(endpoint, bucket, tmp_path)
    shards = [json.loads(p.read_text()) for p in paths]

    # Every unit is checked by exactly the shard the rule names; the long stream is split.
    units = [
        Unit(u["stream"], u["first_segment"], u["last_segment"])
        for s in shards
        for u in s["shard"]["units"]
    ]
    assert len(units) == len(set(units)) == 4 + 1 + 1 + 1
    for s in shards:
        assert (s["shard"]["index"], s["shard"]["count"]) in {(k, N) for k in range(1, N + 1)}
        for u in s["shard"]["units"]:
            unit = Unit(u["stream"], u["first_segment"], u["last_segment"])
            assert owner(unit, N) == s["shard"]["index"]
    big_owners = {
        s["shard"]["index"] for s in shards for u in s["shard"]["units"] if u["stream"] == "big-1"
    }
    assert len(big_owners) >= 2
    assert sum(s["segments"] for s in shards) == full["segments"]
    finders = [s["shard"]["index"] for s in shards if s["problems"]]
    assert len(finders) == 1
    assert all(p["key"] == tampered for s in shards for p in s["problems"])

    merged_run = run_cli("report", "merge", *paths, "--json")
    assert merged_run.returncode == 1, merged_run.stderr
    merged = json.loads(merged_run.stdout)
    for member in ("ok", "streams", "segments", "events", "source", "prefix"):
        assert merged[member] == full[member], member
    assert problem_set(merged) == problem_set(full)
    assert merged["stream_summaries"] == full["stream_summaries"]
    assert merged["merged_shards"] == N

    text = run_cli("report", "merge", *reversed(paths))
    assert text.returncode == 1
    assert "FAILED (1 problem(s))" in text.stdout
    assert "merged from 3 shard report(s)" in text.stdout


def test_merge_refuses_an_incomplete_or_foreign_set(
    archive: tuple[str, str], tmp_path: Path
) -> None:
    endpoint, bucket = archive
    paths = run_shards(endpoint, bucket, tmp_path)
    full = tmp_path / "full.json"
    full.write_text(
        run_cli(*shard_args(endpoint, bucket, 1)[:-6], "--json", "--no-progress").stdout
    )
    cases = {
        "missing": (paths[:2], "1 of 3 shard reports missing"),
        "duplicate": ([*paths, paths[0]], "given twice"),
        "not a shard report": ([*paths, full], "not a shard report"),
    }
    for name, (given, message) in cases.items():
        result = run_cli("report", "merge", *given)
        assert result.returncode == 2, name
        assert message in result.stderr, (name, result.stderr)
        assert result.stdout == ""
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--state", "state.json"), "--shard cannot be used with --state"),
        (("--state", "state.json", "--watch", "5"), "--shard cannot be used with --watch"),
        (("--since", "2026-01-01T00:00:00Z"), "--shard cannot be used with --since"),
    ],
)
def test_shard_refuses_runs_that_need_the_whole_archive(
    archive: tuple[str, str], tmp_path: Path, extra: tuple[str, ...], message: str
) -> None:
    endpoint, bucket = archive
    args = [a if a != "state.json" else str(tmp_path / a) for a in extra]
    result = run_cli(*shard_args(endpoint, bucket, 1), *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "state.json").exists()


def test_a_link_broken_into_a_range_is_found_by_that_range_s_shard(
    locked_bucket: tuple[str, str], tmp_path: Path
) -> None:
    """Segment 3 opens the second range of "big-1" (units of 3): a key holder
    re-signs it with another ``prev_seal_hash``. Only the shard of range 3..5
    can see that link (it reads the seal of segment 2 at its edge); the merged
    report must still say what one full run says."""
    endpoint, bucket = locked_bucket
    big = build_stream(None, "big-1", segments=9, per_segment=2)
    forged = forge(big[3], fixed_signer(), prev_seal_hash="ab" * 32)
    big[3] = dataclasses.replace(big[3], data=forged)
    upload(endpoint, bucket, big)
    upload(endpoint, bucket, build_stream(None, "app-2", segments=2))

    code, full = verify_in_bucket(endpoint, bucket, "--region", "us-east-1", "--public-key", PUBLIC)
    assert code == 1
    assert ("chain_broken", key("big-1", 3)) in {(p["kind"], p["key"]) for p in full["problems"]}

    shards = [json.loads(p.read_text()) for p in run_shards(endpoint, bucket, tmp_path)]
    edge = Unit("big-1", 3, 5)
    (finder,) = [
        s
        for s in shards
        if any(p["kind"] == "chain_broken" and p["key"] == key("big-1", 3) for p in s["problems"])
    ]
    assert finder["shard"]["index"] == owner(edge, N)
    assert {"stream": "big-1", "first_segment": 3, "last_segment": 5} in [
        {k: u[k] for k in ("stream", "first_segment", "last_segment")}
        for u in finder["shard"]["units"]
    ]
    merged_run = run_cli("report", "merge", *tmp_path.glob("shard-*.json"), "--json")
    assert merged_run.returncode == 1, merged_run.stderr
    merged = json.loads(merged_run.stdout)
    assert problem_set(merged) == problem_set(full)
    assert merged["stream_summaries"] == full["stream_summaries"]
