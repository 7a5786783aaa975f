"""Structural checks of the archive-bucket module, from its HCL (no providers needed).

Each test states a property a security reviewer expects of the deployed buckets, keys and
policies, and finds it in the parsed configuration.
"""

from __future__ import annotations

import fnmatch
import re
import textwrap
import tomllib
from typing import Any

import pytest

from audit_archiver._cli.agent import agent as agent_command
from tests.terraform.bucket_settings import TerraformConfig

# Buckets whose objects are audit segments, and the KMS key each is encrypted with.
ARCHIVE_BUCKETS = {"archive": "sse", "replica": "replica_sse"}
LOG_BUCKETS = ("access_logs", "replica_access_logs")
BUCKET_POLICY_DOCUMENTS = {
    "archive": "archive_bucket",
    "replica": "replica_bucket",
    "access_logs": "access_logs",
    "replica_access_logs": "replica_access_logs",
}

# Condition keys the module may use, each listed in the AWS Service Authorization
# Reference (S3 and KMS keys) or among the IAM global condition keys (aws:*). A key not
# listed here is a typo or an invention: IAM ignores unknown keys silently.
KNOWN_CONDITION_KEYS = {
    "aws:PrincipalArn",
    "aws:SecureTransport",
    "aws:SourceAccount",
    "aws:SourceArn",
    "kms:SigningAlgorithm",
    "kms:ViaService",
    "s3:ObjectCreationOperation",
    "s3:if-none-match",
    "s3:object-lock-mode",
    "s3:object-lock-remaining-retention-days",
    "s3:prefix",
    "s3:x-amz-server-side-encryption",
    "s3:x-amz-server-side-encryption-aws-kms-key-id",
}

AUDITOR_READ_ONLY = re.compile(
    r"s3:(Get|List)[A-Za-z]+|kms:(GetPublicKey|Verify|Decrypt|DescribeKey)"
)

# The agent's TOML configuration keys: its long option names with '-' turned into '_'.
# The agent's real settings: what its TOML file accepts (the --config loader refuses others).
AGENT_CONFIG_KEYS = {p.name for p in agent_command.params if p.name and p.name != "config"}


def ref(expression: str) -> str:
    """How python-hcl2 renders a bare reference."""
    return "${" + expression + "}"


def one_block(body: dict[str, Any], name: str) -> dict[str, Any]:
    (block,) = body[name]
    return block


def statement(config: TerraformConfig, document: str, sid: str) -> dict[str, Any]:
    (found,) = [s for s in config.statements(document) if s.get("sid") == sid]
    return found


def conditions(stmt: dict[str, Any]) -> set[tuple[str, str, tuple[str, ...]]]:
    return {(c["test"], c["variable"], tuple(c["values"])) for c in stmt.get("condition", [])}


def dynamic_conditions(stmt: dict[str, Any]) -> list[dict[str, Any]]:
    return [d["condition"] for d in stmt.get("dynamic", []) if "condition" in d]


def all_buckets(config: TerraformConfig) -> set[str]:
    return set(config.resources_of_type("aws_s3_bucket"))


def test_bucket_inventory(module_config: TerraformConfig) -> None:
    assert all_buckets(module_config) == set(ARCHIVE_BUCKETS) | set(LOG_BUCKETS)


@pytest.mark.parametrize(
    "resource_type",
    [
        "aws_s3_bucket_versioning",
        "aws_s3_bucket_server_side_encryption_configuration",
        "aws_s3_bucket_public_access_block",
        "aws_s3_bucket_ownership_controls",
        "aws_s3_bucket_policy",
        "aws_s3_bucket_lifecycle_configuration",
    ],
)
def test_every_bucket_has_its_own_setting(
    module_config: TerraformConfig, resource_type: str
) -> None:
    settings = module_config.resources_of_type(resource_type)
    assert set(settings) == all_buckets(module_config)
    for name, body in settings.items():
        index = "[0]" if "count" in body else ""
        assert body["bucket"] == ref(f"aws_s3_bucket.{name}{index}.id")


def test_every_bucket_is_versioned(module_config: TerraformConfig) -> None:
    for body in module_config.resources_of_type("aws_s3_bucket_versioning").values():
        assert one_block(body, "versioning_configuration")["status"] == "Enabled"


