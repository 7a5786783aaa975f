"""One error hierarchy for audit-archiver, split by who is at fault.

- :class:`IntegrityError`: the evidence is bad (hash, Merkle root, chain,
  signature, malformed segment). Carries the object key and what was expected
  and found. Exit code 1.
- :class:`StorageError`: S3 or the local disk failed or refused. Exit code 2.
- :class:`InputError`: a client sent bad events. Exit code 2 on the CLI,
  HTTP 400 in the agent.
- :class:`ConfigurationError`: bad flags, files, keys or bucket settings.
  Exit code 2.

Foreign exceptions are wrapped at the boundary with ``raise ... from e``; the
CLI turns this hierarchy into one message line and an exit code in one place.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuditArchiverError",
    "AuthenticationError",
    "BackpressureError",
    "ConfigurationError",
    "EventValidationError",
    "InputError",
    "IntegrityError",
    "KeyFileError",
    "MalformedSegmentError",
    "NotReadyError",
    "ObjectExistsError",
    "ObjectNotFoundError",
    "ObjectTooLargeError",
    "ProofError",
    "ReportInputError",
    "SignerError",
    "SignerPermanentError",
    "SignerUnavailableError",
    "SourceError",
    "SpoolFullError",
    "StorageError",
    "StoragePermanentError",
    "StorageUnavailableError",
    "StreamForkedError",
    "TimestampError",
    "TransportChecksumError",
]


class AuditArchiverError(Exception):
    """Base of every error this package raises on purpose."""

    exit_code = 2


class IntegrityError(AuditArchiverError):
    """The evidence does not check out.

    Attributes:
        key: object key (or file path) of the evidence, if known.
        expected: what a correct archive would hold, if known.
        found: what was actually found, if known.
    """

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        expected: str | None = None,
        found: str | None = None,
    ) -> None:
        super().__init__(message)
        self.key = key
        self.expected = expected
        self.found = found


class MalformedSegmentError(IntegrityError):
    """The bytes are not a well-formed v1 segment (truncated, garbage, hostile)."""


class StreamForkedError(IntegrityError):
    """Another writer stored a different segment under this stream's next key."""


class TimestampError(IntegrityError):
    """An RFC 3161 time-stamp token, or a TSA's answer, does not check out.

    ``reason`` is a short stable label (``invalid_response``, ``not_granted``,
    ``wrong_imprint``, ``wrong_nonce``, ``too_large``, ``invalid_token``,
    ``untrusted``, ``too_early``): the agent counts failures by it.
    """

    def __init__(self, message: str, *, reason: str, key: str | None = None) -> None:
        super().__init__(message, key=key)
        self.reason = reason


class ProofError(IntegrityError):
    """No proof: the archive does not prove the event (``prove``: the problem found), or a
    proof file is not a well-formed v1 proof (``verify-proof``)."""


class StorageError(AuditArchiverError):
    """The object store (S3 or a local directory) failed or refused a request."""


class ObjectExistsError(StorageError):
    """A conditional put found an object already stored under the key."""

    def __init__(self, key: str) -> None:
        super().__init__(f"an object already exists at {key}")
        self.key = key


