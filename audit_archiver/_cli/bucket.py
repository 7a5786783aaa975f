"""``audit-archiver bucket check``."""

from __future__ import annotations

import json
import sys

import click

from audit_archiver.storage.specs import S3Spec
from audit_archiver.verify.bucket_check import check_bucket, render_checks


@click.group()
def bucket() -> None:
    """Inspect the archive bucket (read-only)."""


@bucket.command("check")
@click.option("--bucket", "name", required=True, help="The archive bucket.")
@click.option(
    "--min-retention-days",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Shortest acceptable default COMPLIANCE retention.",
)
@click.option("--endpoint-url", help="S3-compatible endpoint (default: AWS).")
@click.option("--region", help="AWS region of the bucket.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def check(
    name: str, min_retention_days: int, endpoint_url: str | None, region: str | None, as_json: bool
) -> None:
    """Check Object Lock, default COMPLIANCE retention, versioning, encryption, public
    access block and a TLS-only policy. Exit status 1 when any check fails."""
    from audit_archiver.storage.s3 import S3Store

    store = S3Spec(name, region, endpoint_url).open()
    assert isinstance(store, S3Store)
    results = check_bucket(store.bucket_settings(), min_retention_days)
    ok = all(r.ok for r in results)
    if as_json:
        click.echo(json.dumps({"bucket": name, "ok": ok, "checks": [r.__dict__ for r in results]}))
    else:
        click.echo(render_checks(name, results), nl=False)
    sys.exit(0 if ok else 1)
