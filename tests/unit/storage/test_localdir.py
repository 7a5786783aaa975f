from __future__ import annotations

import os
from pathlib import Path

import pytest

from audit_archiver.errors import (
    ObjectExistsError,
    ObjectNotFoundError,
    ObjectTooLargeError,
    StorageError,
)
from audit_archiver.storage import localdir
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


# --- a hostile folder ---------------------------------------------------------------------


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def make_nested(root: Path, depth: int, name: str = "d") -> str:
    """``depth`` nested folders made relative to each other (no long paths); their key."""
    descriptor = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir(name, dir_fd=descriptor)
            following = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=descriptor)
            os.close(descriptor)
            descriptor = following
        file = os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=descriptor)
        os.write(file, b"deep")
        os.close(file)
    finally:
        os.close(descriptor)
    return "/".join([name] * depth + ["leaf"])


def remove_nested(root: Path, depth: int, name: str = "d") -> None:
    """Undo make_nested from the bottom up (shutil.rmtree recurses, and fails this deep)."""
    flags = os.O_RDONLY | os.O_DIRECTORY
    descriptor = os.open(root, flags)
    for _ in range(depth):
        following = os.open(name, flags, dir_fd=descriptor)
        os.close(descriptor)
        descriptor = following
    os.unlink("leaf", dir_fd=descriptor)
    for _ in range(depth):
        parent = os.open("..", flags, dir_fd=descriptor)
        os.close(descriptor)
        os.rmdir(name, dir_fd=parent)
        descriptor = parent
    os.close(descriptor)


def test_thousands_of_nested_folders_list_and_read(tmp_path: Path) -> None:
    key = make_nested(tmp_path, 1500)
    try:
        before = open_descriptors()
        store = LocalDirectoryStore(tmp_path)
        (listed,) = store.list_versions("")
        assert (listed.key, listed.size) == (key, 4)
        with store.open_object(key, max_bytes=100) as stream:
            assert stream.read(100) == b"deep"
        assert store.get(key) == b"deep"
        assert open_descriptors() == before
    finally:
        remove_nested(tmp_path, 1500)
    assert list(tmp_path.iterdir()) == []


def test_a_wide_and_deep_tree_stays_within_the_descriptor_budget(tmp_path: Path) -> None:
    # Every level holds a file folder and the next level: an ancestor stays pending at
    # each depth, so the walk must close folders and reopen them from the root.
    expected = []
    level = tmp_path
    parts: list[str] = []
    for depth in range(200):
        (level / "a").mkdir()
        (level / "a" / "f").write_bytes(b"x" * depth)
        expected.append(("/".join([*parts, "a", "f"]), depth))
        level = level / "b"
        parts.append("b")
        level.mkdir()
    before = open_descriptors()
    listed = [(v.key, v.size) for v in LocalDirectoryStore(tmp_path).list_versions("")]
    assert listed == sorted(expected)
    assert open_descriptors() == before


def test_links_are_neither_listed_nor_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "s1").mkdir(parents=True)
    (outside / "s1" / "000.zst").write_bytes(b"forged")
    archive = tmp_path / "archive"
    (archive / "p").mkdir(parents=True)
    os.symlink(outside / "s1", archive / "p" / "s1")  # a folder link
    os.symlink(outside / "s1" / "000.zst", archive / "p" / "file-link")
    store = LocalDirectoryStore(archive)
    assert list(store.list_versions("")) == []
    for key in ("p/s1/000.zst", "p/file-link"):
        with pytest.raises(StorageError, match="symbolic link"):
            store.get(key)
        with pytest.raises(StorageError, match="symbolic link"):
            store.open_object(key, max_bytes=100)
        with pytest.raises(StorageError, match="symbolic link"):
            store.head(key)


def test_a_file_swapped_for_a_link_after_listing_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret").write_bytes(b"outside the archive")
    (tmp_path / "a" / "s1").mkdir(parents=True)
    (tmp_path / "a" / "s1" / "000.zst").write_bytes(b"segment")
    store = LocalDirectoryStore(tmp_path / "a")
    (listed,) = store.list_versions("")
    (tmp_path / "a" / "s1" / "000.zst").unlink()
    os.symlink(tmp_path / "secret", tmp_path / "a" / "s1" / "000.zst")
    before = open_descriptors()
    with pytest.raises(StorageError, match="symbolic link") as raised:
        store.open_object(listed.key, max_bytes=1000)
    assert not isinstance(raised.value, ObjectNotFoundError)
    with pytest.raises(StorageError, match="symbolic link"):
        store.fetch(listed.key)
    assert open_descriptors() == before