def test_every_bucket_blocks_all_public_access(module_config: TerraformConfig) -> None:
    flags = (
        "block_public_acls",
        "block_public_policy",
        "ignore_public_acls",
        "restrict_public_buckets",
    )
    for body in module_config.resources_of_type("aws_s3_bucket_public_access_block").values():
        assert {flag: body.get(flag) for flag in flags} == dict.fromkeys(flags, True)


def test_every_bucket_disables_acls(module_config: TerraformConfig) -> None:
    for body in module_config.resources_of_type("aws_s3_bucket_ownership_controls").values():
        assert one_block(body, "rule")["object_ownership"] == "BucketOwnerEnforced"


@pytest.mark.parametrize("bucket", sorted(ARCHIVE_BUCKETS))
def test_archive_buckets_are_locked_in_compliance_mode(
    module_config: TerraformConfig, bucket: str
) -> None:
    assert module_config.resources[f"aws_s3_bucket.{bucket}"]["object_lock_enabled"] is True
    lock = module_config.resources[f"aws_s3_bucket_object_lock_configuration.{bucket}"]
    retention = one_block(one_block(lock, "rule"), "default_retention")
    assert retention == {"mode": "COMPLIANCE", "days": ref("var.retention_days")}


def test_log_buckets_have_no_object_lock(module_config: TerraformConfig) -> None:
    # S3 does not deliver access logs to a bucket with a default retention period.
    for bucket in LOG_BUCKETS:
        assert "object_lock_enabled" not in module_config.resources[f"aws_s3_bucket.{bucket}"]
    locked = set(module_config.resources_of_type("aws_s3_bucket_object_lock_configuration"))
    assert locked == set(ARCHIVE_BUCKETS)


@pytest.mark.parametrize(("bucket", "key"), sorted(ARCHIVE_BUCKETS.items()))
def test_archive_buckets_use_sse_kms_with_bucket_key(
    module_config: TerraformConfig, bucket: str, key: str
) -> None:
    sse = module_config.resources[f"aws_s3_bucket_server_side_encryption_configuration.{bucket}"]
    rule = one_block(sse, "rule")
    index = "[0]" if bucket == "replica" else ""
    assert one_block(rule, "apply_server_side_encryption_by_default") == {
        "sse_algorithm": "aws:kms",
        "kms_master_key_id": ref(f"aws_kms_key.{key}{index}.arn"),
    }
    assert rule["bucket_key_enabled"] is True
    kms_key = module_config.resources[f"aws_kms_key.{key}"]
    assert kms_key["enable_key_rotation"] is True
    assert "key_usage" not in kms_key  # symmetric ENCRYPT_DECRYPT, the default


def test_log_buckets_are_encrypted(module_config: TerraformConfig) -> None:
    for bucket in LOG_BUCKETS:
        sse = module_config.resources[
            f"aws_s3_bucket_server_side_encryption_configuration.{bucket}"
        ]
        default = one_block(one_block(sse, "rule"), "apply_server_side_encryption_by_default")
        assert default == {"sse_algorithm": "AES256"}


def test_archive_buckets_log_to_a_separate_bucket(module_config: TerraformConfig) -> None:
    logging = module_config.resources_of_type("aws_s3_bucket_logging")
    assert logging["archive"]["target_bucket"] == ref("aws_s3_bucket.access_logs.id")
    assert logging["replica"]["target_bucket"] == ref("aws_s3_bucket.replica_access_logs[0].id")
    assert set(logging) == set(ARCHIVE_BUCKETS)


@pytest.mark.parametrize(("bucket", "document"), sorted(BUCKET_POLICY_DOCUMENTS.items()))
def test_bucket_policies_deny_requests_without_tls(
    module_config: TerraformConfig, bucket: str, document: str
) -> None:
    policy = module_config.resources[f"aws_s3_bucket_policy.{bucket}"]
    index = "[0]" if "count" in policy else ""
    assert policy["policy"] == ref(f"data.aws_iam_policy_document.{document}{index}.json")
    tls = statement(module_config, document, "DenyInsecureTransport")
    arn = ref(f"aws_s3_bucket.{bucket}{index}.arn")
    assert tls["effect"] == "Deny"
    assert tls["actions"] == ["s3:*"]
    assert tls["principals"] == [{"type": "*", "identifiers": ["*"]}]
    assert sorted(tls["resources"]) == sorted([arn, f"{arn}/*"])
    assert conditions(tls) == {("Bool", "aws:SecureTransport", ("false",))}


