"""An attacker's toolkit: build archives, forge objects, run the real CLI, read its verdict.

Everything here is built from the outside: seals and frames are assembled
byte by byte (``raw_segment``), streams are sealed with the core's own writer
(``extend``), and every verdict comes from ``audit-archiver verify`` run in a
subprocess. Expected verdicts live in the tests, stated by hand.
"""

from __future__ import annotations

import base64
import json
import os
import re
import struct
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from audit_archiver.core.encoding import canonical_json
from audit_archiver.core.event import seal_event
from audit_archiver.core.seal import GENESIS_HASH
from audit_archiver.core.segment import SealedSegment, build_segment
from audit_archiver.core.signing import Ed25519Signer
from audit_archiver.storage.localdir import LocalDirectoryStore
from audit_archiver.storage.s3 import S3Store
from tests.helpers import FIXED_SEED, OTHER_SEED, fixed_signer, sample_event, tick
from tests.integration.cli import BIN, TIMEOUT_SECONDS

PREFIX = "audit"
RETAIN = datetime.now(UTC) + timedelta(days=400)
THIRD_SEED = bytes(range(64, 96))
# A control character the text report must never print raw: C0 (but newline), DEL and C1.
RAW_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")

KEY_A = fixed_signer(FIXED_SEED)  # the "billing" agent's key
KEY_B = fixed_signer(OTHER_SEED)  # the "web" agent's key
KEY_A2 = fixed_signer(THIRD_SEED)  # billing's next key (rotation)


def object_key(stream: str, n: int, *, prefix: str = PREFIX, ext: str = "zst") -> str:
    """A segment's key: ``<prefix>/<stream>/<n:012d>.ndjson.<ext>`` (no prefix: relative)."""
    relative = f"{stream}/{n:012d}.ndjson.{ext}"
    return f"{prefix}/{relative}" if prefix else relative


def extend(
    stream: str,
    previous: list[SealedSegment],
    signer: Ed25519Signer,
    *,
    count: int = 1,
    per_segment: int = 4,
    prefix: str = PREFIX,
    compression: str = "zstd",
    retention_days: int | None = None,
) -> list[SealedSegment]:
    """Seal ``count`` more segments continuing ``previous`` (the chain an agent would write).

    Timestamps follow :func:`tests.helpers.build_stream`, so ``extend(s, [], k, count=3)``
    is byte-identical to ``build_stream(None, s, signer=k)``.
    """
    built = list(previous)
    for _ in range(count):
        index = len(built)
        last = built[-1].seal if built else None
        first = last.next_seq if last else 0
        lines = [
            seal_event(sample_event(first + i), first + i, tick(first + i))
            for i in range(per_segment)
        ]
        built.append(
            build_segment(
                prefix=prefix,
                stream=stream,
                segment_seq=index,
                first_seq=first,
                lines=lines,
                prev_seal_hash=built[-1].seal_hash if built else GENESIS_HASH,
                sealed_at=tick(first + per_segment + 1000 * index),
                signer=signer,
                compression=compression,
                retention_days=retention_days,
            )
        )
    return built[len(previous) :]


def stream(stream_id: str, signer: Ed25519Signer, count: int, **kwargs: Any) -> list[SealedSegment]:
    """A fresh stream of ``count`` segments signed by ``signer``."""
    return extend(stream_id, [], signer, count=count, **kwargs)


def write_local(root: Path, segments: list[SealedSegment], *, prefix: str = PREFIX) -> None:
    """Write segments into ``root`` as ``aws s3 sync`` of ``prefix`` would."""
    store = LocalDirectoryStore(root)
    for segment in segments:
        relative = segment.key[len(prefix) + 1 :] if prefix else segment.key
        path = root / relative
        if path.exists():
            path.unlink()
        store.put_new(relative, segment.data, retain_until=None)


def upload(endpoint: str, bucket: str, segments: list[SealedSegment]) -> None:
    """Upload segments as the agent does (COMPLIANCE lock, checksum, If-None-Match)."""
    store = S3Store.connect(bucket, region="us-east-1", endpoint_url=endpoint)
    for segment in segments:
        store.put_new(segment.key, segment.data, retain_until=RETAIN)


def write_keys(folder: Path) -> dict[str, Path]:
    """PEM files of the three test keys: ``a.pub`` (billing), ``b.pub`` (web), ``a2.pub``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, signer in (("a", KEY_A), ("b", KEY_B), ("a2", KEY_A2)):
        path = folder / f"{name}.pub"
        path.write_bytes(signer.public_pem())
        paths[name] = path
    return paths


def write_trust(path: Path, rules: list[dict[str, Any]]) -> Path:
    """Write a trust file; each rule's ``public_key`` is a path relative to the file."""
    blocks = []
    for rule in rules:
        lines = ["[[key]]"]
        for name, value in rule.items():
            lines.append(f"{name} = {json.dumps(value)}")
        blocks.append("\n".join(lines))
    path.write_text("\n\n".join(blocks) + "\n")
    return path


# -- forging without a key ---------------------------------------------------------------------


def frame(block: bytes, container: str = "zstd") -> bytes:
    """The seal frame of FORMAT.md section 6 around an arbitrary seal block."""
    if container == "zstd":
        return b"\x5a\x2a\x4d\x18" + struct.pack("<I", len(block)) + block
    extra = b"AS" + struct.pack("<H", len(block)) + block
    header = b"\x1f\x8b\x08\x04\x00\x00\x00\x00\x00\xff"
    return header + struct.pack("<H", len(extra)) + extra + b"\x03\x00" + b"\x00" * 8


