"""The ``audit-archiver`` command line (private: the library knows nothing of it).

Commands parse their options into a frozen settings object, build the object
that does the work, run it and report. Errors become output here, once: every
:class:`~audit_archiver.errors.AuditArchiverError` is printed as one line and
mapped to its exit code (0 ok, 1 integrity problem, 2 usage, configuration,
storage or access error); ``--verbose`` adds the traceback.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from typing import Any

import click

from audit_archiver import __version__
from audit_archiver.errors import AuditArchiverError

__all__ = ["main"]


_COMMANDS = {
    "agent": ("agent", "agent"),
    "bucket": ("bucket", "bucket"),
    "keygen": ("keys", "keygen"),
    "kms-public-key": ("keys", "kms_public_key"),
    "local-s3": ("local_s3", "local_s3"),
    "prove": ("prove", "prove"),
    "query": ("query", "query"),
    "report": ("report", "report"),
    "seal": ("seal", "seal"),
    "verify": ("verify", "verify"),
    "verify-proof": ("prove", "verify_proof"),
}
"""Each command's module (under ``audit_archiver._cli``) and attribute: a command's
module is imported only when that command runs (or help lists it), so ``verify``
does not pay for the agent's HTTP server or the query engine at start-up."""


class _Group(click.Group):
    """A click group that imports its commands on use and turns the project's
    errors into one line and an exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = _COMMANDS.get(cmd_name)
        if where is None:
            return None
        module = importlib.import_module(f"audit_archiver._cli.{where[0]}")
        command: click.Command = getattr(module, where[1])
        return command

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
