from __future__ import annotations

import json
import zlib
from pathlib import Path

import pytest

from audit_archiver.agent.sealer import StreamSealer
from audit_archiver.agent.spool import Spool, SpoolIdentity, SpoolState, _encode_record
from audit_archiver.core.chain import ChainHead
from audit_archiver.core.event import encode_event
from audit_archiver.core.line import EncodedEvents, EventRun
from audit_archiver.errors import ConfigurationError, StorageError
from tests.helpers import OTHER_SEED, fixed_signer, sample_event, tick

IDENTITY = SpoolIdentity("s1", "audit", fixed_signer().key_id)


def _run(first: int, count: int) -> EventRun:
    """Events first..first+count-1 as one run, received at tick(first)."""
    encoded = EncodedEvents.of([encode_event(sample_event(i)) for i in range(first, first + count)])
    return EventRun(first, tick(first), encoded.event_count, encoded.data)


def _append(spool: Spool, *runs: EventRun) -> None:
    """Append runs that carry their own received_at (one WAL record each), checking
    that the spool gives them the seqs they name."""
    for run in runs:
        encoded = EncodedEvents(run.event_count, run.data)
        assert spool.append([encoded], run.received_at) == [run]


def _open(root: Path) -> tuple[Spool, SpoolState]:
    spool = Spool(root, wal_file_bytes=2048)
    return spool, spool.open(IDENTITY)


def _seqs(runs: list[EventRun]) -> list[int]:
    return [run.first_seq + i for run in runs for i in range(run.event_count)]


def test_fresh_spool_needs_a_head_and_recovers_appended_runs(tmp_path: Path) -> None:
    spool, state = _open(tmp_path)
    assert state.sealing_head is None and state.pending == []
    spool.initialize_head(ChainHead())
    group = [_run(0, 20), _run(20, 10)]
    numbered = spool.append([EncodedEvents(r.event_count, r.data) for r in group], tick(0))
    assert numbered == [_run(0, 20), EventRun(20, tick(0), 10, group[1].data)]
    _append(spool, _run(30, 5))
    with pytest.raises(ValueError, match="at least one event"):
        spool.append([EncodedEvents.of([])], tick(1))
    assert spool.next_seq == 35
    spool.close()
    again, state = _open(tmp_path)
    assert state.pending == [*numbered, _run(30, 5)]
    assert again.next_seq == 35
    assert len(list((tmp_path / "wal").glob("*.wal"))) > 1
    again.close()


def test_recovered_runs_seal_to_the_same_lines(tmp_path: Path) -> None:
    spool, _ = _open(tmp_path)
    spool.initialize_head(ChainHead())
    _append(spool, _run(0, 4))
    spool.close()
    spool, state = _open(tmp_path)
    spool.close()
    (run,) = state.pending
    assert run.sealed_lines()[2].startswith(b'{"seq":2,"received_at":"%s",' % tick(0).encode())
    assert run.sealed_lines() == _run(0, 4).sealed_lines()


@pytest.mark.parametrize("cut", [5, 40, -30, -1])
def test_torn_final_record_is_dropped(tmp_path: Path, cut: int) -> None:
    spool, _ = _open(tmp_path)
    spool.initialize_head(ChainHead())
    _append(spool, _run(0, 3))
    wal = next((tmp_path / "wal").glob("*.wal"))
    intact = wal.read_bytes()
    _append(spool, _run(3, 2))
    spool.close()
    torn = wal.read_bytes()[: len(intact) + cut if cut > 0 else cut]
    wal.write_bytes(torn)
    spool, state = _open(tmp_path)
    spool.close()
    assert _seqs(state.pending) == [0, 1, 2]
    assert wal.read_bytes() == intact


