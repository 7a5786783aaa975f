from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from audit_archiver.errors import (
    ObjectExistsError,
    ObjectNotFoundError,
    ObjectTooLargeError,
    StorageError,
)
from audit_archiver.storage import localdir
from audit_archiver.storage.localdir import MAX_OPEN_DIRECTORIES, LocalDirectoryStore
from tests.integration.cli import BIN
from tests.vectors.generate import HERE as VECTORS


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


def make_comb(top: Path, depth: int) -> list[tuple[str, int]]:
    """``depth`` levels below ``top``, each holding ``a/`` (the next level) and ``b/f``.

    ``a`` sorts first, so the walk is still below ``a`` while every ``b`` above
    it waits: a folder on each level has a subfolder pending. Returns the files
    as (key below ``top``'s parent, size).
    """
    top.mkdir()
    files = []
    descriptor = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for level in range(depth):
            os.mkdir("b", dir_fd=descriptor)
            file = os.open("b/f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=descriptor)
            os.write(file, b"x" * (level % 7))
            os.close(file)
            files.append(("/".join([top.name, *["a"] * level, "b", "f"]), level % 7))
            os.mkdir("a", dir_fd=descriptor)
            following = os.open("a", os.O_RDONLY | os.O_DIRECTORY, dir_fd=descriptor)
            os.close(descriptor)
            descriptor = following
    finally:
        os.close(descriptor)
    return files


def remove_deep(top: Path) -> None:
    """Delete a tree of any depth, if there (shutil.rmtree recurses, and fails thousands deep).

    Each folder's subfolders are first renamed to siblings of ``top``, so no
    path grows longer than two names and nothing recurses.
    """
    pending, lifted = ([top] if top.exists() else []), 0
    while pending:
        folder = pending.pop()
        with os.scandir(folder) as entries:
            children = [(entry.path, entry.is_dir(follow_symlinks=False)) for entry in entries]
        for child, is_folder in children:
            if is_folder:
                lifted += 1
                pending.append(top.with_name(f"{top.name}.lifted-{lifted}"))
                os.rename(child, pending[-1])
            else:
                os.unlink(child)
        folder.rmdir()


class Descriptors:
    """Counts descriptors opened and closed through ``os``: now, at the peak, in all."""

    def __init__(self) -> None:
        self.now = self.peak = self.opened = 0

    @contextmanager
    def counting(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[Descriptors]:
        real_open, real_close = os.open, os.close

        def counting_open(*args: Any, **kwargs: Any) -> int:
            descriptor = real_open(*args, **kwargs)
            self.now += 1
            self.opened += 1
            self.peak = max(self.peak, self.now)
            return descriptor

        def counting_close(descriptor: int) -> None:
            real_close(descriptor)
            self.now -= 1

        with monkeypatch.context() as patch:
            patch.setattr(os, "open", counting_open)
            patch.setattr(os, "close", counting_close)
            yield self


# For a moment: a folder just entered before the shallowest is closed, or two on the way
# up through '..'. os.scandir's own copy of a descriptor (one more) is not counted here.
PEAK_ALLOWED = MAX_OPEN_DIRECTORIES + 2


def test_thousands_of_nested_folders_list_and_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "top").mkdir()
    key = make_nested(tmp_path / "top", 1500)
    try:
        before = open_descriptors()
        store = LocalDirectoryStore(tmp_path / "top")
        with Descriptors().counting(monkeypatch) as descriptors:
            (listed,) = store.list_versions("")
        assert (listed.key, listed.size) == (key, 4)
        assert descriptors.now == 0
        assert descriptors.peak <= PEAK_ALLOWED
        assert descriptors.opened == 1501  # each folder once: none is reopened to leave it
        with store.open_object(key, max_bytes=100) as stream:
            assert stream.read(100) == b"deep"
        assert store.get(key) == b"deep"
        assert open_descriptors() == before
    finally:
        remove_deep(tmp_path / "top")
    assert list(tmp_path.iterdir()) == []


def test_a_comb_keeps_the_descriptor_budget_in_linear_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every level has a subfolder pending while the walk is below its other one, so
    # every ancestor would stay open; past the budget they are closed, and going back
    # up reopens each through '..' of the folder just left, not from the root.
    depth = 3000
    try:
        files = make_comb(tmp_path / "comb", depth)
        before = open_descriptors()
        with Descriptors().counting(monkeypatch) as descriptors:
            started = time.monotonic()
            listed = [(v.key, v.size) for v in LocalDirectoryStore(tmp_path).list_versions("")]
            elapsed = time.monotonic() - started
        assert listed == sorted(files)
        assert descriptors.now == 0
        assert descriptors.peak <= PEAK_ALLOWED
        folders = 1 + 1 + 2 * depth  # the root, comb, and a and b on every level
        assert descriptors.opened <= 2 * folders  # reopening from the root was quadratic
        assert elapsed < 10  # about half a second; reopening from the root took 12
        assert open_descriptors() == before
    finally:
        remove_deep(tmp_path / "comb")
    assert list(tmp_path.iterdir()) == []


def test_going_back_up_by_name_when_dotdot_is_another_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # '..' is accepted only if it is the folder left; a folder moved meanwhile is
    # reopened from the root by name instead, still within the budget.
    refused: list[int] = []
    real = localdir._ancestor

    def moved(directory: int, levels: int, identity: tuple[int, int]) -> int | None:
        refused.append(directory)
        return real(directory, levels, (identity[0], identity[1] + 1))

    try:
        files = make_comb(tmp_path / "comb", 3 * MAX_OPEN_DIRECTORIES)
        with Descriptors().counting(monkeypatch) as descriptors:
            monkeypatch.setattr(localdir, "_ancestor", moved)
            listed = [(v.key, v.size) for v in LocalDirectoryStore(tmp_path).list_versions("")]
        assert listed == sorted(files)
        assert refused
        assert descriptors.now == 0
        assert descriptors.peak <= PEAK_ALLOWED
    finally:
        remove_deep(tmp_path / "comb")


def test_a_folder_removed_while_the_walk_is_below_it_is_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Moving a folder does not change where its '..' leads: a folder the walk left is
    # listed as if it had stayed open. Gone from its place and refused by '..', it is
    # left out with what remained in it, and the walk goes on.
    real = localdir._ancestor

    def removed(directory: int, levels: int, identity: tuple[int, int]) -> int | None:
        if (tmp_path / "comb").exists():
            (tmp_path / "comb").rename(tmp_path / "gone")
        return real(directory, levels, (identity[0], identity[1] + 1))

    try:
        files = make_comb(tmp_path / "comb", 2 * MAX_OPEN_DIRECTORIES)
        with Descriptors().counting(monkeypatch) as descriptors:
            monkeypatch.setattr(localdir, "_ancestor", removed)
            listed = [(v.key, v.size) for v in LocalDirectoryStore(tmp_path).list_versions("")]
        assert max(files, key=lambda file: len(file[0])) in listed  # listed before the removal
        assert set(listed) < set(files)
        assert descriptors.now == 0
    finally:
        remove_deep(tmp_path / "comb")
        remove_deep(tmp_path / "gone")


def test_dotdot_is_taken_only_if_it_is_the_same_folder(tmp_path: Path) -> None:
    (tmp_path / "p" / "c" / "d").mkdir(parents=True)
    top, p = os.stat(tmp_path), os.stat(tmp_path / "p")
    before = open_descriptors()
    d = os.open(tmp_path / "p" / "c" / "d", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for levels, folder in ((2, p), (3, top)):
            up = localdir._ancestor(d, levels, (folder.st_dev, folder.st_ino))
            assert up is not None
            assert os.fstat(up).st_ino == folder.st_ino
            os.close(up)
        assert localdir._ancestor(d, 1, (p.st_dev, p.st_ino)) is None  # that is c
        if os.geteuid() != 0:  # root needs no search permission
            (tmp_path / "p" / "c" / "d").chmod(0o600)
            assert localdir._ancestor(d, 2, (p.st_dev, p.st_ino)) is None
    finally:
        (tmp_path / "p" / "c" / "d").chmod(0o755)
        os.close(d)
    assert open_descriptors() == before


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


# --- a depth bound ------------------------------------------------------------------------


def test_a_folder_at_the_depth_bound_is_one_entry_and_never_entered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("s1/000.zst", "s1/sub/deep", "s1/sub/more/deeper", "top", "s2/.hidden/x"):
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(b"data")
    (tmp_path / "s1" / "empty").mkdir()
    os.symlink(tmp_path / "s1" / "sub", tmp_path / "s1" / "link")
    store = LocalDirectoryStore(tmp_path, max_depth=2)
    with Descriptors().counting(monkeypatch) as descriptors:
        listed = list(store.list_versions(""))
    assert [(v.key, v.size, v.is_delete_marker) for v in listed] == [
        ("s1/000.zst", 4, False),
        ("s1/empty/", 0, False),
        ("s1/sub/", 0, False),
        ("top", 4, False),
    ]
    assert descriptors.opened == 3  # the root, s1 and s2: nothing at the bound is opened
    assert [v.key for v in store.list_versions("s1/sub")] == ["s1/sub/"]
    assert [v.key for v in store.list_versions("s1/sub/")] == ["s1/sub/"]
    assert [v.key for v in store.list_versions("s1/sub/deep")] == []
    assert [v.key for v in LocalDirectoryStore(tmp_path, max_depth=1).list_versions("")] == [
        "s1/",
        "s2/",
        "top",
    ]
    with pytest.raises(ValueError, match="max_depth"):
        LocalDirectoryStore(tmp_path, max_depth=0)


def test_verify_reports_a_deep_comb_as_one_folder_with_few_descriptors(tmp_path: Path) -> None:
    # The real CLI on a copy of the valid vectors plus a 3,000-level comb, allowed 256
    # descriptors: the comb is unexpected_object, both streams are still verified.
    archive = tmp_path / "archive"
    shutil.copytree(VECTORS / "cases" / "valid" / "archive", archive)

    def few_descriptors() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    try:
        make_comb(archive / "comb", 3000)
        started = time.monotonic()
        result = subprocess.run(
            [
                str(BIN),
                "verify",
                "--local-dir",
                str(archive),
                "--prefix",
                "audit",
                "--public-key",
                str(VECTORS / "public.pem"),
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            preexec_fn=few_descriptors,
        )
        elapsed = time.monotonic() - started
    finally:
        remove_deep(archive / "comb")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert (report["streams"], report["segments"], report["events"]) == (2, 5, 15)
    assert [(p["kind"], p["key"]) for p in report["problems"]] == [
        ("unexpected_object", "comb/a/"),
        ("unexpected_object", "comb/b/"),
    ]
    assert [(s["stream"], s["segments"], s["events"]) for s in report["stream_summaries"]] == [
        ("app-1", 3, 12),
        ("app-2", 2, 3),
    ]
    assert elapsed < 10  # a quarter of a second; the unbounded walk took 9 s (and 1,000+ fds)
    assert sorted(path.name for path in archive.iterdir()) == ["app-1", "app-2"]