@pytest.mark.parametrize("document", ["archive_bucket", "replica_bucket"])
def test_only_break_glass_may_delete_or_weaken(
    module_config: TerraformConfig, document: str
) -> None:
    deletion = statement(module_config, document, "DenyObjectDeletion")
    protection = statement(module_config, document, "DenyProtectionChanges")
    assert {"s3:DeleteObject", "s3:DeleteObjectVersion"} <= set(deletion["actions"])
    assert {
        "s3:BypassGovernanceRetention",
        "s3:DeleteBucketPolicy",
        "s3:PutBucketObjectLockConfiguration",
        "s3:PutBucketPolicy",
        "s3:PutBucketVersioning",
    } <= set(protection["actions"])
    for stmt in (deletion, protection):
        assert stmt["effect"] == "Deny"
        assert stmt["principals"] == [{"type": "*", "identifiers": ["*"]}]
        # No static condition: the Deny applies to everyone ...
        assert "condition" not in stmt
        # ... except the break-glass principal, when one is configured.
        (exemption,) = dynamic_conditions(stmt)
        assert exemption["for_each"] == ref("local.break_glass")
        assert exemption["content"] == [
            {
                "test": "ArnNotEquals",
                "variable": "aws:PrincipalArn",
                "values": [ref("condition.value")],
            }
        ]


def test_break_glass_local_is_empty_without_a_principal(module_config: TerraformConfig) -> None:
    assert module_config.locals["break_glass"] == ref(
        "var.break_glass_principal_arn == null ? [] : [var.break_glass_principal_arn]"
    )


def test_archive_policy_requires_conditional_writes(module_config: TerraformConfig) -> None:
    stmt = statement(module_config, "archive_bucket", "DenyUnconditionalWrites")
    assert stmt["effect"] == "Deny"
    assert stmt["actions"] == ["s3:PutObject"]
    assert conditions(stmt) == {
        ("Null", "s3:if-none-match", ("true",)),
        ("Bool", "s3:ObjectCreationOperation", ("true",)),
    }


def test_archive_policy_keeps_compliance_mode_and_retention(module_config: TerraformConfig) -> None:
    mode = statement(module_config, "archive_bucket", "DenyNonComplianceLockMode")
    assert conditions(mode) == {
        ("Null", "s3:object-lock-mode", ("false",)),
        ("StringNotEquals", "s3:object-lock-mode", ("COMPLIANCE",)),
    }
    short = statement(module_config, "archive_bucket", "DenyShortRetention")
    assert conditions(short) == {
        (
            "NumericLessThan",
            "s3:object-lock-remaining-retention-days",
            (ref("tostring(var.retention_days - 1)"),),
        )
    }
    for stmt in (mode, short):
        assert stmt["effect"] == "Deny"
        assert set(stmt["actions"]) == {"s3:PutObject", "s3:PutObjectRetention"}


def test_replica_refuses_direct_writes(module_config: TerraformConfig) -> None:
    stmt = statement(module_config, "replica_bucket", "DenyDirectWrites")
    assert stmt["effect"] == "Deny"
    assert "s3:PutObject" in stmt["actions"]


def test_condition_keys_exist(module_config: TerraformConfig) -> None:
    used = set()
    for address in module_config.data:
        if address.startswith("aws_iam_policy_document."):
            for stmt in module_config.statements(address.split(".", 1)[1]):
                used |= {c["variable"] for c in stmt.get("condition", [])}
                for dynamic in dynamic_conditions(stmt):
                    used |= {c["variable"] for c in dynamic["content"]}
    assert used
    assert used <= KNOWN_CONDITION_KEYS


def test_writer_policy_allows_only_what_the_agent_needs(module_config: TerraformConfig) -> None:
    allowed = {
        action
        for stmt in module_config.statements("writer")
        if stmt["effect"] == "Allow"
        for action in stmt["actions"]
    }
    assert allowed == {
        "s3:PutObject",
        "s3:PutObjectRetention",
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:ListBucket",
        "s3:ListBucketVersions",
        "s3:GetBucketObjectLockConfiguration",
        "kms:Sign",
        "kms:GetPublicKey",
        "kms:GenerateDataKey",
        "kms:Decrypt",
    }
    write = statement(module_config, "writer", "WriteSegments")
    assert write["resources"] == [ref("local.writer_objects_arn")]
    sign = statement(module_config, "writer", "SignSeals")
    assert sign["actions"] == ["kms:Sign"]
    assert sign["resources"] == [ref("aws_kms_key.signing.arn")]
    assert conditions(sign) == {("StringEquals", "kms:SigningAlgorithm", ("ECDSA_SHA_256",))}
    sse = statement(module_config, "writer", "UseBucketEncryptionKey")
    assert sse["resources"] == [ref("aws_kms_key.sse.arn")]