def test_corruption_before_a_valid_record_is_refused(tmp_path: Path) -> None:
    spool, _ = _open(tmp_path)
    spool.initialize_head(ChainHead())
    _append(spool, _run(0, 3))
    _append(spool, _run(3, 2))
    spool.close()
    wal = next((tmp_path / "wal").glob("*.wal"))
    intact = wal.read_bytes()
    wal.write_bytes(intact.replace(b'"doc/1"', b'"doc/7"'))
    with pytest.raises(StorageError, match="corrupt at byte 0"):
        Spool(tmp_path).open(IDENTITY)
    wal.write_bytes(intact + b"".join(_encode_record(_run(9, 1))))
    with pytest.raises(StorageError, match="seq 9 follows 4"):
        Spool(tmp_path).open(IDENTITY)


def test_a_wal_of_the_per_event_format_is_refused_not_truncated(tmp_path: Path) -> None:
    spool, _ = _open(tmp_path)
    spool.initialize_head(ChainHead())
    spool.close()
    line = _run(0, 1).sealed_lines()[0]
    wal = tmp_path / "wal" / "000000000000.wal"
    wal.write_bytes(b"%08x %s\n" % (zlib.crc32(line), line))
    with pytest.raises(StorageError, match="earlier version"):
        Spool(tmp_path).open(IDENTITY)
    assert wal.read_bytes().endswith(line + b"\n")


def test_sealing_trims_wal_and_upload_moves_the_head(tmp_path: Path) -> None:
    spool, _ = _open(tmp_path)
    spool.initialize_head(ChainHead())
    _append(spool, _run(0, 40))
    sealer = StreamSealer(prefix="audit", stream="s1", signer=fixed_signer(), head=ChainHead())
    first = spool.store_sealed(sealer.seal(_run(0, 40).sealed_lines()[:25], tick(100)))
    spool.close()
    spool, state = _open(tmp_path)
    assert [s.segment_seq for s in state.sealed] == [0]
    assert state.pending == [_run(0, 40).split(25)[1]]
    assert state.sealing_head == ChainHead(1, first.seal_hash, 25, tick(0), tick(100))
    spool.store_sealed(sealer.seal(state.pending[0].sealed_lines(), tick(101)))
    assert list((tmp_path / "wal").glob("*.wal")) == []
    used = spool.used_bytes()
    spool.mark_uploaded(first)
    assert spool.used_bytes() < used
    assert spool.used_bytes() == used - first.size
    spool.close()
    spool, state = _open(tmp_path)
    spool.close()
    assert state.uploaded_head == ChainHead(1, first.seal_hash, 25, tick(0), tick(100))
    assert [s.segment_seq for s in state.sealed] == [1]
    assert state.pending == []


def test_an_empty_segment_keeps_the_newest_received_at(tmp_path: Path) -> None:
    spool, _ = _open(tmp_path)
    spool.initialize_head(ChainHead())
    _append(spool, _run(0, 3))
    sealer = StreamSealer(prefix="audit", stream="s1", signer=fixed_signer(), head=ChainHead())
    first = spool.store_sealed(sealer.seal(_run(0, 3).sealed_lines(), tick(10)))
    heartbeat = spool.store_sealed(sealer.seal([], tick(11)))
    assert sealer.head == ChainHead(2, heartbeat.seal_hash, 3, tick(0), tick(11))
    spool.close()
    spool, state = _open(tmp_path)
    assert state.sealing_head == sealer.head
    assert spool.used_bytes() == first.size + heartbeat.size
    spool.mark_uploaded(first)
    spool.mark_uploaded(heartbeat)
    spool.close()
    spool, state = _open(tmp_path)
    spool.close()
    assert state.sealed == []
    assert state.uploaded_head == state.sealing_head == sealer.head


def test_spool_belongs_to_one_stream_and_one_agent(tmp_path: Path) -> None:
    spool, _ = _open(tmp_path)
    with pytest.raises(ConfigurationError, match="in use by another agent"):
        Spool(tmp_path).open(IDENTITY)
    spool.close()
    with pytest.raises(ConfigurationError, match="belongs to stream 's1'"):
        Spool(tmp_path).open(SpoolIdentity("s2", "audit", IDENTITY.key_id))


NEW_KEY_ID = fixed_signer(OTHER_SEED).key_id


