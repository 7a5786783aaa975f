"""The verify state file: each stream's verified head, for truncation checks and
incremental runs.

After each run, ``verify --state FILE`` records for every stream that verified
(the rule is :func:`audit_archiver.verify.run.heads_to_save`: a stream with a
problem keeps its older head and the newest number it listed) the newest
verified segment (number, seal hash, object version, and the chain
head the next segment must continue), the ids of the keys that have signed the
stream, and a digest of the listing of every segment before that head. The next
run:

- fails a stream whose newest segment is older than that head (``truncated``)
  or whose head segment changed (``history_rewritten``);
- checks, from the version listing it makes anyway (no download), that every
  segment at or before the head is still there as the same original version:
  a segment deleted, replaced or overwritten there is ``history_rewritten``
  (delete markers and later versions are reported as everywhere else);
- reports a key that signs a stream for the first time as ``key_changed``,
  unless the trust file names that stream for the key;
- downloads only the segments after the head.

The file also records the time-stamp policy the heads were verified under
(``timestamps``: the sorted SHA-256 fingerprints of the ``--tsa-cert``
certificates and whether ``--require-timestamps`` was on; section 13 of
``docs/FORMAT.md``). Segments behind a saved head are not downloaded again, so
their tokens were checked only as that policy says: a run with a stronger
policy (a ``--tsa-cert`` certificate the file does not record, any when it
records none, or ``--require-timestamps`` when it was off) refuses the file
with a configuration error instead of vouching for tokens nobody checked.

The file is written atomically and fsync'd; it is evidence, keep it where the
bucket's writers cannot change it. Version 1 files (without key ids or
listing digest) are read; those checks start with the next clean run. Files
without ``timestamps`` record the weakest policy (no anchors, not required).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from audit_archiver._files import write_atomically
from audit_archiver.core.chain import ChainHead
from audit_archiver.core.encoding import is_archiver_timestamp
from audit_archiver.errors import ConfigurationError

__all__ = [
    "StreamHead",
    "TimestampRecord",
    "history_digest",
    "load_state",
    "save_state",
]

_VERSION = 2
_HEX64 = re.compile(r"\A[0-9a-f]{64}\Z")
_READABLE_VERSIONS = (1, 2)
_MAX_STATE_BYTES = 64 << 20


@dataclass(frozen=True)
class StreamHead:
    """A stream's verified head, the keys seen on it and its listing digest."""

    key: str
    version_id: str | None
    segment_seq: int
    seal_hash: str
    next_seq: int
    last_received_at: str | None
    sealed_at: str
    key_ids: tuple[str, ...] = ()
    history_digest: str | None = None
    last_modified: str | None = None
    seen_through: int | None = None
    """Set when a run found problems on this stream and kept this (older) head: the
    newest segment number that run listed. A later listing ending before it is
    ``truncated``, so a bad tail cannot be erased by deleting it."""

    def chain_head(self) -> ChainHead:
        """The chain head the next segment must continue."""
        return ChainHead(
            self.segment_seq + 1,
            self.seal_hash,
            self.next_seq,
            self.last_received_at,
            self.sealed_at,
        )


@dataclass(frozen=True)
class TimestampRecord:
    """The time-stamp policy of a verify run, as a state file records it."""

    anchors: tuple[str, ...] = ()
    """Sorted SHA-256 fingerprints (hex) of the ``--tsa-cert`` certificates (DER)."""
    required: bool = False
    """``--require-timestamps``."""

    @classmethod
    def of(cls, certificates: Iterable[bytes], *, required: bool) -> TimestampRecord:
        """The record of a run trusting ``certificates`` (DER)."""
        return cls(tuple(sorted({hashlib.sha256(c).hexdigest() for c in certificates})), required)

    def stronger_than(self, saved: TimestampRecord) -> str | None:
        """Why heads saved under ``saved`` do not vouch for tokens as this policy
        checks them, or None when they do."""
        if self.required and not saved.required:
            return "--require-timestamps is on, and it was off when the heads were saved"
        if self.anchors and not saved.anchors:
            return "no --tsa-cert was given when the heads were saved (tokens were not verified)"
        if not set(saved.anchors) <= set(self.anchors):
            return (
                "a --tsa-cert certificate the heads were verified with is not given now"
                " (tokens behind the heads may chain to it)"
            )
        return None


def history_digest(originals: Iterable[tuple[str, str, int]]) -> str:
    """Digest of a stream's listing before its head: (key, identity, size) of each
    segment's original version, in segment order. The identity is the version id
    in a bucket, and the content's SHA-256 in a folder (which has no versions).

    Computed from the version listing alone, so an incremental run can tell that
    a segment it no longer downloads was replaced, without downloading it.
    """
    digest = hashlib.sha256()
    for key, version_id, size in originals:
        digest.update(json.dumps([key, version_id, size]).encode() + b"\n")
    return digest.hexdigest()


_ADDED_IN_2 = ("history_digest", "last_modified", "seen_through")
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "key": (str,),
    "version_id": (str, type(None)),
    "segment_seq": (int,),
    "seal_hash": (str,),
    "next_seq": (int,),
    "last_received_at": (str, type(None)),
    "sealed_at": (str,),
    "history_digest": (str, type(None)),
    "last_modified": (str, type(None)),
    "seen_through": (int, type(None)),
}