class ObjectNotFoundError(StorageError):
    """The requested object or object version does not exist."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no object at {key}")
        self.key = key


class ObjectRefusedError(StorageError):
    """The object is there but the store will not read it (in a folder: a symbolic link,
    or not a regular file): a finding on that object, not a failure of the store."""


class InputError(AuditArchiverError):
    """A client supplied bad input (events, request bodies)."""


class AuthenticationError(InputError):
    """A client's credentials are missing, malformed or wrong (HTTP 401).

    The message says which (never the credentials themselves).
    """


class EventValidationError(InputError):
    """One event is invalid.

    Attributes:
        field: the offending field name, or None when the event as a whole is bad.
        reason: short human explanation.
        line: 1-based line number in the request body, when known.
        kind: what is wrong, as a metric label: ``invalid`` (a field or the
            event's shape), ``not_json`` (not JSON or not UTF-8), ``too_deep``
            (nesting beyond :data:`~audit_archiver.core.event.MAX_DEPTH`),
            ``too_large`` (over :data:`~audit_archiver.core.event.MAX_EVENT_BYTES`).
    """

    def __init__(
        self,
        reason: str,
        *,
        field: str | None = None,
        line: int | None = None,
        kind: str = "invalid",
    ) -> None:
        self.field = field
        self.reason = reason
        self.line = line
        self.kind = kind
        super().__init__(self._describe())

    def _describe(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        what = f"field {self.field!r}: " if self.field else ""
        return f"{where}{what}{self.reason}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_validation_error, (self.reason, self.field, self.line, self.kind))

    def at_line(self, line: int) -> EventValidationError:
        """Return a copy of this error that names the request line."""
        return EventValidationError(self.reason, field=self.field, line=line, kind=self.kind)


def _rebuild_validation_error(
    reason: str, field: str | None, line: int | None, kind: str = "invalid"
) -> EventValidationError:
    return EventValidationError(reason, field=field, line=line, kind=kind)


class BackpressureError(AuditArchiverError):
    """The agent cannot take events right now; the client should retry later (HTTP 503)."""


class SpoolFullError(BackpressureError):
    """The agent's spool is over its byte cap; the client should retry later."""


class ConfigurationError(AuditArchiverError):
    """Bad flags, config files, bucket settings or environment."""


class SourceError(AuditArchiverError):
    """An event source (``--stdin``) failed for good, not because of one line.

    The agent drains what it accepted and exits with this code (never 0).
    """


class ReportInputError(ConfigurationError):
    """A report given to ``report merge`` is unreadable, not a shard report, or does not
    belong with the others (another archive or N, a shard missing or given twice)."""


class KeyFileError(ConfigurationError):
    """A key file is missing, unreadable, malformed or too widely readable."""


class NotReadyError(BackpressureError):
    """The agent cannot accept events right now (draining, stopped); retry later."""


class SignerError(AuditArchiverError):
    """The signer (an AWS KMS key) could not sign a seal."""


class SignerUnavailableError(SignerError):
    """The signer could not be reached or asked to come back later (retrying may help)."""


class SignerPermanentError(SignerError):
    """The signer refused: key disabled, deleted or not allowed. Retrying helps
    only once an operator fixes the key or its policy."""


class StorageUnavailableError(StorageError):
    """The object store could not be reached or asked to come back later.

    Connection errors, timeouts, HTTP 5xx and throttling (``SlowDown``): the
    request may succeed when retried. A plain :class:`StorageError` means the
    store refused (access denied, no such bucket, invalid request).
    """


class StoragePermanentError(StorageError):
    """The object store refused in a way retrying will not fix until an operator acts.

    Access denied, no such bucket, wrong region (``PermanentRedirect``,
    ``AuthorizationHeaderMalformed``), unknown access key, bad signature, an
    SSE-KMS key disabled or not found. The agent keeps retrying at its backoff
    cap (an operator may fix IAM) and reports it (``/readyz``, metric, log).
    """


class TransportChecksumError(IntegrityError):
    """Bytes read from the store do not match the checksum the store holds for them.

    ``key`` names the object; ``expected`` is the checksum the store reported,
    when known.
    """


class ObjectTooLargeError(IntegrityError):
    """An object is larger than the reader's limit, so it was not (fully) read.

    Raised when the stored size is over the limit (before any byte is read) or
    when more bytes than the limit arrive. ``expected`` is the limit in bytes;
    ``found`` is the stored size, or ``"more than <limit>"`` when the excess
    showed only while reading. ``limit`` and ``size`` hold the same as numbers
    (``size`` is None when only the excess is known).
    """

    def __init__(self, key: str, *, limit: int, size: int | None) -> None:
        found = str(size) if size is not None else f"more than {limit}"
        super().__init__(
            f"object {key!r} is larger than the limit of {limit} bytes ({found} bytes)",
            key=key,
            expected=str(limit),
            found=found,
        )
        self.limit = limit
        self.size = size

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_too_large_error, (self.key or "", self.limit, self.size))


def _rebuild_too_large_error(key: str, limit: int, size: int | None) -> ObjectTooLargeError:
    return ObjectTooLargeError(key, limit=limit, size=size)
