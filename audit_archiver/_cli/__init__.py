"""The ``audit-archiver`` command line (private: the library knows nothing of it).

Commands parse their options into a frozen settings object, build the object
that does the work, run it and report. Errors become output here, once: every
:class:`~audit_archiver.errors.AuditArchiverError` is printed as one line and
mapped to its exit code (0 ok, 1 integrity problem, 2 usage, configuration,
storage or access error); ``--verbose`` adds the traceback.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

import click

from audit_archiver import __version__
from audit_archiver.errors import AuditArchiverError

__all__ = ["main"]


class _Group(click.Group):
    """A click group that turns the project's errors into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AuditArchiverError as e:
            if ctx.meta.get("audit_archiver.verbose"):
                traceback.print_exc()
            click.echo(f"audit-archiver: error: {e}", err=True)
            sys.exit(e.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="audit-archiver")
@click.option("--verbose", "-v", is_flag=True, help="Show tracebacks of errors.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """Seal audit events into signed, hash-chained segments under S3 Object Lock,
    and verify them."""
    ctx.meta["audit_archiver.verbose"] = verbose


def _register() -> None:
    from audit_archiver._cli import (
        agent,
        bucket,
        keys,
        local_s3,
        prove,
        query,
        report,
        seal,
        verify,
    )

    main.add_command(agent.agent)
    main.add_command(bucket.bucket)
    main.add_command(keys.keygen)
    main.add_command(keys.kms_public_key)
    main.add_command(local_s3.local_s3)
    main.add_command(prove.prove)
    main.add_command(query.query)
    main.add_command(report.report)
    main.add_command(seal.seal)
    main.add_command(verify.verify)
    main.add_command(prove.verify_proof)


_register()
