"""Scenarios for the problem kinds a local folder cannot produce, each with its verdict by hand.

``SCENARIOS`` maps a name to a :class:`Scenario`: a function that builds the
situation against moto's S3 server (or runs verify twice with ``--state``) and
returns the real CLI's verdict, and the exact ``(kind, key)`` list it must
give. ``tests/unit/verify/test_kinds_covered.py`` runs them: together with the
test vectors, every kind of ``docs/FORMAT.md`` section 9 must come out of a run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from tests.adversarial import kit
from tests.adversarial.archives import billing, full, rel, services_bucket, services_dir, web
from tests.adversarial.kit import KEY_A, KEY_B, RETAIN
from tests.helpers import BASE_TIME
from tests.s3server import (
    create_plain_bucket,
    moto_s3_backend,
    overwrite_stored_bytes,
    s3_client,
    unique_bucket_name,
)


@dataclass(frozen=True)
class Scenario:
    """A situation, and the problems verify must report for it (sorted (kind, key))."""

    run: Callable[[str, Path], kit.Verdict]
    problems: list[tuple[str, str]]


def _keys(tmp: Path) -> list[str | Path]:
    keys = kit.write_keys(tmp / "keys")
    return kit.keys_args(keys["a"], keys["b"])


def _in_bucket(endpoint: str, tmp: Path, attack: Callable[[str], None], *extra: str) -> kit.Verdict:
    name = services_bucket(endpoint)
    attack(name)
    return kit.verify(*kit.bucket(endpoint, name, *_keys(tmp), *extra))


def _after_state(
    endpoint: str, tmp: Path, attack: Callable[[str], None], *extra: str
) -> kit.Verdict:
    """A clean --state run, the attack, then the run whose verdict counts."""
    name = services_bucket(endpoint)
    args = [*_keys(tmp), "--state", tmp / "state.json", *extra]
    first = kit.verify(*kit.bucket(endpoint, name, *args))
    assert first.code == 0, first.stdout
    attack(name)
    return kit.verify(*kit.bucket(endpoint, name, *args))


def extra_version(endpoint: str, tmp: Path) -> kit.Verdict:
    def attack(name: str) -> None:
        forged = kit.stream("billing", KEY_B, 3)[1].data
        s3_client(endpoint).put_object(
            Bucket=name, Key=full("billing", 1), Body=forged, ChecksumAlgorithm="SHA256"
        )

    return _in_bucket(endpoint, tmp, attack)


def delete_marker(endpoint: str, tmp: Path) -> kit.Verdict:
    return _in_bucket(
        endpoint,
        tmp,
        lambda name: s3_client(endpoint).delete_object(Bucket=name, Key=full("web", 0)),
    )


def checksum_mismatch(endpoint: str, tmp: Path) -> kit.Verdict:
    def attack(name: str) -> None:
        key = full("billing", 2)
        head = s3_client(endpoint).head_object(Bucket=name, Key=key)
        overwrite_stored_bytes(name, key, head["VersionId"], b"forged" * 100)

    return _in_bucket(endpoint, tmp, attack)


def plain_bucket(endpoint: str, tmp: Path) -> kit.Verdict:
    client = s3_client(endpoint)
    name = create_plain_bucket(client, unique_bucket_name("plain"))
    for segment in billing()[:2]:
        client.put_object(Bucket=name, Key=segment.key, Body=segment.data)
    return kit.verify(*kit.bucket(endpoint, name, *_keys(tmp)))


def weak_retention(endpoint: str, tmp: Path) -> kit.Verdict:
    from tests.s3server import create_locked_bucket

    client = s3_client(endpoint)
    name = create_locked_bucket(client, unique_bucket_name("weak"))
    first, second, third = billing()
    kit.upload(endpoint, name, [first])
    client.put_object(
        Bucket=name,
        Key=second.key,
        Body=second.data,
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=RETAIN,
        ChecksumAlgorithm="SHA256",
    )
    client.put_object(
        Bucket=name,
        Key=third.key,
        Body=third.data,
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=BASE_TIME + timedelta(hours=1),
        ChecksumAlgorithm="SHA256",
    )
    return kit.verify(*kit.bucket(endpoint, name, *_keys(tmp), "--min-retention-days", "2"))


def truncated(endpoint: str, tmp: Path) -> kit.Verdict:
    def attack(name: str) -> None:
        moto_s3_backend().buckets[name].keys.pop(full("billing", 2))

    return _after_state(endpoint, tmp, attack)


def history_rewritten(endpoint: str, tmp: Path) -> kit.Verdict:
    def attack(name: str) -> None:
        moto_s3_backend().buckets[name].keys.pop(full("web", 1))
        forged = kit.stream("web", KEY_B, 2, per_segment=5, retention_days=7)[1]
        kit.upload(endpoint, name, [forged])

    return _after_state(endpoint, tmp, attack)


def stream_gone(endpoint: str, tmp: Path) -> kit.Verdict:
    def attack(name: str) -> None:
        for n in range(2):
            moto_s3_backend().buckets[name].keys.pop(full("web", n))

    return _after_state(endpoint, tmp, attack)


def stale(endpoint: str, tmp: Path) -> kit.Verdict:
    return _in_bucket(endpoint, tmp, lambda name: None, "--max-age", "3600")


def key_changed(endpoint: str, tmp: Path) -> kit.Verdict:
    """Two --public-key and --state: web is suddenly signed by billing's key."""
    root = services_dir(tmp / "archive")
    args = [*_keys(tmp), "--state", tmp / "state.json"]
    assert kit.verify(*kit.local(root, *args)).code == 0
    kit.write_local(root, kit.extend("web", web(), KEY_A, per_segment=5))
    return kit.verify(*kit.local(root, *args))


SCENARIOS: dict[str, Scenario] = {
    "new-version-over-a-segment": Scenario(extra_version, [("extra_version", full("billing", 1))]),
    "delete-marker": Scenario(delete_marker, [("delete_marker", full("web", 0))]),
    "bytes-changed-behind-s3": Scenario(
        checksum_mismatch, [("checksum_mismatch", full("billing", 2))]
    ),
    # Keys "<bucket>" stand for the bucket's name, which is random per run.
    "plain-bucket": Scenario(
        plain_bucket,
        [
            ("bucket_default_retention", "<bucket>"),
            ("bucket_object_lock_disabled", "<bucket>"),
            ("bucket_versioning_disabled", "<bucket>"),
            ("retention_missing", full("billing", 0)),
            ("retention_missing", full("billing", 1)),
        ],
    ),
    "governance-and-short-retention": Scenario(
        weak_retention,
        [
            ("retention_governance", full("billing", 1)),
            ("retention_too_short", full("billing", 2)),
        ],
    ),
    "tail-removed-after-state": Scenario(truncated, [("truncated", full("billing", 2))]),
    "head-rewritten-after-state": Scenario(
        history_rewritten, [("history_rewritten", full("web", 1))]
    ),
    "stream-gone-after-state": Scenario(stream_gone, [("stream_missing", "web")]),
    "stale-streams": Scenario(stale, [("stale_stream", "billing"), ("stale_stream", "web")]),
    "key-changed-after-state": Scenario(key_changed, [("key_changed", rel("web", 2))]),
}


def found_problems(verdict: kit.Verdict) -> list[tuple[str, str]]:
    """The verdict's (kind, key) pairs, bucket names replaced by ``<bucket>``."""
    return sorted(
        (kind, "<bucket>" if kind.startswith("bucket_") else key) for kind, key in verdict.problems
    )
