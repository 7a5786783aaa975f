"""checkov over terraform/ (module through the complete example), offline, once per module.

checkov runs from its own venv (see checkov_env.py), created on first use.
"""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import pytest

from tests.terraform.bucket_settings import TERRAFORM_DIR
from tests.terraform.checkov_env import ensure_checkov, offline_env

# The module and example hold ~50 resources and pass a little over 200 checks; a run that
# passes far fewer did not see the module (e.g. it could not resolve the module call).
MIN_PASSED = 150

_SKIP_COMMENT = re.compile(r"#\s*checkov:skip=(?P<id>[A-Z0-9_]+)(?::(?P<reason>.*))?")


@pytest.fixture(scope="module")
def checkov_results() -> dict[str, Any]:
    checkov = ensure_checkov()
    completed = subprocess.run(
        [
            str(checkov),
            "--directory",
            str(TERRAFORM_DIR),
            "--framework",
            "terraform",
            "--skip-download",
            "--output",
            "json",
            "--compact",
        ],
        capture_output=True,
        text=True,
        env=offline_env(),
        timeout=300,
        check=False,
    )
    # 0: no failed check, 1: failed checks; anything else is checkov itself failing.
    assert completed.returncode in (0, 1), completed.stderr
    report = json.loads(completed.stdout)
    (terraform,) = (
        [r for r in report if r["check_type"] == "terraform"]
        if isinstance(report, list)
        else [report]
    )
    return terraform


def test_no_failed_checks(checkov_results: dict[str, Any]) -> None:
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for c in checkov_results["results"]["failed_checks"]
    ]
    assert failed == []
    assert checkov_results["summary"]["parsing_errors"] == 0


def test_checks_really_ran(checkov_results: dict[str, Any]) -> None:
    summary = checkov_results["summary"]
    assert summary["passed"] >= MIN_PASSED, summary
    resources = {c["resource"] for c in checkov_results["results"]["passed_checks"]}
    # Resources of the module, seen through the example's module call, and of both
    # locked-bucket calls inside it.
    assert "module.archive.module.archive_bucket.aws_s3_bucket.this" in resources
    assert "module.archive.module.replica_bucket.aws_s3_bucket.this" in resources
    assert "module.archive.aws_kms_key.signing" in resources


def test_every_skip_carries_a_reason(checkov_results: dict[str, Any]) -> None:
    skipped = checkov_results["results"]["skipped_checks"]
    assert skipped, "expected the documented skips (see terraform/README.md)"
    for check in skipped:
        reason = check["check_result"].get("suppress_comment", "")
        assert len(reason) >= 20, check


def test_skip_comments_in_source_are_well_formed() -> None:
    comments = [
        (path.name, match)
        for path in TERRAFORM_DIR.rglob("*.tf")
        for match in _SKIP_COMMENT.finditer(path.read_text())
    ]
    assert comments
    for name, match in comments:
        assert re.fullmatch(r"CKV2?_AWS_\d+", match["id"]), (name, match.group(0))
        reason = (match["reason"] or "").strip()
        assert len(reason) >= 20, (name, match.group(0))
