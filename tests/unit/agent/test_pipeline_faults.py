"""Store faults against the agent in-process: transient and permanent S3 errors,
lost wake-ups at shutdown, hostile bucket writers (junk at the next key, newer
versions, delete markers) and a start with S3 unreachable.

Expected verdicts come from the verifier (which does not share the uploader's
code) and from the bytes in the in-memory bucket, never from the agent's state.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from audit_archiver.agent.pipeline import Agent
from audit_archiver.agent.sealer import StreamSealer
from audit_archiver.agent.uploader import Backoff
from audit_archiver.core.chain import ChainHead
from audit_archiver.core.event import encode_event
from audit_archiver.core.layout import segment_key
from audit_archiver.core.line import EncodedEvents
from audit_archiver.core.seal import parse_seal
from audit_archiver.core.segment import decompress_body, open_segment
from audit_archiver.core.signing import load_trusted_key
from audit_archiver.errors import (
    MalformedSegmentError,
    StoragePermanentError,
    StorageUnavailableError,
)
from audit_archiver.storage.base import ObjectInfo
from audit_archiver.verify.verifier import Verifier, VerifyOptions
from tests.helpers import agent_settings, fixed_signer, kinds, sample_event, trust_policy, wait_for
from tests.memory_store import MemoryStore

FAST = Backoff(base=0.01, cap=0.05)
SLOW = Backoff(base=30.0, cap=30.0)  # a lost wake-up would cost 15 to 30 s


def key(n: int) -> str:
    return segment_key("audit", "s1", n, "zstd")


def make_agent(
    spool: Path,
    store: MemoryStore,
    *,
    backoff: Backoff = FAST,
    grace: float = 5.0,
    start_wait: float = 5.0,
    **batch: float,
) -> Agent:
    settings = agent_settings(spool, grace_period=grace, **batch)
    signer = fixed_signer()
    own = load_trusted_key(signer.public_pem())
    return Agent(settings, store, signer, own, backoff=backoff, start_wait=start_wait)


def submit(agent: Agent, first: int, count: int) -> tuple[int | None, int | None]:
    events = EncodedEvents.of([encode_event(sample_event(i)) for i in range(first, first + count)])
    accepted = agent.submit(events).result()
    return accepted.first_seq, accepted.last_seq


def verify(store: MemoryStore) -> tuple[list[tuple[str, str]], int]:
    """Problems and event count, as the verifier sees the bucket."""
    options = VerifyOptions(key_base="audit/", seal_prefix="audit", workers=2)
    report = Verifier(store, trust_policy(fixed_signer()), options, "memory").run()
    return kinds(report), report.events


def archived_seqs(store: MemoryStore) -> list[int]:
    """Every event seq in the original versions this agent signed, in key order."""
    own = fixed_signer().key_id
    seqs: list[int] = []
    for name in sorted(store.objects):
        try:
            seal = parse_seal(open_segment(store.original(name)).seal_bytes)
        except MalformedSegmentError:
            continue  # junk
        if seal.key_id == own:
            seqs += range(seal.first_seq, seal.next_seq)
    return seqs


def metric(agent: Agent, name: str, **labels: str) -> float:
    value = agent.metrics.registry.get_sample_value(name, labels or None)
    return value or 0.0


# -- shutdown keeps its promise -------------------------------------------------------


@dataclass
class GatedStore(MemoryStore):
    """The first PutObject hangs until ``release`` is set, then fails (S3 was down)."""

    in_put: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    gated: bool = True

    def put_new(self, key: str, data: bytes, *, retain_until: datetime | None) -> ObjectInfo:
        if self.gated:
            self.gated = False
            self.in_put.set()
            self.release.wait(30)
            raise StorageUnavailableError("simulated: connection reset during the upload")
        return super().put_new(key, data, retain_until=retain_until)


def test_sigterm_during_a_failing_upload_is_not_lost(tmp_path: Path) -> None:
    store = GatedStore()
    agent = make_agent(tmp_path, store, backoff=SLOW, grace=20.0)
    agent.start()
    assert submit(agent, 0, 10) == (0, 9)  # a full batch: sealed and uploaded at once
    assert store.in_put.wait(10)
    codes: list[int] = []
    stopper = threading.Thread(target=lambda: codes.append(agent.shutdown()))
    stopper.start()  # wakes the uploader while its attempt is in flight
    wait_for(lambda: agent.readiness() == "shutting down", what="draining")
    started = time.monotonic()
    store.release.set()  # the attempt fails; S3 is healthy from now on
    stopper.join(20)
    assert codes == [0]
    assert time.monotonic() - started < 5  # retried at once, not after the 15-30 s backoff
    assert archived_seqs(store) == list(range(10))


def test_shutdown_with_s3_down_exits_3_and_a_restart_completes(tmp_path: Path) -> None:
    store = MemoryStore()
    agent = make_agent(tmp_path, store, grace=0.3)
    agent.start()
    submit(agent, 0, 10)
    wait_for(lambda: store.puts == 1, what="the first upload")
    store.down = True
    submit(agent, 10, 14)
    assert agent.shutdown() == 3
    assert metric(agent, "audit_archiver_unconfirmed_segments") == 2  # 10 + 4 events
    store.down = False
    again = make_agent(tmp_path, store)
    again.start()
    assert again.shutdown() == 0
    assert archived_seqs(store) == list(range(24))
    assert verify(store) == ([], 24)


# -- transient and permanent errors ---------------------------------------------------


def test_transient_errors_are_retried_and_counted(tmp_path: Path) -> None:
    store = MemoryStore()
    store.faults["put_new"] = [StorageUnavailableError("503 SlowDown")] * 3
    agent = make_agent(tmp_path, store)
    agent.start()
    submit(agent, 0, 10)
    wait_for(lambda: store.puts == 1, what="the upload after three failures")
    assert metric(agent, "audit_archiver_storage_errors_total", kind="transient") == 3
    assert agent.readiness() is None
    assert agent.shutdown() == 0


def test_access_denied_is_reported_while_events_are_still_accepted(tmp_path: Path) -> None:
    store = MemoryStore()
    agent = make_agent(tmp_path, store)
    agent.start()
    store.refusing = StoragePermanentError("S3 PutObject refused: AccessDenied (HTTP 403)")
    submit(agent, 0, 10)
    wait_for(lambda: agent.readiness() is not None, what="the refusal in readiness")
    assert "AccessDenied" in str(agent.readiness())
    assert submit(agent, 10, 5) == (10, 14)  # still accepted into the spool
    wait_for(
        lambda: metric(agent, "audit_archiver_storage_errors_total", kind="permanent") >= 2,
        what="retries at the backoff cap",
    )
    assert not agent.stopped.is_set()
    store.refusing = None  # an operator fixed the policy
    wait_for(lambda: agent.readiness() is None, what="recovery")
    assert agent.shutdown() == 0
    assert verify(store) == ([], 15)


def test_access_denied_on_a_fresh_spool_still_takes_events(tmp_path: Path) -> None:
    store = MemoryStore(refusing=StoragePermanentError("ListObjectVersions: AccessDenied"))
    agent = make_agent(tmp_path, store)
    agent.start()
    assert submit(agent, 0, 4) == (None, None)
    wait_for(lambda: "AccessDenied" in str(agent.readiness()), what="the refusal in readiness")
    store.refusing = None
    wait_for(lambda: agent.readiness() is None and not agent.alerts(), what="the head")
    assert agent.shutdown() == 0
    assert verify(store) == ([], 4)


# -- start during an outage -----------------------------------------------------------


def test_fresh_spool_with_s3_down_takes_events_and_restarts_without_renumbering(
    tmp_path: Path,
) -> None:
    store = MemoryStore()
    first = make_agent(tmp_path / "old", store)
    first.start()
    submit(first, 0, 7)
    assert first.shutdown() == 0  # the stream has 7 events
    store.down = True
    agent = make_agent(tmp_path / "fresh", store)
    agent.start()
    assert submit(agent, 100, 3) == (None, None)
    assert submit(agent, 103, 2) == (None, None)
    assert agent.shutdown() == 3  # unnumbered events stay in the spool
    again = make_agent(tmp_path / "fresh", store)
    again.start()
    assert submit(again, 105, 1) == (None, None)
    store.down = False
    wait_for(lambda: not again.alerts(), what="the head")
    assert submit(again, 106, 1) == (13, 13)
    assert again.shutdown() == 0
    assert archived_seqs(store) == list(range(14))
    assert verify(store) == ([], 14)
    numbers = []
    for name in sorted(store.objects):
        opened = open_segment(store.original(name))
        for line in decompress_body(opened.body, opened.container).splitlines():
            numbers.append(int(re.search(rb'"details":\{"n":(\d+)', line).group(1)))  # type: ignore[union-attr]
    assert numbers == [*range(7), *range(100, 107)]  # in acknowledgement order


@dataclass
class HangingStore(MemoryStore):
    """S3 that accepts connections and never answers: every call waits for ``answer``
    (then behaves as ``down`` says)."""

    answer: threading.Event = field(default_factory=threading.Event)

    def _check(self, operation: str = "") -> None:
        self.answer.wait(30)
        super()._check(operation)


def test_start_does_not_wait_for_an_s3_that_never_answers(tmp_path: Path) -> None:
    store = HangingStore()
    agent = make_agent(tmp_path, store, backoff=SLOW, start_wait=0.3)
    started = time.monotonic()
    agent.start()
    assert time.monotonic() - started < 5  # neither the bucket check nor the head read held it
    assert submit(agent, 0, 3) == (None, None)
    assert agent.readiness() is None
    store.answer.set()  # S3 answers: the head is read (genesis) and the events numbered
    wait_for(lambda: not agent.alerts(), what="the head")
    assert submit(agent, 3, 2) == (3, 4)
    assert agent.shutdown() == 0
    assert archived_seqs(store) == list(range(5))


def test_shutdown_reads_the_head_at_once_instead_of_after_the_backoff(tmp_path: Path) -> None:
    """SIGTERM after S3 came back: the head read is retried at once (the resolver
    sleeps 15-30 s), the events numbered, sealed and uploaded within the grace."""
    store = MemoryStore(down=True)
    agent = make_agent(tmp_path, store, backoff=SLOW, grace=10.0)
    agent.start()
    assert submit(agent, 0, 4) == (None, None)
    store.down = False
    started = time.monotonic()
    assert agent.shutdown() == 0
    assert time.monotonic() - started < 5
    assert archived_seqs(store) == list(range(4))


def test_shutdown_with_the_head_unreadable_exits_3_within_the_grace(tmp_path: Path) -> None:
    store = MemoryStore(down=True)
    agent = make_agent(tmp_path, store, backoff=FAST, grace=1.0)
    agent.start()
    assert submit(agent, 0, 4) == (None, None)
    started = time.monotonic()
    assert agent.shutdown() == 3
    assert time.monotonic() - started < 5
    store.down = False
    again = make_agent(tmp_path, store)
    again.start()
    wait_for(lambda: not again.alerts(), what="the head")
    assert again.shutdown() == 0
    assert archived_seqs(store) == list(range(4))


# -- hostile bucket writers -----------------------------------------------------------


def test_junk_at_the_next_key_is_skipped_and_the_chain_verifies(tmp_path: Path) -> None:
    store = MemoryStore()
    agent = make_agent(tmp_path, store)
    agent.start()
    submit(agent, 0, 10)
    wait_for(lambda: store.puts == 1, what="segment 0")
    store.down = True
    submit(agent, 10, 10)
    submit(agent, 20, 10)  # segments 1 and 2 wait in the spool
    store.put_version(key(1), b"junk written by someone without the key")
    store.down = False
    wait_for(lambda: len(store.objects) == 4, what="the re-sealed segments")
    assert metric(agent, "audit_archiver_foreign_objects_total") == 1
    assert agent.readiness() is None
    assert any(key(1) in alert for alert in agent.alerts())
    assert submit(agent, 30, 10) == (30, 39)
    assert agent.shutdown() == 0
    assert store.original(key(1)) == b"junk written by someone without the key"
    assert archived_seqs(store) == list(range(40))
    assert verify(store) == ([("malformed_segment", key(1))], 40)


def test_a_segment_signed_by_another_key_at_the_next_key_is_foreign(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from audit_archiver.core.signing import Ed25519Signer

    store = MemoryStore()
    stranger = Ed25519Signer(ed25519.Ed25519PrivateKey.from_private_bytes(b"\x07" * 32))
    forged = StreamSealer(prefix="audit", stream="s1", signer=stranger, head=ChainHead())
    planted = forged.seal([], "2026-01-01T00:00:00.000000Z")
    store.put_version(planted.key, planted.data)  # a stream that has no segment yet
    agent = make_agent(tmp_path, store)
    agent.start()
    # a stream with no segment of this agent, and a well-formed segment of another
    # key: what a rotation without --previous-public-key looks like; refused (exit 1)
    wait_for(agent.stopped.is_set, what="the refusal")
    assert "--previous-public-key" in str(agent.fatal_error)
    assert agent.shutdown() == 1


def test_fresh_spool_ignores_newer_junk_versions_and_delete_markers(tmp_path: Path) -> None:
    store = MemoryStore()
    first = make_agent(tmp_path / "a", store)
    first.start()
    submit(first, 0, 20)
    assert first.shutdown() == 0
    store.put_version(key(1), b"a newer junk version of the newest key")
    store.delete_marker(key(1))
    store.put_version(key(2), b"junk above the head")
    store.delete_marker(key(2))
    second = make_agent(tmp_path / "b", store)
    second.start()
    wait_for(lambda: "not known" not in " ".join(second.alerts()), what="the head")
    assert submit(second, 20, 10) == (20, 29)
    assert second.shutdown() == 0
    assert not second.stopped.is_set() or second.fatal_error is None
    assert metric(second, "audit_archiver_foreign_objects_total") == 1  # key 2, once
    assert archived_seqs(store) == list(range(30))
    problems, events = verify(store)
    assert events == 30
    assert {name for _, name in problems} == {key(1), key(2)}
