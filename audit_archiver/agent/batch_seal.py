"""Seal an NDJSON file of events into segments in a local directory (offline archiving).

All-or-nothing: every line is validated before anything is sealed, so a bad
line leaves the directory untouched. The chain continues from what the
directory already holds for the stream.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from audit_archiver.agent.sealer import StreamSealer, recover_chain_head
from audit_archiver.core.encoding import format_timestamp
from audit_archiver.core.event import encode_event, parse_event_line
from audit_archiver.core.layout import segment_key
from audit_archiver.core.line import seal_line
from audit_archiver.core.signing import Ed25519Signer, TrustedKey, load_trusted_key
from audit_archiver.errors import EventValidationError, InputError, StorageError
from audit_archiver.storage.localdir import LocalDirectoryStore

__all__ = ["BatchSealResult", "seal_lines_into_directory"]


@dataclass(frozen=True)
class BatchSealResult:
    """What an offline seal run wrote."""

    events: int
    segments: list[str]
    first_seq: int
    next_seq: int


def seal_lines_into_directory(
    raw_lines: Iterable[bytes],
    store: LocalDirectoryStore,
    *,
    prefix: str,
    stream: str,
    signer: Ed25519Signer,
    batch_max_events: int,
    compression: str,
    clock: Callable[[], datetime],
    previous_keys: Sequence[TrustedKey] = (),
) -> BatchSealResult:
    """Validate every line, then seal them in batches into ``store``.

    The stream continues from the directory's newest segment, which must be
    signed by ``signer`` or, after a key rotation, by one of ``previous_keys``.

    Raises:
        EventValidationError: a line is invalid or cannot be encoded (names the
            line number).
        InputError: the input holds no events.
        IntegrityError: the directory's newest segment of the stream is not
            signed by ``signer`` or a previous key.
        StorageError: a segment could not be written.
    """
    events = []
    for number, raw in enumerate(raw_lines, start=1):
        if not raw.strip():
            continue
        try:
            events.append(encode_event(parse_event_line(raw.rstrip(b"\r\n"))))
        except EventValidationError as e:
            raise e.at_line(number) from e
    if not events:
        raise InputError("the input holds no events")
    try:
        store.root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StorageError(f"cannot create {store.root}: {e.strerror}") from e
    own_key = load_trusted_key(signer.public_pem())
    head, _ = recover_chain_head(
        store, prefix, stream, own_key, previous_keys=previous_keys, store_holds_prefix=False
    )
    sealer = StreamSealer(
        prefix=prefix, stream=stream, signer=signer, head=head, compression=compression
    )
    first_seq = head.next_seq
    written: list[str] = []
    for start in range(0, len(events), batch_max_events):
        batch = events[start : start + batch_max_events]
        seq = sealer.head.next_seq
        lines = [
            seal_line(event, seq + i, format_timestamp(clock())) for i, event in enumerate(batch)
        ]
        segment = sealer.seal(lines, format_timestamp(clock()))
        key = segment_key("", stream, segment.seal.segment_seq, compression)
        store.put_new(key, segment.data, retain_until=None)
        written.append(key)
    return BatchSealResult(len(events), written, first_seq, sealer.head.next_seq)
