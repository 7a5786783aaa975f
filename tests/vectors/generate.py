"""Regenerate the test vectors: ``.venv/bin/python -m tests.vectors.generate``.

Every file under ``tests/vectors/cases`` is a deterministic function of this
script: the signing key is Ed25519 with the 32-byte seed 00 01 02 ... 1f, the
events and archiver timestamps are fixed (see ``tests/helpers.py``). The
committed bytes pin format v1; ``test_vectors.py`` regenerates them and fails
on any difference.

Each case folder holds an archive laid out like a synced prefix (``audit``) and
``expected.json``: the verdict an implementation of ``docs/FORMAT.md`` must
reach (``ok``, counts, every problem as ``[kind, key]``, sorted) and the
``verify`` arguments it is reached with (paths relative to the case folder).
The verdict is stated by hand next to each tampering function below, from the
format's rules, never taken from the verifier's output: ``test_vectors.py``
runs the real CLI and compares.

The valid archive: ``app-1`` (zstd) has 3 segments of 4 events; ``app-2``
(gzip) has 2 segments, 3 events then a heartbeat: 2 streams, 5 segments, 15
events. A segment that fails authentication, strict parsing or the trust
policy, or whose body cannot be read through, counts as a segment with no events.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard

from audit_archiver.core.encoding import canonical_json
from audit_archiver.core.event import seal_event
from audit_archiver.core.merkle import leaf_hash
from audit_archiver.core.seal import signing_message
from audit_archiver.core.segment import (
    SealedSegment,
    assemble_segment,
    build_segment,
    decompress_body,
    open_segment,
)
from tests.helpers import (
    OTHER_SEED,
    body_lines,
    build_stream,
    fixed_signer,
    forge,
    sample_event,
    tick,
)

HERE = Path(__file__).parent
DEFAULT_ARGS = ("--local-dir", "archive", "--prefix", "audit", "--public-key", "../../public.pem")


@dataclass(frozen=True)
class Case:
    """A tampering function and the verdict stated by hand for its result."""

    tamper: Callable[[Path], None]
    problems: list[tuple[str, str]]
    segments: int = 5
    events: int = 15
    streams: int = 2
    args: tuple[str, ...] = DEFAULT_ARGS
    files: dict[str, str] = field(default_factory=dict)  # extra files in the case folder

    def expected(self) -> dict[str, Any]:
        """The expected.json content."""
        return {
            "ok": not self.problems,
            "streams": self.streams,
            "segments": self.segments,
            "events": self.events,
            "problems": [list(p) for p in sorted(self.problems)],
            "verify": list(self.args),
        }


def _valid(root: Path) -> None:
    build_stream(root, "app-1", segments=3, per_segment=4)
    build_stream(root, "app-2", segments=2, per_segment=3, compression="gzip", empty_segments=(1,))


def _key(n: int, stream: str = "app-1", ext: str = "zst") -> str:
    return f"{stream}/{n:012d}.ndjson.{ext}"


def _seg(root: Path, n: int) -> Path:
    return root / _key(n)


def _app1() -> list[SealedSegment]:
    return build_stream(None, "app-1")


def _signed_raw(seal_bytes: bytes, body: bytes, *, sig_line: bytes | None = None) -> bytes:
    """An object around ``seal_bytes`` (any form), signed with the vectors' real key."""
    signature = fixed_signer().sign(signing_message(seal_bytes))
    if sig_line is None:
        sig_line = canonical_json({"signature": base64.b64encode(signature).decode("ascii")})
    block = seal_bytes + b"\n" + sig_line + b"\n"
    return b"\x5a\x2a\x4d\x18" + len(block).to_bytes(4, "little") + block + body


