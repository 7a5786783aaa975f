"""Issue 9, attack 1: a key trusted for one stream signs another stream.

The attacker holds billing's key (A) and writes into web's stream (key B): a
segment appended at web's next key, or web's whole history replaced. With
``--trust`` (A for billing, B for web) that is ``key_not_allowed``; with two
``--public-key`` it is ``key_changed`` once ``--state`` knows web's key; with
neither, verify cannot tell (every key may sign every stream) but the report
says which key signed which segments. Rotation is the allowed form of a key change.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.adversarial import kit
from tests.adversarial.archives import (
    BILLING,
    billing,
    full,
    rel,
    services_bucket,
    services_dir,
    web,
)
from tests.adversarial.kit import KEY_A, KEY_A2, KEY_B
from tests.s3server import moto_s3_backend

# Between billing segment 1 (sealed 03:04:06.686901) and segment 2 (03:04:07.690901).
ROTATED_AT = "2026-01-02T03:04:07Z"


def split_trust(tmp: Path) -> Path:
    """A for billing only, B for web only."""
    kit.write_keys(tmp / "keys")
    return kit.write_trust(
        tmp / "trust.toml",
        [
            {"public_key": "keys/a.pub", "streams": ["billing"]},
            {"public_key": "keys/b.pub", "streams": ["web"]},
        ],
    )


def two_keys(tmp: Path) -> list[str | Path]:
    keys = kit.write_keys(tmp / "keys")
    return kit.keys_args(keys["a"], keys["b"])


def append_with_a(root: Path) -> None:
    """Web's segment 2, correctly chained, signed with billing's key."""
    kit.write_local(root, kit.extend("web", web(), KEY_A, per_segment=5))


@pytest.mark.parametrize("with_state", [False, True], ids=["no-state", "state"])
def test_foreign_key_appended_in_a_folder_is_not_allowed(tmp_path: Path, with_state: bool) -> None:
    root = services_dir(tmp_path / "archive")
    trust = split_trust(tmp_path)
    state: list[str | Path] = ["--state", tmp_path / "state.json"] if with_state else []
    if with_state:
        assert kit.verify(*kit.local(root, "--trust", trust, *state)).code == 0
    append_with_a(root)
    verdict = kit.verify(*kit.local(root, "--trust", trust, *state))
    assert verdict.code == 1
    assert verdict.problems == [("key_not_allowed", rel("web", 2))]
    (problem,) = verdict.report["problems"]
    assert KEY_A.key_id in problem["detail"]
    assert "web" in problem["detail"]
    assert verdict.counts("billing") == ((0, 0) if with_state else BILLING)  # nothing new


@pytest.mark.parametrize("with_state", [False, True], ids=["no-state", "state"])
def test_foreign_key_appended_in_a_bucket_is_not_allowed(
    moto_endpoint: str, tmp_path: Path, with_state: bool
) -> None:
    name = services_bucket(moto_endpoint)
    trust = split_trust(tmp_path)
    state: list[str | Path] = ["--state", tmp_path / "state.json"] if with_state else []
    if with_state:
        assert kit.verify(*kit.bucket(moto_endpoint, name, "--trust", trust, *state)).code == 0
    kit.upload(moto_endpoint, name, kit.extend("web", web(), KEY_A, per_segment=5))
    verdict = kit.verify(*kit.bucket(moto_endpoint, name, "--trust", trust, *state))
    assert verdict.code == 1
    assert verdict.problems == [("key_not_allowed", full("web", 2))]
    assert verdict.counts("billing") == ((0, 0) if with_state else BILLING)


def test_whole_history_replaced_with_a_foreign_key(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    kit.write_local(root, billing() + web(KEY_A))  # web re-sealed from scratch with key A
    verdict = kit.verify(*kit.local(root, "--trust", split_trust(tmp_path)))
    assert verdict.code == 1
    assert verdict.problems == [
        ("key_not_allowed", rel("web", 0)),
        ("key_not_allowed", rel("web", 1)),
    ]
    assert verdict.counts("billing") == BILLING


def test_whole_history_replaced_in_a_bucket(moto_endpoint: str, tmp_path: Path) -> None:
    name = services_bucket(moto_endpoint)
    keys = moto_s3_backend().buckets[name].keys
    for n in range(2):
        keys.pop(full("web", n))  # storage-level removal (retention lapsed)
    kit.upload(moto_endpoint, name, web(KEY_A))
    verdict = kit.verify(*kit.bucket(moto_endpoint, name, "--trust", split_trust(tmp_path)))
    assert verdict.problems == [
        ("key_not_allowed", full("web", 0)),
        ("key_not_allowed", full("web", 1)),
    ]


def test_two_public_keys_and_state_catch_the_key_change_locally(tmp_path: Path) -> None:
    root = services_dir(tmp_path / "archive")
    args = [*two_keys(tmp_path), "--state", tmp_path / "state.json"]
    first = kit.verify(*kit.local(root, *args))
    assert first.code == 0
    append_with_a(root)
    second = kit.verify(*kit.local(root, *args))
    assert second.code == 1
    assert second.problems == [("key_changed", rel("web", 2))]


def test_two_public_keys_and_state_catch_the_key_change_in_a_bucket(
    moto_endpoint: str, tmp_path: Path
) -> None:
    name = services_bucket(moto_endpoint)
    args = [*two_keys(tmp_path), "--state", tmp_path / "state.json"]
    assert kit.verify(*kit.bucket(moto_endpoint, name, *args)).code == 0
    kit.upload(moto_endpoint, name, kit.extend("web", web(), KEY_A, per_segment=5))
    second = kit.verify(*kit.bucket(moto_endpoint, name, *args))
    assert second.code == 1
    assert second.problems == [("key_changed", full("web", 2))]


def test_two_public_keys_without_state_pass_but_name_the_signer(tmp_path: Path) -> None:
    """The documented limit of the simple mode: the report shows who signed what."""
    root = services_dir(tmp_path / "archive")
    append_with_a(root)
    verdict = kit.verify(*kit.local(root, *two_keys(tmp_path)))
    assert verdict.code == 0
    assert verdict.key_ranges("web") == [(KEY_B.key_id, 0, 1), (KEY_A.key_id, 2, 2)]
    assert verdict.key_ranges("billing") == [(KEY_A.key_id, 0, 2)]
    assert verdict.counts("web") == (3, 15)


# -- rotation: the allowed key change ----------------------------------------------------------


def rotated(root: Path, third_signer: kit.Ed25519Signer = KEY_A2) -> None:
    """Billing segments 0-1 by key A, segment 2 by ``third_signer`` (chain continued)."""
    first_two = kit.stream("billing", KEY_A, 2)
    kit.write_local(root, first_two + kit.extend("billing", first_two, third_signer))


def rotation_trust(tmp: Path, a2_streams: list[str]) -> Path:
    kit.write_keys(tmp / "keys")
    return kit.write_trust(
        tmp / "trust.toml",
        [
            {"public_key": "keys/a.pub", "streams": ["billing"], "not_after": ROTATED_AT},
            {"public_key": "keys/a2.pub", "streams": a2_streams, "not_before": ROTATED_AT},
        ],
    )


def test_rotation_allowed_by_the_trust_file(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    rotated(root)
    verdict = kit.verify(*kit.local(root, "--trust", rotation_trust(tmp_path, ["billing"])))
    assert verdict.code == 0, verdict.report["problems"]
    assert verdict.key_ranges("billing") == [(KEY_A.key_id, 0, 1), (KEY_A2.key_id, 2, 2)]
    assert verdict.counts("billing") == BILLING


def test_rotation_to_a_key_meant_for_another_stream(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    rotated(root)
    verdict = kit.verify(*kit.local(root, "--trust", rotation_trust(tmp_path, ["web"])))
    assert verdict.code == 1
    assert verdict.problems == [("key_not_allowed", rel("billing", 2))]


def test_retired_key_used_after_its_not_after(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    rotated(root, third_signer=KEY_A)  # a stolen, retired key keeps signing billing
    verdict = kit.verify(*kit.local(root, "--trust", rotation_trust(tmp_path, ["billing"])))
    assert verdict.code == 1
    assert verdict.problems == [("key_not_allowed", rel("billing", 2))]
    assert "not_after" in verdict.report["problems"][0]["detail"]


def test_rotation_with_state_needs_an_explicit_rule(tmp_path: Path) -> None:
    """With --state, the trust file naming billing for A2 allows the change; two plain
    --public-key options do not (``key_changed``)."""
    root = tmp_path / "archive"
    kit.write_local(root, kit.stream("billing", KEY_A, 2))
    trust = rotation_trust(tmp_path, ["billing"])
    keys = kit.write_keys(tmp_path / "keys")
    by_trust = ["--trust", trust, "--state", tmp_path / "trust-state.json"]
    by_keys = [*kit.keys_args(keys["a"], keys["a2"]), "--state", tmp_path / "keys-state.json"]
    assert kit.verify(*kit.local(root, *by_trust)).code == 0
    assert kit.verify(*kit.local(root, *by_keys)).code == 0
    kit.write_local(root, kit.extend("billing", kit.stream("billing", KEY_A, 2), KEY_A2))
    assert kit.verify(*kit.local(root, *by_trust)).code == 0
    changed = kit.verify(*kit.local(root, *by_keys))
    assert changed.problems == [("key_changed", rel("billing", 2))]
