"""Sealed event lines: the archiver's header, and runs of events waiting to be sealed.

A sealed line puts the archiver's two fields first, then the producer's event
in canonical form (:func:`~audit_archiver.core.event.encode_event`)::

    {"seq":<seq>,"received_at":"<timestamp>",<canonical event without its "{">

so the expensive part (parsing, validating, encoding the producer's event) is
done before a ``seq`` is known, and anyone can read ``seq`` and
``received_at`` from the fixed header without parsing the whole line. The
agent keeps accepted events as runs (:class:`EventRun`: consecutive ``seq``,
one ``received_at``) and makes the lines only when it seals a segment.

Reading lines back (untrusted bytes): :func:`parse_line_prefix` needs only the
first :data:`HEADER_MAX_BYTES` bytes of a line, so a verifier can stream a body
without holding whole lines; ``seq`` is a decimal in ``0 .. 2**63 - 1`` (a
signed 64-bit integer) and ``received_at`` a real calendar date in ASCII
digits. :func:`canonical_line_fault` is the full check (``verify --deep``): the
line is exactly what :func:`seal_line` makes of its own parsed content.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

import orjson

from audit_archiver.core.encoding import canonical_json, is_archiver_timestamp

__all__ = [
    "HEADER_MAX_BYTES",
    "MAX_SEQ",
    "EncodedEvents",
    "EventRun",
    "canonical_line_fault",
    "parse_line_header",
    "parse_line_prefix",
    "seal_line",
    "seal_lines",
]


def seal_line(encoded_event: bytes, seq: int, received_at: str) -> bytes:
    """Return the sealed line: the archiver header, then the encoded event.

    Raises:
        ValueError: ``seq`` is negative, ``received_at`` is not an archiver
            timestamp, or ``encoded_event`` is not an encoded object.
    """
    if seq < 0:
        raise ValueError("seq must be >= 0")
    if not is_archiver_timestamp(received_at):
        raise ValueError(f"received_at is not an archiver timestamp: {received_at!r}")
    if not encoded_event.startswith(b"{") or encoded_event == b"{}":
        raise ValueError("encoded event must be a non-empty JSON object")
    return b'{"seq":%d,"received_at":"%s",%s' % (seq, received_at.encode(), encoded_event[1:])


def seal_lines(encoded_events: list[bytes], first_seq: int, received_at: str) -> list[bytes]:
    """Seal a run of encoded events with consecutive seq numbers and one ``received_at``.

    Raises:
        ValueError: as :func:`seal_line`.
    """
    if not encoded_events:
        return []
    seal_line(encoded_events[0], first_seq, received_at)
    if min(map(len, encoded_events)) < 3 or any(encoded[:1] != b"{" for encoded in encoded_events):
        raise ValueError("encoded event must be a non-empty JSON object")
    tail = b',"received_at":"%s",' % received_at.encode()
    return [
        b'{"seq":%d%s%s' % (seq, tail, encoded[1:])
        for seq, encoded in enumerate(encoded_events, start=first_seq)
    ]


class EncodedEvents(NamedTuple):
    """Validated events in canonical form, each followed by a newline; no seq yet.

    The agent moves a request's events as this one bytes object from the
    ingest worker to the spool and the sealer, instead of one object per event.
    """

    event_count: int
    data: bytes

    @classmethod
    def of(cls, encoded: Sequence[bytes]) -> EncodedEvents:
        """Join events encoded by :func:`encode_event`."""
        return cls(len(encoded), b"\n".join(encoded) + b"\n" if encoded else b"")


# The sealed line's header, less the "{" it takes from the encoded event:
# {"seq":<digits>,"received_at":"<27 characters>",
_HEADER_BYTES = len(b'{"seq":,"received_at":"",') + 27 - 1


def _digit_total(first: int, count: int) -> int:
    """The number of decimal digits in first, first + 1, ..., first + count - 1."""
    total = 0
    number = first
    end = first + count
    while number < end:
        width = len(str(number))
        stop = min(end, 10**width)
        total += (stop - number) * width
        number = stop
    return total


class EventRun(NamedTuple):
    """Consecutive events sharing one ``received_at``: seq ``first_seq`` onwards.

    What the agent's write-ahead log holds and the batcher seals: the sealed
    lines are made from it (:meth:`sealed_lines`) only when a segment is built.
    """

    first_seq: int
    received_at: str
    event_count: int
    data: bytes

    @property
    def next_seq(self) -> int:
        """The seq after this run's last event."""
        return self.first_seq + self.event_count

    def sealed_size(self) -> int:
        """Bytes of this run's sealed lines, newlines included."""
        return (
            len(self.data)
            + self.event_count * _HEADER_BYTES
            + _digit_total(self.first_seq, self.event_count)
        )

    def sealed_lines(self) -> list[bytes]:
        """The sealed lines (:func:`seal_line`) of this run, without newlines.

        Raises:
            ValueError: the run is malformed (see :func:`seal_lines`).
        """
        encoded = self.data.split(b"\n")
        if encoded.pop() != b"" or len(encoded) != self.event_count:
            raise ValueError("a run's data must hold `count` newline-terminated events")
        return seal_lines(encoded, self.first_seq, self.received_at)

    def split(self, count: int) -> tuple[EventRun, EventRun]:
        """Split into the first ``count`` events and the rest.

        Raises:
            ValueError: ``count`` is not strictly between 0 and the run's count.
        """
        if not 0 < count < self.event_count:
            raise ValueError(f"cannot split a run of {self.event_count} events at {count}")
        cut = -1
        for _ in range(count):
            cut = self.data.index(b"\n", cut + 1)
        head, tail = self.data[: cut + 1], self.data[cut + 1 :]
        return (
            EventRun(self.first_seq, self.received_at, count, head),
            EventRun(self.first_seq + count, self.received_at, self.event_count - count, tail),
        )

    def line_sizes(self) -> list[int]:
        """The size of each sealed line, its newline included."""
        encoded = self.data.split(b"\n")[: self.event_count]
        return [
            len(line) + _HEADER_BYTES + len(str(self.first_seq + offset)) + 1
            for offset, line in enumerate(encoded)
        ]


