"""The agent's durable spool: a write-ahead log of accepted events and sealed
segments waiting for S3.

Layout of the spool directory::

    LOCK                    flock'd while an agent uses the spool
    meta.json               stream, prefix and key id the spool belongs to
    head.json               the chain head after the newest segment S3 confirmed
    wal/<first seq>.wal     accepted events, one record per commit of a request
                            (see :func:`_encode_record`)
    sealed/<segment>.seg    sealed segments, exactly the bytes to upload

Invariants:

- An event is acknowledged only after its WAL record is fsync'd.
- The spool is the one place that numbers events: :meth:`Spool.append` gives
  each group the next seqs (the WAL's end is the only "next seq" counter; the
  chain head's ``next_seq`` follows from the seals, a batch's first seq from its runs).
- WAL records hold gap-free runs of seq numbers in order, continuing ``head.json``.
  A record is a run (:class:`~audit_archiver.core.line.EventRun`): first seq,
  count, ``received_at`` and the encoded events; the sealed lines' header is
  added when sealing, so the hot path writes one record per request.
- A sealed segment is written to a temporary file, fsync'd and renamed into
  place (and the directory fsync'd) before the WAL records it covers are dropped;
  it is deleted only after ``head.json`` records that S3 holds it.
- So after a crash at any point, every acknowledged event is in exactly one of:
  the WAL (not sealed yet), a sealed file (not confirmed yet) or S3; and
  re-running the pipeline from the spool seals and uploads each exactly once
  (a re-upload of a segment S3 already holds is recognised as identical).
"""

from __future__ import annotations

import fcntl
import itertools
import json
import logging
import os
import zlib
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from threading import Lock
from typing import Any, BinaryIO

from audit_archiver._files import fsync_directory, write_atomically
from audit_archiver.agent import failpoints
from audit_archiver.core.chain import ChainHead
from audit_archiver.core.line import EncodedEvents, EventRun
from audit_archiver.core.seal import Seal, parse_seal
from audit_archiver.core.segment import MAX_SEAL_BLOCK, SealedSegment, open_segment
from audit_archiver.errors import ConfigurationError, MalformedSegmentError, StorageError

__all__ = ["SealedFile", "Spool", "SpoolIdentity", "SpoolState", "describe"]

log = logging.getLogger(__name__)

_SEQ_WIDTH = 12
_SEAL_FRAME_MAX = MAX_SEAL_BLOCK + 64  # a seal frame: the seal block and a few header bytes


@dataclass(frozen=True)
class SpoolIdentity:
    """What a spool belongs to; a spool is never reused for another stream or
    prefix, nor for another key unless that key is a declared rotation of it."""

    stream: str
    prefix: str
    key_id: str


@dataclass(frozen=True)
class SealedFile:
    """A sealed segment waiting in the spool for upload."""

    seal: Seal
    seal_hash: str
    size: int

    @property
    def segment_seq(self) -> int:
        """The segment's number in its stream."""
        return self.seal.segment_seq

    @property
    def key(self) -> str:
        """The object key the segment is uploaded to."""
        return self.seal.object_key


@dataclass
class SpoolState:
    """What :meth:`Spool.open` found."""

    uploaded_head: ChainHead | None
    sealed: list[SealedFile] = field(default_factory=list)
    pending: list[EventRun] = field(default_factory=list)

    @property
    def sealing_head(self) -> ChainHead | None:
        """The chain head the next sealed segment continues from."""
        head = self.uploaded_head
        for sealed in self.sealed:
            head = (head or ChainHead()).after(sealed.seal, sealed.seal_hash)
        return head


def _encode_record(run: EventRun) -> list[bytes]:
    """A WAL record: ``<header crc> R <first seq> <count> <received_at> <size> <data crc>\\n``
    then the run's data (``size`` bytes); both CRC-32s in 8 hex digits."""
    header = b"R %d %d %s %d %08x" % (
        run.first_seq,
        run.event_count,
        run.received_at.encode(),
        len(run.data),
        zlib.crc32(run.data),
    )
    return [b"%08x %s\n" % (zlib.crc32(header), header), run.data]


def _decode_record(data: bytes, offset: int) -> tuple[EventRun | None, int]:
    """The record at ``offset`` and where it ends; None (and where it would end,
    or the end of ``data``) when it is incomplete or fails a check."""
    newline = data.find(b"\n", offset)
    if newline < 0:
        return None, len(data)
    header = _decode_record_header(data[offset:newline])
    if header is None:
        return None, newline + 1
    first_seq, count, received_at, size, data_crc = header
    end = newline + 1 + size
    payload = data[newline + 1 : end]
    if (
        len(payload) != size
        or zlib.crc32(payload) != data_crc
        or payload.count(b"\n") != count
        or (count and not payload.endswith(b"\n"))
    ):
        return None, min(end, len(data))
    return EventRun(first_seq, received_at, count, payload), end