def test_a_new_key_on_an_old_spool_is_refused_without_previous_public_key(tmp_path: Path) -> None:
    spool, _ = _open(tmp_path)
    spool.close()
    rotated = SpoolIdentity("s1", "audit", NEW_KEY_ID)
    with pytest.raises(ConfigurationError, match="--previous-public-key") as caught:
        Spool(tmp_path).open(rotated)
    assert IDENTITY.key_id[:12] in str(caught.value)
    with pytest.raises(ConfigurationError, match="--previous-public-key"):
        Spool(tmp_path).open(rotated, previous_key_ids=["f" * 64])
    other_stream = SpoolIdentity("s2", "audit", NEW_KEY_ID)
    with pytest.raises(ConfigurationError, match="belongs to stream 's1'"):
        Spool(tmp_path).open(other_stream, previous_key_ids=[IDENTITY.key_id])


def test_rotation_takes_over_the_spool_with_its_old_key_segments_and_head(
    tmp_path: Path,
) -> None:
    spool, _ = _open(tmp_path)
    spool.initialize_head(ChainHead())
    _append(spool, _run(0, 10))
    old = StreamSealer(prefix="audit", stream="s1", signer=fixed_signer(), head=ChainHead())
    uploaded = spool.store_sealed(old.seal(_run(0, 10).sealed_lines()[:4], tick(20)))
    waiting = spool.store_sealed(old.seal(_run(0, 10).sealed_lines()[4:7], tick(21)))
    spool.mark_uploaded(uploaded)
    spool.close()
    rotated = SpoolIdentity("s1", "audit", NEW_KEY_ID)
    spool = Spool(tmp_path, wal_file_bytes=2048)
    state = spool.open(rotated, previous_key_ids=[IDENTITY.key_id])
    assert [s.seal.key_id for s in state.sealed] == [IDENTITY.key_id]
    assert state.sealed[0].seal_hash == waiting.seal_hash
    assert state.sealing_head == old.head
    assert _seqs(state.pending) == [7, 8, 9]
    assert spool.next_seq == 10
    new = StreamSealer(prefix="audit", stream="s1", signer=fixed_signer(OTHER_SEED), head=old.head)
    third = new.seal(state.pending[0].sealed_lines(), tick(22))
    assert third.seal.prev_seal_hash == waiting.seal_hash and third.seal.first_seq == 7
    spool.close()
    # The spool now belongs to the new key: no flag needed any more, the old key is refused.
    taken_over = Spool(tmp_path)
    taken_over.open(rotated)
    taken_over.close()
    with pytest.raises(ConfigurationError, match="--previous-public-key"):
        Spool(tmp_path).open(IDENTITY)


def test_head_json_of_the_previous_version_reads_without_last_sealed_at(tmp_path: Path) -> None:
    spool, _ = _open(tmp_path)
    spool.close()
    old_head = {
        "next_segment_seq": 3,
        "prev_seal_hash": "ab" * 32,
        "next_seq": 12,
        "last_received_at": tick(5),
    }
    (tmp_path / "head.json").write_text(json.dumps(old_head))
    spool, state = _open(tmp_path)
    spool.close()
    assert state.uploaded_head == ChainHead(3, "ab" * 32, 12, tick(5), None)


def test_head_json_records_last_sealed_at(tmp_path: Path) -> None:
    spool, _ = _open(tmp_path)
    spool.initialize_head(ChainHead())
    _append(spool, _run(0, 2))
    sealer = StreamSealer(prefix="audit", stream="s1", signer=fixed_signer(), head=ChainHead())
    spool.mark_uploaded(spool.store_sealed(sealer.seal(_run(0, 2).sealed_lines(), tick(30))))
    spool.close()
    assert json.loads((tmp_path / "head.json").read_text())["last_sealed_at"] == tick(30)
    spool, state = _open(tmp_path)
    spool.close()
    assert state.uploaded_head is not None and state.uploaded_head.last_sealed_at == tick(30)


# -- events acknowledged before the head is known, and re-sealing: crash safety ------

