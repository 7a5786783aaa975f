"""The dedupe window: producers' own ids seen recently, so a resent batch is archived once.

A producer that did not get an answer in time sends the batch again (the
Kubernetes API server after its 30 s timeout, Vector and the collector after a
503 or a dropped connection). Formats whose items carry a stable id
(:attr:`~audit_archiver.core.formats.EncodedBatch.dedupe_keys`: k8s
``auditID|stage``, CloudTrail ``eventID``, GCP ``logName|insertId``) are
filtered here before they are committed.

Invariants:

- An id is marked seen only once its event is durably committed
  (:meth:`DedupeWindow.commit`); a request that failed (503, a spool error)
  releases its ids (:meth:`DedupeWindow.release`), so its retry is archived.
- An id claimed by a request still being committed is *busy* for the others:
  a resend that arrives meanwhile waits for that outcome instead of archiving
  the event a second time.
- Bounded: at most :data:`MAX_KEYS` ids, none older than :data:`MAX_AGE_SECONDS`
  (the oldest are forgotten first). An id is kept as a 16-byte BLAKE2b digest
  of ``format`` and the id, so the window's memory does not depend on what
  producers send (about 100 bytes an id: 10 MB at the cap).
- In memory, per process: a restart forgets the window. Thread-safe.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from audit_archiver.core.line import EncodedEvents

__all__ = ["MAX_AGE_SECONDS", "MAX_KEYS", "Claim", "DedupeWindow", "select_events"]

MAX_KEYS = 100_000
"""Ids remembered at most (the oldest is forgotten first)."""
MAX_AGE_SECONDS = 15 * 60.0
"""Ids older than this (since their commit) are forgotten."""


@dataclass
class Claim:
    """One request's ids, held from :meth:`DedupeWindow.claim` until it is
    committed or released.

    Attributes:
        fresh: indexes of the request's events to commit (not seen, not busy,
            the first of any repeated within the request).
        busy: events of other requests being committed that hold some of this
            request's ids; wait for them and claim again.
    """

    fresh: list[int]
    busy: list[threading.Event]
    digests: list[bytes] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)


class DedupeWindow:
    """Producer ids committed recently, and those being committed now."""

    def __init__(
        self,
        max_keys: int = MAX_KEYS,
        max_age: float = MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_keys = max_keys
        self.max_age = max_age
        self._clock = clock
        self._seen: OrderedDict[bytes, float] = OrderedDict()
        self._claimed: dict[bytes, threading.Event] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def claim(self, format_name: str, keys: Sequence[str | None]) -> Claim:
        """Split a request's events by id: those to commit, and the rest.

        An event without an id is always fresh. When ``busy`` is not empty
        nothing is claimed: wait for those events, then claim again.
        """
        digests = [None if key is None else _digest(format_name, key) for key in keys]
        with self._lock:
            self._expire()
            busy = {self._claimed[d] for d in digests if d is not None and d in self._claimed}
            if busy:
                return Claim([], list(busy))
            fresh: list[int] = []
            mine: list[bytes] = []
            claim = Claim(fresh, [], mine)
            for index, digest in enumerate(digests):
                if digest is None:
                    fresh.append(index)
                elif digest not in self._seen and digest not in self._claimed:
                    self._claimed[digest] = claim.done
                    mine.append(digest)
                    fresh.append(index)
            return claim

    def commit(self, claim: Claim) -> None:
        """Mark a claim's ids seen (its events are durable) and wake its waiters."""
        now = self._clock()
        with self._lock:
            for digest in claim.digests:
                self._claimed.pop(digest, None)
                self._seen[digest] = now
                self._seen.move_to_end(digest)
            while len(self._seen) > self.max_keys:
                self._seen.popitem(last=False)
        claim.done.set()

    def release(self, claim: Claim) -> None:
        """Forget a claim whose events were not committed, and wake its waiters."""
        with self._lock:
            for digest in claim.digests:
                self._claimed.pop(digest, None)
        claim.done.set()

    def _expire(self) -> None:
        horizon = self._clock() - self.max_age
        while self._seen:
            digest, when = next(iter(self._seen.items()))
            if when >= horizon:
                break
            del self._seen[digest]


def _digest(format_name: str, key: str) -> bytes:
    data = format_name.encode() + b"\0" + key.encode("utf-8", "surrogatepass")
    return hashlib.blake2b(data, digest_size=16).digest()


def select_events(events: EncodedEvents, indexes: Sequence[int]) -> EncodedEvents:
    """The events at ``indexes`` (ascending), taken from the encoded lines as
    they are (never re-encoded). A canonical event line holds no raw newline."""
    if len(indexes) == events.event_count:
        return events
    lines = events.data.split(b"\n")
    return EncodedEvents(len(indexes), b"".join(lines[i] + b"\n" for i in indexes))
