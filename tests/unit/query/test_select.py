"""The window search over fake seals: what it picks, and how many seals it reads."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from audit_archiver.core.encoding import format_timestamp
from audit_archiver.core.seal import Seal
from audit_archiver.core.segment import SealFrame
from audit_archiver.query.select import find_window
from audit_archiver.verify.seal_reader import SealRead

BASE = datetime(2026, 1, 1, tzinfo=UTC)


def stamp(minutes: float) -> str:
    return format_timestamp(BASE + timedelta(minutes=minutes))


def fake_seal(number: int, first: float | None, last: float | None, sealed: float) -> Seal:
    empty = first is None
    return Seal(
        stream="s",
        segment_seq=number,
        first_seq=0,
        last_seq=None if empty else 0,
        event_count=0 if empty else 1,
        first_received_at=None if first is None else stamp(first),
        last_received_at=None if last is None else stamp(last),
        merkle_root="0" * 64,
        prev_seal_hash="0" * 64,
        body_hash="0" * 64,
        body_size=0,
        compression="zstd",
        object_key=f"audit/s/{number:012d}.ndjson.zst",
        key_id="0" * 64,
        signature_algorithm="ed25519",
        sealed_at=stamp(sealed),
        retention_days=None,
    )


def hourly(count: int) -> list[Seal]:
    """Segment n holds events received in minutes [60n, 60n + 50], sealed at 60n + 55."""
    return [fake_seal(n, 60 * n, 60 * n + 50, 60 * n + 55) for n in range(count)]


class Counting:
    """A seal lookup by segment number over fakes (None: does not authenticate)."""

    def __init__(self, seals: list[Seal | None]) -> None:
        self.seals = seals
        self.calls: list[int] = []

    def __call__(self, number: int) -> SealRead | None:
        self.calls.append(number)
        seal = self.seals[number]
        if seal is None:
            return None
        frame = SealFrame("zstd", b"", b"", 0)
        return SealRead(seal, "0" * 64, frame, seal.object_key, None)


def window(seals: list[Seal | None], since: str | None, until: str | None) -> tuple[int, int]:
    return find_window(list(range(len(seals))), Counting(seals), since, until)


def brute_force(seals: list[Seal], since: str, until: str) -> tuple[int, int]:
    """By hand: the first segment with an event >= since, the first whose events are >= until."""
    start = next(
        (n for n, s in enumerate(seals) if (s.last_received_at or s.sealed_at) >= since),
        len(seals),
    )
    end = next(
        (
            n
            for n, s in enumerate(seals)
            if n >= start and s.first_received_at is not None and s.first_received_at >= until
        ),
        len(seals),
    )
    return start, end


def test_a_narrow_window_reads_a_logarithmic_number_of_seals() -> None:
    seals = hourly(1000)
    probe = Counting(list(seals))
    found = find_window(list(range(1000)), probe, stamp(60 * 400 + 10), stamp(60 * 403 + 5))
    assert found == (400, 404)
    assert len(probe.calls) <= 2 * math.ceil(math.log2(1000)) + 2


def test_windows_match_a_brute_force_search() -> None:
    seals = hourly(50)
    for since_minute in range(-10, 3100, 37):
        for width in (1, 50, 240, 900):
            since, until = stamp(since_minute), stamp(since_minute + width)
            found = window(list(seals), since, until)
            assert found == brute_force(seals, since, until), (since_minute, width)


def test_open_ended_windows() -> None:
    seals = hourly(10)
    assert window(list(seals), None, None) == (0, 10)
    assert window(list(seals), stamp(300), None) == (5, 10)
    assert window(list(seals), None, stamp(300)) == (0, 5)
    assert window(list(seals), stamp(99999), None) == (10, 10)


def test_heartbeats_count_by_their_seal_time() -> None:
    seals = [
        fake_seal(0, 0, 10, 11),
        fake_seal(1, None, None, 20),  # heartbeat
        fake_seal(2, None, None, 30),  # heartbeat
        fake_seal(3, 40, 50, 51),
    ]
    assert window(list(seals), stamp(15), stamp(35)) == (1, 3)
    assert window(list(seals), stamp(12), stamp(45)) == (1, 4)


def test_unreadable_probes_step_to_a_neighbour() -> None:
    seals: list[Seal | None] = list(hourly(64))
    for broken in range(28, 36):  # the middle, where the first probes land
        seals[broken] = None
    assert window(seals, stamp(60 * 10), stamp(60 * 12)) == (10, 12)
    assert all(seals[p] is not None for p in (10, 11))


def test_unreadable_regions_widen_the_window_never_narrow_it() -> None:
    seals = hourly(40)
    damaged: list[Seal | None] = [None if 5 <= n <= 30 else s for n, s in enumerate(seals)]
    since, until = stamp(60 * 20), stamp(60 * 22)
    start, end = window(damaged, since, until)
    assert start <= 20 and end >= 22  # covers everything the true window holds


def test_nothing_readable_means_everything() -> None:
    assert window([None] * 20, stamp(5), stamp(6)) == (0, 20)


def test_a_heartbeat_never_ends_the_window() -> None:
    """Review finding M1: an event received just before a heartbeat was sealed is sealed
    in the segment after it; an --until between the two times must still read it."""
    seals: list[Seal | None] = [
        fake_seal(0, 0, 10, 11),
        fake_seal(1, None, None, 20),  # heartbeat sealed at minute 20
        fake_seal(2, 19.99, 19.99, 21),  # received before the heartbeat's seal
        fake_seal(3, 40, 50, 51),
    ]
    assert window(seals, None, stamp(19.995)) == (0, 3)
    assert window(seals, stamp(19.9), stamp(19.995)) == (1, 3)
    assert window(seals, None, stamp(30)) == (0, 3)


def test_listed_numbers_may_have_gaps() -> None:
    seals = hourly(10)
    numbers = [0, 1, 2, 5, 6, 9]  # the rest missing from the listing

    def read(number: int) -> SealRead | None:
        return Counting(list(seals))(number)

    assert find_window(numbers, read, stamp(60 * 5), stamp(60 * 7)) == (3, 5)  # numbers 5, 6