_CRASH_SCRIPT = """
import sys
from pathlib import Path
from audit_archiver.agent.sealer import StreamSealer
from audit_archiver.agent.spool import Spool, SpoolIdentity
from audit_archiver.core.chain import ChainHead
from audit_archiver.core.event import encode_event, seal_event
from audit_archiver.core.line import EncodedEvents
from tests.helpers import fixed_signer, sample_event, tick

root, what = Path(sys.argv[1]), sys.argv[2]
signer = fixed_signer()
spool = Spool(root, wal_file_bytes=2048)
spool.open(SpoolIdentity("s1", "audit", signer.key_id))
if what == "number":
    for first in (0, 3, 4, 9):
        events = [encode_event(sample_event(i)) for i in range(first, first + 3)]
        assert spool.append([EncodedEvents.of(events)], tick(first)) is None
    spool.initialize_head(ChainHead(3, "ab" * 32, 50, tick(5), tick(6)))
elif what == "seal-five":  # 5 events sealed: the WAL is trimmed, no file is open
    spool.initialize_head(ChainHead())
    first = EncodedEvents.of([encode_event(sample_event(i)) for i in range(5)])
    [run] = spool.append([first], tick(0))
    sealer = StreamSealer(prefix="audit", stream="s1", signer=signer, head=ChainHead())
    spool.store_sealed(sealer.seal(run.sealed_lines(), tick(1)))
elif what == "append-one":  # creates the next WAL file
    spool.append([EncodedEvents.of([encode_event(sample_event(99))])], tick(2))
else:
    spool.initialize_head(ChainHead())
    sealer = StreamSealer(prefix="audit", stream="s1", signer=signer, head=ChainHead())
    files = []
    for n in range(3):
        lines = [seal_event(sample_event(i), i, tick(i)) for i in range(4 * n, 4 * n + 4)]
        files.append(spool.store_sealed(sealer.seal(lines, tick(20 + n))))
    with sealer.lock:
        resealed = sealer.reseal([spool.read_sealed(f) for f in files], segment_seq=1)
        spool.replace_sealed(resealed)
print("finished")
"""


def _crash_at(tmp_path: Path, what: str, point: str | None) -> Path:
    import os
    import subprocess
    import sys

    root = tmp_path / "spool"
    env = {**os.environ, "AUDIT_ARCHIVER_FAILPOINTS": point or ""}
    done = subprocess.run(
        [sys.executable, "-c", _CRASH_SCRIPT, str(root), what],
        env=env,
        capture_output=True,
        cwd=Path(__file__).parents[3],
        timeout=60,
        check=False,
    )
    assert (done.returncode == -9) is (point is not None), done.stderr.decode()
    return root


@pytest.mark.parametrize("point", [None, "numbered-before-head", "numbered-after-head"])
def test_numbering_after_a_crash_neither_loses_nor_renumbers(tmp_path: Path, point: str) -> None:
    root = _crash_at(tmp_path, "number", point)
    spool = Spool(root, wal_file_bytes=2048)
    state = spool.open(IDENTITY)
    head = ChainHead(3, "ab" * 32, 50, tick(5), tick(6))
    if point == "numbered-before-head":  # not committed: still unnumbered
        assert (state.uploaded_head, state.unnumbered_events) == (None, 12)
        assert spool.append([EncodedEvents.of([encode_event(sample_event(99))])], tick(1)) is None
        runs = spool.initialize_head(head)
        expected_firsts = [0, 3, 4, 9, 99]
    else:
        assert (state.uploaded_head, state.unnumbered_events) == (head, 0)
        runs = state.pending
        expected_firsts = [0, 3, 4, 9]
    assert not list((root / "wal").glob("u*.wal"))
    assert [run.first_seq for run in runs] == [50 + 3 * i for i in range(len(runs))]
    # the events, in the order they were acknowledged, each once
    for run, first in zip(runs, expected_firsts, strict=True):
        count = 1 if first == 99 else 3
        encoded = [encode_event(sample_event(i)) for i in range(first, first + count)]
        assert run.data == EncodedEvents.of(encoded).data
    # received_at never below the head's floor, nor below the run before
    times = [run.received_at for run in runs]
    assert times == sorted(times) and times[0] == tick(5)
    assert spool.next_seq == runs[-1].next_seq
    spool.close()


