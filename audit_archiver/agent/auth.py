"""Who is calling: client tokens and the ``Authorization`` header.

A token file holds one ``name token`` pair per line (``#`` starts a comment
line, blank lines are skipped) or a single bare token, which is named
``default``. Names are ``A-Z a-z 0-9 . _ -`` (1 to 64 characters): they appear
in metrics and logs. Tokens are 16 to 4096 visible ASCII characters and never
leave this module: they are compared as SHA-256 digests with
:func:`hmac.compare_digest`, against every entry (no early exit), so neither the
time taken nor the error says which token came close.

Accepted headers: ``Bearer <token>``, and ``Basic base64(name:token)`` (what
Fluent Bit's ``http`` output sends with ``http_user``/``http_passwd``); with a
bare token the Basic user name may be anything. The header is handled as
bytes: any byte sequence gives an :class:`AuthenticationError`, never a crash.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from audit_archiver.errors import AuthenticationError, ConfigurationError

__all__ = ["DEFAULT_CLIENT", "TokenSet", "load_token_file", "parse_token_file"]

DEFAULT_CLIENT = "default"
MIN_TOKEN_CHARS = 16
MAX_TOKEN_CHARS = 4096
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_TOKEN = re.compile(rb"[\x21-\x7e]+")
_SPACE = b" \t"


def _digest(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


@dataclass(frozen=True)
class TokenSet:
    """The tokens clients may present, each with its client name.

    ``bare`` is true when the file held one unnamed token (any Basic user name
    is accepted then).
    """

    entries: tuple[tuple[str, bytes], ...]
    """(name, SHA-256 of the token) pairs."""
    bare: bool = False

    def __repr__(self) -> str:
        return f"TokenSet(names={[name for name, _ in self.entries]!r}, bare={self.bare})"

    @property
    def names(self) -> tuple[str, ...]:
        """The client names, in file order."""
        return tuple(name for name, _ in self.entries)

    def _match(self, supplied: bytes) -> str | None:
        digest = _digest(supplied)
        found = None
        for name, expected in self.entries:  # every entry, whatever matched before
            if hmac.compare_digest(digest, expected):
                found = name
        return found

    def authenticate(self, values: Sequence[bytes]) -> str:
        """Return the client name for the raw ``Authorization`` header values.

        Raises:
            AuthenticationError: none, several, malformed, or wrong credentials.
        """
        if not values:
            raise AuthenticationError("missing Authorization header")
        if len(values) > 1:
            raise AuthenticationError("more than one Authorization header")
        scheme, _, rest = values[0].strip(_SPACE).partition(b" ")
        credentials = rest.strip(_SPACE)
        if not credentials or not _TOKEN.fullmatch(credentials):
            raise AuthenticationError("malformed Authorization header")
        match scheme.lower():
            case b"bearer":
                return self._bearer(credentials)
            case b"basic":
                return self._basic(credentials)
            case _:
                raise AuthenticationError("unsupported Authorization scheme (use Bearer or Basic)")

    def _bearer(self, token: bytes) -> str:
        name = self._match(token)
        if name is None:
            raise AuthenticationError("wrong token")
        return name

    def _basic(self, credentials: bytes) -> str:
        try:
            decoded = base64.b64decode(credentials, validate=True)
        except (binascii.Error, ValueError) as e:
            raise AuthenticationError("malformed Basic credentials") from e
        user, colon, password = decoded.partition(b":")
        if not colon:
            raise AuthenticationError("malformed Basic credentials")
        name = self._match(password)
        if name is None:
            raise AuthenticationError("wrong token")
        if not self.bare and user != name.encode():
            raise AuthenticationError("the Basic user name is not the token's client name")
        return name


def parse_token_file(data: bytes, source: str) -> TokenSet:
    """Parse token file bytes (``source`` names the file in errors).

    Raises:
        ConfigurationError: naming the line and what is wrong, never the token.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigurationError(f"token file {source} is not UTF-8 text") from e
    entries: list[tuple[str, bytes]] = []
    seen_tokens: set[bytes] = set()
    bare = False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        where = f"token file {source} line {number}"
        if len(fields) > 2:
            raise ConfigurationError(f"{where}: expected `name token` (two fields)")
        if len(fields) == 1:
            name, token = DEFAULT_CLIENT, fields[0]
            bare = True
        else:
            name, token = fields
            if not _NAME.fullmatch(name):
                raise ConfigurationError(
                    f"{where}: a client name is 1-64 characters of A-Z a-z 0-9 . _ -"
                )
        encoded = token.encode()
        if not MIN_TOKEN_CHARS <= len(encoded) <= MAX_TOKEN_CHARS or not _TOKEN.fullmatch(encoded):
            raise ConfigurationError(
                f"{where}: a token is {MIN_TOKEN_CHARS} to {MAX_TOKEN_CHARS} visible ASCII characters"
            )
        if name in (n for n, _ in entries):
            raise ConfigurationError(f"{where}: client name {name!r} is listed twice")
        if encoded in seen_tokens:
            raise ConfigurationError(f"{where}: this token is already listed for another client")
        seen_tokens.add(encoded)
        entries.append((name, _digest(encoded)))
    if not entries:
        raise ConfigurationError(
            f"token file {source} holds no token: add a line `name token`"
            f" (token: {MIN_TOKEN_CHARS}+ characters)"
        )
    if bare and len(entries) > 1:
        raise ConfigurationError(
            f"token file {source}: a bare token must be the only entry; write `name token` lines"
        )
    return TokenSet(tuple(entries), bare=bare)


def load_token_file(path: Path) -> TokenSet:
    """Read and parse a token file.

    Raises:
        ConfigurationError: unreadable or malformed.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigurationError(f"cannot read --token-file {path}: {e.strerror}") from e
    return parse_token_file(data, str(path))
