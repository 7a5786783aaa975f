"""The bucket-settings seam: BucketSettings in base, and the three Object Lock rules in one place."""

from __future__ import annotations

from dataclasses import replace

import pytest

from audit_archiver.storage import s3
from audit_archiver.storage.base import BucketSettings, BucketSettingsSource
from audit_archiver.verify.bucket_check import check_bucket, object_lock_problems
from tests.memory_store import MemoryStore

LOCKED = BucketSettings(
    object_lock_enabled=True,
    default_retention_mode="COMPLIANCE",
    default_retention_days=400,
    versioning_status="Enabled",
    encryption_algorithm="aws:kms",
    kms_key_id=None,
    bucket_key_enabled=True,
    public_access_block={},
    bucket_policy=None,
    ownership_controls=None,
)


def test_s3_module_still_exports_bucket_settings() -> None:
    assert s3.BucketSettings is BucketSettings


def test_stores_with_settings_are_sources() -> None:
    sources: list[BucketSettingsSource] = [MemoryStore(locked=True)]
    assert [object_lock_problems(source.bucket_settings()) for source in sources] == [[]]


def test_a_locked_bucket_breaks_no_rule() -> None:
    assert object_lock_problems(LOCKED) == []


def test_every_rule_broken_gives_the_verify_report_texts() -> None:
    # The texts verify has printed since 1.0 (public interface), written out by hand.
    plain = replace(
        LOCKED, object_lock_enabled=False, default_retention_mode=None, versioning_status=None
    )
    assert [tuple(problem) for problem in object_lock_problems(plain)] == [
        (
            "bucket_object_lock_disabled",
            "Object Lock is not enabled: segments can be deleted",
            "Enabled",
            "disabled",
        ),
        ("bucket_versioning_disabled", "versioning is not enabled", "Enabled", "None"),
        ("bucket_default_retention", "default retention is not COMPLIANCE", "COMPLIANCE", "None"),
    ]


@pytest.mark.parametrize(
    ("change", "kind", "found", "check"),
    [
        (
            {"versioning_status": "Suspended"},
            "bucket_versioning_disabled",
            "Suspended",
            "versioning",
        ),
        (
            {"default_retention_mode": "GOVERNANCE"},
            "bucket_default_retention",
            "GOVERNANCE",
            "default-retention-mode",
        ),
        ({"object_lock_enabled": False}, "bucket_object_lock_disabled", "disabled", "object-lock"),
    ],
)
def test_one_rule_broken_fails_the_same_bucket_check(
    change: dict[str, object], kind: str, found: str, check: str
) -> None:
    settings = replace(LOCKED, **change)  # type: ignore[arg-type]
    assert [(p.kind, p.found) for p in object_lock_problems(settings)] == [(kind, found)]
    failed = [r.name for r in check_bucket(settings, 1) if not r.ok]
    assert check in failed
    assert {r.name for r in check_bucket(LOCKED, 1) if not r.ok}.isdisjoint(
        {"versioning", "default-retention-mode", "object-lock"}
    )