def _head(fields: Any) -> StreamHead:
    if not isinstance(fields, dict):
        raise ValueError("a stream's head is not an object")
    unknown = set(fields) - set(_FIELD_TYPES) - {"key_ids"}
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}")
    for name, types in _FIELD_TYPES.items():
        value = fields.get(name)
        if name not in fields and name not in _ADDED_IN_2:
            raise ValueError(f"missing field {name!r}")
        if not isinstance(value, types) or isinstance(value, bool):
            raise ValueError(f"field {name!r} has the wrong type")
    key_ids = fields.get("key_ids", [])
    if not isinstance(key_ids, list) or not all(_HEX64.match(str(k)) for k in key_ids):
        raise ValueError("key_ids must be a list of key ids (64 hex digits)")
    if not _HEX64.match(fields["seal_hash"]):
        raise ValueError("seal_hash must be 64 hex digits")
    for name in ("sealed_at", "last_received_at"):
        if fields[name] is not None and not is_archiver_timestamp(fields[name]):
            raise ValueError(f"{name} is not an archiver timestamp")
    if fields["segment_seq"] < 0 or fields["next_seq"] < 0:
        raise ValueError("segment_seq and next_seq must not be negative")
    seen = fields.get("seen_through")
    if seen is not None and seen < fields["segment_seq"]:
        raise ValueError("seen_through must not be below segment_seq")
    return StreamHead(
        key=fields["key"],
        version_id=fields["version_id"],
        segment_seq=fields["segment_seq"],
        seal_hash=fields["seal_hash"],
        next_seq=fields["next_seq"],
        last_received_at=fields["last_received_at"],
        sealed_at=fields["sealed_at"],
        key_ids=tuple(key_ids),
        history_digest=fields.get("history_digest"),
        last_modified=fields.get("last_modified"),
        seen_through=seen,
    )


def load_state(
    path: Path, source: str, *, timestamps: TimestampRecord | None = None
) -> dict[str, StreamHead]:
    """Read a state file; a missing file is an empty state.

    With ``timestamps`` (this run's policy), a file whose heads were saved under
    a weaker time-stamp policy is refused (see the module docstring).

    Raises:
        ConfigurationError: unreadable, malformed, recorded for another archive,
            or under a weaker time-stamp policy.
    """
    try:
        with open(path, "rb") as handle:
            raw = handle.read(_MAX_STATE_BYTES + 1)
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise ConfigurationError(f"cannot read state file {path}: {e.strerror}") from e
    try:
        if len(raw) > _MAX_STATE_BYTES:
            raise ValueError(f"larger than {_MAX_STATE_BYTES} bytes")
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if data.get("version") not in _READABLE_VERSIONS:
            raise ValueError(f"unsupported state version {data.get('version')!r}")
        if data.get("source") != source:
            raise ConfigurationError(
                f"state file {path} records {data.get('source')!r}, not {source!r}:"
                " use one state file per archive"
            )
        streams = data.get("streams")
        if not isinstance(streams, dict):
            raise ValueError("'streams' is not an object")
        heads = {str(name): _head(head) for name, head in streams.items()}
        saved = _timestamp_record(data.get("timestamps"))
    except ConfigurationError:
        raise
    except (ValueError, TypeError, RecursionError) as e:
        raise ConfigurationError(f"cannot read state file {path}: {e}") from e
    why = timestamps.stronger_than(saved) if timestamps is not None and heads else None
    if why is not None:
        raise ConfigurationError(
            f"state file {path} holds heads verified under a weaker time-stamp policy: {why}."
            " Segments behind those heads are not downloaded again, so their tokens would"
            " pass unchecked. Run once with a new --state FILE (a full check from segment 0"
            " under this policy) and use that file from then on; keep the old one as"
            " evidence of the heads it recorded"
        )
    return heads


def _timestamp_record(fields: Any) -> TimestampRecord:
    """The ``timestamps`` object of a state file (absent: the weakest policy)."""
    if fields is None:
        return TimestampRecord()
    if not isinstance(fields, dict) or set(fields) != {"tsa_cert_sha256", "require_timestamps"}:
        raise ValueError("'timestamps' must have exactly tsa_cert_sha256 and require_timestamps")
    anchors, required = fields["tsa_cert_sha256"], fields["require_timestamps"]
    if not isinstance(anchors, list) or not all(
        isinstance(a, str) and _HEX64.match(a) for a in anchors
    ):
        raise ValueError("tsa_cert_sha256 must be a list of SHA-256 fingerprints (64 hex digits)")
    if not isinstance(required, bool):
        raise ValueError("require_timestamps must be true or false")
    return TimestampRecord(tuple(sorted(set(anchors))), required)


def save_state(
    path: Path,
    source: str,
    heads: Mapping[str, StreamHead],
    *,
    timestamps: TimestampRecord | None = None,
) -> None:
    """Write the state file atomically (fsync'd: it is evidence).

    ``timestamps`` is the time-stamp policy the heads were verified under
    (default: the weakest: no
    anchors, not required) makes a later run with ``--tsa-cert`` refuse the file.

    Raises:
        ConfigurationError: the file cannot be written.
    """
    streams = {}
    for name, head in sorted(heads.items()):
        fields = asdict(head)
        fields["key_ids"] = sorted(head.key_ids)
        streams[name] = fields
    record = timestamps or TimestampRecord()
    payload = {
        "version": _VERSION,
        "source": source,
        "streams": streams,
        "timestamps": {
            "tsa_cert_sha256": list(record.anchors),
            "require_timestamps": record.required,
        },
    }
    try:
        write_atomically(path, (json.dumps(payload, indent=1) + "\n").encode())
    except OSError as e:
        raise ConfigurationError(f"cannot write state file {path}: {e.strerror}") from e
