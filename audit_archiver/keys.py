"""Key files: generation and loading, with the permission checks a signing key needs.

Private keys are unencrypted PKCS#8 PEM files readable by their owner only
(mode 0600); loading one that the group or others can read fails, as ssh does.
A key file is never written over anything already at its path (a file, or a
link even if dangling): :func:`refuse_existing` is that one rule, for
``keygen`` and ``kms-public-key --out`` alike.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from audit_archiver._files import write_new
from audit_archiver.core.signing import (
    Ed25519Signer,
    TrustedKey,
    generate_ed25519_private_pem,
    load_trusted_key,
)
from audit_archiver.errors import KeyFileError

__all__ = [
    "PRIVATE_KEY_NAME",
    "PUBLIC_KEY_NAME",
    "generate_key_pair",
    "load_public_key",
    "load_public_keys",
    "load_signer",
    "refuse_existing",
    "write_public_key",
]

PRIVATE_KEY_NAME = "signing.key"
PUBLIC_KEY_NAME = "signing.pub"


def generate_key_pair(directory: Path) -> tuple[Path, Path, str]:
    """Write a new Ed25519 key pair into ``directory``; return both paths and the key id.

    Raises:
        KeyFileError: a key file already exists there, or the files cannot be written.
    """
    private_path = directory / PRIVATE_KEY_NAME
    public_path = directory / PUBLIC_KEY_NAME
    for path in (private_path, public_path):
        refuse_existing(path)
    pem = generate_ed25519_private_pem()
    signer = Ed25519Signer.from_pem(pem)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise KeyFileError(f"cannot write key files in {directory}: {e.strerror}") from e
    _write_key(private_path, pem, mode=0o600)  # exactly 0600 whatever the umask
    _write_key(public_path, signer.public_pem(), mode=0o644)
    return private_path, public_path, signer.key_id


def write_public_key(path: Path, pem: bytes) -> None:
    """Write a public key file as keygen writes ``signing.pub``: atomically, mode
    0644, never over anything already at ``path``.

    Raises:
        KeyFileError: ``path`` exists, or the file cannot be written.
    """
    refuse_existing(path)
    _write_key(path, pem, mode=0o644)


def refuse_existing(path: Path) -> None:
    """Refuse to write a key at ``path`` if anything is there (a link too, even dangling).

    Call it before any costly step (asking KMS, generating); the write itself
    refuses again atomically, so a file appearing in between is not overwritten.

    Raises:
        KeyFileError: something exists at ``path``.
    """
    if os.path.lexists(path):
        raise KeyFileError(f"{path} already exists; refusing to overwrite a key")


def _write_key(path: Path, data: bytes, *, mode: int) -> None:
    """Write a new key file atomically, never replacing one (the link step refuses).

    Raises:
        KeyFileError: ``path`` exists, or the file cannot be written.
    """
    try:
        write_new(path, data, mode=mode)
    except FileExistsError as e:
        raise KeyFileError(f"{path} already exists; refusing to overwrite a key") from e
    except OSError as e:
        raise KeyFileError(f"cannot write {path}: {e.strerror}") from e


def load_signer(path: Path) -> Ed25519Signer:
    """Load an Ed25519 signer from a private key file readable by its owner only.

    Raises:
        KeyFileError: missing, unreadable, group/world-readable, or not an
            unencrypted Ed25519 PEM private key.
    """
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(
                f"private key {path} is accessible by group or others"
                f" (mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
            )
        pem = path.read_bytes()
    except OSError as e:
        raise KeyFileError(f"cannot read private key {path}: {e.strerror}") from e
    try:
        return Ed25519Signer.from_pem(pem)
    except ValueError as e:
        raise KeyFileError(f"{path}: {e}") from e


def load_public_key(path: Path) -> TrustedKey:
    """Load one public key file (PEM or DER; Ed25519 or ECDSA P-256).

    Raises:
        KeyFileError: the file is missing, unreadable or not a supported public key.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise KeyFileError(f"cannot read public key {path}: {e.strerror}") from e
    try:
        return load_trusted_key(data)
    except ValueError as e:
        raise KeyFileError(f"{path}: {e}") from e


def load_public_keys(paths: list[Path]) -> dict[str, TrustedKey]:
    """Load trusted public keys, indexed by key id.

    Raises:
        KeyFileError: no path, or a file is missing, unreadable or not a
            supported public key.
    """
    if not paths:
        raise KeyFileError("at least one --public-key is required")
    keys: dict[str, TrustedKey] = {}
    for path in paths:
        key = load_public_key(path)
        keys[key.key_id] = key
    return keys
