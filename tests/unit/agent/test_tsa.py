"""The agent's TSA client and stamper against a real local TSA over HTTP.

A TSA that is down, hangs or answers something hostile leaves the segment as
it was (never a half-stamped one), counts the reason, and the circuit breaker
keeps a dead TSA from costing a timeout per segment.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from audit_archiver.agent.metrics import AgentMetrics
from audit_archiver.agent.sealer import StreamSealer
from audit_archiver.agent.tsa import (
    FIRST_BACKOFF,
    MAX_BACKOFF,
    RESEAL_BUDGET_TIMEOUTS,
    Stamper,
    TsaClient,
    TsaUnavailableError,
    tsa_location,
)
from audit_archiver.core.chain import ChainHead
from audit_archiver.core.event import seal_event
from audit_archiver.core.segment import SealedSegment, open_segment
from audit_archiver.core.timestamp import (
    TsaTrust,
    build_request,
    parse_timestamp_line,
    read_token,
)
from audit_archiver.errors import ConfigurationError, TimestampError
from tests.helpers import agent_settings, build_stream, fixed_signer, sample_event, tick
from tests.tsa import LocalTsa, closed_port_url, make_tsa_certificates


@pytest.fixture(scope="module")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTsa]:
    with LocalTsa(tmp_path_factory.mktemp("tsa")) as server:
        yield server


@pytest.fixture
def segment() -> SealedSegment:
    return build_stream(None, "s", segments=1)[0]


def _failures(metrics: AgentMetrics, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "audit_archiver_tsa_failures_total", {"reason": reason}
    )
    return value or 0.0


def _stamped(metrics: AgentMetrics) -> float:
    return metrics.registry.get_sample_value("audit_archiver_segments_timestamped_total") or 0.0


def _trust(tsa: LocalTsa) -> TsaTrust:
    return TsaTrust.from_pem(tsa.ca_pem.read_bytes())


def _other_ca(tmp_path: Path) -> TsaTrust:
    """The CA of another TSA (not the one that answers)."""
    folder = tmp_path / "other"
    folder.mkdir()
    ca_pem, _, _ = make_tsa_certificates(folder, "Other TSA")
    return TsaTrust.from_pem(ca_pem.read_bytes())


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_stamps_over_http(tsa: LocalTsa, segment: SealedSegment) -> None:
    metrics = AgentMetrics()
    stamped = Stamper.for_url(tsa.url, 5, metrics)(segment)
    opened = open_segment(stamped.data)
    assert opened.timestamp_line is not None
    token = parse_timestamp_line(opened.timestamp_line)
    assert token == stamped.timestamp
    read_token(token, segment.seal_hash)
    assert opened.body == open_segment(segment.data).body
    assert _stamped(metrics) == 1


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("garbage", "invalid_response"),
        ("huge", "too_large"),
        ("wrong_nonce", "wrong_nonce"),
        ("other_imprint", "wrong_imprint"),
        ("rejection", "not_granted"),
        ("http_error", "http_error"),
    ],
)
def test_hostile_answers_are_never_stored(
    tsa: LocalTsa, segment: SealedSegment, mode: str, reason: str
) -> None:
    metrics = AgentMetrics()
    tsa.mode = mode
    try:
        result = Stamper.for_url(tsa.url, 5, metrics)(segment)
    finally:
        tsa.mode = "ok"
    assert result is segment
    assert open_segment(result.data).timestamp_line is None
    assert _failures(metrics, reason) == 1
    assert _stamped(metrics) == 0


def test_down_tsa_then_breaker_then_recovery(
    tsa: LocalTsa, segment: SealedSegment, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = AgentMetrics()
    clock = Clock()
    calls: list[bytes] = []
    down = TsaClient(closed_port_url(), 2)
    up = TsaClient(tsa.url, 5)
    target = [down]

    def post(query: bytes, timeout: float) -> bytes:
        calls.append(query)
        return target[0].post(query, timeout)

    stamper = Stamper(post, metrics, where="test", timeout=5, monotonic=clock)
    with caplog.at_level(logging.WARNING, logger="audit_archiver.agent.tsa"):
        assert stamper(segment) is segment  # refused: a failure, backoff 2 s
        assert stamper(segment) is segment  # inside the backoff: not asked
        assert len(calls) == 1
        assert _failures(metrics, "unreachable") == 1
        assert _failures(metrics, "circuit_open") == 1
        backoffs = []
        for _ in range(8):  # each retry after the backoff fails again: it doubles to 60 s
            before = clock.now
            clock.now += 1000
            stamper(segment)
            backoffs.append(stamper._closed_until - before - 1000)
        assert backoffs[0] == FIRST_BACKOFF * 2
        assert backoffs[-1] == MAX_BACKOFF
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # one line per failure streak
    assert warnings[0].__dict__["tsa"] == "test"
    assert "actor" not in str(warnings[0].__dict__)  # never event content
    target[0] = up
    clock.now += MAX_BACKOFF + 1
    assert stamper(segment).timestamp is not None
    clock.now += 0.1
    assert stamper(segment).timestamp is not None  # the breaker is closed again
    assert _stamped(metrics) == 2


def test_hanging_tsa_costs_one_timeout(tmp_path: Path, segment: SealedSegment) -> None:
    with LocalTsa(tmp_path / "hang") as hanging:
        hanging.mode = "hang"
        metrics = AgentMetrics()
        stamper = Stamper.for_url(hanging.url, 0.5, metrics)
        started = time.monotonic()
        for _ in range(5):
            assert stamper(segment) is segment
        elapsed = time.monotonic() - started
    assert elapsed < 2.0, elapsed  # one timeout, then the breaker skips
    assert _failures(metrics, "timeout") == 1
    assert _failures(metrics, "circuit_open") == 4


@pytest.mark.parametrize("mode", ["trickle_headers", "trickle_body"])
def test_trickling_tsa_costs_at_most_the_timeout(
    tmp_path: Path, segment: SealedSegment, mode: str
) -> None:
    """A TSA that sends one byte per half second never lets a socket read time out;
    the bound is on the whole exchange, so it still costs one --tsa-timeout, counts
    ``timeout`` and opens the breaker (review 2, HIGH 1: it cost 50 s)."""
    timeout = 1.0
    with LocalTsa(tmp_path / mode) as trickling:
        trickling.mode = mode
        client = TsaClient(trickling.url, timeout)
        started = time.monotonic()
        with pytest.raises(TsaUnavailableError) as caught:
            client.post(build_request(segment.seal_bytes).der)
        assert caught.value.reason == "timeout"
        assert time.monotonic() - started < timeout + 0.5
        metrics = AgentMetrics()
        stamper = Stamper.for_url(trickling.url, timeout, metrics)
        started = time.monotonic()
        assert stamper(segment) is segment
        assert stamper(segment) is segment  # the breaker is open: not asked
        elapsed = time.monotonic() - started
    assert elapsed < timeout + 0.5, elapsed
    assert _failures(metrics, "timeout") == 1
    assert _failures(metrics, "circuit_open") == 1
    assert trickling.requests == 2  # one by the client, one by the stamper


def test_with_tsa_cert_only_verified_tokens_are_stored(
    tsa: LocalTsa, segment: SealedSegment, tmp_path: Path
) -> None:
    """Review 2, M2: with --tsa-cert the agent verifies each token completely
    before storing it. A TSA whose tokens chain elsewhere (a CA not given) or
    whose signature is broken gets no token stored (``invalid``), and /readyz
    names it; a verified token clears the alert."""
    other_ca = _other_ca(tmp_path)
    metrics = AgentMetrics()
    wrong = Stamper.for_url(tsa.url, 5, metrics, trust=other_ca)
    assert wrong(segment) is segment
    assert _failures(metrics, "invalid") == 1
    assert _stamped(metrics) == 0
    assert any("do not verify with --tsa-cert" in alert for alert in wrong.alerts())

    def flipped(query: bytes, timeout: float) -> bytes:
        answer = tsa.reply(query)  # the last bytes are the signature (as /tmp/rev2/flip.py)
        return answer[:-5] + bytes([answer[-5] ^ 1]) + answer[-4:]

    metrics = AgentMetrics()
    broken = Stamper(flipped, metrics, where="test", timeout=5, trust=_trust(tsa))
    assert broken(segment) is segment
    assert _failures(metrics, "invalid") == 1
    right = Stamper.for_url(tsa.url, 5, metrics, trust=_trust(tsa))
    stamped = right(segment)
    assert stamped.timestamp is not None
    assert right.alerts() == []
    assert _stamped(metrics) == 1


def test_probe_at_start_surfaces_a_misconfigured_tsa(
    tsa: LocalTsa, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    other_ca = _other_ca(tmp_path)
    with caplog.at_level(logging.INFO, logger="audit_archiver.agent.tsa"):
        wrong = Stamper.for_url(tsa.url, 5, AgentMetrics(), trust=other_ca)
        assert wrong.probe() is False
        assert wrong.alerts() and "start-up probe (invalid)" in wrong.alerts()[0]
        down = Stamper.for_url(closed_port_url(), 1, AgentMetrics(), trust=_trust(tsa))
        assert down.probe() is False
        assert "(unreachable)" in down.alerts()[0]
        right = Stamper.for_url(tsa.url, 5, AgentMetrics(), trust=_trust(tsa))
        assert right.probe() is True
        assert right.alerts() == []
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("the TSA failed the start-up probe: check --tsa-url and --tsa-cert") == 2


def test_without_tsa_cert_the_agent_says_what_is_checked(
    tsa: LocalTsa, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="audit_archiver.agent.tsa"):
        Stamper.for_url(tsa.url, 5, AgentMetrics()).start()
    (record,) = caplog.records
    assert "imprint and nonce only" in record.getMessage()
    assert "--tsa-cert" in record.getMessage()


def test_reseal_batch_spends_at_most_its_budget(tmp_path: Path) -> None:
    """Review 2, M3: re-sealing a batch (ADR 7) asks a slow TSA only within
    RESEAL_BUDGET_TIMEOUTS x --tsa-timeout in all; the rest is sealed unstamped."""
    timeout = 0.5
    budget = RESEAL_BUDGET_TIMEOUTS * timeout
    sealer = StreamSealer(prefix="audit", stream="s", signer=fixed_signer(), head=ChainHead())
    spooled = [
        sealer.seal([seal_event(sample_event(n), n, tick(n))], tick(n + 1)).data for n in range(8)
    ]
    with LocalTsa(tmp_path / "slow") as slow:
        slow.mode = "slow"
        metrics = AgentMetrics()
        stamping = StreamSealer(
            prefix="audit",
            stream="s",
            signer=fixed_signer(),
            head=ChainHead(),
            stamper=Stamper.for_url(slow.url, timeout, metrics),
        )
        started = time.monotonic()
        resealed = stamping.reseal(spooled, segment_seq=3)
        elapsed = time.monotonic() - started
    assert elapsed < budget + 0.4, elapsed  # 8 answers of SLOW_SECONDS each would be 2.4 s
    stamped = [s for s in resealed if s.timestamp is not None]
    assert 1 <= len(stamped) < len(resealed)
    assert len(resealed) == 8 and [s.seal.segment_seq for s in resealed] == list(range(3, 11))
    unstamped = sum(
        _failures(metrics, reason) for reason in ("timeout", "circuit_open", "reseal_budget")
    )
    assert unstamped == len(resealed) - len(stamped)


def test_logs_name_the_tsa_without_credentials() -> None:
    assert tsa_location("https://user:secret@tsa.example:8443/path?x=1") == (
        "https://tsa.example:8443"
    )


def test_sealer_stamps_new_and_resealed_segments(tsa: LocalTsa) -> None:
    """A segment is stamped right after signing; a re-seal (ADR 7) has a new seal,
    so it gets a new token over the new seal hash."""
    metrics = AgentMetrics()
    sealer = StreamSealer(
        prefix="audit",
        stream="s",
        signer=fixed_signer(),
        head=ChainHead(),
        stamper=Stamper.for_url(tsa.url, 5, metrics),
    )
    lines = [seal_event(sample_event(0), 0, tick(0))]
    first = sealer.seal(lines, tick(1))
    assert first.timestamp is not None
    read_token(first.timestamp, first.seal_hash)
    assert sealer.head.prev_seal_hash == first.seal_hash  # the token does not change the chain
    (moved,) = sealer.reseal([first.data], segment_seq=5)
    assert moved.seal.segment_seq == 5 and moved.seal_hash != first.seal_hash
    assert moved.timestamp is not None and moved.timestamp != first.timestamp
    read_token(moved.timestamp, moved.seal_hash)
    with pytest.raises(TimestampError):
        read_token(first.timestamp, moved.seal_hash)
    assert _stamped(metrics) == 2


@pytest.mark.parametrize(
    ("url", "timeout", "message"),
    [
        ("ftp://tsa.example/", 5.0, "--tsa-url"),
        ("http://", 5.0, "--tsa-url"),
        ("http://tsa.example:99999/", 5.0, "--tsa-url"),
        ("http://tsa example/", 5.0, "--tsa-url"),
        ("https://user:secret@tsa.example/", 5.0, "user info"),
        ("http://user@tsa.example/", 5.0, "user info"),
        ("http://tsa.example/", 0.0, "--tsa-timeout"),
        ("http://tsa.example/", 61.0, "--tsa-timeout"),
    ],
)
def test_tsa_settings_are_checked(tmp_path: Path, url: str, timeout: float, message: str) -> None:
    settings = dataclasses.replace(
        agent_settings(tmp_path / "spool"), stdin=True, tsa_url=url, tsa_timeout=timeout
    )
    with pytest.raises(ConfigurationError, match=message):
        settings.validate()
