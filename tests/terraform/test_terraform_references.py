"""Every name the Terraform configurations refer to is declared, from their HCL.

`terraform validate` needs the providers, which cannot be downloaded here; this test does
the part of it that needs none: each `var.`, `local.`, `data.`, resource and `module.`
reference (including a module output) must name something the directory declares, so
that moving a resource between the module and the locked-bucket module cannot leave a
dangling reference behind.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.terraform.bucket_settings import (
    EXAMPLE_DIR,
    LOCKED_BUCKET_DIR,
    MODULE_DIR,
    TERRAFORM_DIR,
    TerraformConfig,
    load_config,
)

_VAR = re.compile(r"\bvar\.(\w+)")
_LOCAL = re.compile(r"\blocal\.(\w+)")
_DATA = re.compile(r"\bdata\.(\w+)\.(\w+)")
_RESOURCE = re.compile(r"(?<![.\w])(aws_\w+)\.(\w+)")
_MODULE_OUTPUT = re.compile(r"\bmodule\.(\w+)(?:\[[^\]]*\])?\.(\w+)")


def expressions(value: Any) -> Iterator[str]:
    """Every string of a parsed block that holds an expression (``${...}``)."""
    if isinstance(value, str):
        if "${" in value:
            yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from expressions(key)
            yield from expressions(item)
    elif isinstance(value, list):
        for item in value:
            yield from expressions(item)


def all_expressions(config: TerraformConfig) -> list[str]:
    parts = (
        config.resources,
        config.data,
        config.variables,
        config.outputs,
        config.modules,
        config.locals,
        config.providers,
    )
    return [text for part in parts for text in expressions(part)]


def dangling_references(directory: Path) -> list[str]:
    config = load_config(directory)
    module_outputs = {
        name: set(load_config((directory / call["source"]).resolve()).outputs)
        for name, call in config.modules.items()
        if call["source"].startswith(".")
    }
    dangling = []
    for text in all_expressions(config):
        dangling += [f"var.{n}" for n in _VAR.findall(text) if n not in config.variables]
        dangling += [f"local.{n}" for n in _LOCAL.findall(text) if n not in config.locals]
        dangling += [
            f"data.{t}.{n}" for t, n in _DATA.findall(text) if f"{t}.{n}" not in config.data
        ]
        dangling += [
            f"{t}.{n}" for t, n in _RESOURCE.findall(text) if f"{t}.{n}" not in config.resources
        ]
        dangling += [
            f"module.{m}.{o}"
            for m, o in _MODULE_OUTPUT.findall(text)
            if o not in module_outputs.get(m, set())
        ]
    return dangling


@pytest.mark.parametrize(
    "directory",
    [MODULE_DIR, LOCKED_BUCKET_DIR, EXAMPLE_DIR],
    ids=lambda d: str(d.relative_to(TERRAFORM_DIR)),
)
def test_every_reference_is_declared(directory: Path) -> None:
    assert all_expressions(load_config(directory))
    assert dangling_references(directory) == []


def test_a_dangling_reference_is_found(tmp_path: Path) -> None:
    (tmp_path / "main.tf").write_text(
        'module "child" {\n  source = "./child"\n}\n\n'
        'locals {\n  a = "${var.missing}-${local.nope}"\n'
        "  b = aws_s3_bucket.gone.arn\n  c = data.aws_region.gone.name\n"
        "  d = module.child.missing_output\n  e = module.child.present\n}\n"
    )
    (tmp_path / "child").mkdir()
    (tmp_path / "child" / "outputs.tf").write_text('output "present" {\n  value = 1\n}\n')
    assert sorted(dangling_references(tmp_path)) == [
        "aws_s3_bucket.gone",
        "data.aws_region.gone",
        "local.nope",
        "module.child.missing_output",
        "var.missing",
    ]
