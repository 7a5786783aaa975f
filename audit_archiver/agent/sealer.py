"""Seal runs of event lines into a stream's chain, and find where a chain ends.

:class:`StreamSealer` owns a stream's chain head (next segment number, previous
seal hash, next event seq, time floors; :class:`~audit_archiver.core.chain.ChainHead`,
the model the verifier shares) and advances it one segment at a time.
:func:`recover_chain_head` reads the newest segment of a stream from a store,
checks it with the writer's own key or one of its previous keys (key
rotation), and returns the head to continue from.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from audit_archiver.core.chain import ChainHead
from audit_archiver.core.layout import parse_segment_key, segment_key, stream_prefix
from audit_archiver.core.seal import parse_seal, signing_message
from audit_archiver.core.segment import (
    SealedSegment,
    SegmentBody,
    finish_segment,
    open_segment,
    prepare_body,
)
from audit_archiver.core.signing import Signer, TrustedKey
from audit_archiver.errors import IntegrityError, MalformedSegmentError
from audit_archiver.storage.base import ObjectStore

__all__ = ["StreamSealer", "recover_chain_head"]


_KEY_ID = re.compile(rb'"key_id":"([0-9a-f]{64})"')


def _claimed_key_id(seal_bytes: bytes) -> str:
    """The key id an unauthenticated seal claims, for the error message only ("?" if none)."""
    match = _KEY_ID.search(seal_bytes)
    return match.group(1).decode() if match else "?"


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
    ) -> None:
        self.prefix = prefix
        self.stream = stream
        self.head = head
        self._signer = signer
        self._compression = compression
        self._retention_days = retention_days

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
        self.head = self.head.after(segment.seal, segment.seal_hash)
        return segment


def recover_chain_head(
    store: ObjectStore,
    prefix: str,
    stream: str,
    own_key: TrustedKey,
    *,
    previous_keys: Sequence[TrustedKey] = (),
    store_holds_prefix: bool = True,
) -> tuple[ChainHead, str | None]:
    """Find the newest segment of ``stream`` and return the head after it.

    Returns the genesis head and None when the stream has no segment yet;
    otherwise the head and the newest segment's key. Only the newest version
    of the highest-numbered key counts; it must be signed by ``own_key`` or,
    after a key rotation, by one of ``previous_keys`` (the chain continues
    across the rotation). ``store_holds_prefix`` is False for a local copy
    whose keys start at the stream (what ``aws s3 sync`` of the prefix produces).

    Raises:
        IntegrityError: the newest segment is malformed, does not name its own
            key, or is not signed by ``own_key`` or a previous key (another
            writer, tampering, or a rotation without ``--previous-public-key``).
        StorageError: the store failed.
    """
    newest: tuple[int, str] | None = None
    listed_prefix = prefix if store_holds_prefix else ""
    for version in store.list_versions(stream_prefix(listed_prefix, stream)):
        location = parse_segment_key(version.key)
        if version.is_delete_marker or location is None or location.stream != stream:
            continue
        if newest is None or location.segment_seq > newest[0]:
            newest = (location.segment_seq, version.key)
    if newest is None:
        return ChainHead(), None
    number, key = newest
    data = store.get(key)
    try:
        opened = open_segment(data)
    except MalformedSegmentError as e:
        raise IntegrityError(
            f"cannot continue stream {stream!r}: newest segment {key} is malformed ({e})", key=key
        ) from e
    accepted = (own_key, *previous_keys)
    message = signing_message(opened.seal_bytes)
    signer = next((k for k in accepted if k.verify(opened.signature, message)), None)
    if signer is None:  # nothing in the seal is trusted: its key id only names the culprit
        found = _claimed_key_id(opened.seal_bytes)
        rotation_hint = (
            "; if this stream's signing key was rotated, pass the old public key with"
            " --previous-public-key"
            if not previous_keys
            else ""
        )
        raise IntegrityError(
            f"cannot continue stream {stream!r}: newest segment {key} is signed by key"
            f" {found[:12]}…, not by this agent's key {own_key.key_id[:12]}…"
            f"{' or a --previous-public-key' if previous_keys else ''} (another writer uses"
            f" this stream id, or the segment was replaced){rotation_hint}",
            key=key,
            expected=own_key.key_id,
            found=found,
        )
    try:
        seal = parse_seal(opened.seal_bytes, key=key)
    except MalformedSegmentError as e:
        raise IntegrityError(
            f"cannot continue stream {stream!r}: newest segment {key} is malformed ({e})", key=key
        ) from e
    if seal.key_id != signer.key_id:
        raise IntegrityError(
            f"newest segment {key} names key {seal.key_id[:12]}… but is signed by"
            f" {signer.key_id[:12]}…",
            key=key,
            expected=signer.key_id,
            found=seal.key_id,
        )
    expected_key = segment_key(prefix, stream, number, seal.compression)
    if seal.object_key != expected_key or seal.segment_seq != number:
        raise IntegrityError(
            f"newest segment {key} names another key",
            key=key,
            expected=expected_key,
            found=seal.object_key,
        )
    return ChainHead().after(seal, opened.seal_hash), key
