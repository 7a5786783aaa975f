"""Seal runs of event lines into a stream's chain, and find where a chain ends.

:class:`StreamSealer` owns a stream's chain head (next segment number, previous
seal hash, next event seq, time floors; :class:`~audit_archiver.core.chain.ChainHead`,
the model the verifier shares) and advances it one segment at a time.
:func:`recover_chain_head` reads the newest segment of a stream from a store,
checks it with the writer's own key or one of its previous keys (key
rotation), and returns the head to continue from.

With a ``stamper`` (``agent --tsa-url``: :class:`~audit_archiver.agent.tsa.Stamper`)
each segment gets an RFC 3161 token over its seal hash right after it is
signed, in :meth:`StreamSealer.seal_body` and :meth:`StreamSealer.reseal`
(a re-sealed segment has a new seal, so a new token), before anyone stores it.
A stamper never fails a seal: it returns the segment unstamped instead.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from audit_archiver.core.chain import ChainHead
from audit_archiver.core.layout import parse_segment_key, segment_key, stream_prefix
from audit_archiver.core.seal import Seal, SealRejectedError, authenticate_seal, parse_seal
from audit_archiver.core.segment import (
    MAX_SEAL_BLOCK,
    SealedSegment,
    SegmentBody,
    assemble_segment,
    finish_segment,
    open_segment,
    prepare_body,
)
from audit_archiver.core.signing import Signer, TrustedKey
from audit_archiver.errors import IntegrityError, MalformedSegmentError
from audit_archiver.storage.base import ObjectStore, ObjectVersion

__all__ = [
    "SEAL_FRAME_MAX",
    "ForeignObject",
    "SegmentStamper",
    "StreamSealer",
    "authenticate_own",
    "original_version",
    "read_prefix",
    "recover_chain_head",
]

SEAL_FRAME_MAX = MAX_SEAL_BLOCK + 64
"""Bytes that always hold a segment's seal frame (the seal block and its frame header)."""
_ANY_SIZE = 1 << 62  # read_prefix reads a bounded prefix of an object of any size


class StreamSealer:
    """Seals consecutive segments of one stream with one signer."""

    def __init__(
        self,
        *,
        prefix: str,
        stream: str,
        signer: Signer,
        head: ChainHead,
        compression: str = "zstd",
        retention_days: int | None = None,
        stamper: SegmentStamper | None = None,
    ) -> None:
        self.prefix = prefix
        self.stream = stream
        self.head = head
        self.lock = threading.Lock()
        """Held while a segment is signed and stored, so a re-seal sees a stable head."""
        self._signer = signer
        self._compression = compression
        self._retention_days = retention_days
        self._stamper = stamper

    @property
    def compression(self) -> str:
        """The compression of the segments this sealer writes."""
        return self._compression

    def seal(self, lines: Sequence[bytes], sealed_at: str) -> SealedSegment:
        """Seal ``lines`` (seq starting at ``head.next_seq``) and advance the head.

        Raises:
            ValueError: the lines do not continue the stream's seq.
        """
        return self.seal_body(prepare_body(lines, self.head.next_seq, self._compression), sealed_at)

    def seal_body(self, prepared: SegmentBody, sealed_at: str) -> SealedSegment:
        """Sign a prepared body (:func:`~audit_archiver.core.segment.prepare_body` or
        :func:`~audit_archiver.core.segment.prepare_runs_body`) as the next segment
        and advance the head.

        Raises:
            ValueError: the body does not continue the stream's seq, or has
                another compression than this sealer's.
        """
        if prepared.first_seq != self.head.next_seq:
            raise ValueError(f"body starts at seq {prepared.first_seq}, not {self.head.next_seq}")
        if prepared.compression != self._compression:
            raise ValueError(f"body is {prepared.compression}, not {self._compression}")
        segment = finish_segment(
            prepared,
            prefix=self.prefix,
            stream=self.stream,
            segment_seq=self.head.next_segment_seq,
            prev_seal_hash=self.head.prev_seal_hash,
            sealed_at=sealed_at,
            signer=self._signer,
            retention_days=self._retention_days,
        )
        if self._stamper is not None:
            segment = self._stamper(segment)
        self.head = self.head.after(segment.seal, segment.seal_hash)
        return segment

    def reseal(self, segments: Sequence[bytes], *, segment_seq: int) -> list[SealedSegment]:
        """Re-seal consecutive sealed segments (their bytes) from ``segment_seq`` on,
        and move the head past them (ADR 7).

        Each keeps its body, events, times and retention; only its number,
        object key, link and signature (and its time-stamp token) change. The
        first links to what the first of ``segments`` linked to (the last
        segment this writer stored before them), the others to the one before.
        The batch is stamped under one total time budget
        (:meth:`SegmentStamper.batch`). Call with :attr:`lock` held.

        Raises:
            MalformedSegmentError: a segment in the spool does not parse.
            ValueError: ``segments`` is empty.
        """
        if not segments:
            raise ValueError("nothing to re-seal")
        resealed: list[SealedSegment] = []
        prev = None
        stamp = self._stamper.batch() if self._stamper is not None else _unstamped
        for offset, data in enumerate(segments):
            opened = open_segment(data)
            seal = parse_seal(opened.seal_bytes)
            number = segment_seq + offset
            moved = dataclasses.replace(
                seal,
                segment_seq=number,
                prev_seal_hash=seal.prev_seal_hash if prev is None else prev,
                object_key=segment_key(self.prefix, self.stream, number, seal.compression),
                key_id=self._signer.key_id,
                signature_algorithm=self._signer.algorithm,
            )
            segment = stamp(assemble_segment(moved, opened.body, self._signer))
            resealed.append(segment)
            prev = segment.seal_hash
        self.head = dataclasses.replace(
            self.head,
            next_segment_seq=resealed[-1].seal.segment_seq + 1,
            prev_seal_hash=resealed[-1].seal_hash,
        )
        return resealed


