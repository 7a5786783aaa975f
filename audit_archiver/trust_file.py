"""Loading a trust policy: a TOML trust file (``--trust``) or plain ``--public-key`` files.

A trust file lists keys and what each may sign::

    [[key]]
    public_key = "keys/billing.pub"        # path relative to this file
    streams = ["billing-*"]                # globs; default: every stream
    prefix = "audit/prod"                  # optional: the seals' object_key must sit under it
    not_before = "2026-01-01T00:00:00Z"    # optional, compared with the seal's sealed_at
    not_after = "2027-01-01T00:00:00Z"     # optional

A key may appear in several ``[[key]]`` tables (a seal is allowed when any of
them allows it). Unknown fields are refused, so a typo (``stream =``) cannot
silently widen what a key may sign. Times are RFC 3339 with an offset, quoted
or as TOML date-times. Errors name the file, the ``[[key]]`` (1-based) and what
to fix.
"""

from __future__ import annotations

import re
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from audit_archiver.core.encoding import parse_rfc3339
from audit_archiver.core.layout import validate_prefix
from audit_archiver.core.trust import KeyRule, TrustPolicy
from audit_archiver.errors import ConfigurationError, KeyFileError
from audit_archiver.keys import load_public_key

__all__ = ["load_trust_file", "policy_from_public_keys"]

_FIELDS = {"public_key", "streams", "prefix", "not_before", "not_after"}
_GLOB = re.compile(r"\A[A-Za-z0-9._*?\[\]!-]{1,256}\Z")


MAX_TRUST_FILE_BYTES = 1 << 20


def policy_from_public_keys(paths: list[Path]) -> TrustPolicy:
    """The simple mode: every ``--public-key`` may sign every stream.

    Raises:
        KeyFileError: no path, or a file is missing, unreadable or not a
            supported public key.
    """
    if not paths:
        raise KeyFileError("at least one --public-key (or --trust FILE) is required")
    return TrustPolicy.every_stream(
        (load_public_key(path), f"--public-key {path}") for path in paths
    )


def load_trust_file(path: Path) -> TrustPolicy:
    """Read a TOML trust file (format in the module docstring) into a policy.

    Raises:
        ConfigurationError: unreadable, not TOML, no ``[[key]]``, an unknown or
            badly typed field, a bad glob, prefix or time.
        KeyFileError: a ``public_key`` file is missing, unreadable or not a
            supported public key.
    """
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_TRUST_FILE_BYTES + 1)
        if len(raw) > MAX_TRUST_FILE_BYTES:
            raise ConfigurationError(
                f"trust file {path} is larger than {MAX_TRUST_FILE_BYTES} bytes; a trust file"
                " lists keys and rules, not data"
            )
        data = tomllib.loads(raw.decode("utf-8"))
    except OSError as e:
        raise ConfigurationError(f"cannot read trust file {path}: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ConfigurationError(f"trust file {path} is not UTF-8 text") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigurationError(f"trust file {path} is not valid TOML: {e}") from e
    except RecursionError as e:
        raise ConfigurationError(f"trust file {path} nests too deeply to be a trust file") from e
    unknown = sorted(set(data) - {"key"})
    if unknown:
        raise ConfigurationError(
            f"trust file {path}: unknown top-level field(s) {', '.join(unknown)};"
            " list keys as [[key]] tables"
        )
    tables = data.get("key")
    if not isinstance(tables, list) or not tables:
        raise ConfigurationError(
            f"trust file {path} lists no key: add at least one [[key]] table with public_key"
        )
    return TrustPolicy(tuple(_rule(path, number, table) for number, table in enumerate(tables, 1)))


def _rule(path: Path, number: int, table: Any) -> KeyRule:
    where = f"trust file {path}, [[key]] #{number}"
    if not isinstance(table, dict):
        raise ConfigurationError(f"{where}: write each key as a [[key]] table")
    unknown = sorted(set(table) - _FIELDS)
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_FIELDS))}"
        )
    public_key = table.get("public_key")
    if not isinstance(public_key, str) or not public_key:
        raise ConfigurationError(
            f'{where}: public_key is required: the path of a public key file, e.g. "keys/a.pub"'
        )
    key_path = path.parent / public_key
    try:
        key = load_public_key(key_path)
    except KeyFileError as e:
        raise KeyFileError(f"{where}: {e}") from e
    try:
        return KeyRule(
            key,
            streams=_streams(where, table),
            prefix=_prefix(where, table),
            not_before=_time(where, table, "not_before"),
            not_after=_time(where, table, "not_after"),
            origin=f"{path.name} key #{number}",
        )
    except ValueError as e:
        raise ConfigurationError(f"{where}: {e}") from e


def _streams(where: str, table: dict[str, Any]) -> tuple[str, ...] | None:
    if "streams" not in table:
        return None
    streams = table["streams"]
    if not isinstance(streams, list) or not streams:
        raise ConfigurationError(
            f'{where}: streams must be a non-empty list of globs, e.g. ["billing-*"]'
            " (leave it out to allow every stream)"
        )
    for glob in streams:
        if not isinstance(glob, str) or not _GLOB.match(glob):
            raise ConfigurationError(
                f"{where}: streams entry {glob!r} is not a stream glob: use stream-id"
                " characters (A-Z a-z 0-9 . _ -) and * ? [ ] !"
            )
    return tuple(streams)


def _prefix(where: str, table: dict[str, Any]) -> str | None:
    if "prefix" not in table:
        return None
    prefix = table["prefix"]
    if not isinstance(prefix, str) or not prefix:
        raise ConfigurationError(
            f'{where}: prefix must be a non-empty string such as "audit/prod"'
            " (leave it out to allow any prefix)"
        )
    try:
        validate_prefix(prefix)
    except ValueError as e:
        raise ConfigurationError(f"{where}: {e}") from e
    return prefix


def _time(where: str, table: dict[str, Any], name: str) -> datetime | None:
    if name not in table:
        return None
    value = table[name]
    try:
        if isinstance(value, str) and value.isascii():
            value = parse_rfc3339(value)
        if isinstance(value, datetime) and value.tzinfo is not None:
            return value.astimezone(UTC)
    except (ValueError, OverflowError):
        pass
    raise ConfigurationError(
        f'{where}: {name} must be an RFC 3339 date-time with an offset, e.g. "2026-01-01T00:00:00Z"'
    )
