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
is ``{"signature":"<base64>"}``. Format v1.1 adds an optional third line, an RFC
3161 time-stamp token over the seal hash, ``{"timestamp":"<base64>"}``
(:func:`with_timestamp`; :mod:`audit_archiver.core.timestamp`): the signature
does not cover it, the token's imprint binds it to the seal. An unstamped
segment is byte-identical to v1. Nothing in here re-encodes stored bytes:
:func:`open_segment` returns slices of the object as stored.

Reading untrusted objects (the verifier): the leading bytes, never the key's
extension, decide the container. :func:`read_seal_frame` takes the seal frame
off a reader (at most :data:`MAX_SEAL_BLOCK` bytes of block), and
:class:`BodyInflater` decompresses the rest in a stream, with every bound
explicit: a zstd body is one frame that declares its content size (at most
``max_body_bytes``), has a content checksum, no dictionary and a window of at
most ``max_window`` bytes, and nothing follows it; a gzip body is one member
and inflates to at most ``max_body_bytes``. Each piece of output is at most
about :data:`INFLATE_PIECE` bytes, whatever the compression ratio, so memory
does not grow with the body.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import io
import json
import re
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import zstandard

from audit_archiver.core.encoding import canonical_json, unique_fields
from audit_archiver.core.layout import segment_key
from audit_archiver.core.line import EventRun, parse_line_header
from audit_archiver.core.merkle import root_of_lines
from audit_archiver.core.seal import GENESIS_HASH, Seal, seal_hash, signing_message
from audit_archiver.core.signing import Signer
from audit_archiver.errors import MalformedSegmentError, TimestampError

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "INFLATE_PIECE",
    "MAX_SEAL_BLOCK",
    "MAX_TIMESTAMP_LINE",
    "MAX_TOKEN_BYTES",
    "BodyInflater",
    "OpenedSegment",
    "SealFrame",
    "SealedSegment",
    "SegmentBody",
    "assemble_segment",
    "build_segment",
    "compress_body",
    "decompress_body",
    "finish_segment",
    "open_segment",
    "parse_signature_line",
    "parse_timestamp_line",
    "prepare_body",
    "prepare_runs_body",
    "read_seal_frame",
    "timestamp_line",
    "with_timestamp",
]

ZSTD_SEAL_MAGIC = 0x184D2A5A
_ZSTD_SEAL_MAGIC_BYTES = struct.pack("<I", ZSTD_SEAL_MAGIC)
_ZSTD_FRAME_MAGIC = b"\x28\xb5\x2f\xfd"
_GZIP_SEAL_HEADER = b"\x1f\x8b\x08\x04\x00\x00\x00\x00\x00\xff"
_GZIP_EMPTY_TRAILER = b"\x03\x00" + b"\x00" * 8
_GZIP_SUBFIELD_ID = b"AS"
MAX_SEAL_BLOCK = 65535 - 4
_TIMESTAMP_OPEN, _TIMESTAMP_CLOSE = b'{"timestamp":"', b'"}'
MAX_TOKEN_BYTES = (MAX_SEAL_BLOCK - 3 - len(_TIMESTAMP_OPEN) - len(_TIMESTAMP_CLOSE)) // 4 * 3
"""The largest RFC 3161 token (DER) read or stored: its timestamp line's base64
(4 characters per 3 bytes) with the line's fixed bytes and the block's three
newlines fits :data:`MAX_SEAL_BLOCK` (49,134 bytes; the seal and signature lines
must fit beside it too, which :func:`with_timestamp` checks)."""
MAX_TIMESTAMP_LINE = len(_TIMESTAMP_OPEN) + MAX_TOKEN_BYTES // 3 * 4 + len(_TIMESTAMP_CLOSE)
"""The longest timestamp line: the base64 of :data:`MAX_TOKEN_BYTES` bytes in its frame."""
_TIMESTAMP_LINE = re.compile(rb'\A\{"timestamp":"([A-Za-z0-9+/]+={0,2})"\}\Z')
DEFAULT_MAX_BODY_BYTES = 512 * 1024 * 1024
DEFAULT_MAX_WINDOW = 8 * 1024 * 1024


