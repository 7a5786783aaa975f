"""The CloudTrail baseline of ``scripts/bench verify`` (issue 13): AWS's own
``aws cloudtrail validate-logs`` over a CloudTrail archive of the same events.

    python scripts/bench_cloudtrail.py [--endpoint URL] --events N --per-object M
    python scripts/bench_cloudtrail.py [--endpoint URL] --smoke

The first runs one :func:`prepare_cloudtrail_archive` and one
:func:`cloudtrail_round` and prints JSON; without ``--endpoint`` it starts
``audit-archiver local-s3`` as scripts/bench.py does. ``--smoke`` builds a small
archive spread over three digest hours and checks that it validates; then that
the CLI reports exactly one overwritten log file invalid; then that it reports a
digest rewritten without its last log file entry (old signature kept) invalid.
scripts/bench.py imports this module and passes its own event lines
(``make_body(...).splitlines()``), so both sides see the same events.

The validator. The real AWS CLI v1 (``awscli>=1.46`` from the package index),
in a venv of its own under ``.bench/awscli-venv`` (created on first use) so
that its botocore does not touch the project's; awscli 1.46 vendors botocore
as ``awscli.botocore``. It runs as a user runs it, in a subprocess::

    aws --endpoint-url <shim> --region us-east-1 cloudtrail validate-logs
        --trail-arn arn:aws:cloudtrail:us-east-1:123456789012:trail/audit-bench
        --start-time <first digest start> --end-time <last digest end> --verbose

with no ``--s3-bucket``/``--s3-prefix``: it finds the bucket through
``DescribeTrails``, as it does for a user. S3 is moto, reached through
``AWS_ENDPOINT_URL_S3`` (honoured by the vendored botocore 1.43); the CloudTrail
API goes to a shim in this process (below). We time the subprocess's wall
clock and take its CPU (user + sys) and peak RSS from ``os.wait4``; the CLI is
one Python process, so that is the validator's whole process tree.

What the validator does (``awscli/customizations/cloudtrail/validation.py``):

- ``DescribeTrails`` (bucket and prefix of the trail), ``ListPublicKeys`` over
  [start, end + 2 h], ``GetBucketLocation``, then one ``ListObjects`` of
  ``AWSLogs/<account>/CloudTrail-Digest/<region>`` from a marker at start - 1 min,
  keeping keys whose timestamp (the last 16 characters before ``.json.gz``)
  lies in [start, end + 1 h].
- It walks the chain backwards from the newest digest through
  ``previousDigestS3Object``. For each digest: GET, gunzip, JSON; the S3 user
  metadata ``signature`` (hex) and ``signature-algorithm`` must be there;
  ``digestS3Bucket``/``digestS3Object`` must name where it was read from; the
  key is looked up by ``digestPublicKeyFingerprint`` among the listed keys
  (the fingerprint is only a lookup key, never recomputed from the key); the
  signature is RSA PKCS#1 v1.5 over ``digestEndTime \\n bucket/key \\n
  sha256(inflated digest) \\n previousDigestSignature`` (``null`` for the first
  digest). ``previousDigestHashValue`` is not checked: the chain is held by the
  previous signature inside the signed string.
- Then, for each log file the digest lists, one after the other: GET, read the
  body 2,048 bytes at a time, gunzip, SHA-256 of the *inflated* bytes against
  ``hashValue``; bytes after the first gzip member make the file invalid.
- Single-threaded: digests are walked and log files fetched in one loop in
  one thread, no pool anywhere in the command. That is how the CLI is built,
  not a handicap added here.
- ``ListPublicKeys``' ``Value`` (a blob: base64 of the DER ``RSAPublicKey``
  on the wire) reaches the validator still encoded, because the CLI sets
  botocore's blob parser to the identity (``awscli/customizations/scalarparse.py``);
  the validator decodes it itself and loads it with the pure-Python ``rsa``
  package, which also does the signature check.

What moto gives and what the shim adds. moto 5.2's server implements
CloudTrail's ``CreateTrail``/``DescribeTrails``/``GetTrail`` but not
``ListPublicKeys`` (an HTTP 500), and the CLI sends every CloudTrail call to
the one ``--endpoint-url``. So a small JSON 1.1 shim (:class:`CloudTrailShim`,
a thread of this process) answers ``DescribeTrails``, ``GetTrail`` and
``ListPublicKeys`` with this archive's trail and key, and refuses anything else
(``UnknownOperationException``) so that a new call would show up as a failure.
It answers two requests per round. S3 is moto's own.

The archive's shape, and why:

- Records: each of our events becomes one record of CloudTrail's documented
  shape (``eventVersion``, ``userIdentity``, ``eventTime`` to the second,
  ``eventSource``, ``eventName``, ``awsRegion``, ``sourceIPAddress``,
  ``userAgent``, ``requestParameters``, ``responseElements``, ``requestID``,
  ``eventID``, ``readOnly``, ``resources``, ``eventType``, ``managementEvent``,
  ``recipientAccountId``, ``eventCategory``), our fields mapped in (the inverse
  of ``audit_archiver.core.formats.cloudtrail``'s mapping). A CloudTrail
  record is larger than our event line, and the validator hashes the
  inflated bytes, so the archive's byte counts are reported next to the time.
- Log files: gzip ``{"Records": [...]}``, ``per_object`` consecutive records
  each, at ``AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/<account>_CloudTrail_
  <region>_<YYYYMMDDTHHmmZ>_<16 characters>.json.gz``, "delivered" five minutes
  (CloudTrail's stated average) after their newest record, to the minute.
- Digests: one per hour of delivery, as CloudTrail writes them, listing every
  log file delivered in that hour (an hour with none still gets one, with an
  empty list), chained through the previous digest's bucket, key, SHA-256 and
  signature, signed SHA256withRSA with an RSA-2048 key made for the archive
  and kept only in memory. The key timestamp is ``digestEndTime``. So the
  number of digests follows the events' own times: the bench's events run
  at 1,000 a second, so up to 3.6 million events fit one digest (the issue's
  1,000,000 events at 500 per object: one digest listing 2,000 log files).
  A digest costs one GET and one RSA verification; the log files are the work.
- The bucket is plain and versioned, without Object Lock, so that the smoke
  test can overwrite a log file.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gzip
import hashlib
import importlib
import json
import os
import random
import re
import resource
import string
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, cast

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from audit_archiver.storage.local_s3 import local_client

__all__ = [
    "ACCOUNT_ID",
    "AWSCLI_VENV",
    "REGION",
    "TRAIL_NAME",
    "CloudTrailArchive",
    "CloudTrailShim",
    "CloudTrailTiming",
    "CloudTrailValidationError",
    "awscli_version",
    "cloudtrail_record",
    "cloudtrail_round",
    "ensure_awscli",
    "main",
    "prepare_cloudtrail_archive",
    "tamper_digest_file",
    "tamper_log_file",
]

ROOT = Path(__file__).resolve().parent.parent
AWSCLI_VENV = ROOT / ".bench" / "awscli-venv"
AWSCLI_REQUIREMENT = "awscli>=1.46"
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
TRAIL_NAME = "audit-bench"
TRAIL_ARN = f"arn:aws:cloudtrail:{REGION}:{ACCOUNT_ID}:trail/{TRAIL_NAME}"
DIGEST_PERIOD = timedelta(hours=1)
DELIVERY_LAG = timedelta(minutes=5)
"""CloudTrail's stated average delay between an API call and its log file."""
ROUND_TIMEOUT_SECONDS = 3600.0
UPLOAD_THREADS = 8
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_SIGNATURE_ALGORITHM = "SHA256withRSA"
_USER_AGENT = (
    "aws-cli/2.22.35 md/awscrt#0.23.8 ua/2.0 os/linux#6.8 md/arch#x86_64 lang/python#3.12.6"
)
_READ_VERBS = ("read", "get", "list", "describe", "search")
_VALID_LINE = re.compile(r"^(Digest|Log) file\ts3://([^/\s]+)/(\S+)\tvalid$")
_SUMMARY_LINE = re.compile(r"^(\d+)/(\d+) (digest|log) files valid")
_UNIQUE_ALPHABET = string.ascii_letters + string.digits


