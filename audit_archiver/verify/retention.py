"""Retention checks of one stored segment version (what Object Lock promises).

A segment version must be locked in COMPLIANCE mode (GOVERNANCE can be
bypassed by anyone with ``s3:BypassGovernanceRetention``) until at least
``sealed_at + min_days`` (to the second: S3 keeps retain-until dates to the
second). ``min_days`` is the verifier's
``--min-retention-days`` or, when not given, the retention the writer recorded
in the seal, or 1 day. A legal hold is reported as a notice.

A required retain-until date beyond datetime's range (after year 9999) cannot
be met by any lock: ``retention_too_short``, never an exception.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from audit_archiver.core.encoding import parse_rfc3339
from audit_archiver.core.seal import Seal
from audit_archiver.storage.base import ObjectInfo
from audit_archiver.verify.problems import Notice, Problem

__all__ = ["check_retention"]


def check_retention(
    key: str, stream: str, seal: Seal | None, info: ObjectInfo, min_days: int | None
) -> tuple[list[Problem], list[Notice]]:
    """Return the retention problems and notices of one segment version."""
    problems: list[Problem] = []
    notices: list[Notice] = []
    version = f" (version {info.version_id})" if info.version_id else ""
    if info.legal_hold:
        notices.append(Notice("legal_hold", key, f"legal hold is ON{version}"))
    mode = info.retention_mode
    if mode is None or info.retain_until is None:
        problems.append(
            Problem(
                "retention_missing",
                key,
                f"no Object Lock retention{version}",
                stream=stream,
                expected="COMPLIANCE",
                found="none",
            )
        )
        return problems, notices
    if mode != "COMPLIANCE":
        problems.append(
            Problem(
                "retention_governance",
                key,
                f"locked in {mode} mode, which can be bypassed{version}",
                stream=stream,
                expected="COMPLIANCE",
                found=mode,
            )
        )
    if seal is None:
        return problems, notices
    days = min_days if min_days is not None else (seal.retention_days or 1)
    required = _required_until(seal.sealed_at, days)
    if required is None or info.retain_until < required:
        problems.append(
            Problem(
                "retention_too_short",
                key,
                f"retained until {info.retain_until.isoformat()}, less than {days} day(s) after"
                f" sealing{version}",
                stream=stream,
                expected=f">= {required.isoformat()}"
                if required is not None
                else f">= {seal.sealed_at} + {days} days (after year 9999)",
                found=info.retain_until.isoformat(),
            )
        )
    return problems, notices


def _required_until(sealed_at: str, days: int) -> datetime | None:
    """``sealed_at + days`` to the second, or None when no datetime can hold it."""
    try:
        return (parse_rfc3339(sealed_at) + timedelta(days=days)).replace(microsecond=0)
    except (OverflowError, ValueError):
        return None
