from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from audit_archiver.core.signing import (
    ALGORITHM_ECDSA_P256,
    Ed25519Signer,
    generate_ed25519_private_pem,
    load_trusted_key,
)
from tests.helpers import fixed_signer


def test_key_id_is_sha256_of_spki_der() -> None:
    signer = fixed_signer()
    der = serialization.load_pem_public_key(signer.public_pem()).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert signer.key_id == hashlib.sha256(der).hexdigest()
    assert load_trusted_key(signer.public_pem()).key_id == signer.key_id


def test_ed25519_signatures_verify_and_reject_tampering() -> None:
    signer = Ed25519Signer.from_pem(generate_ed25519_private_pem())
    key = load_trusted_key(signer.public_pem())
    signature = signer.sign(b"message")
    assert key.verify(signature, b"message")
    assert not key.verify(signature, b"messagE")
    assert not key.verify(b"short", b"message")


def test_ecdsa_p256_keys_as_kms_produces_them() -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key = load_trusted_key(der)
    assert key.algorithm == ALGORITHM_ECDSA_P256
    signature = private.sign(b"seal", ec.ECDSA(hashes.SHA256()))
    assert key.verify(signature, b"seal")
    assert not key.verify(signature, b"other")


def test_unsupported_keys_are_refused() -> None:
    rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    pem = rsa_pem.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ValueError, match="unsupported"):
        load_trusted_key(pem)
    p384 = (
        ec.generate_private_key(ec.SECP384R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ValueError, match="unsupported"):
        load_trusted_key(p384)
    with pytest.raises(ValueError, match="not a PEM"):
        load_trusted_key(b"-----BEGIN PUBLIC KEY-----\ngarbage\n-----END PUBLIC KEY-----\n")
    with pytest.raises(ValueError, match="Ed25519"):
        Ed25519Signer.from_pem(
            ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