class CloudTrailValidationError(RuntimeError):
    """``validate-logs`` did not report every digest and log file of the archive valid.

    Carries the evidence: what was expected, what the CLI reported valid, its
    exit code and the lines it wrote to stderr (where it reports INVALID files).
    """

    def __init__(
        self,
        message: str,
        *,
        exit_code: int,
        expected: tuple[int, int],
        reported_valid: tuple[int, int],
        invalid_lines: Sequence[str],
    ) -> None:
        details = (
            f"{message}: exit {exit_code}, expected {expected[0]} digest and {expected[1]} log"
            f" files valid, found {reported_valid[0]} and {reported_valid[1]}"
        )
        if invalid_lines:
            details += "; first of stderr: " + " | ".join(invalid_lines[:3])
        super().__init__(details)
        self.exit_code = exit_code
        self.expected = expected
        self.reported_valid = reported_valid
        self.invalid_lines = tuple(invalid_lines)


@dataclass(frozen=True)
class CloudTrailTiming:
    """One run of ``validate-logs`` over the whole archive.

    ``cpu_seconds`` is user + sys of the CLI process (it starts no others);
    ``peak_rss_mib`` its VmHWM, sampled every 20 ms.
    ``events`` counts the records of the log files the CLI reported valid.
    """

    wall_seconds: float
    cpu_seconds: float
    user_seconds: float
    sys_seconds: float
    peak_rss_mib: float
    events: int
    digest_files: int
    log_files: int
    exit_code: int


