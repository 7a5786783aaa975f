"""apply_module_settings gives a moto bucket the settings the module declares."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tests.terraform.bucket_settings import (
    FAKE_KMS_KEY_ARN,
    apply_module_settings,
    module_settings,
    render_statement,
)

BUCKET = "audit-settings-test"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield boto3.client("s3", region_name="eu-central-1")


def test_settings_read_back(s3: Any) -> None:
    apply_module_settings(s3, BUCKET, retention_days=3)

    lock = s3.get_object_lock_configuration(Bucket=BUCKET)["ObjectLockConfiguration"]
    assert lock["ObjectLockEnabled"] == "Enabled"
    retention = lock["Rule"]["DefaultRetention"]
    # moto also returns "Years": 0.
    assert (retention["Mode"], retention["Days"], retention.get("Years", 0)) == ("COMPLIANCE", 3, 0)
    assert s3.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"
    (rule,) = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": FAKE_KMS_KEY_ARN,
    }
    assert rule["BucketKeyEnabled"] is True
    assert s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    (ownership,) = s3.get_bucket_ownership_controls(Bucket=BUCKET)["OwnershipControls"]["Rules"]
    assert ownership == {"ObjectOwnership": "BucketOwnerEnforced"}
    policy = json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])
    assert policy["Statement"] == [
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": ["s3:*"],
            "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": ["false"]}},
        }
    ]


def test_default_retention_comes_from_the_module(s3: Any) -> None:
    apply_module_settings(s3, BUCKET)

    lock = s3.get_object_lock_configuration(Bucket=BUCKET)["ObjectLockConfiguration"]
    days = lock["Rule"]["DefaultRetention"]["Days"]
    assert days == module_settings().default_retention_days == 365


def test_settings_come_from_the_hcl() -> None:
    settings = module_settings()
    assert settings.lock_mode == "COMPLIANCE"
    assert settings.public_access_block == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }


def test_render_statement_refuses_unknown_references() -> None:
    statement = module_settings().tls_deny_statement
    with pytest.raises(ValueError, match=r"aws_s3_bucket\.this\.arn"):
        render_statement(statement, {})
