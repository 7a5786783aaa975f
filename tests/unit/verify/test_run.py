from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from audit_archiver.errors import ConfigurationError
from audit_archiver.verify.run import VerifySettings, build_verifier

PUBLIC_KEY = Path(__file__).parents[2] / "vectors" / "public.pem"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"workers": 0}, "--workers must be at least 1"),
        ({"min_retention_days": 0}, "--min-retention-days"),
        ({"max_age": 0.0}, "--max-age"),
        ({"prefix": "a//b"}, "invalid prefix"),
        ({"streams": ("-x",)}, "invalid stream id"),
        ({"since": "yesterday"}, "RFC 3339"),
        ({"bucket": "b"}, "either --local-dir DIR or --bucket NAME"),
    ],
)
def test_bad_settings_are_configuration_errors(
    tmp_path: Path, changes: dict[str, object], message: str
) -> None:
    settings = VerifySettings(public_keys=(PUBLIC_KEY,), local_dir=tmp_path, progress=False)
    with pytest.raises(ConfigurationError, match=message):
        build_verifier(dataclasses.replace(settings, **changes))
