"""Checks of one stored segment on its own: framing, seal, signature, body, key.

:func:`check_segment` reads one object from a stream (``read(n)``) and never
raises for bad data: every finding becomes a
:class:`~audit_archiver.verify.problems.Problem` in the result. Chain checks
across segments live in :mod:`audit_archiver.verify.chain`.

Order (authentication first, see ``docs/FORMAT.md``):

1. the seal frame (bounded) and the signature line;
2. ``key_id`` taken from the seal bytes by byte pattern, no parse;
3. ``unknown_key`` / ``signature_invalid``: stop, nothing else of the seal is read;
4. strict parse (``malformed_segment``), then canonical form (``not_canonical``);
5. the trust policy (``key_not_allowed``);
6. key, the time-stamp token if any (:mod:`audit_archiver.verify.timestamps`),
   body size and hash, decompression, lines, Merkle root.

A segment that fails 1-5 yields exactly one problem and no seal. After that,
at most one problem per kind per segment: the first finding of a kind is
reported, with the number of findings of that kind in the segment, so a
hostile key holder cannot make the report grow with the number of lines.

Memory is O(chunk + zstd window + one inflated piece + one line under
``deep``), never O(body): the body is hashed and inflated as it is read, the
whole lines of each inflated piece (at most about
:data:`~audit_archiver.core.segment.INFLATE_PIECE`) are checked together (in
bulk, lists of the piece's lines, their headers and leaf hashes: a few times
the piece, as its lines are never shorter than a sealed line can be), leaves
go into a :class:`~audit_archiver.core.merkle.MerkleFolder` (one block of leaf
hashes at most), and of a line that spans pieces only its first
:data:`~audit_archiver.core.line.HEADER_MAX_BYTES` bytes, its last byte and a
running leaf hash are kept (whole lines, up to ``max_line_bytes``, only with
``deep``).

Speed: a piece's lines as the writer makes them (each header the next seq,
times not going back) are checked in bulk, a few C-level passes and one
hash a line; any other piece goes line by line, which names what is wrong.
The two agree on every input (``tests/unit/verify/test_segment_lines_bulk.py``).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from audit_archiver.core.encoding import is_archiver_timestamp
from audit_archiver.core.line import (
    HEADER_MAX_BYTES,
    MAX_SEQ,
    canonical_line_fault,
    parse_line_prefix,
)
from audit_archiver.core.merkle import MerkleFolder
from audit_archiver.core.seal import Seal, SealRejectedError, seal_hash
from audit_archiver.core.segment import BodyInflater, read_seal_frame
from audit_archiver.errors import MalformedSegmentError
from audit_archiver.verify.problems import Notice, Problem
from audit_archiver.verify.seal_reader import authenticate_frame, key_faults
from audit_archiver.verify.timestamps import TimestampCheck, TimestampPolicy, check_timestamp

if TYPE_CHECKING:
    from audit_archiver.core.trust import TrustPolicy

__all__ = ["Limits", "LineSink", "Readable", "SegmentResult", "check_segment"]

MiB = 1024 * 1024
READ_CHUNK = 256 * 1024
_STAMP_BYTES = 29
"""A line's ``received_at`` value and the ``",`` after it."""
_SHORTEST_LINE = len(b'{"seq":0,"received_at":"",}\n') + _STAMP_BYTES - 2
"""The shortest sealed line, its newline included (seq 0, no event field)."""


def _is_stamp(stamp: bytes) -> bool:
    """True for an archiver timestamp followed by ``",`` (see :meth:`_Lines.usual_block`)."""
    return stamp.endswith(b'",') and is_archiver_timestamp(stamp[:-2].decode("latin-1"))


LineSink = Callable[[int, bytes | None, bytes], None]
"""``on_line(index, line, leaf)``: see :func:`check_segment`."""


class Readable(Protocol):
    """What :func:`check_segment` reads from (a storage ``ObjectStream``, ``io.BytesIO``)."""

    def read(self, size: int, /) -> bytes:
        """Up to ``size`` more bytes; ``b""`` at the end."""
        ...