def test_a_folder_swapped_for_a_link_after_listing_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "000.zst").write_bytes(b"forged")
    (tmp_path / "a" / "s1").mkdir(parents=True)
    (tmp_path / "a" / "s1" / "000.zst").write_bytes(b"segment")
    store = LocalDirectoryStore(tmp_path / "a")
    (listed,) = store.list_versions("")
    (tmp_path / "a" / "s1").rename(tmp_path / "moved")
    os.symlink(tmp_path / "elsewhere", tmp_path / "a" / "s1")
    with pytest.raises(StorageError, match="symbolic link"):
        store.open_object(listed.key, max_bytes=1000)
    with pytest.raises(StorageError, match="symbolic link"):
        store.get(listed.key)


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    (tmp_path / "s1").mkdir()
    os.mkfifo(tmp_path / "s1" / "000.zst")
    store = LocalDirectoryStore(tmp_path)
    assert list(store.list_versions("")) == []
    with pytest.raises(StorageError, match="not a regular file"):
        store.open_object("s1/000.zst", max_bytes=10)


def test_hostile_file_names_list_and_read(tmp_path: Path) -> None:
    (tmp_path / "s1").mkdir()
    names = [b"0\n[PASSED]", b"\x1b[2J\x1b[32mok", b"\xff\xfe-not-utf8.zst", b"caf\xc3\xa9"]
    for index, name in enumerate(names):
        with open(os.path.join(os.fsencode(tmp_path), b"s1", name), "wb") as handle:
            handle.write(bytes([index]) * (index + 1))
    expected_keys = sorted(
        ["s1/0\n[PASSED]", "s1/\x1b[2J\x1b[32mok", "s1/\udcff\udcfe-not-utf8.zst", "s1/café"]
    )
    store = LocalDirectoryStore(tmp_path)
    listed = list(store.list_versions(""))
    assert [v.key for v in listed] == expected_keys
    for index, name in enumerate(names):
        key = "s1/" + name.decode("utf-8", "surrogateescape")
        assert store.get(key) == bytes([index]) * (index + 1)
        with store.open_object(key, max_bytes=10) as stream:
            assert stream.info.size == index + 1
    with pytest.raises(StorageError, match="invalid object key"):
        store.get("s1/\ud800")  # a surrogate that no file name decodes to
    with pytest.raises(StorageError, match="invalid object key"):
        store.get("s1/a\0b")


def test_an_impossible_mtime_gives_no_date() -> None:
    # A copy's mtimes are untrusted; one past year 9999 must not stop a listing.
    far = os.stat_result((0o100644, 1, 1, 1, 0, 0, 1, 0, 1e18, 0))
    before_epoch = os.stat_result((0o100644, 1, 1, 1, 0, 0, 1, 0, -1e15, 0))
    assert localdir._modified(far) is None
    assert localdir._modified(before_epoch) is None


def test_a_file_that_grows_after_opening_is_cut_at_the_limit(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"0123456789")
    store = LocalDirectoryStore(tmp_path)
    stream = store.open_object("f", max_bytes=10)
    with (tmp_path / "f").open("ab") as handle:
        handle.write(b"x" * 1000)
    assert stream.read(4) == b"0123"
    with pytest.raises(ObjectTooLargeError) as raised:
        stream.read(1 << 20)
    assert (raised.value.key, raised.value.expected, raised.value.found) == (
        "f",
        "10",
        "more than 10",
    )


def test_listing_prunes_folders_outside_the_prefix(tmp_path: Path) -> None:
    for key in ("audit/s1/0", "audit/s2/0", "other/s1/0", "auditx/0"):
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(b"x")
    (tmp_path / "other").chmod(0)  # unreadable, but outside the prefix: never opened
    try:
        store = LocalDirectoryStore(tmp_path)
        assert [v.key for v in store.list_versions("audit/")] == ["audit/s1/0", "audit/s2/0"]
        assert [v.key for v in store.list_versions("audit")] == [
            "audit/s1/0",
            "audit/s2/0",
            "auditx/0",
        ]
    finally:
        (tmp_path / "other").chmod(0o755)
