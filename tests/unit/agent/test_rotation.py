"""Key rotation in the agent, and the one chain model it shares with the verifier.

The chain is checked by hand here (signature with the key the seal names,
``core.chain.link_faults`` between seals), not through the verifier, so the
expected verdict does not come from the agent's own code path.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from audit_archiver.agent.pipeline import Agent
from audit_archiver.agent.sealer import ForeignObject, StreamSealer, recover_chain_head
from audit_archiver.agent.uploader import Backoff
from audit_archiver.core.chain import ChainHead, link_faults
from audit_archiver.core.event import encode_event
from audit_archiver.core.line import EncodedEvents
from audit_archiver.core.seal import Seal, parse_seal, signing_message
from audit_archiver.core.segment import open_segment
from audit_archiver.core.signing import Ed25519Signer, TrustedKey, load_trusted_key
from audit_archiver.errors import ConfigurationError, IntegrityError
from tests.helpers import agent_settings
from tests.memory_store import MemoryStore

FAST = Backoff(base=0.01, cap=0.05)
SIGNER_A = Ed25519Signer(ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
SIGNER_B = Ed25519Signer(ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64))))
KEY_A = load_trusted_key(SIGNER_A.public_pem())
KEY_B = load_trusted_key(SIGNER_B.public_pem())
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def wait_for(condition: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def make_agent(
    spool: Path,
    store: MemoryStore,
    signer: Ed25519Signer,
    previous: tuple[TrustedKey, ...] = (),
    clock: Callable[[], datetime] = lambda: T0,
    grace_period: float = 5.0,
) -> Agent:
    settings = agent_settings(spool, grace_period=grace_period)
    own = load_trusted_key(signer.public_pem())
    return Agent(settings, store, signer, own, previous_keys=previous, clock=clock, backoff=FAST)


def submit(agent: Agent, first: int, count: int) -> tuple[int | None, int | None]:
    events = EncodedEvents.of(
        [
            encode_event({"actor": f"u{i}", "action": "read", "resource": f"doc/{i}"})
            for i in range(first, first + count)
        ]
    )
    accepted = agent.submit(events).result()
    return accepted.first_seq, accepted.last_seq


def chain(store: MemoryStore) -> list[Seal]:
    """Every seal of audit/s1 in key order, each signature checked with the key it
    names (A or B) and each link checked against the head before it."""
    keys = {KEY_A.key_id: KEY_A, KEY_B.key_id: KEY_B}
    head = ChainHead()
    seals = []
    for key in sorted(store.objects):
        opened = open_segment(store.get(key))
        seal = parse_seal(opened.seal_bytes)
        assert keys[seal.key_id].verify(opened.signature, signing_message(opened.seal_bytes))
        assert seal.object_key == key
        assert link_faults(head, seal) == [], key
        head = head.after(seal, opened.seal_hash)
        seals.append(seal)
    return seals


def signed_ranges(seals: list[Seal]) -> list[tuple[str, int, int]]:
    return [("A" if s.key_id == KEY_A.key_id else "B", s.first_seq, s.next_seq) for s in seals]


def test_rotation_on_the_same_spool_continues_the_chain(tmp_path: Path) -> None:
    store = MemoryStore()
    old = make_agent(tmp_path, store, SIGNER_A, grace_period=0.2)
    old.start()
    assert submit(old, 0, 10) == (0, 9)
    wait_for(lambda: store.puts == 1, "the first segment")
    store.down = True
    submit(old, 10, 10)  # sealed by A but not uploaded
    submit(old, 20, 3)  # sealed by A at shutdown, not uploaded
    assert old.shutdown() == 3  # sealed segments left in the spool
    store.down = False
    with pytest.raises(
        ConfigurationError, match="pass the old public key with --previous-public-key"
    ):
        make_agent(tmp_path, store, SIGNER_B).start()
    new = make_agent(tmp_path, store, SIGNER_B, previous=(KEY_A,))
    new.start()
    assert submit(new, 23, 5) == (23, 27)
    assert new.shutdown() == 0
    assert signed_ranges(chain(store)) == [
        ("A", 0, 10),
        ("A", 10, 20),
        ("A", 20, 23),
        ("B", 23, 28),
    ]
    # From now on the spool is B's: a restart needs no flag.
    again = make_agent(tmp_path, store, SIGNER_B)
    again.start()
    assert submit(again, 28, 1) == (28, 28)
    assert again.shutdown() == 0
    assert signed_ranges(chain(store))[-1] == ("B", 28, 29)


def test_rotation_on_a_fresh_spool_reads_the_old_key_head_from_the_bucket(tmp_path: Path) -> None:
    store = MemoryStore()
    old = make_agent(tmp_path / "a", store, SIGNER_A)
    old.start()
    submit(old, 0, 12)
    assert old.shutdown() == 0
    refused = make_agent(tmp_path / "b", store, SIGNER_B)
    refused.start()
    wait_for(refused.stopped.is_set, "the refusal")
    assert isinstance(refused.fatal_error, IntegrityError)
    message = str(refused.fatal_error)
    assert "--previous-public-key" in message and KEY_A.key_id[:12] in message
    assert refused.shutdown() == 1
    new = make_agent(tmp_path / "c", store, SIGNER_B, previous=(KEY_A,))
    new.start()
    wait_for(lambda: new.readiness() is None, "head recovery")
    assert submit(new, 12, 4) == (12, 15)
    assert new.shutdown() == 0
    assert signed_ranges(chain(store)) == [("A", 0, 10), ("A", 10, 12), ("B", 12, 16)]


def test_a_previous_key_does_not_accept_a_third_key(tmp_path: Path) -> None:
    store = MemoryStore()
    sealer = StreamSealer(prefix="audit", stream="s1", signer=SIGNER_A, head=ChainHead())
    segment = sealer.seal([], "2026-03-01T12:00:00.000000Z")
    store.put_new(segment.key, segment.data, retain_until=None)
    third = load_trusted_key(
        Ed25519Signer(ed25519.Ed25519PrivateKey.from_private_bytes(bytes(32))).public_pem()
    )
    with pytest.raises(IntegrityError, match="or a --previous-public-key") as caught:
        recover_chain_head(store, "audit", "s1", KEY_B, previous_keys=(third,))
    assert caught.value.found == KEY_A.key_id
    head, key = recover_chain_head(store, "audit", "s1", KEY_B, previous_keys=(third, KEY_A))
    assert (head, key) == (sealer.head, segment.key)


def test_a_replaced_signature_is_refused_even_with_the_right_key_id(tmp_path: Path) -> None:
    store = MemoryStore()
    sealer = StreamSealer(prefix="audit", stream="s1", signer=SIGNER_A, head=ChainHead())
    segment = sealer.seal([], "2026-03-01T12:00:00.000000Z")
    signature = base64.b64encode(open_segment(segment.data).signature)
    at = segment.data.index(signature) + 10
    forged = bytearray(segment.data)
    forged[at] = ord("A") if forged[at] != ord("A") else ord("B")  # another valid signature char
    store.put_new(segment.key, bytes(forged), retain_until=None)
    # Not this writer's segment: skipped as a foreign object (ADR 7), never the head.
    found: list[ForeignObject] = []
    head = recover_chain_head(
        store, "audit", "s1", KEY_B, previous_keys=(KEY_A,), on_foreign=found.append
    )
    assert head == (ChainHead(), None)
    assert [(f.key, f.reason.split(":")[0]) for f in found] == [(segment.key, "signature_invalid")]
    store.objects.clear()
    store.put_new(segment.key, b"\x00" * 100, retain_until=None)
    found.clear()
    head = recover_chain_head(
        store, "audit", "s1", KEY_B, previous_keys=(KEY_A,), on_foreign=found.append
    )
    assert head == (ChainHead(), None)
    assert [(f.key, f.reason.split(":")[0], f.size) for f in found] == [
        (segment.key, "malformed_segment", 100)
    ]


@pytest.mark.parametrize("fresh_spool", [False, True])
def test_sealed_at_never_goes_backwards_across_a_restart(tmp_path: Path, fresh_spool: bool) -> None:
    store = MemoryStore()
    now = [T0 + timedelta(hours=1)]
    first = make_agent(tmp_path / "a", store, SIGNER_A, clock=lambda: now[0])
    first.start()
    submit(first, 0, 3)  # received at 13:00
    now[0] = T0 + timedelta(hours=2)
    assert first.shutdown() == 0  # sealed at 14:00
    # The clock is stepped back (NTP, a VM restored from a snapshot): the floor is
    # the last seal's sealed_at (from head.json, or the bucket), not the events' time.
    spool = tmp_path / ("b" if fresh_spool else "a")
    second = make_agent(spool, store, SIGNER_A, clock=lambda: T0)
    second.start()
    wait_for(lambda: second.readiness() is None, "head recovery")
    submit(second, 3, 2)
    assert second.shutdown() == 0
    seals = chain(store)  # link_faults reports time_regression on sealed_at
    assert [s.sealed_at for s in seals] == ["2026-03-01T14:00:00.000000Z"] * 2
    assert [s.first_received_at for s in seals] == ["2026-03-01T13:00:00.000000Z"] * 2


def test_offline_seal_continues_a_folder_after_rotation(tmp_path: Path) -> None:
    from audit_archiver.agent.batch_seal import seal_lines_into_directory
    from audit_archiver.storage.localdir import LocalDirectoryStore

    def seal(signer: Ed25519Signer, first: int, previous: tuple[TrustedKey, ...] = ()) -> int:
        lines = [
            b'{"actor":"a","action":"b","resource":"r%d"}\n' % i for i in range(first, first + 3)
        ]
        result = seal_lines_into_directory(
            lines,
            LocalDirectoryStore(tmp_path),
            prefix="audit",
            stream="s1",
            signer=signer,
            batch_max_events=2,
            compression="zstd",
            clock=lambda: T0,
            previous_keys=previous,
        )
        return result.first_seq

    assert seal(SIGNER_A, 0) == 0
    with pytest.raises(IntegrityError, match="--previous-public-key"):
        seal(SIGNER_B, 3)
    assert seal(SIGNER_B, 3, previous=(KEY_A,)) == 3
    keys = {KEY_A.key_id: "A", KEY_B.key_id: "B"}
    head = ChainHead()
    found = []
    for path in sorted((tmp_path / "s1").iterdir()):
        opened = open_segment(path.read_bytes())
        seal_ = parse_seal(opened.seal_bytes)
        assert link_faults(head, seal_) == []
        head = head.after(seal_, opened.seal_hash)
        found.append((keys[seal_.key_id], seal_.first_seq, seal_.next_seq))
    assert found == [("A", 0, 2), ("A", 2, 3), ("B", 3, 5), ("B", 5, 6)]


def test_a_fresh_spool_after_a_heartbeat_never_receives_before_earlier_events(
    tmp_path: Path,
) -> None:
    """The bucket's newest segment is a heartbeat (it names no event time): a fresh
    spool must still not give new events a received_at below the events before it."""
    store = MemoryStore()
    sealer = StreamSealer(prefix="audit", stream="s1", signer=SIGNER_A, head=ChainHead())
    line = b'{"seq":0,"received_at":"2026-03-01T13:00:00.000000Z","actor":"a","action":"b","resource":"r"}'
    for segment in (
        sealer.seal([line], "2026-03-01T13:30:00.000000Z"),
        sealer.seal([], "2026-03-01T14:00:00.000000Z"),
    ):
        store.put_new(segment.key, segment.data, retain_until=None)
    agent = make_agent(tmp_path / "fresh", store, SIGNER_A, clock=lambda: T0)  # 12:00
    agent.start()
    wait_for(lambda: agent.readiness() is None, "head recovery")
    assert submit(agent, 1, 2) == (1, 2)
    assert agent.shutdown() == 0
    seals = chain(store)  # link_faults over every link, floors kept across the heartbeat
    assert seals[-1].first_received_at == "2026-03-01T14:00:00.000000Z"
