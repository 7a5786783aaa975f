from __future__ import annotations

import stat
from pathlib import Path

import pytest

from audit_archiver.errors import KeyFileError
from audit_archiver.keys import generate_key_pair, load_public_keys, load_signer


def test_keygen_writes_0600_private_key_and_refuses_overwrite(tmp_path: Path) -> None:
    private, public, key_id = generate_key_pair(tmp_path / "k")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert load_signer(private).key_id == key_id
    assert list(load_public_keys([public])) == [key_id]
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        generate_key_pair(tmp_path / "k")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_readable_private_key_is_refused(tmp_path: Path, mode: int) -> None:
    private, _, _ = generate_key_pair(tmp_path)
    private.chmod(mode)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_signer(private)


def test_bad_key_files(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"nope")
    garbage.chmod(0o600)
    with pytest.raises(KeyFileError, match="garbage"):
        load_signer(garbage)
    with pytest.raises(KeyFileError, match="cannot read"):
        load_signer(tmp_path / "missing")
    with pytest.raises(KeyFileError, match="not a PEM"):
        load_public_keys([garbage])
    with pytest.raises(KeyFileError, match="cannot read public key"):
        load_public_keys([tmp_path / "missing.pub"])
    with pytest.raises(KeyFileError, match="at least one"):
        load_public_keys([])


def test_private_key_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    import os

    old = os.umask(0)
    try:
        private, public, _ = generate_key_pair(tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
