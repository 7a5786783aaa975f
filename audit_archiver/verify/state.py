"""The verify state file: each stream's verified head, for truncation checks and
incremental runs.

After a run with no problem, ``verify --state FILE`` records for every stream
the newest verified segment (number, seal hash, object version, and what the
next segment must link to). The next run fails a stream whose newest segment is
older than that head (a deleted tail) or whose head segment changed (a
rewritten history), and only downloads segments newer than the head.
The file is written atomically; it is evidence, keep it where the bucket's
writers cannot change it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from audit_archiver.errors import ConfigurationError
from audit_archiver.verify.chain import ChainAnchor

__all__ = ["StreamHead", "load_state", "save_state"]

_VERSION = 1


@dataclass(frozen=True)
class StreamHead:
    """A stream's verified head."""

    key: str
    version_id: str | None
    segment_seq: int
    seal_hash: str
    next_seq: int
    last_received_at: str | None
    sealed_at: str

    def anchor(self) -> ChainAnchor:
        """The chain anchor the next segment must link to."""
        return ChainAnchor(
            self.segment_seq, self.seal_hash, self.next_seq, self.last_received_at, self.sealed_at
        )


def load_state(path: Path, source: str) -> dict[str, StreamHead]:
    """Read a state file; a missing file is an empty state.

    Raises:
        ConfigurationError: unreadable, malformed, or recorded for another archive.
    """
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if data.get("version") != _VERSION:
            raise ValueError(f"unsupported state version {data.get('version')!r}")
        if data.get("source") != source:
            raise ConfigurationError(
                f"state file {path} records {data.get('source')!r}, not {source!r}"
            )
        return {name: StreamHead(**head) for name, head in data["streams"].items()}
    except ConfigurationError:
        raise
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        raise ConfigurationError(f"cannot read state file {path}: {e}") from e


def save_state(path: Path, source: str, heads: dict[str, StreamHead]) -> None:
    """Write the state file atomically.

    Raises:
        ConfigurationError: the file cannot be written.
    """
    payload = {
        "version": _VERSION,
        "source": source,
        "streams": {name: asdict(head) for name, head in sorted(heads.items())},
    }
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.write_text(json.dumps(payload, indent=1) + "\n")
        os.replace(temporary, path)
    except OSError as e:
        raise ConfigurationError(f"cannot write state file {path}: {e.strerror}") from e
