"""Attacks on the check of one stored segment; every verdict is stated by hand."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
import zstandard

from audit_archiver.core.segment import compress_body, open_segment
from audit_archiver.errors import (
    ObjectTooLargeError,
    StorageError,
    TransportChecksumError,
)
from audit_archiver.storage.base import ObjectInfo
from audit_archiver.storage.specs import LocalSpec
from audit_archiver.verify import worker
from audit_archiver.verify.retention import check_retention
from audit_archiver.verify.segment_check import Limits
from tests.unit.verify.segment_helpers import (
    OTHER_SEED,
    STREAM,
    TIME,
    check,
    event_lines,
    frame,
    kinds,
    policy,
    reseal,
    segment,
    signature_line,
    signed,
    signer,
)


@pytest.mark.parametrize("compression", ["zstd", "gzip"])
@pytest.mark.parametrize("deep", [False, True])
def test_valid_segment_passes(compression: str, deep: bool) -> None:
    built = segment(compression=compression)
    key = built.key.removeprefix("audit/")
    result = check(built.data, deep=deep, key=key)
    assert result.problems == ()
    assert result.events == 4
    assert result.seal == built.seal
    assert result.seal is not None
    assert result.seal.key_id == signer().key_id
    assert result.seal_hash == built.seal_hash


# -- unsigned hostile seals: one problem, nothing parsed --------------------------


def _fields(**changes: object) -> dict[str, object]:
    return {**json.loads(segment().seal_bytes), **changes}


def _seal(**changes: object) -> bytes:
    return json.dumps(_fields(**changes), separators=(",", ":"), sort_keys=True).encode()


HOSTILE_FIELDS = [
    {"sealed_at": "2026-99-99T00:00:00.000000Z"},
    {"sealed_at": "2026-02-30T00:00:00.000000Z"},
    {"sealed_at": "9999-12-31T23:59:59.999999Z", "retention_days": 36_500},
    {"retention_days": 10**9},
    {"event_count": 10**30},
    {"last_received_at": "2026-01-02T03:04:05.678901"},
]


@pytest.mark.parametrize("changes", HOSTILE_FIELDS)
def test_unsigned_hostile_seal_is_only_an_unknown_key(changes: dict[str, object]) -> None:
    data = signed(_seal(key_id=signer(OTHER_SEED).key_id, **changes), b"", seed=OTHER_SEED)
    result = check(data)
    assert kinds(result) == ["unknown_key"]
    assert (result.seal, result.events, result.seal_hash) == (None, 0, None)


@pytest.mark.parametrize("changes", HOSTILE_FIELDS)
def test_badly_signed_hostile_seal_is_only_a_signature_failure(changes: dict[str, object]) -> None:
    seal_bytes = _seal(**changes)
    data = frame(seal_bytes, signature_line(_seal()), b"")
    assert kinds(check(data)) == ["signature_invalid"]


@pytest.mark.parametrize(
    "changes",
    [
        {"sealed_at": "2026-99-99T00:00:00.000000Z"},
        {"sealed_at": "2026-02-30T00:00:00.000000Z"},
        {"retention_days": 36_501},
        {"retention_days": 10**9},
        {"event_count": 2**63, "last_seq": 2**63 - 1},
        {"last_seq": 7},
        {"object_key": "audit/s2/000000000000.ndjson.zst"},
    ],
)
def test_signed_impossible_seal_is_malformed(changes: dict[str, object]) -> None:
    result = check(signed(_seal(**changes), open_segment(segment().data).body))
    assert kinds(result) == ["malformed_segment"]
    assert result.seal is None


def test_arabic_indic_digits_are_not_digits() -> None:
    text = _seal().replace(b"2026-01-02T03:05:00", "٢٠٢٦-01-02T03:05:00".encode())
    assert kinds(check(signed(text, b""))) == ["malformed_segment"]
    assert kinds(check(signed(text, b"", seed=OTHER_SEED))) == ["malformed_segment"]


def test_year_9999_with_long_retention_does_not_overflow() -> None:
    seal = dataclasses.replace(
        segment().seal, sealed_at="9999-12-31T23:59:59.999999Z", retention_days=36_500
    )
    info = ObjectInfo("k", "v1", 1, "COMPLIANCE", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC))
    problems, _ = check_retention("k", STREAM, seal, info, None)
    assert [p.kind for p in problems] == ["retention_too_short"]
    problems, _ = check_retention("k", STREAM, segment().seal, info, 10**9)
    assert [p.kind for p in problems] == ["retention_too_short"]


@pytest.mark.parametrize(
    "seal_bytes",
    [
        b'{"key_id":"' + b"a" * 64 + b'","x":' + b"[" * 30_000 + b"]" * 30_000 + b"}",
        b"[" * 30_000,
        b"{" * 30_000,
        b'{"a":{"key_id":"' + b"a" * 64 + b'"}}',
    ],
)
def test_deep_nesting_in_the_seal_is_malformed(seal_bytes: bytes) -> None:
    assert kinds(check(signed(seal_bytes, b""))) == ["malformed_segment"]


def test_deep_nesting_in_the_signature_line_is_malformed() -> None:
    for line in (b"[" * 30_000 + b"]" * 30_000, b'{"signature":' + b"[" * 30_000 + b"}"):
        assert kinds(check(frame(_seal(), line, b""))) == ["malformed_segment"]


# -- non-canonical but authentic ------------------------------------------------


def _noncanonical_seals() -> list[bytes]:
    canonical = segment().seal_bytes
    return [
        canonical.replace(b'"stream":"s1"', b'"stream": "s1"'),
        canonical.replace(b'"stream":"s1"', b'"stream":"\\u0073\\u0031"'),
        json.dumps(_fields(), separators=(",", ":")).encode().replace(b"{", b"{ ", 1),
        json.dumps(dict(reversed(list(_fields().items()))), separators=(",", ":")).encode(),
        canonical.replace(b'"key_id":', b'"key_id" : '),
    ]


@pytest.mark.parametrize("seal_bytes", _noncanonical_seals())
def test_noncanonical_seal(seal_bytes: bytes) -> None:
    body = open_segment(segment().data).body
    result = check(signed(seal_bytes, body))
    assert kinds(result) == ["not_canonical"]
    assert result.seal is None
    assert kinds(check(signed(seal_bytes, body, seed=OTHER_SEED))) == ["signature_invalid"]


def test_noncanonical_signature_lines() -> None:
    seal_bytes = segment().seal_bytes
    body = open_segment(segment().data).body
    line = signature_line(seal_bytes)
    text = line[len(b'{"signature":"') : -2]
    assert text.endswith(b"==")  # 64 bytes: 4 unused bits in the last character
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(text[-3:-2])
    dirty = text[:-3] + alphabet[last ^ 1 : (last ^ 1) + 1] + b"=="
    for variant in (
        line.replace(b'":"', b'": "'),
        line.replace(b'{"signature"', b'{"\\u0073ignature"'),
        b'{"signature":"' + dirty + b'"}',
    ):
        assert kinds(check(frame(seal_bytes, variant, body))) == ["not_canonical"], variant
    bad = line.replace(b'":"', b'": "').replace(text[:4], b"AAAA")
    assert kinds(check(frame(seal_bytes, bad, body))) == ["signature_invalid"]


# -- strict body ------------------------------------------------------------------


def test_wrong_body_size() -> None:
    assert kinds(check(reseal(segment(), body_size=1))) == ["body_size_mismatch"]


def _raw() -> bytes:
    return b"".join(line + b"\n" for line in event_lines(4))


@pytest.mark.parametrize(
    "compressor",
    [
        zstandard.ZstdCompressor(write_checksum=False),
        zstandard.ZstdCompressor(write_checksum=True, write_content_size=False),
    ],
)
def test_zstd_without_checksum_or_content_size(compressor: zstandard.ZstdCompressor) -> None:
    body = compressor.compress(_raw())
    assert kinds(check(reseal(segment(), body))) == ["malformed_segment"]


def test_data_after_the_body() -> None:
    body = open_segment(segment().data).body + b"\x00"
    assert kinds(check(reseal(segment(), body))) == ["malformed_segment"]
    gz = compress_body(_raw(), "gzip") + compress_body(b"", "gzip")
    gz_seg = segment(compression="gzip")
    result = check(reseal(gz_seg, gz), key="s1/000000000000.ndjson.gz")
    assert kinds(result) == ["malformed_segment"]


def test_container_is_decided_by_leading_bytes() -> None:
    # A zstd object stored under a .gz key: the seal names zst, so only the key differs.
    result = check(segment().data, key="s1/000000000000.ndjson.gz")
    assert kinds(result) == ["key_mismatch"]


def test_body_over_the_bound_is_not_inflated() -> None:
    result = check(segment().data, limits=Limits(max_body_bytes=100))
    assert kinds(result) == ["malformed_segment"]
    assert "inflates past 100" in result.problems[0].detail


def test_object_over_the_bound() -> None:
    result = check(segment().data, limits=Limits(max_object_bytes=500))
    assert kinds(result) == ["object_too_large"]


def test_one_problem_per_kind() -> None:
    lines = event_lines(1) + [b"junk"] * 500 + event_lines(1, first=501)
    built = segment(lines)
    result = check(built.data)
    assert kinds(result) == ["event_invalid", "sequence_gap"] or kinds(result) == ["event_invalid"]
    (invalid,) = [p for p in result.problems if p.kind == "event_invalid"]
    assert "line 2" in invalid.detail
    assert "500" in invalid.detail


def test_more_lines_than_sealed() -> None:
    body = compress_body(_raw() * 3, "zstd")
    result = check(reseal(segment(), body))
    assert kinds(result) == ["merkle_mismatch", "seal_mismatch"]
    assert result.events == 12


# -- deep ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "middle",
    [
        b'{"seq":1,"received_at":"' + TIME.encode() + b'","actor":"\xff\xfe","x":1}',
        b'{"seq":1,"received_at":"' + TIME.encode() + b'","action":"a","seq":999}',
        b'{"seq":1,"received_at":"' + TIME.encode() + b'",not json}',
        b'{"seq":1,"received_at":"' + TIME.encode() + b'", "action":"a"}',
        b'{"seq":1,"received_at":"' + TIME.encode() + b'","n":18446744073709551616}',
        b'{"seq":1,"received_at":"' + TIME.encode() + b'","n":-9223372036854775809}',
        b'{"seq":1,"received_at":"' + TIME.encode() + b'","n":' + b"[" * 5000 + b"]" * 5000 + b"}",
    ],
)
def test_deep_catches_signed_malformed_lines(middle: bytes) -> None:
    lines = [*event_lines(1), middle, *event_lines(1, first=2)]
    built = segment(lines)
    assert check(built.data).problems == ()
    result = check(built.data, deep=True)
    assert kinds(result) == ["event_invalid"]


@pytest.mark.parametrize("number", [b"18446744073709551615", b"-9223372036854775808", b"1.5"])
def test_deep_accepts_64_bit_integers(number: bytes) -> None:
    middle = b'{"seq":1,"received_at":"' + TIME.encode() + b'","n":' + number + b"}"
    built = segment([*event_lines(1), middle, *event_lines(1, first=2)])
    assert check(built.data, deep=True).problems == ()


def test_deep_bounds_the_line_length() -> None:
    middle = b'{"seq":1,"received_at":"' + TIME.encode() + b'","a":"' + b"x" * 5000 + b'"}'
    built = segment([*event_lines(1), middle, *event_lines(1, first=2)])
    assert check(built.data, deep=True, limits=Limits(max_line_bytes=10_000)).problems == ()
    result = check(built.data, deep=True, limits=Limits(max_line_bytes=1000))
    assert kinds(result) == ["event_invalid"]


# -- trust policy -------------------------------------------------------------------


def test_key_not_allowed_for_the_stream() -> None:
    result = check(segment().data, policy(streams=("billing-*",)))
    assert kinds(result) == ["key_not_allowed"]
    assert result.seal is None
    (problem,) = result.problems
    assert signer().key_id in problem.detail
    assert "'s1'" in problem.detail
    assert "billing-*" in problem.detail
    assert check(segment().data, policy(streams=("s*",))).problems == ()


# -- memory -------------------------------------------------------------------------

# Peak RSS of a fresh process: VmHWM, not ru_maxrss, which Linux carries over
# from the forking pytest process (that built the bomb) across exec.
_MEASURE = """
import re, sys
from tests.unit.verify.segment_helpers import check
data = open(sys.argv[1], "rb").read()
result = check(data, deep=sys.argv[2] == "deep")
print(sorted(p.kind for p in result.problems), result.events)
status = open("/proc/self/status").read()
print(int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) // 1024)
"""


def _peak_mib(path: Path, deep: bool) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path), "deep" if deep else "plain"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[3],
    ).stdout.splitlines()
    return out[0], int(out[1])


@pytest.mark.parametrize("seed", [bytes(range(32)), OTHER_SEED])
def test_decompression_bomb_stays_bounded(tmp_path: Path, seed: bytes) -> None:
    raw = b"ab\n" * (64 * 1024 * 1024 // 3)
    body = zstandard.ZstdCompressor(level=19, write_checksum=True).compress(raw)
    assert len(body) < 64 * 1024
    data = reseal(segment(), body) if seed != OTHER_SEED else reseal(segment(seed=seed), body)
    path = tmp_path / "bomb"
    path.write_bytes(data)
    verdict, peak = _peak_mib(path, deep=True)
    if seed == OTHER_SEED:
        assert verdict == "['unknown_key'] 0"
    else:
        assert verdict == f"['event_invalid', 'merkle_mismatch', 'seal_mismatch'] {len(raw) // 3}"
    assert peak < 100


def test_large_honest_body_stays_bounded(tmp_path: Path) -> None:
    line = b'{"seq":%d,"received_at":"' + TIME.encode() + b'","a":"' + b"x" * 2000 + b'"}'
    lines = [line % n for n in range(30_000)]  # ~60 MiB inflated
    path = tmp_path / "big"
    path.write_bytes(segment(lines).data)
    verdict, peak = _peak_mib(path, deep=False)
    assert verdict == "[] 30000"
    assert peak < 100


# -- the worker is total --------------------------------------------------------------


class _Stream:
    def __init__(self, data: bytes, error: Exception | None = None) -> None:
        self.info = ObjectInfo("k", "v1", len(data))
        self._data, self._error = data, error

    def read(self, size: int) -> bytes:
        if not self._data and self._error is not None:
            raise self._error
        part, self._data = self._data[:size], self._data[size:]
        return part

    def close(self) -> None:
        pass

    def __enter__(self) -> _Stream:
        return self

    def __exit__(self, *args: object) -> None:
        pass


class _Store:
    def __init__(self, data: bytes, error: Exception | None = None, at_open: bool = False) -> None:
        self.data, self.error, self.at_open = data, error, at_open

    def open_object(self, key: str, version_id: str | None = None, *, max_bytes: int) -> _Stream:
        if self.at_open and self.error is not None:
            raise self.error
        return _Stream(self.data, None if self.at_open else self.error)


def _run(store: _Store) -> list[str]:
    settings = worker.CheckSettings(
        spec=store,  # type: ignore[arg-type]
        policy=policy(),
        check_retention=False,
        min_retention_days=None,
    )
    task = worker.SegmentTask(
        "s1/000000000000.ndjson.zst", "v1", STREAM, 0, "audit/s1/000000000000.ndjson.zst"
    )
    (result,) = worker.check_chunk([task], settings)
    return [p.kind for p in result.problems]


def test_worker_turns_failures_into_problems(monkeypatch: pytest.MonkeyPatch) -> None:
    data = segment().data
    assert _run(_Store(data)) == []
    too_large = ObjectTooLargeError("k", limit=1, size=2)
    assert _run(_Store(data, too_large, at_open=True)) == ["object_too_large"]
    assert _run(_Store(data, too_large)) == ["object_too_large"]
    assert _run(_Store(data, TransportChecksumError("bad", key="k"))) == ["checksum_mismatch"]
    with pytest.raises(StorageError):
        _run(_Store(data, StorageError("down")))

    def explode(*args: object, **kwargs: object) -> None:
        raise RecursionError("maximum recursion depth exceeded\nwhile calling")

    monkeypatch.setattr(worker, "check_segment", explode)
    assert _run(_Store(data)) == ["malformed_segment"]


def test_worker_opens_one_store_per_spec(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    opened: list[Path] = []
    real_open = LocalSpec.open

    def slow_open(spec: LocalSpec) -> object:
        opened.append(spec.root)
        threading.Event().wait(0.05)  # every thread is waiting here without the lock
        return real_open(spec)

    monkeypatch.setattr(LocalSpec, "open", slow_open)
    monkeypatch.setattr(worker, "_STORES", {})
    settings = worker.CheckSettings(LocalSpec(tmp_path), policy(), False, None)
    threads = [threading.Thread(target=worker._store, args=(settings,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert opened == [tmp_path]