@dataclass(frozen=True)
class _StoredObject:
    key: str
    body: bytes
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Layout:
    """Everything to upload, and what the validator should report."""

    objects: tuple[_StoredObject, ...]
    log_records: Mapping[str, int]  # log file key -> records in it
    digest_keys: tuple[str, ...]
    start: datetime  # the first digest's digestStartTime
    end: datetime  # the last digest's digestEndTime
    raw_log_bytes: int
    stored_log_bytes: int


class CloudTrailShim:
    """The CloudTrail API calls ``validate-logs`` makes, over JSON 1.1, on loopback.

    Answers ``DescribeTrails``, ``GetTrail`` and ``ListPublicKeys`` for one
    trail and one public key; anything else is ``UnknownOperationException``.
    ``calls`` lists the operations asked for, in order.
    """

    def __init__(self, trail: Mapping[str, Any], public_key: Mapping[str, Any]) -> None:
        self.trail = dict(trail)
        self.public_key = dict(public_key)
        self.calls: list[str] = []
        self._lock = threading.Lock()
        self._server = _ShimServer(("127.0.0.1", 0), _ShimHandler)
        self._server.shim = self
        host, port = self._server.server_address[:2]
        self.endpoint = f"http://{host!s}:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="cloudtrail-shim", daemon=True
        )
        self._thread.start()

    def answer(self, operation: str, request: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        """The HTTP status and JSON body for one call."""
        with self._lock:
            self.calls.append(operation)
        if operation == "DescribeTrails":
            return 200, {"trailList": [self.trail]}
        if operation == "GetTrail":
            name = request.get("Name")
            if name in (self.trail["Name"], self.trail["TrailARN"]):
                return 200, {"Trail": self.trail}
            return 400, {"__type": "TrailNotFoundException", "message": f"unknown trail {name}"}
        if operation == "ListPublicKeys":
            return 200, {"PublicKeyList": self._keys_in(request)}
        return 400, {"__type": "UnknownOperationException", "message": operation}

    def _keys_in(self, request: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The key if its validity overlaps [StartTime, EndTime] (epoch seconds)."""
        now = time.time()
        start = float(request.get("StartTime", now))
        end = float(request.get("EndTime", now))
        key = self.public_key
        if key["ValidityStartTime"] <= end and start <= key["ValidityEndTime"]:
            return [key]
        return []

    def close(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


class _ShimServer(ThreadingHTTPServer):
    daemon_threads = True
    shim: CloudTrailShim


class _ShimHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        target = self.headers.get("X-Amz-Target", "")
        operation = target.rpartition(".")[2]
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            request = None
        if not isinstance(request, dict):
            status, answer = 400, {"__type": "SerializationException", "message": "bad JSON"}
        else:
            status, answer = cast(_ShimServer, self.server).shim.answer(operation, request)
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the bench prints its own output."""


@dataclass
class CloudTrailArchive:
    """A CloudTrail archive in a bucket on the local S3 server, with its API shim.

    Close it (or leave the ``with`` block) to stop the shim; the objects stay
    in the bucket until the server stops.
    """

    endpoint: str
    bucket: str
    trail_arn: str
    start: datetime
    end: datetime
    events: int
    per_object: int
    log_records: Mapping[str, int]
    digest_keys: tuple[str, ...]
    raw_log_bytes: int
    stored_log_bytes: int
    aws: Path
    shim: CloudTrailShim

    def command(self) -> list[str]:
        """The CLI invocation: the trail and the archive's time range, nothing that skips work."""
        return [
            str(self.aws),
            "--endpoint-url",
            self.shim.endpoint,
            "--region",
            REGION,
            "cloudtrail",
            "validate-logs",
            "--trail-arn",
            self.trail_arn,
            "--start-time",
            self.start.strftime(_TIME_FORMAT),
            "--end-time",
            self.end.strftime(_TIME_FORMAT),
            "--verbose",
        ]

    def environment(self) -> dict[str, str]:
        """Our environment without AWS settings, plus dummy credentials and the S3 endpoint."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            {
                "AWS_ACCESS_KEY_ID": "test",
                "AWS_SECRET_ACCESS_KEY": "test",
                "AWS_DEFAULT_REGION": REGION,
                "AWS_ENDPOINT_URL_S3": self.endpoint,
                "AWS_EC2_METADATA_DISABLED": "true",
                # no profile files from the user running the bench
                "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            }
        )
        return env

    def close(self) -> None:
        """Stop the CloudTrail shim."""
        self.shim.close()

    def __enter__(self) -> CloudTrailArchive:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def ensure_awscli(venv: Path = AWSCLI_VENV) -> Path:
    """The ``aws`` executable of ``venv``, creating the venv and installing awscli if needed.

    Raises:
        RuntimeError: the venv cannot be created or awscli cannot be installed.
    """
    aws = venv / "bin" / "aws"
    stamp = venv / ".installed-awscli"
    if aws.exists() and stamp.exists():
        return aws
    steps = [
        ["python3.11", "-m", "venv", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", AWSCLI_REQUIREMENT],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(step)} failed:\n{done.stdout}{done.stderr}")
    stamp.write_text(AWSCLI_REQUIREMENT + "\n")
    return aws


def awscli_version(aws: Path) -> tuple[str, float]:
    """``aws --version``'s first word and its wall time (the CLI's start-up floor)."""
    started = time.perf_counter()
    done = subprocess.run([str(aws), "--version"], capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - started
    return (done.stdout or done.stderr).split()[0], elapsed


def _subject(value: object) -> tuple[str, str | None]:
    """(id, type) of an ``actor`` or ``resource``: a string or an object with ``id``."""
    if isinstance(value, Mapping):
        kind = value.get("type")
        return str(value.get("id")), kind if isinstance(kind, str) else None
    return str(value), None


def _event_time(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"event without a 'time' string: {value!r}")
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0)


def cloudtrail_record(event: Mapping[str, Any], index: int) -> tuple[dict[str, Any], datetime]:
    """One of our events as a CloudTrail record, and the record's ``eventTime``.

    The inverse of ``audit_archiver.core.formats.cloudtrail``: ``actor`` is
    the IAM user (``userIdentity.arn``), ``action`` is ``eventName`` and its
    part before the first ``.`` names ``eventSource``, ``resource`` is
    ``resources[0]``, ``time`` is ``eventTime`` (to the second, as CloudTrail
    writes it), ``source_ip`` is ``sourceIPAddress``, ``details`` are the
    ``requestParameters``, an ``outcome`` other than success is ``errorCode``,
    and any other field goes to ``additionalEventData``. ``index`` makes
    ``eventID`` (and ``requestID`` when the details have no ``request_id``).

    Raises:
        ValueError: the event has no RFC 3339 ``time``.
    """
    moment = _event_time(event.get("time"))
    actor, _ = _subject(event.get("actor"))
    resource, resource_type = _subject(event.get("resource"))
    action = str(event.get("action"))
    service = action.partition(".")[0] or "audit"
    details = event.get("details")
    digest = hashlib.sha256(index.to_bytes(8, "big")).digest()
    request_id = details.get("request_id") if isinstance(details, Mapping) else None
    if request_id is None:
        request_id = uuid.UUID(bytes=digest[16:])
    record: dict[str, Any] = {
        "eventVersion": "1.11",
        "userIdentity": {
            "type": "IAMUser",
            "principalId": "AIDA" + base64.b32encode(digest[:13]).decode()[:17],
            "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/{actor}",
            "accountId": ACCOUNT_ID,
            "accessKeyId": "AKIA" + base64.b32encode(digest[13:26]).decode()[:16],
            "userName": actor,
        },
        "eventTime": moment.strftime(_TIME_FORMAT),
        "eventSource": f"{service}.amazonaws.com",
        "eventName": action,
        "awsRegion": REGION,
        "sourceIPAddress": str(event.get("source_ip", "AWS Internal")),
        "userAgent": _USER_AGENT,
        "requestParameters": details if isinstance(details, Mapping) else None,
        "responseElements": None,
        "requestID": str(request_id),
        "eventID": str(uuid.UUID(bytes=digest[:16], version=4)),
        "readOnly": action.rpartition(".")[2].startswith(_READ_VERBS),
        "resources": [
            {
                "accountId": ACCOUNT_ID,
                "type": resource_type or "resource",
                "ARN": f"arn:aws:{service}:{REGION}:{ACCOUNT_ID}:{resource}",
            }
        ],
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": ACCOUNT_ID,
        "eventCategory": "Management",
    }
    outcome = event.get("outcome")
    if outcome not in (None, "success"):
        record["errorCode"] = str(outcome)
    known = {"actor", "action", "resource", "time", "source_ip", "details", "outcome"}
    extra = {k: v for k, v in event.items() if k not in known}
    if extra:
        record["additionalEventData"] = extra
    return record, moment


def _log_key(delivered: datetime, unique: str) -> str:
    return (
        f"AWSLogs/{ACCOUNT_ID}/CloudTrail/{REGION}/{delivered:%Y/%m/%d}/"
        f"{ACCOUNT_ID}_CloudTrail_{REGION}_{delivered:%Y%m%dT%H%MZ}_{unique}.json.gz"
    )


def _digest_key(end: datetime) -> str:
    return (
        f"AWSLogs/{ACCOUNT_ID}/CloudTrail-Digest/{REGION}/{end:%Y/%m/%d}/"
        f"{ACCOUNT_ID}_CloudTrail-Digest_{REGION}_{TRAIL_NAME}_{REGION}_{end:%Y%m%dT%H%M%SZ}.json.gz"
    )


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class _LogFile:
    key: str
    body: bytes
    records: int
    raw_bytes: int
    sha256: str
    oldest: datetime
    newest: datetime
    delivered: datetime


def _log_files(events: Sequence[bytes], per_object: int, rng: random.Random) -> Iterator[_LogFile]:
    for first in range(0, len(events), per_object):
        records = []
        times = []
        for index in range(first, min(first + per_object, len(events))):
            record, moment = cloudtrail_record(json.loads(events[index]), index)
            records.append(record)
            times.append(moment)
        raw = json.dumps({"Records": records}, separators=(",", ":")).encode()
        delivered = (max(times) + DELIVERY_LAG).replace(second=0)
        unique = "".join(rng.choices(_UNIQUE_ALPHABET, k=16))
        yield _LogFile(
            key=_log_key(delivered, unique),
            body=gzip.compress(raw, compresslevel=6, mtime=0),
            records=len(records),
            raw_bytes=len(raw),
            sha256=hashlib.sha256(raw).hexdigest(),
            oldest=min(times),
            newest=max(times),
            delivered=delivered,
        )


def _layout(
    bucket: str, events: Sequence[bytes], per_object: int, key: rsa.RSAPrivateKey, fingerprint: str
) -> _Layout:
    """Log files and the signed digest chain over them: pure, no IO."""
    logs = sorted(_log_files(events, per_object, random.Random(len(events))), key=lambda f: f.key)
    if not logs:
        raise ValueError("no events")
    by_hour: dict[datetime, list[_LogFile]] = {}
    for log in logs:
        by_hour.setdefault(_hour(log.delivered), []).append(log)
    first_hour, last_hour = min(by_hour), max(by_hour)
    objects = [_StoredObject(log.key, log.body) for log in logs]
    digest_keys: list[str] = []
    previous: tuple[str, str, str] | None = None  # key, sha256 of inflated digest, signature
    start = first_hour
    while start <= last_hour:
        end = start + DIGEST_PERIOD
        listed = by_hour.get(start, [])
        digest_key = _digest_key(end)
        digest: dict[str, Any] = {
            "awsAccountId": ACCOUNT_ID,
            "digestStartTime": start.strftime(_TIME_FORMAT),
            "digestEndTime": end.strftime(_TIME_FORMAT),
            "digestS3Bucket": bucket,
            "digestS3Object": digest_key,
            "digestPublicKeyFingerprint": fingerprint,
            "digestSignatureAlgorithm": _SIGNATURE_ALGORITHM,
            "newestEventTime": max(f.newest for f in listed).strftime(_TIME_FORMAT)
            if listed
            else None,
            "oldestEventTime": min(f.oldest for f in listed).strftime(_TIME_FORMAT)
            if listed
            else None,
            "previousDigestS3Bucket": bucket if previous else None,
            "previousDigestS3Object": previous[0] if previous else None,
            "previousDigestHashValue": previous[1] if previous else None,
            "previousDigestHashAlgorithm": "SHA-256" if previous else None,
            "previousDigestSignature": previous[2] if previous else None,
            "logFiles": [
                {
                    "s3Bucket": bucket,
                    "s3Object": f.key,
                    "hashValue": f.sha256,
                    "hashAlgorithm": "SHA-256",
                    "newestEventTime": f.newest.strftime(_TIME_FORMAT),
                    "oldestEventTime": f.oldest.strftime(_TIME_FORMAT),
                }
                for f in listed
            ],
        }
        inflated = json.dumps(digest, separators=(",", ":")).encode()
        inflated_sha256 = hashlib.sha256(inflated).hexdigest()
        to_sign = (
            f"{digest['digestEndTime']}\n{bucket}/{digest_key}\n{inflated_sha256}\n"
            f"{previous[2] if previous else 'null'}"
        ).encode()
        signature = key.sign(to_sign, padding.PKCS1v15(), hashes.SHA256()).hex()
        objects.append(
            _StoredObject(
                digest_key,
                gzip.compress(inflated, compresslevel=6, mtime=0),
                {"signature": signature, "signature-algorithm": _SIGNATURE_ALGORITHM},
            )
        )
        digest_keys.append(digest_key)
        previous = (digest_key, inflated_sha256, signature)
        start = end
    return _Layout(
        objects=tuple(objects),
        log_records={f.key: f.records for f in logs},
        digest_keys=tuple(digest_keys),
        start=first_hour,
        end=last_hour + DIGEST_PERIOD,
        raw_log_bytes=sum(f.raw_bytes for f in logs),
        stored_log_bytes=sum(len(f.body) for f in logs),
    )


def _bench() -> Any:
    """scripts/bench.py, imported only when this module makes its own events or
    server: run from bench.py, that would load bench.py a second time, so
    bench.py passes event lines and an endpoint. Untyped on purpose: mypy then
    checks this module, not the caller's."""
    return importlib.import_module("bench")


def _make_body(first: int, count: int) -> bytes:
    """scripts/bench.py's ``make_body``: ``count`` events of ~300 bytes as NDJSON."""
    body: bytes = _bench().make_body(first, count)
    return body


def _event_lines(events: Sequence[bytes] | int) -> Sequence[bytes]:
    if not isinstance(events, int):
        return [line for line in events if line.strip()]
    return _make_body(0, events).splitlines()


_bucket_numbers = iter(range(1, 1 << 31))


def prepare_cloudtrail_archive(
    endpoint: str,
    events: Sequence[bytes] | int,
    per_object: int,
    *,
    bucket: str | None = None,
    aws: Path | None = None,
) -> CloudTrailArchive:
    """Build a CloudTrail archive of ``events`` in a new versioned bucket at ``endpoint``.

    ``events`` are our event lines (JSON objects with a ``time``), or a count
    of scripts/bench.py's ``make_body`` events. Makes a fresh RSA-2048 key,
    signs the digests with it, uploads everything, and starts the shim that
    serves the trail and the public key. The private key is dropped on return.

    Raises:
        ValueError: no events, or an event without an RFC 3339 ``time``.
        RuntimeError: awscli cannot be installed.
    """
    if per_object < 1:
        raise ValueError("per_object must be at least 1")
    aws = aws or ensure_awscli()
    lines = _event_lines(events)
    bucket = bucket or f"cloudtrail-bench-{os.getpid()}-{next(_bucket_numbers)}"
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.PKCS1
    )
    fingerprint = hashlib.md5(der, usedforsecurity=False).hexdigest()
    layout = _layout(bucket, lines, per_object, private_key, fingerprint)
    del private_key

    client = local_client(endpoint)
    client.create_bucket(Bucket=bucket)
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})

    def put(item: _StoredObject) -> None:
        client.put_object(Bucket=bucket, Key=item.key, Body=item.body, Metadata=dict(item.metadata))

    with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
        list(pool.map(put, layout.objects))

    trail = {
        "Name": TRAIL_NAME,
        "S3BucketName": bucket,
        "IncludeGlobalServiceEvents": True,
        "IsMultiRegionTrail": False,
        "HomeRegion": REGION,
        "TrailARN": TRAIL_ARN,
        "LogFileValidationEnabled": True,
        "HasCustomEventSelectors": False,
        "HasInsightSelectors": False,
        "IsOrganizationTrail": False,
    }
    public_key = {
        "Value": base64.b64encode(der).decode(),  # a JSON 1.1 blob
        "ValidityStartTime": layout.start.timestamp(),
        "ValidityEndTime": layout.end.timestamp(),
        "Fingerprint": fingerprint,
    }
    return CloudTrailArchive(
        endpoint=endpoint,
        bucket=bucket,
        trail_arn=TRAIL_ARN,
        start=layout.start,
        end=layout.end,
        events=len(lines),
        per_object=per_object,
        log_records=layout.log_records,
        digest_keys=layout.digest_keys,
        raw_log_bytes=layout.raw_log_bytes,
        stored_log_bytes=layout.stored_log_bytes,
        aws=aws,
        shim=CloudTrailShim(trail, public_key),
    )