@dataclass(frozen=True)
class Limits:
    """Resource bounds of one segment check (documented in ``docs/FORMAT.md``).

    Attributes:
        max_object_bytes: the largest object read (4 x the 16 MiB segments the
            agent writes with default settings); more is ``object_too_large``.
        max_body_bytes: the largest inflated body; a zstd frame must declare
            its content size, at most this.
        max_window: the largest zstd window (decoder memory) accepted.
        max_line_bytes: the longest event line ``--deep`` parses (1 MiB of
            event plus the header); a longer one is ``event_invalid``.
    """

    max_object_bytes: int = 64 * MiB
    max_body_bytes: int = 64 * MiB
    max_window: int = 8 * MiB
    max_line_bytes: int = 1 * MiB + HEADER_MAX_BYTES


@dataclass(frozen=True)
class SegmentResult:
    """What one segment's own checks found. Holds no event data.

    ``seal`` is set only when the seal is authenticated, well formed,
    canonical and allowed by the trust policy (its ``key_id`` is then the key
    that signed it). ``object_sha256`` is the SHA-256 of the whole object when
    it was read to the end (the worker sets it), for state files of folders,
    which have no version ids. ``timestamp`` is the verdict on the seal
    frame's time-stamp token (None when the seal was not authenticated).
    """

    key: str
    stream: str
    segment_seq: int
    object_bytes: int
    seal: Seal | None = None
    seal_hash: str | None = None
    events: int = 0
    problems: tuple[Problem, ...] = field(default=())
    version_id: str | None = None
    notices: tuple[Notice, ...] = field(default=())
    object_sha256: str | None = None
    timestamp: TimestampCheck | None = None


@dataclass
class _Finding:
    problem: Problem
    count: int = 1


@dataclass
class _Findings:
    """At most one problem per kind; later findings of a kind are only counted."""

    key: str
    stream: str
    found: dict[str, _Finding] = field(default_factory=dict)

    def add(self, kind: str, detail: str, expected: object = None, found: object = None) -> None:
        known = self.found.get(kind)
        if known is not None:
            known.count += 1
            return
        problem = Problem(
            kind,
            self.key,
            detail,
            stream=self.stream,
            expected=None if expected is None else str(expected),
            found=None if found is None else str(found),
        )
        self.found[kind] = _Finding(problem)

    def problems(self) -> tuple[Problem, ...]:
        out = []
        for finding in self.found.values():
            problem = finding.problem
            if finding.count > 1:
                detail = f"{problem.detail} (first of {finding.count} such findings)"
                problem = Problem(
                    problem.kind,
                    problem.key,
                    detail,
                    problem.stream,
                    problem.expected,
                    problem.found,
                )
            out.append(problem)
        return tuple(out)


class _StopCheckError(Exception):
    """The object failed steps 1-5 or a limit: the check ends here."""


class _ByteCounter:
    """Counts what is read and enforces ``max_object_bytes`` (a second line of defence)."""

    def __init__(self, source: Readable, limit: int) -> None:
        self._source = source
        self._limit = limit
        self.total = 0

    def read(self, size: int) -> bytes:
        data = self._source.read(size)
        self.total += len(data)
        if self.total > self._limit:
            raise _TooLargeError
        return data


class _TooLargeError(Exception):
    """More than ``max_object_bytes`` arrived."""


def check_segment(
    key: str,
    stream: Readable,
    policy: TrustPolicy,
    *,
    stream_id: str,
    segment_seq: int,
    expected_object_key: str | None = None,
    limits: Limits | None = None,
    deep: bool = False,
    on_line: LineSink | None = None,
    timestamps: TimestampPolicy | None = None,
) -> SegmentResult:
    """Check one stored segment read from ``stream`` and return every problem found.

    ``key`` is where the object was found (bucket key, or path relative to a
    downloaded folder); ``stream_id`` and ``segment_seq`` are parsed from it.
    With ``expected_object_key`` the seal must name exactly that key; without
    it (a folder whose prefix is unknown) the seal's key must end with ``key``.
    ``deep`` also checks that each line is one canonical JSON object.

    ``on_line(index, line, leaf)`` is called for each of the seal's
    ``event_count`` lines of an authenticated segment, in order, as it is
    checked: the line's index in the segment, its bytes (None when it is longer
    than ``limits.max_line_bytes``) and its RFC 6962 leaf hash. The segment is
    verified only when the returned result has no problems: keep what the sink
    got until then (``query`` and ``prove`` do).

    ``timestamps`` says how a time-stamp token is checked (default: parsed and
    its imprint compared with the seal hash, no trust anchors, not required).

    Exceptions from ``stream.read`` (transport failures, the storage layer's
    own size limit and checksum) propagate: the caller decides what they mean.
    """
    limits = limits or Limits()
    out = _Findings(key, stream_id)
    source = _ByteCounter(stream, limits.max_object_bytes)
    check = _Check(
        key,
        segment_seq,
        expected_object_key,
        limits,
        deep,
        out,
        source,
        on_line,
        timestamps=timestamps or TimestampPolicy(),
    )
    try:
        check.run(policy)
    except _StopCheckError:
        check.seal = None
        check.events = 0
    except _TooLargeError:
        out.found.clear()
        out.add(
            "object_too_large",
            f"object is larger than the limit of {limits.max_object_bytes} bytes",
            expected=limits.max_object_bytes,
            found=f"more than {limits.max_object_bytes}",
        )
        check.seal = None
        check.events = 0
    seal = check.seal
    return SegmentResult(
        key,
        stream_id,
        segment_seq,
        source.total,
        seal,
        seal_hash(check.seal_bytes) if seal is not None else None,
        check.events,
        out.problems(),
        timestamp=check.timestamp if seal is not None else None,
    )


