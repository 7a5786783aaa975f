"""The archive-bucket Terraform module's settings, read from its HCL.

The module in ``terraform/modules/archive-bucket`` is the source of truth; every bucket it
creates comes from its internal ``modules/locked-bucket``. This helper parses both with
python-hcl2 so that tests can (a) assert its security properties
structurally, without providers, and (b) give a boto3 S3 bucket (moto in tests) the same
settings the module declares, through :func:`apply_module_settings`. Every value applied
here is read from the HCL, so the helper and the module cannot drift apart: change the
module and this helper follows, or fails loudly on a shape it does not know.

Usage::

    import boto3
    from moto import mock_aws
    from tests.terraform.bucket_settings import apply_module_settings

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        apply_module_settings(s3, "audit-test", retention_days=1)
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2

__all__ = [
    "EXAMPLE_DIR",
    "FAKE_KMS_KEY_ARN",
    "LOCKED_BUCKET_DIR",
    "MODULE_DIR",
    "TERRAFORM_DIR",
    "ArchiveBucketSettings",
    "TerraformConfig",
    "apply_module_settings",
    "load_config",
    "module_settings",
    "render_statement",
    "tls_only_bucket_policy",
]

TERRAFORM_DIR = Path(__file__).resolve().parents[2] / "terraform"
MODULE_DIR = TERRAFORM_DIR / "modules" / "archive-bucket"
LOCKED_BUCKET_DIR = MODULE_DIR / "modules" / "locked-bucket"
EXAMPLE_DIR = TERRAFORM_DIR / "examples" / "complete"

# moto stores whatever key id it is given; a real deployment uses the module's SSE key.
FAKE_KMS_KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-4000-8000-000000000000"

# Plain values: no comments, no block markers, strings without their HCL quotes.
_HCL_OPTIONS = hcl2.SerializationOptions(
    with_comments=False,
    explicit_blocks=False,
    strip_string_quotes=True,
)

Block = dict[str, Any]


@dataclass(frozen=True)
class TerraformConfig:
    """Top-level blocks of one Terraform directory, keyed as Terraform addresses them.

    ``resources["aws_s3_bucket.archive"]`` and ``data["aws_iam_policy_document.writer"]``
    are block bodies as python-hcl2 returns them: nested blocks are lists of dicts,
    expressions are strings such as ``"${var.retention_days}"``.
    """

    resources: dict[str, Block]
    data: dict[str, Block]
    variables: dict[str, Block]
    outputs: dict[str, Block]
    modules: dict[str, Block]
    locals: dict[str, Any]
    providers: list[Block]
    terraform: list[Block]

    def resources_of_type(self, resource_type: str) -> dict[str, Block]:
        """Return ``{name: body}`` of every resource of ``resource_type``."""
        prefix = f"{resource_type}."
        return {
            address[len(prefix) :]: body
            for address, body in self.resources.items()
            if address.startswith(prefix)
        }

    def policy_document(self, name: str) -> Block:
        """Return the body of ``data "aws_iam_policy_document" "<name>"``."""
        return self.data[f"aws_iam_policy_document.{name}"]

    def statements(self, document: str) -> list[Block]:
        """Return every statement of a policy document, static and dynamic.

        The ``content`` of a ``dynamic "statement"`` block counts as a statement: it is
        what the document holds whenever its ``for_each`` is not empty.
        """
        body = self.policy_document(document)
        statements = list(body.get("statement", []))
        for dynamic in body.get("dynamic", []):
            for label, block in dynamic.items():
                if label == "statement":
                    statements.extend(block["content"])
        return statements


def load_config(directory: Path = MODULE_DIR) -> TerraformConfig:
    """Parse every ``*.tf`` file of ``directory`` (not its subdirectories)."""
    resources: dict[str, Block] = {}
    data: dict[str, Block] = {}
    variables: dict[str, Block] = {}
    outputs: dict[str, Block] = {}
    modules: dict[str, Block] = {}
    local_values: dict[str, Any] = {}
    providers: list[Block] = []
    terraform: list[Block] = []
    for path in sorted(directory.glob("*.tf")):
        with path.open(encoding="utf-8") as f:
            parsed = hcl2.load(f, serialization_options=_HCL_OPTIONS)
        for entry in parsed.get("resource", []):
            _add_labelled(resources, entry, path)
        for entry in parsed.get("data", []):
            _add_labelled(data, entry, path)
        for entry in parsed.get("variable", []):
            _add_named(variables, entry, path)
        for entry in parsed.get("output", []):
            _add_named(outputs, entry, path)
        for entry in parsed.get("module", []):
            _add_named(modules, entry, path)
        for entry in parsed.get("locals", []):
            _add_named(local_values, entry, path)
        providers.extend(parsed.get("provider", []))
        terraform.extend(parsed.get("terraform", []))
    return TerraformConfig(
        resources, data, variables, outputs, modules, local_values, providers, terraform
    )


@functools.cache
def _cached_config(directory: Path) -> TerraformConfig:
    # Parsing takes about half a second; the modules do not change during a test run.
    return load_config(directory)


def _add_labelled(into: dict[str, Block], entry: Block, path: Path) -> None:
    for block_type, by_name in entry.items():
        for name, body in by_name.items():
            address = f"{block_type}.{name}"
            if address in into:
                raise ValueError(f"{path.name}: {address} is declared twice")
            into[address] = body


def _add_named(into: dict[str, Block], entry: Block, path: Path) -> None:
    for name, body in entry.items():
        if name in into:
            raise ValueError(f"{path.name}: {name} is declared twice")
        into[name] = body


@dataclass(frozen=True)
class ArchiveBucketSettings:
    """What the module declares for the archive bucket, in boto3's terms."""

    default_retention_days: int
    lock_mode: str
    versioning_status: str
    sse_algorithm: str
    bucket_key_enabled: bool
    public_access_block: dict[str, bool]
    object_ownership: str
    tls_deny_statement: Block


