"""The shard rule: units and owners are fixed functions of the listing and N."""

from __future__ import annotations

import hashlib

import pytest

from audit_archiver.verify.shard import UNIT_SEGMENTS, Shard, Unit, owner, unit_of, units_of


def test_units_are_fixed_ranges_of_segment_numbers() -> None:
    assert unit_of("app-1", 0) == Unit("app-1", 0, UNIT_SEGMENTS - 1)
    assert unit_of("app-1", 4096) == Unit("app-1", 4096, 8191)
    assert units_of("s", [9, 0, 1, 3, 4], size=3) == [
        Unit("s", 0, 2),
        Unit("s", 3, 5),
        Unit("s", 9, 11),
    ]
    assert Unit("s", 3, 5).label == "s/3-5"


def test_owner_is_sha256_of_the_label_mod_n_plus_one() -> None:
    unit = Unit("billing-1", 8192, 12287)
    expected = int.from_bytes(hashlib.sha256(b"billing-1/8192-12287").digest(), "big") % 7 + 1
    assert owner(unit, 7) == expected
    # Pinned: a change of the rule would split old runs' reports differently.
    assert [owner(Unit("app-1", 0, 4095), n) for n in (1, 2, 3, 10)] == [1, 1, 3, 9]


def test_every_unit_has_exactly_one_shard_and_all_shards_get_work() -> None:
    units = [Unit(f"s-{i}", r * 4096, r * 4096 + 4095) for i in range(50) for r in range(4)]
    shards = [Shard(k, 5) for k in range(1, 6)]
    for unit in units:
        assert sum(shard.owns(unit) for shard in shards) == 1
    assert all(any(shard.owns(u) for u in units) for shard in shards)


@pytest.mark.parametrize("text", ["0/3", "4/3", "1/0", "a/b", "1/3/4", " 1/3", "01/3", "1/", ""])
def test_bad_shard_text_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="K/N"):
        Shard.parse(text)


def test_shard_text() -> None:
    assert Shard.parse("2/3") == Shard(2, 3, UNIT_SEGMENTS)
    with pytest.raises(ValueError, match="at least one segment"):
        Shard(1, 1, 0)