class _Check:
    """The state of one segment check (see :func:`check_segment` for the order)."""

    def __init__(  # noqa: PLR0917 (private; one call site)
        self,
        key: str,
        segment_seq: int,
        expected_object_key: str | None,
        limits: Limits,
        deep: bool,
        out: _Findings,
        source: _ByteCounter,
        on_line: LineSink | None,
        *,
        timestamps: TimestampPolicy,
    ) -> None:
        self.key = key
        self.segment_seq = segment_seq
        self.expected_object_key = expected_object_key
        self.limits = limits
        self.deep = deep
        self.out = out
        self.source = source
        self.on_line = on_line
        self.seal: Seal | None = None
        self.seal_bytes = b""
        self.events = 0
        self.timestamps = timestamps
        self.timestamp: TimestampCheck | None = None

    def fail(
        self, kind: str, detail: str, expected: object = None, found: object = None
    ) -> _StopCheckError:
        self.out.add(kind, detail, expected, found)
        return _StopCheckError()

    def run(self, policy: TrustPolicy) -> None:
        try:
            frame = read_seal_frame(self.source.read)
        except MalformedSegmentError as e:
            raise self.fail("malformed_segment", str(e)) from None
        self.seal_bytes = frame.seal_bytes
        try:
            seal, _ = authenticate_frame(frame, policy, key=self.key)
        except SealRejectedError as e:
            raise self.fail(e.kind, str(e), found=e.found) from None
        self.seal = seal
        for fault in key_faults(
            seal,
            self.key,
            stream=self.out.stream,
            segment_seq=self.segment_seq,
            expected_object_key=self.expected_object_key,
        ):
            self.out.add("key_mismatch", fault.detail, fault.expected, fault.found)
        self.timestamp = check_timestamp(
            frame.timestamp_line, seal, seal_hash(frame.seal_bytes), self.timestamps
        )
        if self.timestamp.problem is not None:
            self.out.add(*self.timestamp.problem)
        if frame.container != seal.compression:
            self.out.add(
                "malformed_segment",
                "the object's container differs from the seal's compression",
                expected=seal.compression,
                found=frame.container,
            )
        self.check_body(seal, frame.container)

    def check_body(self, seal: Seal, container: str) -> None:
        """Hash, size and inflate the stored body in one pass; check its lines."""
        out = self.out
        digest = hashlib.sha256()
        size = 0
        inflater: BodyInflater | None = BodyInflater(
            container, max_body_bytes=self.limits.max_body_bytes, max_window=self.limits.max_window
        )
        lines = _Lines(seal, out, self.deep, self.limits.max_line_bytes, self.on_line)
        while chunk := self.source.read(READ_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            if inflater is None:
                continue
            try:
                for piece in inflater.feed(chunk):
                    lines.feed(piece)
            except MalformedSegmentError as e:
                out.add("malformed_segment", str(e))
                inflater = None
        if inflater is not None:
            try:
                inflater.finish()
            except MalformedSegmentError as e:
                out.add("malformed_segment", str(e))
                inflater = None
        if size != seal.body_size:
            out.add(
                "body_size_mismatch",
                "stored body length differs from the seal's body_size",
                expected=seal.body_size,
                found=size,
            )
        found = digest.hexdigest()
        if found != seal.body_hash:
            out.add(
                "body_hash_mismatch",
                "compressed body differs from the sealed one",
                expected=seal.body_hash,
                found=found,
            )
        if inflater is not None:
            self.events = lines.finish()


class _Lines:
    """Splits inflated pieces into event lines and checks each as it completes.

    A line is kept whole only when it fits in one piece (at most a piece) or,
    under ``deep``, up to ``max_line_bytes``; otherwise only its header bytes,
    its last byte and a running leaf hash are kept. Lines past the seal's
    ``event_count`` are only counted: the count already differs, and so must
    the Merkle root.
    """

    def __init__(
        self,
        seal: Seal,
        out: _Findings,
        deep: bool,
        max_line_bytes: int,
        on_line: LineSink | None = None,
    ) -> None:
        self.seal = seal
        self.out = out
        self.deep = deep
        self.on_line = on_line
        self.keep = deep or on_line is not None
        self.max_line = max_line_bytes
        self.merkle = MerkleFolder()
        self.count = 0
        self.first_time: str | None = None
        self.last_time: str | None = None
        self.ended_with_newline = True
        # A line that spans pieces:
        self.partial: hashlib._Hash | None = None
        self.head = b""
        self.last_byte = b""
        self.parts: list[bytes] | None = None
        self.partial_size = 0

    def feed(self, piece: bytes) -> None:
        if not piece:
            return
        self.ended_with_newline = piece.endswith(b"\n")
        if self.count > self.seal.event_count:
            self.count += piece.count(b"\n")
            return
        start = 0
        if self.partial is not None:
            end = piece.find(b"\n")
            if end < 0:
                self.extend(piece)
                return
            self.extend(piece[:end])
            self.end_partial()
            start = end + 1
        last = piece.rfind(b"\n")
        if last >= start:
            self.complete_lines(piece[start:last])
            start = last + 1
        if start < len(piece) and self.count <= self.seal.event_count:
            self.extend(piece[start:])

    def complete_lines(self, block: bytes) -> None:
        """Check the lines of ``block``: whole lines joined by newlines.

        The usual block (every line in place, as the writer makes them) is
        checked in bulk (:meth:`usual_block`); any other goes line by line,
        which names what is wrong. Bulk needs a list of the lines, so only a
        block whose lines average at least :data:`_SHORTEST_LINE` bytes (the
        shortest a sealed line can be) is split: the lists then cost about
        as much as the block, whatever its bytes.
        """
        count = block.count(b"\n") + 1
        if (
            not self.keep
            and self.count + count <= self.seal.event_count
            and len(block) + 1 >= count * _SHORTEST_LINE
        ):
            lines = block.split(b"\n")
            times = self.usual_block(lines)
            if times is not None:
                sha = hashlib.sha256
                self.merkle.extend([sha(b"\x00" + line).digest() for line in lines])
                self.count += len(lines)
                self.first_time = self.first_time or times[0]
                self.last_time = times[1]
                return
        start = 0
        for index in range(count):
            if self.count > self.seal.event_count:
                self.count += count - index
                return
            end = block.find(b"\n", start)
            self.line(block[start:] if end < 0 else block[start:end])
            start = end + 1

    def usual_block(self, lines: list[bytes]) -> tuple[str, str] | None:
        """The first and last ``received_at`` of ``lines`` when every one of them
        passes :meth:`check` with no finding; None when any might not.

        The same rules, checked another way: each line starts with the header
        :func:`~audit_archiver.core.line.seal_line` writes for the next seq (so
        a seq in range, without leading zeros), its ``received_at`` is an
        archiver timestamp of a real date followed by ``",``, the times never
        go back, and it ends with ``}``.
        """
        first = self.seal.first_seq + self.count
        end = first + len(lines)
        if end - 1 > MAX_SEQ or not all(map(bytes.endswith, lines, itertools.repeat(b"}"))):
            return None
        prefixes = [b'{"seq":%d,"received_at":"' % seq for seq in range(first, end)]
        if not all(map(bytes.startswith, lines, prefixes)):
            return None
        stamps = [
            line[len(prefix) : len(prefix) + _STAMP_BYTES]
            for line, prefix in zip(lines, prefixes, strict=True)
        ]
        if stamps != sorted(stamps) or not all(map(_is_stamp, set(stamps))):
            return None
        earliest, latest = stamps[0][:-2].decode(), stamps[-1][:-2].decode()
        if self.last_time is not None and earliest < self.last_time:
            return None
        return earliest, latest

    def extend(self, part: bytes) -> None:
        if self.partial is None:
            self.partial = hashlib.sha256(b"\x00")
            self.head, self.last_byte, self.partial_size = b"", b"", 0
            self.parts = [] if self.keep else None
        self.partial.update(part)
        self.partial_size += len(part)
        if len(self.head) < HEADER_MAX_BYTES:
            self.head += part[: HEADER_MAX_BYTES - len(self.head)]
        if part:
            self.last_byte = part[-1:]
        if self.parts is not None:
            if self.partial_size <= self.max_line:
                self.parts.append(part)
            else:
                self.parts = None
                if self.deep:
                    self.out.add(
                        "event_invalid",
                        f"line {self.count + 1} is longer than {self.max_line} bytes",
                    )

    def end_partial(self) -> None:
        assert self.partial is not None
        leaf = self.partial.digest()
        header = parse_line_prefix(self.head) if self.last_byte == b"}" else None
        line = b"".join(self.parts) if self.parts is not None else None
        self.partial, self.parts = None, None
        self.check(leaf, header, line, long=self.deep and line is None)

    def line(self, line: bytes) -> None:
        leaf = hashlib.sha256(b"\x00" + line).digest()
        header = parse_line_prefix(line) if line.endswith(b"}") else None
        too_long = len(line) > self.max_line
        if too_long and self.deep:
            self.out.add(
                "event_invalid", f"line {self.count + 1} is longer than {self.max_line} bytes"
            )
        self.check(leaf, header, None if too_long else line, long=self.deep and too_long)

    def check(
        self, leaf: bytes, header: tuple[int, str] | None, line: bytes | None, *, long: bool
    ) -> None:
        index = self.count
        self.count += 1
        if index >= self.seal.event_count:
            return
        self.merkle.add(leaf)
        if self.on_line is not None:
            self.on_line(index, line, leaf)
        if header is None:
            self.out.add(
                "event_invalid",
                f"line {index + 1} lacks the seq/received_at header or the closing }}",
            )
            return
        if self.deep and not long and line is not None:
            fault = canonical_line_fault(line)
            if fault is not None:
                self.out.add("event_invalid", f"line {index + 1}: {fault}")
        seq, received_at = header
        expected = self.seal.first_seq + index
        if seq != expected:
            self.out.add(
                "sequence_gap", f"line {index + 1} has seq {seq}", expected=expected, found=seq
            )
        if self.last_time is not None and received_at < self.last_time:
            self.out.add(
                "time_regression",
                f"line {index + 1} was received before the line above it",
                expected=f">= {self.last_time}",
                found=received_at,
            )
        self.first_time = self.first_time or received_at
        self.last_time = received_at

    def finish(self) -> int:
        """Check what only the whole body tells; return the number of lines."""
        if self.partial is not None:
            self.end_partial()
        seal, out = self.seal, self.out
        if self.count and not self.ended_with_newline:
            out.add("malformed_segment", "body does not end with a newline")
        if self.count > seal.event_count:
            out.add(
                "merkle_mismatch",
                "the body has more lines than the seal's event_count, so another Merkle root",
                expected=seal.merkle_root,
                found="not computed",
            )
        else:
            root = self.merkle.root().hex()
            if root != seal.merkle_root:
                out.add(
                    "merkle_mismatch",
                    "Merkle root of the event lines differs from the seal",
                    expected=seal.merkle_root,
                    found=root,
                )
        if self.count != seal.event_count:
            out.add(
                "seal_mismatch",
                "event count differs from the seal",
                expected=seal.event_count,
                found=self.count,
            )
        times = (self.first_time, self.last_time)
        if self.count <= seal.event_count and times != (
            seal.first_received_at,
            seal.last_received_at,
        ):
            out.add(
                "seal_mismatch",
                "received_at bounds differ from the seal",
                expected=f"{seal.first_received_at}..{seal.last_received_at}",
                found=f"{self.first_time}..{self.last_time}",
            )
        if seal.last_received_at is not None and seal.sealed_at < seal.last_received_at:
            out.add(
                "time_regression",
                "sealed_at is before the last event was received",
                expected=f">= {seal.last_received_at}",
                found=seal.sealed_at,
            )
        return self.count
