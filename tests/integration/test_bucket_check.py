"""``bucket check`` against moto's S3 with the settings terraform/ declares, then each
setting broken in turn."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.cli import run_cli
from tests.s3server import create_plain_bucket, s3_client, unique_bucket_name
from tests.terraform.bucket_settings import apply_module_settings


def check(endpoint: str, bucket: str, *args: str) -> tuple[int, dict[str, Any], str]:
    """Run ``bucket check`` with the text and the JSON reporter; both must agree."""
    region = ("--region", "us-east-1")
    command = ("bucket", "check", "--bucket", bucket, "--endpoint-url", endpoint, *region, *args)
    result = run_cli(*command)
    as_json = run_cli(*command, "--json")
    assert result.returncode == as_json.returncode
    return result.returncode, json.loads(as_json.stdout), result.stdout


def failed(report: dict[str, Any]) -> list[str]:
    return [c["name"] for c in report["checks"] if not c["ok"]]


@pytest.fixture
def provisioned(moto_endpoint: str) -> tuple[str, str, Any]:
    client = s3_client(moto_endpoint)
    bucket = unique_bucket_name("tf")
    apply_module_settings(client, bucket, 30)
    return moto_endpoint, bucket, client


def test_module_settings_pass(provisioned: tuple[str, str, Any]) -> None:
    endpoint, bucket, _ = provisioned
    code, report, text = check(endpoint, bucket, "--min-retention-days", "30")
    assert code == 0, text
    assert report["ok"] is True
    assert len(report["checks"]) == 7
    assert "all checks passed" in text
    code, report, _ = check(endpoint, bucket, "--min-retention-days", "31")
    assert report["ok"] is False
    assert (code, failed(report)) == (1, ["default-retention-days"])


BREAKERS: dict[str, Callable[[Any, str], None]] = {
    "default-retention-mode": lambda c, b: c.put_object_lock_configuration(
        Bucket=b,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 30}},
        },
    ),
    "versioning": lambda c, b: c.put_bucket_versioning(
        Bucket=b, VersioningConfiguration={"Status": "Suspended"}
    ),
    "default-encryption": lambda c, b: c.delete_bucket_encryption(Bucket=b),
    "public-access-block": lambda c, b: c.put_public_access_block(
        Bucket=b,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": False,
            "RestrictPublicBuckets": True,
        },
    ),
    "tls-only-policy": lambda c, b: c.delete_bucket_policy(Bucket=b),
}


@pytest.mark.parametrize("setting", sorted(BREAKERS))
def test_each_broken_setting_is_named(provisioned: tuple[str, str, Any], setting: str) -> None:
    endpoint, bucket, client = provisioned
    BREAKERS[setting](client, bucket)
    code, report, text = check(endpoint, bucket, "--min-retention-days", "30")
    assert code == 1
    assert failed(report) == [setting]
    assert f"[FAIL] {setting}" in text


def test_bucket_without_object_lock(moto_endpoint: str) -> None:
    bucket = create_plain_bucket(s3_client(moto_endpoint), unique_bucket_name("nolock"))
    code, report, _ = check(moto_endpoint, bucket)
    assert code == 1
    assert failed(report) == [
        "object-lock",
        "default-retention-mode",
        "default-retention-days",
        "versioning",
        "default-encryption",
        "public-access-block",
        "tls-only-policy",
    ]
