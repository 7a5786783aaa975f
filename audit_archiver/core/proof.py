"""Per-event inclusion proofs: the proof file model, its encoding, strict parse and check.

A proof file (``docs/FORMAT.md`` section 12) shows, offline, that one event
line is event ``seq`` of a stream as sealed, and that its segment was part of
the stream's chain up to a later head:

1. the segment's seal authenticates (:func:`~audit_archiver.core.seal.authenticate_seal`)
   and the trust policy allows its key for the stream, key and time;
2. the line's fixed header carries the claimed ``seq``; its leaf index is
   ``seq - first_seq`` and the tree size the seal's ``event_count``, both
   taken from the signed seal, never from the file (an RFC 9162 path of one
   shape fits several tree sizes);
3. the RFC 9162 audit path leads from the line's leaf hash to the seal's
   ``merkle_root``;
4. each later seal in ``chain`` continues the one before (``prev_seal_hash``,
   a higher ``segment_seq``, same stream, ``first_seq`` and time floors:
   :func:`~audit_archiver.core.chain.link_faults`), and the last one, the
   head, authenticates with ``head_signature`` and is allowed by the policy.
   Segment numbers may jump: the writer steps over a number taken by an
   object it did not write (ADR 7), and the next seal links by hash to the
   last one it wrote. The hash link, not the number, is the evidence;
5. with trust anchors (``verify-proof --tsa-cert``), the segment's RFC 3161
   token, when the file carries one, is checked completely
   (:func:`~audit_archiver.core.timestamp.verify_token`: imprint = the seal
   hash, TSA signature, chain, ``timeStamping`` usage, ``genTime`` not before
   ``sealed_at`` less the tolerance); without anchors it is carried, not checked.

Authentication comes first: the head is authenticated by its signature, each
earlier chain seal by the hash its successor names, before any of its fields
is read. ``version_id``, ``retain_until``, ``proved_at`` and ``timestamp`` are
carried, not signed: the prover's claims (the RFC 3161 token, when present,
binds itself to the seal hash and is signed by the TSA: step 5).

Pure: bytes in, a verdict out. :func:`parse_proof` is bounded
(:data:`MAX_PROOF_BYTES`, :data:`~audit_archiver.core.merkle.MAX_PROOF_HASHES`
path hashes, seals of at most :data:`~audit_archiver.core.segment.MAX_SEAL_BLOCK`
bytes) and raises only :class:`~audit_archiver.errors.ProofError`;
:func:`check_proof` never raises for bad content.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from audit_archiver.core.chain import ChainHead, link_faults
from audit_archiver.core.encoding import (
    format_timestamp,
    is_archiver_timestamp,
    parse_rfc3339,
    refuse_constant,
    unique_fields,
)
from audit_archiver.core.layout import validate_stream_id
from audit_archiver.core.line import MAX_SEQ, parse_line_header
from audit_archiver.core.merkle import MAX_PROOF_HASHES, leaf_hash, root_from_inclusion_proof
from audit_archiver.core.seal import (
    Seal,
    SealRejectedError,
    authenticate_seal,
    is_canonical,
    parse_seal,
    seal_hash,
)
from audit_archiver.core.segment import MAX_SEAL_BLOCK
from audit_archiver.core.timestamp import verify_token
from audit_archiver.errors import MalformedSegmentError, ProofError, TimestampError

if TYPE_CHECKING:
    from audit_archiver.core.timestamp import TsaTrust
    from audit_archiver.core.trust import TrustPolicy

__all__ = [
    "MAX_PROOF_BYTES",
    "PROOF_FORMAT_V1",
    "Proof",
    "ProofFailure",
    "ProofVerdict",
    "check_proof",
    "encode_proof",
    "parse_proof",
]

PROOF_FORMAT_V1 = "audit-archiver/proof/v1"
MAX_PROOF_BYTES = 256 * 1024 * 1024
"""The largest proof file read. The chain to the head grows with the stream by
about 0.8 KB per later segment: 256 MiB holds some 300,000 later seals (seven
months of one segment a minute), and parses in well under the memory of a
verify run."""
MAX_TEXT = 1024
"""The longest ``object_key`` or ``version_id`` (S3 keys and version ids are at most 1,024 bytes)."""
MAX_SIGNATURE_TEXT = 4096
_HEX64 = re.compile(r"\A[0-9a-f]{64}\Z")
_REQUIRED = (
    "format",
    "stream",
    "seq",
    "event_line",
    "leaf_index",
    "tree_size",
    "inclusion_path",
    "seal",
    "signature",
    "object_key",
    "version_id",
    "retain_until",
    "chain",
    "head_signature",
    "proved_at",
)
_OPTIONAL = ("timestamp",)


@dataclass(frozen=True)
class Proof:
    """One proof file's content (see ``docs/FORMAT.md`` section 12 for each field).

    Bytes fields hold the exact stored bytes: ``event_line`` (UTF-8, no
    newline), ``seal`` and each ``chain`` element (ASCII seal bytes), the
    decoded ``signature``, ``head_signature`` and ``timestamp`` (DER).
    """

    stream: str
    seq: int
    event_line: bytes
    leaf_index: int
    tree_size: int
    inclusion_path: tuple[bytes, ...]
    seal: bytes
    signature: bytes
    object_key: str
    version_id: str | None
    retain_until: str | None
    chain: tuple[bytes, ...]
    head_signature: bytes | None
    proved_at: str
    timestamp: bytes | None = None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def encode_proof(proof: Proof) -> bytes:
    """The proof file's bytes: UTF-8 JSON, two-space indent, fields in the documented order.

    Raises:
        ValueError: the event line is not UTF-8, or a seal is not ASCII.
    """
    try:
        fields: dict[str, Any] = {
            "format": PROOF_FORMAT_V1,
            "stream": proof.stream,
            "seq": proof.seq,
            "event_line": proof.event_line.decode("utf-8"),
            "leaf_index": proof.leaf_index,
            "tree_size": proof.tree_size,
            "inclusion_path": [node.hex() for node in proof.inclusion_path],
            "seal": proof.seal.decode("ascii"),
            "signature": _b64(proof.signature),
            "object_key": proof.object_key,
            "version_id": proof.version_id,
            "retain_until": proof.retain_until,
            "chain": [seal.decode("ascii") for seal in proof.chain],
            "head_signature": (
                None if proof.head_signature is None else _b64(proof.head_signature)
            ),
            "proved_at": proof.proved_at,
        }
    except UnicodeDecodeError as e:
        raise ValueError(f"cannot write the proof: {e}") from e
    if proof.timestamp is not None:
        fields["timestamp"] = _b64(proof.timestamp)
    return (json.dumps(fields, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


# -- parse: strict and bounded ---------------------------------------------------------------


def _fail(field: str, why: str) -> ProofError:
    return ProofError(f"malformed proof: {field} {why}")


def _integer(fields: dict[str, Any], name: str, low: int) -> int:
    value = fields[name]
    if type(value) is not int or not low <= value <= MAX_SEQ:
        raise _fail(name, f"must be an integer from {low} to 2**63-1")
    return value


def _text(fields: dict[str, Any], name: str, *, nullable: bool = False) -> str | None:
    value = fields[name]
    if value is None and nullable:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        raise _fail(name, f"must be a string of 1 to {MAX_TEXT} characters")
    return value


def _base64(value: object, name: str, *, limit: int = MAX_SIGNATURE_TEXT) -> bytes:
    if not isinstance(value, str) or not value or len(value) > limit or not value.isascii():
        raise _fail(name, f"must be standard base64 of at most {limit} characters")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise _fail(name, f"is not standard base64 ({e})") from None
    if not data or _b64(data) != value:
        raise _fail(name, "is not canonical, non-empty standard base64")
    return data


def _seal_text(value: object, name: str) -> bytes:
    if not isinstance(value, str) or not value.isascii() or not 0 < len(value) <= MAX_SEAL_BLOCK:
        raise _fail(name, f"must be an ASCII string of 1 to {MAX_SEAL_BLOCK} characters")
    return value.encode("ascii")


def _event_line(value: object) -> bytes:
    if not isinstance(value, str) or not value:
        raise _fail("event_line", "must be a non-empty string")
    try:
        line = value.encode("utf-8")
    except UnicodeEncodeError:
        raise _fail("event_line", "is not valid Unicode (a lone surrogate)") from None
    if b"\n" in line:
        raise _fail("event_line", "must not contain a newline")
    return line


def _path(value: object) -> tuple[bytes, ...]:
    if not isinstance(value, list) or len(value) > MAX_PROOF_HASHES:
        raise _fail("inclusion_path", f"must be a list of at most {MAX_PROOF_HASHES} hashes")
    if not all(isinstance(node, str) and _HEX64.match(node) for node in value):
        raise _fail("inclusion_path", "must hold 64 lowercase hex digits per hash")
    return tuple(bytes.fromhex(node) for node in value)


def _times(fields: dict[str, Any]) -> tuple[str | None, str]:
    retain_until = fields["retain_until"]
    if retain_until is not None:
        try:
            parse_rfc3339(retain_until)
        except ValueError:
            raise _fail("retain_until", "must be an RFC 3339 date-time or null") from None
    proved_at = fields["proved_at"]
    if not is_archiver_timestamp(proved_at):
        raise _fail("proved_at", "must be a UTC timestamp YYYY-MM-DDTHH:MM:SS.ffffffZ")
    return retain_until, proved_at


def parse_proof(data: bytes) -> Proof:
    """Parse a proof file strictly: exactly the v1 fields, each of its type and within bounds.

    Raises:
        ProofError: the file is larger than :data:`MAX_PROOF_BYTES`, is not
            UTF-8 JSON, or is not a v1 proof (a field missing, unknown,
            repeated or of another type or form).
    """
    if len(data) > MAX_PROOF_BYTES:
        raise ProofError(f"malformed proof: larger than {MAX_PROOF_BYTES} bytes")
    try:
        fields = json.loads(
            data.decode("utf-8"), object_pairs_hook=unique_fields, parse_constant=refuse_constant
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ProofError(f"malformed proof: not a JSON document ({e})") from None
    if not isinstance(fields, dict):
        raise ProofError("malformed proof: not a JSON object")
    names = set(fields)
    missing = sorted(set(_REQUIRED) - names)
    unknown = sorted(names - set(_REQUIRED) - set(_OPTIONAL))
    if missing or unknown:
        raise ProofError(f"malformed proof: fields missing {missing}, unknown {unknown}")
    if fields["format"] != PROOF_FORMAT_V1:
        raise _fail("format", f"must be {PROOF_FORMAT_V1!r}")
    stream = _text(fields, "stream")
    assert stream is not None
    try:
        validate_stream_id(stream)
    except ValueError:
        raise _fail("stream", "is not a valid stream id") from None
    chain = fields["chain"]
    if not isinstance(chain, list):
        raise _fail("chain", "must be a list of seals")
    seals = tuple(_seal_text(seal, f"chain[{n}]") for n, seal in enumerate(chain))
    head_signature = fields["head_signature"]
    if (head_signature is None) != (not seals):
        raise _fail("head_signature", "must be given exactly when the chain is not empty")
    retain_until, proved_at = _times(fields)
    object_key = _text(fields, "object_key")
    assert object_key is not None
    return Proof(
        stream=stream,
        seq=_integer(fields, "seq", 0),
        event_line=_event_line(fields["event_line"]),
        leaf_index=_integer(fields, "leaf_index", 0),
        tree_size=_integer(fields, "tree_size", 1),
        inclusion_path=_path(fields["inclusion_path"]),
        seal=_seal_text(fields["seal"], "seal"),
        signature=_base64(fields["signature"], "signature"),
        object_key=object_key,
        version_id=_text(fields, "version_id", nullable=True),
        retain_until=retain_until,
        chain=seals,
        head_signature=None
        if head_signature is None
        else _base64(head_signature, "head_signature"),
        proved_at=proved_at,
        timestamp=(
            _base64(fields["timestamp"], "timestamp", limit=MAX_SEAL_BLOCK)
            if "timestamp" in fields
            else None
        ),
    )


# -- check ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProofFailure:
    """One reason a proof does not hold: a stable ``reason`` code and a detail line."""

    reason: str
    detail: str


@dataclass(frozen=True)
class ProofVerdict:
    """What :func:`check_proof` found.

    ``seal`` and ``head`` are set only when authenticated (``head`` is
    ``seal`` when the chain is empty); ``failures`` is empty exactly when the
    proof holds. ``stepped_over`` lists the runs of segment numbers between
    the segment and the head that the chain jumps over (ADR 7), each as
    ``(first, last)``, inclusive: a run is never expanded, so a seal numbered
    far ahead costs one pair, not one entry per number.
    ``timestamp_checked`` is true when the token was checked against trust
    anchors; ``timestamp_time`` is then its ``genTime`` when it holds.
    """

    failures: tuple[ProofFailure, ...]
    seal: Seal | None
    seal_hash: str
    head: Seal | None
    head_hash: str
    stepped_over: tuple[tuple[int, int], ...] = ()
    timestamp_checked: bool = False
    timestamp_time: str | None = None

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return not self.failures


class _Failures:
    def __init__(self) -> None:
        self.items: list[ProofFailure] = []

    def add(self, reason: str, detail: str) -> None:
        self.items.append(ProofFailure(reason, detail))


def _authenticate(
    seal_bytes: bytes, signature: bytes, policy: TrustPolicy, what: str, out: _Failures
) -> Seal | None:
    """The seal when it authenticates and the policy allows it; else None (failure added)."""
    try:
        seal, trusted = authenticate_seal(seal_bytes, signature, policy.key, key=what)
    except SealRejectedError as e:
        out.add(f"{what}_not_authenticated", f"the {what} seal is rejected ({e.kind}): {e}")
        return None
    refusal = policy.refusal(
        trusted.key_id, seal.stream, seal.object_key, parse_rfc3339(seal.sealed_at)
    )
    if refusal is not None:
        out.add("key_not_allowed", f"the {what} seal: {refusal}")
        return None
    return seal


def _check_event(proof: Proof, seal: Seal, out: _Failures) -> None:
    """Steps 2 and 3: the line's seq, its index, the tree size and the audit path."""
    if seal.stream != proof.stream:
        out.add("wrong_stream", f"the seal is of stream {seal.stream!r}, not {proof.stream!r}")
    if seal.object_key != proof.object_key:
        out.add(
            "object_key_mismatch",
            f"the seal names object key {seal.object_key!r}, the proof {proof.object_key!r}",
        )
    header = parse_line_header(proof.event_line)
    if header is None:
        out.add("line_mismatch", "the event line does not start with the seq/received_at header")
    elif header[0] != proof.seq:
        out.add(
            "line_mismatch", f"the event line has seq {header[0]}, the proof claims {proof.seq}"
        )
    if seal.last_seq is None or not seal.first_seq <= proof.seq <= seal.last_seq:
        out.add(
            "index_mismatch",
            f"seq {proof.seq} is not in the segment's range {seal.first_seq}..{seal.last_seq}",
        )
    elif proof.leaf_index != proof.seq - seal.first_seq:
        out.add(
            "index_mismatch",
            f"leaf_index is {proof.leaf_index}, seq {proof.seq} is leaf"
            f" {proof.seq - seal.first_seq} of the segment",
        )
    if proof.tree_size != seal.event_count:
        out.add(
            "tree_size_mismatch",
            f"tree_size is {proof.tree_size}, the seal's event_count {seal.event_count}",
        )
    # The position comes from the signed seal, never from the file.
    index = proof.seq - seal.first_seq
    try:
        root = root_from_inclusion_proof(
            leaf_hash(proof.event_line), index, seal.event_count, proof.inclusion_path
        ).hex()
    except ValueError as e:
        out.add("inclusion_invalid", f"the audit path does not fit leaf {index}: {e}")
        return
    if root != seal.merkle_root:
        out.add(
            "inclusion_invalid",
            f"the audit path leads to root {root}, the seal's merkle_root is {seal.merkle_root}",
        )