@dataclass(frozen=True)
class OpenedSegment:
    """A segment split into its stored parts (no decompression, no checks)."""

    seal_bytes: bytes
    signature: bytes
    body: bytes
    container: str
    signature_canonical: bool = True
    timestamp_line: bytes | None = None
    """The frame's third line (format v1.1), unchecked; None when unstamped."""

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
    timestamp: bytes | None = None
    """The RFC 3161 token (DER) in the seal frame, if stamped (:func:`with_timestamp`)."""

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
    """Decompress a whole body in memory, under the rules :class:`BodyInflater` checks
    (for tools and tests that hold small bodies; the verifier streams).

    Raises:
        MalformedSegmentError: not exactly one well-formed frame or member (a
            zstd frame must declare its content size and carry its checksum),
            an unknown compression, or a body that would exceed ``max_bytes``.
    """
    inflater = BodyInflater(compression, max_body_bytes=max_bytes, max_window=DEFAULT_MAX_WINDOW)
    raw = b"".join(inflater.feed(body))
    inflater.finish()
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


_SIGNATURE_LINE = re.compile(rb'\A\{"signature":"([A-Za-z0-9+/]*={0,2})"\}\Z')
_MAX_SIGNATURE_LINE = 4096


def parse_signature_line(line: bytes) -> tuple[bytes, bool]:
    """Return the signature of a signature line, and whether the line is canonical.

    The canonical line matches ``{"signature":"<standard base64>"}`` byte for
    byte, with zero unused bits (base64 re-encodes to the same text). A line
    that is only not canonical (whitespace, escapes) is read with a flat JSON
    parse (no nesting is possible: a ``[`` or a second ``{`` is refused first),
    so the verifier can still authenticate the seal and report the form.

    Raises:
        MalformedSegmentError: not a signature line, or base64 that does not decode.
    """
    match = _SIGNATURE_LINE.match(line)
    canonical = match is not None
    text = match.group(1) if match is not None else _lenient_signature(line)
    try:
        signature = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise MalformedSegmentError(f"invalid signature line: {e}") from e
    if not signature:
        raise MalformedSegmentError("invalid signature line: empty signature")
    return signature, canonical and base64.b64encode(signature) == text


def _lenient_signature(line: bytes) -> bytes:
    if len(line) > _MAX_SIGNATURE_LINE or b"[" in line or line.count(b"{") != 1:
        raise MalformedSegmentError("invalid signature line: not a flat JSON object")
    try:
        fields = json.loads(line, object_pairs_hook=unique_fields)
        if not isinstance(fields, dict) or set(fields) != {"signature"}:
            raise ValueError("expected exactly one field, 'signature'")
        value = fields["signature"]
        if not isinstance(value, str) or not value.isascii():
            raise ValueError("the signature must be an ASCII string")
    except (ValueError, TypeError, RecursionError) as e:
        raise MalformedSegmentError(f"invalid signature line: {e}") from e
    return value.encode("ascii")


@dataclass(frozen=True)
class SealFrame:
    """The seal frame taken off the front of an object (nothing checked yet).

    ``container`` (``zstd`` or ``gzip``) is decided by the leading bytes;
    ``size`` is the frame's length in the object, so the body starts there.
    """

    container: str
    seal_bytes: bytes
    signature_line: bytes
    size: int
    timestamp_line: bytes | None = None
    """The third line of a v1.1 seal block (a time-stamp token), unchecked; else None."""


def _read_exact(read: Callable[[int], bytes], size: int) -> bytes:
    """Read exactly ``size`` bytes (``read`` may return fewer), or fewer at the end."""
    parts: list[bytes] = []
    missing = size
    while missing > 0:
        part = read(missing)
        if not part:
            break
        if len(part) > missing:
            raise MalformedSegmentError("reader returned more bytes than asked for")
        parts.append(part)
        missing -= len(part)
    return b"".join(parts)


def _read_block(read: Callable[[int], bytes], size: int, what: str) -> bytes:
    data = _read_exact(read, size)
    if len(data) != size:
        raise MalformedSegmentError(f"truncated {what}")
    return data


def _split_frame_block(block: bytes) -> tuple[bytes, bytes, bytes | None]:
    """Seal bytes, signature line and the optional timestamp line (v1.1) of a seal block."""
    parts = block.split(b"\n")
    if len(parts) not in (3, 4) or parts[-1] != b"" or (len(parts) == 4 and not parts[2]):
        raise MalformedSegmentError(
            "seal block must be two newline-terminated lines (three with a timestamp)"
        )
    return parts[0], parts[1], parts[2] if len(parts) == 4 else None


