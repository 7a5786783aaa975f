"""The KMS signer against moto's KMS (RAW ECDSA_SHA_256 verifies outside moto)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from audit_archiver.agent.kms import KmsSigner
from audit_archiver.agent.sealer import StreamSealer
from audit_archiver.core.chain import ChainHead
from audit_archiver.core.event import seal_event
from audit_archiver.core.signing import load_trusted_key
from audit_archiver.core.trust import TrustPolicy
from audit_archiver.errors import ConfigurationError
from audit_archiver.verify.segment_check import check_segment
from tests.helpers import sample_event, tick


@pytest.fixture
def kms(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield boto3.client("kms", region_name="us-east-1")


def test_kms_signed_segment_verifies_offline(kms: Any) -> None:
    key = kms.create_key(KeyUsage="SIGN_VERIFY", KeySpec="ECC_NIST_P256")["KeyMetadata"]["KeyId"]
    signer = KmsSigner(kms, key)
    trusted = load_trusted_key(signer.public_pem())
    assert trusted.key_id == signer.key_id
    assert trusted.verify(signer.sign(b"message"), b"message")
    sealer = StreamSealer(prefix="audit", stream="s1", signer=signer, head=ChainHead())
    segment = sealer.seal([seal_event(sample_event(i), i, tick(i)) for i in range(3)], tick(9))
    assert segment.seal.signature_algorithm == "ecdsa-p256-sha256"
    result = check_segment(
        segment.key[len("audit/") :],
        io.BytesIO(segment.data),
        TrustPolicy.every_stream([(trusted, "kms")]),
        stream_id="s1",
        segment_seq=0,
    )
    assert result.problems == ()


def test_wrong_kind_of_kms_key_is_refused(kms: Any) -> None:
    key = kms.create_key(KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["KeyId"]
    with pytest.raises(ConfigurationError, match="ECC_NIST_P256 SIGN_VERIFY"):
        KmsSigner(kms, key)
    with pytest.raises(ConfigurationError, match="cannot read KMS key"):
        KmsSigner(kms, "00000000-0000-0000-0000-000000000000")