_HEADER = re.compile(
    rb'\A\{"seq":(0|[1-9][0-9]{0,18}),"received_at":"'
    rb'([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z)",'
)
MAX_SEQ = 2**63 - 1
HEADER_MAX_BYTES = len(b'{"seq":,"received_at":"",') + 19 + 27
"""The longest header a line can start with (19 seq digits): all a reader needs."""


def parse_line_prefix(head: bytes) -> tuple[int, str] | None:
    """Read ``seq`` and ``received_at`` from the first bytes of a sealed line.

    ``head`` is the line or its first :data:`HEADER_MAX_BYTES` bytes (or more).
    Returns None when it does not start with the fixed header, ``seq`` is over
    :data:`MAX_SEQ` or ``received_at`` is not a real date.
    """
    match = _HEADER.match(head)
    if match is None:
        return None
    seq = int(match.group(1))
    received_at = match.group(2).decode("ascii")
    if seq > MAX_SEQ or not is_archiver_timestamp(received_at):
        return None
    return seq, received_at


def parse_line_header(line: bytes) -> tuple[int, str] | None:
    """Read ``seq`` and ``received_at`` from a sealed line's fixed header.

    Returns None when the line does not start with the header (see
    :func:`parse_line_prefix`) or does not end with ``}``.
    """
    if not line.endswith(b"}"):
        return None
    return parse_line_prefix(line)


def canonical_line_fault(line: bytes) -> str | None:
    """Why ``line`` is not one canonical sealed event line, or None when it is.

    A canonical line is one JSON object (UTF-8, orjson's nesting limit) whose
    bytes equal :func:`seal_line` applied to its own ``seq``, ``received_at``
    and the canonical encoding of its other fields. So a second ``seq`` or
    ``received_at``, whitespace, escapes, unsorted keys, a non-JSON or invalid
    UTF-8 tail, or an integer outside ``-2**63 .. 2**64 - 1`` (which orjson
    reads as a float) all make it differ. Never raises.
    """
    header = parse_line_header(line)
    if header is None:
        return "line lacks the seq/received_at header or the closing }"
    try:
        fields = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        return f"not one JSON object ({str(e)[:80]})"
    event = (
        {name: value for name, value in fields.items() if name not in ("seq", "received_at")}
        if isinstance(fields, dict)
        else None
    )
    if not event:
        return "no event fields after the header"
    try:
        again = seal_line(canonical_json(event), *header)
    except (TypeError, ValueError) as e:
        return f"cannot be re-encoded ({str(e)[:80]})"
    if again != line:
        return "not in canonical form (a repeated field, whitespace, escapes or key order)"
    return None
