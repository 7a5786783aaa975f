"""Loading trust files and --public-key lists into a trust policy."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from pathlib import Path

import pytest

from audit_archiver.errors import ConfigurationError, KeyFileError
from audit_archiver.keys import generate_key_pair
from audit_archiver.trust_file import load_trust_file, policy_from_public_keys


@pytest.fixture
def keys(tmp_path: Path) -> tuple[str, str]:
    """Two key pairs under tmp_path/keys/{a,b}; return their key ids."""
    _, _, a = generate_key_pair(tmp_path / "keys" / "a")
    _, _, b = generate_key_pair(tmp_path / "keys" / "b")
    return a, b


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "trust.toml"
    path.write_text(text)
    return path


def test_full_trust_file(tmp_path: Path, keys: tuple[str, str]) -> None:
    a, b = keys
    path = _write(
        tmp_path,
        """
[[key]]
public_key = "keys/a/signing.pub"
streams = ["billing-*", "web-1"]
prefix = "audit/prod"
not_before = "2026-01-01T00:00:00Z"
not_after = 2027-01-01T01:00:00+01:00

[[key]]
public_key = "keys/b/signing.pub"
""",
    )
    policy = load_trust_file(path)
    first, second = policy.rules
    assert first.key.key_id == a and second.key.key_id == b
    assert first.streams == ("billing-*", "web-1") and second.streams is None
    assert first.prefix == "audit/prod" and second.prefix is None
    assert first.not_before == datetime(2026, 1, 1, tzinfo=UTC)
    assert first.not_after == datetime(2027, 1, 1, tzinfo=UTC)
    assert (first.origin, second.origin) == ("trust.toml key #1", "trust.toml key #2")
    at = datetime(2026, 6, 1, tzinfo=UTC)
    assert policy.refusal(a, "billing-eu", "audit/prod/billing-eu/0", at) is None
    assert policy.refusal(a, "web-2", "audit/prod/web-2/0", at) is not None
    assert policy.refusal(b, "web-2", "staging/web-2/0", at) is None
    assert policy.names_stream(a, "web-1") and not policy.names_stream(b, "web-1")
    assert pickle.loads(pickle.dumps(policy)).key(a) is not None


def test_public_key_path_is_relative_to_the_trust_file_not_the_cwd(
    tmp_path: Path, keys: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    path = _write(tmp_path, '[[key]]\npublic_key = "keys/a/signing.pub"\n')
    assert load_trust_file(path).rules[0].key.key_id == keys[0]
    absolute = _write(tmp_path, f'[[key]]\npublic_key = "{tmp_path}/keys/b/signing.pub"\n')
    assert load_trust_file(absolute).rules[0].key.key_id == keys[1]


def test_the_same_key_in_several_tables(tmp_path: Path, keys: tuple[str, str]) -> None:
    path = _write(
        tmp_path,
        '[[key]]\npublic_key = "keys/a/signing.pub"\nstreams = ["web-1"]\n'
        '[[key]]\npublic_key = "keys/a/signing.pub"\nstreams = ["web-2"]\n',
    )
    policy = load_trust_file(path)
    assert len(policy.rules) == 2
    at = datetime(2026, 1, 1, tzinfo=UTC)
    assert policy.refusal(keys[0], "web-2", "audit/web-2/0", at) is None
    assert policy.refusal(keys[0], "web-3", "audit/web-3/0", at) is not None


A = 'public_key = "keys/a/signing.pub"\n'
BAD_FILES = [
    ("", ConfigurationError, "lists no key: add at least one [[key]]"),
    ("key = 3\n", ConfigurationError, "lists no key"),
    ("key = [1]\n", ConfigurationError, "[[key]] #1: write each key as a [[key]] table"),
    ("[key]\n" + A, ConfigurationError, "lists no key"),
    ("[[keys]]\n" + A, ConfigurationError, "unknown top-level field(s) keys"),
    ("[[key]]\nstreams = ['a']\n", ConfigurationError, "[[key]] #1: public_key is required"),
    ("[[key]]\npublic_key = 7\n", ConfigurationError, "public_key is required"),
    ("[[key]]\n" + A + "stream = ['a']\n", ConfigurationError, "unknown field(s) stream"),
    ("[[key]]\n" + A + "streams = []\n", ConfigurationError, "non-empty list of globs"),
    ("[[key]]\n" + A + "streams = 'web-*'\n", ConfigurationError, "non-empty list of globs"),
    ("[[key]]\n" + A + "streams = ['a/b']\n", ConfigurationError, "'a/b' is not a stream glob"),
    ("[[key]]\n" + A + "streams = ['']\n", ConfigurationError, "is not a stream glob"),
    ("[[key]]\n" + A + "streams = [3]\n", ConfigurationError, "3 is not a stream glob"),
    ("[[key]]\n" + A + "prefix = ''\n", ConfigurationError, "prefix must be a non-empty"),
    ("[[key]]\n" + A + "prefix = '/audit/'\n", ConfigurationError, "invalid prefix '/audit/'"),
    ("[[key]]\n" + A + "prefix = 'a/../b'\n", ConfigurationError, "invalid prefix"),
    ("[[key]]\n" + A + "not_before = '2026-01-01'\n", ConfigurationError, "not_before must be"),
    (
        "[[key]]\n" + A + "not_before = '2026-01-01T00:00:00'\n",
        ConfigurationError,
        "not_before must be an RFC 3339 date-time with an offset",
    ),
    ("[[key]]\n" + A + "not_after = 2026-01-01T00:00:00\n", ConfigurationError, "not_after"),
    ("[[key]]\n" + A + "not_after = 2026-01-01\n", ConfigurationError, "not_after must be"),
    ("[[key]]\n" + A + "not_after = '2026-02-30T00:00:00Z'\n", ConfigurationError, "not_after"),
    (
        "[[key]]\n" + A + "not_after = '٢٠٢٦-01-01T00:00:00Z'\n",
        ConfigurationError,
        "not_after must be",
    ),
    (
        "[[key]]\n" + A + "not_after = '9999-12-31T23:59:59-01:00'\n",
        ConfigurationError,
        "not_after must be",
    ),
    (
        "[[key]]\n"
        + A
        + "not_before = '2027-01-01T00:00:00Z'\nnot_after = '2026-01-01T00:00:00Z'\n",
        ConfigurationError,
        "not_before is after not_after",
    ),
    ("[[key]]\npublic_key = 'keys/missing.pub'\n", KeyFileError, "cannot read public key"),
    ("[[key]]\npublic_key = 'keys/a/signing.key'\n", KeyFileError, "not a PEM or DER public key"),
    (
        "[[key]]\n" + A + "[[key]]\nfoo = 1\n",
        ConfigurationError,
        "[[key]] #2: unknown field(s) foo",
    ),
    ("[[key]\n", ConfigurationError, "is not valid TOML"),
]


@pytest.mark.parametrize(("text", "error", "message"), BAD_FILES)
def test_bad_trust_files_say_which_file_which_key_and_what_to_fix(
    tmp_path: Path, keys: tuple[str, str], text: str, error: type[Exception], message: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(error) as caught:
        load_trust_file(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_unreadable_or_binary_trust_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read trust file"):
        load_trust_file(tmp_path / "missing.toml")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe[[key]]")
    with pytest.raises(ConfigurationError, match="not UTF-8"):
        load_trust_file(binary)


def test_hostile_trust_files_are_configuration_errors_not_tracebacks(tmp_path: Path) -> None:
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigurationError, match="nests too deeply"):
        load_trust_file(deep)
    huge = tmp_path / "huge.toml"
    huge.write_bytes(b"# " + b"x" * (2 << 20) + b"\n")
    with pytest.raises(ConfigurationError, match="larger than"):
        load_trust_file(huge)


def test_public_keys_mode(tmp_path: Path, keys: tuple[str, str]) -> None:
    a_pub = tmp_path / "keys" / "a" / "signing.pub"
    policy = policy_from_public_keys([a_pub, tmp_path / "keys" / "b" / "signing.pub"])
    assert [r.key.key_id for r in policy.rules] == list(keys)
    assert [r.streams for r in policy.rules] == [None, None]
    assert policy.rules[0].origin == f"--public-key {a_pub}"
    assert not policy.names_stream(keys[0], "web-1")
    with pytest.raises(KeyFileError, match="at least one --public-key"):
        policy_from_public_keys([])
    with pytest.raises(KeyFileError, match="cannot read public key"):
        policy_from_public_keys([tmp_path / "nope.pub"])