@dataclass(frozen=True)
class _Finished:
    exit_code: int
    wall_seconds: float
    usage: resource.struct_rusage
    peak_rss_kib: int
    stdout: str
    stderr: str


_VM_HWM = re.compile(r"^VmHWM:\s+(\d+) kB$", re.MULTILINE)
_RSS_SAMPLE_SECONDS = 0.02


def _sample_peak_rss(pid: int, done: threading.Event, peak: list[int]) -> None:
    """Keep ``peak[0]`` at the process's VmHWM until it exits or ``done`` is set.

    Not ``ru_maxrss``: Linux carries the high-water mark across exec, so a child
    of this (large) process would report at least our own peak.
    """
    status = Path(f"/proc/{pid}/status")
    while not done.is_set():
        try:
            found = _VM_HWM.search(status.read_text())
        except OSError:
            return
        if found is None:  # a zombie has no memory left
            return
        peak[0] = max(peak[0], int(found.group(1)))
        done.wait(_RSS_SAMPLE_SECONDS)


def _run(command: list[str], env: Mapping[str, str]) -> _Finished:
    """Run ``command`` to its end: exit code, wall time, rusage (``os.wait4``), output."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, env=dict(env))
        done = threading.Event()
        peak = [0]
        sampler = threading.Thread(target=_sample_peak_rss, args=(process.pid, done, peak))
        sampler.start()
        watchdog = threading.Timer(ROUND_TIMEOUT_SECONDS, process.kill)
        watchdog.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            watchdog.cancel()
            done.set()
        wall = time.perf_counter() - started
        sampler.join()
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return _Finished(
            exit_code=process.returncode,
            wall_seconds=wall,
            usage=usage,
            peak_rss_kib=peak[0],
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
        )


def cloudtrail_round(archive: CloudTrailArchive) -> CloudTrailTiming:
    """Run ``validate-logs`` over the whole archive once and time it.

    Raises:
        CloudTrailValidationError: the CLI failed, or did not report every
            digest and log file of the archive valid (and nothing invalid).
    """
    finished = _run(archive.command(), archive.environment())
    valid: dict[str, set[str]] = {"Digest": set(), "Log": set()}
    summary: dict[str, tuple[int, int]] = {}
    for line in finished.stdout.splitlines():
        if match := _VALID_LINE.match(line):
            if match.group(2) == archive.bucket:
                valid[match.group(1)].add(match.group(3))
        elif match := _SUMMARY_LINE.match(line):
            summary[match.group(3)] = (int(match.group(1)), int(match.group(2)))
    expected = (len(archive.digest_keys), len(archive.log_records))
    found = (len(valid["Digest"]), len(valid["Log"]))
    complete = (
        finished.exit_code == 0
        and valid["Digest"] == set(archive.digest_keys)
        and valid["Log"] == set(archive.log_records)
        and summary.get("digest") == (expected[0], expected[0])
        and summary.get("log") == (expected[1], expected[1])
        and "INVALID" not in finished.stderr
    )
    if not complete:
        raise CloudTrailValidationError(
            "validate-logs did not report the whole archive valid",
            exit_code=finished.exit_code,
            expected=expected,
            reported_valid=found,
            invalid_lines=[line for line in finished.stderr.splitlines() if line.strip()],
        )
    return CloudTrailTiming(
        wall_seconds=finished.wall_seconds,
        cpu_seconds=finished.usage.ru_utime + finished.usage.ru_stime,
        user_seconds=finished.usage.ru_utime,
        sys_seconds=finished.usage.ru_stime,
        peak_rss_mib=finished.peak_rss_kib / 1024,
        events=sum(archive.log_records[k] for k in valid["Log"]),
        digest_files=found[0],
        log_files=found[1],
        exit_code=finished.exit_code,
    )


def tamper_log_file(archive: CloudTrailArchive, index: int = 0) -> str:
    """Overwrite the ``index``-th log file (a new version) with other, well-formed bytes.

    The new body is a valid gzip of the same JSON with one record's
    ``eventName`` changed, so only the hash can tell. Returns the key.
    """
    key = sorted(archive.log_records)[index]
    client = local_client(archive.endpoint)
    body = gzip.decompress(client.get_object(Bucket=archive.bucket, Key=key)["Body"].read())
    changed = json.loads(body)
    changed["Records"][0]["eventName"] += "-tampered"
    raw = json.dumps(changed, separators=(",", ":")).encode()
    client.put_object(Bucket=archive.bucket, Key=key, Body=gzip.compress(raw, mtime=0))
    return key


def tamper_digest_file(archive: CloudTrailArchive, index: int = 0) -> str:
    """Overwrite the ``index``-th digest with its last log file entry removed (hiding a
    deletion), keeping its signature metadata. Returns the key."""
    key = archive.digest_keys[index]
    client = local_client(archive.endpoint)
    stored = client.get_object(Bucket=archive.bucket, Key=key)
    digest = json.loads(gzip.decompress(stored["Body"].read()))
    digest["logFiles"].pop()
    raw = json.dumps(digest, separators=(",", ":")).encode()
    client.put_object(
        Bucket=archive.bucket,
        Key=key,
        Body=gzip.compress(raw, mtime=0),
        Metadata=stored["Metadata"],
    )
    return key


def _refusal(archive: CloudTrailArchive) -> CloudTrailValidationError:
    try:
        cloudtrail_round(archive)
    except CloudTrailValidationError as e:
        return e
    raise AssertionError("validate-logs passed a tampered archive")


def _timing_json(archive: CloudTrailArchive, timing: CloudTrailTiming) -> dict[str, Any]:
    return {
        "events": archive.events,
        "per_object": archive.per_object,
        "digest_files": timing.digest_files,
        "log_files": timing.log_files,
        "raw_log_mb": archive.raw_log_bytes / 1e6,
        "stored_log_mb": archive.stored_log_bytes / 1e6,
        "wall_s": timing.wall_seconds,
        "cpu_s": timing.cpu_seconds,
        "user_s": timing.user_seconds,
        "sys_s": timing.sys_seconds,
        "peak_rss_mib": timing.peak_rss_mib,
        "events_per_s": timing.events / timing.wall_seconds,
        "exit_code": timing.exit_code,
    }


def _smoke_events(count: int, first_time: datetime, spacing: timedelta) -> list[bytes]:
    """``make_body``'s events re-timed ``spacing`` apart, to span several digest hours."""
    lines = []
    for index, line in enumerate(_make_body(0, count).splitlines()):
        event = json.loads(line)
        event["time"] = (first_time + index * spacing).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        lines.append(json.dumps(event, separators=(",", ":")).encode())
    return lines


