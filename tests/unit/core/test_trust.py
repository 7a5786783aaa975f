"""The trust policy: which key may sign which stream, prefix and time."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from audit_archiver.core.signing import Ed25519Signer, load_trusted_key
from audit_archiver.core.trust import KeyRule, TrustPolicy


def fixed_signer(seed: bytes = bytes(range(32))) -> Ed25519Signer:
    """A signer with a fixed key (tests.helpers imports the verifier; this test does not)."""
    return Ed25519Signer(ed25519.Ed25519PrivateKey.from_private_bytes(seed))


KEY_A = load_trusted_key(fixed_signer().public_pem())
KEY_B = load_trusted_key(fixed_signer(bytes(range(32, 64))).public_pem())
JAN = datetime(2026, 1, 1, tzinfo=UTC)
JUL = datetime(2026, 7, 1, tzinfo=UTC)
DEC = datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)


def _allowed(policy: TrustPolicy, key_id: str, stream: str, key: str, at: datetime) -> bool:
    return policy.refusal(key_id, stream, key, at) is None


def test_every_stream_mode_allows_each_key_everywhere_but_names_no_stream() -> None:
    policy = TrustPolicy.every_stream([(KEY_A, "--public-key a.pub"), (KEY_B, "--public-key b")])
    assert policy.key(KEY_A.key_id) is KEY_A
    assert policy.key("0" * 64) is None
    for key in (KEY_A, KEY_B):
        assert _allowed(policy, key.key_id, "anything", "x/anything/000000000000.ndjson.zst", JAN)
        assert not policy.names_stream(key.key_id, "anything")


def test_stream_globs_are_case_sensitive_fnmatch() -> None:
    policy = TrustPolicy((KeyRule(KEY_A, streams=("billing-*", "web-[12]"), origin="r1"),))
    allowed = ["billing-eu", "billing-", "web-1", "web-2"]
    refused = ["Billing-eu", "billing", "web-3", "web-12", "xbilling-eu", "web-1x"]
    for stream in allowed:
        assert _allowed(policy, KEY_A.key_id, stream, f"audit/{stream}/0.zst", JAN), stream
        assert policy.names_stream(KEY_A.key_id, stream)
    for stream in refused:
        assert not _allowed(policy, KEY_A.key_id, stream, f"audit/{stream}/0.zst", JAN), stream
        assert not policy.names_stream(KEY_A.key_id, stream)
    assert not policy.names_stream(KEY_B.key_id, "web-1")


def test_cross_stream_key_is_refused_with_key_stream_and_rule_on_one_line() -> None:
    policy = TrustPolicy(
        (
            KeyRule(KEY_A, streams=("billing-*",), origin="trust.toml key #1"),
            KeyRule(KEY_B, streams=("web-*",), origin="trust.toml key #2"),
        )
    )
    reason = policy.refusal(KEY_A.key_id, "web-1", "audit/web-1/000000000003.ndjson.zst", JAN)
    assert reason is not None
    assert KEY_A.key_id in reason and "'web-1'" in reason and "trust.toml key #1" in reason
    assert "trust.toml key #2" not in reason  # only the rules of the signing key
    assert "\n" not in reason


def test_prefix_must_be_followed_by_a_slash() -> None:
    policy = TrustPolicy((KeyRule(KEY_A, prefix="audit/prod", origin="r"),))
    assert _allowed(policy, KEY_A.key_id, "s1", "audit/prod/s1/000000000000.ndjson.zst", JAN)
    for object_key in (
        "audit/prod-staging/s1/000000000000.ndjson.zst",
        "audit/prodx/s1/000000000000.ndjson.zst",
        "audit/staging/s1/000000000000.ndjson.zst",
        "s1/000000000000.ndjson.zst",
        "audit/prod",
    ):
        assert not _allowed(policy, KEY_A.key_id, "s1", object_key, JAN), object_key


def test_hostile_object_key_is_escaped_in_the_refusal() -> None:
    policy = TrustPolicy((KeyRule(KEY_A, prefix="audit/prod", origin="r"),))
    reason = policy.refusal(KEY_A.key_id, "s1", "evil\n\x1b[32mPASSED\x1b[0m/s1/0", JAN)
    assert reason is not None
    assert "\n" not in reason and "\x1b" not in reason


def test_time_window_is_inclusive() -> None:
    policy = TrustPolicy((KeyRule(KEY_A, not_before=JAN, not_after=DEC, origin="r"),))
    key = "audit/s1/000000000000.ndjson.zst"
    assert _allowed(policy, KEY_A.key_id, "s1", key, JAN)
    assert _allowed(policy, KEY_A.key_id, "s1", key, DEC)
    assert _allowed(policy, KEY_A.key_id, "s1", key, JUL)
    before = policy.refusal(KEY_A.key_id, "s1", key, JAN - timedelta(microseconds=1))
    after = policy.refusal(KEY_A.key_id, "s1", key, DEC + timedelta(microseconds=1))
    assert before is not None and "not_before 2026-01-01T00:00:00.000000Z" in before
    assert after is not None and "not_after 2026-12-31T23:59:59.000000Z" in after


def test_a_key_in_several_rules_is_allowed_if_any_rule_allows() -> None:
    # Key A signed web-1 until July (then rotated to B), and signs billing-* all year.
    policy = TrustPolicy(
        (
            KeyRule(KEY_A, streams=("web-1",), not_after=JUL, origin="#1"),
            KeyRule(KEY_B, streams=("web-1",), not_before=JUL, origin="#2"),
            KeyRule(KEY_A, streams=("billing-*",), origin="#3"),
        )
    )
    key = "audit/web-1/000000000000.ndjson.zst"
    assert _allowed(policy, KEY_A.key_id, "web-1", key, JAN)
    assert _allowed(policy, KEY_A.key_id, "web-1", key, JUL)
    assert _allowed(policy, KEY_B.key_id, "web-1", key, JUL)
    assert not _allowed(policy, KEY_B.key_id, "web-1", key, JAN)
    assert _allowed(policy, KEY_A.key_id, "billing-eu", "audit/billing-eu/0", DEC)
    late = policy.refusal(KEY_A.key_id, "web-1", key, DEC)
    assert late is not None and "#1: sealed after not_after" in late
    assert "#3: stream not in ['billing-*']" in late
    assert policy.names_stream(KEY_A.key_id, "web-1")
    assert policy.names_stream(KEY_A.key_id, "billing-x")
    assert not policy.names_stream(KEY_B.key_id, "billing-x")


def test_unknown_key_is_refused() -> None:
    policy = TrustPolicy.every_stream([(KEY_A, "a")])
    reason = policy.refusal(KEY_B.key_id, "s1", "audit/s1/0", JAN)
    assert reason is not None and KEY_B.key_id in reason


@pytest.mark.parametrize(
    "kwargs",
    [
        {"prefix": ""},
        {"prefix": "audit/"},
        {"streams": ()},
        {"not_before": datetime(2026, 1, 1)},
        {"not_before": DEC, "not_after": JAN},
    ],
)
def test_rules_that_cannot_be_meant_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        KeyRule(KEY_A, **kwargs)  # type: ignore[arg-type]


def test_policy_and_keys_pickle_and_still_verify() -> None:
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    ecdsa = load_trusted_key(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    policy = TrustPolicy(
        (
            KeyRule(KEY_A, streams=("web-*",), prefix="audit", not_before=JAN, origin="#1"),
            KeyRule(ecdsa, origin="#2"),
        )
    )
    copy = pickle.loads(pickle.dumps(policy))
    assert [r.key.key_id for r in copy.rules] == [KEY_A.key_id, ecdsa.key_id]
    assert [r.key.algorithm for r in copy.rules] == ["ed25519", "ecdsa-p256-sha256"]
    assert copy.rules[0].streams == ("web-*",) and copy.rules[0].not_before == JAN
    signature = fixed_signer().sign(b"message")
    restored = copy.key(KEY_A.key_id)
    assert restored is not None and restored.verify(signature, b"message")
    assert not restored.verify(signature, b"messagE")
    assert copy.refusal(KEY_A.key_id, "web-1", "audit/web-1/0", JUL) is None
