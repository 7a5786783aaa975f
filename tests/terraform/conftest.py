"""Fixtures shared by the Terraform tests."""

from __future__ import annotations

import pytest

from tests.terraform.bucket_settings import (
    EXAMPLE_DIR,
    LOCKED_BUCKET_DIR,
    MODULE_DIR,
    TerraformConfig,
    load_config,
)


@pytest.fixture(scope="session")
def module_config() -> TerraformConfig:
    """The archive-bucket module, parsed once per session."""
    return load_config(MODULE_DIR)


@pytest.fixture(scope="session")
def bucket_config() -> TerraformConfig:
    """The internal locked-bucket module (every bucket the archive-bucket module creates)."""
    return load_config(LOCKED_BUCKET_DIR)


@pytest.fixture(scope="session")
def example_config() -> TerraformConfig:
    """The complete example, parsed once per session."""
    return load_config(EXAMPLE_DIR)