def module_settings() -> ArchiveBucketSettings:
    """Read the archive bucket's settings from the modules' HCL.

    The hardening is the locked-bucket module's; the default retention is the
    archive-bucket module's ``retention_days`` default, which it passes down.
    """
    config = _cached_config(LOCKED_BUCKET_DIR)
    res = config.resources
    lock = res["aws_s3_bucket_object_lock_configuration.this"]["rule"][0]["default_retention"][0]
    sse = res["aws_s3_bucket_server_side_encryption_configuration.this"]["rule"][0]
    pab = res["aws_s3_bucket_public_access_block.this"]
    flags = {
        _camel(name): value
        for name, value in pab.items()
        if name.startswith(("block_", "ignore_", "restrict_"))
    }
    (tls,) = [s for s in config.statements("this") if s.get("sid") == "DenyInsecureTransport"]
    archive_bucket = _cached_config(MODULE_DIR)
    return ArchiveBucketSettings(
        default_retention_days=int(archive_bucket.variables["retention_days"]["default"]),
        lock_mode=lock["mode"],
        versioning_status=res["aws_s3_bucket_versioning.this"]["versioning_configuration"][0][
            "status"
        ],
        sse_algorithm=sse["apply_server_side_encryption_by_default"][0]["sse_algorithm"],
        bucket_key_enabled=sse["bucket_key_enabled"],
        public_access_block=flags,
        object_ownership=res["aws_s3_bucket_ownership_controls.this"]["rule"][0][
            "object_ownership"
        ],
        tls_deny_statement=tls,
    )


def _camel(snake: str) -> str:
    """``block_public_acls`` -> ``BlockPublicAcls`` (boto3's PublicAccessBlock keys)."""
    return "".join(part.capitalize() for part in snake.split("_"))


_INTERPOLATION = re.compile(r"\$\{([^}]*)\}")


