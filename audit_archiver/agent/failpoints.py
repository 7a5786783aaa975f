"""Crash points for testing durability: ``AUDIT_ARCHIVER_FAILPOINTS=name[,name...]``.

At a named point the process sends itself SIGKILL, exactly as an OOM kill or a
node failure would stop it, so tests can crash the agent at a chosen step of
the pipeline instead of racing a timer. Unset (the normal case) it costs one
set lookup per call.
"""

from __future__ import annotations

import os
import signal

__all__ = ["POINTS", "hit"]

POINTS = frozenset(
    {
        "wal-opened",  # a new WAL file exists (directory fsync'd), nothing written to it yet
        "before-ack",  # events are fsync'd in the WAL, the client has no answer yet
        "after-seal",  # a sealed segment is durable in the spool, its WAL not yet trimmed
        "after-put",  # S3 holds the segment, the spool does not know yet
        "after-head",  # the spool recorded the upload, the sealed file is not yet deleted
        # numbering events acknowledged before the chain head was known (spool.initialize_head)
        "numbered-before-head",  # the numbered WAL copy is in place, head.json not yet written
        "numbered-after-head",  # head.json commits the numbering, the u-files are still there
        # re-sealing after a foreign object at the next key (spool.replace_sealed, ADR 7)
        "reseal-staged",  # sealed.new/ is complete, reseal.json not yet written
        "reseal-committed",  # reseal.json commits the new set, the directories not yet swapped
        "reseal-swapped",  # sealed/ holds the new set, sealed.old/ and reseal.json remain
    }
)
_ARMED = frozenset(
    p.strip() for p in os.environ.get("AUDIT_ARCHIVER_FAILPOINTS", "").split(",") if p.strip()
)


def hit(point: str) -> None:
    """SIGKILL this process if ``point`` is armed."""
    if point in _ARMED:
        os.kill(os.getpid(), signal.SIGKILL)
