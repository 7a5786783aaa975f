"""Signing seals with an AWS KMS key (ECDSA P-256), so the private key never
leaves KMS.

The key must be ``KeyUsage=SIGN_VERIFY`` with ``KeySpec=ECC_NIST_P256`` (what
terraform/ creates). Seals are signed with ``MessageType=RAW`` and
``ECDSA_SHA_256``: KMS hashes the message itself, and the DER signature it
returns verifies with the public key alone, offline. The key id written into
seals is the SHA-256 of that public key's SubjectPublicKeyInfo, like any other
key's.
"""

from __future__ import annotations

from typing import Any

import boto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import (  # type: ignore[import-untyped]
    BotoCoreError,
    ClientError,
    NoCredentialsError,
)
from cryptography.hazmat.primitives import serialization

from audit_archiver.core.signing import ALGORITHM_ECDSA_P256, key_id_of
from audit_archiver.errors import (
    ConfigurationError,
    SignerError,
    SignerPermanentError,
    SignerUnavailableError,
)

__all__ = ["KmsSigner"]

_MAX_MESSAGE = 4096
_TRANSIENT = {
    "KMSInternalException",
    "ThrottlingException",
    "DependencyTimeoutException",
    "KeyUnavailableException",
    "ServiceUnavailableException",
}


class KmsSigner:
    """A :class:`~audit_archiver.core.signing.Signer` backed by an AWS KMS key."""

    algorithm = ALGORITHM_ECDSA_P256

    def __init__(self, client: Any, kms_key_id: str) -> None:
        """Read and check the key's public half.

        Raises:
            ConfigurationError: the key is missing, not allowed, or not an
                ECC_NIST_P256 SIGN_VERIFY key.
            SignerUnavailableError: KMS could not be reached.
        """
        self._client = client
        self._kms_key_id = kms_key_id
        try:
            response = client.get_public_key(KeyId=kms_key_id)
        except (ClientError, BotoCoreError) as e:
            raise _wrap(e, f"cannot read KMS key {kms_key_id}", ConfigurationError) from e
        spec = response.get("KeySpec") or response.get("CustomerMasterKeySpec")
        if spec != "ECC_NIST_P256" or response.get("KeyUsage") != "SIGN_VERIFY":
            raise ConfigurationError(
                f"KMS key {kms_key_id} is {spec}/{response.get('KeyUsage')}; seals need an"
                " ECC_NIST_P256 SIGN_VERIFY key"
            )
        self._public = serialization.load_der_public_key(response["PublicKey"])
        self._key_id = key_id_of(self._public)  # type: ignore[arg-type]

    @classmethod
    def connect(cls, kms_key_id: str, *, region: str | None, endpoint_url: str | None) -> KmsSigner:
        """Build a KMS client the usual boto3 way and load the key.

        Raises:
            ConfigurationError: bad key (see the constructor).
            SignerUnavailableError: KMS could not be reached.
        """
        config = Config(
            connect_timeout=5, read_timeout=10, retries={"max_attempts": 3, "mode": "standard"}
        )
        client = boto3.client("kms", region_name=region, endpoint_url=endpoint_url, config=config)
        return cls(client, kms_key_id)

    @property
    def key_id(self) -> str:
        """Hex SHA-256 of the KMS public key's SubjectPublicKeyInfo DER."""
        return self._key_id

    def public_pem(self) -> bytes:
        """The public key, PEM, for verifiers (``--public-key``)."""
        return self._public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, message: bytes) -> bytes:
        """Return KMS's DER ECDSA P-256 signature over SHA-256 of ``message``.

        Raises:
            SignerUnavailableError: KMS could not be reached or throttled (retry).
            SignerPermanentError: KMS refused (key disabled, deleted, access denied),
                or the seal is over KMS's message limit.
        """
        if len(message) > _MAX_MESSAGE:
            raise SignerPermanentError(
                f"seal of {len(message)} bytes exceeds KMS's 4096-byte RAW limit"
            )
        try:
            response = self._client.sign(
                KeyId=self._kms_key_id,
                Message=message,
                MessageType="RAW",
                SigningAlgorithm="ECDSA_SHA_256",
            )
        except (ClientError, BotoCoreError) as e:
            raise _wrap(e, f"KMS Sign with {self._kms_key_id} failed", SignerPermanentError) from e
        signature: bytes = response["Signature"]
        return signature


def _wrap(
    error: Exception, message: str, refused: type[ConfigurationError] | type[SignerError]
) -> Exception:
    """Transient (unreachable, throttled, 5xx, a key KMS cannot use for a moment)
    or refused (``DisabledException``, ``NotFoundException``, ``AccessDeniedException``,
    ``KMSInvalidStateException``: an operator must act)."""
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _TRANSIENT or status >= 500 or status == 429:
            return SignerUnavailableError(f"{message}: {code}")
        return refused(f"{message}: {code}")
    if isinstance(error, NoCredentialsError):
        return refused(f"{message}: {error}")
    return SignerUnavailableError(f"{message}: {error}")
