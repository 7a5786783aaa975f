"""Segment objects: a seal block and a compressed NDJSON body in one object.

Layout (see ``docs/FORMAT.md`` for the byte-level definition)::

    segment = seal frame || body
    body    = compressed( line_0 "\\n" line_1 "\\n" ... )

The seal frame is a frame that standard decompressors skip: a zstd skippable
frame (magic ``0x184D2A5A``) or a gzip member with no data whose header carries
the seal block in an extra field (subfield ``AS``). So ``zstd -dc`` or
``gunzip -c`` of a segment yields exactly the event lines, and the segment
still needs no second object to be verified.

The seal block is ``seal bytes "\\n" signature line "\\n"``; the signature line
is ``{"signature":"<base64>"}``. Nothing in here re-encodes stored bytes:
:func:`open_segment` returns slices of the object as stored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import zstandard

from audit_archiver.core.encoding import canonical_json
from audit_archiver.core.layout import segment_key
from audit_archiver.core.line import EventRun, parse_line_header
from audit_archiver.core.merkle import root_of_lines
from audit_archiver.core.seal import GENESIS_HASH, Seal, seal_hash, signing_message
from audit_archiver.core.signing import Signer
from audit_archiver.errors import MalformedSegmentError

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "OpenedSegment",
    "SealedSegment",
    "SegmentBody",
    "assemble_segment",
    "build_segment",
    "compress_body",
    "decompress_body",
    "finish_segment",
    "open_segment",
    "prepare_body",
    "prepare_runs_body",
]

ZSTD_SEAL_MAGIC = 0x184D2A5A
_ZSTD_SEAL_MAGIC_BYTES = struct.pack("<I", ZSTD_SEAL_MAGIC)
_ZSTD_FRAME_MAGIC = b"\x28\xb5\x2f\xfd"
_GZIP_SEAL_HEADER = b"\x1f\x8b\x08\x04\x00\x00\x00\x00\x00\xff"
_GZIP_EMPTY_TRAILER = b"\x03\x00" + b"\x00" * 8
_GZIP_SUBFIELD_ID = b"AS"
MAX_SEAL_BLOCK = 65535 - 4
DEFAULT_MAX_BODY_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class OpenedSegment:
    """A segment split into its stored parts (no decompression, no checks)."""

    seal_bytes: bytes
    signature: bytes
    body: bytes
    container: str

    @property
    def seal_hash(self) -> str:
        """Hex SHA-256 of the stored seal bytes (the chain hash)."""
        return seal_hash(self.seal_bytes)


@dataclass(frozen=True)
class SealedSegment:
    """A freshly built segment: its key, the object bytes and the seal."""

    key: str
    data: bytes
    seal: Seal
    seal_bytes: bytes

    @property
    def seal_hash(self) -> str:
        """Hex SHA-256 of the seal bytes, for the next segment's ``prev_seal_hash``."""
        return seal_hash(self.seal_bytes)


def compress_body(raw: bytes, compression: str, *, level: int = 3) -> bytes:
    """Compress a body (``zstd`` or ``gzip``) deterministically.

    Raises:
        ValueError: unknown compression.
    """
    if compression == "zstd":
        return zstandard.ZstdCompressor(level=level, write_checksum=True).compress(raw)
    if compression == "gzip":
        packer = zlib.compressobj(min(level * 2, 9), zlib.DEFLATED, 31)
        return packer.compress(raw) + packer.flush()
    raise ValueError(f"unknown compression {compression!r}")


