"""``bucket check``: is a live bucket configured the way an audit archive needs?

Pure evaluation of :class:`~audit_archiver.storage.base.BucketSettings`; each
check names the setting, says whether it passed and what was found, so a team
can run it right after provisioning (see terraform/).

The three Object Lock rules that ``verify --bucket`` also enforces (Object
Lock enabled, versioning Enabled, default retention COMPLIANCE) live in
:func:`object_lock_problems` only; :func:`check_bucket` derives its verdicts
for them from it, and the verifier reports its tuples as problems.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from audit_archiver.storage.base import BucketSettings

__all__ = ["CheckResult", "SettingProblem", "check_bucket", "object_lock_problems", "render_checks"]

OBJECT_LOCK_DISABLED = "bucket_object_lock_disabled"
VERSIONING_DISABLED = "bucket_versioning_disabled"
DEFAULT_RETENTION = "bucket_default_retention"


class SettingProblem(NamedTuple):
    """One Object Lock rule the bucket breaks, as the verify report states it."""

    kind: str
    detail: str
    expected: str
    found: str


def object_lock_problems(settings: BucketSettings) -> list[SettingProblem]:
    """The Object Lock rules ``settings`` break: (kind, detail, expected, found) each.

    An archive needs all three: Object Lock enabled (segments cannot be
    deleted), versioning Enabled (an overwrite leaves the original version),
    and a COMPLIANCE default retention (no one, not even root, can shorten it).
    The kinds and texts are part of the verify report's interface.
    """
    problems = []
    if not settings.object_lock_enabled:
        problems.append(
            SettingProblem(
                OBJECT_LOCK_DISABLED,
                "Object Lock is not enabled: segments can be deleted",
                "Enabled",
                "disabled",
            )
        )
    if settings.versioning_status != "Enabled":
        problems.append(
            SettingProblem(
                VERSIONING_DISABLED,
                "versioning is not enabled",
                "Enabled",
                str(settings.versioning_status),
            )
        )
    if settings.default_retention_mode != "COMPLIANCE":
        problems.append(
            SettingProblem(
                DEFAULT_RETENTION,
                "default retention is not COMPLIANCE",
                "COMPLIANCE",
                str(settings.default_retention_mode),
            )
        )
    return problems


@dataclass(frozen=True)
class CheckResult:
    """One named check of the bucket's configuration."""

    name: str
    ok: bool
    detail: str


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _denies_insecure_transport(policy: dict[str, Any] | None) -> bool:
    for statement in _as_list((policy or {}).get("Statement", [])):
        if not isinstance(statement, dict) or statement.get("Effect") != "Deny":
            continue
        principal = statement.get("Principal")
        everyone = principal == "*" or (
            isinstance(principal, dict) and "*" in _as_list(principal.get("AWS"))
        )
        actions = _as_list(statement.get("Action", []))
        condition = statement.get("Condition", {}).get("Bool", {})
        values = _as_list(condition.get("aws:SecureTransport", []))
        insecure = any(str(value).lower() == "false" for value in values)
        if everyone and insecure and ({"s3:*", "*"} & set(actions)):
            return True
    return False


def check_bucket(settings: BucketSettings, min_retention_days: int) -> list[CheckResult]:
    """Evaluate every check against the bucket's settings."""
    days = settings.default_retention_days
    blocks = settings.public_access_block
    tls_only = _denies_insecure_transport(settings.bucket_policy)
    broken = {problem.kind for problem in object_lock_problems(settings)}
    return [
        CheckResult(
            "object-lock",
            OBJECT_LOCK_DISABLED not in broken,
            "Object Lock enabled"
            if OBJECT_LOCK_DISABLED not in broken
            else "Object Lock is not enabled (it can only be set when the bucket is created)",
        ),
        CheckResult(
            "default-retention-mode",
            DEFAULT_RETENTION not in broken,
            f"default retention mode: {settings.default_retention_mode or 'none'}"
            " (need COMPLIANCE)",
        ),
        CheckResult(
            "default-retention-days",
            days is not None and days >= min_retention_days,
            f"default retention: {days if days is not None else 'none'} day(s)"
            f" (need >= {min_retention_days})",
        ),
        CheckResult(
            "versioning",
            VERSIONING_DISABLED not in broken,
            f"versioning: {settings.versioning_status or 'never enabled'}",
        ),
        CheckResult(
            "default-encryption",
            settings.encryption_algorithm in ("aws:kms", "aws:kms:dsse", "AES256"),
            f"default encryption: {settings.encryption_algorithm or 'none'}"
            + (f" with key {settings.kms_key_id}" if settings.kms_key_id else ""),
        ),
        CheckResult(
            "public-access-block",
            bool(blocks) and all(blocks.values()),
            "all four Block Public Access settings on"
            if blocks and all(blocks.values())
            else "off: " + ", ".join(k for k, v in sorted(blocks.items()) if not v),
        ),
        CheckResult(
            "tls-only-policy",
            tls_only,
            "bucket policy denies requests without TLS (aws:SecureTransport)"
            if tls_only
            else "no bucket policy statement denies non-TLS requests",
        ),
    ]


def render_checks(bucket: str, results: list[CheckResult]) -> str:
    """One line per check, then a verdict."""
    lines = [f"bucket check of {bucket}:"]
    lines += [f"  [{'PASS' if r.ok else 'FAIL'}] {r.name}: {r.detail}" for r in results]
    failed = [r.name for r in results if not r.ok]
    lines.append("all checks passed" if not failed else f"FAILED: {', '.join(failed)}")
    return "\n".join(lines) + "\n"
