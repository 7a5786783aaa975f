"""Authenticating a segment's seal: from its frame, or from a store without the body.

:func:`authenticate_frame` is the seal half of a segment check (steps 1-5 of
``docs/FORMAT.md`` section 8.2: signature line, key id by pattern, signature,
strict parse, canonical form, trust policy), shared by the full check
(:mod:`audit_archiver.verify.segment_check`) and by the commands that read only
seals (``query`` to find a time range, ``prove`` to walk a chain to its head).
:func:`key_faults` says whether a seal names the object it was found at.
:func:`read_seal` reads just the seal frame of one object version (a ranged
read) and applies both, so a seal is trusted only after its signature and the
policy allow it, and only where it says it belongs.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

from audit_archiver.core.encoding import parse_rfc3339
from audit_archiver.core.seal import Seal, SealRejectedError, authenticate_seal, seal_hash
from audit_archiver.core.segment import (
    MAX_SEAL_BLOCK,
    SealFrame,
    parse_signature_line,
    read_seal_frame,
)
from audit_archiver.errors import MalformedSegmentError, ObjectNotFoundError, TransportChecksumError
from audit_archiver.verify.problems import Problem

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from audit_archiver.core.layout import SegmentKey
    from audit_archiver.core.signing import TrustedKey
    from audit_archiver.core.trust import TrustPolicy
    from audit_archiver.storage.base import ObjectStore, ObjectVersion

__all__ = [
    "FIRST_READ",
    "MAX_SEAL_FRAME",
    "KeyFault",
    "SealRead",
    "SealUnreadableError",
    "authenticate_frame",
    "key_faults",
    "read_listed_seals",
    "read_seal",
]

MAX_SEAL_FRAME = MAX_SEAL_BLOCK + 26
"""The most bytes a seal frame takes (a gzip seal member: 10 + 6 header, 10 trailer)."""
FIRST_READ = 16 * 1024
"""The first ranged read: a seal, its signature line and a timestamp token fit."""


def authenticate_frame(
    frame: SealFrame, policy: TrustPolicy, *, key: str
) -> tuple[Seal, TrustedKey]:
    """Authenticate the seal in ``frame`` and check the trust policy allows it.

    Raises:
        SealRejectedError: with the problem kind: ``malformed_segment`` (a bad
            signature line or seal), ``unknown_key``, ``signature_invalid``,
            ``not_canonical`` or ``key_not_allowed``.
    """
    try:
        signature, signature_canonical = parse_signature_line(frame.signature_line)
    except MalformedSegmentError as e:
        raise SealRejectedError("malformed_segment", str(e), key=key) from e
    seal, trusted = authenticate_seal(
        frame.seal_bytes,
        signature,
        policy.key,
        signature_canonical=signature_canonical,
        key=key,
    )
    # parse_seal has checked sealed_at: an archiver timestamp, a real UTC date.
    refusal = policy.refusal(
        trusted.key_id, seal.stream, seal.object_key, parse_rfc3339(seal.sealed_at)
    )
    if refusal is not None:
        raise SealRejectedError("key_not_allowed", refusal, key=key, found=trusted.key_id)
    return seal, trusted


@dataclass(frozen=True)
class KeyFault:
    """One way an authenticated seal does not belong where it was found (``key_mismatch``)."""

    detail: str
    expected: str
    found: str


def key_faults(
    seal: Seal, key: str, *, stream: str, segment_seq: int, expected_object_key: str | None
) -> list[KeyFault]:
    """Every way ``seal`` fails to name the object found at ``key``.

    With ``expected_object_key`` (the prefix is known) the seal must name
    exactly it; without (a folder whose prefix is unknown) its key must end
    with ``key``. Its stream and segment number must be the ones the key gives.
    """
    faults = []
    if expected_object_key is not None:
        matches = seal.object_key == expected_object_key
    else:
        matches = seal.object_key == key or seal.object_key.endswith("/" + key)
    if not matches:
        faults.append(
            KeyFault(
                "object is stored under another key than its seal names",
                expected_object_key or key,
                seal.object_key,
            )
        )
    if seal.stream != stream:
        faults.append(KeyFault("seal belongs to another stream", stream, seal.stream))
    if seal.segment_seq != segment_seq:
        faults.append(
            KeyFault("seal names another segment number", str(segment_seq), str(seal.segment_seq))
        )
    return faults


@dataclass(frozen=True)
class SealRead:
    """An authenticated seal read from a store, and the frame it came in."""

    seal: Seal
    seal_hash: str
    frame: SealFrame
    key: str
    version_id: str | None


class SealUnreadableError(Exception):
    """The object's seal could not be trusted; ``problem`` says why (its evidence)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.detail)
        self.problem = problem


