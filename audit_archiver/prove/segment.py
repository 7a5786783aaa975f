"""Downloading the proved segment, checking it in full, and keeping one line's proof.

The segment is checked by :func:`~audit_archiver.verify.worker.check_object`,
the one total check ``verify`` and ``query`` make (seal, key, body size and
hash, decompression, every line's header, seq and time, Merkle root, and in a
bucket the version's Object Lock retention); any exception while reading is a
problem of the object, never a traceback. While it runs, its ``on_line`` hook
hands each line's leaf hash to an
:class:`~audit_archiver.core.merkle.InclusionProofBuilder` (memory O(log n))
and keeps the target line. What was kept is used only when the check found
no problem and the seal it authenticated is the one the search read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from audit_archiver.core.merkle import InclusionProofBuilder
from audit_archiver.errors import ObjectNotFoundError
from audit_archiver.prove.archive import StreamArchive
from audit_archiver.verify.seal_reader import SealRead
from audit_archiver.verify.segment_check import Limits
from audit_archiver.verify.worker import CheckSettings, SegmentTask, check_object

__all__ = ["ProvedLine", "prove_line"]


@dataclass(frozen=True)
class ProvedLine:
    """The target line as stored, its audit path, and the version's stored retention."""

    line: bytes
    path: list[bytes]
    retain_until: datetime | None


class _Keeper:
    """The ``on_line`` sink: the path of one leaf, and that leaf's line."""

    def __init__(self, index: int, tree_size: int) -> None:
        self.index = index
        self.builder = InclusionProofBuilder(index, tree_size)
        self.line: bytes | None = None

    def __call__(self, index: int, line: bytes | None, leaf: bytes) -> None:
        self.builder.add(leaf)
        if index == self.index:
            self.line = line


def prove_line(
    archive: StreamArchive, read: SealRead, *, limits: Limits, in_bucket: bool
) -> ProvedLine:
    """Check segment ``read`` in full and return the line of ``archive.seq`` with its path.

    In a bucket, the version's retention is checked with the segment and its
    retain-until date read with one HEAD of the same version (the check's
    result carries no date).

    Raises:
        NoProofError: any problem the check finds, a seal other than the one the
            search read, or a line longer than ``limits.max_line_bytes``.
        StorageError: the store failed.
    """
    seal = read.seal
    keeper = _Keeper(archive.seq - seal.first_seq, seal.event_count)
    task = SegmentTask(
        read.key,
        read.version_id,
        archive.stream,
        seal.segment_seq,
        archive.expected_key(archive.version_of(read)),
    )
    settings = CheckSettings(
        spec=archive.store,
        policy=archive.policy,
        check_retention=in_bucket,
        min_retention_days=None,
        limits=limits,
    )
    result = check_object(archive.store, task, settings, on_line=keeper)
    if result.problems:
        raise archive.failure(*result.problems)
    if result.seal_hash != read.seal_hash:
        raise archive.fail(
            "malformed_segment",
            read.key,
            "the object's seal changed between two reads",
            expected=read.seal_hash,
            found=str(result.seal_hash),
        )
    if keeper.line is None:
        raise archive.fail(
            "event_invalid",
            read.key,
            f"event seq {archive.seq} is longer than {limits.max_line_bytes} bytes: not proved",
        )
    retain_until = None
    if in_bucket:
        try:
            retain_until = archive.store.head(read.key, read.version_id).retain_until
        except ObjectNotFoundError as e:
            raise archive.fail("malformed_segment", read.key, f"cannot be read: {e}") from e
    return ProvedLine(keeper.line, keeper.builder.proof(), retain_until)
