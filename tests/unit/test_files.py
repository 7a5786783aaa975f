"""The one durable-write helper: content, exact mode, no temporary left, no overwrite."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from audit_archiver._files import write_atomically, write_new


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_atomically_writes_the_bytes_with_the_mode(tmp_path: Path) -> None:
    old = os.umask(0o077)  # the mode is exact: the umask does not narrow it
    try:
        write_atomically(tmp_path / "head.json", b'{"a":1}\n')
        write_atomically(tmp_path / "state.json", b"secret", mode=0o600)
    finally:
        os.umask(old)
    assert (tmp_path / "head.json").read_bytes() == b'{"a":1}\n'
    assert mode_of(tmp_path / "head.json") == 0o644
    assert mode_of(tmp_path / "state.json") == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head.json", "state.json"]


def test_write_atomically_replaces_and_write_new_refuses(tmp_path: Path) -> None:
    target = tmp_path / "f"
    write_atomically(target, b"one")
    write_atomically(target, b"two")
    assert target.read_bytes() == b"two"
    with pytest.raises(FileExistsError):
        write_new(target, b"three")
    with pytest.raises(FileExistsError):
        write_atomically(target, b"three", replace=False)
    assert target.read_bytes() == b"two"
    write_new(tmp_path / "g", b"")
    assert (tmp_path / "g").read_bytes() == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "g"]


def test_write_new_does_not_follow_a_link_at_the_target(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_bytes(b"untouched")
    (tmp_path / "d").mkdir()
    os.symlink(outside, tmp_path / "d" / "f")
    with pytest.raises(FileExistsError):
        write_new(tmp_path / "d" / "f", b"evil")
    assert outside.read_bytes() == b"untouched"


def test_a_failed_write_leaves_no_temporary_and_the_target_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"original")

    def failing_fsync(descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    for replace in (True, False):
        with pytest.raises(OSError, match="No space left"):
            write_atomically(target, b"new", replace=replace)
    monkeypatch.undo()
    assert target.read_bytes() == b"original"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_a_failed_rename_leaves_no_temporary(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()  # a folder cannot be replaced by a file
    with pytest.raises(IsADirectoryError):
        write_atomically(tmp_path / "busy", b"x")
    assert [p.name for p in tmp_path.iterdir()] == ["busy"]


def test_missing_directory_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomically(tmp_path / "absent" / "f", b"x")
    assert list(tmp_path.iterdir()) == []
