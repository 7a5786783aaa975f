from __future__ import annotations

from pathlib import Path

import pytest

from audit_archiver.agent.sealer import ChainHead, StreamSealer
from audit_archiver.agent.spool import Spool, SpoolIdentity
from audit_archiver.core.event import seal_event
from audit_archiver.errors import ConfigurationError, StorageError
from tests.helpers import fixed_signer, sample_event, tick

IDENTITY = SpoolIdentity("s1", "audit", fixed_signer().key_id)


def _lines(first: int, count: int) -> list[bytes]:
    return [seal_event(sample_event(i), i, tick(i)) for i in range(first, first + count)]


def _open(root: Path) -> tuple[Spool, object]:
    spool = Spool(root, wal_file_bytes=2048)
    return spool, spool.open(IDENTITY)


def test_fresh_spool_needs_a_head_and_recovers_appended_events(tmp_path: Path) -> None:
    spool, state = _open(tmp_path)
    assert state.sealing_head is None and state.pending == []
    spool.initialize_head(ChainHead())
    spool.append(_lines(0, 30), 0)
    spool.append(_lines(30, 5), 30)
    with pytest.raises(ValueError, match="continues at 35"):
        spool.append(_lines(40, 1), 40)
    spool.close()
    again, state = _open(tmp_path)
    assert [e.seq for e in state.pending] == list(range(35))
    assert state.pending[3].line == _lines(3, 1)[0]
    assert again.next_seq == 35
    assert len(list((tmp_path / "wal").glob("*.wal"))) > 1
    again.close()


def test_torn_final_record_is_dropped_and_middle_corruption_refused(tmp_path: Path) -> None:
    spool, _ = _open(tmp_path)
    spool.initialize_head(ChainHead())
    spool.append(_lines(0, 3), 0)
    spool.close()
    wal = next((tmp_path / "wal").glob("*.wal"))
    intact = wal.read_bytes()
    wal.write_bytes(intact + b'0000abcd {"half')
    spool, state = _open(tmp_path)
    assert [e.seq for e in state.pending] == [0, 1, 2]
    assert wal.read_bytes() == intact
    spool.close()
    wal.write_bytes(intact.replace(b'"seq":1', b'"seq":7'))
    with pytest.raises(StorageError, match="corrupt"):
        Spool(tmp_path).open(IDENTITY)


def test_sealing_trims_wal_and_upload_moves_the_head(tmp_path: Path) -> None:
    spool, _ = _open(tmp_path)
    spool.initialize_head(ChainHead())
    spool.append(_lines(0, 40), 0)
    sealer = StreamSealer(prefix="audit", stream="s1", signer=fixed_signer(), head=ChainHead())
    first = spool.store_sealed(sealer.seal(_lines(0, 40)[:25], tick(100)))
    spool.close()
    spool, state = _open(tmp_path)
    assert [s.segment_seq for s in state.sealed] == [0]
    assert [e.seq for e in state.pending] == list(range(25, 40))
    assert state.sealing_head == ChainHead(1, first.seal_hash, 25, tick(24))
    spool.store_sealed(sealer.seal(_lines(25, 15), tick(101)))
    assert list((tmp_path / "wal").glob("*.wal")) == []
    used = spool.used_bytes()
    spool.mark_uploaded(first)
    assert spool.used_bytes() < used
    spool.close()
    spool, state = _open(tmp_path)
    spool.close()
    assert state.uploaded_head == ChainHead(1, first.seal_hash, 25, tick(24))
    assert [s.segment_seq for s in state.sealed] == [1]
    assert state.pending == []


def test_spool_belongs_to_one_stream_and_one_agent(tmp_path: Path) -> None:
    spool, _ = _open(tmp_path)
    with pytest.raises(ConfigurationError, match="in use by another agent"):
        Spool(tmp_path).open(IDENTITY)
    spool.close()
    with pytest.raises(ConfigurationError, match="belongs to stream 's1'"):
        Spool(tmp_path).open(SpoolIdentity("s2", "audit", IDENTITY.key_id))