def _unstamped(segment: SealedSegment) -> SealedSegment:
    return segment


class SegmentStamper(Protocol):
    """Adds a time-stamp token to a sealed segment, or returns it unchanged
    (:class:`~audit_archiver.agent.tsa.Stamper`)."""

    def __call__(self, segment: SealedSegment) -> SealedSegment:
        """One segment, stamped if the TSA answers in time."""

    def batch(self) -> Callable[[SealedSegment], SealedSegment]:
        """A stamper for one batch of re-seals, under one total time budget."""


@dataclass(frozen=True)
class ForeignObject:
    """An object at one of this stream's segment keys that this writer did not
    write: its original version is not a segment of this stream signed by the
    writer's own or a previous key, at the key its seal names (ADR 7).

    Only where it is and why it was refused: never its content.
    """

    key: str
    version_id: str | None
    size: int
    reason: str


def original_version(store: ObjectStore, key: str) -> ObjectVersion | None:
    """The original (oldest) object version at exactly ``key``; None when there is none.

    Later versions and delete markers cannot replace or hide the original
    under Object Lock (ADR 3), so only it says what the key holds.

    Raises:
        StorageError: the listing failed.
    """
    original = None
    for version in store.list_versions(key):
        if version.key == key and not version.is_delete_marker:
            original = version  # newest first: the last one seen is the oldest
    return original


def read_prefix(store: ObjectStore, version: ObjectVersion, limit: int = SEAL_FRAME_MAX) -> bytes:
    """The first ``limit`` bytes of one object version (enough for its seal frame),
    whatever its size.

    Raises:
        ObjectNotFoundError: the version is gone.
        StorageError: the read failed.
    """
    parts: list[bytes] = []
    size = 0
    with store.open_object(version.key, version.version_id, max_bytes=_ANY_SIZE) as stream:
        while size < limit and (chunk := stream.read(limit - size)):
            parts.append(chunk)
            size += len(chunk)
    return b"".join(parts)


def authenticate_own(
    data: bytes, key: str, prefix: str, stream: str, keys: Sequence[TrustedKey]
) -> tuple[Seal, str] | str:
    """Check that ``data`` (a segment, or at least its seal frame) stored at ``key``
    is a segment of ``stream`` signed by one of ``keys`` that names ``key``.

    Returns the seal and its hash, or why not (for the alert).
    """
    try:
        opened = open_segment(data)
    except MalformedSegmentError as e:
        return f"malformed_segment: {e}"
    accepted = {k.key_id: k for k in keys}
    try:
        seal, _ = authenticate_seal(
            opened.seal_bytes,
            opened.signature,
            accepted.get,
            signature_canonical=opened.signature_canonical,
            key=key,
        )
    except SealRejectedError as e:
        return f"{e.kind}: {e}"
    location = parse_segment_key(key)
    try:
        expected = (
            None
            if location is None
            else segment_key(prefix, stream, location.segment_seq, seal.compression)
        )
    except ValueError:
        expected = None
    if seal.object_key != key or key != expected or seal.stream != stream:
        return f"misplaced_segment: the seal names {seal.object_key!r}"
    return seal, opened.seal_hash


