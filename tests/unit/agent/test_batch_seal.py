"""Offline sealing of an NDJSON file into a local directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit_archiver.agent.batch_seal import seal_lines_into_directory
from audit_archiver.errors import EventValidationError
from audit_archiver.storage.localdir import LocalDirectoryStore
from tests.helpers import BASE_TIME, fixed_signer, verify_dir

GOOD = b'{"actor":"a","action":"b","resource":"c"}\n'


def _seal(lines: list[bytes], out: Path) -> list[str]:
    result = seal_lines_into_directory(
        lines,
        LocalDirectoryStore(out),
        prefix="audit",
        stream="s1",
        signer=fixed_signer(),
        batch_max_events=2,
        compression="zstd",
        clock=lambda: BASE_TIME,
    )
    return result.segments


def test_lines_are_sealed_in_batches_and_verify(tmp_path: Path) -> None:
    assert _seal([GOOD] * 3, tmp_path) == [
        "s1/000000000000.ndjson.zst",
        "s1/000000000001.ndjson.zst",
    ]
    assert _seal([GOOD], tmp_path) == ["s1/000000000002.ndjson.zst"]
    report = verify_dir(tmp_path)
    assert (report.problems, report.segments, report.events) == ([], 3, 4)


def test_an_event_that_cannot_be_encoded_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    too_big = b'{"actor":"a","action":"b","resource":"c","n":123456789012345678901234}\n'
    with pytest.raises(EventValidationError, match=r"line 4: .*64-bit"):
        _seal([GOOD, GOOD, GOOD, too_big], tmp_path / "out")
    assert not (tmp_path / "out").exists()
