"""Producers' native audit formats, mapped to archived events (pure: bytes in, events out).

One entry point for the agent::

    from audit_archiver.core.formats import encode_format_body

    batch = encode_format_body("k8s-audit", body, "application/json")
    batch.events          # EncodedEvents, as core.event.encode_request_body returns
    batch.dedupe_keys     # one producer id (or None) per event
    batch.response        # bytes to answer with (OTLP), or None

Formats (:data:`FORMATS`): ``events`` (the archiver's own event model,
:mod:`audit_archiver.core.event`), ``k8s-audit``, ``cloudtrail``,
``gcp-audit`` and ``otlp``. Each native item becomes one archived event::

    {"actor": ..., "action": ..., "resource": ..., "time": RFC 3339 (when typed),
     "source_ip": an address (when typed), "outcome": ..., "format": name,
     "record": the producer's record, whole}

Inputs and outputs are picklable (the agent runs this in worker processes).
Nothing but :class:`~audit_archiver.errors.EventValidationError` is raised.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from audit_archiver.core.event import encode_request_body
from audit_archiver.core.formats import cloudtrail, gcp_audit, k8s_audit, otlp
from audit_archiver.core.formats._common import OUTPUT_LIMIT, EncodedBatch, FormatOptions

__all__ = [
    "DEFAULT_OPTIONS",
    "FORMATS",
    "EncodedBatch",
    "Format",
    "FormatOptions",
    "encode_format_body",
]

DEFAULT_OPTIONS = FormatOptions()


class Format(NamedTuple):
    """One accepted body format.

    Attributes:
        name: as in ``--tail-format`` and the archived event's ``format``.
        encode: ``(body, content_type, options) -> EncodedBatch``.
        dedupe: whether its items carry a producer id (:attr:`EncodedBatch.dedupe_keys`).
    """

    name: str
    encode: Callable[[bytes, str | None, FormatOptions], EncodedBatch]
    dedupe: bool


def _events(body: bytes, _content_type: str | None, _options: FormatOptions) -> EncodedBatch:
    events = encode_request_body(body, OUTPUT_LIMIT.get())
    return EncodedBatch(events, (None,) * events.event_count)


FORMATS: dict[str, Format] = {
    "events": Format("events", _events, dedupe=False),
    k8s_audit.FORMAT_NAME: Format(
        k8s_audit.FORMAT_NAME, lambda body, _c, _o: k8s_audit.encode_body(body), dedupe=True
    ),
    cloudtrail.FORMAT_NAME: Format(
        cloudtrail.FORMAT_NAME, lambda body, _c, _o: cloudtrail.encode_body(body), dedupe=True
    ),
    gcp_audit.FORMAT_NAME: Format(
        gcp_audit.FORMAT_NAME, lambda body, _c, _o: gcp_audit.encode_body(body), dedupe=True
    ),
    otlp.FORMAT_NAME: Format(otlp.FORMAT_NAME, otlp.encode_body, dedupe=False),
}


def encode_format_body(
    format_name: str,
    body: bytes,
    content_type: str | None,
    options: FormatOptions = DEFAULT_OPTIONS,
    max_output: int | None = None,
) -> EncodedBatch:
    """Parse, map and canonically encode every item of a request body.

    Args:
        format_name: a key of :data:`FORMATS`.
        body: the request body, already decompressed.
        content_type: the request's ``Content-Type`` (only OTLP reads it).
        options: field choices for the formats that have them.
        max_output: the most encoded bytes the body may produce (None: no
            cap); checked as the events are encoded, item by item.

    Raises:
        KeyError: ``format_name`` is not a known format (a programming error).
        EventValidationError: the body or one of its items is bad (``line``
            names the item); all-or-nothing. Over ``max_output``: kind
            ``too_large`` and no ``line``.
    """
    token = OUTPUT_LIMIT.set(max_output)
    try:
        return FORMATS[format_name].encode(body, content_type, options)
    finally:
        OUTPUT_LIMIT.reset(token)
