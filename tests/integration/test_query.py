"""``audit-archiver query`` through the real CLI, over a folder and over moto's S3 (HTTP).

Archives are sealed here with the core sealer and an explicit clock (segment
``n`` holds the events of hour ``n``), so every expected answer is computed
from the events put in (:func:`expected`), never from the archiver's output.
Attacks come first: a segment that fails, or whose link into the window fails,
never prints its events, and the query exits 1 with the problem on stderr.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from audit_archiver.agent.sealer import StreamSealer
from audit_archiver.core.chain import ChainHead
from audit_archiver.core.encoding import format_timestamp
from audit_archiver.core.event import seal_event
from audit_archiver.core.segment import SealedSegment
from audit_archiver.storage.localdir import LocalDirectoryStore
from audit_archiver.storage.s3 import S3Store
from tests.helpers import OTHER_SEED, fixed_signer, forge
from tests.integration.cli import BIN, run_cli
from tests.reliability.faultproxy import FaultProxy, Request
from tests.s3server import s3_client
from tests.vectors.generate import HERE as VECTORS

PUBLIC = VECTORS / "public.pem"
START = datetime(2026, 3, 1, tzinfo=UTC)
RETAIN = datetime.now(UTC) + timedelta(days=30)
PER_SEGMENT = 3


def hour(n: float) -> datetime:
    return START + timedelta(hours=n)


def stamp(moment: datetime) -> str:
    return format_timestamp(moment)


def make_event(stream: str, n: int, i: int) -> dict[str, Any]:
    """Event ``i`` of segment ``n``: every filter has something to tell apart."""
    return {
        "actor": {"id": f"user-{n % 3}", "type": "user"} if i == 0 else f"svc-{n % 2}",
        "action": ["read", "write", "delete"][i],
        "resource": f"s3://hr/file-{n}" if n % 2 == 0 else {"id": f"s3://finance/file-{n}"},
        "outcome": "failure" if (n + i) % 4 == 0 else "success",
        # The producer's claim: three days before it was received, for even segments.
        "time": stamp(hour(n - (72 if n % 2 == 0 else 0)) + timedelta(minutes=i)),
        "source_ip": f"10.0.{n % 256}.{i}",
        "stream": "the producer's own field",
        "note": f"{stream}:{n}:{i}",
    }


def received(n: int, i: int) -> str:
    return stamp(hour(n) + timedelta(minutes=10 * i + 1))


@dataclasses.dataclass
class Sealed:
    """A stream sealed here: its segments and, per segment, the events put in."""

    stream: str
    segments: list[SealedSegment]
    events: list[list[tuple[int, str, dict[str, Any]]]]  # per segment: (seq, received_at, event)


def seal_stream(
    stream: str,
    count: int,
    *,
    heartbeats: tuple[int, ...] = (),
    skip_number: int | None = None,
) -> Sealed:
    """Segment ``n``: PER_SEGMENT events received in hour ``n``, sealed at minute 50
    (a heartbeat for ``n`` in ``heartbeats``). With ``skip_number`` the writer steps over
    that segment number (as after finding a foreign object there, ADR 7)."""
    sealer = StreamSealer(prefix="audit", stream=stream, signer=fixed_signer(), head=ChainHead())
    sealed = Sealed(stream, [], [])
    for n in range(count):
        if n == skip_number:
            sealer.head = dataclasses.replace(sealer.head, next_segment_seq=n + 1)
            continue
        put = [] if n in heartbeats else range(PER_SEGMENT)
        first = sealer.head.next_seq
        events = [(first + i, received(n, i), make_event(stream, n, i)) for i in put]
        lines = [seal_event(e, seq, at) for seq, at, e in events]
        sealed.segments.append(sealer.seal(lines, stamp(hour(n) + timedelta(minutes=50))))
        sealed.events.append(events)
    return sealed


def write_folder(root: Path, *streams: Sealed) -> Path:
    store = LocalDirectoryStore(root)
    for sealed in streams:
        for segment in sealed.segments:
            store.put_new(segment.key.removeprefix("audit/"), segment.data, retain_until=None)
    return root


def expected(
    *streams: Sealed,
    keep: Callable[[dict[str, Any], str], bool] = lambda _e, _r: True,
    skip: tuple[tuple[str, int], ...] = (),
) -> list[tuple[str, int]]:
    """(stream, seq) of the events put in that ``keep`` accepts, in the order printed
    (streams by name, seq order), leaving out segments ``skip`` (stream, segment number)."""
    out = []
    for sealed in sorted(streams, key=lambda s: s.stream):
        for segment, events in zip(sealed.segments, sealed.events, strict=True):
            if (sealed.stream, segment.seal.segment_seq) in skip:
                continue
            out += [(sealed.stream, seq) for seq, at, event in events if keep(event, at)]
    return out


def query(source: list[str | Path], *args: str | Path) -> tuple[int, list[dict[str, Any]], str]:
    result = run_cli("query", *source, "--public-key", PUBLIC, "--format", "json", *args)
    assert result.returncode in (0, 1), result.stderr
    assert "Traceback" not in result.stderr
    return (
        result.returncode,
        [json.loads(line) for line in result.stdout.splitlines()],
        result.stderr,
    )


def seqs(printed: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(p["stream"], p["event"]["seq"]) for p in printed]


@pytest.fixture(scope="module")
def two_streams() -> tuple[Sealed, Sealed]:
    return seal_stream("app-1", 12), seal_stream("app-2", 6, heartbeats=(2, 3))


@pytest.fixture(params=["folder", "bucket"])
def folder(
    request: pytest.FixtureRequest, tmp_path: Path, two_streams: tuple[Sealed, Sealed]
) -> list[str | Path]:
    """The two streams as a downloaded copy, or in a locked bucket of moto's S3 server:
    the filter and format tests run against both."""
    if request.param == "folder":
        return ["--local-dir", write_folder(tmp_path / "copy", *two_streams), "--prefix", "audit"]
    endpoint, bucket = request.getfixturevalue("locked_bucket")
    store = S3Store.connect(bucket, region="us-east-1", endpoint_url=endpoint)
    for sealed in two_streams:
        for segment in sealed.segments:
            store.put_new(segment.key, segment.data, retain_until=None)
    return ["--bucket", bucket, "--prefix", "audit", "--endpoint-url", endpoint]


# -- attacks: nothing unverified is printed --------------------------------------------------


def test_a_flipped_body_byte_hides_that_segment_only(tmp_path: Path) -> None:
    sealed = seal_stream("app-1", 6)
    root = write_folder(tmp_path / "copy", sealed)
    target = root / "app-1" / "000000000003.ndjson.zst"
    data = bytearray(target.read_bytes())
    data[-20] ^= 0x01
    target.write_bytes(bytes(data))
    code, printed, err = query(["--local-dir", root, "--prefix", "audit"])
    assert code == 1
    assert seqs(printed) == expected(sealed, skip=(("app-1", 3),))
    assert "[body_hash_mismatch] app-1/000000000003.ndjson.zst" in err


def test_a_foreign_object_is_reported_and_the_writer_steps_over_it(tmp_path: Path) -> None:
    sealed = seal_stream("app-1", 5, skip_number=2)
    root = write_folder(tmp_path / "copy", sealed)
    foreign = seal_stream("app-1", 3)  # same layout, signed by another key
    other = forge(foreign.segments[2], fixed_signer(OTHER_SEED))
    (root / "app-1" / "000000000002.ndjson.zst").write_bytes(other)
    code, printed, err = query(["--local-dir", root, "--prefix", "audit"])
    assert code == 1
    assert seqs(printed) == expected(sealed)  # segments 0, 1, 3, 4: 3 links to 1
    assert "[unknown_key] app-1/000000000002.ndjson.zst" in err


def test_a_deleted_middle_segment_prints_nothing_it_cannot_link(tmp_path: Path) -> None:
    sealed = seal_stream("app-1", 6)
    root = write_folder(tmp_path / "copy", sealed)
    (root / "app-1" / "000000000002.ndjson.zst").unlink()
    code, printed, err = query(["--local-dir", root, "--prefix", "audit"])
    assert code == 1
    # 2 is gone; 3's link (to 2) cannot be checked, so 3 is not printed; 4 links to 3.
    assert seqs(printed) == expected(sealed, skip=(("app-1", 2), ("app-1", 3)))
    assert "[sequence_gap] app-1/000000000003.ndjson.zst" in err


def test_a_broken_link_into_the_window_hides_its_first_segment(tmp_path: Path) -> None:
    sealed = seal_stream("app-1", 8)
    root = write_folder(tmp_path / "copy", sealed)
    # The key holder re-signs segment 3 with another retention: a valid seal, another hash.
    resigned = forge(sealed.segments[3], fixed_signer(), retention_days=9)
    (root / "app-1" / "000000000003.ndjson.zst").write_bytes(resigned)
    since, until = stamp(hour(4)), stamp(hour(6))
    code, printed, err = query(
        ["--local-dir", root, "--prefix", "audit"], "--since", since, "--until", until
    )
    assert code == 1
    assert "[chain_broken] app-1/000000000004.ndjson.zst" in err
    in_window = expected(sealed, keep=lambda _e, at: since <= at < until)
    assert seqs(printed) == [p for p in in_window if p[1] >= 5 * PER_SEGMENT]  # not segment 4


def test_a_stream_asked_for_and_absent_is_a_problem(folder: list[str | Path]) -> None:
    code, printed, err = query(folder, "--stream", "nope", "--stream", "app-2")
    assert code == 1
    assert printed and {p["stream"] for p in printed} == {"app-2"}
    assert "[stream_missing] nope" in err


# -- fix round: the edges of a window, heartbeats, output, pipes -------------------------------


def unlink(root: Path, stream: str, *numbers: int) -> None:
    for number in numbers:
        (root / stream / f"{number:012d}.ndjson.zst").unlink()


WINDOW = (stamp(hour(3)), stamp(hour(6)))  # segments 3, 4 and 5


def in_window(_event: dict[str, Any], at: str) -> bool:
    return WINDOW[0] <= at < WINDOW[1]


@pytest.fixture(scope="module")
def ten() -> Sealed:
    return seal_stream("app-1", 10)


def test_a_deleted_segment_at_the_windows_end_is_reported(tmp_path: Path, ten: Sealed) -> None:
    """Review finding H1: deleting the window's last segment was silent (exit 0)."""
    root = write_folder(tmp_path / "copy", ten)
    unlink(root, "app-1", 5)
    code, printed, err = query(["--local-dir", root], "--since", WINDOW[0], "--until", WINDOW[1])
    assert code == 1
    assert "[sequence_gap] app-1/000000000006.ndjson.zst: segments 5..5 are missing" in err
    assert seqs(printed) == expected(ten, keep=in_window, skip=(("app-1", 5),))


