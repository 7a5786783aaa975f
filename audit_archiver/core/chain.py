"""The chain model of a stream, shared by the writer (agent) and the verifier.

A stream is a chain of segments. After any segment, the chain's
:class:`ChainHead` says what the next segment must be: its number, the seal
hash it links to, the event seq it starts at, and the times it may not go
below. The writer advances its head with :meth:`ChainHead.after` as it seals;
the verifier advances its own head the same way as it reads, and asks
:func:`link_faults` whether each seal continues the head before it. Because
both sides use these two functions, a rule changed here changes for both.

Invariants (``docs/FORMAT.md`` section 8, steps 11 to 13):

- segment 0 links to :data:`~audit_archiver.core.seal.GENESIS_HASH` and starts
  at event seq 0 (the genesis head, ``ChainHead()``, says exactly that);
- every seal's ``prev_seal_hash`` is the previous seal's hash and its
  ``first_seq`` is the previous ``first_seq + event_count``;
- neither ``received_at`` nor ``sealed_at`` goes backwards across a link. An
  empty (heartbeat) segment has no ``received_at``, so the head keeps the last
  event's: the "previous segment's last ``received_at``" is the newest event's
  before the link, however many heartbeats came between.

Segment numbering (no gap, no repeat) is read from object keys, not from this
model: a seal's own ``segment_seq`` is checked against its key.
"""

from __future__ import annotations

from dataclasses import dataclass

from audit_archiver.core.seal import GENESIS_HASH, Seal

__all__ = ["ChainHead", "LinkFault", "link_faults"]


@dataclass(frozen=True)
class ChainHead:
    """Where a stream's chain continues.

    ``next_segment_seq``, ``prev_seal_hash`` and ``next_seq`` are what the next
    seal must carry; ``last_received_at`` and ``last_sealed_at`` are the floors
    its times may not go below (None before the first event or seal).
    """

    next_segment_seq: int = 0
    prev_seal_hash: str = GENESIS_HASH
    next_seq: int = 0
    last_received_at: str | None = None
    last_sealed_at: str | None = None

    @property
    def received_at_floor(self) -> str | None:
        """The lowest ``received_at`` the writer may give the next event.

        The newest event's ``received_at`` when the head knows it; when it was
        read back from a heartbeat (which names no event time), its
        ``sealed_at``, which is never below any earlier event's: a seal is never
        older than its events and ``sealed_at`` never decreases.
        """
        return self.last_received_at or self.last_sealed_at

    @property
    def is_genesis(self) -> bool:
        """True before the stream's first segment."""
        return self.next_segment_seq == 0

    def after(self, seal: Seal, seal_hash: str) -> ChainHead:
        """The head after ``seal`` (whose hash is ``seal_hash``), which continues this one.

        An empty (heartbeat) segment keeps this head's ``last_received_at``, so
        ``received_at`` still never goes below the newest event's.
        """
        return ChainHead(
            seal.segment_seq + 1,
            seal_hash,
            seal.next_seq,
            seal.last_received_at or self.last_received_at,
            seal.sealed_at,
        )


@dataclass(frozen=True)
class LinkFault:
    """One way a seal fails to continue a head: a problem kind and its evidence."""

    kind: str
    detail: str
    expected: str
    found: str


def link_faults(head: ChainHead, seal: Seal) -> list[LinkFault]:
    """Return every way ``seal`` fails to continue ``head`` (empty when it links).

    Kinds: ``chain_broken`` (wrong ``prev_seal_hash``), ``sequence_gap``
    (``first_seq`` does not continue the event seq) and ``time_regression``
    (``first_received_at`` or ``sealed_at`` below the head's).
    """
    faults: list[LinkFault] = []
    if seal.prev_seal_hash != head.prev_seal_hash:
        detail = (
            "segment 0 does not link to genesis"
            if head.is_genesis
            else f"does not link to segment {head.next_segment_seq - 1}"
        )
        faults.append(LinkFault("chain_broken", detail, head.prev_seal_hash, seal.prev_seal_hash))
    if seal.first_seq != head.next_seq:
        detail = (
            "stream does not start at event seq 0"
            if head.is_genesis
            else "event seq does not continue the previous segment"
        )
        faults.append(LinkFault("sequence_gap", detail, str(head.next_seq), str(seal.first_seq)))
    floor = head.last_received_at
    if seal.first_received_at is not None and floor is not None and seal.first_received_at < floor:
        faults.append(
            LinkFault(
                "time_regression",
                "first event was received before the previous segment's last",
                f">= {floor}",
                seal.first_received_at,
            )
        )
    if head.last_sealed_at is not None and seal.sealed_at < head.last_sealed_at:
        faults.append(
            LinkFault(
                "time_regression",
                "sealed before the previous segment",
                f">= {head.last_sealed_at}",
                seal.sealed_at,
            )
        )
    return faults