def test_writer_policy_explicitly_denies_destruction(module_config: TerraformConfig) -> None:
    deny = statement(module_config, "writer", "DenyDestructiveActions")
    assert deny["effect"] == "Deny"
    assert {
        "s3:DeleteObject*",
        "s3:BypassGovernanceRetention",
        "s3:PutBucketObjectLockConfiguration",
        "s3:PutBucketVersioning",
        "s3:PutBucketPolicy",
    } <= set(deny["actions"])
    arn = ref("aws_s3_bucket.archive.arn")
    assert sorted(deny["resources"]) == sorted([arn, f"{arn}/*"])


def test_auditor_policy_is_read_only(module_config: TerraformConfig) -> None:
    statements = module_config.statements("auditor")
    actions = {action for stmt in statements for action in stmt["actions"]}
    assert all(stmt["effect"] == "Allow" for stmt in statements)
    assert [a for a in actions if not AUDITOR_READ_ONLY.fullmatch(a)] == []
    # What the verifier and `bucket check` read.
    assert {
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:GetObjectRetention",
        "s3:GetObjectLegalHold",
        "s3:ListBucket",
        "s3:ListBucketVersions",
        "s3:GetBucketObjectLockConfiguration",
        "s3:GetBucketVersioning",
        "s3:GetEncryptionConfiguration",
        "s3:GetBucketPublicAccessBlock",
        "s3:GetBucketPolicy",
        "kms:GetPublicKey",
        "kms:Verify",
        "kms:Decrypt",
    } <= actions


def test_read_only_pattern_rejects_writes() -> None:
    for action in ("s3:PutObject", "s3:DeleteObject", "kms:Sign", "kms:GenerateDataKey", "s3:*"):
        assert not AUDITOR_READ_ONLY.fullmatch(action)


def test_signing_key_is_ecc_p256_for_signing(module_config: TerraformConfig) -> None:
    key = module_config.resources["aws_kms_key.signing"]
    assert key["key_usage"] == "SIGN_VERIFY"
    assert key["customer_master_key_spec"] == "ECC_NIST_P256"
    assert key["policy"] == ref("data.aws_iam_policy_document.signing_key.json")


def test_signing_key_policy_keeps_signing_to_writers(module_config: TerraformConfig) -> None:
    admin = statement(module_config, "signing_key", "KeyAdministration")
    assert admin["principals"] == [{"type": "AWS", "identifiers": [ref("local.root_arn")]}]
    # Delegating kms:Sign, kms:Verify or kms:CreateGrant to the account, even through a
    # wildcard, would let any IAM policy in it hand out signing.
    for action in ("kms:Sign", "kms:Verify", "kms:CreateGrant"):
        assert not [a for a in admin["actions"] if fnmatch.fnmatchcase(action, a)], action

    writer = statement(module_config, "signing_key", "WriterSign")
    assert writer["actions"] == ["kms:Sign"]
    assert conditions(writer) == {("StringEquals", "kms:SigningAlgorithm", ("ECDSA_SHA_256",))}
    auditor = statement(module_config, "signing_key", "AuditorVerify")
    assert set(auditor["actions"]) <= {"kms:GetPublicKey", "kms:Verify", "kms:DescribeKey"}
    signers = {
        s["sid"] for s in module_config.statements("signing_key") if "kms:Sign" in s["actions"]
    }
    assert signers == {"WriterSign"}


@pytest.mark.parametrize("bucket", sorted(ARCHIVE_BUCKETS))
def test_lifecycle_never_expires_locked_versions(
    module_config: TerraformConfig, bucket: str
) -> None:
    lifecycle = module_config.resources[f"aws_s3_bucket_lifecycle_configuration.{bucket}"]
    # The static rule checkov cannot see (see the CKV_AWS_300 skip): bucket-wide abort.
    (abort,) = lifecycle["rule"]
    assert abort["status"] == "Enabled"
    assert abort["filter"] == [{}]
    assert one_block(abort, "abort_incomplete_multipart_upload") == {"days_after_initiation": 7}
    # No rule expires current versions.
    dynamic_rules = [r for d in lifecycle["dynamic"] for r in d["rule"]["content"]]
    assert not any("expiration" in r for r in [abort, *dynamic_rules])
    (precondition,) = one_block(lifecycle, "lifecycle")["precondition"]
    assert ">= var.retention_days" in precondition["condition"]


