"""Event sources besides HTTP: standard input and a tailed NDJSON file.

Both read chunks of bytes, cut them into lines, validate each line and submit
the valid ones in one group (invalid lines are counted and logged by line
number, never by content: a pipe has nobody to answer). When the spool is full
or the agent is not ready they wait and retry, so the producer is slowed down
(backpressure) and nothing is dropped.

The tail source remembers its position (inode and offset) in the spool after
each committed chunk, follows the file across rotation (a new inode: the old
file is read to its end first) and truncation, and after a restart resumes at
the saved offset. The position file is written atomically and fsync'd. A
crash between a commit and the position update re-reads that one chunk:
delivery from a tailed file is at least once.
"""

from __future__ import annotations

import abc
import json
import logging
import os
import sys
import threading
from pathlib import Path
from typing import BinaryIO

from audit_archiver._files import write_atomically
from audit_archiver.agent.pipeline import Agent
from audit_archiver.core.event import encode_event, parse_event_line
from audit_archiver.core.line import EncodedEvents
from audit_archiver.errors import EventValidationError, NotReadyError, SpoolFullError

__all__ = ["StdinSource", "TailSource"]

log = logging.getLogger(__name__)
_CHUNK = 1 << 20
_RETRY_SECONDS = 0.5


class _LineSource(abc.ABC):
    """Shared line splitting, validation and submission with backpressure."""

    name = "source"

    def __init__(self, agent: Agent) -> None:
        self._agent = agent
        self._remainder = b""
        self._line_number = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run_guarded, name=self.name, daemon=True)

    def start(self) -> None:
        """Start reading on a thread of its own."""
        self._thread.start()

    def stop(self) -> None:
        """Stop reading (the current chunk is finished first)."""
        self._stop.set()

    def _run_guarded(self) -> None:
        try:
            self._run()
        except Exception:
            log.exception(f"{self.name} failed; the agent stops")
            self._agent.request_stop()

    @abc.abstractmethod
    def _run(self) -> None:
        """Read until the end of input or :meth:`stop`."""

    def _feed(self, data: bytes, *, final: bool = False) -> bool:
        """Split ``data`` into lines and submit them; False if the agent stopped."""
        lines = (self._remainder + data).split(b"\n")
        self._remainder = b"" if final else lines.pop()
        events: list[bytes] = []
        for raw in lines:
            self._line_number += 1
            if not raw.strip():
                continue
            try:
                events.append(encode_event(parse_event_line(raw.rstrip(b"\r"))))
            except EventValidationError as e:
                self._agent.metrics.events_rejected.labels("invalid").inc()
                log.warning(
                    f"{self.name}: invalid event skipped",
                    extra={"line": self._line_number, "field": e.field, "reason": e.reason},
                )
        return self._submit(EncodedEvents.of(events))

    def _submit(self, events: EncodedEvents) -> bool:
        while events.event_count:
            if self._agent.stopped.is_set() and self._agent.readiness() is not None:
                return False
            try:
                self._agent.submit(events).result()
                return True
            except (SpoolFullError, NotReadyError) as e:
                log.debug(f"{self.name}: waiting", extra={"reason": str(e)})
                if self._stop.wait(_RETRY_SECONDS):
                    return False
        return True


class StdinSource(_LineSource):
    """Reads events from standard input; at end of input the agent shuts down."""

    name = "stdin"

    def __init__(self, agent: Agent, stream: BinaryIO | None = None) -> None:
        super().__init__(agent)
        self._stream = stream or sys.stdin.buffer

    def _run(self) -> None:
        descriptor = self._stream.fileno()
        while not self._stop.is_set():
            data = os.read(descriptor, _CHUNK)
            if not data:
                self._feed(b"", final=True)
                log.info("end of standard input; shutting down")
                self._agent.request_stop()
                return
            if not self._feed(data):
                return


class TailSource(_LineSource):
    """Follows an NDJSON file like ``tail -F``, surviving rotation and truncation."""

    name = "tail"

    def __init__(
        self, agent: Agent, path: Path, state_path: Path, poll_seconds: float = 0.2
    ) -> None:
        super().__init__(agent)
        self._path = path
        self._state_path = state_path
        self._poll = poll_seconds
        self._handle: BinaryIO | None = None
        self._inode = 0

    def _load_position(self) -> tuple[int, int]:
        try:
            saved = json.loads(self._state_path.read_text())
            return int(saved["inode"]), int(saved["offset"])
        except (OSError, ValueError, KeyError):
            return 0, 0

    def _save_position(self) -> None:
        assert self._handle is not None
        offset = self._handle.tell() - len(self._remainder)
        position = {"path": str(self._path), "inode": self._inode, "offset": offset}
        write_atomically(self._state_path, json.dumps(position).encode())

    def _open(self, resume: bool) -> bool:
        try:
            handle = open(self._path, "rb")  # noqa: SIM115
        except FileNotFoundError:
            return False
        self._inode = os.fstat(handle.fileno()).st_ino
        if resume:
            saved_inode, offset = self._load_position()
            if saved_inode == self._inode:
                handle.seek(offset)
        self._handle = handle
        self._remainder = b""
        return True

    def _run(self) -> None:
        resume = True
        while not self._stop.is_set():
            if self._handle is None and not self._open(resume):
                self._stop.wait(self._poll)
                continue
            resume = False
            assert self._handle is not None
            data = self._handle.read(_CHUNK)
            if data:
                if not self._feed(data):
                    return
                self._save_position()
                continue
            if self._rotated_or_truncated():
                continue
            self._stop.wait(self._poll)

    def _rotated_or_truncated(self) -> bool:
        assert self._handle is not None
        try:
            current = os.stat(self._path)
        except FileNotFoundError:
            return False
        if current.st_ino != self._inode or current.st_size < self._handle.tell():
            log.info("tailed file rotated or truncated; reopening", extra={"path": str(self._path)})
            self._feed(b"", final=True)
            self._handle.close()
            self._handle = None
            return True
        return False
