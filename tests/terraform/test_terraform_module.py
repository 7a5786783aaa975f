"""Structural checks of the archive-bucket module, from its HCL (no providers needed).

Each test states a property a security reviewer expects of the deployed buckets, keys and
policies, and finds it in the parsed configuration. Every bucket comes from the internal
locked-bucket module (``bucket_config``), which archive-bucket (``module_config``) calls
once for the archive and once, through ``aws.replica``, for the replica.
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

# The archive-bucket module's calls of the locked-bucket module: the Object Lock bucket
# each creates, and the access-log bucket next to it.
BUCKET_MODULES = {
    "archive_bucket": ("${var.bucket_name}", "${var.bucket_name}-access-logs"),
    "replica_bucket": ("${var.bucket_name}-replica", "${var.bucket_name}-replica-logs"),
}
LOCKED_BUCKET_SOURCE = "./modules/locked-bucket"
# In the locked-bucket module: the Object Lock bucket, and the access-log bucket.
LOCKED, LOG = "this", "access_logs"
BUCKET_POLICY_DOCUMENTS = {LOCKED: "this", LOG: "access_logs"}

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


def bucket_modules(config: TerraformConfig) -> dict[str, dict[str, Any]]:
    """The module calls of the locked-bucket module, by name."""
    return {
        name: body
        for name, body in config.modules.items()
        if body["source"] == LOCKED_BUCKET_SOURCE
    }


def test_bucket_inventory(module_config: TerraformConfig, bucket_config: TerraformConfig) -> None:
    # archive-bucket creates no bucket itself: each comes from a locked-bucket call, and
    # each call creates one Object Lock bucket and its access-log bucket.
    assert all_buckets(module_config) == set()
    assert all_buckets(bucket_config) == {LOCKED, LOG}
    calls = bucket_modules(module_config)
    assert set(calls) == set(BUCKET_MODULES)
    for name, (bucket, log_bucket) in BUCKET_MODULES.items():
        assert calls[name]["bucket_name"] == bucket
        assert calls[name]["access_log_bucket_name"] == log_bucket


def test_bucket_modules_get_the_same_hardening(module_config: TerraformConfig) -> None:
    # The replica differs from the archive only in its names, its provider and in taking
    # writes from replication alone; everything else is passed through unchanged.
    calls = bucket_modules(module_config)
    shared = {
        "retention_days",
        "break_glass_principal_arn",
        "kms_deletion_window_days",
        "access_log_retention_days",
        "transition_days",
        "transition_storage_class",
        "noncurrent_version_expiration_days",
        "tags",
    }
    for call in calls.values():
        for name in shared:
            assert call[name] == ref(f"var.{name}"), name
        assert call["object_prefix"] == ref("local.object_prefix")
    assert "replication_target" not in calls["archive_bucket"]
    assert calls["replica_bucket"]["replication_target"] is True


def test_bucket_module_calls_match_its_variables(
    module_config: TerraformConfig, bucket_config: TerraformConfig
) -> None:
    meta = {"source", "count", "providers", "depends_on", "for_each"}
    required = {n for n, v in bucket_config.variables.items() if "default" not in v}
    for name, call in bucket_modules(module_config).items():
        given = set(call) - meta
        assert given <= set(bucket_config.variables), name
        assert required <= given, name


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
    bucket_config: TerraformConfig, resource_type: str
) -> None:
    settings = bucket_config.resources_of_type(resource_type)
    assert set(settings) == all_buckets(bucket_config)
    for name, body in settings.items():
        assert "count" not in body
        assert body["bucket"] == ref(f"aws_s3_bucket.{name}.id")


def test_every_bucket_is_versioned(bucket_config: TerraformConfig) -> None:
    for body in bucket_config.resources_of_type("aws_s3_bucket_versioning").values():
        assert one_block(body, "versioning_configuration")["status"] == "Enabled"


def test_every_bucket_blocks_all_public_access(bucket_config: TerraformConfig) -> None:
    flags = (
        "block_public_acls",
        "block_public_policy",
        "ignore_public_acls",
        "restrict_public_buckets",
    )
    for body in bucket_config.resources_of_type("aws_s3_bucket_public_access_block").values():
        assert {flag: body.get(flag) for flag in flags} == dict.fromkeys(flags, True)


def test_every_bucket_disables_acls(bucket_config: TerraformConfig) -> None:
    for body in bucket_config.resources_of_type("aws_s3_bucket_ownership_controls").values():
        assert one_block(body, "rule")["object_ownership"] == "BucketOwnerEnforced"


def test_archive_buckets_are_locked_in_compliance_mode(bucket_config: TerraformConfig) -> None:
    assert bucket_config.resources[f"aws_s3_bucket.{LOCKED}"]["object_lock_enabled"] is True
    lock = bucket_config.resources[f"aws_s3_bucket_object_lock_configuration.{LOCKED}"]
    retention = one_block(one_block(lock, "rule"), "default_retention")
    assert retention == {"mode": "COMPLIANCE", "days": ref("var.retention_days")}


def test_log_buckets_have_no_object_lock(bucket_config: TerraformConfig) -> None:
    # S3 does not deliver access logs to a bucket with a default retention period.
    assert "object_lock_enabled" not in bucket_config.resources[f"aws_s3_bucket.{LOG}"]
    locked = set(bucket_config.resources_of_type("aws_s3_bucket_object_lock_configuration"))
    assert locked == {LOCKED}


def test_archive_buckets_use_sse_kms_with_bucket_key(bucket_config: TerraformConfig) -> None:
    sse = bucket_config.resources[f"aws_s3_bucket_server_side_encryption_configuration.{LOCKED}"]
    rule = one_block(sse, "rule")
    assert one_block(rule, "apply_server_side_encryption_by_default") == {
        "sse_algorithm": "aws:kms",
        "kms_master_key_id": ref("aws_kms_key.sse.arn"),
    }
    assert rule["bucket_key_enabled"] is True
    kms_key = bucket_config.resources["aws_kms_key.sse"]
    assert kms_key["enable_key_rotation"] is True
    assert "key_usage" not in kms_key  # symmetric ENCRYPT_DECRYPT, the default
    assert kms_key["policy"] == ref("data.aws_iam_policy_document.sse_key.json")
    (delegation,) = bucket_config.statements("sse_key")
    assert delegation["principals"] == [{"type": "AWS", "identifiers": [ref("local.root_arn")]}]


def test_log_buckets_are_encrypted(bucket_config: TerraformConfig) -> None:
    sse = bucket_config.resources[f"aws_s3_bucket_server_side_encryption_configuration.{LOG}"]
    default = one_block(one_block(sse, "rule"), "apply_server_side_encryption_by_default")
    assert default == {"sse_algorithm": "AES256"}


def test_archive_buckets_log_to_a_separate_bucket(bucket_config: TerraformConfig) -> None:
    logging = bucket_config.resources_of_type("aws_s3_bucket_logging")
    assert logging[LOCKED]["target_bucket"] == ref(f"aws_s3_bucket.{LOG}.id")
    assert set(logging) == {LOCKED}
    assert bucket_config.resources[f"aws_s3_bucket.{LOG}"]["bucket"] == ref(
        "var.access_log_bucket_name"
    )


@pytest.mark.parametrize(("bucket", "document"), sorted(BUCKET_POLICY_DOCUMENTS.items()))
def test_bucket_policies_deny_requests_without_tls(
    bucket_config: TerraformConfig, bucket: str, document: str
) -> None:
    policy = bucket_config.resources[f"aws_s3_bucket_policy.{bucket}"]
    assert policy["policy"] == ref(f"data.aws_iam_policy_document.{document}.json")
    tls = statement(bucket_config, document, "DenyInsecureTransport")
    arn = ref(f"aws_s3_bucket.{bucket}.arn")
    assert tls["effect"] == "Deny"
    assert tls["actions"] == ["s3:*"]
    assert tls["principals"] == [{"type": "*", "identifiers": ["*"]}]
    assert sorted(tls["resources"]) == sorted([arn, f"{arn}/*"])
    assert conditions(tls) == {("Bool", "aws:SecureTransport", ("false",))}


@pytest.mark.parametrize("sid", ["DenyObjectDeletion", "DenyProtectionChanges", "DenyDirectWrites"])
def test_only_break_glass_is_exempt(bucket_config: TerraformConfig, sid: str) -> None:
    stmt = statement(bucket_config, "this", sid)
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


def test_only_break_glass_may_delete_or_weaken(bucket_config: TerraformConfig) -> None:
    deletion = statement(bucket_config, "this", "DenyObjectDeletion")
    protection = statement(bucket_config, "this", "DenyProtectionChanges")
    assert {"s3:DeleteObject", "s3:DeleteObjectVersion"} <= set(deletion["actions"])
    assert {
        "s3:BypassGovernanceRetention",
        "s3:DeleteBucketPolicy",
        "s3:PutBucketObjectLockConfiguration",
        "s3:PutBucketPolicy",
        "s3:PutBucketVersioning",
    } <= set(protection["actions"])


def test_break_glass_local_is_empty_without_a_principal(bucket_config: TerraformConfig) -> None:
    assert bucket_config.locals["break_glass"] == ref(
        "var.break_glass_principal_arn == null ? [] : [var.break_glass_principal_arn]"
    )
    assert bucket_config.variables["break_glass_principal_arn"]["default"] is None


def test_archive_policy_requires_conditional_writes(bucket_config: TerraformConfig) -> None:
    stmt = statement(bucket_config, "this", "DenyUnconditionalWrites")
    assert stmt["effect"] == "Deny"
    assert stmt["actions"] == ["s3:PutObject"]
    assert conditions(stmt) == {
        ("Null", "s3:if-none-match", ("true",)),
        ("Bool", "s3:ObjectCreationOperation", ("true",)),
    }


def test_archive_policy_keeps_compliance_mode_and_retention(bucket_config: TerraformConfig) -> None:
    mode = statement(bucket_config, "this", "DenyNonComplianceLockMode")
    assert conditions(mode) == {
        ("Null", "s3:object-lock-mode", ("false",)),
        ("StringNotEquals", "s3:object-lock-mode", ("COMPLIANCE",)),
    }
    short = statement(bucket_config, "this", "DenyShortRetention")
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


def test_archive_policy_keeps_the_bucket_kms_key(bucket_config: TerraformConfig) -> None:
    other_key = statement(bucket_config, "this", "DenyOtherKmsKey")
    assert conditions(other_key) == {
        ("Null", "s3:x-amz-server-side-encryption-aws-kms-key-id", ("false",)),
        (
            "StringNotEquals",
            "s3:x-amz-server-side-encryption-aws-kms-key-id",
            (ref("aws_kms_key.sse.arn"),),
        ),
    }


def test_replica_refuses_direct_writes(bucket_config: TerraformConfig) -> None:
    stmt = statement(bucket_config, "this", "DenyDirectWrites")
    assert stmt["effect"] == "Deny"
    assert "s3:PutObject" in stmt["actions"]
    # Only in a replication target (the replica_bucket call sets it; see above).
    (direct_writes,) = [
        d["statement"]
        for d in bucket_config.policy_document("this")["dynamic"]
        if d["statement"]["content"] == [stmt]
    ]
    assert direct_writes["for_each"] == ref("var.replication_target ? [true] : []")
    assert bucket_config.variables["replication_target"]["default"] is False


def test_condition_keys_exist(
    module_config: TerraformConfig, bucket_config: TerraformConfig
) -> None:
    used = set()
    for config in (module_config, bucket_config):
        for address in config.data:
            if address.startswith("aws_iam_policy_document."):
                for stmt in config.statements(address.split(".", 1)[1]):
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
    assert sse["resources"] == [ref("module.archive_bucket.sse_kms_key_arn")]


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
    arn = ref("module.archive_bucket.bucket_arn")
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


def test_lifecycle_never_expires_locked_versions(bucket_config: TerraformConfig) -> None:
    lifecycle = bucket_config.resources[f"aws_s3_bucket_lifecycle_configuration.{LOCKED}"]
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
    assert destination["bucket"] == ref("module.replica_bucket[0].bucket_arn")
    assert one_block(destination, "encryption_configuration") == {
        "replica_kms_key_id": ref("module.replica_bucket[0].sse_kms_key_arn")
    }


def test_replica_resources_use_the_replica_provider(
    module_config: TerraformConfig, bucket_config: TerraformConfig
) -> None:
    calls = bucket_modules(module_config)
    replica = calls["replica_bucket"]
    assert replica["providers"] == {"aws": ref("aws.replica")}
    assert replica["count"] == ref("local.replica_count")
    assert "providers" not in calls["archive_bucket"]
    assert "count" not in calls["archive_bucket"]
    assert module_config.locals["replica_count"] == ref("local.replicate ? 1 : 0")
    # Everything the locked-bucket module creates uses the provider it is given.
    regional = {**bucket_config.resources, **bucket_config.data}
    assert len(regional) >= 16
    for address, body in regional.items():
        assert "provider" not in body, address
    assert bucket_config.providers == []
    # archive-bucket itself creates nothing in the replica's region.
    for address, body in module_config.resources.items():
        assert "provider" not in body, address


def test_provider_requirements(
    module_config: TerraformConfig, bucket_config: TerraformConfig
) -> None:
    (terraform,) = module_config.terraform
    (providers,) = terraform["required_providers"]
    aws = providers["aws"]
    assert aws["source"] == "hashicorp/aws"
    assert aws["version"] == ">= 5.0"
    assert aws["configuration_aliases"] == [ref("aws.replica")]
    (terraform,) = bucket_config.terraform
    (providers,) = terraform["required_providers"]
    assert providers["aws"] == {"source": "hashicorp/aws", "version": ">= 5.0"}


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
