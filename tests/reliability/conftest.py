"""Fixtures of the reliability tests: agents stopped at teardown, a fault proxy, a seed.

Longer runs (more kills, more faults): ``AUDIT_ARCHIVER_LONG_TESTS=1``. A failing
randomized test prints its seed; ``AUDIT_ARCHIVER_SEED=<seed>`` replays it.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import pytest

from tests.reliability.faultproxy import FaultProxy

LONG = os.environ.get("AUDIT_ARCHIVER_LONG_TESTS") == "1"
S3_READ_TIMEOUT = "2"
"""Seconds (``--s3-read-timeout``, via its environment variable) the agents here wait
for a stalled S3 read: each black hole or latency fault costs this instead of the
10 s default. The proxy's latency (11 s) stays far past it."""


@pytest.fixture(autouse=True)
def short_s3_read_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every agent started here (it inherits the environment) uses the short read timeout."""
    monkeypatch.setenv("AUDIT_ARCHIVER_S3_READ_TIMEOUT", S3_READ_TIMEOUT)


@pytest.fixture
def proxy(locked_bucket: tuple[str, str]) -> Iterator[FaultProxy]:
    """A fault proxy in front of moto, closed at teardown."""
    endpoint, _ = locked_bucket
    with FaultProxy(int(endpoint.rsplit(":", 1)[1])) as running:
        yield running


@pytest.fixture
def seed() -> int:
    """The seed of a randomized test (``AUDIT_ARCHIVER_SEED`` or a fresh one)."""
    chosen = os.environ.get("AUDIT_ARCHIVER_SEED")
    return int(chosen) if chosen else random.SystemRandom().randrange(1 << 32)