def test_noncurrent_expiration_is_validated_against_retention(
    module_config: TerraformConfig,
) -> None:
    (validation,) = module_config.variables["noncurrent_version_expiration_days"]["validation"]
    assert validation["condition"] == ref(
        "var.noncurrent_version_expiration_days == null ? true : "
        "var.noncurrent_version_expiration_days >= var.retention_days"
    )


def test_retention_validation_rejects_zero(module_config: TerraformConfig) -> None:
    # Evaluated by Terraform itself in test_terraform_variables.py; here: it is declared.
    (validation,) = module_config.variables["retention_days"]["validation"]
    assert "var.retention_days > 0" in validation["condition"]


def test_replication(module_config: TerraformConfig) -> None:
    replication = module_config.resources["aws_s3_bucket_replication_configuration.archive"]
    assert replication["count"] == ref("local.replica_count")
    rule = one_block(replication, "rule")
    assert rule["status"] == "Enabled"
    assert rule["filter"] == [{}]
    assert one_block(rule, "delete_marker_replication") == {"status": "Disabled"}
    criteria = one_block(rule, "source_selection_criteria")
    assert one_block(criteria, "sse_kms_encrypted_objects") == {"status": "Enabled"}
    assert one_block(criteria, "replica_modifications") == {"status": "Enabled"}
    destination = one_block(rule, "destination")
    assert destination["bucket"] == ref("aws_s3_bucket.replica[0].arn")
    assert one_block(destination, "encryption_configuration") == {
        "replica_kms_key_id": ref("aws_kms_key.replica_sse[0].arn")
    }


def test_replica_resources_use_the_replica_provider(module_config: TerraformConfig) -> None:
    regional = [
        address
        for address, body in module_config.resources.items()
        if address.split(".", 1)[1].startswith("replica") and not address.startswith("aws_iam_")
    ]
    assert len(regional) >= 16
    for address in regional:
        body = module_config.resources[address]
        assert body["provider"] == ref("aws.replica"), address
        assert body["count"] == ref("local.replica_count"), address
    assert module_config.locals["replica_count"] == ref("local.replicate ? 1 : 0")


def test_provider_requirements(module_config: TerraformConfig) -> None:
    (terraform,) = module_config.terraform
    (providers,) = terraform["required_providers"]
    aws = providers["aws"]
    assert aws["source"] == "hashicorp/aws"
    assert aws["version"] == ">= 5.0"
    assert aws["configuration_aliases"] == [ref("aws.replica")]


def test_agent_config_snippet_uses_agent_keys(module_config: TerraformConfig) -> None:
    heredoc = module_config.outputs["agent_config_toml"]["value"]
    assert heredoc.startswith("<<-EOT\n")
    body = textwrap.dedent(heredoc.removeprefix("<<-EOT\n").rsplit("\n", 1)[0])
    body = body.replace(ref("var.retention_days"), "1")
    parsed = tomllib.loads(re.sub(r"\$\{[^}]*\}", "x", body))
    assert set(parsed) == {"bucket", "prefix", "region", "retention_days", "kms_key_id"}
    assert set(parsed) <= AGENT_CONFIG_KEYS
    assert parsed["retention_days"] == 1


def test_outputs(module_config: TerraformConfig) -> None:
    assert {
        "bucket_name",
        "bucket_arn",
        "sse_kms_key_arn",
        "signing_kms_key_arn",
        "writer_policy_arn",
        "auditor_policy_arn",
        "writer_role_arn",
        "auditor_role_arn",
        "agent_config_toml",
    } <= set(module_config.outputs)


def test_example_uses_a_short_retention_and_the_replica_provider(
    example_config: TerraformConfig,
) -> None:
    module = example_config.modules["archive"]
    assert module["source"] == "../../modules/archive-bucket"
    assert module["retention_days"] == 1
    assert module["providers"] == {"aws": "aws", ref("aws.replica"): ref("aws.replica")}
    aliases = {p["aws"].get("alias") for p in example_config.providers}
    assert aliases == {None, "replica"}
