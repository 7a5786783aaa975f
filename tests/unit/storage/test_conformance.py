"""One behaviour, every driver: the ObjectStore protocol as the core relies on it.

Runs against a local directory and against S3Store talking HTTP to moto's
server (a fresh Object Lock bucket per test).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from audit_archiver.errors import (
    IntegrityError,
    ObjectExistsError,
    ObjectNotFoundError,
    ObjectTooLargeError,
)
from audit_archiver.storage.base import ObjectStore, ObjectStream
from audit_archiver.storage.localdir import LocalDirectoryStore
from audit_archiver.storage.s3 import S3Store

RETAIN_UNTIL = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)


@pytest.fixture(params=["localdir", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "localdir":
        return LocalDirectoryStore(tmp_path)
    endpoint, bucket = request.getfixturevalue("locked_bucket")
    return S3Store.connect(bucket, region="us-east-1", endpoint_url=endpoint)


def test_put_new_then_get_head_list(store: ObjectStore) -> None:
    info = store.put_new("audit/s1/000.zst", b"segment zero", retain_until=RETAIN_UNTIL)
    assert info.key == "audit/s1/000.zst"
    assert info.size == 12
    assert store.get("audit/s1/000.zst") == b"segment zero"
    head = store.head("audit/s1/000.zst")
    assert (head.key, head.size, head.version_id) == ("audit/s1/000.zst", 12, info.version_id)
    (listed,) = store.list_versions("audit/")
    assert (listed.key, listed.version_id, listed.size) == ("audit/s1/000.zst", info.version_id, 12)
    assert listed.is_latest
    assert not listed.is_delete_marker
    assert listed.last_modified is not None
    assert listed.last_modified.tzinfo is not None


def test_fetch_returns_the_bytes_with_what_head_reports(store: ObjectStore) -> None:
    info = store.put_new("audit/s1/000.zst", b"segment zero", retain_until=RETAIN_UNTIL)
    data, fetched = store.fetch("audit/s1/000.zst")
    assert data == b"segment zero"
    assert fetched == store.head("audit/s1/000.zst")
    assert (fetched.key, fetched.version_id, fetched.size) == (
        "audit/s1/000.zst",
        info.version_id,
        12,
    )
    if info.version_id is not None:
        assert store.fetch("audit/s1/000.zst", info.version_id) == (data, fetched)
    with pytest.raises(ObjectNotFoundError) as raised:
        store.fetch("absent/key")
    assert raised.value.key == "absent/key"


def test_put_new_never_overwrites(store: ObjectStore) -> None:
    first = store.put_new("k/one", b"original", retain_until=None)
    with pytest.raises(ObjectExistsError) as raised:
        store.put_new("k/one", b"replacement", retain_until=None)
    assert raised.value.key == "k/one"
    assert store.get("k/one") == b"original"
    assert [(v.key, v.version_id) for v in store.list_versions("k/")] == [
        ("k/one", first.version_id)
    ]


def test_missing_key_is_not_found(store: ObjectStore) -> None:
    store.put_new("present", b"x", retain_until=None)
    with pytest.raises(ObjectNotFoundError) as raised:
        store.get("absent/key")
    assert raised.value.key == "absent/key"
    with pytest.raises(ObjectNotFoundError):
        store.head("absent/key")
    assert list(store.list_versions("absent/")) == []


def test_list_versions_orders_keys_and_filters_by_prefix(store: ObjectStore) -> None:
    for key in ("b/2", "a/1", "b/10", "ab/x", "b/1", "c"):
        store.put_new(key, key.encode(), retain_until=None)
    assert [v.key for v in store.list_versions("")] == ["a/1", "ab/x", "b/1", "b/10", "b/2", "c"]
    assert [v.key for v in store.list_versions("b/")] == ["b/1", "b/10", "b/2"]
    assert [v.key for v in store.list_versions("a")] == ["a/1", "ab/x"]
    assert [(v.key, v.size) for v in store.list_versions("b/1")] == [("b/1", 3), ("b/10", 4)]


# --- open_object: bounded streaming reads -------------------------------------------------


def read_all(stream: ObjectStream, size: int = 5) -> bytes:
    chunks = []
    while chunk := stream.read(size):
        assert len(chunk) <= size
        chunks.append(chunk)
    assert stream.read(size) == b""  # the end stays the end
    return b"".join(chunks)


def test_open_object_streams_the_bytes_with_what_head_reports(store: ObjectStore) -> None:
    data = bytes(range(256)) * 10
    info = store.put_new("audit/s1/000.zst", data, retain_until=RETAIN_UNTIL)
    with store.open_object("audit/s1/000.zst", max_bytes=len(data)) as stream:
        assert stream.info == store.head("audit/s1/000.zst")
        assert (stream.info.key, stream.info.version_id, stream.info.size) == (
            "audit/s1/000.zst",
            info.version_id,
            2560,
        )
        assert read_all(stream, 1000) == data
    stream = store.open_object("audit/s1/000.zst", max_bytes=10**9)
    try:
        assert read_all(stream, 7) == data
    finally:
        stream.close()


def test_open_object_of_an_empty_object(store: ObjectStore) -> None:
    store.put_new("k/empty", b"", retain_until=None)
    with store.open_object("k/empty", max_bytes=0) as stream:
        assert stream.info.size == 0
        assert stream.read(10) == b""


def test_open_object_refuses_an_object_over_the_limit(store: ObjectStore) -> None:
    store.put_new("k/big", b"x" * 101, retain_until=None)
    with pytest.raises(ObjectTooLargeError) as raised:
        store.open_object("k/big", max_bytes=100)
    error = raised.value
    assert isinstance(error, IntegrityError)
    assert (error.key, error.expected, error.found) == ("k/big", "100", "101")
    assert (error.limit, error.size) == (100, 101)
    with store.open_object("k/big", max_bytes=101) as stream:
        assert read_all(stream, 64) == b"x" * 101


def test_open_object_of_a_missing_object(store: ObjectStore) -> None:
    store.put_new("present", b"x", retain_until=None)
    with pytest.raises(ObjectNotFoundError) as raised:
        store.open_object("absent/key", max_bytes=10)
    assert raised.value.key == "absent/key"


def test_open_object_of_a_version(store: ObjectStore) -> None:
    info = store.put_new("k/v", b"first version", retain_until=None)
    if info.version_id is None:  # a folder has no versions: asking for one finds nothing
        with pytest.raises(ObjectNotFoundError):
            store.open_object("k/v", "v1", max_bytes=100)
        return
    with store.open_object("k/v", info.version_id, max_bytes=100) as stream:
        assert stream.info.version_id == info.version_id
        assert read_all(stream) == b"first version"
    with pytest.raises(ObjectNotFoundError):
        store.open_object("k/v", "not-a-version-id", max_bytes=100)


def test_read_head_reads_only_the_first_bytes(store: ObjectStore) -> None:
    info = store.put_new("k/head", b"0123456789", retain_until=None)
    assert store.read_head("k/head", info.version_id, size=4) == b"0123"
    assert store.read_head("k/head", size=100) == b"0123456789"
    store.put_new("k/empty", b"", retain_until=None)
    assert store.read_head("k/empty", size=8) == b""
    with pytest.raises(ObjectNotFoundError):
        store.read_head("k/absent", size=8)