def signature_line(signature: bytes) -> bytes:
    """The canonical signature line for raw signature bytes."""
    return canonical_json({"signature": base64.b64encode(signature).decode("ascii")})


def raw_segment(
    seal_bytes: bytes,
    body: bytes,
    *,
    sig_line: bytes | None = None,
    container: str = "zstd",
) -> bytes:
    """An object from raw seal bytes, a signature line (default: 64 junk bytes) and a body."""
    line = signature_line(b"\x5a" * 64) if sig_line is None else sig_line
    return frame(seal_bytes + b"\n" + line + b"\n", container) + body


def seal_fields(segment: SealedSegment, **changes: Any) -> dict[str, Any]:
    """The seal of ``segment`` as a plain dict, with ``changes`` applied (any value at all)."""
    fields: dict[str, Any] = json.loads(segment.seal_bytes)
    fields.update(changes)
    return fields


def unsigned_next(segment: SealedSegment, *, body: bytes | None = None, **changes: Any) -> bytes:
    """What a bucket writer without a key can put at a stream's next key: a genuine-looking
    canonical seal (real key id, any field values) with a signature that is 64 junk bytes."""
    from audit_archiver.core.segment import open_segment

    fields = seal_fields(segment, **changes)
    seal_bytes = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    stored = open_segment(segment.data).body if body is None else body
    return raw_segment(seal_bytes.encode("utf-8"), stored)


# -- running the CLI ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What one ``audit-archiver verify`` run printed and returned."""

    code: int
    stdout: str
    stderr: str
    peak_rss: int | None = None

    @property
    def report(self) -> dict[str, Any]:
        """The ``--json`` report (fails the test when stdout is not one JSON object)."""
        value = json.loads(self.stdout)
        assert isinstance(value, dict)
        return value

    @property
    def problems(self) -> list[tuple[str, str]]:
        """Sorted (kind, key) pairs of the report's problems."""
        return sorted((p["kind"], p["key"]) for p in self.report["problems"])

    def summary(self, stream_id: str) -> dict[str, Any]:
        """The report's summary of one stream."""
        (found,) = [s for s in self.report["stream_summaries"] if s["stream"] == stream_id]
        assert isinstance(found, dict)
        return found

    def counts(self, stream_id: str) -> tuple[int, int]:
        """(segments, events) of one stream in the report."""
        summary = self.summary(stream_id)
        return summary["segments"], summary["events"]

    def key_ranges(self, stream_id: str) -> list[tuple[str, int, int]]:
        """Which key signed which segments of a stream: (key_id, first, last) in order."""
        return [
            (k["key_id"], k["first_segment"], k["last_segment"])
            for k in self.summary(stream_id)["keys"]
        ]


# Runs the CLI as its child and reports the peak RSS of every process it waited for (the
# verify process and its worker processes): ru_maxrss of RUSAGE_CHILDREN is the largest one.
_MEASURE = textwrap.dedent(
    """
    import resource, subprocess, sys
    code = subprocess.call(sys.argv[1:])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    sys.stderr.write("\\nPEAK_RSS_KIB=%d\\n" % peak)
    sys.exit(code)
    """
)


def verify(*args: str | Path, measure: bool = False, cwd: Path | None = None) -> Verdict:
    """Run ``audit-archiver verify ARGS --no-progress``; the process must end cleanly.

    A clean end is exit 0, 1 or 2 and no traceback; with ``measure`` the peak RSS
    (bytes) of the verify process tree is recorded.
    """
    command = [str(BIN), "verify", *map(str, args), "--no-progress"]
    if measure:
        command = [sys.executable, "-c", _MEASURE, *command]
    done = subprocess.run(
        command,
        capture_output=True,
        timeout=TIMEOUT_SECONDS,
        env={**os.environ},
        check=False,
        cwd=cwd,
    )
    stdout = done.stdout.decode("utf-8", "surrogateescape")
    stderr = done.stderr.decode("utf-8", "surrogateescape")
    peak = None
    if measure:
        found = re.search(r"PEAK_RSS_KIB=(\d+)", stderr)
        assert found, stderr
        peak = int(found.group(1)) * 1024
        stderr = stderr[: found.start()].rstrip("\n")
    assert "Traceback" not in stderr, stderr
    assert done.returncode in (0, 1, 2), (done.returncode, stderr)
    return Verdict(done.returncode, stdout, stderr, peak)


def local(root: Path, *options: str | Path, prefix: str | None = PREFIX) -> list[str | Path]:
    """Arguments for ``verify --local-dir ROOT [--prefix P] OPTIONS --json``."""
    head: list[str | Path] = ["--local-dir", root]
    if prefix is not None:
        head += ["--prefix", prefix]
    return [*head, *options, "--json"]


def bucket(endpoint: str, name: str, *options: str | Path) -> list[str | Path]:
    """Arguments for ``verify --bucket NAME --prefix audit OPTIONS --json``."""
    return [
        "--bucket",
        name,
        "--prefix",
        PREFIX,
        "--endpoint-url",
        endpoint,
        "--region",
        "us-east-1",
        *options,
        "--json",
    ]


def keys_args(*paths: Path) -> list[str | Path]:
    """``--public-key P`` for each path."""
    out: list[str | Path] = []
    for path in paths:
        out += ["--public-key", path]
    return out
