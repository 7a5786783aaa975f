"""Agent settings: one frozen object built from flags, environment and a TOML file.

Precedence is flag > ``AUDIT_ARCHIVER_*`` environment variable > config file >
default (click's own order, with the file loaded as its default map). TOML keys
are the long flag names with ``-`` or ``_``: ``batch_max_events = 5000``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from audit_archiver.core.event import MAX_EVENT_BYTES
from audit_archiver.core.formats import FormatOptions
from audit_archiver.core.layout import validate_prefix, validate_stream_id
from audit_archiver.errors import ConfigurationError

if TYPE_CHECKING:
    from audit_archiver.core.timestamp import TsaTrust

__all__ = [
    "LINE_FORMATS",
    "AgentSettings",
    "BatchLimits",
    "load_config_file",
    "load_tsa_trust",
    "parse_listen",
]

MiB = 1 << 20
LINE_FORMATS = ("events", "k8s-audit", "cloudtrail", "gcp-audit")
"""``--tail-format``/``--stdin-format`` values: formats whose lines are records."""
_UNIX_PATH_MAX = 100  # sun_path is 108 bytes; the agent binds a temporary name beside it first


@dataclass(frozen=True)
class BatchLimits:
    """When the agent seals a segment. Defaults are documented in docs/OPERATIONS.md."""

    max_events: int = 10_000
    max_bytes: int = 8 << 20
    max_age: float = 60.0
    heartbeat: float | None = None


@dataclass(frozen=True)
class AgentSettings:
    """Everything the agent needs to run. See docs/OPERATIONS.md for each setting."""

    bucket: str
    prefix: str
    stream: str
    signing_key: Path | None
    retention_days: int
    spool: Path
    listen: tuple[str, int] | Path | None = None
    """``(host, port)`` for TCP, a :class:`Path` for a Unix socket (``unix:/path``)."""
    token_file: Path | None = None
    endpoint_url: str | None = None
    region: str | None = None
    batch: BatchLimits = field(default_factory=BatchLimits)
    spool_max_bytes: int = 1024 * MiB
    max_body_bytes: int = 10 * MiB
    grace_period: float = 30.0
    stdin: bool = False
    tail: Path | None = None
    compression: str = "zstd"
    ingest_workers: int = 2
    kms_key_id: str | None = None
    previous_public_keys: tuple[Path, ...] = ()
    """Public keys that signed this stream before its current key (key rotation):
    the agent continues a chain (spool or bucket head) signed by any of them."""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    """With TLS: clients must present a certificate issued by this CA."""
    header_timeout: float = 10.0
    """Seconds a connection may take to send complete request headers."""
    idle_timeout: float = 60.0
    """Seconds an idle keep-alive connection (or a stalled body) is kept."""
    max_connections: int = 256
    """Open ingest connections above this are closed at once."""
    max_line_bytes: int = MAX_EVENT_BYTES
    """``--stdin``/``--tail``: a longer line is skipped (counted, logged) unread."""
    max_inflight_bytes: int | None = None
    """Request-body bytes admitted at once (None: 4 x ``max_body_bytes``); more wait."""
    s3_read_timeout: float = 10.0
    """Seconds one S3 socket read may stall before the try counts as failed (retried)."""
    tail_format: str = "events"
    """What each ``--tail`` line holds: one of :data:`LINE_FORMATS`."""
    stdin_format: str = "events"
    """What each ``--stdin`` line holds: one of :data:`LINE_FORMATS`."""
    otlp_actor_attributes: tuple[str, ...] = FormatOptions().otlp_actor_attributes
    """``/v1/logs``: log record attributes tried in order for ``actor``."""
    otlp_resource_attribute: str | None = None
    """``/v1/logs``: the attribute giving ``resource`` (else resource ``service.name``)."""
    tsa_url: str | None = None
    """An RFC 3161 Time-Stamping Authority (http or https) that stamps each seal hash."""
    tsa_timeout: float = 5.0
    """Seconds the whole exchange with the TSA may take (the segment is then sealed unstamped)."""
    tsa_certs: tuple[Path, ...] = ()
    """Trust anchors (PEM) every token must verify against before it is stored."""

    def format_options(self) -> FormatOptions:
        """The field choices of the formats that have them (OTLP)."""
        return FormatOptions(
            otlp_actor_attributes=self.otlp_actor_attributes,
            otlp_resource_attribute=self.otlp_resource_attribute,
        )

    def body_budget_bytes(self) -> int:
        """The request-body budget in effect (``--max-inflight-bytes``)."""
        return self.max_inflight_bytes or 4 * self.max_body_bytes

    def validate(self) -> None:
        """Check values that do not need the network.

        Raises:
            ConfigurationError: naming the first bad setting.
        """
        try:
            validate_stream_id(self.stream)
            validate_prefix(self.prefix)
        except ValueError as e:
            raise ConfigurationError(str(e)) from e
        if len(self.bucket) < 3:
            raise ConfigurationError("--bucket must name a bucket (3 or more characters)")
        checks = [
            (self.retention_days >= 1, "--retention-days must be at least 1"),
            (self.batch.max_events >= 1, "--batch-max-events must be at least 1"),
            (self.batch.max_bytes >= 1024, "--batch-max-bytes must be at least 1024"),
            (self.batch.max_age > 0, "--batch-max-age must be positive"),
            (
                self.batch.heartbeat is None or self.batch.heartbeat > 0,
                "--heartbeat must be positive",
            ),
            (self.spool_max_bytes >= MiB, "--spool-max-bytes must be at least 1 MiB"),
            (self.max_body_bytes >= 1024, "--max-body-bytes must be at least 1024"),
            (
                self.max_inflight_bytes is None or self.max_inflight_bytes >= self.max_body_bytes,
                "--max-inflight-bytes must be at least --max-body-bytes",
            ),
            (
                self.spool_max_bytes >= 2 * self.max_body_bytes,
                "--spool-max-bytes must be at least twice --max-body-bytes",
            ),
            (self.grace_period >= 0, "--grace-period must not be negative"),
            (self.s3_read_timeout > 0, "--s3-read-timeout must be positive"),
            (
                self.listen is not None or self.stdin or self.tail is not None,
                "give an event source: --listen HOST:PORT, --stdin or --tail PATH",
            ),
            *self._listener_checks(),
            (self.compression in ("zstd", "gzip"), "--compression must be zstd or gzip"),
            (self.ingest_workers >= 0, "--ingest-workers must not be negative"),
            (
                self.tail_format in LINE_FORMATS and self.stdin_format in LINE_FORMATS,
                f"--tail-format and --stdin-format must be one of {', '.join(LINE_FORMATS)}",
            ),
            (
                len(self.otlp_actor_attributes) >= 1 and all(self.otlp_actor_attributes),
                "--otlp-actor-attribute must name at least one attribute",
            ),
            (
                (self.signing_key is None) != (self.kms_key_id is None),
                "give exactly one of --signing-key PATH and --kms-key-id ARN",
            ),
            (
                self.tsa_url is None or _is_http_url(self.tsa_url),
                "--tsa-url must be an http:// or https:// URL with a host",
            ),
            (
                self.tsa_url is None or not _has_userinfo(self.tsa_url),
                "--tsa-url must not hold user info (user:password@): credentials in a URL"
                " end up in process listings and logs",
            ),
            (0 < self.tsa_timeout <= 60, "--tsa-timeout must be from 0 to 60 seconds"),
            (not self.tsa_certs or self.tsa_url is not None, "--tsa-cert needs --tsa-url"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigurationError(message)

    def _listener_checks(self) -> list[tuple[bool, str]]:
        tcp = isinstance(self.listen, tuple)
        tls = self.tls_cert is not None
        where = f"{self.listen[0]}:{self.listen[1]}" if isinstance(self.listen, tuple) else ""
        return [
            (
                not tcp or self.token_file is not None or self.tls_client_ca is not None,
                f"--listen {where} needs client authentication: add --token-file FILE"
                " (lines `name token`) or --tls-cert/--tls-key with --tls-client-ca"
                " (client certificates); without either, use --listen unix:/path",
            ),
            ((self.tls_key is not None) == tls, "give both --tls-cert and --tls-key, or neither"),
            (self.tls_client_ca is None or tls, "--tls-client-ca needs --tls-cert and --tls-key"),
            (not tls or tcp, "--tls-cert needs a TCP --listen HOST:PORT"),
            (self.header_timeout > 0, "--header-timeout must be positive"),
            (self.idle_timeout > 0, "--idle-timeout must be positive"),
            (self.max_connections >= 1, "--max-connections must be at least 1"),
            (
                1024 <= self.max_line_bytes <= MAX_EVENT_BYTES,
                f"--max-line-bytes must be from 1024 to {MAX_EVENT_BYTES} (the event size limit)",
            ),
        ]


def _is_http_url(text: str) -> bool:
    """An ``http``/``https`` URL with a host (and a valid port, if any), no white space."""
    if not text.isprintable() or any(c.isspace() for c in text):
        return False
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def load_tsa_trust(paths: tuple[Path, ...]) -> TsaTrust:
    """The certificates of ``--tsa-cert`` PEM files (each may hold several): the trust
    anchors a time-stamp token must chain to (the agent's and ``verify``'s option).

    Raises:
        ConfigurationError: no file, or one that cannot be read or holds no certificate.
    """
    from audit_archiver.core.timestamp import TsaTrust  # the RFC 3161 library: only when used

    if not paths:
        raise ConfigurationError("--tsa-cert: no file given")
    trust = TsaTrust(())
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ConfigurationError(f"cannot read --tsa-cert {path}: {e.strerror}") from e
        try:
            trust += TsaTrust.from_pem(data)
        except ValueError as e:
            raise ConfigurationError(f"--tsa-cert {path}: {e}") from e
    return trust


def _has_userinfo(text: str) -> bool:
    """Whether a URL names a user or password (``user:pass@host``)."""
    try:
        parts = urlsplit(text)
    except ValueError:
        return False
    return parts.username is not None or parts.password is not None


def parse_listen(text: str) -> tuple[str, int] | Path:
    """Parse ``HOST:PORT`` (``[::1]:8080`` for IPv6) or ``unix:/absolute/path``.

    Raises:
        ConfigurationError: not HOST:PORT with a port from 0 to 65535, nor
            ``unix:`` with an absolute path that fits a socket address.
    """
    if text.startswith("unix:"):
        path = text.removeprefix("unix:")
        if not path.startswith("/") or "\0" in path or len(os.fsencode(path)) > _UNIX_PATH_MAX:
            raise ConfigurationError(
                f"--listen {text!r}: unix: needs an absolute path of at most {_UNIX_PATH_MAX} bytes"
            )
        return Path(path)
    host, sep, port = text.rpartition(":")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ConfigurationError(f"--listen {text!r}: an IPv6 host is written [::1]:PORT")
        host = host[1:-1]
    elif ":" in host or "]" in host:
        raise ConfigurationError(f"--listen {text!r}: an IPv6 host is written [::1]:PORT")
    digits = port.isascii() and port.isdigit()
    if not sep or not host or not digits or len(port) > 5 or int(port) > 65535:
        raise ConfigurationError(f"--listen {text!r} is not HOST:PORT")
    return host, int(port)


def load_config_file(path: Path, known: set[str]) -> dict[str, Any]:
    """Read a TOML config file into a click default map.

    Raises:
        ConfigurationError: unreadable, not TOML, or with unknown keys.
    """
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise ConfigurationError(f"cannot read config file {path}: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigurationError(f"config file {path} is not valid TOML: {e}") from e
    normalized = {key.replace("-", "_"): value for key, value in data.items()}
    unknown = sorted(set(normalized) - known)
    if unknown:
        raise ConfigurationError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
    return normalized
