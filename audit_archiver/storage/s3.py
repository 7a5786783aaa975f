"""Amazon S3 (or an S3-compatible endpoint) as an object store.

Invariants this driver keeps:

- ``put_new`` is one ``PutObject`` with ``If-None-Match: *``: S3 answers 412
  when the key has a current object, so this driver never replaces one. (A key
  whose current version is a delete marker has no current object: S3 then
  stores a new version, and ``list_versions`` shows the marker and both
  versions.)
- Every put carries a SHA-256 checksum computed here from the bytes; S3 rejects
  a body that does not match it, and the checksum S3 echoes is compared too.
- Every get asks for the stored checksum (``ChecksumMode=ENABLED``) and
  botocore checks the body against it; a mismatch is a
  :class:`~audit_archiver.errors.TransportChecksumError` naming the key.
  botocore checks only through its ``StreamingBody.read`` and only when a
  read returns ``b""``: :meth:`S3Store.open_object` reads through it and asks
  for that final empty read as soon as ``ContentLength`` bytes have arrived.
- ``open_object`` refuses an object whose ``ContentLength`` is over the
  caller's limit before reading any of its body, and stops reading when more
  bytes than the limit arrive (the header could lie).
- Every botocore and urllib3 exception is wrapped here, at the boundary, by
  what to do about it: :class:`~audit_archiver.errors.StorageUnavailableError`
  when S3 could not be reached, timed out, broke the connection, answered 5xx
  or asked us to slow down (retrying may help);
  :class:`~audit_archiver.errors.StoragePermanentError` when it refused
  (AccessDenied, NoSuchBucket, wrong region with the bucket's region named,
  InvalidAccessKeyId, SignatureDoesNotMatch, an SSE-KMS key disabled or not
  found, no credentials, a certificate that does not verify): only an
  operator can fix those. Messages name the operation, bucket, key and S3
  error code, never object contents.

Version listings: S3 returns versions and delete markers interleaved, newest
first per key, but botocore parses them into two lists and ``LastModified`` has
one-second resolution. Each page is merged back by key, ``IsLatest`` and time;
ties keep the order of the XML response, which a botocore hook records. Pages
cut S3's order, so a key's entries spanning two pages stay in order.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import boto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import (  # type: ignore[import-untyped]
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    FlexibleChecksumError,
    HTTPClientError,
    IncompleteReadError,
    ProxyConnectionError,
)
from urllib3.exceptions import DecodeError as URLLib3DecodeError
from urllib3.exceptions import HTTPError as URLLib3HTTPError
from urllib3.exceptions import ProtocolError as URLLib3ProtocolError
from urllib3.exceptions import SSLError as URLLib3SSLError

from audit_archiver import __version__
from audit_archiver.errors import (
    ConfigurationError,
    ObjectExistsError,
    ObjectNotFoundError,
    ObjectTooLargeError,
    StorageError,
    StoragePermanentError,
    StorageUnavailableError,
    TransportChecksumError,
)
from audit_archiver.storage.base import BucketSettings, ClosingStream, ObjectInfo, ObjectVersion

__all__ = ["BucketSettings", "S3Store"]

#: Seconds to wait for a TCP connection (a black-holed endpoint costs this per try).
CONNECT_TIMEOUT_SECONDS = 3.0
#: Seconds any one socket read or write may stall (a stalled answer costs this per try).
READ_TIMEOUT_SECONDS = 10.0
MAX_POOL_CONNECTIONS = 64
#: botocore's tries per request in total, the first included (botocore's
#: ``total_max_attempts``; its ``max_attempts`` counts retries only, so the old
#: ``max_attempts: 2`` made 3 tries). The agent runs its own retry loop on top,
#: so one upload attempt against a black hole costs at most
#: 2 x 3 s + botocore's backoff (under 1 s), and against an endpoint that
#: accepts but never answers at most 2 x (3 s + 10 s) + 1 s = 27 s.
TOTAL_MAX_ATTEMPTS = 2

_EXISTS_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "404", "NotFound"})
# S3 answers 405 for a GET or HEAD of a delete marker's version id: no object there.
_DELETE_MARKER_CODES = frozenset({"405", "MethodNotAllowed"})
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "OperationAborted",
    }
)
# Could not connect, timed out, or the connection broke mid-response. (An SSLError,
# such as a certificate that does not verify, is a refusal: retrying will not help.)
_TRANSIENT_BOTO_ERRORS = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ProxyConnectionError,
    HTTPClientError,
    IncompleteReadError,
)

# botocore's FlexibleChecksumError says "... did not match calculated checksum: <b64>".
_CALCULATED_CHECKSUM = re.compile(r"calculated checksum: ([A-Za-z0-9+/=]+)")
_ENTRY_ORDER = "AuditArchiverEntryOrder"
_ENTRY_TAG = re.compile(rb"<(Version|DeleteMarker)>")
_PUBLIC_ACCESS_FLAGS = (
    "BlockPublicAcls",
    "IgnorePublicAcls",
    "BlockPublicPolicy",
    "RestrictPublicBuckets",
)


_ANY_SIZE = 1 << 62  # fetch() reads whole objects (the agent's own segments), unbounded
_FETCH_CHUNK = 1 << 20


class S3Store:
    """Objects in one S3 bucket, written once under Object Lock.

    ``client`` is a boto3 S3 client (see :meth:`connect`). ``page_size`` caps
    the entries per ``ListObjectVersions`` request (S3's default is 1000).
    """

    def __init__(self, bucket: str, client: Any, *, page_size: int | None = None) -> None:
        self.bucket = bucket
        self._client = client
        self._page_size = page_size
        client.meta.events.register(
            "after-call.s3.ListObjectVersions",
            _record_entry_order,
            unique_id="audit-archiver-entry-order",
        )

    @classmethod
    def connect(
        cls,
        bucket: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        page_size: int | None = None,
        read_timeout: float = READ_TIMEOUT_SECONDS,
    ) -> S3Store:
        """Build a client (credentials found the usual boto3 way) and a store on ``bucket``.

        No request is sent: a wrong bucket or missing credentials show on first use.
        ``read_timeout`` bounds each socket read (the agent's ``--s3-read-timeout``).

        Raises:
            ConfigurationError: the region or endpoint URL is unusable.
        """
        try:
            client = boto3.client(
                "s3",
                region_name=region,
                endpoint_url=endpoint_url,
                config=_client_config(read_timeout),
            )
        except (BotoCoreError, ValueError) as e:
            raise ConfigurationError(f"cannot set up an S3 client for bucket {bucket}: {e}") from e
        return cls(bucket, client, page_size=page_size)

    def put_new(self, key: str, data: bytes, *, retain_until: datetime | None) -> ObjectInfo:
        """Store ``data`` at ``key`` unless an object is there; lock it until ``retain_until``.

        With ``retain_until`` the version gets Object Lock COMPLIANCE retention
        until then; without it, the bucket's default retention (if any) applies.

        Raises:
            ObjectExistsError: an object already exists at ``key``.
            StorageUnavailableError: S3 could not be reached or asked to retry later.
            StorageError: S3 refused, or echoed a different checksum.
        """
        checksum = _sha256_b64(data)
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Body": data,
            "IfNoneMatch": "*",
            "ChecksumAlgorithm": "SHA256",
            "ChecksumSHA256": checksum,
        }
        if retain_until is not None:
            params["ObjectLockMode"] = "COMPLIANCE"
            params["ObjectLockRetainUntilDate"] = retain_until
        try:
            response = self._client.put_object(**params)
        except ClientError as e:
            if _code(e) in _EXISTS_CODES:
                raise ObjectExistsError(key) from e
            raise self._error(e, "PutObject", key) from e
        except BotoCoreError as e:
            raise self._error(e, "PutObject", key) from e
        echoed = response.get("ChecksumSHA256")
        if echoed is not None and echoed != checksum:
            raise StorageError(
                f"S3 PutObject {self._where(key)}: S3 reports checksum {echoed}, "
                f"the bytes sent have {checksum}"
            )
        return ObjectInfo(
            key=key,
            version_id=response.get("VersionId"),
            size=len(data),
            retention_mode="COMPLIANCE" if retain_until is not None else None,
            retain_until=_utc(retain_until),
            checksum_sha256=checksum,
        )

    def get(self, key: str, version_id: str | None = None) -> bytes:
        """Return the bytes of ``key`` (the current version, or ``version_id``).

        Raises:
            ObjectNotFoundError: no such object or version (or it is a delete marker).
            TransportChecksumError: the bytes do not match the checksum S3 holds.
            StorageUnavailableError: S3 could not be reached or asked to retry later.
            StorageError: S3 refused.
        """
        return self.fetch(key, version_id)[0]

    def fetch(self, key: str, version_id: str | None = None) -> tuple[bytes, ObjectInfo]:
        """Return the bytes of ``key`` and, from the same response, its metadata.

        One GetObject: retention mode, retain-until date and legal hold come
        with the body, so a verifier needs no HeadObject per segment.

        Raises:
            ObjectNotFoundError: no such object or version (or it is a delete marker).
            TransportChecksumError: the bytes do not match the checksum S3 holds.
            StorageUnavailableError: S3 could not be reached or asked to retry later.
            StorageError: S3 refused.
        """
        with self.open_object(key, version_id, max_bytes=_ANY_SIZE) as stream:
            chunks = []
            while chunk := stream.read(_FETCH_CHUNK):
                chunks.append(chunk)
            return b"".join(chunks), stream.info

    def open_object(
        self, key: str, version_id: str | None = None, *, max_bytes: int
    ) -> _S3ObjectStream:
        """Open ``key`` (or ``version_id``) as a stream of at most ``max_bytes`` bytes.

        One GetObject with ``ChecksumMode=ENABLED``; ``info`` (retention, legal
        hold, checksum) comes from its headers. When ``ContentLength`` is over
        ``max_bytes`` the body is closed unread.

        Raises:
            ObjectTooLargeError: ``ContentLength`` is over ``max_bytes``.
            ObjectNotFoundError: no such object or version (or it is a delete marker).
            StorageUnavailableError: S3 could not be reached or asked to retry later.
            StorageError: S3 refused.
        """
        try:
            response = self._client.get_object(
                ChecksumMode="ENABLED", **self._params(key, version_id)
            )
        except (ClientError, BotoCoreError) as e:
            raise self._read_error(e, "GetObject", key, version_id) from e
        stream = _S3ObjectStream(self, key, version_id, response, max_bytes)
        size = stream.info.size
        if size > max_bytes:
            stream.close()
            raise ObjectTooLargeError(key, limit=max_bytes, size=size)
        return stream

    def read_head(self, key: str, version_id: str | None = None, *, size: int) -> bytes:
        """Return the first ``size`` bytes of ``key`` (or of ``version_id``): one GetObject
        with ``Range: bytes=0-(size-1)``. S3 holds no checksum of a range, so none is
        checked; the caller authenticates the bytes.

        Raises:
            ValueError: ``size`` is not positive.
            ObjectNotFoundError: no such object or version (or it is a delete marker).
            StorageUnavailableError: S3 could not be reached or asked to retry later.
            StorageError: S3 refused.
        """
        if size <= 0:
            raise ValueError("read_head size must be positive")
        try:
            response = self._client.get_object(
                Range=f"bytes=0-{size - 1}", **self._params(key, version_id)
            )
        except ClientError as e:
            if _code(e) == "InvalidRange":  # an empty object has no byte 0
                return b""
            raise self._read_error(e, "GetObject", key, version_id) from e
        except BotoCoreError as e:
            raise self._read_error(e, "GetObject", key, version_id) from e
        body = response["Body"]
        try:
            parts: list[bytes] = []
            received = 0
            while received < size and (chunk := body.read(size - received)):
                parts.append(chunk)
                received += len(chunk)
            return b"".join(parts)[:size]
        except (ClientError, BotoCoreError, URLLib3HTTPError, OSError) as e:
            raise StorageUnavailableError(
                f"S3 GetObject {self._where(key, version_id)}: the read failed ({e})"
            ) from e
        finally:
            body.close()

    def head(self, key: str, version_id: str | None = None) -> ObjectInfo:
        """Return size, checksum, retention and legal hold of ``key`` (or of ``version_id``).

        Raises:
            ObjectNotFoundError: no such object or version (HEAD cannot tell a
                missing bucket from a missing key: both are a bare 404).
            StorageUnavailableError: S3 could not be reached or asked to retry later.
            StorageError: S3 refused.
        """
        try:
            response = self._client.head_object(
                ChecksumMode="ENABLED", **self._params(key, version_id)
            )
        except (ClientError, BotoCoreError) as e:
            raise self._read_error(e, "HeadObject", key, version_id) from e
        return _info(key, response)

    def list_versions(self, prefix: str) -> Iterator[ObjectVersion]:
        """Yield every version and delete marker under ``prefix``: keys ascending, newest first.

        Raises:
            StorageUnavailableError: S3 could not be reached or asked to retry later.
            StorageError: S3 refused (for example, no such bucket).
        """
        pagination = {"PageSize": self._page_size} if self._page_size else {}
        paginator = self._client.get_paginator("list_object_versions")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=prefix, PaginationConfig=pagination)
        try:
            for page in pages:
                yield from _page_entries(page)
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, "ListObjectVersions", prefix + "*") from e

    def object_lock_enabled(self) -> bool:
        """Return True if Object Lock is enabled on the bucket.

        Raises:
            ConfigurationError: the bucket does not exist.
            StorageUnavailableError: S3 could not be reached or asked to retry later.
            StorageError: S3 refused.
        """
        configuration = self._bucket_config(
            "GetObjectLockConfiguration",
            self._client.get_object_lock_configuration,
            "ObjectLockConfigurationNotFoundError",
        )
        return _lock_enabled(configuration)

    def bucket_settings(self) -> BucketSettings:
        """Read the bucket's Object Lock, versioning, encryption and access settings.

        Raises:
            ConfigurationError: the bucket does not exist.
            StorageUnavailableError: S3 could not be reached or asked to retry later.
            StorageError: S3 refused one of the reads (for example, access denied).
        """
        client = self._client
        lock = self._bucket_config(
            "GetObjectLockConfiguration",
            client.get_object_lock_configuration,
            "ObjectLockConfigurationNotFoundError",
        )
        versioning = self._bucket_config("GetBucketVersioning", client.get_bucket_versioning)
        encryption = self._bucket_config(
            "GetBucketEncryption",
            client.get_bucket_encryption,
            "ServerSideEncryptionConfigurationNotFoundError",
        )
        access = self._bucket_config(
            "GetPublicAccessBlock",
            client.get_public_access_block,
            "NoSuchPublicAccessBlockConfiguration",
        )
        policy = self._bucket_config(
            "GetBucketPolicy", client.get_bucket_policy, "NoSuchBucketPolicy"
        )
        ownership = self._bucket_config(
            "GetBucketOwnershipControls",
            client.get_bucket_ownership_controls,
            "OwnershipControlsNotFoundError",
        )
        mode, days = _default_retention(lock)
        algorithm, kms_key_id, bucket_key = _default_encryption(encryption)
        return BucketSettings(
            object_lock_enabled=_lock_enabled(lock),
            default_retention_mode=mode,
            default_retention_days=days,
            versioning_status=(versioning or {}).get("Status"),
            encryption_algorithm=algorithm,
            kms_key_id=kms_key_id,
            bucket_key_enabled=bucket_key,
            public_access_block=_public_access_flags(access),
            bucket_policy=self._policy_document(policy),
            ownership_controls=_object_ownership(ownership),
        )

    def _bucket_config(
        self, operation: str, call: Callable[..., dict[str, Any]], *missing_codes: str
    ) -> dict[str, Any] | None:
        """Call a bucket-level read; None when S3 says the configuration does not exist."""
        try:
            return call(Bucket=self.bucket)
        except ClientError as e:
            code = _code(e)
            if code in missing_codes:
                return None
            if code == "NoSuchBucket":
                raise ConfigurationError(
                    f"S3 bucket {self.bucket} does not exist (S3 {operation}: NoSuchBucket)"
                ) from e
            raise self._error(e, operation, None) from e
        except BotoCoreError as e:
            raise self._error(e, operation, None) from e

    def _policy_document(self, response: dict[str, Any] | None) -> dict[str, Any] | None:
        if response is None:
            return None
        try:
            document = json.loads(response["Policy"])
        except (KeyError, TypeError, ValueError) as e:
            raise StorageError(f"S3 GetBucketPolicy {self._where(None)}: not a JSON policy") from e
        if not isinstance(document, dict):
            raise StorageError(f"S3 GetBucketPolicy {self._where(None)}: not a JSON object")
        return document

    def _params(self, key: str, version_id: str | None) -> dict[str, str]:
        params = {"Bucket": self.bucket, "Key": key}
        if version_id is not None:
            params["VersionId"] = version_id
        return params

    def _where(self, key: str | None, version_id: str | None = None) -> str:
        where = f"s3://{self.bucket}" if key is None else f"s3://{self.bucket}/{key}"
        return where if version_id is None else f"{where}?versionId={version_id}"

    def _checksum_error(
        self,
        error: FlexibleChecksumError,
        key: str,
        version_id: str | None,
        expected: str | None,
    ) -> TransportChecksumError:
        """botocore found that the body does not match the checksum S3 sent with it."""
        calculated = _CALCULATED_CHECKSUM.search(str(error))
        return TransportChecksumError(
            f"S3 GetObject {self._where(key, version_id)}: the bytes received do not match "
            f"the checksum S3 holds for them ({error})",
            key=key,
            expected=expected,
            found=calculated.group(1) if calculated else None,
        )

    def _read_error(
        self,
        error: ClientError | BotoCoreError,
        operation: str,
        key: str,
        version_id: str | None,
    ) -> StorageError:
        """The error to raise for a failed GET or HEAD of one object."""
        if isinstance(error, ClientError):
            code = _code(error)
            if code in _NOT_FOUND_CODES or (
                version_id is not None and code in _DELETE_MARKER_CODES
            ):
                where = key if version_id is None else f"{key}?versionId={version_id}"
                return ObjectNotFoundError(where)
        return self._error(error, operation, key, version_id)

    def _error(
        self,
        error: ClientError | BotoCoreError,
        operation: str,
        key: str | None,
        version_id: str | None = None,
    ) -> StorageError:
        """Wrap a botocore exception: unavailable (retry may help) or refused."""
        where = self._where(key, version_id)
        if isinstance(error, ClientError):
            code, status = _code(error), _status(error)
            message = error.response.get("Error", {}).get("Message") or "no message"
            detail = f"{code or 'error'} (HTTP {status}): {message}{_region_hint(error)}"
            if _is_transient(code, status):
                return StorageUnavailableError(f"S3 {operation} {where} unavailable: {detail}")
            return StoragePermanentError(f"S3 {operation} {where} refused: {detail}")
        if isinstance(error, _TRANSIENT_BOTO_ERRORS):
            return StorageUnavailableError(
                f"S3 {operation} {where} unavailable: {type(error).__name__}: {error}"
            )
        # No credentials, a certificate that does not verify, a bad parameter:
        # retrying the same request cannot help until someone fixes the setup.
        return StoragePermanentError(
            f"S3 {operation} {where} failed: {type(error).__name__}: {error}"
        )


class _S3ObjectStream(ClosingStream):
    """A GetObject body read through botocore's ``StreamingBody`` (which checks the checksum).

    Bounded: a read never asks S3 for more than one byte past ``max_bytes``.
    Once ``ContentLength`` bytes have arrived the stream asks botocore for one
    more read, which returns ``b""`` and makes it check the checksum and the
    length, so a mismatch is raised with the last bytes, not only when the
    caller happens to read again.
    """

    def __init__(
        self,
        store: S3Store,
        key: str,
        version_id: str | None,
        response: dict[str, Any],
        max_bytes: int,
    ) -> None:
        self.info = _info(key, response)
        self._store = store
        self._key = key
        self._version_id = version_id
        self._body = response["Body"]
        self._expected = _reported_checksum(response)
        self._length = response.get("ContentLength")
        self._max_bytes = max_bytes
        self._received = 0
        self._finished = False
        self._closed = False

    def read(self, size: int) -> bytes:
        """Return up to ``size`` more bytes; ``b""`` at the end (after the checksum passed).

        Raises:
            ObjectTooLargeError: more than ``max_bytes`` bytes arrived.
            TransportChecksumError: the bytes do not match the checksum S3 holds.
            StorageUnavailableError: the connection broke or timed out.
            StorageError: the read failed otherwise.
            ValueError: ``size`` is not positive, or the stream is closed.
        """
        if size <= 0:
            raise ValueError("read size must be positive")
        if self._closed:
            raise ValueError("read from a closed object stream")
        if self._finished:
            return b""
        chunk = self._read(min(size, self._max_bytes - self._received + 1))
        self._received += len(chunk)
        if self._received > self._max_bytes:
            self.close()
            raise ObjectTooLargeError(self._key, limit=self._max_bytes, size=None)
        if not chunk:
            self._finished = True
        elif self._received == self._length:
            tail = self._read(1)  # b"" here makes botocore check checksum and length
            if tail:
                self.close()
                raise ObjectTooLargeError(self._key, limit=self._max_bytes, size=None)
            self._finished = True
        return chunk

    def _read(self, size: int) -> bytes:
        try:
            chunk: bytes = self._body.read(size)
        except FlexibleChecksumError as e:
            self.close()
            raise self._store._checksum_error(e, self._key, self._version_id, self._expected) from e
        except BotoCoreError as e:
            self.close()
            raise self._store._error(e, "GetObject", self._key, self._version_id) from e
        except (URLLib3ProtocolError, http.client.HTTPException, OSError) as e:
            self.close()
            raise StorageUnavailableError(
                f"S3 GetObject {self._store._where(self._key, self._version_id)} unavailable: "
                f"{type(e).__name__}: {e}"
            ) from e
        except (URLLib3SSLError, URLLib3DecodeError) as e:  # a bad certificate or encoding
            self.close()
            raise StoragePermanentError(
                f"S3 GetObject {self._store._where(self._key, self._version_id)} failed: "
                f"{type(e).__name__}: {e}"
            ) from e
        except URLLib3HTTPError as e:  # timeouts, resets, a broken pool: retrying may help
            self.close()
            raise StorageUnavailableError(
                f"S3 GetObject {self._store._where(self._key, self._version_id)} unavailable: "
                f"{type(e).__name__}: {e}"
            ) from e
        return chunk

    def close(self) -> None:
        """Close the response body (an unread body closes its connection)."""
        if not self._closed:
            self._closed = True
            self._body.close()


def _client_config(read_timeout: float = READ_TIMEOUT_SECONDS) -> Config:
    """The botocore configuration every S3 client of this package uses.

    Short timeouts and one botocore retry (callers retry on their own), a
    connection pool for parallel uploads and downloads, no default request
    checksums (``put_new`` sends its own SHA-256) and response checksum
    validation whenever S3 returns one.
    """
    return Config(
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=read_timeout,
        retries={"total_max_attempts": TOTAL_MAX_ATTEMPTS, "mode": "standard"},
        max_pool_connections=MAX_POOL_CONNECTIONS,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_supported",
        user_agent_extra=f"audit-archiver/{__version__}",
    )


def _info(key: str, response: dict[str, Any]) -> ObjectInfo:
    return ObjectInfo(
        key=key,
        version_id=response.get("VersionId"),
        size=int(response.get("ContentLength", 0)),
        retention_mode=response.get("ObjectLockMode"),
        retain_until=_utc(response.get("ObjectLockRetainUntilDate")),
        legal_hold=response.get("ObjectLockLegalHoldStatus") == "ON",
        checksum_sha256=response.get("ChecksumSHA256"),
    )


def _sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def _utc(moment: datetime | None) -> datetime | None:
    """``moment`` in UTC; a naive datetime is taken to be UTC already (as botocore does)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _reported_checksum(response: dict[str, Any]) -> str | None:
    """The checksum S3 sent with a GET (base64, of whichever algorithm the object has)."""
    for name, value in response.items():
        if name.startswith("Checksum") and name != "ChecksumType" and isinstance(value, str):
            return value
    return None


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code") or "")


def _status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def _is_transient(code: str, status: int) -> bool:
    return code in _TRANSIENT_CODES or status >= 500 or status == 429


def _region_hint(error: ClientError) -> str:
    """Where S3 says the bucket lives, for a wrong-region refusal (``PermanentRedirect``,
    ``AuthorizationHeaderMalformed``, ``IllegalLocationConstraintException``)."""
    details = error.response.get("Error", {})
    headers = error.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
    region = details.get("Region") or headers.get("x-amz-bucket-region")
    if region:
        return f" (the bucket is in region {region}; set --region {region})"
    endpoint = details.get("Endpoint")
    return f" (S3 names endpoint {endpoint}; check --region)" if endpoint else ""


def _record_entry_order(http_response: Any, parsed: dict[str, Any], **_: Any) -> None:
    """botocore ``after-call`` hook: note the order of <Version> and <DeleteMarker> entries.

    Element names in S3's XML cannot occur inside text (``<`` is escaped), so
    the tags found are exactly the entries, in the order S3 listed them.
    """
    try:
        body = http_response.content
    except AttributeError:  # a stubbed response has no body
        return
    if isinstance(body, bytes) and http_response.status_code == 200:
        parsed[_ENTRY_ORDER] = [match.group(1).decode() for match in _ENTRY_TAG.finditer(body)]


def _page_entries(page: dict[str, Any]) -> list[ObjectVersion]:
    """One listing page's versions and delete markers: keys ascending, newest first."""
    versions = [_version_entry(item, is_delete_marker=False) for item in page.get("Versions", [])]
    markers = [
        _version_entry(item, is_delete_marker=True) for item in page.get("DeleteMarkers", [])
    ]
    entries = _document_order(versions, markers, page.get(_ENTRY_ORDER))
    return sorted(entries, key=_newest_first)  # stable: ties keep document order


def _document_order(
    versions: list[ObjectVersion], markers: list[ObjectVersion], order: list[str] | None
) -> list[ObjectVersion]:
    """Interleave versions and markers as S3 listed them, when that order was recorded."""
    if (
        order is None
        or order.count("Version") != len(versions)
        or order.count("DeleteMarker") != len(markers)
    ):
        return versions + markers
    remaining_versions, remaining_markers = iter(versions), iter(markers)
    return [
        next(remaining_versions) if tag == "Version" else next(remaining_markers) for tag in order
    ]


def _newest_first(entry: ObjectVersion) -> tuple[str, bool, float]:
    stamp = entry.last_modified.timestamp() if entry.last_modified else 0.0
    return (entry.key, not entry.is_latest, -stamp)


def _version_entry(item: dict[str, Any], *, is_delete_marker: bool) -> ObjectVersion:
    return ObjectVersion(
        key=item["Key"],
        version_id=item.get("VersionId"),
        is_latest=bool(item.get("IsLatest", False)),
        is_delete_marker=is_delete_marker,
        last_modified=_utc(item.get("LastModified")),
        size=0 if is_delete_marker else int(item.get("Size", 0)),
    )


def _lock_enabled(response: dict[str, Any] | None) -> bool:
    configuration = (response or {}).get("ObjectLockConfiguration", {})
    return bool(configuration.get("ObjectLockEnabled") == "Enabled")


def _default_retention(response: dict[str, Any] | None) -> tuple[str | None, int | None]:
    """Mode and days of the default retention rule; years count as 365 days."""
    configuration = (response or {}).get("ObjectLockConfiguration", {})
    retention = (configuration.get("Rule") or {}).get("DefaultRetention") or {}
    days = retention.get("Days") or None
    if days is None and retention.get("Years"):
        days = int(retention["Years"]) * 365
    return retention.get("Mode"), days


def _default_encryption(response: dict[str, Any] | None) -> tuple[str | None, str | None, bool]:
    """Algorithm, KMS key id and Bucket Key flag of the default encryption rule."""
    configuration = (response or {}).get("ServerSideEncryptionConfiguration", {})
    for rule in configuration.get("Rules", []):
        default = rule.get("ApplyServerSideEncryptionByDefault")
        if default:
            return (
                default.get("SSEAlgorithm"),
                default.get("KMSMasterKeyID"),
                bool(rule.get("BucketKeyEnabled", False)),
            )
    return None, None, False


def _public_access_flags(response: dict[str, Any] | None) -> dict[str, bool]:
    configuration = (response or {}).get("PublicAccessBlockConfiguration", {})
    return {flag: bool(configuration.get(flag, False)) for flag in _PUBLIC_ACCESS_FLAGS}


def _object_ownership(response: dict[str, Any] | None) -> str | None:
    rules = (response or {}).get("OwnershipControls", {}).get("Rules", [])
    return str(rules[0]["ObjectOwnership"]) if rules else None
