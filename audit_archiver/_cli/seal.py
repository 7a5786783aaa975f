"""``audit-archiver seal``: offline archiving of an NDJSON file into a local folder."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from audit_archiver.agent.batch_seal import seal_lines_into_directory
from audit_archiver.core.layout import validate_prefix, validate_stream_id
from audit_archiver.errors import ConfigurationError, InputError
from audit_archiver.keys import load_public_key, load_signer
from audit_archiver.storage.localdir import LocalDirectoryStore


@click.command()
@click.option(
    "--input",
    "input_path",
    required=True,
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="NDJSON events, one object per line ('-' for stdin).",
)
@click.option(
    "--out-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder laid out like a synced bucket prefix: <stream>/<seq>.ndjson.zst.",
)
@click.option("--stream", required=True, help="Stream id (A-Z a-z 0-9 . _ -).")
@click.option(
    "--prefix",
    default="audit",
    show_default=True,
    help="Bucket prefix the segments are sealed for (recorded in each seal).",
)
@click.option("--signing-key", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--previous-public-key",
    "previous_public_keys",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Public key that signed the folder's stream before --signing-key (key rotation;"
    " repeatable): the chain continues from a segment it signed.",
)
@click.option("--batch-max-events", default=1000, show_default=True, type=click.IntRange(1))
@click.option(
    "--compression", type=click.Choice(["zstd", "gzip"]), default="zstd", show_default=True
)
def seal(
    input_path: Path,
    out_dir: Path,
    stream: str,
    prefix: str,
    signing_key: Path,
    previous_public_keys: tuple[Path, ...],
    batch_max_events: int,
    compression: str,
) -> None:
    """Seal events from a file into signed segments in a local folder."""
    try:
        validate_stream_id(stream)
        validate_prefix(prefix)
    except ValueError as e:
        raise ConfigurationError(str(e)) from e
    signer = load_signer(signing_key)
    previous_keys = [load_public_key(path) for path in previous_public_keys]
    try:
        handle = sys.stdin.buffer if str(input_path) == "-" else open(input_path, "rb")  # noqa: SIM115
    except OSError as e:
        raise InputError(f"cannot read {input_path}: {e.strerror}") from e
    with handle:
        result = seal_lines_into_directory(
            handle,
            LocalDirectoryStore(out_dir),
            prefix=prefix,
            stream=stream,
            signer=signer,
            batch_max_events=batch_max_events,
            compression=compression,
            clock=lambda: datetime.now(UTC),
            previous_keys=previous_keys,
        )
    click.echo(
        f"sealed {result.events} event(s) (seq {result.first_seq}..{result.next_seq - 1})"
        f" into {len(result.segments)} segment(s) under {out_dir}/{stream}/"
    )
