"""``read_seal``: a seal is trusted from one ranged read only once signed, allowed and in place."""

from __future__ import annotations

import pytest

from audit_archiver.verify.seal_reader import FIRST_READ, SealUnreadableError, read_seal
from tests.memory_store import MemoryStore
from tests.unit.verify.segment_helpers import (
    KEY,
    OBJECT_KEY,
    OTHER_SEED,
    STREAM,
    event_lines,
    policy,
    segment,
    signer,
)


def _store(data: bytes, key: str = OBJECT_KEY) -> tuple[MemoryStore, object]:
    store = MemoryStore()
    store.put_new(key, data, retain_until=None)
    (version,) = list(store.list_versions(key))
    return store, version


def _read(store: MemoryStore, version: object, **kwargs: object) -> object:
    arguments = {"stream": STREAM, "segment_seq": 0, "expected_object_key": OBJECT_KEY}
    arguments.update(kwargs)
    return read_seal(store, version, policy(), **arguments)  # type: ignore[arg-type]


def test_a_good_seal_is_read_with_one_ranged_read_of_the_head() -> None:
    built = segment(event_lines(3))
    store, version = _store(built.data + b"\x00" * (2 * FIRST_READ))
    read = _read(store, version)
    assert read.seal == built.seal  # type: ignore[attr-defined]
    assert read.seal_hash == built.seal_hash  # type: ignore[attr-defined]
    assert store.calls.get("read_head") == 1
    assert store.calls.get("open_object") is None


@pytest.mark.parametrize(
    ("mutate", "kind"),
    [
        (lambda data: data[:12] + bytes([data[12] ^ 1]) + data[13:], "signature_invalid"),
        (lambda data: data[:4] + bytes([data[4] ^ 1]) + data[5:], "malformed_segment"),
        (lambda data: b"junk" + data, "malformed_segment"),
        (lambda data: data.replace(b'"event_count":3', b'"event_count":4'), "signature_invalid"),
    ],
)
def test_a_seal_that_does_not_authenticate_is_a_problem(mutate, kind: str) -> None:
    store, version = _store(mutate(segment(event_lines(3)).data))
    with pytest.raises(SealUnreadableError) as raised:
        _read(store, version)
    assert raised.value.problem.kind == kind
    assert raised.value.problem.key == OBJECT_KEY


def test_a_seal_by_an_untrusted_key_is_unknown_key() -> None:
    store, version = _store(segment(event_lines(1), seed=OTHER_SEED).data)
    with pytest.raises(SealUnreadableError) as raised:
        _read(store, version)
    assert raised.value.problem.kind == "unknown_key"
    assert raised.value.problem.found == signer(OTHER_SEED).key_id


def test_a_good_seal_at_another_key_is_key_mismatch() -> None:
    store, version = _store(segment(event_lines(1)).data, key="audit/s1/000000000001.ndjson.zst")
    with pytest.raises(SealUnreadableError) as raised:
        _read(store, version, segment_seq=1, expected_object_key="audit/s1/000000000001.ndjson.zst")
    assert raised.value.problem.kind == "key_mismatch"


def test_a_folder_copy_without_a_prefix_matches_the_key_suffix() -> None:
    store, version = _store(segment(event_lines(1)).data, key=KEY)
    assert _read(store, version, expected_object_key=None).seal.object_key == OBJECT_KEY  # type: ignore[attr-defined]
