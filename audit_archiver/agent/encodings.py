"""Request bodies with a ``Content-Encoding``: decoded with a bound, then encoded.

Codings (the ones Vector, Fluent Bit and the OpenTelemetry Collector send):

- ``gzip``: one or more gzip members (RFC 1952).
- ``deflate``: zlib-wrapped DEFLATE (RFC 1950; what HTTP means by it and what
  Vector's ``zlib`` and the collector's ``deflate`` send); a body that does
  not start with a zlib header is read as raw DEFLATE (RFC 1951), which some
  clients send under the same name.
- ``zstd``: one or more Zstandard frames.
- ``snappy``: a raw Snappy block (what Vector's ``http`` sink and the
  collector send: Vector compresses the whole body with ``snap::raw::Encoder``,
  ``src/sinks/util/snappy.rs``), or the Snappy framing format when the body
  starts with its stream identifier (``\\xff\\x06\\x00\\x00sNaPpY``).
- ``identity`` (or no header): the body as it is.

Any other coding is refused from the header alone (:func:`parse_content_encoding`),
before a byte of the body is read.

Bounds: the decoded size is capped at the caller's ``limit`` (the agent's
``--max-body-bytes``) while decoding, output block by output block, so a
decompression bomb costs at most ``limit`` bytes plus one block before it is
refused (:class:`DecodedBodyTooLargeError`, HTTP 413). A raw Snappy block
states its decoded size first, and is refused from that alone.

:func:`decode_and_encode` is the agent's worker task (picklable arguments, a
picklable result): decode, then map and encode with
:func:`~audit_archiver.core.formats.encode_format_body`.
"""

from __future__ import annotations

import zlib
from typing import NamedTuple

import cramjam
import zstandard

from audit_archiver.core.formats import DEFAULT_OPTIONS, EncodedBatch, FormatOptions
from audit_archiver.core.formats import encode_format_body as _encode_format_body
from audit_archiver.errors import InputError

__all__ = [
    "CODINGS",
    "BodyDecodingError",
    "BodyTask",
    "DecodedBodyTooLargeError",
    "UnsupportedEncodingError",
    "decode_and_encode",
    "decode_body",
    "parse_content_encoding",
]

CODINGS = ("gzip", "deflate", "zstd", "snappy")
"""The ``Content-Encoding`` values decoded (besides ``identity``)."""
_BLOCK = 1 << 18  # decoded bytes produced per step
_ZSTD_MAX_RATIO = 1 << 15  # a 4-byte RLE block decodes to 128 KiB
_ZSTD_MIN_SLICE = 64
_SNAPPY_STREAM_ID = b"\xff\x06\x00\x00sNaPpY"
_SNAPPY_MAX_CHUNK = 1 << 16  # the framing format's limit for one chunk's decoded data


class UnsupportedEncodingError(InputError):
    """A ``Content-Encoding`` the agent does not decode (HTTP 415)."""


class BodyDecodingError(InputError):
    """A body that is not valid in its ``Content-Encoding`` (HTTP 400)."""


