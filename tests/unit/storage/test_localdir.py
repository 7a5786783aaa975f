from __future__ import annotations

import os
from pathlib import Path

import pytest

from audit_archiver.errors import ObjectExistsError, ObjectNotFoundError, StorageError
from audit_archiver.storage.localdir import LocalDirectoryStore


def test_put_get_head_list(tmp_path: Path) -> None:
    store = LocalDirectoryStore(tmp_path)
    store.put_new("s/b", b"two", retain_until=None)
    store.put_new("s/a", b"one", retain_until=None)
    store.put_new("t/c", b"three", retain_until=None)
    assert store.get("s/a") == b"one"
    assert store.head("t/c").size == 5
    assert [v.key for v in store.list_versions("")] == ["s/a", "s/b", "t/c"]
    assert [v.key for v in store.list_versions("s/")] == ["s/a", "s/b"]
    assert not list(tmp_path.rglob(".*"))


def test_put_never_overwrites(tmp_path: Path) -> None:
    store = LocalDirectoryStore(tmp_path)
    store.put_new("k", b"first", retain_until=None)
    with pytest.raises(ObjectExistsError):
        store.put_new("k", b"second", retain_until=None)
    assert store.get("k") == b"first"


def test_missing_objects_and_bad_keys(tmp_path: Path) -> None:
    store = LocalDirectoryStore(tmp_path)
    with pytest.raises(ObjectNotFoundError):
        store.get("nope")
    with pytest.raises(ObjectNotFoundError):
        store.head("nope")
    with pytest.raises(ObjectNotFoundError):
        store.get("nope", version_id="v1")
    for key in ("../escape", "a//b", "", "a/./b"):
        with pytest.raises(StorageError, match="invalid object key"):
            store.get(key)
    with pytest.raises(StorageError, match="not a directory"):
        list(LocalDirectoryStore(tmp_path / "absent").list_versions(""))


def test_listing_skips_hidden_files_and_links(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "real").write_bytes(b"x")
    (tmp_path / "s" / ".partial.tmp").write_bytes(b"x")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_bytes(b"x")
    os.symlink(tmp_path / "s" / "real", tmp_path / "s" / "link")
    assert [v.key for v in LocalDirectoryStore(tmp_path).list_versions("")] == ["s/real"]