def _valid_record_follows(data: bytes, offset: int) -> bool:
    """Whether a valid record starts after a line break past ``offset``.

    A bad record with nothing valid after it is the torn end of a write that
    was never acknowledged (nothing after it was fsync'd); one followed by a
    valid record is corruption of acknowledged data.
    """
    newline = data.find(b"\n", offset)
    while newline >= 0:
        if _decode_record(data, newline + 1)[0] is not None:
            return True
        newline = data.find(b"\n", newline + 1)
    return False


def _decode_record_header(line: bytes) -> tuple[int, int, str, int, int] | None:
    """``(first_seq, count, received_at, size, data_crc)``, or None when not a valid header."""
    fields = line.split(b" ")
    try:
        if len(fields) != 7 or fields[1] != b"R" or int(fields[0], 16) != zlib.crc32(line[9:]):
            return None
        return (
            int(fields[2]),
            int(fields[3]),
            fields[4].decode("ascii"),
            int(fields[5]),
            int(fields[6], 16),
        )
    except ValueError:
        return None


class Spool:
    """The spool directory of one agent. Thread-safe."""

    def __init__(self, root: Path, *, wal_file_bytes: int = 16 << 20) -> None:
        self.root = root
        self._wal_dir = root / "wal"
        self._sealed_dir = root / "sealed"
        self._wal_file_bytes = wal_file_bytes
        self._lock = Lock()
        self._lock_handle: BinaryIO | None = None
        self._wal: BinaryIO | None = None
        self._wal_files: list[tuple[int, Path]] = []
        self._uploaded_head: ChainHead | None = None
        self._next_seq = 0
        self._wal_bytes = 0
        self._sealed_bytes = 0

    # -- opening and recovery -------------------------------------------------

    def open(
        self, identity: SpoolIdentity, *, previous_key_ids: Collection[str] = ()
    ) -> SpoolState:
        """Lock the spool, check it belongs to ``identity`` and recover its state.

        A spool written with one of ``previous_key_ids`` (key rotation) is taken
        over: its identity is rewritten to ``identity``'s key, and its sealed
        segments (signed by the old key) and chain head are continued as they are.

        Raises:
            ConfigurationError: another agent holds the spool, or it belongs to
                another stream, prefix, or a key not in ``previous_key_ids``.
            StorageError: the spool cannot be read or written, or is corrupt.
        """
        try:
            for directory in (self.root, self._wal_dir, self._sealed_dir):
                directory.mkdir(parents=True, exist_ok=True)
            self._lock_handle = open(self.root / "LOCK", "ab")  # noqa: SIM115
        except OSError as e:
            raise StorageError(f"cannot use spool {self.root}: {e.strerror}") from e
        try:
            fcntl.flock(self._lock_handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            self.close()
            raise ConfigurationError(f"spool {self.root} is in use by another agent") from e
        try:
            return self._recover(identity, previous_key_ids)
        except BaseException:
            self.close()
            raise

    def _recover(self, identity: SpoolIdentity, previous_key_ids: Collection[str]) -> SpoolState:
        self._check_identity(identity, previous_key_ids)
        self._uploaded_head = self._read_head()
        state = SpoolState(self._uploaded_head, self._read_sealed())
        sealing = state.sealing_head
        state.pending = self._read_wal(sealing.next_seq if sealing else 0)
        if state.pending and sealing is None:
            raise StorageError(f"spool {self.root} holds events but no chain head (corrupt)")
        if state.pending and sealing and state.pending[0].first_seq != sealing.next_seq:
            raise StorageError(
                f"spool {self.root} is corrupt: WAL resumes at seq {state.pending[0].first_seq},"
                f" expected {sealing.next_seq}"
            )
        if state.pending:
            self._next_seq = state.pending[-1].next_seq
        else:
            self._next_seq = sealing.next_seq if sealing else 0
        return state

    def _check_identity(self, identity: SpoolIdentity, previous_key_ids: Collection[str]) -> None:
        path = self.root / "meta.json"
        wanted = asdict(identity)
        try:
            if not path.exists():
                write_atomically(path, json.dumps(wanted).encode())
                return
            found = json.loads(path.read_bytes())
            if not isinstance(found, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as e:
            raise StorageError(f"cannot read {path}: {e}") from e
        if found == wanted:
            return
        old_key = str(found.get("key_id"))
        if found != {**wanted, "key_id": old_key}:
            raise ConfigurationError(
                f"spool {self.root} belongs to stream {found.get('stream')!r} (prefix"
                f" {found.get('prefix')!r}, key {old_key[:12]}…); use another"
                " --spool directory for this stream"
            )
        if old_key not in previous_key_ids:
            raise ConfigurationError(
                f"spool {self.root} of stream {identity.stream!r} was written with key"
                f" {old_key[:12]}…, not this agent's key {identity.key_id[:12]}…; to rotate"
                " the stream's signing key, pass the old public key with"
                " --previous-public-key (the chain continues from it)"
            )
        try:
            write_atomically(path, json.dumps(wanted).encode())
        except OSError as e:
            raise StorageError(f"cannot write {path}: {e.strerror}") from e
        log.info(
            "signing key rotated; the spool continues the chain",
            extra={"previous_key_id": old_key, "key_id": identity.key_id},
        )

    def _read_head(self) -> ChainHead | None:
        """The recorded head; one written by an earlier version lacks
        ``last_sealed_at`` and reads as None there."""
        path = self.root / "head.json"
        if not path.exists():
            return None
        try:
            return ChainHead(**json.loads(path.read_bytes()))
        except (OSError, ValueError, TypeError) as e:
            raise StorageError(f"cannot read {path}: {e}") from e

    def _read_sealed(self) -> list[SealedFile]:
        """The sealed segments' seals; only their seal frames are read (the
        bodies are read when uploaded)."""
        found = []
        for path in sorted(self._sealed_dir.glob("*.seg")):
            try:
                with open(path, "rb") as handle:
                    frame = handle.read(_SEAL_FRAME_MAX)
                    size = os.fstat(handle.fileno()).st_size
                opened = open_segment(frame)
                seal = parse_seal(opened.seal_bytes)
            except OSError as e:
                raise StorageError(f"cannot read sealed segment {path}: {e.strerror}") from e
            except MalformedSegmentError as e:
                raise StorageError(f"sealed segment {path} is corrupt: {e}") from e
            found.append(SealedFile(seal, opened.seal_hash, size))
            self._sealed_bytes += size
        for previous, current in itertools.pairwise(found):
            if current.segment_seq != previous.segment_seq + 1:
                raise StorageError(f"sealed segments in {self._sealed_dir} have a gap")
        return found

    def _read_wal(self, sealed_through: int) -> list[EventRun]:
        pending: list[EventRun] = []
        for path in sorted(self._wal_dir.glob("*.wal")):
            first = int(path.stem)
            self._wal_files.append((first, path))
            self._wal_bytes += self._read_wal_file(path, sealed_through, pending)
        for previous, current in itertools.pairwise(pending):
            if current.first_seq != previous.next_seq:
                raise StorageError(
                    f"WAL in {self._wal_dir} is corrupt: seq {current.first_seq} follows"
                    f" {previous.next_seq - 1}"
                )
        return pending

    def _read_wal_file(self, path: Path, sealed_through: int, out: list[EventRun]) -> int:
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            run, end = _decode_record(data, offset)
            if run is None:
                if data[offset + 8 : offset + 16] == b' {"seq":':
                    raise StorageError(
                        f"WAL {path} was written by an earlier version of audit-archiver (one"
                        " record per event); drain this spool with that version, then upgrade"
                    )
                if _valid_record_follows(data, offset):
                    raise StorageError(f"WAL {path} is corrupt at byte {offset}")
                with open(path, "r+b") as handle:  # a torn final record was never acknowledged
                    handle.truncate(offset)
                    os.fsync(handle.fileno())
                return offset
            if run.next_seq > sealed_through:
                if run.first_seq < sealed_through:
                    run = run.split(sealed_through - run.first_seq)[1]
                out.append(run)
            offset = end
        return len(data)

    # -- events ---------------------------------------------------------------

    @property
    def next_seq(self) -> int:
        """The seq the next appended event gets."""
        return self._next_seq

    def used_bytes(self) -> int:
        """Bytes the spool holds (WAL and sealed segments)."""
        return self._wal_bytes + self._sealed_bytes

    def initialize_head(self, head: ChainHead) -> None:
        """Record where a new spool's chain starts (genesis, or the bucket's head).

        Raises:
            StorageError: the spool already has events or a head, or cannot be written.
        """
        with self._lock:
            if self._wal_files or (self.root / "head.json").exists():
                raise StorageError(f"spool {self.root} already has a chain head")
            self.record_head(head)
            self._next_seq = head.next_seq

    def record_head(self, head: ChainHead) -> None:
        """Durably record the chain head after the newest segment S3 holds.

        Raises:
            StorageError: the file cannot be written.
        """
        try:
            write_atomically(self.root / "head.json", json.dumps(asdict(head)).encode())
        except OSError as e:
            raise StorageError(f"cannot write chain head in {self.root}: {e.strerror}") from e
        self._uploaded_head = head

    def append(self, groups: Sequence[EncodedEvents], received_at: str) -> list[EventRun]:
        """Number each group of events (the next seqs, in order), append them to
        the WAL as one run each and fsync once; return the runs.

        Raises:
            ValueError: a group holds no event.
            StorageError: the write or fsync failed (nothing is numbered).
        """
        with self._lock:
            runs: list[EventRun] = []
            seq = self._next_seq
            for events in groups:
                if events.event_count <= 0:
                    raise ValueError("a WAL record needs at least one event")
                runs.append(EventRun(seq, received_at, events.event_count, events.data))
                seq += events.event_count
            parts = [part for run in runs for part in _encode_record(run)]
            handle = self._current_wal()
            start = handle.tell()
            try:
                handle.writelines(parts)
                handle.flush()
                os.fsync(handle.fileno())
            except OSError as e:
                self._undo_partial_write(handle, start)
                raise StorageError(f"cannot write the spool WAL: {e.strerror}") from e
            self._wal_bytes += handle.tell() - start
            self._next_seq = seq
            if handle.tell() >= self._wal_file_bytes:
                handle.close()
                self._wal = None
            return runs

    def _undo_partial_write(self, handle: BinaryIO, start: int) -> None:
        try:
            handle.truncate(start)
            handle.seek(start)
        except OSError:
            handle.close()
            self._wal = None

    def _current_wal(self) -> BinaryIO:
        if self._wal is None:
            path = self._wal_dir / f"{self._next_seq:0{_SEQ_WIDTH}d}.wal"
            self._wal = open(path, "ab")  # noqa: SIM115
            self._wal_files.append((self._next_seq, path))
            fsync_directory(self._wal_dir)
        return self._wal

    # -- sealed segments ------------------------------------------------------

    def _sealed_path(self, segment_seq: int) -> Path:
        return self._sealed_dir / f"{segment_seq:0{_SEQ_WIDTH}d}.seg"

    def store_sealed(self, segment: SealedSegment) -> SealedFile:
        """Durably store a sealed segment, then drop the WAL records it covers.

        Raises:
            StorageError: the segment cannot be written.
        """
        seal = segment.seal
        path = self._sealed_path(seal.segment_seq)
        try:
            write_atomically(path, segment.data)
        except OSError as e:
            raise StorageError(f"cannot store sealed segment in {path}: {e.strerror}") from e
        failpoints.hit("after-seal")
        with self._lock:
            self._sealed_bytes += len(segment.data)
            self._trim_wal(seal.next_seq)
        return SealedFile(seal, segment.seal_hash, len(segment.data))

    def _trim_wal(self, sealed_through: int) -> None:
        keep: list[tuple[int, Path]] = []
        files = self._wal_files
        for index, entry in enumerate(files):
            path = entry[1]
            following = files[index + 1][0] if index + 1 < len(files) else self._next_seq
            if following <= sealed_through:
                if index == len(files) - 1 and self._wal is not None:
                    self._wal.close()
                    self._wal = None
                self._wal_bytes -= path.stat().st_size
                path.unlink()
            else:
                keep.append(entry)
        if len(keep) != len(files):
            fsync_directory(self._wal_dir)
        self._wal_files = keep

    def read_sealed(self, sealed: SealedFile) -> bytes:
        """Return the bytes of a sealed segment.

        Raises:
            StorageError: the file cannot be read.
        """
        path = self._sealed_path(sealed.segment_seq)
        try:
            return path.read_bytes()
        except OSError as e:
            raise StorageError(f"cannot read sealed segment {path}: {e.strerror}") from e

    def mark_uploaded(self, sealed: SealedFile) -> None:
        """Record that S3 holds ``sealed``, then delete it from the spool.

        Raises:
            StorageError: the spool cannot be updated.
        """
        self.record_head((self._uploaded_head or ChainHead()).after(sealed.seal, sealed.seal_hash))
        failpoints.hit("after-head")
        path = self._sealed_path(sealed.segment_seq)
        try:
            path.unlink()
            fsync_directory(self._sealed_dir)
        except OSError as e:
            raise StorageError(f"cannot delete uploaded segment {path}: {e.strerror}") from e
        with self._lock:
            self._sealed_bytes -= sealed.size

    def close(self) -> None:
        """Close the WAL and release the spool lock."""
        with self._lock:
            if self._wal is not None:
                self._wal.close()
                self._wal = None
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None


def describe(state: SpoolState) -> dict[str, Any]:
    """Summarise a recovered spool for the start-up log line."""
    head = state.sealing_head
    return {
        "pending_events": sum(run.event_count for run in state.pending),
        "sealed_segments": len(state.sealed),
        "next_segment": head.next_segment_seq if head else None,
        "next_seq": head.next_seq if head else None,
    }
