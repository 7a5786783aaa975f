"""RFC 3161 time-stamp tokens over seal hashes: what a third party says it saw, and when.

A seal's ``sealed_at`` is the agent's own claim. A Time-Stamping Authority
(TSA) signs a statement that it saw the seal hash at its time (``genTime``), so
an auditor can trust *when* a segment existed without trusting the agent's
clock. The token is stored in the segment's seal frame as a third line (see
``docs/FORMAT.md`` section 13); the seal's signature cannot cover it (the token
covers the seal), its message imprint binds it to the seal instead.

- :func:`build_request`: a TimeStampReq whose message imprint is SHA-256 of the
  seal bytes, that is the 32 raw bytes of the seal hash, with a random nonce and
  ``certReq`` (the TSA's certificate travels in the token).
- :func:`token_from_response`: the agent's check of a TSA's answer before it is
  stored (bounded size, status granted, imprint, nonce, a certificate in the
  token); returns the TimeStampToken (DER).
- :func:`read_token`: parse a stored token and check its imprint (no trust).
- :func:`verify_token`: :func:`read_token`, then the TSA's signature, its
  certificate chain to a trust anchor (:class:`TsaTrust`) at ``genTime``, the
  critical extended key usage ``timeStamping``, and ``genTime`` not before
  ``sealed_at`` less :data:`MAX_CLOCK_SKEW`.

ASN.1, CMS and certificate path checks are the ``rfc3161-client`` package's
(Trail of Bits, used by sigstore-python), never hand-written here. That
package verifies a TimeStampResp, not a bare token, so a stored token is
checked as the response ``SEQUENCE { SEQUENCE { INTEGER 0 }, token }``
(status granted; built here, then parsed by the library, which must hand back
exactly the stored token: trailing or re-encoded bytes are refused).

Bytes in, verdicts out: nothing here opens a socket or a file or reads the clock.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from rfc3161_client import (
    HashAlgorithm,
    PKIStatus,
    TimestampRequestBuilder,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

from audit_archiver.core.segment import MAX_TOKEN_BYTES, parse_timestamp_line, timestamp_line
from audit_archiver.errors import TimestampError

if TYPE_CHECKING:
    from rfc3161_client import TimeStampResponse, Verifier

__all__ = [
    "MAX_CLOCK_SKEW",
    "MAX_TOKEN_BYTES",
    "MAX_TSA_RESPONSE_BYTES",
    "TimestampRequest",
    "TsaTrust",
    "build_request",
    "parse_timestamp_line",
    "read_token",
    "timestamp_line",
    "token_from_response",
    "verify_token",
]

MAX_CLOCK_SKEW = timedelta(minutes=5)
"""How far a seal's ``sealed_at`` may be after the TSA's ``genTime`` (clock skew
between the agent and the TSA); more means the seal claims a time after a third
party had already seen it: ``timestamp_invalid``."""
MAX_TSA_RESPONSE_BYTES = 64 * 1024
"""The largest TSA answer the agent reads (a token with a certificate chain is a few KiB)."""
SHA256_OID = x509.ObjectIdentifier("2.16.840.1.101.3.4.2.1")
_GRANTED_PREFIX = b"\x30\x03\x02\x01\x00"  # PKIStatusInfo { status granted (0) }


@dataclass(frozen=True)
class TimestampRequest:
    """A TimeStampReq for one seal: its DER bytes, its nonce and the imprint it asks for."""

    der: bytes
    nonce: int
    digest: bytes


def build_request(seal_bytes: bytes) -> TimestampRequest:
    """A request to time-stamp the seal hash of ``seal_bytes`` (SHA-256, nonce, certReq)."""
    request = (
        TimestampRequestBuilder()
        .data(seal_bytes)
        .hash_algorithm(HashAlgorithm.SHA256)
        .nonce(nonce=True)
        .cert_request(cert_request=True)
        .build()
    )
    nonce = request.nonce
    assert nonce is not None
    return TimestampRequest(request.as_bytes(), nonce, hashlib.sha256(seal_bytes).digest())


def _decode(response: bytes) -> TimeStampResponse:
    """Parse a TimeStampResp; anything the parser throws is an invalid response."""
    try:
        return decode_timestamp_response(response)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # a Rust panic is a BaseException: still bad input
        raise TimestampError(
            f"not an RFC 3161 response: {_short(e)}", reason="invalid_response"
        ) from e


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text[:160] if text else type(error).__name__


def token_from_response(response: bytes, request: TimestampRequest) -> bytes:
    """Check a TSA's answer to ``request``; return the TimeStampToken (DER) to store.

    Raises:
        TimestampError: ``too_large`` (over :data:`MAX_TSA_RESPONSE_BYTES` or
            :data:`MAX_TOKEN_BYTES`), ``invalid_response`` (not a response, no
            token or no certificate in it), ``not_granted``, ``wrong_imprint``
            (another hash or algorithm), ``wrong_nonce``.
    """
    if len(response) > MAX_TSA_RESPONSE_BYTES:
        raise TimestampError(
            f"TSA answer of {len(response)} bytes is over {MAX_TSA_RESPONSE_BYTES}",
            reason="too_large",
        )
    decoded = _decode(response)
    try:
        status = decoded.status
        if status != PKIStatus.GRANTED:
            raise TimestampError(f"TSA status is {status}, not granted", reason="not_granted")
        token = bytes(decoded.time_stamp_token())
    except TimestampError:
        raise
    except Exception as e:
        raise TimestampError(
            f"TSA answer holds no token: {_short(e)}", reason="invalid_response"
        ) from e
    stamped = _read(token, request.digest.hex())
    if stamped.nonce != request.nonce:
        raise TimestampError("the token answers another request (nonce)", reason="wrong_nonce")
    if not stamped.has_certificate:
        raise TimestampError(
            "the token carries no certificate (certReq was ignored)", reason="invalid_response"
        )
    return token


@dataclass(frozen=True)
class _Read:
    response: TimeStampResponse
    gen_time: datetime
    nonce: int | None
    has_certificate: bool


def _read(token: bytes, seal_hash: str) -> _Read:
    """Parse ``token`` (as a granted response) and check it stamps ``seal_hash``."""
    if not token or len(token) > MAX_TOKEN_BYTES:
        raise TimestampError(
            f"token of {len(token)} bytes (1 to {MAX_TOKEN_BYTES} expected)", reason="too_large"
        )
    inner = _GRANTED_PREFIX + token
    decoded = _decode(b"\x30" + _der_length(len(inner)) + inner)
    try:
        same = bytes(decoded.time_stamp_token()) == token
        info = decoded.tst_info
        imprint = info.message_imprint
        algorithm, message = imprint.hash_algorithm, bytes(imprint.message)
        gen_time = info.gen_time.astimezone(UTC)
        nonce = info.nonce
        has_certificate = len(decoded.signed_data.certificates) > 0
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # lazily parsed parts: the same hostile input
        raise TimestampError(f"not a time-stamp token: {_short(e)}", reason="invalid_token") from e
    if not same:
        raise TimestampError("not exactly one DER time-stamp token", reason="invalid_token")
    if algorithm != SHA256_OID or message != bytes.fromhex(seal_hash):
        raise TimestampError(
            "the token time-stamps another seal (its message imprint is not this seal's"
            " SHA-256 hash)",
            reason="wrong_imprint",
        )
    return _Read(decoded, gen_time, nonce, has_certificate)


def read_token(token: bytes, seal_hash: str) -> datetime:
    """Parse a stored token and check its imprint is ``seal_hash``; return ``genTime`` (UTC).

    Nothing about who signed it is checked: see :func:`verify_token`.

    Raises:
        TimestampError: not one DER token, too large, or for another seal.
    """
    return _read(token, seal_hash).gen_time


def verify_token(token: bytes, seal_hash: str, trust: TsaTrust, *, sealed_at: datetime) -> datetime:
    """Check a stored token completely; return the TSA's ``genTime`` (UTC).

    The imprint must be ``seal_hash``; the TSA's signature must verify; the
    signing certificate must chain to one of ``trust``'s certificates, valid at
    ``genTime``, with the critical extended key usage ``timeStamping``;
    ``genTime`` must not be earlier than ``sealed_at`` less
    :data:`MAX_CLOCK_SKEW`.

    Raises:
        TimestampError: the first check that fails (its ``reason``).
    """
    read = _read(token, seal_hash)
    try:
        _verifier(trust.certificates).verify(read.response, bytes.fromhex(seal_hash))
    except VerificationError as e:
        raise TimestampError(
            f"the token does not verify with --tsa-cert: {_short(e)}", reason="untrusted"
        ) from e
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:
        raise TimestampError(
            f"the token cannot be verified: {_short(e)}", reason="untrusted"
        ) from e
    if read.gen_time < sealed_at - MAX_CLOCK_SKEW:
        raise TimestampError(
            f"the TSA saw this seal at {read.gen_time.isoformat()}, more than"
            f" {MAX_CLOCK_SKEW.total_seconds():g} s before its sealed_at"
            f" {sealed_at.isoformat()}",
            reason="too_early",
        )
    return read.gen_time


@dataclass(frozen=True)
class TsaTrust:
    """The certificates a token's chain may end at (``verify --tsa-cert``), as DER.

    Each is a trust anchor in the PKIX sense: path validation stops at a
    self-signed certificate among them. Give the CA that issued the TSA's
    certificate (and any intermediate the token does not carry); a TSA's own
    certificate is an anchor only when it is self-signed.
    """

    certificates: tuple[bytes, ...]

    @classmethod
    def from_pem(cls, data: bytes) -> TsaTrust:
        """Every certificate of one or more concatenated PEM files.

        Raises:
            ValueError: no certificate in ``data``, or one that does not parse.
        """
        try:
            certificates = x509.load_pem_x509_certificates(data)
        except ValueError as e:
            raise ValueError(f"no PEM certificate found ({e})") from e
        ders = dict.fromkeys(c.public_bytes(Encoding.DER) for c in certificates)
        return cls(tuple(ders))

    def __add__(self, other: TsaTrust) -> TsaTrust:
        """Both sets of anchors."""
        return TsaTrust(tuple(dict.fromkeys(self.certificates + other.certificates)))


@functools.lru_cache(maxsize=8)
def _verifier(certificates: tuple[bytes, ...]) -> Verifier:
    builder = VerifierBuilder()
    for der in certificates:
        builder = builder.add_root_certificate(x509.load_der_x509_certificate(der))
    return builder.build()


def _der_length(size: int) -> bytes:
    """A DER length field (X.690 8.1.3: short form below 128, else long form)."""
    if size < 0x80:
        return bytes([size])
    encoded = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(encoded)]) + encoded
