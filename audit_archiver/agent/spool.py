"""The agent's durable spool: a write-ahead log of accepted events and sealed
segments waiting for S3.

Layout of the spool directory::

    LOCK                    flock'd while an agent uses the spool
    meta.json               stream, prefix and key id the spool belongs to
    head.json               the chain head after the newest segment S3 confirmed
    wal/<first seq>.wal     accepted events, one record per commit of a request
                            (see :func:`_encode_record`)
    wal/u<n>.wal            events accepted before the chain head was known
                            (unnumbered records; see "Unnumbered events")
    sealed/<segment>.seg    sealed segments, exactly the bytes to upload
    sealed.new/, reseal.json, sealed.old/
                            only while sealed segments are re-sealed under new
                            numbers (see :meth:`Spool.replace_sealed`)

Unnumbered events: a new spool (no ``head.json``) whose agent cannot read the
stream's head from the bucket still acknowledges events: they are fsync'd as
*unnumbered* records in ``wal/u<n>.wal``. :meth:`Spool.initialize_head`
numbers them once the head is known: it writes them, numbered from the head's
``next_seq`` and with ``received_at`` raised to the head's floor, as one
numbered WAL file (atomically), then records ``head.json`` (the commit point),
then deletes the ``u`` files. Recovery undoes a numbering that has no
``head.json`` yet and finishes one that has, so a crash at any point neither
loses nor renumbers an acknowledged event.

Invariants:

- An event is acknowledged only after its WAL record is fsync'd.
- The spool is the one place that numbers events: :meth:`Spool.append` gives
  each group the next seqs (the WAL's end is the only "next seq" counter; the
  chain head's ``next_seq`` follows from the seals, a batch's first seq from its runs).
- A WAL file is named after the seq of its first record and is created
  exclusively; recovery deletes a numbered file that holds no record (killed
  between creating it and writing to it). So no name is ever listed twice: the
  trim drops a file once the next file's first seq is sealed, and a file
  listed twice would be dropped while its own events still wait (the
  crash-loop loss of issue 10).
- WAL records hold gap-free runs of seq numbers in order, continuing ``head.json``.
  A record is a run (:class:`~audit_archiver.core.line.EventRun`): first seq,
  count, ``received_at`` and the encoded events; the sealed lines' header is
  added when sealing, so the hot path writes one record per request.
- A sealed segment is written to a temporary file, fsync'd and renamed into
  place (and the directory fsync'd) before the WAL records it covers are dropped;
  it is deleted only after ``head.json`` records that S3 holds it.
- Re-sealing (a foreign object took the next key, ADR 7) writes the new set of
  sealed segments to ``sealed.new/``, then ``reseal.json`` (the commit point),
  then swaps the directories; recovery finishes a committed swap and drops an
  uncommitted one, so the spool holds either the old set or the new one.
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
import shutil
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
_UNNUMBERED = -1  # first_seq of a run read from an unnumbered record (never leaves the spool)
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
    unnumbered_events: int = 0
    """Events acknowledged before the head was known, numbered by
    :meth:`Spool.initialize_head` (only while ``uploaded_head`` is None)."""

    @property
    def sealing_head(self) -> ChainHead | None:
        """The chain head the next sealed segment continues from."""
        head = self.uploaded_head
        for sealed in self.sealed:
            head = (head or ChainHead()).after(sealed.seal, sealed.seal_hash)
        return head


def _encode_record(run: EventRun) -> list[bytes]:
    """A WAL record: ``<header crc> R <first seq> <count> <received_at> <size> <data crc>\\n``
    then the run's data (``size`` bytes); both CRC-32s in 8 hex digits. An
    unnumbered run (``first_seq`` -1) is ``U -`` instead of ``R <first seq>``."""
    kind_and_seq = b"U -" if run.first_seq == _UNNUMBERED else b"R %d" % run.first_seq
    header = b"%s %d %s %d %08x" % (
        kind_and_seq,
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
        if len(fields) != 7 or int(fields[0], 16) != zlib.crc32(line[9:]):
            return None
        if fields[1] == b"U" and fields[2] == b"-":
            first_seq = _UNNUMBERED
        elif fields[1] == b"R":
            first_seq = int(fields[2])
        else:
            return None
        return (
            first_seq,
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
        self._unnumbered_files: list[Path] = []
        self._unnumbered: list[EventRun] = []
        self._uploaded_head: ChainHead | None = None
        self._head_known = False
        self._next_seq = 0
        self._sealed_through = 0
        self._received_floor = ""
        self._wal_bytes = 0
        self._sealed_bytes = 0
        self._sealed_count = 0

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
        self._recover_reseal()
        self._uploaded_head = self._read_head()
        self._head_known = self._uploaded_head is not None
        state = SpoolState(self._uploaded_head, self._read_sealed())
        sealing = state.sealing_head
        self._unnumbered = self._read_unnumbered()
        if not self._head_known:
            self._drop_uncommitted_numbering()
        elif self._unnumbered_files:
            self._finish_numbering()
        state.unnumbered_events = sum(run.event_count for run in self._unnumbered)
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
        self._sealed_through = sealing.next_seq if sealing else 0
        if self._unnumbered:
            self._received_floor = self._unnumbered[-1].received_at
        elif state.pending:
            self._received_floor = state.pending[-1].received_at
        else:
            self._received_floor = (sealing.received_at_floor if sealing else None) or ""
        return state

    def _read_unnumbered(self) -> list[EventRun]:
        """The unnumbered runs (``wal/u<n>.wal``), in the order they were acknowledged."""
        runs: list[EventRun] = []
        for path in sorted(self._wal_dir.glob("u*.wal")):
            self._unnumbered_files.append(path)
            found: list[EventRun] = []
            self._wal_bytes += self._read_wal_file(path, 0, found, unnumbered=True)
            runs += found
        return runs

    def _drop_uncommitted_numbering(self) -> None:
        """Without ``head.json`` no numbered WAL file is committed: one can only be
        the copy :meth:`initialize_head` wrote before a crash. The ``u`` files
        still hold those events; drop the copy."""
        for path in self._wal_dir.glob("[0-9]*.wal"):
            log.warning("dropping an uncommitted numbering of the WAL", extra={"path": str(path)})
            path.unlink()
        fsync_directory(self._wal_dir)

    def _finish_numbering(self) -> None:
        """``head.json`` is recorded, so the numbered copy of the ``u`` files is
        complete (it was renamed into place first): delete the ``u`` files."""
        head = self._uploaded_head
        assert head is not None
        if self._unnumbered and not (self._wal_dir / self._wal_name(head.next_seq)).exists():
            raise StorageError(
                f"spool {self.root} is corrupt: unnumbered events but no numbered WAL at"
                f" seq {head.next_seq}"
            )
        self._delete_unnumbered_files()

    def _delete_unnumbered_files(self) -> None:
        for path in self._unnumbered_files:
            self._wal_bytes -= path.stat().st_size
            path.unlink()
        if self._unnumbered_files:
            fsync_directory(self._wal_dir)
        self._unnumbered_files = []
        self._unnumbered = []

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
            self._sealed_count += 1
        for previous, current in itertools.pairwise(found):
            if current.segment_seq != previous.segment_seq + 1:
                raise StorageError(f"sealed segments in {self._sealed_dir} have a gap")
        return found

    def _read_wal(self, sealed_through: int) -> list[EventRun]:
        """The runs not sealed yet, from the numbered WAL files.

        A file that holds no complete record (created, then killed before its
        first record was written, or holding only a torn one: nothing in it
        was acknowledged) is deleted: the next append creates a file of the
        same name (the next seq), and one name must never be two entries of
        the WAL (trimming the first would delete the second's events).
        """
        pending: list[EventRun] = []
        emptied = False
        for path in sorted(self._wal_dir.glob("[0-9]*.wal")):
            first = int(path.stem)
            size = self._read_wal_file(path, sealed_through, pending)
            if size == 0:
                log.info("dropping a WAL file that holds no record", extra={"path": str(path)})
                path.unlink()
                emptied = True
                continue
            self._wal_files.append((first, path))
            self._wal_bytes += size
        if emptied:
            fsync_directory(self._wal_dir)
        for previous, current in itertools.pairwise(pending):
            if current.first_seq != previous.next_seq:
                raise StorageError(
                    f"WAL in {self._wal_dir} is corrupt: seq {current.first_seq} follows"
                    f" {previous.next_seq - 1}"
                )
        return pending

    def _read_wal_file(
        self, path: Path, sealed_through: int, out: list[EventRun], *, unnumbered: bool = False
    ) -> int:
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
            if (run.first_seq == _UNNUMBERED) != unnumbered:
                raise StorageError(
                    f"WAL {path} is corrupt at byte {offset}: a"
                    f"{' numbered' if unnumbered else 'n unnumbered'} record"
                )
            if unnumbered:
                out.append(run)
            elif run.next_seq > sealed_through:
                if run.first_seq < sealed_through:
                    run = run.split(sealed_through - run.first_seq)[1]
                out.append(run)
            offset = end
        return len(data)

    # -- events ---------------------------------------------------------------

    @property
    def next_seq(self) -> int:
        """The seq the next appended event gets (once the head is known)."""
        return self._next_seq

    @property
    def head_known(self) -> bool:
        """True once the chain head is recorded (events are numbered as they come)."""
        return self._head_known

    def unconfirmed(self) -> tuple[int, int]:
        """``(sealed segments, events not sealed yet)`` the spool holds: what S3
        has not confirmed (unnumbered events included)."""
        with self._lock:
            unsealed = self._next_seq - self._sealed_through if self._head_known else 0
            unsealed += sum(run.event_count for run in self._unnumbered)
            return self._sealed_count, unsealed

    def used_bytes(self) -> int:
        """Bytes the spool holds (WAL and sealed segments)."""
        return self._wal_bytes + self._sealed_bytes

    def initialize_head(self, head: ChainHead) -> list[EventRun]:
        """Record where a new spool's chain starts (genesis, or the bucket's head)
        and number the events acknowledged before it was known; return them.

        The unnumbered runs get seqs from ``head.next_seq`` on, in the order
        they were acknowledged, and ``received_at`` no lower than the head's
        floor (nor than the run before). They are written as one numbered WAL
        file, then ``head.json`` commits the numbering, then the unnumbered
        files go; a crash in between is finished or undone by recovery.

        Raises:
            StorageError: the spool already has a head, or cannot be written.
        """
        with self._lock:
            if self._head_known or (self.root / "head.json").exists():
                raise StorageError(f"spool {self.root} already has a chain head")
            runs: list[EventRun] = []
            seq = head.next_seq
            floor = head.received_at_floor or ""
            for run in self._unnumbered:
                floor = max(floor, run.received_at)
                runs.append(EventRun(seq, floor, run.event_count, run.data))
                seq += run.event_count
            if self._wal is not None:
                self._wal.close()
                self._wal = None
            if runs:
                path = self._wal_dir / self._wal_name(head.next_seq)
                data = b"".join(part for run in runs for part in _encode_record(run))
                try:
                    write_atomically(path, data)
                except OSError as e:
                    raise StorageError(f"cannot number the spool's events: {e.strerror}") from e
                self._wal_files.append((head.next_seq, path))
                self._wal_bytes += len(data)
            failpoints.hit("numbered-before-head")
            self.record_head(head)
            self._head_known = True
            failpoints.hit("numbered-after-head")
            try:
                self._delete_unnumbered_files()
            except OSError as e:
                raise StorageError(f"cannot delete numbered WAL files: {e.strerror}") from e
            self._next_seq = seq
            self._sealed_through = head.next_seq
            self._received_floor = floor
            return runs

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

    def append(self, groups: Sequence[EncodedEvents], received_at: str) -> list[EventRun] | None:
        """Number each group of events (the next seqs, in order), append them to
        the WAL as one run each and fsync once; return the runs.

        ``received_at`` is raised to the previous run's (or the head's floor),
        so it never goes backwards. While the chain head is not known yet the
        groups are appended unnumbered and None is returned: the spool holds
        them until :meth:`initialize_head` numbers them.

        Raises:
            ValueError: a group holds no event.
            StorageError: the write or fsync failed (nothing is acknowledged).
        """
        with self._lock:
            numbered = self._head_known
            received_at = max(received_at, self._received_floor)
            runs: list[EventRun] = []
            seq = self._next_seq if numbered else _UNNUMBERED
            for events in groups:
                if events.event_count <= 0:
                    raise ValueError("a WAL record needs at least one event")
                runs.append(EventRun(seq, received_at, events.event_count, events.data))
                if numbered:
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
            self._received_floor = received_at
            if handle.tell() >= self._wal_file_bytes:
                handle.close()
                self._wal = None
            if not numbered:
                self._unnumbered += runs
                return None
            self._next_seq = seq
            return runs

    def _undo_partial_write(self, handle: BinaryIO, start: int) -> None:
        try:
            handle.truncate(start)
            handle.seek(start)
        except OSError:
            handle.close()
            self._wal = None

    @staticmethod
    def _wal_name(first_seq: int) -> str:
        return f"{first_seq:0{_SEQ_WIDTH}d}.wal"

    def _current_wal(self) -> BinaryIO:
        """The open WAL file, creating the next one (named after the next seq,
        or ``u<n>`` while the head is unknown) when there is none.

        Raises:
            StorageError: the next file's name is taken (recovery deletes
                empty WAL files, so a taken name means a corrupt spool).
        """
        if self._wal is None:
            if self._head_known:
                path = self._wal_dir / self._wal_name(self._next_seq)
            else:
                path = self._wal_dir / f"u{len(self._unnumbered_files):0{_SEQ_WIDTH}d}.wal"
            try:
                self._wal = open(path, "xb")  # noqa: SIM115
            except FileExistsError as e:
                raise StorageError(f"spool {self.root} is corrupt: {path} already exists") from e
            except OSError as e:
                raise StorageError(f"cannot create WAL file {path}: {e.strerror}") from e
            if self._head_known:
                self._wal_files.append((self._next_seq, path))
            else:
                self._unnumbered_files.append(path)
            fsync_directory(self._wal_dir)
            failpoints.hit("wal-opened")
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
            self._sealed_count += 1
            self._sealed_through = seal.next_seq
            self._trim_wal(seal.next_seq)
        return SealedFile(seal, segment.seal_hash, len(segment.data))

    def replace_sealed(self, segments: Sequence[SealedSegment]) -> list[SealedFile]:
        """Replace every sealed segment in the spool with ``segments`` (the same
        bodies re-sealed under new numbers, ADR 7), crash-safely.

        The new set is written to ``sealed.new/``, then ``reseal.json`` commits
        it, then the directories are swapped; recovery finishes a committed swap
        and drops an uncommitted one. The caller keeps the batcher from storing
        a segment meanwhile.

        Raises:
            StorageError: the spool cannot be written (the old set stays).
        """
        staging = self.root / "sealed.new"
        try:
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            for segment in segments:
                name = self._sealed_path(segment.seal.segment_seq).name
                write_atomically(staging / name, segment.data)
            fsync_directory(self.root)
            failpoints.hit("reseal-staged")
            write_atomically(self.root / "reseal.json", json.dumps(len(segments)).encode())
        except OSError as e:
            raise StorageError(f"cannot re-seal segments in {self.root}: {e.strerror}") from e
        failpoints.hit("reseal-committed")
        self._recover_reseal()
        with self._lock:
            self._sealed_bytes = sum(len(segment.data) for segment in segments)
            self._sealed_count = len(segments)
        return [SealedFile(s.seal, s.seal_hash, len(s.data)) for s in segments]

    def _recover_reseal(self) -> None:
        """Finish a committed re-seal (``reseal.json`` exists) or drop an uncommitted one.

        Raises:
            StorageError: the directories cannot be renamed or removed.
        """
        staging, old = self.root / "sealed.new", self.root / "sealed.old"
        marker = self.root / "reseal.json"
        try:
            if not marker.exists():
                for leftover in (staging, old):
                    shutil.rmtree(leftover, ignore_errors=True)
                return
            if staging.exists():
                if self._sealed_dir.exists():
                    shutil.rmtree(old, ignore_errors=True)
                    self._sealed_dir.rename(old)
                staging.rename(self._sealed_dir)
                fsync_directory(self.root)
            failpoints.hit("reseal-swapped")
            shutil.rmtree(old, ignore_errors=True)
            marker.unlink()
            fsync_directory(self.root)
        except OSError as e:
            raise StorageError(f"cannot finish re-sealing in {self.root}: {e.strerror}") from e

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
            self._sealed_count -= 1

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
        "unnumbered_events": state.unnumbered_events,
        "sealed_segments": len(state.sealed),
        "next_segment": head.next_segment_seq if head else None,
        "next_seq": head.next_seq if head else None,
    }