def smoke(endpoint: str) -> dict[str, Any]:
    """A small archive over three digest hours validates; then one overwritten log
    file, and then one digest rewritten under its old signature, are reported invalid.

    Raises:
        AssertionError: the CLI did not give exactly those verdicts.
    """
    events = _smoke_events(3_000, datetime(2026, 11, 23, 10, 20, tzinfo=UTC), timedelta(seconds=3))
    with prepare_cloudtrail_archive(endpoint, events, 100) as archive:
        timing = cloudtrail_round(archive)
        assert len(archive.digest_keys) >= 3, archive.digest_keys
        assert timing.events == len(events)
        s3 = f"s3://{archive.bucket}"
        log_key = tamper_log_file(archive, index=len(archive.log_records) - 1)
        refused = _refusal(archive)
        assert refused.exit_code == 1, refused
        assert list(refused.invalid_lines) == [
            f"Log file\t{s3}/{log_key}\tINVALID: hash value doesn't match"
        ], refused.invalid_lines
        assert refused.reported_valid == (len(archive.digest_keys), len(archive.log_records) - 1)
        digest_key = tamper_digest_file(archive, index=0)
        refused_digest = _refusal(archive)
        assert refused_digest.exit_code == 1, refused_digest
        assert refused_digest.invalid_lines[-1:] == (
            f"Digest file\t{s3}/{digest_key}\tINVALID: signature verification failed",
        ), refused_digest.invalid_lines
        return {
            "smoke": "ok",
            "valid_round": _timing_json(archive, timing),
            "tampered_log": log_key,
            "log_verdict": refused.invalid_lines[0].split("\t")[-1],
            "tampered_digest": digest_key,
            "digest_verdict": refused_digest.invalid_lines[-1].split("\t")[-1],
            "cloudtrail_calls": archive.shim.calls,
        }