def test_a_whole_deleted_window_is_reported(tmp_path: Path, ten: Sealed) -> None:
    root = write_folder(tmp_path / "copy", ten)
    unlink(root, "app-1", 3, 4, 5)
    code, printed, err = query(["--local-dir", root], "--since", WINDOW[0], "--until", WINDOW[1])
    assert (code, printed) == (1, [])
    assert "[sequence_gap] app-1/000000000006.ndjson.zst: segments 3..5 are missing" in err


def test_a_gap_outside_the_window_is_reported_without_a_download(
    tmp_path: Path, ten: Sealed
) -> None:
    root = write_folder(tmp_path / "copy", ten)
    unlink(root, "app-1", 8)
    code, printed, err = query(["--local-dir", root], "--since", WINDOW[0], "--until", WINDOW[1])
    assert code == 1
    assert seqs(printed) == expected(ten, keep=in_window)  # the window itself verified
    assert "[sequence_gap] app-1/000000000009.ndjson.zst: segments 8..8 are missing" in err


def test_the_link_out_of_the_window_is_checked(tmp_path: Path, ten: Sealed) -> None:
    """The key holder re-signs the window's last segment: it links in, but segment 6
    (outside the window, not printed) no longer links to it."""
    root = write_folder(tmp_path / "copy", ten)
    resigned = forge(ten.segments[5], fixed_signer(), retention_days=9)
    (root / "app-1" / "000000000005.ndjson.zst").write_bytes(resigned)
    code, printed, err = query(["--local-dir", root], "--since", WINDOW[0], "--until", WINDOW[1])
    assert code == 1
    assert "[chain_broken] app-1/000000000006.ndjson.zst" in err
    assert {seq for _, seq in seqs(printed)} <= {seq for _, seq in expected(ten, keep=in_window)}


