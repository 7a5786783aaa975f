"""``audit-archiver verify``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from audit_archiver.verify.report import render_text
from audit_archiver.verify.run import VerifySettings, build_verifier


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
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Trusted public key PEM (repeatable, e.g. during key rotation).",
)
@click.option("--workers", type=int, default=None, help="Parallel downloads and checks.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON report on stdout.")
def verify(as_json: bool, **options: Any) -> None:
    """Re-check every segment: bytes, Merkle roots, signatures, chain and gaps.

    Exit status: 0 all good, 1 integrity problem found, 2 usage, configuration
    or access error.
    """
    report = build_verifier(VerifySettings(**options)).run()
    if as_json:
        click.echo(json.dumps(report.to_json()))
    else:
        click.echo(render_text(report), nl=False)
    sys.exit(0 if report.ok else 1)
