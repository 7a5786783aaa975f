"""Event sources besides HTTP: standard input and a tailed NDJSON file.

Both read chunks of bytes, cut them into lines, validate each line and submit
the valid ones in one group. A line holds an event, or with
``--tail-format``/``--stdin-format`` a producer's record (a Kubernetes audit
``Event`` as the API server's log backend writes it, a CloudTrail record, a
GCP ``LogEntry``), mapped like the matching HTTP endpoint's items
(:func:`~audit_archiver.core.formats.encode_format_body`, one line at a time;
a line that is a whole batch, such as ``{"Records": [...]}``, gives one event
per item). The dedupe window is the HTTP endpoints' only: a file is not resent.

A source never stops on a line: a bad line (not
UTF-8, not JSON, nested deeper than the event depth limit, an invalid event, or
longer than ``--max-line-bytes``) is counted in
``audit_archiver_events_rejected_total{source,reason}``, logged as one JSON line
that names it by number, byte offset and length (never by content: a pipe has
nobody to answer), and skipped. A line over the limit is never held whole:
once it passes the limit its bytes are dropped until the next newline, so a
source holds at most one chunk plus ``--max-line-bytes`` and reads in linear
time whatever the input. When the spool is full or the agent is not ready the
source waits and retries, so the producer is slowed down (backpressure) and
nothing valid is dropped.

The tail source remembers its position in the spool after each committed
chunk, skipped lines included (a bad line is never read again): the file's
device, inode and a fingerprint (SHA-256 of its first bytes, up to 4 KiB, as
long as they were at the save), and the offset. After a restart it resumes at
the saved offset only in the same file: same device and inode, and the same
first bytes over the saved length; any other file (a deleted file's inode
reused, a file rewritten in place) is read from its start. A position file
without device and fingerprint (written by an older version) is trusted on the
inode alone. The position file is written atomically and fsync'd. A crash
between a commit and the position update re-reads that one chunk: delivery
from a tailed file is at least once.

Rotation (another file at the path): the old file is read on until it has had
no new bytes for :data:`ROTATION_GRACE_SECONDS` (a writer told to reopen its log
by a signal may append to the renamed file for a while), then the new file is
read from its start. Until then the position names the old file; a restart in
between finds it again in the same directory by inode and fingerprint (a
rotation that renames within the directory, such as ``app.log.1``), drains it
from the saved offset, then goes on with the new file. A rotated file moved
elsewhere or compressed by then is not found: the rest of it is not read.
Truncation (the same file, shorter than the offset) restarts at its start. An
I/O error (reading the file, saving the position) is retried with a capped
backoff from the saved position, and shown in :attr:`alert`; a missing file is
waited for (``tail -F``), also shown there.

End of standard input is a normal end: the agent drains and exits 0. A read
error on standard input cannot be retried (the bytes are gone): the source
records a :class:`~audit_archiver.errors.SourceError` in :attr:`error` and
asks the agent to stop, and the process exits with its code (non-zero).
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from audit_archiver._files import write_atomically
from audit_archiver.agent.pipeline import Agent
from audit_archiver.core.event import encode_event, parse_event_line
from audit_archiver.core.formats import DEFAULT_OPTIONS, FormatOptions, encode_format_body
from audit_archiver.core.line import EncodedEvents
from audit_archiver.errors import (
    EventValidationError,
    NotReadyError,
    SourceError,
    SpoolFullError,
)

__all__ = ["ROTATION_GRACE_SECONDS", "StdinSource", "TailSource"]

log = logging.getLogger(__name__)
_CHUNK = 1 << 20
_RETRY_SECONDS = 0.5
_MAX_BACKOFF_SECONDS = 30.0
_PREFIX_BYTES = 4096  # the tailed file's fingerprint: SHA-256 of up to this many first bytes
ROTATION_GRACE_SECONDS = 5.0  # a rotated file is read on until idle this long


class _LineSource(abc.ABC):
    """Shared line splitting, validation and submission with backpressure."""

    name = "source"

    def __init__(
        self,
        agent: Agent,
        max_line_bytes: int | None = None,
        *,
        format_name: str = "events",
        options: FormatOptions = DEFAULT_OPTIONS,
    ) -> None:
        self._agent = agent
        self._format = format_name
        self._options = options
        self._max_line = agent.settings.max_line_bytes if max_line_bytes is None else max_line_bytes
        self._partial = bytearray()  # the current line so far (at most _max_line bytes)
        self._dropping = 0  # bytes of an over-long current line dropped so far
        self._line_number = 0
        self._line_offset = 0  # where the current line starts in the input
        self._error: SourceError | None = None
        self._alert: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run_guarded, name=self.name, daemon=True)

    @property
    def error(self) -> SourceError | None:
        """Why this source stopped the agent (None: it did not)."""
        return self._error

    @property
    def alert(self) -> str | None:
        """A trouble being retried (for ``/readyz`` alerts), or None."""
        return self._alert

    def start(self) -> None:
        """Start reading on a thread of its own."""
        self._thread.start()

    def stop(self) -> None:
        """Stop reading (the current chunk is finished first)."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the reading thread to end."""
        self._thread.join(timeout)

    def _run_guarded(self) -> None:
        try:
            self._run()
        except Exception as e:
            self._fail(SourceError(f"{self.name} failed: {e}"), e)

    def _fail(self, error: SourceError, cause: BaseException) -> None:
        error.__cause__ = cause
        self._error = error
        log.error(
            f"{self.name} failed; the agent stops",
            extra={"source": self.name, "error": str(error)},
            exc_info=cause,
        )
        self._agent.request_stop()

    @abc.abstractmethod
    def _run(self) -> None:
        """Read until the end of input or :meth:`stop`."""

    @property
    def _pending(self) -> int:
        """Bytes of the current line read so far (held or dropped)."""
        return self._dropping or len(self._partial)

    def _feed(self, data: bytes, *, final: bool = False) -> bool:
        """Cut ``data`` into lines and submit the valid ones; False if the agent stopped.

        ``final``: the input ends here, so a last line without newline is complete.
        """
        joined = bytearray()
        count = 0
        start = 0
        view = memoryview(data)
        while (end := data.find(b"\n", start)) >= 0:
            count += self._end_line(view[start:end], joined)
            start = end + 1
        rest = len(data) - start
        if self._dropping:
            self._dropping += rest
        elif len(self._partial) + rest > self._max_line:
            self._dropping = len(self._partial) + rest
            self._partial = bytearray()
        else:
            self._partial += view[start:]
        if final and self._pending:
            count += self._end_line(view[:0], joined, newline=False)
        return self._submit(EncodedEvents(count, bytes(joined)))

    def _end_line(self, tail: memoryview, joined: bytearray, *, newline: bool = True) -> int:
        """Finish the current line with ``tail``; add its events to ``joined`` if
        valid (return how many)."""
        number = self._line_number = self._line_number + 1
        offset = self._line_offset
        length = self._pending + len(tail)
        self._line_offset += length + newline
        if self._dropping or length > self._max_line:  # the one length check, every format
            self._dropping = 0
            self._partial = bytearray()
            self._reject(number, offset, length, "too_large", f"longer than {self._max_line} bytes")
            return 0
        if self._partial:
            self._partial += tail
            raw = bytes(self._partial)
            self._partial = bytearray()
        else:
            raw = bytes(tail)
        if not raw.strip():
            return 0
        try:
            if self._format != "events":
                events = encode_format_body(self._format, raw, None, self._options).events
                joined += events.data
                return events.event_count
            joined += encode_event(parse_event_line(raw.rstrip(b"\r")))
        except EventValidationError as e:
            self._reject(number, offset, length, e.kind, e.reason, e.field)
            return 0
        joined += b"\n"
        return 1

    def _reject(  # noqa: PLR0917  # one log line's fields
        self,
        number: int,
        offset: int,
        length: int,
        reason: str,
        detail: str,
        field: str | None = None,
    ) -> None:
        self._agent.metrics.events_rejected.labels(self.name, reason).inc()
        log.warning(
            f"{self.name}: invalid event skipped",
            extra={
                "source": self.name,
                "reason": reason,
                "line": number,
                "offset": offset,
                "length": length,
                "field": field,
                "detail": detail,
            },
        )

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

    def __init__(
        self,
        agent: Agent,
        stream: BinaryIO | None = None,
        max_line_bytes: int | None = None,
        *,
        format_name: str = "events",
        options: FormatOptions = DEFAULT_OPTIONS,
    ) -> None:
        super().__init__(agent, max_line_bytes, format_name=format_name, options=options)
        self._stream = stream or sys.stdin.buffer

    def _run(self) -> None:
        descriptor = self._stream.fileno()
        while not self._stop.is_set():
            try:
                data = os.read(descriptor, _CHUNK)
            except OSError as e:
                self._feed(b"", final=True)
                self._fail(SourceError(f"cannot read standard input: {e.strerror}"), e)
                return
            if not data:
                self._feed(b"", final=True)
                log.info("end of standard input; shutting down")
                self._agent.request_stop()
                return
            if not self._feed(data):
                return


