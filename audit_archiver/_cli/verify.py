"""``audit-archiver verify``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from audit_archiver._cli.options import archive_options
from audit_archiver.verify.report import render_text
from audit_archiver.verify.run import VerifySettings, run_verify


@click.command()
@archive_options
@click.option("--stream", "streams", multiple=True, help="Verify only this stream (repeatable).")
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
@click.option(
    "--tsa-cert",
    "tsa_certs",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Check RFC 3161 time-stamp tokens against this TSA CA certificate (PEM;"
    " repeatable): signature, chain, timeStamping key usage, genTime.",
)
@click.option(
    "--require-timestamps",
    is_flag=True,
    help="A segment without a time-stamp token is a problem (needs --tsa-cert).",
)
@click.option(
    "--watch",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Keep verifying: a run every SECONDS (needs --state; only new segments are"
    " downloaded). Stops on SIGTERM/SIGINT with the status of the last completed run.",
)
@click.option(
    "--metrics-listen",
    metavar="HOST:PORT",
    help="With --watch: serve Prometheus metrics at http://HOST:PORT/metrics.",
)
@click.option(
    "--shard",
    metavar="K/N",
    help="Check only shard K of N (1 <= K <= N): a fixed share of each stream's ranges of"
    " 4,096 segments, with the links into them; combine the N --json reports with"
    " `audit-archiver report merge`. Not with --state, --watch or --since.",
)
@click.option("--shard-unit-segments", type=int, default=None, hidden=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON report on stdout.")
@click.option("--no-progress", is_flag=True, help="No progress lines on stderr.")
def verify(
    as_json: bool,
    no_progress: bool,
    watch: float | None,
    metrics_listen: str | None,
    **options: Any,
) -> None:
    """Re-check every segment: bytes, Merkle roots, signatures, chain, gaps, and in a
    bucket also versions, delete markers, retention and the bucket's settings.

    Exit status: 0 all good, 1 integrity problem found, 2 usage, configuration
    or access error.
    """
    settings = VerifySettings(progress=not no_progress, **options)
    if watch is not None or metrics_listen is not None:
        _watch(settings, watch, metrics_listen, as_json=as_json)
    report = run_verify(settings)
    if as_json:
        click.echo(json.dumps(report.to_json()))
    else:
        click.echo(render_text(report), nl=False)
    sys.exit(0 if report.ok else 1)


def _watch(
    settings: VerifySettings, interval: float | None, metrics_listen: str | None, *, as_json: bool
) -> None:
    """Run ``--watch`` until stopped, then exit; raise on bad watch options.

    Imported here, not at the top: the metrics server is only a watch's.
    """
    from audit_archiver.verify.watch import end_worker_processes, render_run, watch_settings
    from audit_archiver.verify.watch import watch as run_watch

    watching = watch_settings(settings, interval, metrics_listen)
    assert watching is not None  # interval or metrics_listen is set: a watch or an error
    outcome = run_watch(
        watching,
        emit=lambda report, info: click.echo(render_run(report, info, as_json=as_json), nl=False),
        log=lambda line: click.echo(f"audit-archiver verify --watch: {line}", err=True),
    )
    if outcome.abandoned:  # a run is still going in its thread: do not wait for it
        end_worker_processes()  # its download workers would outlive us, waiting forever
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(outcome.code)
    sys.exit(outcome.code)