def read_seal(
    store: ObjectStore,
    version: ObjectVersion,
    policy: TrustPolicy,
    *,
    stream: str,
    segment_seq: int,
    expected_object_key: str | None,
) -> SealRead:
    """Read and authenticate the seal of one object version without its body.

    One ranged read of :data:`FIRST_READ` bytes, a second only when the frame
    declares more (at most :data:`MAX_SEAL_FRAME`).

    Raises:
        SealUnreadableError: the object has no trusted seal naming it
            (``malformed_segment``, ``unknown_key``, ``signature_invalid``,
            ``not_canonical``, ``key_not_allowed`` or ``key_mismatch``), or it
            vanished (``malformed_segment``).
        StorageError: the store failed.
    """
    key = version.key

    def problem(
        kind: str, detail: str, expected: str | None = None, found: str | None = None
    ) -> SealUnreadableError:
        return SealUnreadableError(
            Problem(kind, key, detail, stream=stream, expected=expected, found=found)
        )

    try:
        data = store.read_head(key, version.version_id, size=FIRST_READ)
        try:
            frame = read_seal_frame(io.BytesIO(data).read)
        except MalformedSegmentError:
            if len(data) < FIRST_READ:
                raise
            data = store.read_head(key, version.version_id, size=MAX_SEAL_FRAME)
            frame = read_seal_frame(io.BytesIO(data).read)
        seal, _ = authenticate_frame(frame, policy, key=key)
    except SealRejectedError as e:
        raise problem(e.kind, str(e), found=e.found) from e
    except MalformedSegmentError as e:
        raise problem("malformed_segment", str(e)) from e
    except (ObjectNotFoundError, TransportChecksumError) as e:
        raise problem("malformed_segment", f"cannot be read: {e}") from e
    faults = key_faults(
        seal, key, stream=stream, segment_seq=segment_seq, expected_object_key=expected_object_key
    )
    if faults:
        fault = faults[0]
        raise problem("key_mismatch", fault.detail, fault.expected, fault.found)
    return SealRead(seal, seal_hash(frame.seal_bytes), frame, key, version.version_id)


def read_listed_seals(
    store: ObjectStore,
    entries: Sequence[tuple[SegmentKey, ObjectVersion]],
    policy: TrustPolicy,
    expected_object_key: Callable[[SegmentKey, ObjectVersion], str | None],
) -> tuple[list[SealRead], list[Problem]]:
    """:func:`read_seal` of every listed object of one segment number: the seals
    that authenticate, and why each other object's does not. More than one
    authenticated seal is the caller's ``duplicate_segment`` to report.

    Raises:
        StorageError: the store failed.
    """
    found: list[SealRead] = []
    problems: list[Problem] = []
    for location, version in entries:
        try:
            found.append(
                read_seal(
                    store,
                    version,
                    policy,
                    stream=location.stream,
                    segment_seq=location.segment_seq,
                    expected_object_key=expected_object_key(location, version),
                )
            )
        except SealUnreadableError as e:
            problems.append(e.problem)
    return found, problems
