"""Settings of a ``prove`` run, and the run: locate, check, walk to the head, write.

The written file is checked with :func:`~audit_archiver.core.proof.check_proof`
(the ``verify-proof`` check, same policy) before it is written, so ``prove``
never writes a proof that ``verify-proof`` would refuse with the same keys.
It is written atomically and never over an existing file (as ``keygen``
refuses to overwrite keys): a proof handed to an auditor is not replaced by
mistake.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from audit_archiver._files import write_new
from audit_archiver.core.encoding import format_timestamp
from audit_archiver.core.layout import validate_stream_id
from audit_archiver.core.line import MAX_SEQ
from audit_archiver.core.proof import (
    MAX_PROOF_BYTES,
    Proof,
    ProofVerdict,
    check_proof,
    encode_proof,
)
from audit_archiver.core.segment import SealFrame, parse_signature_line
from audit_archiver.core.timestamp import parse_timestamp_line
from audit_archiver.errors import ConfigurationError, ProofError, TimestampError
from audit_archiver.prove.archive import StreamArchive
from audit_archiver.prove.chain import Chain, read_chain
from audit_archiver.prove.locate import find_segment
from audit_archiver.prove.segment import prove_line
from audit_archiver.verify.problems import Problem
from audit_archiver.verify.run import ArchiveSettings
from audit_archiver.verify.segment_check import Limits

__all__ = ["ProveOutcome", "ProveSettings", "run_prove"]


@dataclass(frozen=True, kw_only=True)
class ProveSettings(ArchiveSettings):
    """Everything the ``prove`` command was asked to do."""

    stream: str
    seq: int
    out: Path
    workers: int = 16


@dataclass(frozen=True)
class ProveOutcome:
    """A written proof: the file, its content, the verdict of its self-check, and the
    warnings (problems that did not stop the proof: objects the chain stepped over or
    that follow its head, later versions or delete markers on the keys it uses)."""

    path: Path
    proof: Proof
    verdict: ProofVerdict
    size: int
    warnings: tuple[Problem, ...] = ()


def _check_settings(settings: ProveSettings) -> None:
    try:
        validate_stream_id(settings.stream)
    except ValueError as e:
        raise ConfigurationError(str(e)) from e
    if not 0 <= settings.seq <= MAX_SEQ:
        raise ConfigurationError("--seq must be from 0 to 2**63-1")
    if settings.workers < 1:
        raise ConfigurationError("workers must be at least 1")
    if settings.out.exists() or settings.out.is_symlink():
        raise ConfigurationError(f"{settings.out} exists; refusing to overwrite it")
    if not settings.out.parent.is_dir():
        raise ConfigurationError(f"the folder of --out {settings.out} does not exist")


def _timestamp_token(frame: SealFrame) -> bytes | None:
    """The segment's RFC 3161 token (DER), when its frame carries one.

    Segment format v1.1 adds an optional third line to the seal block,
    ``{"timestamp":"<base64 DER>"}`` (``docs/FORMAT.md`` section 13). The proof
    carries the token as stored: it is not signed by the seal's key and binds
    itself to the seal hash (``verify-proof --tsa-cert`` checks it). A line
    that is not a token is left out.
    """
    if frame.timestamp_line is None:
        return None
    try:
        return parse_timestamp_line(frame.timestamp_line)
    except TimestampError:
        return None


def _with_context(problems: tuple[Problem, ...], context: str) -> tuple[Problem, ...]:
    return tuple(
        Problem(p.kind, p.key, f"{p.detail}; {context}", p.stream, p.expected, p.found)
        for p in problems
    )


def _warnings(archive: StreamArchive, used: set[str], chain: Chain) -> tuple[Problem, ...]:
    """What the prover says on stderr without refusing: see :class:`ProveOutcome`."""
    head = chain.seals[-1].seal.segment_seq if chain.seals else None
    listing = tuple(p for p in archive.listing_problems if p.key in used)
    return (
        *_with_context(listing, "the proof uses the original version"),
        *_with_context(
            chain.stepped_over,
            "stepped over: the next segment links by hash to the one before (ADR 7)",
        ),
        *_with_context(chain.after_head, f"after the head (segment {head}), not in the chain"),
    )


def run_prove(settings: ProveSettings, now: datetime | None = None) -> ProveOutcome:
    """Make, self-check and write the proof of event ``seq`` of ``stream``.

    Raises:
        ConfigurationError: bad settings, keys or output path.
        NoProofError: the archive does not prove the event (the problems found).
        ProofError: the proof would be too large, or does not check.
        StorageError: the store failed.
    """
    _check_settings(settings)
    source = settings.source("prove")
    policy = settings.policy()
    archive = StreamArchive.list(
        source.spec.open(),
        policy,
        stream=settings.stream,
        seq=settings.seq,
        key_base=source.key_base,
        seal_prefix=source.seal_prefix,
    )
    target = find_segment(archive)
    proved = prove_line(archive, target, limits=Limits(), in_bucket=source.in_bucket)
    chain = read_chain(archive, target, workers=settings.workers)
    signature, _ = parse_signature_line(target.frame.signature_line)
    proof = Proof(
        stream=settings.stream,
        seq=settings.seq,
        event_line=proved.line,
        leaf_index=settings.seq - target.seal.first_seq,
        tree_size=target.seal.event_count,
        inclusion_path=tuple(proved.path),
        seal=target.frame.seal_bytes,
        signature=signature,
        object_key=target.seal.object_key,
        version_id=target.version_id,
        retain_until=None if proved.retain_until is None else format_timestamp(proved.retain_until),
        chain=tuple(linked.seal_bytes for linked in chain.seals),
        head_signature=chain.head_signature,
        proved_at=format_timestamp(now or datetime.now(UTC)),
        timestamp=_timestamp_token(target.frame),
    )
    try:
        data = encode_proof(proof)
    except ValueError as e:
        raise archive.fail("event_invalid", target.key, f"cannot be put in a proof: {e}") from e
    if len(data) > MAX_PROOF_BYTES:
        raise ProofError(
            f"the proof would be {len(data)} bytes, over the {MAX_PROOF_BYTES}-byte limit of a"
            f" proof file ({len(chain.seals)} later segments to the head)"
        )
    verdict = check_proof(proof, policy)
    if not verdict.ok:  # a bug, or keys that changed under us: never write such a proof
        reasons = "; ".join(f"{f.reason}: {f.detail}" for f in verdict.failures)
        raise ProofError(f"the proof does not check: {reasons}")
    try:
        write_new(settings.out, data)
    except FileExistsError as e:
        raise ConfigurationError(f"{settings.out} exists; refusing to overwrite it") from e
    except OSError as e:
        raise ConfigurationError(f"cannot write {settings.out}: {e.strerror}") from e
    used = {target.key, *(linked.key for linked in chain.seals)}
    return ProveOutcome(settings.out, proof, verdict, len(data), _warnings(archive, used, chain))
