"""Issue 9, attack 7: an incremental ``--state`` run is not blind behind the saved head.

After a clean run records the heads, the attacker changes a segment at or
before billing's head. The second run downloads nothing old, but the version
listing it makes anyway shows every change:

- the original removed (a lapsed retention, or storage-level access):
  ``history_rewritten`` on the missing key;
- the original removed and another object put in its place (a lapsed
  retention): the listing digest differs, ``history_rewritten`` on that key;
- a new version written over it: ``extra_version``;
- a delete marker put on it: ``delete_marker``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from tests.adversarial import kit
from tests.adversarial.archives import billing, full, rel, services_bucket, services_dir
from tests.adversarial.kit import KEY_B
from tests.s3server import moto_s3_backend, s3_client


def _remove(endpoint: str, name: str, key: str) -> None:
    moto_s3_backend().buckets[name].keys.pop(key)


def _replace(endpoint: str, name: str, key: str) -> None:
    """The original is gone (its retention lapsed) and a new object stands in its place,
    stored, as it must be, later than everything the previous run saw."""
    _remove(endpoint, name, key)
    _new_version(endpoint, name, key)
    stored = moto_s3_backend().buckets[name].keys.getlist(key)[-1]
    stored.last_modified = stored.last_modified + timedelta(days=1)


def _new_version(endpoint: str, name: str, key: str) -> None:
    forged = kit.stream("billing", KEY_B, 3)[1].data  # any bytes at all will do
    s3_client(endpoint).put_object(Bucket=name, Key=key, Body=forged, ChecksumAlgorithm="SHA256")


def _delete_marker(endpoint: str, name: str, key: str) -> None:
    s3_client(endpoint).delete_object(Bucket=name, Key=key)


ATTACKS: dict[str, tuple[Callable[[str, str, str], None], str]] = {
    "removed": (_remove, "history_rewritten"),
    "replaced": (_replace, "history_rewritten"),
    "new-version": (_new_version, "extra_version"),
    "delete-marker": (_delete_marker, "delete_marker"),
}


# A removed head is `truncated`: tests/integration/test_verify_bucket.py covers it.
CASES = [("removed", 0), ("replaced", 0), ("replaced", 1), ("new-version", 0)]
CASES += [("new-version", 2), ("delete-marker", 0)]
CASES += [("delete-marker", 2)]


@pytest.mark.parametrize(("attack", "segment"), CASES)
def test_change_behind_the_saved_head(
    moto_endpoint: str, tmp_path: Path, attack: str, segment: int
) -> None:
    tamper, kind = ATTACKS[attack]
    name = services_bucket(moto_endpoint)
    keys = kit.write_keys(tmp_path / "keys")
    args = [*kit.keys_args(keys["a"], keys["b"]), "--state", tmp_path / "state.json"]
    assert kit.verify(*kit.bucket(moto_endpoint, name, *args)).code == 0
    tamper(moto_endpoint, name, full("billing", segment))
    verdict = kit.verify(*kit.bucket(moto_endpoint, name, *args))
    assert verdict.code == 1
    assert verdict.problems == [(kind, full("billing", segment))]


def test_new_segments_after_the_head_are_still_checked(moto_endpoint: str, tmp_path: Path) -> None:
    """The incremental run checks what is new, and only that (two segments, eight events)."""
    name = services_bucket(moto_endpoint)
    keys = kit.write_keys(tmp_path / "keys")
    args = [*kit.keys_args(keys["a"], keys["b"]), "--state", tmp_path / "state.json"]
    assert kit.verify(*kit.bucket(moto_endpoint, name, *args)).code == 0
    kit.upload(moto_endpoint, name, kit.extend("billing", billing(), kit.KEY_A, count=2))
    verdict = kit.verify(*kit.bucket(moto_endpoint, name, *args))
    assert verdict.code == 0, verdict.report["problems"]
    assert (verdict.report["segments"], verdict.report["events"]) == (2, 8)


@pytest.mark.parametrize("keep_mtime", [False, True])
def test_a_folder_changed_behind_the_saved_head(tmp_path: Path, keep_mtime: bool) -> None:
    """A folder has no version ids: the state keeps a digest of the files' contents behind
    the head, so a byte changed there (even with its size and mtime kept) is seen."""
    root = services_dir(tmp_path / "copy")
    keys = kit.write_keys(tmp_path / "keys")
    args = kit.local(root, *kit.keys_args(keys["a"], keys["b"]), "--state", tmp_path / "s.json")
    assert kit.verify(*args).code == 0
    target = root / rel("billing", 1)  # billing's head is segment 2
    before = target.stat()
    data = bytearray(target.read_bytes())
    data[-3] ^= 0x01
    target.write_bytes(bytes(data))
    if keep_mtime:
        os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    else:
        os.utime(target, (before.st_mtime + 3600, before.st_mtime + 3600))
    verdict = kit.verify(*args)
    assert verdict.code == 1
    named = rel("billing", 2) if keep_mtime else rel("billing", 1)  # the head, or the file
    assert verdict.problems == [("history_rewritten", named)]