def decompress_body(
    body: bytes, compression: str, *, max_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> bytes:
    """Decompress a whole body, refusing to inflate past ``max_bytes``.

    A zstd body is exactly one frame that declares its content size (checked
    against ``max_bytes`` before inflating); a gzip body is exactly one member.

    Raises:
        MalformedSegmentError: corrupt, truncated or trailing data, an unknown
            compression, or a body that would exceed ``max_bytes`` (a
            decompression bomb).
    """
    try:
        if compression == "zstd":
            return _decompress_zstd_frame(body, max_bytes)
        if compression == "gzip":
            return _decompress_gzip_member(body, max_bytes)
    except (zstandard.ZstdError, zlib.error) as e:
        raise MalformedSegmentError(f"cannot decompress body: {e}") from e
    raise MalformedSegmentError(f"unknown compression {compression!r}")


def _decompress_zstd_frame(body: bytes, max_bytes: int) -> bytes:
    """Decompress exactly one zstd frame whose header declares its size."""
    if not body.startswith(_ZSTD_FRAME_MAGIC):
        raise MalformedSegmentError("body is not a zstd frame")
    declared = zstandard.get_frame_parameters(body).content_size
    if declared == zstandard.CONTENTSIZE_UNKNOWN:
        raise MalformedSegmentError("zstd frame does not declare its content size")
    if declared > max_bytes:
        raise MalformedSegmentError(f"body inflates past {max_bytes} bytes")
    unpacker = zstandard.ZstdDecompressor().decompressobj()
    raw: bytes = unpacker.decompress(body)
    if not unpacker.eof:
        raise MalformedSegmentError("truncated zstd body")
    if unpacker.unused_data:
        raise MalformedSegmentError("data after the zstd body")
    return raw


def _decompress_gzip_member(body: bytes, max_bytes: int) -> bytes:
    """Decompress exactly one gzip member, stopping one byte past ``max_bytes``."""
    unpacker = zlib.decompressobj(31)
    raw = unpacker.decompress(body, max_bytes + 1)
    if len(raw) > max_bytes:
        raise MalformedSegmentError(f"body inflates past {max_bytes} bytes")
    if not unpacker.eof:
        raise MalformedSegmentError("truncated gzip body")
    if unpacker.unused_data:
        raise MalformedSegmentError("data after the gzip body")
    return raw


def _frame_seal_block(block: bytes, compression: str) -> bytes:
    if len(block) > MAX_SEAL_BLOCK:
        raise ValueError("seal block too large")
    if compression == "zstd":
        return _ZSTD_SEAL_MAGIC_BYTES + struct.pack("<I", len(block)) + block
    extra = _GZIP_SUBFIELD_ID + struct.pack("<H", len(block)) + block
    return _GZIP_SEAL_HEADER + struct.pack("<H", len(extra)) + extra + _GZIP_EMPTY_TRAILER


def _line_bounds(line: bytes) -> tuple[int, str]:
    header = parse_line_header(line)
    if header is None:
        raise ValueError("not a sealed event line (no seq/received_at header)")
    return header


@dataclass(frozen=True)
class SegmentBody:
    """A segment's compressed body and what its seal will say about the lines.

    The expensive, key-free half of sealing (header splice, Merkle root,
    compression): the agent computes it in a worker process, then signs with
    :func:`finish_segment`.
    """

    first_seq: int
    event_count: int
    first_received_at: str | None
    last_received_at: str | None
    merkle_root: str
    body: bytes
    compression: str


def prepare_body(lines: Sequence[bytes], first_seq: int, compression: str) -> SegmentBody:
    """Hash and compress sealed event lines (see :func:`~audit_archiver.core.event.seal_event`).

    ``first_seq`` is the seq of the first line, or of the next event when
    ``lines`` is empty (a heartbeat segment). The first and last lines' headers
    must carry ``first_seq`` and ``first_seq + len(lines) - 1``; the writer
    numbers the lines between.

    Raises:
        ValueError: lines out of seq order, or a newline inside a line.
    """
    raw = b"\n".join(lines) + b"\n" if lines else b""
    if raw.count(b"\n") != len(lines):
        raise ValueError("an event line must not contain a newline")
    times: list[str] = []
    for offset in sorted({0, len(lines) - 1}) if lines else ():
        seq, received_at = _line_bounds(lines[offset])
        if seq != first_seq + offset:
            raise ValueError(f"line {offset} has seq {seq}, expected {first_seq + offset}")
        times.append(received_at)
    return SegmentBody(
        first_seq=first_seq,
        event_count=len(lines),
        first_received_at=times[0] if times else None,
        last_received_at=times[-1] if times else None,
        merkle_root=root_of_lines(lines).hex(),
        body=compress_body(raw, compression),
        compression=compression,
    )


def prepare_runs_body(runs: Sequence[EventRun], first_seq: int, compression: str) -> SegmentBody:
    """:func:`prepare_body` for consecutive runs of encoded events (the agent's batches).

    Raises:
        ValueError: the runs are not consecutive from ``first_seq``, or malformed.
    """
    lines: list[bytes] = []
    expected = first_seq
    for run in runs:
        if run.first_seq != expected:
            raise ValueError(f"run starts at seq {run.first_seq}, expected {expected}")
        lines += run.sealed_lines()
        expected = run.next_seq
    return prepare_body(lines, first_seq, compression)


def finish_segment(
    prepared: SegmentBody,
    *,
    prefix: str,
    stream: str,
    segment_seq: int,
    prev_seal_hash: str,
    sealed_at: str,
    signer: Signer,
    retention_days: int | None = None,
) -> SealedSegment:
    """Write the seal for a prepared body, sign it and frame the segment.

    ``prev_seal_hash`` is the previous segment's seal hash, or
    :data:`~audit_archiver.core.seal.GENESIS_HASH` for segment 0.

    Raises:
        ValueError: a genesis link on a later segment (or the reverse), or bad key parts.
    """
    if (segment_seq == 0) != (prev_seal_hash == GENESIS_HASH):
        raise ValueError("segment 0, and only segment 0, links to the genesis hash")
    count = prepared.event_count
    seal = Seal(
        stream=stream,
        segment_seq=segment_seq,
        first_seq=prepared.first_seq,
        last_seq=prepared.first_seq + count - 1 if count else None,
        event_count=count,
        first_received_at=prepared.first_received_at,
        last_received_at=prepared.last_received_at,
        merkle_root=prepared.merkle_root,
        prev_seal_hash=prev_seal_hash,
        body_hash=hashlib.sha256(prepared.body).hexdigest(),
        body_size=len(prepared.body),
        compression=prepared.compression,
        object_key=segment_key(prefix, stream, segment_seq, prepared.compression),
        key_id=signer.key_id,
        signature_algorithm=signer.algorithm,
        sealed_at=sealed_at,
        retention_days=retention_days,
    )
    return assemble_segment(seal, prepared.body, signer)


def build_segment(
    *,
    prefix: str,
    stream: str,
    segment_seq: int,
    first_seq: int,
    lines: Sequence[bytes],
    prev_seal_hash: str,
    sealed_at: str,
    signer: Signer,
    compression: str = "zstd",
    retention_days: int | None = None,
) -> SealedSegment:
    """Seal a run of sealed event lines: :func:`prepare_body`, then :func:`finish_segment`.

    Raises:
        ValueError: as :func:`prepare_body` and :func:`finish_segment`.
    """
    return finish_segment(
        prepare_body(lines, first_seq, compression),
        prefix=prefix,
        stream=stream,
        segment_seq=segment_seq,
        prev_seal_hash=prev_seal_hash,
        sealed_at=sealed_at,
        signer=signer,
        retention_days=retention_days,
    )


def assemble_segment(seal: Seal, body: bytes, signer: Signer) -> SealedSegment:
    """Sign ``seal`` and frame it with an already compressed ``body``.

    The caller vouches that ``seal`` describes ``body``; :func:`build_segment`
    is the way to get one that does.

    Raises:
        ValueError: the seal block would exceed the frame's size limit.
    """
    seal_bytes = seal.to_bytes()
    signature = signer.sign(signing_message(seal_bytes))
    signature_line = canonical_json({"signature": base64.b64encode(signature).decode("ascii")})
    block = seal_bytes + b"\n" + signature_line + b"\n"
    data = _frame_seal_block(block, seal.compression) + body
    return SealedSegment(seal.object_key, data, seal, seal_bytes)


def _split_block(block: bytes, container: str, body: bytes) -> OpenedSegment:
    parts = block.split(b"\n")
    if len(parts) != 3 or parts[2] != b"":
        raise MalformedSegmentError("seal block must be two newline-terminated lines")
    try:
        signature_fields = json.loads(parts[1])
        if not isinstance(signature_fields, dict) or set(signature_fields) != {"signature"}:
            raise ValueError("expected exactly one field, 'signature'")
        signature = base64.b64decode(signature_fields["signature"], validate=True)
    except (ValueError, TypeError, KeyError, binascii.Error) as e:
        raise MalformedSegmentError(f"invalid signature line: {e}") from e
    return OpenedSegment(parts[0], signature, body, container)


def open_segment(data: bytes) -> OpenedSegment:
    """Split stored segment bytes into seal bytes, signature and compressed body.

    Raises:
        MalformedSegmentError: the bytes do not start with a v1 seal frame, or
            the frame is truncated or inconsistent.
    """
    if data.startswith(_ZSTD_SEAL_MAGIC_BYTES):
        if len(data) < 8:
            raise MalformedSegmentError("truncated seal frame")
        (size,) = struct.unpack_from("<I", data, 4)
        if size > MAX_SEAL_BLOCK or len(data) < 8 + size:
            raise MalformedSegmentError("truncated or oversized seal frame")
        return _split_block(data[8 : 8 + size], "zstd", data[8 + size :])
    if data.startswith(_GZIP_SEAL_HEADER):
        head = len(_GZIP_SEAL_HEADER)
        if len(data) < head + 6:
            raise MalformedSegmentError("truncated seal member")
        (xlen,) = struct.unpack_from("<H", data, head)
        subfield_id = data[head + 2 : head + 4]
        (size,) = struct.unpack_from("<H", data, head + 4)
        end = head + 2 + xlen
        if subfield_id != _GZIP_SUBFIELD_ID or xlen != size + 4 or len(data) < end + 10:
            raise MalformedSegmentError("seal member has no audit-archiver extra field")
        if data[end : end + 10] != _GZIP_EMPTY_TRAILER:
            raise MalformedSegmentError("seal member is not an empty gzip member")
        return _split_block(data[head + 6 : end], "gzip", data[end + 10 :])
    raise MalformedSegmentError("not an audit-archiver segment (no seal frame)")