def test_kill_after_creating_a_wal_file_loses_nothing_acknowledged_later(
    tmp_path: Path,
) -> None:
    """The crash-loop loss (issue 10, seed 3198917091), step by step.

    An agent is killed between creating the next WAL file (named after the next
    seq, 5) and writing to it. The next agent recovers next seq 5, so its first
    append creates a file of that very name again. It acknowledges 11 events
    (5..15) and seals the first 9 (a batch boundary inside the request). The
    trim must keep the file that holds the other 2; a spool that listed the
    one file twice deleted it as "fully sealed", and after the next kill the 2
    acknowledged events were gone and their seqs given to other events.
    """
    _crash_at(tmp_path, "seal-five", None)
    root = _crash_at(tmp_path, "append-one", "wal-opened")
    assert [p.stat().st_size for p in (root / "wal").glob("*.wal")] == [0]
    spool, state = _open(root)
    assert state.pending == [] and spool.next_seq == 5  # the killed append was never acknowledged
    assert list((root / "wal").glob("*.wal")) == []  # the empty file is gone
    runs = spool.append(
        [EncodedEvents.of([encode_event(sample_event(i)) for i in range(100, 111)])], tick(3)
    )
    assert runs is not None
    [run] = runs
    assert (run.first_seq, run.event_count) == (5, 11)
    sealed_part, unsealed_part = run.split(9)
    head = state.sealing_head
    assert head is not None
    sealer = StreamSealer(prefix="audit", stream="s1", signer=fixed_signer(), head=head)
    spool.store_sealed(sealer.seal(sealed_part.sealed_lines(), tick(4)))
    later_runs = spool.append([EncodedEvents.of([encode_event(sample_event(200))])], tick(5))
    assert later_runs is not None
    spool.close()  # the next SIGKILL: only what is on disk counts
    again, recovered = _open(root)
    assert recovered.pending == [unsealed_part, *later_runs]
    assert again.next_seq == 17
    again.close()


@pytest.mark.parametrize(
    "point", [None, "reseal-staged", "reseal-committed", "reseal-swapped", "after-seal"]
)
def test_resealing_after_a_crash_leaves_one_consistent_set(tmp_path: Path, point: str) -> None:
    from audit_archiver.agent.sealer import authenticate_own
    from audit_archiver.core.seal import GENESIS_HASH
    from audit_archiver.core.segment import open_segment
    from audit_archiver.core.signing import load_trusted_key

    root = _crash_at(tmp_path, "reseal", point)
    spool = Spool(root)
    state = spool.open(IDENTITY)
    numbers = [f.segment_seq for f in state.sealed]
    if point in ("reseal-staged", "after-seal"):
        assert numbers == ([0] if point == "after-seal" else [0, 1, 2])  # the old set
    else:
        assert numbers == [1, 2, 3]  # the new set
    leftovers = {"sealed.new", "sealed.old", "reseal.json"} & {p.name for p in root.iterdir()}
    assert leftovers == set()
    head = ChainHead(
        numbers[0],
        GENESIS_HASH if numbers[0] in (0, 1) else "?",
        0,
    )
    for sealed in state.sealed:
        data = spool.read_sealed(sealed)
        opened = open_segment(data)
        assert sealed.seal.prev_seal_hash == head.prev_seal_hash
        assert sealed.seal.segment_seq == head.next_segment_seq
        assert sealed.seal.first_seq == head.next_seq
        own = load_trusted_key(fixed_signer().public_pem())
        assert not isinstance(authenticate_own(data, sealed.key, "audit", "s1", [own]), str)
        assert opened.seal_hash == sealed.seal_hash
        head = head.after(sealed.seal, sealed.seal_hash)
    spool.close()