def timestamp_line(token: bytes) -> bytes:
    """The seal frame's third line: ``{"timestamp":"<standard base64 of the token>"}``
    (the canonical JSON of that object: base64 needs no escaping)."""
    return _TIMESTAMP_OPEN + base64.b64encode(token) + _TIMESTAMP_CLOSE


def parse_timestamp_line(line: bytes) -> bytes:
    """The token of a timestamp line, which must be exactly its canonical form.

    Pure byte checks: the token itself is read by :mod:`audit_archiver.core.timestamp`
    (which this module does not import, so reading segments never loads the
    RFC 3161 library).

    Raises:
        TimestampError: any other form (``invalid_token``), or a line longer than
            :data:`MAX_TIMESTAMP_LINE` (``too_large``).
    """
    if len(line) > MAX_TIMESTAMP_LINE:
        raise TimestampError("the timestamp line is too long", reason="too_large")
    match = _TIMESTAMP_LINE.match(line)
    if match is None:
        raise TimestampError(
            'the timestamp line is not {"timestamp":"<base64>"}', reason="invalid_token"
        )
    text = match.group(1)
    try:
        token = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise TimestampError(
            f"the timestamp line is not base64: {e}", reason="invalid_token"
        ) from e
    if base64.b64encode(token) != text:
        raise TimestampError("the timestamp line's base64 is not canonical", reason="invalid_token")
    return token


def with_timestamp(segment: SealedSegment, token: bytes) -> SealedSegment:
    """``segment`` with an RFC 3161 token over its seal hash as the seal frame's
    third line (format v1.1). The seal, signature and body are unchanged.

    The caller checks the token first
    (:func:`~audit_archiver.core.timestamp.token_from_response`).

    Raises:
        ValueError: the segment is already stamped, or the seal block would
            exceed :data:`MAX_SEAL_BLOCK`.
    """
    frame = read_seal_frame(io.BytesIO(segment.data).read)
    if frame.timestamp_line is not None or segment.timestamp is not None:
        raise ValueError("the segment is already time-stamped")
    block = frame.seal_bytes + b"\n" + frame.signature_line + b"\n" + timestamp_line(token) + b"\n"
    if len(block) > MAX_SEAL_BLOCK:
        raise ValueError(
            f"the time-stamp token does not fit the seal block ({MAX_SEAL_BLOCK} bytes)"
        )
    data = _frame_seal_block(block, frame.container) + segment.data[frame.size :]
    return dataclasses.replace(segment, data=data, timestamp=token)


def read_seal_frame(read: Callable[[int], bytes]) -> SealFrame:
    """Take the seal frame off the front of an object, reading only its bytes.

    ``read(n)`` returns up to ``n`` more bytes of the object (``b""`` at the
    end). The leading bytes decide the container (a zstd skippable frame or
    an empty gzip member with the ``AS`` extra field); at most
    ``8 + MAX_SEAL_BLOCK`` (zstd) or ``MAX_SEAL_BLOCK + 26`` (gzip) bytes are read.

    Raises:
        MalformedSegmentError: no seal frame, a truncated or oversized one, or
            a block that is not two (or, stamped, three) newline-terminated lines.
    """
    head = _read_exact(read, 4)
    if head == _ZSTD_SEAL_MAGIC_BYTES:
        (size,) = struct.unpack("<I", _read_block(read, 4, "seal frame"))
        if size > MAX_SEAL_BLOCK:
            raise MalformedSegmentError("oversized seal frame")
        block = _read_block(read, size, "seal frame")
        seal_bytes, signature_line, stamp = _split_frame_block(block)
        return SealFrame("zstd", seal_bytes, signature_line, 8 + size, stamp)
    if head == _GZIP_SEAL_HEADER[:4]:
        rest = _read_block(read, len(_GZIP_SEAL_HEADER) - 4 + 6, "seal member")
        header = head + rest
        if header[: len(_GZIP_SEAL_HEADER)] != _GZIP_SEAL_HEADER:
            raise MalformedSegmentError("seal member has an unexpected gzip header")
        xlen, subfield_id, size = struct.unpack("<H2sH", header[len(_GZIP_SEAL_HEADER) :])
        if subfield_id != _GZIP_SUBFIELD_ID or xlen != size + 4 or size > MAX_SEAL_BLOCK:
            raise MalformedSegmentError("seal member has no audit-archiver extra field")
        block = _read_block(read, size, "seal member")
        if _read_block(read, len(_GZIP_EMPTY_TRAILER), "seal member") != _GZIP_EMPTY_TRAILER:
            raise MalformedSegmentError("seal member is not an empty gzip member")
        frame_size = len(header) + size + len(_GZIP_EMPTY_TRAILER)
        seal_bytes, signature_line, stamp = _split_frame_block(block)
        return SealFrame("gzip", seal_bytes, signature_line, frame_size, stamp)
    raise MalformedSegmentError("not an audit-archiver segment (no seal frame)")


