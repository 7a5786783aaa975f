from __future__ import annotations

import hashlib
import stat
import subprocess
from pathlib import Path

import pytest

from audit_archiver import keys
from audit_archiver.errors import KeyFileError
from audit_archiver.keys import (
    generate_key_pair,
    load_public_keys,
    load_signer,
    write_public_key,
)
from tests.integration.cli import run_cli


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


# -- kms-public-key, through the real CLI against moto's KMS over HTTP ----------------------


def _kms_key(endpoint: str, **options: str) -> tuple[str, bytes]:
    """A key made in moto's KMS: its id and its public key (SubjectPublicKeyInfo DER)."""
    import boto3  # type: ignore[import-untyped]

    client = boto3.client("kms", region_name="us-east-1", endpoint_url=endpoint)
    key_id = client.create_key(**options)["KeyMetadata"]["KeyId"]
    if options.get("KeyUsage") != "SIGN_VERIFY":
        return key_id, b""
    der: bytes = client.get_public_key(KeyId=key_id)["PublicKey"]
    return key_id, der


def _expected_pem(der: bytes) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return serialization.load_der_public_key(der).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _kms_cli(endpoint: str, key_id: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return run_cli(
        "kms-public-key",
        "--kms-key-id",
        key_id,
        "--region",
        "us-east-1",
        "--endpoint-url",
        endpoint,
        *args,
    )


SIGNING = {"KeyUsage": "SIGN_VERIFY", "KeySpec": "ECC_NIST_P256"}


def test_kms_public_key_to_stdout_and_to_a_file(moto_endpoint: str, tmp_path: Path) -> None:
    key_id, der = _kms_key(moto_endpoint, **SIGNING)
    printed = _kms_cli(moto_endpoint, key_id)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.encode() == _expected_pem(der)

    out = tmp_path / "kms.pub"
    written = _kms_cli(moto_endpoint, key_id, "--out", out)
    assert written.returncode == 0, written.stderr
    assert out.read_bytes() == _expected_pem(der)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert "BEGIN PUBLIC KEY" not in written.stdout
    assert hashlib.sha256(der).hexdigest() in written.stdout  # the key id seals will carry
    assert [p.name for p in tmp_path.iterdir()] == ["kms.pub"]  # no temporary left behind
    assert list(load_public_keys([out])) == [hashlib.sha256(der).hexdigest()]


def test_kms_public_key_refuses_to_overwrite(moto_endpoint: str, tmp_path: Path) -> None:
    key_id, _ = _kms_key(moto_endpoint, **SIGNING)
    existing = tmp_path / "existing.pub"
    existing.write_bytes(b"someone else's key\n")
    dangling = tmp_path / "dangling.pub"
    dangling.symlink_to(tmp_path / "elsewhere.pub")
    for target in (existing, dangling):
        result = _kms_cli(moto_endpoint, key_id, "--out", target)
        assert result.returncode == 2, result.stderr
        assert "already exists; refusing to overwrite" in result.stderr
        assert "Traceback" not in result.stderr
    assert existing.read_bytes() == b"someone else's key\n"
    assert not (tmp_path / "elsewhere.pub").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling.pub", "existing.pub"]


def test_kms_public_key_errors_write_nothing(moto_endpoint: str, tmp_path: Path) -> None:
    out = tmp_path / "kms.pub"
    wrong_kind, _ = _kms_key(moto_endpoint, KeyUsage="ENCRYPT_DECRYPT")
    cases = [
        (wrong_kind, out, "ECC_NIST_P256 SIGN_VERIFY"),
        ("00000000-0000-0000-0000-000000000000", out, "cannot read KMS key"),
        (_kms_key(moto_endpoint, **SIGNING)[0], tmp_path / "missing" / "kms.pub", "cannot write"),
    ]
    for key_id, target, message in cases:
        result = _kms_cli(moto_endpoint, key_id, "--out", target)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr
        assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_public_key_file_is_never_written_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "k.pub"
    write_public_key(target, b"first\n")
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        write_public_key(target, b"second\n")
    # A file appearing after the early check (the race it cannot close): the atomic
    # link step refuses too.
    monkeypatch.setattr(keys, "refuse_existing", lambda path: None)
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        write_public_key(target, b"third\n")
    assert target.read_bytes() == b"first\n"
    with pytest.raises(KeyFileError, match="cannot write"):
        write_public_key(tmp_path / "no" / "k.pub", b"x\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.pub"]  # no temporary left


def test_keygen_refuses_a_dangling_link_as_kms_public_key_does(tmp_path: Path) -> None:
    """One rule for both commands: anything at the path, a dangling link included."""
    keys_dir = tmp_path / "k"
    keys_dir.mkdir()
    (keys_dir / "signing.pub").symlink_to(tmp_path / "elsewhere.pub")
    result = run_cli("keygen", "--out", keys_dir)
    assert result.returncode == 2, result.stderr
    assert "signing.pub already exists; refusing to overwrite" in result.stderr
    assert sorted(p.name for p in keys_dir.iterdir()) == ["signing.pub"]
    assert not (tmp_path / "elsewhere.pub").exists()
