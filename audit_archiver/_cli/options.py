"""The options every command that reads an archive shares (``verify``, ``query``, ``prove``).

One definition, so the three commands name, type and explain the archive
source (``--local-dir`` or ``--bucket`` with ``--endpoint-url``, ``--region``,
``--prefix``) and the trust (``--public-key`` or ``--trust``) the same way.
The values arrive as the keyword arguments ``local_dir``, ``bucket``,
``endpoint_url``, ``region``, ``prefix``, ``public_keys`` and ``trust``; the
settings are turned into a store by
:func:`audit_archiver.verify.run.archive_source`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

__all__ = ["archive_options", "public_key_option", "trust_option"]

F = TypeVar("F", bound=Callable[..., Any])

public_key_option = click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Trusted public key PEM, allowed to sign every stream (repeatable).",
)
trust_option = click.option(
    "--trust",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Trust file (TOML): which key may sign which streams, under which prefix, when."
    " Instead of --public-key.",
)

_SOURCE = (
    click.option(
        "--local-dir",
        type=click.Path(path_type=Path),
        help="Read a downloaded copy of the prefix (aws s3 sync s3://BUCKET/PREFIX DIR).",
    ),
    click.option("--bucket", help="Read this S3 bucket (read-only: nothing is written)."),
    click.option("--endpoint-url", help="S3-compatible endpoint (default: AWS)."),
    click.option("--region", help="AWS region of the bucket."),
    click.option(
        "--prefix",
        default=None,
        help="The prefix the segments were written under (pins the keys named in seals).",
    ),
)


def archive_options(command: F) -> F:
    """Add the archive source and trust options to a click command."""
    for option in reversed((*_SOURCE, public_key_option, trust_option)):
        command = option(command)
    return command