@dataclasses.dataclass(frozen=True)
class _Position:
    """What the position file says: which file (device, inode and a fingerprint
    of its first bytes) and how far it was committed."""

    inode: int
    offset: int
    device: int | None = None  # None: an old position file (inode and offset only)
    prefix_length: int = 0
    prefix_sha256: str | None = None

    @property
    def fingerprinted(self) -> bool:
        return self.device is not None and self.prefix_sha256 is not None

    def names(self, descriptor: int) -> bool:
        """True when the open file ``descriptor`` is the file this position is in."""
        status = os.fstat(descriptor)
        if status.st_ino != self.inode:
            return False
        if not self.fingerprinted:
            return True  # an old position file: trusted on the inode alone
        if status.st_dev != self.device:
            return False
        prefix = os.pread(descriptor, self.prefix_length, 0)
        return (
            len(prefix) == self.prefix_length
            and hashlib.sha256(prefix).hexdigest() == self.prefix_sha256
        )


class TailSource(_LineSource):
    """Follows an NDJSON file like ``tail -F``, surviving rotation, truncation and I/O errors."""

    name = "tail"

    def __init__(
        self,
        agent: Agent,
        path: Path,
        state_path: Path,
        poll_seconds: float = 0.2,
        max_line_bytes: int | None = None,
        *,
        format_name: str = "events",
        options: FormatOptions = DEFAULT_OPTIONS,
        rotation_grace: float = ROTATION_GRACE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(agent, max_line_bytes, format_name=format_name, options=options)
        self._path = path
        self._state_path = state_path
        self._poll = poll_seconds
        self._grace = rotation_grace
        self._clock = clock
        self._handle: BinaryIO | None = None
        self._identity = (0, 0)  # (device, inode) of the open file
        self._prefix = b""  # its first bytes, up to _PREFIX_BYTES, as of the last save
        self._rotated = False  # the path names another file: the open one is being drained
        self._idle_since: float | None = None  # when the drained file was first seen idle

    def _load_position(self) -> _Position | None:
        try:
            saved = json.loads(self._state_path.read_text())
            position = _Position(int(saved["inode"]), int(saved["offset"]))
            if "device" in saved and "prefix_sha256" in saved:
                position = dataclasses.replace(
                    position,
                    device=int(saved["device"]),
                    prefix_length=int(saved["prefix_length"]),
                    prefix_sha256=str(saved["prefix_sha256"]),
                )
            if str(saved.get("path", self._path)) != str(self._path):
                return None  # another file's position (--tail changed)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        return position

    def _save_position(self) -> None:
        assert self._handle is not None
        offset = self._handle.tell() - self._pending
        if len(self._prefix) < _PREFIX_BYTES:  # complete once full: appends do not change it
            self._prefix = os.pread(self._handle.fileno(), _PREFIX_BYTES, 0)
        device, inode = self._identity
        position = {
            "path": str(self._path),
            "device": device,
            "inode": inode,
            "offset": offset,
            "prefix_length": len(self._prefix),
            "prefix_sha256": hashlib.sha256(self._prefix).hexdigest(),
        }
        write_atomically(self._state_path, json.dumps(position).encode())

    def _open(self, resume: bool) -> bool:
        saved = self._load_position() if resume else None
        try:
            handle: BinaryIO | None = open(self._path, "rb")  # noqa: SIM115
        except FileNotFoundError:
            handle = None
        rotated = False
        try:
            if saved is not None and handle is not None and saved.names(handle.fileno()):
                handle.seek(saved.offset)
            elif saved is not None and (moved := self._find_moved(saved)) is not None:
                # A restart while a rotated file was being drained: drain it on first.
                if handle is not None:
                    handle.close()
                handle, rotated = moved, True
            if handle is None:
                self._set_alert(f"tailed file {self._path} does not exist; waiting for it")
                return False
            status = os.fstat(handle.fileno())
            self._line_offset = handle.tell()
        except OSError:
            if handle is not None:
                handle.close()
            raise
        self._handle = handle
        self._identity = (status.st_dev, status.st_ino)
        self._prefix = b""
        self._rotated = rotated
        self._idle_since = None
        self._partial = bytearray()
        self._dropping = 0
        self._set_alert(None)
        return True

    def _find_moved(self, saved: _Position) -> BinaryIO | None:
        """The saved file under another name in the same directory (``app.log.1``
        after a rotation), opened at the saved offset; None if not found. Only a
        fingerprinted position is looked for: an inode alone names nothing."""
        if not saved.fingerprinted:
            return None
        try:
            with os.scandir(self._path.parent) as entries:
                candidates = [
                    entry.path
                    for entry in entries
                    if entry.inode() == saved.inode and entry.is_file(follow_symlinks=False)
                ]
        except OSError:
            return None  # not searchable: the new file is read from its start
        for candidate in candidates:
            try:
                handle = open(candidate, "rb")  # noqa: SIM115
            except OSError:
                continue
            try:
                if saved.names(handle.fileno()):
                    handle.seek(saved.offset)
                    log.info(
                        "resuming the rotated tailed file first",
                        extra={"path": str(self._path), "rotated": candidate},
                    )
                    return handle
            except OSError:
                pass
            handle.close()
        return None

    def _set_alert(self, alert: str | None) -> None:
        if alert != self._alert:
            if alert is not None:
                log.warning(f"{self.name}: {alert}", extra={"source": self.name})
            self._alert = alert

    def _run(self) -> None:
        try:
            self._follow()
        finally:
            self._close()

    def _follow(self) -> None:
        resume = True
        backoff = _RETRY_SECONDS
        while not self._stop.is_set():
            try:
                if not self._step(resume):
                    return
                resume = False
                backoff = _RETRY_SECONDS
            except OSError as e:
                # Reopen and resume from the saved position: the chunk in flight is
                # read again (at least once), a skipped line is not (its position was saved).
                self._close()
                resume = True
                self._set_alert(f"I/O error on {self._path}: {e.strerror or e}; retrying")
                self._stop.wait(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)

    def _step(self, resume: bool) -> bool:
        """Read one chunk (or wait for one); False when the agent stopped."""
        if self._handle is None and not self._open(resume):
            self._stop.wait(self._poll)
            return True
        assert self._handle is not None
        data = self._handle.read(_CHUNK)
        if data:
            self._idle_since = None
            if not self._feed(data):
                return False
            self._save_position()
            return True
        if not self._switch_file():
            self._stop.wait(self._poll)
        return True

    def _close(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
            self._handle = None

    def _switch_file(self) -> bool:
        """After an empty read: close the open file if the path is to be opened
        anew (truncated, or rotated and the old file drained); True if closed."""
        assert self._handle is not None
        if not self._rotated:
            try:
                current = os.stat(self._path)
            except FileNotFoundError:
                self._set_alert(f"tailed file {self._path} is gone; waiting for a new one")
                return False
            if (current.st_dev, current.st_ino) != self._identity:
                log.info(
                    "tailed file rotated; reading the old file until it is idle",
                    extra={"path": str(self._path), "grace_seconds": self._grace},
                )
                self._rotated = True
            elif current.st_size < self._handle.tell():
                log.info("tailed file truncated; reopening", extra={"path": str(self._path)})
                return self._close_current()
            else:
                return False
        # The writer may still append to the rotated file (logrotate's `create`,
        # then a signal the application handles later): it is read on until it
        # has had no new bytes for the grace period.
        now = self._clock()
        if self._idle_since is None:
            self._idle_since = now
            return False
        if now - self._idle_since < self._grace:
            return False
        log.info(
            "rotated tailed file drained; opening the new one", extra={"path": str(self._path)}
        )
        return self._close_current()

    def _close_current(self) -> bool:
        """End the open file (a last line without newline is complete) and close it."""
        self._feed(b"", final=True)
        self._close()
        return True