def open_segment(data: bytes) -> OpenedSegment:
    """Split stored segment bytes into seal bytes, signature and compressed body.

    For the writer's read-back of its own objects; the verifier streams
    (:func:`read_seal_frame`, :class:`BodyInflater`).

    Raises:
        MalformedSegmentError: the bytes do not start with a v1 seal frame, or
            the frame is truncated or inconsistent.
    """
    frame = read_seal_frame(io.BytesIO(data).read)
    signature, canonical = parse_signature_line(frame.signature_line)
    return OpenedSegment(
        frame.seal_bytes,
        signature,
        data[frame.size :],
        frame.container,
        canonical,
        frame.timestamp_line,
    )


INFLATE_PIECE = 256 * 1024
"""About the most output one step of :class:`BodyInflater` produces (plus one block)."""
_ZSTD_BLOCK_MAX = 128 * 1024
_RAW, _RLE, _COMPRESSED = 0, 1, 2


class BodyInflater:
    """Decompress a stored body fed in chunks, in pieces of bounded size.

    :meth:`feed` yields the inflated bytes of each chunk as it arrives, never
    more than about :data:`INFLATE_PIECE` (plus one 128 KiB zstd block) at a
    time; :meth:`finish` says whether the body was complete. A zstd frame is
    walked block by block (RFC 8878 section 3.1.1), so the inflater knows
    where the frame ends (data after it is refused) and can hand the
    decompressor a few blocks at a time: a compression ratio cannot make one
    step large. Once it raises, the inflater is spent.

    Raises (from both methods):
        MalformedSegmentError: not one well-formed frame or member, a bound
            exceeded, a checksum or size that does not match.
    """

    def __init__(self, container: str, *, max_body_bytes: int, max_window: int) -> None:
        if container not in ("zstd", "gzip"):
            raise MalformedSegmentError(f"unknown compression {container!r}")
        self.container = container
        self.inflated = 0
        self._max_body = max_body_bytes
        self._max_window = max_window
        self._zlib = zlib.decompressobj(31) if container == "gzip" else None
        self._zstd = (
            zstandard.ZstdDecompressor(max_window_size=max_window).decompressobj()
            if container == "zstd"
            else None
        )
        self._pending = b""  # zstd: bytes of a frame header or block header not yet complete
        self._state = "header"  # zstd walker: header, block, body, checksum, done
        self._remaining = 0  # bytes left in the current state (block body or checksum)
        self._last_block = False
        self._has_checksum = False
        self._content_size = 0

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        """Yield the inflated bytes of the next stored chunk, in bounded pieces."""
        try:
            if self._zlib is not None:
                yield from self._feed_gzip(self._zlib, chunk)
            else:
                yield from self._feed_zstd(chunk)
        except (zstandard.ZstdError, zlib.error) as e:
            raise MalformedSegmentError(f"cannot decompress body: {e}") from e

    def finish(self) -> None:
        """Check that the body was exactly one complete frame or member."""
        if self._zlib is not None:
            if not self._zlib.eof:
                raise MalformedSegmentError("truncated gzip body")
            return
        if self._state != "done":
            raise MalformedSegmentError("truncated zstd body")
        if self.inflated != self._content_size:
            raise MalformedSegmentError(
                f"zstd body inflated to {self.inflated} bytes, its header declares"
                f" {self._content_size}"
            )

    def _count(self, piece: bytes) -> bytes:
        self.inflated += len(piece)
        if self.inflated > self._max_body:
            raise MalformedSegmentError(f"body inflates past {self._max_body} bytes")
        return piece

    def _feed_gzip(self, unpacker: zlib._Decompress, chunk: bytes) -> Iterator[bytes]:
        data = chunk
        while data:
            if unpacker.eof:
                raise MalformedSegmentError("data after the gzip body")
            piece = unpacker.decompress(data, INFLATE_PIECE)
            data = unpacker.unconsumed_tail
            if piece:
                yield self._count(piece)
            if unpacker.unused_data:
                raise MalformedSegmentError("data after the gzip body")

    def _feed_zstd(self, chunk: bytes) -> Iterator[bytes]:
        """Walk the frame over ``chunk``; decompress it in runs of a few blocks."""
        data = self._pending + chunk
        self._pending = b""
        start = position = 0
        budget = 0  # most output the blocks in data[start:position] can make
        while position < len(data):
            if self._state == "header":
                size = self._header_size(data[position:])
                if size is None or len(data) - position < size:
                    self._pending = data[position:]
                    return
                self._check_header(data[position : position + size])
                position += size
                self._state = "block"
            elif self._state == "block":
                if len(data) - position < 3:
                    yield from self._inflate(data[start:position])
                    self._pending = data[position:]
                    return
                budget += self._block_header(data[position : position + 3])
                position += 3
            elif self._state in ("body", "checksum"):
                step = min(self._remaining, len(data) - position)
                position += step
                self._remaining -= step
                if self._remaining == 0:
                    self._state = self._after_body()
            else:
                raise MalformedSegmentError("data after the zstd body")
            if budget >= INFLATE_PIECE and self._state in ("block", "checksum", "done"):
                yield from self._inflate(data[start:position])
                start, budget = position, 0
        yield from self._inflate(data[start:position])

    def _inflate(self, data: bytes) -> Iterator[bytes]:
        if data:
            assert self._zstd is not None
            piece = self._zstd.decompress(data)
            if piece:
                yield self._count(piece)

    @staticmethod
    def _header_size(data: bytes) -> int | None:
        """The frame header's length, from its first 5 bytes (None: not enough yet)."""
        if len(data) < 5:
            return None
        if data[:4] != _ZSTD_FRAME_MAGIC:
            raise MalformedSegmentError("body is not a zstd frame")
        descriptor = data[4]
        single = (descriptor >> 5) & 1
        content_size_bytes = (single, 2, 4, 8)[descriptor >> 6]
        return 5 + (0 if single else 1) + (0, 1, 2, 4)[descriptor & 3] + content_size_bytes

    def _check_header(self, header: bytes) -> None:
        params = zstandard.get_frame_parameters(header)
        if header[4] & 0x08:
            raise MalformedSegmentError("zstd frame header sets a reserved bit")
        if params.content_size == zstandard.CONTENTSIZE_UNKNOWN:
            raise MalformedSegmentError("zstd frame does not declare its content size")
        if params.content_size > self._max_body:
            raise MalformedSegmentError(f"body inflates past {self._max_body} bytes")
        if not params.has_checksum:
            raise MalformedSegmentError("zstd frame has no content checksum")
        if params.dict_id:
            raise MalformedSegmentError("zstd frame needs a dictionary")
        if params.window_size > self._max_window:
            raise MalformedSegmentError(
                f"zstd window of {params.window_size} bytes is over {self._max_window}"
            )
        self._has_checksum = True
        self._content_size = params.content_size

    def _block_header(self, header: bytes) -> int:
        """Enter a block; return the most output it can make."""
        value = int.from_bytes(header, "little")
        self._last_block = bool(value & 1)
        kind, size = (value >> 1) & 3, value >> 3
        if kind not in (_RAW, _RLE, _COMPRESSED) or size > _ZSTD_BLOCK_MAX:
            raise MalformedSegmentError("invalid zstd block header")
        self._remaining = 1 if kind == _RLE else size
        self._state = "body"
        if self._remaining == 0:
            self._state = self._after_body()
        return _ZSTD_BLOCK_MAX if kind == _COMPRESSED else size

    def _after_body(self) -> str:
        if self._state == "checksum" or (self._last_block and not self._has_checksum):
            return "done"
        if self._last_block:
            self._remaining = 4
            return "checksum"
        return "block"