def _chain_seals(proof: Proof, policy: TrustPolicy, out: _Failures) -> list[Seal] | None:
    """Authenticate the chain from the head back: the head by its signature, each
    earlier seal by the hash its successor names. None when a link fails."""
    assert proof.head_signature is not None
    head = _authenticate(proof.chain[-1], proof.head_signature, policy, "head", out)
    if head is None:
        return None
    backwards = [head]
    for position in range(len(proof.chain) - 1, -1, -1):
        later = backwards[-1]
        earlier = proof.chain[position - 1] if position else proof.seal
        if seal_hash(earlier) != later.prev_seal_hash:
            out.add(
                "chain_broken",
                f"chain[{position}] (segment {later.segment_seq}) does not link to the seal"
                " before it",
            )
            return None
        if position == 0:
            break
        try:
            parsed = parse_seal(earlier, key=f"chain[{position - 1}]")
        except MalformedSegmentError as e:
            out.add("chain_broken", f"chain[{position - 1}] is not a v1 seal: {e}")
            return None
        if not is_canonical(parsed, earlier):
            out.add("chain_broken", f"chain[{position - 1}] is not in canonical form")
            return None
        backwards.append(parsed)
    return backwards[::-1]


def _check_links(
    proof: Proof, seal: Seal, later: list[Seal], out: _Failures
) -> tuple[tuple[int, int], ...]:
    """Each later seal continues the one before: same stream, a higher segment number,
    ``first_seq`` and time floors (:func:`link_faults`; the hashes are already checked).

    Returns the runs of numbers jumped over, ``(first, last)`` (the writer stepped
    over an object it did not write there, ADR 7: its next seal still links by hash
    to the last one it wrote). At most one run per chain seal, whatever the jump.
    """
    head = ChainHead().after(seal, seal_hash(proof.seal))
    stepped: list[tuple[int, int]] = []
    for position, (current, stored) in enumerate(zip(later, proof.chain, strict=True)):
        if current.stream != proof.stream:
            out.add("wrong_stream", f"chain[{position}] is of stream {current.stream!r}")
        previous = head.next_segment_seq - 1
        if current.segment_seq <= previous:
            out.add(
                "chain_broken",
                f"chain[{position}] is segment {current.segment_seq}: it does not follow"
                f" segment {previous}",
            )
        elif current.segment_seq > head.next_segment_seq:
            stepped.append((head.next_segment_seq, current.segment_seq - 1))
        for fault in link_faults(head, current):
            out.add("chain_broken", f"chain[{position}]: {fault.detail}")
        head = head.after(current, seal_hash(stored))
    return tuple(stepped)


