"""Structured JSON log lines on stderr.

Each record is one JSON object: ``ts``, ``level``, ``logger``, ``msg`` and any
``extra`` fields the call site passed. Event contents are never logged at info
level or above; call sites log counts, seq numbers and keys.

Lines a client or the network can repeat at will (refused connections, bad
requests, asyncio's and aiohttp's own warnings) are rate-limited: a record
logged with ``extra={"rate_limit": True}``, or from the ``asyncio`` or
``aiohttp`` loggers, passes at most once per :data:`RATE_LIMIT_SECONDS` for its
logger and message; the next one that passes carries ``suppressed``, the number
dropped in between. A flood of connections cannot fill the disk with log lines.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from datetime import UTC, datetime

__all__ = ["RATE_LIMIT_SECONDS", "RateLimitFilter", "configure_logging"]

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "rate_limit"}
RATE_LIMIT_SECONDS = 10.0
_NOISY_LOGGERS = ("asyncio", "aiohttp")
_KEY_CHARS = 60
_MAX_KEYS = 1000


class RateLimitFilter(logging.Filter):
    """Passes one record per (logger, message template) every ``interval`` seconds.

    Applies to records that carry ``rate_limit=True`` and to every record of
    ``loggers`` (and their children); others always pass.
    """

    def __init__(
        self, interval: float = RATE_LIMIT_SECONDS, loggers: tuple[str, ...] = _NOISY_LOGGERS
    ) -> None:
        super().__init__()
        self._interval = interval
        self._loggers = loggers
        self._lock = threading.Lock()
        self._state: dict[tuple[str, str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """Return whether ``record`` is logged (adding ``suppressed`` when some were not)."""
        limited = getattr(record, "rate_limit", False) or any(
            record.name == name or record.name.startswith(name + ".") for name in self._loggers
        )
        if not limited:
            return True
        # the template's first line: asyncio builds messages holding object ids
        # ... and its reason, so that one flood (evictions) does not hide another kind
        # (tls, header_timeout) logged by the same line
        reason = str(getattr(record, "reason", ""))[:_KEY_CHARS]
        key = (record.name, str(record.msg).partition("\n")[0][:_KEY_CHARS], reason)
        now = time.monotonic()
        with self._lock:
            if len(self._state) > _MAX_KEYS:  # bounded whatever the messages
                self._state.clear()
            last, dropped = self._state.get(key, (float("-inf"), 0))
            if now - last < self._interval:
                self._state[key] = (last, dropped + 1)
                return False
            self._state[key] = (now, 0)
        if dropped:
            record.suppressed = dropped
        return True


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as a JSON object on one line."""
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "info") -> None:
    """Send the package's logs to stderr as JSON lines at ``level``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RateLimitFilter())
    root = logging.getLogger("audit_archiver")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    for name in _NOISY_LOGGERS:  # JSON too, warnings only, rate-limited by the filter
        noisy = logging.getLogger(name)
        noisy.handlers[:] = [handler]
        noisy.setLevel(logging.WARNING)
        noisy.propagate = False