def _last_resealed(seal_bytes: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    """Tamper app-1's last segment: its seal bytes rewritten, then signed with the real key."""

    def tamper(root: Path) -> None:
        last = _app1()[2]
        body = open_segment(last.data).body
        _seg(root, 2).write_bytes(_signed_raw(seal_bytes(last.seal_bytes), body))

    return tamper


def _last_signature_line(rewrite: Callable[[str], bytes]) -> Callable[[Path], None]:
    """Tamper app-1's last segment: its signature line rewritten around the same signature."""

    def tamper(root: Path) -> None:
        last = _app1()[2]
        opened = open_segment(last.data)
        text = base64.b64encode(opened.signature).decode("ascii")
        forged = _signed_raw(last.seal_bytes, opened.body, sig_line=rewrite(text))
        _seg(root, 2).write_bytes(forged)

    return tamper


def _nonzero_unused_bits(text: str) -> bytes:
    """Set the unused low bits of the last base64 digit (64 bytes: 2 digits and ``==``)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    assert text.endswith("==")
    last = alphabet.index(text[-3])
    changed = text[:-3] + alphabet[(last & 0b110000) | 0b000101] + "=="
    assert base64.b64decode(changed) == base64.b64decode(text)
    return canonical_json({"signature": changed})


def _unsorted_keys(seal_bytes: bytes) -> bytes:
    fields = json.loads(seal_bytes)
    return json.dumps(dict(reversed(fields.items())), separators=(",", ":")).encode()


def _body_size_wrong(root: Path) -> None:
    last = _app1()[2]
    body = open_segment(last.data).body
    wrong = dataclasses.replace(last.seal, body_size=last.seal.body_size + 1)
    _seg(root, 2).write_bytes(assemble_segment(wrong, body, fixed_signer()).data)


def _zstd_without_checksum(root: Path) -> None:
    last = _app1()[2]
    opened = open_segment(last.data)
    raw = decompress_body(opened.body, "zstd")
    body = zstandard.ZstdCompressor(level=3, write_checksum=False).compress(raw)
    seal = dataclasses.replace(
        last.seal, body_hash=hashlib.sha256(body).hexdigest(), body_size=len(body)
    )
    _seg(root, 2).write_bytes(assemble_segment(seal, body, fixed_signer()).data)


def _flip_body_byte(root: Path) -> None:
    data = bytearray(_seg(root, 1).read_bytes())
    data[-3] ^= 0x40  # inside the zstd content checksum
    _seg(root, 1).write_bytes(bytes(data))


def _flip_seal_byte(root: Path) -> None:
    data = _seg(root, 1).read_bytes()
    at = data.index(b'"sealed_at":"2026') + len(b'"sealed_at":"202')
    _seg(root, 1).write_bytes(data[:at] + b"7" + data[at + 1 :])  # 2026 -> 2027: still a date


def _drop_middle(root: Path) -> None:
    _seg(root, 1).unlink()


def _swap(root: Path) -> None:
    one, two = _seg(root, 1).read_bytes(), _seg(root, 2).read_bytes()
    _seg(root, 1).write_bytes(two)
    _seg(root, 2).write_bytes(one)


def _resign_other_key(root: Path) -> None:
    _seg(root, 1).write_bytes(forge(_app1()[1], fixed_signer(OTHER_SEED)))


def _splice(root: Path) -> None:
    _seg(root, 1).write_bytes(build_stream(None, "app-9")[1].data)


def _truncate(root: Path) -> None:
    _seg(root, 2).write_bytes(_seg(root, 2).read_bytes()[:-40])


def _drop_event(root: Path) -> None:
    last = _app1()[2]
    lines = body_lines(last)
    del lines[1]
    _seg(root, 2).write_bytes(
        forge(last, fixed_signer(), raw_body=b"".join(x + b"\n" for x in lines))
    )


def _resealed_last(lines: list[bytes], sealed_at: str | None = None) -> bytes:
    """app-1's segment 2 sealed by the key holder around ``lines`` (root and hashes right)."""
    first_two = _app1()[:2]
    return build_segment(
        prefix="audit",
        stream="app-1",
        segment_seq=2,
        first_seq=8,
        lines=lines,
        prev_seal_hash=first_two[1].seal_hash,
        sealed_at=sealed_at or _app1()[2].seal.sealed_at,
        signer=fixed_signer(),
    ).data


def _genuine_lines() -> list[bytes]:
    return [seal_event(sample_event(8 + i), 8 + i, tick(8 + i)) for i in range(4)]


def _header_missing(root: Path) -> None:
    lines = _genuine_lines()
    lines[1] = b"{" + lines[1][lines[1].index(b'Z",') + 3 :]  # the producer's event only
    _seg(root, 2).write_bytes(_resealed_last(lines))


def _sealed_before_previous(root: Path) -> None:
    _seg(root, 2).write_bytes(_resealed_last(_genuine_lines(), sealed_at=tick(500)))


def _staging_stream(root: Path) -> None:
    shutil.rmtree(root / "app-2")
    build_stream(root, "app-2", segments=2, per_segment=3, prefix="staging")
    build_stream(root, "app-3", segments=1, per_segment=4)


def _stray_objects(root: Path) -> None:
    (root / "README").write_text("not a segment\n")
    (root / "app-1" / "notes.txt").write_text("not a segment\n")


def _oversized(root: Path) -> None:
    data = _seg(root, 2).read_bytes()
    _seg(root, 2).write_bytes(data + b"\0" * (3000 - len(data)))


def _duplicate(root: Path) -> None:
    shutil.copyfile(_seg(root, 1), root / _key(1, ext="gz"))


def _foreign_stream_key(root: Path) -> None:
    """Nothing changes in the archive: the trust file allows the key for app-1 only."""


_NOT_CANONICAL = [("not_canonical", _key(2))]
_LOCAL_NO_PREFIX = ("--local-dir", "archive", "--public-key", "../../public.pem")
_TRUSTED = ("--local-dir", "archive", "--prefix", "audit", "--trust", "trust.toml")

# The non-canonical and strict forms, each signed with the real key (tests/adversarial runs
# the CLI on these folders too).
STRICT: dict[str, Case] = {
    "seal-space-after-colon": Case(
        _last_resealed(lambda s: s.replace(b'":', b'": ')), _NOT_CANONICAL, events=11
    ),
    "seal-unicode-escape": Case(
        _last_resealed(lambda s: s.replace(b'"stream":"app-1"', b'"stream":"\\u0061pp-1"')),
        _NOT_CANONICAL,
        events=11,
    ),
    "seal-keys-unsorted": Case(_last_resealed(_unsorted_keys), _NOT_CANONICAL, events=11),
    "signature-line-space": Case(
        _last_signature_line(lambda t: b'{"signature": "' + t.encode() + b'"}'),
        _NOT_CANONICAL,
        events=11,
    ),
    "signature-nonzero-base64-bits": Case(
        _last_signature_line(_nonzero_unused_bits), _NOT_CANONICAL, events=11
    ),
    "body-size-wrong": Case(_body_size_wrong, [("body_size_mismatch", _key(2))]),
    "zstd-without-checksum": Case(
        _zstd_without_checksum, [("malformed_segment", _key(2))], events=11
    ),
}
STRICT_FORMS = sorted(STRICT)

CASES: dict[str, Case] = {
    "valid": Case(lambda root: None, []),
    # zstd checksum fails: the hash differs and the frame does not check out.
    "flipped-body-byte": Case(
        _flip_body_byte,
        [("body_hash_mismatch", _key(1)), ("malformed_segment", _key(1))],
        events=11,
    ),
    # The signature fails: nothing else of the seal is trusted, the next link is not checked.
    "flipped-seal-byte": Case(_flip_seal_byte, [("signature_invalid", _key(1))], events=11),
    "dropped-segment": Case(_drop_middle, [("sequence_gap", _key(2))], segments=4, events=11),
    # One key_mismatch per segment; the chain checks each link (two facts at the second).
    "reordered-segments": Case(
        _swap,
        [
            ("chain_broken", _key(1)),
            ("chain_broken", _key(2)),
            ("key_mismatch", _key(1)),
            ("key_mismatch", _key(2)),
            ("sequence_gap", _key(1)),
            ("sequence_gap", _key(2)),
            ("time_regression", _key(2)),
            ("time_regression", _key(2)),
        ],
    ),
    "resigned-other-key": Case(_resign_other_key, [("unknown_key", _key(1))], events=11),
    "spliced-stream": Case(
        _splice,
        [("chain_broken", _key(1)), ("chain_broken", _key(2)), ("key_mismatch", _key(1))],
    ),
    "truncated-segment": Case(
        _truncate,
        [
            ("body_hash_mismatch", _key(2)),
            ("body_size_mismatch", _key(2)),
            ("malformed_segment", _key(2)),
        ],
        events=11,
    ),
    # Signed by the key holder without recomputing the root: lines 9.. renumbered once.
    "event-removed-and-resigned": Case(
        _drop_event,
        [
            ("merkle_mismatch", _key(2)),
            ("seal_mismatch", _key(2)),
            ("sequence_gap", _key(2)),
        ],
        events=14,
    ),
    "event-header-missing": Case(_header_missing, [("event_invalid", _key(2))]),
    "sealed-before-previous": Case(_sealed_before_previous, [("time_regression", _key(2))]),
    # app-1 and app-3 name "audit", app-2 names "staging": the minority stream is reported,
    # once, at its first segment.
    "staging-stream": Case(
        _staging_stream,
        [("prefix_mismatch", _key(0, "app-2"))],
        streams=3,
        segments=6,
        events=22,
        args=_LOCAL_NO_PREFIX,
    ),
    "stray-objects": Case(
        _stray_objects,
        [("unexpected_object", "README"), ("unexpected_object", "app-1/notes.txt")],
    ),
    "oversized-object": Case(
        _oversized,
        [("object_too_large", _key(2))],
        events=11,
        args=(*DEFAULT_ARGS, "--max-object-bytes", "2048"),
    ),
    # The .gz copy sorts first and is segment 1 (its seal names the .zst key); the .zst repeats it.
    "duplicate-segment": Case(
        _duplicate, [("duplicate_segment", _key(1)), ("key_mismatch", _key(1, ext="gz"))]
    ),
    "requested-stream-missing": Case(
        lambda root: None,
        [("stream_missing", "app-3")],
        streams=1,
        segments=3,
        events=12,
        args=(*DEFAULT_ARGS, "--stream", "app-1", "--stream", "app-3"),
    ),
    # The key may sign app-1 only: each app-2 segment is refused, app-1 verifies.
    "foreign-stream-key": Case(
        _foreign_stream_key,
        [("key_not_allowed", _key(0, "app-2", "gz")), ("key_not_allowed", _key(1, "app-2", "gz"))],
        events=12,
        args=_TRUSTED,
        files={
            "trust.toml": '[[key]]\npublic_key = "../../public.pem"\nstreams = ["app-1"]\n',
        },
    ),
    **STRICT,
}


def generate(out: Path) -> None:
    """Write every case under ``out/cases`` (replacing what is there)."""
    cases = out / "cases"
    shutil.rmtree(cases, ignore_errors=True)
    for name, case in CASES.items():
        root = cases / name / "archive"
        _valid(root)
        case.tamper(root)
        for file_name, text in case.files.items():
            (cases / name / file_name).write_text(text)
        (cases / name / "expected.json").write_text(json.dumps(case.expected(), indent=1) + "\n")
    first = build_stream(None, "app-1")[0]
    facts = {
        "signing_key_seed_hex": bytes(range(32)).hex(),
        "key_id": fixed_signer().key_id,
        "segment": first.key,
        "seal_hash": first.seal_hash,
        "body_hash": first.seal.body_hash,
        "merkle_root": first.seal.merkle_root,
        "leaf_hashes": [leaf_hash(line).hex() for line in body_lines(first)],
        "first_line": body_lines(first)[0].decode(),
    }
    (cases / "valid" / "facts.json").write_text(json.dumps(facts, indent=1) + "\n")
    (out / "public.pem").write_bytes(fixed_signer().public_pem())


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
