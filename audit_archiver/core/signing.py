"""Seal signing and signature checks.

A :class:`Signer` knows its key id and algorithm and signs message bytes; the
format does not care where the private key lives, so an AWS KMS signer (ECDSA
P-256) plugs in beside the default in-process Ed25519 signer.

Key id: lowercase hex SHA-256 of the public key's SubjectPublicKeyInfo DER
encoding. Algorithms: ``ed25519`` (signature is the 64-byte Ed25519 signature)
and ``ecdsa-p256-sha256`` (DER-encoded ECDSA signature over SHA-256 of the
message, what KMS ``ECDSA_SHA_256`` returns).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

__all__ = [
    "ALGORITHM_ECDSA_P256",
    "ALGORITHM_ED25519",
    "Ed25519Signer",
    "Signer",
    "TrustedKey",
    "generate_ed25519_private_pem",
    "key_id_of",
    "load_trusted_key",
]

ALGORITHM_ED25519 = "ed25519"
ALGORITHM_ECDSA_P256 = "ecdsa-p256-sha256"

PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey


class Signer(Protocol):
    """Something that signs seals. Implementations: :class:`Ed25519Signer`, KMS."""

    @property
    def key_id(self) -> str:
        """Hex SHA-256 of the public key's SubjectPublicKeyInfo DER."""
        ...

    @property
    def algorithm(self) -> str:
        """``ed25519`` or ``ecdsa-p256-sha256``."""
        ...

    def sign(self, message: bytes) -> bytes:
        """Return the signature over ``message``."""
        ...


def _spki_der(public_key: PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_id_of(public_key: PublicKey) -> str:
    """Return the key id of a public key: hex SHA-256 of its SPKI DER."""
    return hashlib.sha256(_spki_der(public_key)).hexdigest()


def generate_ed25519_private_pem() -> bytes:
    """Generate a new Ed25519 private key as unencrypted PKCS#8 PEM."""
    key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class Ed25519Signer:
    """Signs with an in-process Ed25519 private key (deterministic signatures)."""

    algorithm = ALGORITHM_ED25519

    def __init__(self, private_key: ed25519.Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self._key_id = key_id_of(private_key.public_key())

    @classmethod
    def from_pem(cls, pem: bytes) -> Ed25519Signer:
        """Load a signer from an unencrypted PKCS#8 PEM private key.

        Raises:
            ValueError: the PEM is not an unencrypted Ed25519 private key.
        """
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as e:
            raise ValueError(f"not an unencrypted PEM private key ({e})") from e
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise ValueError("the private key is not an Ed25519 key")
        return cls(key)

    @property
    def key_id(self) -> str:
        """Hex SHA-256 of the public key's SubjectPublicKeyInfo DER."""
        return self._key_id

    def public_pem(self) -> bytes:
        """Return the public key as SubjectPublicKeyInfo PEM."""
        return self._private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature over ``message``."""
        return self._private_key.sign(message)


@dataclass(frozen=True)
class TrustedKey:
    """A public key the verifier trusts, with its id and algorithm.

    It pickles (for worker processes) as its SubjectPublicKeyInfo DER, from
    which :func:`load_trusted_key` rebuilds it: the key objects of
    ``cryptography`` do not pickle themselves.
    """

    key_id: str
    algorithm: str
    public_key: PublicKey

    def spki_der(self) -> bytes:
        """The public key's SubjectPublicKeyInfo DER (what the key id hashes)."""
        return _spki_der(self.public_key)

    def __reduce__(self) -> tuple[Callable[[bytes], TrustedKey], tuple[bytes]]:
        """Pickle as the SPKI DER; unpickling reloads and re-derives the key id."""
        return load_trusted_key, (self.spki_der(),)

    def verify(self, signature: bytes, message: bytes) -> bool:
        """Tell whether ``signature`` over ``message`` is valid for this key."""
        try:
            if isinstance(self.public_key, ed25519.Ed25519PublicKey):
                self.public_key.verify(signature, message)
            else:
                self.public_key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        return True


def load_trusted_key(pem: bytes) -> TrustedKey:
    """Load a PEM (or DER) public key: Ed25519, or ECDSA on P-256.

    Raises:
        ValueError: not a public key, or of an unsupported type or curve.
    """
    try:
        if pem.lstrip().startswith(b"-----"):
            key = serialization.load_pem_public_key(pem)
        else:
            key = serialization.load_der_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise ValueError(f"not a PEM or DER public key ({e})") from e
    if isinstance(key, ed25519.Ed25519PublicKey):
        return TrustedKey(key_id_of(key), ALGORITHM_ED25519, key)
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return TrustedKey(key_id_of(key), ALGORITHM_ECDSA_P256, key)
    raise ValueError("unsupported public key type: use Ed25519 or ECDSA P-256")
