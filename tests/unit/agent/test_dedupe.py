"""The dedupe window: ids marked seen only after a commit, bounded by count and age."""

from __future__ import annotations

from audit_archiver.agent.dedupe import DedupeWindow, select_events
from audit_archiver.core.line import EncodedEvents


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_committed_id_is_a_duplicate_and_a_released_one_is_not() -> None:
    window = DedupeWindow()
    first = window.claim("k8s-audit", ["a|ResponseComplete", "b|ResponseComplete", None])
    assert first.fresh == [0, 1, 2]
    window.commit(first)
    again = window.claim("k8s-audit", ["a|ResponseComplete", "c|ResponseComplete", None])
    assert again.fresh == [1, 2]
    window.release(again)  # the commit failed: "c" must be archived by the retry
    assert window.claim("k8s-audit", ["c|ResponseComplete"]).fresh == [0]


def test_ids_are_per_format_and_repeats_in_one_request_count_once() -> None:
    window = DedupeWindow()
    claim = window.claim("cloudtrail", ["x", "x", "y"])
    assert claim.fresh == [0, 2]
    window.commit(claim)
    assert window.claim("gcp-audit", ["x"]).fresh == [0]


def test_a_resend_waits_while_the_first_copy_is_being_committed() -> None:
    window = DedupeWindow()
    first = window.claim("k8s-audit", ["a"])
    second = window.claim("k8s-audit", ["a", "b"])
    assert second.fresh == []
    assert second.busy == [first.done]
    window.commit(first)
    assert first.done.is_set()
    assert window.claim("k8s-audit", ["a", "b"]).fresh == [1]


def test_the_window_forgets_the_oldest_by_count_and_by_age() -> None:
    clock = Clock()
    window = DedupeWindow(max_keys=2, max_age=60, clock=clock)
    for key in ("a", "b", "c"):
        window.commit(window.claim("cloudtrail", [key]))
    assert len(window) == 2
    assert window.claim("cloudtrail", ["a"]).fresh == [0]  # forgotten: over the count
    clock.now += 61
    assert window.claim("cloudtrail", ["b", "c"]).fresh == [0, 1]  # forgotten: too old
    assert len(window) == 0


def test_a_huge_id_costs_a_digest_only() -> None:
    window = DedupeWindow()
    window.commit(window.claim("k8s-audit", ["x" * 1_000_000]))
    assert window.claim("k8s-audit", ["x" * 1_000_000]).fresh == []


def test_select_events_keeps_the_encoded_lines() -> None:
    events = EncodedEvents(3, b'{"a":1}\n{"a":2}\n{"a":3}\n')
    assert select_events(events, [0, 2]) == EncodedEvents(2, b'{"a":1}\n{"a":3}\n')
    assert select_events(events, []) == EncodedEvents(0, b"")
    assert select_events(events, [0, 1, 2]) is events
