"""The chain from a proved segment to the stream's head, read seal by seal.

Every listed number after the proved segment is read in order, its seal with
:func:`~audit_archiver.verify.seal_reader.read_seal` (a ranged read,
authenticated, allowed by the policy, naming its own object). The rule is the
writer's and the verifier's (ADR 7, :mod:`audit_archiver.verify.chain`):

- an authenticated seal must continue the last authenticated one by
  :func:`~audit_archiver.core.chain.link_faults` (its ``prev_seal_hash`` is
  the previous seal's hash, ``first_seq`` and times go on) and name the same
  key prefix; if it does not, there is no proof (the chain is broken, or the
  objects stepped over held a segment of the stream);
- an object whose seal does not authenticate (a foreign object, junk), or a
  number with no object, is stepped over *when* the next authenticated seal
  links to the last authenticated one: that is how the writer steps over an
  object it did not write. The numbers in the chain then jump; the hash link
  is the evidence;
- objects after the newest linked seal that do not authenticate are not part
  of the chain: it ends at that seal, the head (the head need not be the
  newest object).

What was stepped over is returned (the prover prints it as warnings): the
problems of each object, and each run of numbers with no object as one
problem (``segments 3..999999999998 are missing``), never one per number, so
junk at a far number costs nothing. Only
what a proof needs is kept per seal (:class:`LinkedSeal`: its bytes, hash and
parsed fields), not the frames. Seals are read by a few threads at once, a
window at a time; the links are checked in order.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from audit_archiver.core.chain import ChainHead, link_faults
from audit_archiver.core.layout import parse_segment_key
from audit_archiver.core.seal import Seal
from audit_archiver.core.segment import parse_signature_line
from audit_archiver.prove.archive import StreamArchive
from audit_archiver.verify.problems import Problem
from audit_archiver.verify.seal_reader import SealRead

__all__ = ["WINDOW", "Chain", "LinkedSeal", "read_chain"]

WINDOW = 256
"""Seals read ahead at most: a failure stops the walk within one window of reads."""


@dataclass(frozen=True)
class LinkedSeal:
    """One seal of the chain: its stored bytes, their hash, its fields, and its key."""

    seal: Seal
    seal_hash: str
    seal_bytes: bytes
    key: str


@dataclass(frozen=True)
class Chain:
    """The seals after the proved segment up to the head, in order, and the head's
    signature (None when the chain is empty).

    ``stepped_over``: the problems of the objects between linked seals that the
    chain steps over, and one per run of missing numbers there; ``after_head``:
    those of the objects after the head, which are not part of it (the missing
    numbers there are not reported).
    """

    seals: tuple[LinkedSeal, ...]
    head_signature: bytes | None
    stepped_over: tuple[Problem, ...]
    after_head: tuple[Problem, ...]


def _in_windows(
    pool: ThreadPoolExecutor, archive: StreamArchive, numbers: list[int]
) -> Iterator[tuple[int, SealRead | tuple[Problem, ...]]]:
    for start in range(0, len(numbers), WINDOW):
        window = numbers[start : start + WINDOW]
        yield from zip(window, pool.map(archive.attempt, window), strict=True)


def _prefix(seal: Seal) -> str:
    parts = parse_segment_key(seal.object_key)
    assert parts is not None  # parse_seal checked the layout
    return parts.prefix


def _missing(archive: StreamArchive, first: int, last: int) -> list[Problem]:
    """One ``sequence_gap`` for the run of unlisted numbers ``first..last`` (none when the
    run is empty), on the key of its first number. A run is never expanded: junk at a
    far number (``999999999999``) costs one problem, not one per number."""
    if first > last:
        return []
    detail = (
        f"segment {first} is missing" if first == last else f"segments {first}..{last} are missing"
    )
    return [
        Problem(
            "sequence_gap",
            archive.key_of(first),
            detail,
            archive.stream,
            expected=str(first),
            found=str(last + 1),
        )
    ]


def read_chain(archive: StreamArchive, start: SealRead, *, workers: int) -> Chain:
    """The seals after ``start`` up to the newest one linked to it (the head).

    Raises:
        NoProofError: an authenticated seal that does not link to the last
            linked one (with the problems of what was stepped over before it),
            or names another key prefix; two objects of one number that both
            authenticate.
        StorageError: the store failed.
    """
    after = start.seal.segment_seq
    numbers = [n for n in archive.segments.numbers() if n > after]
    head = ChainHead().after(start.seal, start.seal_hash)
    prefix = _prefix(start.seal)
    seals: list[LinkedSeal] = []
    stepped: list[Problem] = []
    pending: list[Problem] = []  # since the last linked seal, in number order
    objects: list[Problem] = []  # the same, without the runs of missing numbers
    signature: bytes | None = None
    previous = after
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for number, read in _in_windows(pool, archive, numbers):
            pending += _missing(archive, previous + 1, number - 1)
            previous = number
            if not isinstance(read, SealRead):
                pending += read
                objects += read
                continue
            faults = link_faults(head, read.seal)
            if faults:
                fault = faults[0]
                problem = Problem(
                    fault.kind,
                    read.key,
                    f"{fault.detail} (the last linked seal is segment {head.next_segment_seq - 1})",
                    archive.stream,
                    expected=fault.expected,
                    found=fault.found,
                )
                raise archive.failure(problem, *pending)
            if _prefix(read.seal) != prefix:
                raise archive.fail(
                    "prefix_mismatch",
                    read.key,
                    "the seal names another key prefix than the proved segment",
                    expected=prefix,
                    found=_prefix(read.seal),
                )
            stepped += pending
            pending = []
            objects = []
            seals.append(LinkedSeal(read.seal, read.seal_hash, read.frame.seal_bytes, read.key))
            signature = parse_signature_line(read.frame.signature_line)[0]
            head = head.after(read.seal, read.seal_hash)
    # After the head, numbers with no object are not evidence of anything (the stream
    # has not reached them): only the objects there are reported.
    return Chain(tuple(seals), signature, tuple(stepped), tuple(objects))
