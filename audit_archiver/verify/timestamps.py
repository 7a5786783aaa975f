"""Trusted timestamps in a verify run (``--tsa-cert``, ``--require-timestamps``).

Per segment (:func:`check_timestamp`, called by the segment check once the
seal is authenticated, never before): a token in the seal frame's third line
must be a canonical timestamp line holding one DER token whose imprint is the
seal hash, else ``timestamp_invalid``, with or without ``--tsa-cert``. With
``--tsa-cert`` the token must also verify completely
(:func:`~audit_archiver.core.timestamp.verify_token`: TSA signature, chain to
a given certificate at ``genTime``, extended key usage ``timeStamping``, and
``genTime`` not before ``sealed_at`` less five minutes), else
``timestamp_invalid``; without it the token is counted as not checked. A
segment without a token is ``timestamp_missing`` under
``--require-timestamps``, else counted.

Per stream (:class:`~audit_archiver.verify.timestamp_tally.TimestampTally`): the report's stream summary gains
``timestamped_segments`` (tokens that passed every check made) and
``newest_timestamp`` (the newest ``genTime`` of a token verified with
``--tsa-cert``), and notices, one per stream, say how many segments carry no
token (``not_timestamped``: when ``--tsa-cert`` is given or the stream has
tokens, so an archive that never used a TSA stays quiet) and how many tokens
were not checked (``timestamp_not_checked``: no ``--tsa-cert``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from audit_archiver.core.encoding import format_timestamp, parse_rfc3339
from audit_archiver.core.seal import Seal
from audit_archiver.core.segment import parse_timestamp_line
from audit_archiver.errors import TimestampError

if TYPE_CHECKING:
    from audit_archiver.core.timestamp import TsaTrust

__all__ = [
    "TimestampCheck",
    "TimestampPolicy",
    "TimestampStatus",
    "check_timestamp",
]


class TimestampStatus(StrEnum):
    """What became of one segment's token."""

    NONE = "none"
    """The segment carries no token."""
    VERIFIED = "verified"
    """Every check passed, with ``--tsa-cert``."""
    UNCHECKED = "unchecked"
    """Parsed and its imprint is the seal hash; no ``--tsa-cert`` to check more."""
    INVALID = "invalid"
    """A check failed (``timestamp_invalid``)."""


@dataclass(frozen=True)
class TimestampPolicy:
    """What the verifier does with tokens: the TSA trust anchors (``--tsa-cert``), if
    any, and whether a segment without a token is a problem (``--require-timestamps``)."""

    trust: TsaTrust | None = None
    required: bool = False


@dataclass(frozen=True)
class TimestampCheck:
    """The verdict on one segment's token.

    ``status`` says what became of it (:class:`TimestampStatus`); ``gen_time``
    is the TSA's time of a verified token (archiver timestamp format);
    ``problem`` is ``(kind, detail)`` when there is one.
    """

    status: TimestampStatus
    gen_time: str | None = None
    problem: tuple[str, str] | None = None


def check_timestamp(
    line: bytes | None, seal: Seal, seal_hash: str, policy: TimestampPolicy
) -> TimestampCheck:
    """Check the timestamp line of an authenticated segment (``line`` None: no token)."""
    if line is None:
        if policy.required:
            return TimestampCheck(
                TimestampStatus.NONE,
                problem=("timestamp_missing", "the segment carries no time-stamp token"),
            )
        return TimestampCheck(TimestampStatus.NONE)
    # Imported here: the RFC 3161 and X.509 parsers cost a run without tokens
    # a tenth of a second of start-up.
    from audit_archiver.core.timestamp import read_token, verify_token

    try:
        token = parse_timestamp_line(line)
        if policy.trust is None:
            read_token(token, seal_hash)
            return TimestampCheck(TimestampStatus.UNCHECKED)
        # parse_seal has checked sealed_at: an archiver timestamp, a real UTC date.
        sealed_at = parse_rfc3339(seal.sealed_at)
        gen_time = verify_token(token, seal_hash, policy.trust, sealed_at=sealed_at)
    except TimestampError as e:
        return TimestampCheck(TimestampStatus.INVALID, problem=("timestamp_invalid", str(e)))
    return TimestampCheck(TimestampStatus.VERIFIED, gen_time=format_timestamp(gen_time))
