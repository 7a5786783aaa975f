"""The bulk check of usual blocks of lines finds exactly what the line-by-line check finds.

``_Lines.complete_lines`` checks a block of whole lines in one pass when every
line is as the writer makes them, and falls back to the line-by-line check
otherwise. The oracle here is the line-by-line check itself (forced by making
the bulk test always answer "not usual"), whose verdicts the other tests of
this package state by hand: for any damage to the lines and any way the
stored bytes arrive in pieces, both must report the same problems and count.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import tracemalloc
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_archiver.core.event import seal_event
from audit_archiver.core.line import MAX_SEQ
from audit_archiver.core.seal import Seal
from audit_archiver.verify import segment_check
from audit_archiver.verify.segment_check import SegmentResult, check_segment
from tests.helpers import forge
from tests.unit.verify.segment_helpers import KEY, PREFIX, STREAM, policy, segment, signer

TIMES = [f"2026-01-02T03:04:{second:02d}.000000Z" for second in range(60)]


def _lines(count: int, tick_every: int) -> list[bytes]:
    return [
        seal_event(
            {"actor": "u", "action": "read", "resource": {"id": f"d/{n}"}},
            n,
            TIMES[min(n // tick_every, 59)],
        )
        for n in range(count)
    ]


class _Pieces:
    """Returns the stored object in reads of at most ``size`` bytes."""

    def __init__(self, data: bytes, size: int) -> None:
        self._data = io.BytesIO(data)
        self._size = size

    def read(self, size: int, /) -> bytes:
        return self._data.read(min(size, self._size))


def _check(data: bytes, key: str, read_size: int, *, bulk: bool) -> SegmentResult:
    line_by_line_only = mock.patch.object(segment_check._Lines, "usual_block", return_value=None)
    with contextlib.nullcontext() if bulk else line_by_line_only:
        return check_segment(
            key,
            _Pieces(data, read_size),
            policy(),
            stream_id=STREAM,
            segment_seq=0,
            expected_object_key=f"{PREFIX}/{key}",
        )


DAMAGE_KINDS = (
    "none",
    "drop",
    "duplicate",
    "swap",
    "blank",
    "seq+1",
    "time-back",
    "bad-date",
    "no-brace",
    "no-header",
    "no-comma-after-time",
    "huge-seq",
    "extra-line",
    "no-final-newline",
    "cut-line",
)
DAMAGE = st.sampled_from(DAMAGE_KINDS)


def _damage(lines: list[bytes], kind: str, at: int) -> bytes:
    lines = list(lines)
    at %= len(lines)
    tail = b"\n"
    if kind == "drop":
        del lines[at]
    elif kind == "duplicate":
        lines.insert(at, lines[at])
    elif kind == "swap" and len(lines) > 1:
        other = (at + 1) % len(lines)
        lines[at], lines[other] = lines[other], lines[at]
    elif kind == "blank":
        lines.insert(at, b"")
    elif kind == "seq+1":
        lines[at] = lines[at].replace(b'"seq":%d,' % at, b'"seq":%d,' % (at + 1), 1)
    elif kind == "time-back":
        lines[at] = lines[at].replace(b"2026-01-02T03:04:", b"2026-01-02T03:03:", 1)
    elif kind == "bad-date":
        lines[at] = lines[at].replace(b"2026-01-02T", b"2026-02-30T", 1)
    elif kind == "no-brace":
        lines[at] = lines[at][:-1] + b" "
    elif kind == "no-header" and b',"action"' in lines[at]:
        lines[at] = b'{"actor":"u"' + lines[at][lines[at].index(b',"action"') :]
    elif kind == "no-comma-after-time":
        lines[at] = lines[at].replace(b'Z",', b'Z";', 1)
    elif kind == "huge-seq":
        lines[at] = lines[at].replace(b'"seq":%d,' % at, b'"seq":9999999999999999999,', 1)
    elif kind == "extra-line":
        lines.append(lines[-1])
    elif kind == "no-final-newline":
        tail = b""
    elif kind == "cut-line":
        lines[at] = lines[at][: len(lines[at]) // 2]
    return b"\n".join(lines) + tail


@settings(max_examples=150, deadline=None)
@given(
    count=st.integers(1, 60),
    tick_every=st.integers(1, 30),
    damage=st.lists(st.tuples(DAMAGE, st.integers(0, 10_000)), max_size=3),
    read_size=st.sampled_from([1, 7, 64, 333, 4096, 1 << 20]),
    compression=st.sampled_from(["zstd", "gzip"]),
)
def test_bulk_and_line_by_line_checks_agree(
    count: int,
    tick_every: int,
    damage: list[tuple[str, int]],
    read_size: int,
    compression: str,
) -> None:
    lines = _lines(count, tick_every)
    base = segment(lines, compression=compression)
    raw = b"\n".join(lines) + b"\n"
    for kind, at in damage:
        raw = _damage(raw.split(b"\n")[:-1] or [b""], kind, at) if raw.endswith(b"\n") else raw
    data = forge(base, signer(), raw_body=raw) if damage else base.data
    key = base.key.removeprefix(f"{PREFIX}/")
    bulk = _check(data, key, read_size, bulk=True)
    line_by_line = _check(data, key, read_size, bulk=False)
    assert bulk == line_by_line
    if not damage or all(kind == "none" for kind, _ in damage):
        assert bulk.problems == ()
        assert bulk.events == count


def test_the_bulk_path_is_taken_for_usual_lines() -> None:
    lines = _lines(5000, 100)
    calls: list[bool] = []
    real = segment_check._Lines.usual_block

    def spy(self: segment_check._Lines, block_lines: list[bytes]) -> object:
        found = real(self, block_lines)
        calls.append(found is not None)
        return found

    with mock.patch.object(segment_check._Lines, "usual_block", spy):
        result = check_segment(
            KEY,
            io.BytesIO(segment(lines).data),
            policy(),
            stream_id=STREAM,
            segment_seq=0,
            expected_object_key=f"{PREFIX}/{KEY}",
        )
    assert result.problems == ()
    assert result.events == 5000
    assert calls
    assert all(calls)


@pytest.mark.parametrize("kind", DAMAGE_KINDS)
@pytest.mark.parametrize("where", [0, 7, 15])
@pytest.mark.parametrize("read_size", [5, 1 << 20])
def test_each_damage_at_the_start_middle_and_end(kind: str, where: int, read_size: int) -> None:
    lines = _lines(16, 4)
    base = segment(lines)
    data = forge(base, signer(), raw_body=_damage(lines, kind, where))
    key = base.key.removeprefix(f"{PREFIX}/")
    bulk = _check(data, key, read_size, bulk=True)
    assert bulk == _check(data, key, read_size, bulk=False)
    assert (bulk.problems == ()) == (kind == "none")


# -- the line checker itself, fed pieces cut exactly where a case needs -------------


def _feed(seal: Seal, pieces: list[bytes], *, bulk: bool) -> tuple[object, ...]:
    """Everything a ``_Lines`` run leaves: findings, count, times and Merkle root."""
    out = segment_check._Findings(KEY, STREAM)
    checker = segment_check._Lines(seal, out, deep=False, max_line_bytes=1 << 20)
    line_by_line_only = mock.patch.object(segment_check._Lines, "usual_block", return_value=None)
    with contextlib.nullcontext() if bulk else line_by_line_only:
        for piece in pieces:
            checker.feed(piece)
        count = checker.finish()
    return out.problems(), count, checker.first_time, checker.last_time, checker.merkle.root()


def _sealed(lines: list[bytes], **changes: object) -> Seal:
    return dataclasses.replace(segment(lines).seal, **changes)  # type: ignore[arg-type]


def test_time_going_back_across_a_piece_boundary_at_a_newline() -> None:
    lines = _lines(6, 1)  # times 03:04:00 .. 03:04:05
    lines[3:] = [
        seal_event({"actor": "u", "action": "read", "resource": "r"}, n, TIMES[1])
        for n in range(3, 6)
    ]
    seal = _sealed(lines)
    first, second = b"\n".join(lines[:3]) + b"\n", b"\n".join(lines[3:]) + b"\n"
    bulk = _feed(seal, [first, second], bulk=True)
    assert bulk == _feed(seal, [first, second], bulk=False)
    assert [p.kind for p in bulk[0]] == ["time_regression"]  # type: ignore[attr-defined]


def test_seq_numbers_past_the_largest_are_refused_in_bulk_too() -> None:
    first = MAX_SEQ - 2
    lines = [
        seal_event({"actor": "u", "action": "read", "resource": "r"}, n, TIMES[0])
        for n in range(first, first + 3)
    ]
    lines.append(lines[-1].replace(b'"seq":%d,' % MAX_SEQ, b'"seq":%d,' % (MAX_SEQ + 1), 1))
    seal = _sealed(_lines(3, 1), first_seq=first, event_count=4)
    body = b"\n".join(lines) + b"\n"
    bulk = _feed(seal, [body], bulk=True)
    assert bulk == _feed(seal, [body], bulk=False)
    assert "event_invalid" in [p.kind for p in bulk[0]]


@pytest.mark.parametrize("line", [b"x}", b"", b'{"seq":0}'])
def test_a_piece_of_short_lines_costs_about_the_piece(line: bytes) -> None:
    piece = (line + b"\n") * ((64 << 10) // (len(line) + 1))  # a piece is up to ~384 KiB
    seal = _sealed(_lines(1, 1), event_count=piece.count(b"\n"))
    tracemalloc.start()
    try:
        problems = _feed(seal, [piece], bulk=True)[0]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "event_invalid" in [p.kind for p in problems]  # type: ignore[attr-defined]
    assert peak < 4 * len(piece) + (256 << 10)  # unbounded lists cost ~40 times the piece
