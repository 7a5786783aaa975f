"""``audit-archiver report merge``: one verdict from the N reports of ``verify --shard``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from audit_archiver.errors import ReportInputError
from audit_archiver.verify.merge import MAX_REPORT_BYTES, merge_reports, parse_shard_report
from audit_archiver.verify.report import render_text


@click.group()
def report() -> None:
    """Work with verify reports."""


@report.command()
@click.argument("reports", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON report on stdout.")
def merge(reports: tuple[Path, ...], as_json: bool) -> None:
    """Combine the JSON reports of `verify --shard K/N --json`, shards 1 to N of one
    run, into one report of the whole archive.

    Exit status: 0 no problem in any shard, 1 at least one problem, 2 a report is
    missing, given twice, unreadable, not a shard report, or of another archive or N.
    """
    parsed = [parse_shard_report(str(path), _read(path)) for path in reports]
    merged = merge_reports(parsed)
    if as_json:
        click.echo(json.dumps(merged.to_json()))
    else:
        click.echo(render_text(merged), nl=False)
    sys.exit(0 if merged.ok else 1)


def _read(path: Path) -> bytes:
    """At most one byte more than a report may hold (the parser refuses it then).

    Raises:
        ReportInputError: the file cannot be read.
    """
    try:
        with open(path, "rb") as handle:
            return handle.read(MAX_REPORT_BYTES + 1)
    except OSError as e:
        raise ReportInputError(f"cannot read report {path}: {e.strerror}") from e