def render_statement(statement: Block, references: dict[str, str]) -> dict[str, Any]:
    """Turn one ``aws_iam_policy_document`` statement into IAM policy JSON.

    ``references`` maps expressions (``aws_s3_bucket.this.arn``) to their values.
    Only static statements are supported; an expression without a value raises
    ``ValueError`` instead of being copied into the policy.
    """

    def value(text: str) -> str:
        def substitute(match: re.Match[str]) -> str:
            expression = match.group(1).strip()
            if expression not in references:
                raise ValueError(f"no value for ${{{expression}}} in statement {statement!r}")
            return references[expression]

        return _INTERPOLATION.sub(substitute, text)

    if "dynamic" in statement:
        raise ValueError(f"dynamic blocks cannot be rendered: {statement!r}")
    rendered: dict[str, Any] = {}
    if "sid" in statement:
        rendered["Sid"] = statement["sid"]
    rendered["Effect"] = statement.get("effect", "Allow")
    principals = statement.get("principals", [])
    if principals:
        if [(p["type"], p["identifiers"]) for p in principals] == [("*", ["*"])]:
            rendered["Principal"] = "*"
        else:
            rendered["Principal"] = {
                p["type"]: [value(i) for i in p["identifiers"]] for p in principals
            }
    rendered["Action"] = list(statement["actions"])
    rendered["Resource"] = [value(r) for r in statement["resources"]]
    conditions: dict[str, dict[str, list[str]]] = {}
    for condition in statement.get("condition", []):
        conditions.setdefault(condition["test"], {})[condition["variable"]] = [
            value(v) for v in condition["values"]
        ]
    if conditions:
        rendered["Condition"] = conditions
    return rendered


def tls_only_bucket_policy(bucket: str, settings: ArchiveBucketSettings | None = None) -> str:
    """Return the module's TLS-only statement as a bucket policy for ``bucket``."""
    settings = settings or module_settings()
    references = {"aws_s3_bucket.this.arn": f"arn:aws:s3:::{bucket}"}
    statement = render_statement(settings.tls_deny_statement, references)
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def apply_module_settings(
    s3_client: Any,
    bucket: str,
    retention_days: int | None = None,
    *,
    kms_key_id: str = FAKE_KMS_KEY_ARN,
) -> None:
    """Create ``bucket`` with the settings the module gives the archive bucket.

    Object Lock (enabled at creation, default retention in the module's mode for
    ``retention_days``, or the module's default when None), versioning, SSE-KMS default
    encryption with ``kms_key_id`` and a bucket key, the public access block, ownership
    controls and the module's TLS-only bucket policy statement. Only the TLS statement
    is applied: the other Deny statements depend on the deployment (break-glass
    principal, KMS key ARN) and would stop tests from cleaning up.
    """
    settings = module_settings()
    days = settings.default_retention_days if retention_days is None else retention_days
    create: dict[str, Any] = {"Bucket": bucket, "ObjectLockEnabledForBucket": True}
    region = s3_client.meta.region_name
    if region and region != "us-east-1":
        create["CreateBucketConfiguration"] = {"LocationConstraint": region}
    s3_client.create_bucket(**create)
    s3_client.put_bucket_versioning(
        Bucket=bucket, VersioningConfiguration={"Status": settings.versioning_status}
    )
    s3_client.put_object_lock_configuration(
        Bucket=bucket,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": settings.lock_mode, "Days": days}},
        },
    )
    s3_client.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {
                        "SSEAlgorithm": settings.sse_algorithm,
                        "KMSMasterKeyID": kms_key_id,
                    },
                    "BucketKeyEnabled": settings.bucket_key_enabled,
                }
            ]
        },
    )
    s3_client.put_public_access_block(
        Bucket=bucket, PublicAccessBlockConfiguration=settings.public_access_block
    )
    s3_client.put_bucket_ownership_controls(
        Bucket=bucket,
        OwnershipControls={"Rules": [{"ObjectOwnership": settings.object_ownership}]},
    )
    s3_client.put_bucket_policy(Bucket=bucket, Policy=tls_only_bucket_policy(bucket, settings))
