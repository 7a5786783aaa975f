"""Agent settings: one frozen object built from flags, environment and a TOML file.

Precedence is flag > ``AUDIT_ARCHIVER_*`` environment variable > config file >
default (click's own order, with the file loaded as its default map). TOML keys
are the long flag names with ``-`` or ``_``: ``batch_max_events = 5000``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit_archiver.core.layout import validate_prefix, validate_stream_id
from audit_archiver.errors import ConfigurationError

__all__ = ["AgentSettings", "BatchLimits", "load_config_file", "parse_listen"]

MiB = 1 << 20


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
    listen: tuple[str, int] | None = None
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
                self.spool_max_bytes >= 2 * self.max_body_bytes,
                "--spool-max-bytes must be at least twice --max-body-bytes",
            ),
            (self.grace_period >= 0, "--grace-period must not be negative"),
            (
                self.listen is not None or self.stdin or self.tail is not None,
                "give an event source: --listen HOST:PORT, --stdin or --tail PATH",
            ),
            (
                self.listen is None or self.token_file is not None,
                "--listen needs --token-file (the bearer token clients must send)",
            ),
            (self.compression in ("zstd", "gzip"), "--compression must be zstd or gzip"),
            (self.ingest_workers >= 0, "--ingest-workers must not be negative"),
            (
                (self.signing_key is None) != (self.kms_key_id is None),
                "give exactly one of --signing-key PATH and --kms-key-id ARN",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigurationError(message)


def parse_listen(text: str) -> tuple[str, int]:
    """Parse ``HOST:PORT`` (``[::1]:8080`` for IPv6).

    Raises:
        ConfigurationError: not HOST:PORT with a port from 0 to 65535.
    """
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
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