def _check_timestamp(proof: Proof, seal: Seal, tsa: TsaTrust, out: _Failures) -> str | None:
    """Step 5: the token against the anchors; its ``genTime`` when it holds."""
    assert proof.timestamp is not None
    try:
        gen_time = verify_token(
            proof.timestamp,
            seal_hash(proof.seal),
            tsa,
            sealed_at=parse_rfc3339(seal.sealed_at),
        )
    except TimestampError as e:
        out.add("timestamp_invalid", f"the segment's time-stamp token ({e.reason}): {e}")
        return None
    return format_timestamp(gen_time)


def check_proof(proof: Proof, policy: TrustPolicy, *, tsa: TsaTrust | None = None) -> ProofVerdict:
    """Check a parsed proof against a trust policy, offline; every failure is reported.

    With ``tsa`` (trust anchors), a time-stamp token the proof carries is
    checked too (``timestamp_invalid`` when it fails); without, it is carried
    unchecked. Never raises for bad content: a seal that does not
    authenticate, a line, index, tree size or path that does not match, a
    broken chain, a bad token are failures in the verdict. Checks that need a
    seal whose authentication failed are skipped (the authentication failure
    is the reason).
    """
    out = _Failures()
    seal = _authenticate(proof.seal, proof.signature, policy, "segment", out)
    if seal is not None:
        _check_event(proof, seal, out)
    head = seal
    head_bytes = proof.seal
    stepped: tuple[tuple[int, int], ...] = ()
    if proof.chain:
        head_bytes = proof.chain[-1]
        later = _chain_seals(proof, policy, out)
        head = later[-1] if later else None
        if seal is not None and later is not None:
            stepped = _check_links(proof, seal, later, out)
    checked = tsa is not None and proof.timestamp is not None and seal is not None
    gen_time = None
    if checked:
        assert tsa is not None
        assert seal is not None
        gen_time = _check_timestamp(proof, seal, tsa, out)
    return ProofVerdict(
        tuple(out.items),
        seal,
        seal_hash(proof.seal),
        head,
        seal_hash(head_bytes),
        stepped_over=stepped,
        timestamp_checked=checked,
        timestamp_time=gen_time,
    )