class DecodedBodyTooLargeError(InputError):
    """A body whose decoded size is over the limit (HTTP 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"decoded body over the {limit}-byte limit")
        self.limit = limit

    def __reduce__(self) -> tuple[object, ...]:
        return (DecodedBodyTooLargeError, (self.limit,))


def parse_content_encoding(header: str | None) -> str | None:
    """The coding named by a ``Content-Encoding`` header; None for none or identity.

    Raises:
        UnsupportedEncodingError: a coding not in :data:`CODINGS`, or more than one.
    """
    if header is None:
        return None
    codings = [c.strip().lower() for c in header.split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    if not codings:
        return None
    if len(codings) > 1 or codings[0] not in CODINGS:
        shown = header.strip()[:64]
        raise UnsupportedEncodingError(
            f"Content-Encoding {shown!r} is not supported; send one of {', '.join(CODINGS)} or none"
        )
    return codings[0]


def decode_body(coding: str | None, data: bytes, limit: int) -> bytes:
    """Decode ``data`` sent with ``coding``, refusing more than ``limit`` decoded bytes.

    Raises:
        BodyDecodingError: ``data`` is not valid in ``coding`` (or is truncated).
        DecodedBodyTooLargeError: it decodes to more than ``limit`` bytes.
        UnsupportedEncodingError: ``coding`` is not one of :data:`CODINGS`.
    """
    if coding is None:
        if len(data) > limit:
            raise DecodedBodyTooLargeError(limit)
        return data
    if coding == "gzip":
        return _zlib(data, limit, zlib.MAX_WBITS | 16, members=True)
    if coding == "deflate":
        return _zlib(data, limit, zlib.MAX_WBITS if _zlib_header(data) else -zlib.MAX_WBITS)
    if coding == "zstd":
        return _zstd(data, limit)
    if coding == "snappy":
        if data.startswith(_SNAPPY_STREAM_ID):
            return _snappy_framed(data, limit)
        return _snappy_raw(data, limit)
    raise UnsupportedEncodingError(f"Content-Encoding {coding!r} is not supported")


def _zlib_header(data: bytes) -> bool:
    """True when ``data`` starts with a zlib header (RFC 1950: CM 8, FCHECK)."""
    return len(data) >= 2 and data[0] & 0x0F == 8 and ((data[0] << 8) | data[1]) % 31 == 0


def _zlib(data: bytes, limit: int, wbits: int, *, members: bool = False) -> bytes:
    out = bytearray()
    pending = data
    while True:
        decoder = zlib.decompressobj(wbits)
        try:
            while pending:
                out += decoder.decompress(pending, min(_BLOCK, limit + 1 - len(out)))
                if len(out) > limit:
                    raise DecodedBodyTooLargeError(limit)
                pending = decoder.unconsumed_tail
                if decoder.eof:
                    break
            out += decoder.flush(limit + 1 - len(out)) if not decoder.eof else b""
        except zlib.error as e:
            raise BodyDecodingError(f"body is not valid {_name(wbits)}: {e}") from e
        if len(out) > limit:
            raise DecodedBodyTooLargeError(limit)
        if not decoder.eof:
            raise BodyDecodingError(f"body is truncated {_name(wbits)}")
        pending = decoder.unused_data
        if not (members and pending):
            break
    if pending.strip(b"\0"):
        raise BodyDecodingError(f"bytes after the end of the {_name(wbits)} data")
    return bytes(out)


def _name(wbits: int) -> str:
    return "gzip" if wbits > zlib.MAX_WBITS else "deflate"


def _zstd(data: bytes, limit: int) -> bytes:
    """Decode Zstandard frames, fed in slices small enough that one slice cannot
    decode to more than the room left (a 4-byte RLE block decodes to at most
    128 KiB), so the output never passes ``limit`` by more than a block."""
    out = bytearray()
    view = memoryview(data)
    position = 0
    try:
        while position < len(view):
            decoder = zstandard.ZstdDecompressor().decompressobj()
            while position < len(view) and not decoder.eof:
                step = max(_ZSTD_MIN_SLICE, (limit - len(out)) // _ZSTD_MAX_RATIO)
                out += decoder.decompress(view[position : position + step])
                position = min(position + step, len(view))
                if len(out) > limit:
                    raise DecodedBodyTooLargeError(limit)
            if not decoder.eof:
                raise BodyDecodingError("body is truncated zstd")
            position -= len(decoder.unused_data)
    except zstandard.ZstdError as e:
        raise BodyDecodingError(f"body is not valid zstd: {e}") from e
    return bytes(out)


def _varint(data: bytes) -> tuple[int, int]:
    """A little-endian base-128 varint at the start of ``data``: (value, its length)."""
    value = 0
    for index, byte in enumerate(data[:5]):
        value |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            return value, index + 1
    raise BodyDecodingError("body is not valid snappy: bad length preamble")


def _snappy_raw(data: bytes, limit: int) -> bytes:
    size, _ = _varint(data)
    if size > limit:
        raise DecodedBodyTooLargeError(limit)
    try:
        decoded = bytes(cramjam.snappy.decompress_raw(data))
    except cramjam.DecompressionError as e:
        raise BodyDecodingError(f"body is not valid snappy: {e}") from e
    if len(decoded) != size:
        raise BodyDecodingError("body is not valid snappy: length mismatch")
    return decoded


def _snappy_framed(data: bytes, limit: int) -> bytes:
    """Decode the Snappy framing format one chunk at a time (each at most 64 KiB
    decoded; its CRC is checked by cramjam on a one-chunk stream)."""
    out = bytearray()
    position = 0
    while position < len(data):
        if len(data) - position < 4:
            raise BodyDecodingError("body is not valid snappy: truncated chunk header")
        kind = data[position]
        length = int.from_bytes(data[position + 1 : position + 4], "little")
        end = position + 4 + length
        if end > len(data):
            raise BodyDecodingError("body is not valid snappy: truncated chunk")
        if kind in (0x00, 0x01):
            chunk = _SNAPPY_STREAM_ID + data[position:end]
            try:
                decoded = cramjam.snappy.decompress(chunk)
            except cramjam.DecompressionError as e:
                raise BodyDecodingError(f"body is not valid snappy: {e}") from e
            if len(decoded) > _SNAPPY_MAX_CHUNK:
                raise BodyDecodingError("body is not valid snappy: chunk over 64 KiB")
            out += bytes(decoded)
            if len(out) > limit:
                raise DecodedBodyTooLargeError(limit)
        elif kind == 0xFF:
            if data[position:end] != _SNAPPY_STREAM_ID:
                raise BodyDecodingError("body is not valid snappy: bad stream identifier")
        elif kind < 0x80:
            raise BodyDecodingError(f"body is not valid snappy: reserved chunk type {kind:#x}")
        position = end  # 0x80-0xfe: skippable and padding chunks
    return bytes(out)


class BodyTask(NamedTuple):
    """One request body for a worker: how it is coded and which format it holds."""

    format_name: str
    body: bytes
    coding: str | None
    content_type: str | None
    limit: int
    options: FormatOptions = DEFAULT_OPTIONS
    max_output: int | None = None
    """The most encoded bytes the body may produce (413 beyond)."""


def decode_and_encode(task: BodyTask) -> EncodedBatch:
    """Decode the body (bounded by ``task.limit``), then map and encode it.

    Raises:
        BodyDecodingError: not valid in its coding.
        DecodedBodyTooLargeError: over ``task.limit`` bytes decoded.
        EventValidationError: the decoded body or one of its items is bad.
    """
    body = decode_body(task.coding, task.body, task.limit) if task.coding else task.body
    return _encode_format_body(
        task.format_name, body, task.content_type, task.options, task.max_output
    )
