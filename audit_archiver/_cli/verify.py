"""``audit-archiver verify``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from audit_archiver.verify.report import render_text
from audit_archiver.verify.run import VerifySettings, run_verify


@click.command()
@click.option(
    "--local-dir",
    type=click.Path(path_type=Path),
    help="A downloaded copy of the prefix (aws s3 sync s3://BUCKET/PREFIX DIR).",
)
@click.option("--bucket", help="Verify this S3 bucket (read-only).")
@click.option("--endpoint-url", help="S3-compatible endpoint (default: AWS).")
@click.option("--region", help="AWS region of the bucket.")
@click.option(
    "--prefix",
    default=None,
    help="The prefix the segments were written under (pins the keys named in seals).",
)
@click.option("--stream", "streams", multiple=True, help="Verify only this stream (repeatable).")
@click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Trusted public key PEM, allowed to sign every stream (repeatable).",
)
@click.option(
    "--trust",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Trust file (TOML): which key may sign which streams, under which prefix, when."
    " Instead of --public-key.",
)
@click.option(
    "--deep",
    is_flag=True,
    help="Also parse every event line: one canonical JSON object with one seq and one"
    " received_at (a parse per event).",
)
@click.option(
    "--max-object-bytes",
    type=int,
    default=None,
    help="Report, without reading, objects larger than this (default 64 MiB: four times"
    " the largest segment the agent writes).",
)
@click.option(
    "--state",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Remember verified heads here; fail on truncation or rollback next time,"
    " and only check new segments.",
)
@click.option(
    "--min-retention-days",
    type=int,
    help="Required COMPLIANCE retention after sealing (default: the seal's own, else 1).",
)
@click.option(
    "--max-age",
    type=float,
    help="Fail a stream whose newest segment was sealed more than this many seconds ago.",
)
@click.option(
    "--since",
    help="Only check segments stored since this RFC 3339 time (and the link into the first).",
)
@click.option("--workers", type=int, default=None, help="Downloads in flight (default 16).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON report on stdout.")
@click.option("--no-progress", is_flag=True, help="No progress lines on stderr.")
def verify(as_json: bool, no_progress: bool, **options: Any) -> None:
    """Re-check every segment: bytes, Merkle roots, signatures, chain, gaps, and in a
    bucket also versions, delete markers, retention and the bucket's settings.

    Exit status: 0 all good, 1 integrity problem found, 2 usage, configuration
    or access error.
    """
    report = run_verify(VerifySettings(progress=not no_progress, **options))
    if as_json:
        click.echo(json.dumps(report.to_json()))
    else:
        click.echo(render_text(report), nl=False)
    sys.exit(0 if report.ok else 1)
