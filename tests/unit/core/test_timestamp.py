"""RFC 3161 tokens over seal hashes, against a real TSA (``openssl ts -reply``).

Expected values come from openssl (``openssl ts -verify``, ``zstd -dc``) or from
the certificates the test TSA made, never from the code under test.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rfc3161_client import _rust as rfc3161_rust

from audit_archiver.core.encoding import format_timestamp
from audit_archiver.core.seal import GENESIS_HASH, seal_hash
from audit_archiver.core.segment import (
    MAX_SEAL_BLOCK,
    MAX_TOKEN_BYTES,
    SealedSegment,
    build_segment,
    decompress_body,
    open_segment,
    with_timestamp,
)
from audit_archiver.core.timestamp import (
    MAX_CLOCK_SKEW,
    MAX_TSA_RESPONSE_BYTES,
    TsaTrust,
    build_request,
    parse_timestamp_line,
    read_token,
    timestamp_line,
    token_from_response,
    verify_token,
)
from audit_archiver.errors import MalformedSegmentError, TimestampError
from tests.helpers import fixed_signer
from tests.tsa import LocalTsa

SHA256_OID = "2.16.840.1.101.3.4.2.1"


@pytest.fixture(scope="module")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTsa]:
    with LocalTsa(tmp_path_factory.mktemp("tsa")) as server:
        yield server


@pytest.fixture(scope="module")
def other_tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTsa]:
    with LocalTsa(tmp_path_factory.mktemp("other-tsa"), "Other TSA") as server:
        yield server


def _segment(
    n: int = 0, *, sealed_at: datetime | None = None, compression: str = "zstd"
) -> SealedSegment:
    line = (
        b'{"seq":0,"received_at":"2026-01-02T03:04:05.000000Z","action":"read","actor":"u%d",'
        b'"resource":"r"}' % n
    )
    when = sealed_at or datetime.now(UTC) - timedelta(seconds=1)
    return build_segment(
        prefix="audit",
        stream="s",
        segment_seq=0,
        first_seq=0,
        lines=[line],
        prev_seal_hash=GENESIS_HASH,
        sealed_at=format_timestamp(when),
        signer=fixed_signer(),
        compression=compression,
    )


def _stamp(tsa: LocalTsa, segment: SealedSegment) -> bytes:
    request = build_request(segment.seal_bytes)
    return token_from_response(tsa.reply(request.der), request)


def _trust(tsa: LocalTsa) -> TsaTrust:
    return TsaTrust.from_pem(tsa.ca_pem.read_bytes())


def _openssl_verify(tmp_path: Path, token: bytes, digest_hex: str, ca: Path) -> bool:
    path = tmp_path / "token.der"
    path.write_bytes(token)
    done = subprocess.run(
        [
            "openssl",
            "ts",
            "-verify",
            "-token_in",
            "-in",
            str(path),
            "-digest",
            digest_hex,
            "-CAfile",
            str(ca),
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    return done.returncode == 0 and "Verification: OK" in done.stdout


def test_request_commits_to_the_seal_hash_with_a_nonce() -> None:
    segment = _segment()
    request = build_request(segment.seal_bytes)
    parsed = rfc3161_rust.parse_timestamp_request(request.der)
    assert bytes(parsed.message_imprint.message) == hashlib.sha256(segment.seal_bytes).digest()
    assert parsed.message_imprint.hash_algorithm.dotted_string == SHA256_OID
    assert parsed.cert_req is True
    assert parsed.nonce is not None and parsed.nonce == request.nonce
    assert build_request(segment.seal_bytes).nonce != request.nonce  # fresh each time


def test_round_trip_checks_with_openssl(tsa: LocalTsa, tmp_path: Path) -> None:
    segment = _segment()
    token = _stamp(tsa, segment)
    assert _openssl_verify(tmp_path, token, seal_hash(segment.seal_bytes), tsa.ca_pem)
    gen_time = verify_token(
        token, seal_hash(segment.seal_bytes), _trust(tsa), sealed_at=datetime.now(UTC)
    )
    assert abs(gen_time - datetime.now(UTC)) < timedelta(minutes=1)
    assert read_token(token, seal_hash(segment.seal_bytes)) == gen_time


# -- hostile TSA answers: never turned into a token ----------------------------


@pytest.mark.parametrize("mode", ["garbage", "huge", "wrong_nonce", "other_imprint", "rejection"])
def test_hostile_responses_are_refused(tsa: LocalTsa, mode: str) -> None:
    segment = _segment()
    request = build_request(segment.seal_bytes)
    tsa.mode = mode
    try:
        answer = tsa.reply(request.der)
    finally:
        tsa.mode = "ok"
    with pytest.raises(TimestampError) as caught:
        token_from_response(answer, request)
    expected = {
        "garbage": "invalid_response",
        "huge": "too_large",
        "wrong_nonce": "wrong_nonce",
        "other_imprint": "wrong_imprint",
        "rejection": "not_granted",
    }[mode]
    assert caught.value.reason == expected


def test_response_for_another_request_is_refused(tsa: LocalTsa) -> None:
    mine, theirs = build_request(_segment(1).seal_bytes), build_request(_segment(2).seal_bytes)
    with pytest.raises(TimestampError):
        token_from_response(tsa.reply(theirs.der), mine)


def test_response_limit_is_checked_before_parsing() -> None:
    request = build_request(_segment().seal_bytes)
    with pytest.raises(TimestampError) as caught:
        token_from_response(b"\x30" * (MAX_TSA_RESPONSE_BYTES + 1), request)
    assert caught.value.reason == "too_large"


# -- tokens a verifier is handed ----------------------------------------------


def test_token_for_another_seal_is_invalid(tsa: LocalTsa, tmp_path: Path) -> None:
    one, two = _segment(1), _segment(2)
    token = _stamp(tsa, one)
    assert not _openssl_verify(tmp_path, token, seal_hash(two.seal_bytes), tsa.ca_pem)
    with pytest.raises(TimestampError, match="another seal"):
        verify_token(token, seal_hash(two.seal_bytes), _trust(tsa), sealed_at=datetime.now(UTC))
    with pytest.raises(TimestampError, match="another seal"):
        read_token(token, seal_hash(two.seal_bytes))


def test_flipped_signature_byte_is_invalid(tsa: LocalTsa, tmp_path: Path) -> None:
    segment = _segment()
    token = bytearray(_stamp(tsa, segment))
    token[-8] ^= 0x01  # inside the ECDSA signature, the token's last field
    digest = seal_hash(segment.seal_bytes)
    assert not _openssl_verify(tmp_path, bytes(token), digest, tsa.ca_pem)
    with pytest.raises(TimestampError):
        verify_token(bytes(token), digest, _trust(tsa), sealed_at=datetime.now(UTC))


def test_token_of_a_tsa_not_trusted_is_invalid(tsa: LocalTsa, other_tsa: LocalTsa) -> None:
    segment = _segment()
    token = _stamp(other_tsa, segment)
    with pytest.raises(TimestampError):
        verify_token(token, seal_hash(segment.seal_bytes), _trust(tsa), sealed_at=datetime.now(UTC))
    both = TsaTrust.from_pem(tsa.ca_pem.read_bytes() + other_tsa.ca_pem.read_bytes())
    verify_token(token, seal_hash(segment.seal_bytes), both, sealed_at=datetime.now(UTC))


def test_the_tsa_leaf_alone_is_not_an_anchor(tsa: LocalTsa) -> None:
    """A trust anchor must be a self-signed CA (PKIX path validation, as openssl)."""
    segment = _segment()
    token = _stamp(tsa, segment)
    leaf_only = TsaTrust.from_pem(tsa.tsa_pem.read_bytes())
    with pytest.raises(TimestampError):
        verify_token(token, seal_hash(segment.seal_bytes), leaf_only, sealed_at=datetime.now(UTC))
    with_ca = TsaTrust.from_pem(tsa.tsa_pem.read_bytes() + tsa.ca_pem.read_bytes())
    verify_token(token, seal_hash(segment.seal_bytes), with_ca, sealed_at=datetime.now(UTC))


def test_seal_dated_after_the_tsa_saw_it_is_invalid(tsa: LocalTsa) -> None:
    late = datetime.now(UTC) + MAX_CLOCK_SKEW + timedelta(minutes=2)
    segment = _segment(sealed_at=late)
    token = _stamp(tsa, segment)
    with pytest.raises(TimestampError, match="sealed_at"):
        verify_token(token, seal_hash(segment.seal_bytes), _trust(tsa), sealed_at=late)
    within = datetime.now(UTC) + MAX_CLOCK_SKEW - timedelta(minutes=1)
    verify_token(token, seal_hash(segment.seal_bytes), _trust(tsa), sealed_at=within)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: b"",
        lambda t: t[:-1],
        lambda t: t[: len(t) // 2],
        lambda t: t + b"\x00",
        lambda t: b"\x30\x80" + t[2:],
        lambda t: bytes(200),
    ],
    ids=["empty", "short-by-one", "half", "trailing-byte", "indefinite-length", "zeros"],
)
def test_broken_tokens_are_invalid_not_a_crash(tsa: LocalTsa, mangle: object) -> None:
    segment = _segment()
    token = mangle(_stamp(tsa, segment))  # type: ignore[operator]
    digest = seal_hash(segment.seal_bytes)
    with pytest.raises(TimestampError):
        read_token(token, digest)
    with pytest.raises(TimestampError):
        verify_token(token, digest, _trust(tsa), sealed_at=datetime.now(UTC))


def test_trust_file_must_hold_certificates() -> None:
    with pytest.raises(ValueError, match="certificate"):
        TsaTrust.from_pem(b"not a pem")
    with pytest.raises(ValueError, match="certificate"):
        TsaTrust.from_pem(b"")


# -- the timestamp line --------------------------------------------------------


def test_timestamp_line_is_canonical_json() -> None:
    token = bytes(range(256)) * 3
    line = timestamp_line(token)
    assert line == b'{"timestamp":"' + base64.b64encode(token) + b'"}'
    assert parse_timestamp_line(line) == token


@pytest.mark.parametrize(
    "line",
    [
        b'{"timestamp": "AAEC"}',
        b'{"timestamp":"AAF="}',  # non-zero unused bits
        b'{"timestamp":"AAEC","x":1}',
        b'{"signature":"AAEC"}',
        b'{"timestamp":"AA EC"}',
        b'{"timestamp":""}',
        b'{"timestamp":"' + b"A" * 200_000 + b'"}',
        b"\xff\xfe",
    ],
)
def test_timestamp_line_other_forms_are_refused(line: bytes) -> None:
    with pytest.raises(TimestampError):
        parse_timestamp_line(line)


# -- the seal frame (segment format v1.1) -------------------------------------


@pytest.mark.parametrize("compression", ["zstd", "gzip"])
def test_stamped_segment_frame(tsa: LocalTsa, compression: str, tmp_path: Path) -> None:
    segment = _segment(compression=compression)
    token = _stamp(tsa, segment)
    stamped = with_timestamp(segment, token)
    assert stamped.timestamp == token
    plain, opened = open_segment(segment.data), open_segment(stamped.data)
    assert plain.timestamp_line is None
    assert opened.seal_bytes == plain.seal_bytes and opened.signature == plain.signature
    assert opened.body == plain.body
    assert opened.timestamp_line == timestamp_line(token)
    assert stamped.seal_hash == segment.seal_hash
    lines = decompress_body(plain.body, compression)
    # Standard decoders still skip the frame: the object inflates to the lines.
    if compression == "gzip":
        assert gzip.decompress(stamped.data) == lines
    elif shutil.which("zstd"):
        (tmp_path / "s.zst").write_bytes(stamped.data)
        out = subprocess.run(
            ["zstd", "-dcq", str(tmp_path / "s.zst")], check=True, capture_output=True
        )
        assert out.stdout == lines


def test_unstamped_segments_stay_byte_identical() -> None:
    segment = _segment()
    block = segment.seal_bytes + b"\n"
    size = int.from_bytes(segment.data[4:8], "little")
    assert segment.data[8 : 8 + size].count(b"\n") == 2
    assert segment.data[8:].startswith(block)


def test_token_limit_follows_from_the_seal_block() -> None:
    """Review 2, L7: MAX_TOKEN_BYTES is the largest token whose line (16 fixed
    bytes, 4 base64 characters per 3 bytes) with the block's three newlines fits
    MAX_SEAL_BLOCK; 3 bytes more do not (computed here from the format's text)."""

    def line_length(n: int) -> int:
        return len(b'{"timestamp":"') + 4 * -(-n // 3) + len(b'"}')

    assert line_length(MAX_TOKEN_BYTES) + 3 <= MAX_SEAL_BLOCK
    assert line_length(MAX_TOKEN_BYTES + 3) + 3 > MAX_SEAL_BLOCK
    assert MAX_TOKEN_BYTES == 49_134  # the figure FORMAT.md section 8.4 states
    assert parse_timestamp_line(timestamp_line(bytes(MAX_TOKEN_BYTES))) == bytes(MAX_TOKEN_BYTES)
    with pytest.raises(TimestampError) as caught:
        parse_timestamp_line(timestamp_line(bytes(MAX_TOKEN_BYTES + 3)))
    assert caught.value.reason == "too_large"


def test_reading_segments_does_not_load_the_rfc3161_library() -> None:
    """Review 2, L9: the timestamp line is parsed by core/segment.py itself."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import audit_archiver.core.segment"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "audit_archiver.core.segment" in out.stderr
    assert "rfc3161" not in out.stderr
    assert "audit_archiver.core.timestamp" not in out.stderr


def test_token_that_does_not_fit_the_seal_block_is_refused() -> None:
    segment = _segment()
    with pytest.raises(ValueError, match="seal block"):
        with_timestamp(segment, bytes(MAX_SEAL_BLOCK))


def test_a_stamped_segment_is_not_stamped_twice(tsa: LocalTsa) -> None:
    segment = _segment()
    stamped = with_timestamp(segment, _stamp(tsa, segment))
    with pytest.raises(ValueError, match="already"):
        with_timestamp(stamped, _stamp(tsa, segment))


@pytest.mark.parametrize(
    "block",
    [
        b"seal\nsig\n\n",  # an empty third line
        b"seal\nsig\nts\nmore\n",  # four lines
        b"seal\nsig\nts",  # third line not terminated
    ],
)
def test_other_seal_block_shapes_are_malformed(block: bytes) -> None:
    data = b"\x5a\x2a\x4d\x18" + len(block).to_bytes(4, "little") + block
    with pytest.raises(MalformedSegmentError):
        open_segment(data)