def test_an_empty_window_still_checks_the_seals_around_it(tmp_path: Path, ten: Sealed) -> None:
    between = (stamp(hour(5) + timedelta(minutes=55)), stamp(hour(5) + timedelta(minutes=58)))
    root = write_folder(tmp_path / "clean", ten)
    assert query(["--local-dir", root], "--since", between[0], "--until", between[1]) == (0, [], "")
    root = write_folder(tmp_path / "copy", ten)
    relinked = forge(ten.segments[6], fixed_signer(), prev_seal_hash="ab" * 32)
    (root / "app-1" / "000000000006.ndjson.zst").write_bytes(relinked)
    code, printed, err = query(["--local-dir", root], "--since", between[0], "--until", between[1])
    assert (code, printed) == (1, [])
    assert "[chain_broken] app-1/000000000006.ndjson.zst" in err


def test_a_window_before_everything_checks_the_genesis_link(tmp_path: Path, ten: Sealed) -> None:
    early = stamp(hour(0))
    root = write_folder(tmp_path / "gone", ten)
    unlink(root, "app-1", 0)
    code, printed, err = query(["--local-dir", root], "--until", early)
    assert (code, printed) == (1, [])
    assert "[sequence_gap] app-1/000000000001.ndjson.zst: segments 0..0 are missing" in err
    root = write_folder(tmp_path / "forged", ten)
    not_genesis = forge(ten.segments[0], fixed_signer(), prev_seal_hash="ab" * 32)
    (root / "app-1" / "000000000000.ndjson.zst").write_bytes(not_genesis)
    code, printed, err = query(["--local-dir", root], "--until", early)
    assert (code, printed) == (1, [])
    assert "[chain_broken] app-1/000000000000.ndjson.zst" in err


