"""``audit-archiver query``."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from audit_archiver._cli.options import archive_options
from audit_archiver.query.output import FORMATS
from audit_archiver.query.run import DEFAULT_WORKERS, QuerySettings, run_query


@click.command()
@archive_options
@click.option("--stream", "streams", multiple=True, help="Only this stream (repeatable).")
@click.option("--actor", help="The actor (a string, or an object's id): exact or glob.")
@click.option("--action", help="The action: exact or glob.")
@click.option("--resource", help="The resource (a string, or an object's id): exact or glob.")
@click.option("--outcome", help="The outcome: exact or glob.")
@click.option("--since", help="Events received at or after this RFC 3339 time (inclusive).")
@click.option("--until", help="Events received before this RFC 3339 time (exclusive).")
@click.option(
    "--by-claimed-time",
    is_flag=True,
    help="Apply --since/--until to the producer's own `time` field instead of received_at"
    " (reads every segment of the streams: claimed times are in no order).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="table (fits the terminal), json (NDJSON) or csv.",
)
@click.option("--limit", type=click.IntRange(1), default=None, help="Stop after N printed events.")
@click.option(
    "--workers",
    type=click.IntRange(1),
    default=DEFAULT_WORKERS,
    show_default=True,
    help="Downloads in flight.",
)
def query(output_format: str, **options: Any) -> None:
    """Print the events that match, from segments that verified only.

    Each segment read is checked as verify does (signature and trust policy,
    body hash and size, Merkle root, event seq and times, the chain link from
    the segment before); a segment that fails prints none of its events and
    its problems go to stderr. Exit status: 0 every segment read verified
    (even with no match), 1 a problem was found, 2 usage, configuration or
    access error.
    """
    settings = QuerySettings(format=output_format, **options)
    code = run_query(settings, out=sys.stdout.buffer, err=sys.stderr)
    _quiet_if_closed()
    sys.exit(code)


def _quiet_if_closed() -> None:
    """After ``query | head`` closed the pipe, point stdout at /dev/null so that the
    interpreter's final flush does not print a BrokenPipeError (the exit status is
    the query's)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