@contextlib.contextmanager
def _endpoint(given: str | None) -> Iterator[str]:
    """``given``, or a fresh ``audit-archiver local-s3`` in a process of its own."""
    if given:
        yield given
        return
    server = _bench().LocalS3()
    try:
        yield server.endpoint
    finally:
        server.stop()


def main() -> None:
    """One prepare and one round (or ``--smoke``), printed as JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--endpoint", help="local S3 URL (default: start audit-archiver local-s3)")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--per-object", type=int, default=500)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    aws = ensure_awscli()
    version, startup = awscli_version(aws)
    with _endpoint(args.endpoint) as endpoint:
        if args.smoke:
            result = smoke(endpoint)
        else:
            started = time.perf_counter()
            with prepare_cloudtrail_archive(endpoint, args.events, args.per_object) as archive:
                prepared = time.perf_counter() - started
                timing = cloudtrail_round(archive)
                result = {
                    "benchmark": "cloudtrail-validate-logs",
                    **_timing_json(archive, timing),
                    "prepare_s": prepared,
                    "cloudtrail_calls": archive.shim.calls,
                }
    result.update(
        {
            "awscli": version,
            "cli_startup_s": startup,
            "loadavg": os.getloadavg(),
            "cpus": len(os.sched_getaffinity(0)),
        }
    )
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
