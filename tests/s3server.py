"""moto's S3 server for the tests: one per session, fresh buckets per test.

The server runs in this process (``ThreadedMotoServer``), so a test can reach
its state directly: :func:`moto_s3_backend` returns the backend that holds the
buckets the HTTP endpoint serves (used to tamper with stored bytes).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from audit_archiver.storage import local_s3
from audit_archiver.storage.base import ObjectInfo
from audit_archiver.storage.s3 import S3Store

MOTO_ACCOUNT_ID = "123456789012"  # moto's account for any non-AWS-looking access key
_counter = itertools.count()


@contextmanager
def moto_server() -> Iterator[str]:
    """Run moto's S3 server on a free loopback port; yield its endpoint URL.

    ``start_server`` returns once the server answers HTTP (it polls; no fixed sleep).
    """
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    with local_s3.start_server("127.0.0.1", 0) as server:
        yield server.endpoint_url


@contextmanager
def dummy_aws_environment() -> Iterator[None]:
    """Dummy credentials and region in ``os.environ``, real AWS settings hidden.

    The variables it touches are restored exactly afterwards.
    """
    hidden = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")
    wanted = {
        **local_s3.DUMMY_ENVIRONMENT,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    saved = {name: os.environ.get(name) for name in (*hidden, *wanted)}
    try:
        for name in hidden:
            os.environ.pop(name, None)
        os.environ.update(wanted)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def s3_client(endpoint: str) -> Any:
    """A plain boto3 S3 client for the test server (dummy credentials)."""
    return local_s3.local_client(endpoint)


def unique_bucket_name(prefix: str = "test") -> str:
    """A bucket name no other test in this session uses (3-63 lowercase characters)."""
    return f"{prefix}-{os.getpid()}-{next(_counter)}"[:63]


def create_locked_bucket(
    client: Any, name: str, *, retention_days: int = 1, mode: str = "COMPLIANCE"
) -> str:
    """Create an Object Lock bucket (versioned) with a default retention rule; return its name."""
    local_s3.create_locked_bucket(client, name, retention_days=retention_days, mode=mode)
    return name


def create_plain_bucket(client: Any, name: str) -> str:
    """Create a bucket without versioning or Object Lock; return its name."""
    client.create_bucket(Bucket=name)
    return name


def moto_s3_backend() -> Any:
    """The in-process moto backend behind the server (``buckets[name].keys`` etc.)."""
    from moto.backends import get_backend

    return get_backend("s3")[MOTO_ACCOUNT_ID]["global"]


def overwrite_stored_bytes(bucket: str, key: str, version_id: str, data: bytes) -> None:
    """Replace the bytes moto stores for one version, leaving its checksum and ETag alone."""
    versions = moto_s3_backend().buckets[bucket].keys.getlist(key)
    (stored,) = [v for v in versions if v.version_id == version_id]
    stored.value = data


def held_object(
    endpoint: str, bucket: str, data: bytes, retain_until: datetime
) -> tuple[S3Store, ObjectInfo, list[str]]:
    """An :class:`S3Store` over ``bucket`` holding ``seg/0`` (``data``, retained until
    ``retain_until``, legal hold on), and the S3 operations its client calls from then on."""
    client = s3_client(endpoint)
    store = S3Store(bucket, client)
    info = store.put_new("seg/0", data, retain_until=retain_until)
    client.put_object_legal_hold(
        Bucket=bucket, Key="seg/0", VersionId=info.version_id, LegalHold={"Status": "ON"}
    )
    operations: list[str] = []
    client.meta.events.register("before-call.s3", lambda model, **_: operations.append(model.name))
    return store, info, operations
