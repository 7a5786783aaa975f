"""Token files and Authorization headers: every shape of bad input is a typed refusal."""

from __future__ import annotations

import base64
import logging
import os
import stat
from pathlib import Path

import pytest

from audit_archiver.agent import logs
from audit_archiver.agent.auth import TokenSet, parse_token_file
from audit_archiver.agent.listener import bind_unix
from audit_archiver.config import parse_listen
from audit_archiver.errors import AuthenticationError, ConfigurationError

ALICE = "alice-token-0123456789"
BOB = "bob-token-9876543210xx"


def tokens() -> TokenSet:
    return parse_token_file(f"# comment\n\nalice {ALICE}\n  bob\t{BOB}  \n".encode(), "t")


def basic(user: bytes, password: bytes) -> bytes:
    return b"Basic " + base64.b64encode(user + b":" + password)


def test_named_tokens_name_the_client() -> None:
    assert tokens().names == ("alice", "bob")
    assert tokens().authenticate([b"Bearer " + ALICE.encode()]) == "alice"
    assert tokens().authenticate([b"bearer  " + BOB.encode() + b" "]) == "bob"
    assert tokens().authenticate([basic(b"bob", BOB.encode())]) == "bob"
    assert ALICE not in repr(tokens())


def test_a_bare_token_is_default_and_takes_any_basic_user() -> None:
    bare = parse_token_file(f"{ALICE}\n".encode(), "t")
    assert bare.names == ("default",)
    assert bare.authenticate([basic(b"fluent-bit", ALICE.encode())]) == "default"
    assert bare.authenticate([basic(b"", ALICE.encode())]) == "default"


@pytest.mark.parametrize(
    "values",
    [
        [],
        [b""],
        [b"Bearer"],
        [b"Bearer "],
        [b"\xff\xfe\xfd"],
        [b"Bearer \xff" + ALICE.encode()],
        [b"Bearer " + ALICE.encode() + b"\x00"],
        [b"Bearer " + ALICE.encode()[:-1]],
        [b"Bearer " + ALICE.encode() + b" extra"],
        [b"Bearer " + ALICE.encode(), b"Bearer " + ALICE.encode()],
        [b"Digest " + ALICE.encode()],
        [b"Basic ***"],
        [b"Basic " + base64.b64encode(b"no colon")],
        [basic(b"bob", ALICE.encode())],  # alice's token with bob's name
        [basic(b"alice", b"wrong-token-0123456789")],
        [b"Basic " + base64.b64encode(b"alice:" + ALICE.encode())[:-2]],
        [b"Bearer " + b"x" * 100_000],
    ],
)
def test_bad_headers_are_refused_without_echo(values: list[bytes]) -> None:
    with pytest.raises(AuthenticationError) as caught:
        tokens().authenticate(values)
    assert ALICE not in str(caught.value)
    assert BOB not in str(caught.value)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "holds no token"),
        (b"# only a comment\n", "holds no token"),
        (b"alice short\n", "line 1: a token is 16"),
        (b"alice " + ALICE.encode() + b" extra\n", "two fields"),
        (b"al/ice " + ALICE.encode() + b"\n", "client name"),
        (f"alice {ALICE}\nalice {BOB}\n".encode(), "listed twice"),
        (f"alice {ALICE}\nbob {ALICE}\n".encode(), "already listed"),
        (f"{ALICE}\nbob {BOB}\n".encode(), "bare token must be the only"),
        (b"\xff\xfe" + ALICE.encode(), "not UTF-8"),
        ("alice jeton-é-0123456789abc\n".encode(), "visible ASCII"),
    ],
)
def test_bad_token_files_are_refused_by_line(content: bytes, expected: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_token_file(content, "tokens.txt")
    assert expected in str(caught.value)
    assert ALICE not in str(caught.value)
    assert "jeton" not in str(caught.value)


def test_parse_listen_accepts_unix_paths() -> None:
    assert parse_listen("unix:/run/audit/ingest.sock") == Path("/run/audit/ingest.sock")
    assert parse_listen("[::1]:8787") == ("::1", 8787)
    bad_addresses = (
        "unix:relative.sock",
        "unix:",
        "unix:/" + "a" * 200,
        "nohost",
        "h:99999",
        "[::1:8787",  # an unclosed bracket
        "::1:8787",  # IPv6 without brackets: which colon ends the host?
        "h:\u0663",  # Arabic-Indic digit three: isdigit(), yet no port
        "h:000000080",
    )
    for bad in bad_addresses:
        with pytest.raises(ConfigurationError):
            parse_listen(bad)


def test_unix_socket_mode_stale_and_live(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    first = bind_unix(path)
    try:
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o660
        with pytest.raises(ConfigurationError, match="another process"):
            bind_unix(path)  # something answers there
    finally:
        first.close()
    second = bind_unix(path)  # stale now: replaced
    second.close()
    regular = tmp_path / "file"
    regular.write_text("x")
    with pytest.raises(ConfigurationError, match="not a socket"):
        bind_unix(regular)
    assert regular.read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "s.sock"]  # no temporary left


def test_rate_limit_filter_passes_one_record_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(logs.time, "monotonic", lambda: now[0])
    limiter = logs.RateLimitFilter(interval=10)

    def record(name: str = "audit_archiver.x", limited: bool = True) -> logging.LogRecord:
        rec = logging.makeLogRecord({"name": name, "msg": "refused", "levelno": logging.WARNING})
        if limited:
            rec.rate_limit = True
        return rec

    assert sum(limiter.filter(record()) for _ in range(1000)) == 1
    assert all(limiter.filter(record(limited=False)) for _ in range(10))
    assert sum(limiter.filter(record("asyncio")) for _ in range(50)) == 1
    now[0] += 10
    passed = record()
    assert limiter.filter(passed)
    assert passed.suppressed == 999  # type: ignore[attr-defined]


def test_rate_limit_keeps_one_line_per_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flood of evictions must not hide the first tls or header_timeout line."""
    monkeypatch.setattr(logs.time, "monotonic", lambda: 100.0)
    limiter = logs.RateLimitFilter(interval=10)

    def refused(reason: str) -> logging.LogRecord:
        return logging.makeLogRecord(
            {
                "name": "audit_archiver.agent.listener",
                "msg": "connection closed by the listener",
                "levelno": logging.WARNING,
                "rate_limit": True,
                "reason": reason,
            }
        )

    assert sum(limiter.filter(refused("evicted")) for _ in range(1000)) == 1
    assert limiter.filter(refused("tls"))
    assert limiter.filter(refused("header_timeout"))
    assert not limiter.filter(refused("tls"))