def test_the_link_into_a_window_steps_over_a_foreign_object(tmp_path: Path) -> None:
    """The writer stepped over a foreign object at number 2 (ADR 7); a window starting at
    segment 3 links to segment 1, so 3 prints, and the foreign object is reported."""
    sealed = seal_stream("app-1", 6, skip_number=2)
    root = write_folder(tmp_path / "copy", sealed)
    other = forge(seal_stream("app-1", 3).segments[2], fixed_signer(OTHER_SEED))
    (root / "app-1" / "000000000002.ndjson.zst").write_bytes(other)
    code, printed, err = query(["--local-dir", root], "--since", WINDOW[0], "--until", WINDOW[1])
    assert code == 1
    assert "[unknown_key] app-1/000000000002.ndjson.zst" in err
    assert seqs(printed) == expected(sealed, keep=in_window)


def test_an_event_received_just_before_a_heartbeat_is_not_cut_by_until(tmp_path: Path) -> None:
    """Review finding M1 (from the reviewer's attack_heartbeat.py): the agent reads its
    clock for an event, then seals a heartbeat, then seals the event in the next segment;
    an --until between the two times must still print it."""
    sealer = StreamSealer(prefix="audit", stream="app", signer=fixed_signer(), head=ChainHead())
    heartbeat = hour(1)
    race = heartbeat - timedelta(microseconds=5)
    events = [
        (0, hour(0), {"actor": "a", "action": "x", "resource": "r"}),
        (1, race, {"actor": "victim", "action": "x", "resource": "r"}),
        (2, hour(3), {"actor": "b", "action": "x", "resource": "r"}),
    ]
    segments = [
        sealer.seal([seal_event(events[0][2], 0, stamp(hour(0)))], stamp(hour(0.1))),
        sealer.seal([], stamp(hour(0.5))),
        sealer.seal([], stamp(heartbeat)),
        sealer.seal([seal_event(events[1][2], 1, stamp(race))], stamp(hour(1.01))),
        sealer.seal([seal_event(events[2][2], 2, stamp(hour(3)))], stamp(hour(3.1))),
    ]
    root = write_folder(tmp_path / "copy", Sealed("app", segments, []))
    until = stamp(heartbeat - timedelta(microseconds=2))
    code, printed, err = query(["--local-dir", root, "--prefix", "audit"], "--until", until)
    assert (code, err) == (0, "")
    want = [event["actor"] for _, at, event in events if stamp(at) < until]
    assert want == ["a", "victim"]
    assert [p["event"]["actor"] for p in printed] == want


