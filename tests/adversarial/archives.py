"""The archives the attacks start from, in a folder or in a bucket.

``services``: stream ``billing`` (3 segments of 4 events, key A) and stream
``web`` (2 segments of 5 events, key B), prefix ``audit``. Each attack changes
one stream and checks that the other is still verified with its own counts.
"""

from __future__ import annotations

from pathlib import Path

from audit_archiver.core.segment import SealedSegment
from tests.adversarial import kit
from tests.adversarial.kit import KEY_A, KEY_B, PREFIX
from tests.s3server import create_locked_bucket, s3_client, unique_bucket_name

BILLING = (3, 12)  # (segments, events) of the untouched billing stream
WEB = (2, 10)


def billing() -> list[SealedSegment]:
    """Stream ``billing``: 3 segments of 4 events, signed by key A."""
    return kit.stream("billing", KEY_A, 3)


def web(signer: kit.Ed25519Signer = KEY_B) -> list[SealedSegment]:
    """Stream ``web``: 2 segments of 5 events, signed by key B."""
    return kit.stream("web", signer, 2, per_segment=5)


def services_dir(root: Path) -> Path:
    """Both streams in a local folder (a synced copy of the prefix)."""
    kit.write_local(root, billing() + web())
    return root


def services_bucket(endpoint: str) -> str:
    """Both streams uploaded to a fresh locked bucket; return its name."""
    name = create_locked_bucket(s3_client(endpoint), unique_bucket_name("adv"))
    kit.upload(endpoint, name, billing() + web())
    return name


def rel(stream_id: str, n: int) -> str:
    """A segment's key in a local folder (relative to the synced prefix)."""
    return kit.object_key(stream_id, n, prefix="")


def full(stream_id: str, n: int) -> str:
    """A segment's key in the bucket."""
    return kit.object_key(stream_id, n, prefix=PREFIX)
