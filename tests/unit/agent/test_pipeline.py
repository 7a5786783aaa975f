"""The agent pipeline in-process against an in-memory store with Object Lock semantics."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from audit_archiver.agent.pipeline import Agent
from audit_archiver.agent.sealer import StreamSealer
from audit_archiver.agent.uploader import Backoff
from audit_archiver.core.chain import ChainHead
from audit_archiver.core.event import encode_event
from audit_archiver.core.line import EncodedEvents
from audit_archiver.core.segment import decompress_body, open_segment
from audit_archiver.core.signing import Signer, load_trusted_key
from audit_archiver.errors import (
    ConfigurationError,
    NotReadyError,
    StorageError,
    StreamForkedError,
)
from audit_archiver.verify.verifier import Verifier, VerifyOptions
from tests.helpers import agent_settings, fixed_signer, kinds, sample_event, trust_policy, wait_for
from tests.memory_store import MemoryStore

FAST = Backoff(base=0.01, cap=0.05)


def make_agent(
    spool: Path,
    store: MemoryStore,
    grace_period: float = 5.0,
    signer: Signer | None = None,
    **batch: float | None,
) -> Agent:
    settings = agent_settings(spool, grace_period=grace_period, **batch)
    signer = signer or fixed_signer()
    own_key = load_trusted_key(signer.public_pem())
    return Agent(settings, store, signer, own_key, backoff=FAST)


def submit(agent: Agent, first: int, count: int) -> tuple[int | None, int | None]:
    events = EncodedEvents.of([encode_event(sample_event(i)) for i in range(first, first + count)])
    accepted = agent.submit(events).result()
    return accepted.first_seq, accepted.last_seq


def verify(store: MemoryStore) -> tuple[list[tuple[str, str]], int, int]:
    options = VerifyOptions(key_base="audit/", seal_prefix="audit", workers=2)
    report = Verifier(store, trust_policy(fixed_signer()), options, "memory").run()
    return kinds(report), report.segments, report.events


def test_round_trip_seals_on_size_and_at_shutdown(tmp_path: Path) -> None:
    store = MemoryStore()
    agent = make_agent(tmp_path, store)
    agent.start()
    assert submit(agent, 0, 25) == (0, 24)
    assert submit(agent, 25, 3) == (25, 27)
    wait_for(lambda: store.puts == 2, what="two full segments")
    assert agent.shutdown() == 0
    assert verify(store) == ([], 3, 28)
    retention = [v.retain_until for vs in store.objects.values() for v in vs]
    assert all(r is not None for r in retention)


def test_segments_keep_to_the_byte_limit_inside_a_request(tmp_path: Path) -> None:
    store = MemoryStore()
    with ThreadPoolExecutor(1) as workers:
        agent = make_agent(tmp_path, store, max_events=1000, max_bytes=1500)
        agent.start(workers)
        assert submit(agent, 0, 40) == (0, 39)
        assert submit(agent, 40, 2) == (40, 41)
        assert agent.shutdown() == 0
    sizes = []
    for versions in store.objects.values():
        opened = open_segment(versions[0].data)
        sizes.append(len(decompress_body(opened.body, opened.container)))
    assert len(sizes) > 4 and max(sizes) <= 1500
    assert verify(store) == ([], len(sizes), 42)


@dataclass
class CountingStore(MemoryStore):
    """Counts the Object Lock checks."""

    lock_checks: int = 0

    def object_lock_enabled(self) -> bool:
        self.lock_checks += 1
        return super().object_lock_enabled()


def test_bucket_checked_at_start_is_not_checked_again(tmp_path: Path) -> None:
    store = CountingStore()
    agent = make_agent(tmp_path, store)
    agent.start()
    submit(agent, 0, 10)
    wait_for(lambda: store.puts == 1, what="the first upload")
    assert agent.shutdown() == 0
    assert store.lock_checks == 1


def test_bucket_unreachable_at_start_is_checked_before_the_first_upload(tmp_path: Path) -> None:
    store = CountingStore(locked=False, down=True)
    agent = make_agent(tmp_path, store)
    agent.start()
    store.down = False
    wait_for(lambda: agent.readiness() is None, what="head recovery")
    submit(agent, 0, 10)
    wait_for(agent.stopped.is_set, what="fatal stop")
    assert isinstance(agent.fatal_error, ConfigurationError)
    assert "Object Lock" in str(agent.fatal_error)
    assert store.puts == 0
    assert agent.shutdown() == 2


class FlakySigner:
    """The test key, unreachable (as KMS can be) for its first ``failures`` signatures."""

    def __init__(self, failures: int) -> None:
        self._signer = fixed_signer()
        self.key_id = self._signer.key_id
        self.algorithm = self._signer.algorithm
        self.failures = failures

    def public_pem(self) -> bytes:
        return self._signer.public_pem()

    def sign(self, message: bytes) -> bytes:
        if self.failures:
            self.failures -= 1
            raise StorageError("KMS Sign failed: endpoint unreachable")
        return self._signer.sign(message)


def test_sealing_retries_while_the_signer_is_down(tmp_path: Path) -> None:
    store = MemoryStore()
    signer = FlakySigner(failures=2)
    with ThreadPoolExecutor(2) as workers:
        agent = make_agent(tmp_path, store, signer=signer, max_events=5)
        agent.start(workers)
        assert submit(agent, 0, 10) == (0, 9)
        assert submit(agent, 10, 8) == (10, 17)
        assert submit(agent, 18, 5) == (18, 22)
        wait_for(lambda: store.puts == 4, what="every full batch sealed and stored")
        assert signer.failures == 0
        assert agent.shutdown() == 0
    assert verify(store) == ([], 5, 23)


def test_outage_loses_nothing_and_restart_uploads(tmp_path: Path) -> None:
    store = MemoryStore()
    agent = make_agent(tmp_path, store, grace_period=0.2)
    agent.start()
    submit(agent, 0, 5)
    store.down = True
    submit(agent, 5, 20)
    assert agent.shutdown() == 3  # acknowledged segments stay in the spool
    assert store.puts <= 1
    store.down = False
    again = make_agent(tmp_path, store)
    again.start()
    assert submit(again, 25, 1) == (25, 25)
    assert again.shutdown() == 0
    assert verify(store) == ([], store.puts, 26)


def test_fresh_spool_continues_the_stream_from_the_bucket(tmp_path: Path) -> None:
    store = MemoryStore()
    first = make_agent(tmp_path / "a", store)
    first.start()
    submit(first, 0, 12)
    first.shutdown()
    second = make_agent(tmp_path / "b", store)
    second.start()
    wait_for(lambda: second.readiness() is None, what="head recovery")
    assert submit(second, 12, 4) == (12, 15)
    second.shutdown()
    assert verify(store) == ([], 3, 16)


def test_events_are_accepted_unnumbered_until_the_head_is_known(tmp_path: Path) -> None:
    store = MemoryStore(down=True)
    agent = make_agent(tmp_path, store)
    agent.start()
    assert agent.readiness() is None
    assert any("chain head not known yet" in alert for alert in agent.alerts())
    assert submit(agent, 0, 3) == (None, None)
    store.down = False
    wait_for(lambda: not agent.alerts(), what="the head")
    assert submit(agent, 3, 1) == (3, 3)
    assert agent.shutdown() == 0
    assert verify(store) == ([], 2, 4)  # the numbered backlog is due at once, then 1 more


def test_draining_refuses(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, MemoryStore())
    agent.start()
    assert agent.shutdown() == 0
    with pytest.raises(NotReadyError):
        submit(agent, 0, 1)


def test_bucket_without_object_lock_is_refused(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, MemoryStore(locked=False))
    with pytest.raises(ConfigurationError, match="Object Lock"):
        agent.start()


def test_forked_stream_stops_the_agent(tmp_path: Path) -> None:
    store = MemoryStore()
    agent = make_agent(tmp_path / "spool", store)
    agent.start()
    # another agent with the same key takes the stream's next key after this one
    # read the (empty) head: a true fork
    twin = StreamSealer(prefix="audit", stream="s1", signer=fixed_signer(), head=ChainHead())
    other = twin.seal([], "2026-01-01T00:00:00.000000Z")
    store.put_new(other.key, other.data, retain_until=None)
    submit(agent, 0, 10)
    wait_for(agent.stopped.is_set, what="fatal stop")
    assert isinstance(agent.fatal_error, StreamForkedError)
    assert agent.shutdown() == 1


def test_heartbeat_seals_empty_segments_when_idle(tmp_path: Path) -> None:
    store = MemoryStore()
    agent = make_agent(tmp_path, store, heartbeat=0.05)
    agent.start()
    wait_for(lambda: store.puts >= 3, what="heartbeats")
    submit(agent, 0, 2)
    assert agent.shutdown() == 0
    problems, segments, events = verify(store)
    assert (problems, events) == ([], 2)
    assert segments >= 4