def test_csv_cells_with_controls_stay_on_one_line(tmp_path: Path) -> None:
    """Review finding M2 through the CLI: a producer's newline or bidi character in a cell."""
    sealer = StreamSealer(prefix="audit", stream="s", signer=fixed_signer(), head=ChainHead())
    hostile = {"actor": "a\nb", "action": " =1+1", "resource": "x\u202ey"}
    segment = sealer.seal([seal_event(hostile, 0, stamp(hour(0)))], stamp(hour(1)))
    write_folder(tmp_path / "copy", Sealed("s", [segment], [[]]))
    result = run_cli(
        "query", "--local-dir", tmp_path / "copy", "--public-key", PUBLIC, "--format", "csv"
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2  # header and one row
    row = next(iter(list(csv.reader(io.StringIO(result.stdout)))[1:]))
    assert row[4:7] == ["a\\x0ab", "' =1+1", "x\\u202ey"]


def test_a_year_before_1000_is_a_valid_since(
    folder: list[str | Path], two_streams: tuple[Sealed, Sealed]
) -> None:
    """Review finding L4: "999-..." sorted after "2026-..." and matched nothing."""
    code, printed, err = query(folder, "--since", "0999-01-01T00:00:00Z")
    assert (code, err) == (0, "")
    assert seqs(printed) == expected(*two_streams)
    result = run_cli("query", *folder, "--public-key", PUBLIC, "--since", "0000-01-01T00:00:00Z")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("damaged", [False, True])
def test_a_closed_pipe_ends_quietly(tmp_path: Path, ten: Sealed, damaged: bool) -> None:
    """Review finding L8: ``query | head`` printed a BrokenPipeError traceback."""
    root = write_folder(tmp_path / "copy", ten)
    if damaged:
        unlink(root, "app-1", 4)
    process = subprocess.Popen(
        [
            str(BIN),
            "query",
            "--local-dir",
            str(root),
            "--public-key",
            str(PUBLIC),
            "--format",
            "json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader is gone before the first event is printed
    with process.stderr:
        err = process.stderr.read().decode()
    assert process.wait(timeout=60) == (1 if damaged else 0)
    assert "Traceback" not in err and "Exception ignored" not in err and "BrokenPipe" not in err
    assert ("[sequence_gap]" in err) == damaged


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_a_symlink_or_fifo_at_a_segment_key_is_a_problem(
    tmp_path: Path, ten: Sealed, kind: str
) -> None:
    """Review finding L8: not exit 2; such an entry is not a segment, so its number is
    missing."""
    root = write_folder(tmp_path / "copy", ten)
    target = root / "app-1" / "000000000004.ndjson.zst"
    target.rename(tmp_path / "moved")
    if kind == "symlink":
        os.symlink(tmp_path / "moved", target)
    else:
        os.mkfifo(target)
    for args in ([], ["--stream", "app-1"], ["--since", stamp(hour(3)), "--until", stamp(hour(6))]):
        code, printed, err = query(["--local-dir", root], *args)
        assert code == 1, args
        assert "[sequence_gap] app-1/000000000005.ndjson.zst" in err
        assert 4 * PER_SEGMENT not in {seq for _, seq in seqs(printed)}


# -- filters and formats ----------------------------------------------------------------------


def test_no_filter_prints_every_event_in_order_as_sealed(
    folder: list[str | Path], two_streams: tuple[Sealed, Sealed]
) -> None:
    code, printed, err = query(folder)
    assert (code, err) == (0, "")
    assert seqs(printed) == expected(*two_streams)
    first = printed[0]
    assert first["object_key"] == "audit/app-1/000000000000.ndjson.zst"
    seq, at, event = two_streams[0].events[0][0]
    line = seal_event(event, seq, at)  # the bytes sealed
    assert json.dumps(first["event"], separators=(",", ":"), ensure_ascii=False).encode() == line
    assert first["event"]["stream"] == "the producer's own field"


@pytest.mark.parametrize(
    ("args", "keep"),
    [
        (
            ("--actor", "user-1"),
            lambda e, _a: isinstance(e["actor"], dict) and e["actor"]["id"] == "user-1",
        ),
        (("--actor", "svc-*"), lambda e, _a: e["actor"] in ("svc-0", "svc-1")),
        (("--resource", "s3://hr/*"), lambda e, _a: str(e["resource"]).startswith("s3://hr/")),
        (
            ("--resource", "s3://finance/file-[13]"),
            lambda e, _a: (
                e["resource"] in ({"id": "s3://finance/file-1"}, {"id": "s3://finance/file-3"})
            ),
        ),
        (("--action", "write"), lambda e, _a: e["action"] == "write"),
        (("--outcome", "fail*"), lambda e, _a: e["outcome"] == "failure"),
        (
            ("--actor", "user-?", "--action", "read", "--outcome", "success"),
            lambda e, _a: isinstance(e["actor"], dict) and e["outcome"] == "success",
        ),
    ],
)
def test_field_filters(
    folder: list[str | Path],
    two_streams: tuple[Sealed, Sealed],
    args: tuple[str, ...],
    keep: Callable[[dict[str, Any], str], bool],
) -> None:
    code, printed, err = query(folder, *args)
    assert (code, err) == (0, "")
    want = expected(*two_streams, keep=keep)
    assert want and seqs(printed) == want


def test_received_time_window(folder: list[str | Path], two_streams: tuple[Sealed, Sealed]) -> None:
    since = "2026-03-01T04:00:00+02:00"  # 02:00Z, inclusive
    until = stamp(hour(5) + timedelta(minutes=11))  # exclusive: event 1 of hour 5 is left out
    code, printed, _ = query(folder, "--since", since, "--until", until)
    assert code == 0
    want = expected(*two_streams, keep=lambda _e, at: stamp(hour(2)) <= at < until)
    assert want and seqs(printed) == want


def test_claimed_time_window(folder: list[str | Path], two_streams: tuple[Sealed, Sealed]) -> None:
    since, until = stamp(hour(0)), stamp(hour(3))
    code, printed, _ = query(folder, "--since", since, "--until", until, "--by-claimed-time")
    assert code == 0
    want = expected(*two_streams, keep=lambda e, _a: since <= e["time"] < until)
    assert want and seqs(printed) == want


def test_limit_stops_after_n_events(
    folder: list[str | Path], two_streams: tuple[Sealed, Sealed]
) -> None:
    code, printed, _ = query(folder, "--limit", "4", "--actor", "svc-*")
    assert code == 0
    assert (
        seqs(printed) == expected(*two_streams, keep=lambda e, _a: isinstance(e["actor"], str))[:4]
    )


def test_csv_has_a_header_and_neutralises_formulas(tmp_path: Path) -> None:
    sealer = StreamSealer(prefix="audit", stream="s", signer=fixed_signer(), head=ChainHead())
    hostile = {
        "actor": '=HYPERLINK("http://evil.example","x")',
        "action": "+cmd",
        "resource": {"id": "@SUM(1+1)"},
        "outcome": "-1",
        "details": {"text": 'a,b\n"c"'},
    }
    segment = sealer.seal([seal_event(hostile, 0, stamp(hour(0)))], stamp(hour(1)))
    write_folder(tmp_path / "copy", Sealed("s", [segment], [[]]))
    result = run_cli(
        "query", "--local-dir", tmp_path / "copy", "--public-key", PUBLIC, "--format", "csv"
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == [
        "stream", "seq", "received_at", "time", "actor", "action", "resource", "outcome",
        "source_ip", "object_key",
    ]  # fmt: skip
    assert rows[1] == [
        "s", "0", stamp(hour(0)), "", "'=HYPERLINK(\"http://evil.example\",\"x\")", "'+cmd",
        "'@SUM(1+1)", "'-1", "", "audit/s/000000000000.ndjson.zst",
    ]  # fmt: skip


def test_table_fits_the_terminal(folder: list[str | Path]) -> None:
    result = run_cli(
        "query", *folder, "--public-key", PUBLIC, "--stream", "app-1", env={"COLUMNS": "90"}
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["received_at", "stream", "seq"]
    assert all(len(line) <= 90 for line in lines)
    assert lines[-1] == f"({12 * PER_SEGMENT} event(s))"
    assert any("…" in line for line in lines[1:-1])  # s3://finance/file-N cut to fit


def test_usage_errors_exit_2(folder: list[str | Path]) -> None:
    for args in (
        ["--since", "yesterday"],
        ["--since", stamp(hour(5)), "--until", stamp(hour(1))],
        ["--stream", "../x"],
    ):
        result = run_cli("query", *folder, "--public-key", PUBLIC, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr
    result = run_cli("query", *folder)  # no trust given
    assert result.returncode == 2


# -- the GET budget against moto's S3 ------------------------------------------------------


class CountingProxy(FaultProxy):
    """Forwards everything to moto and records each request's method and target."""

    def __init__(self, target_port: int) -> None:
        self.seen: list[Request] = []
        self._seen_lock = threading.Lock()
        super().__init__(target_port)

    def _decide(self, request: Request) -> str | None:
        with self._seen_lock:
            self.seen.append(request)
        return None

    def object_gets(self) -> int:
        with self._seen_lock:
            return sum(1 for r in self.seen if r.method == "GET" and ".ndjson" in r.target)


@pytest.fixture
def counting(moto_endpoint: str) -> Iterator[CountingProxy]:
    proxy = CountingProxy(int(moto_endpoint.rsplit(":", 1)[1]))
    try:
        yield proxy
    finally:
        proxy.close()


DAYS = 10


@pytest.fixture(scope="module")
def year_like() -> Sealed:
    """240 hourly segments over ten days, a few heartbeats among them."""
    return seal_stream("app-1", 24 * DAYS, heartbeats=(30, 31, 100, 101, 102, 200))


def test_one_day_costs_that_day_and_a_logarithm_of_seal_reads(
    locked_bucket: tuple[str, str], counting: CountingProxy, year_like: Sealed
) -> None:
    endpoint, bucket = locked_bucket
    store = S3Store.connect(bucket, region="us-east-1", endpoint_url=endpoint)
    with ThreadPoolExecutor(max_workers=8) as pool:  # 240 uploads: the test's main cost
        list(
            pool.map(
                lambda s: store.put_new(s.key, s.data, retain_until=RETAIN), year_like.segments
            )
        )
    source: list[str | Path] = [
        "--bucket", bucket, "--prefix", "audit", "--region", "us-east-1",
        "--endpoint-url", counting.url,
    ]  # fmt: skip
    day = 4
    since, until = stamp(hour(24 * day)), stamp(hour(24 * (day + 1)))
    code, printed, err = query(source, "--since", since, "--until", until)
    assert (code, err) == (0, "")
    want = expected(year_like, keep=lambda _e, at: since <= at < until)
    assert len(want) == (24 - 3) * PER_SEGMENT  # hours 100-102 are heartbeats
    assert seqs(printed) == want
    gets = counting.object_gets()
    budget = 24 + 2 * math.ceil(math.log2(len(year_like.segments))) + 2
    assert gets <= budget, (gets, budget)
    assert gets < len(year_like.segments) // 5  # a full read would be 240 GETs


def test_a_tampered_version_in_the_bucket_window_is_reported(
    locked_bucket: tuple[str, str], counting: CountingProxy
) -> None:
    endpoint, bucket = locked_bucket
    sealed = seal_stream("app-1", 6)
    store = S3Store.connect(bucket, region="us-east-1", endpoint_url=endpoint)
    for segment in sealed.segments:
        store.put_new(segment.key, segment.data, retain_until=RETAIN)
    # A later version over segment 2: the original is still what is read and printed.
    s3_client(endpoint).put_object(Bucket=bucket, Key=sealed.segments[2].key, Body=b"junk")
    source: list[str | Path] = [
        "--bucket", bucket, "--prefix", "audit", "--endpoint-url", counting.url,
    ]  # fmt: skip
    code, printed, err = query(source)
    assert code == 1
    assert seqs(printed) == expected(sealed)
    assert "[extra_version] audit/app-1/000000000002.ndjson.zst" in err


def test_with_stream_only_that_streams_folder_is_listed(
    locked_bucket: tuple[str, str], counting: CountingProxy
) -> None:
    """Review finding L3: --stream listed the whole prefix."""
    endpoint, bucket = locked_bucket
    store = S3Store.connect(bucket, region="us-east-1", endpoint_url=endpoint)
    one, other = seal_stream("app-1", 2), seal_stream("app-2", 2)
    for segment in (*one.segments, *other.segments):
        store.put_new(segment.key, segment.data, retain_until=RETAIN)
    source: list[str | Path] = [
        "--bucket", bucket, "--prefix", "audit", "--endpoint-url", counting.url,
    ]  # fmt: skip
    code, printed, err = query(source, "--stream", "app-1")
    assert (code, err) == (0, "")
    assert seqs(printed) == expected(one)
    with counting._seen_lock:
        listings = [r.target for r in counting.seen if "versions" in r.target]
    assert listings
    assert all("prefix=audit%2Fapp-1%2F" in target for target in listings), listings