def _unknown_signer(data: bytes, key: str, stream: str) -> str | None:
    """The key id of a well-formed seal of ``stream`` that names ``key`` (what a
    segment signed by a rotated-away key looks like), else None."""
    try:
        seal = parse_seal(open_segment(data).seal_bytes, key=key)
    except Exception:  # hostile bytes: anything unparsable is simply not such a seal
        return None
    return seal.key_id if seal.object_key == key and seal.stream == stream else None


def recover_chain_head(
    store: ObjectStore,
    prefix: str,
    stream: str,
    own_key: TrustedKey,
    *,
    previous_keys: Sequence[TrustedKey] = (),
    store_holds_prefix: bool = True,
    on_foreign: Callable[[ForeignObject], None] | None = None,
) -> tuple[ChainHead, str | None]:
    """Find the newest segment this writer stored for ``stream``; return the head after it.

    Returns the genesis head and None when the stream has no segment of this
    writer yet; otherwise the head and that segment's key. Only the original
    (oldest) version of each key counts: newer versions and delete markers are
    ignored (ADR 3). Keys are tried from the highest number down; the first
    whose original is a segment of this stream signed by ``own_key`` or, after
    a key rotation, one of ``previous_keys``, naming that key, is the head.
    Originals above it that fail this are foreign objects (``on_foreign`` is
    told about each) and are skipped: the writer continues after its own
    newest segment, and its uploader steps over occupied keys (ADR 7).
    ``store_holds_prefix`` is False for a local copy whose keys start at the
    stream (what ``aws s3 sync`` of the prefix produces).

    Raises:
        IntegrityError: no original is this writer's, and one is a well-formed
            segment of this stream signed by another key: what a key rotation
            without ``--previous-public-key`` looks like.
        StorageError: the store failed.
    """
    listed_prefix = prefix if store_holds_prefix else ""
    originals: dict[str, ObjectVersion] = {}
    for version in store.list_versions(stream_prefix(listed_prefix, stream)):
        location = parse_segment_key(version.key)
        if version.is_delete_marker or location is None or location.stream != stream:
            continue
        originals[version.key] = version  # newest first: the last one kept is the oldest
    ordered = sorted(
        originals.values(),
        key=lambda v: (_number(v.key), v.key),
        reverse=True,
    )
    keys = (own_key, *previous_keys)
    unknown: tuple[str, str] | None = None
    for version in ordered:
        data = read_prefix(store, version)
        seal_key = version.key if store_holds_prefix or not prefix else f"{prefix}/{version.key}"
        checked = authenticate_own(data, seal_key, prefix, stream, keys)
        if not isinstance(checked, str):
            seal, seal_hash = checked
            return ChainHead().after(seal, seal_hash), version.key
        if unknown is None and checked.startswith("unknown_key"):
            signer = _unknown_signer(data, seal_key, stream)
            unknown = (version.key, signer) if signer is not None else None
        if on_foreign is not None:
            on_foreign(ForeignObject(version.key, version.version_id, version.size, checked))
    if unknown is not None:
        key, found = unknown
        rotation_hint = (
            "; if this stream's signing key was rotated, pass the old public key with"
            " --previous-public-key"
            if not previous_keys
            else ""
        )
        raise IntegrityError(
            f"cannot continue stream {stream!r}: no segment of it is signed by this agent's"
            f" key {own_key.key_id[:12]}…{' or a --previous-public-key' if previous_keys else ''},"
            f" and {key} is signed by {found[:12]}… (another writer uses this stream id, or"
            f" the key was rotated){rotation_hint}",
            key=key,
            expected=own_key.key_id,
            found=found,
        )
    return ChainHead(), None


def _number(key: str) -> int:
    location = parse_segment_key(key)
    return location.segment_seq if location is not None else -1
