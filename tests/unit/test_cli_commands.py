"""The command line imports a command's module only when that command is used."""

from __future__ import annotations

import subprocess
import sys

import click
from click.testing import CliRunner

from audit_archiver._cli import _COMMANDS, main

# What the README and OPERATIONS.md document (an independent list: a command
# dropped from the table must fail here, not vanish from --help).
DOCUMENTED = {
    "agent",
    "bucket",
    "keygen",
    "kms-public-key",
    "local-s3",
    "prove",
    "query",
    "report",
    "seal",
    "verify",
    "verify-proof",
}


def test_every_documented_command_resolves_under_its_own_name() -> None:
    context = click.Context(main)
    assert set(main.list_commands(context)) == DOCUMENTED
    for name in DOCUMENTED:
        command = main.get_command(context, name)
        assert command is not None
        assert command.name == name


def test_an_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["verfy"])
    assert result.exit_code == 2
    assert "No such command" in result.output


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    listed = result.output.split("Commands:", 1)[1].splitlines()
    names = {line.split()[0] for line in listed if line.startswith("  ") and line.split()}
    assert names == set(_COMMANDS) == DOCUMENTED


def test_verify_does_not_import_the_agent_or_query_stacks() -> None:
    probe = (
        "import sys, click\n"
        "from audit_archiver._cli import main\n"
        "main.get_command(click.Context(main), 'verify')\n"
        "import audit_archiver.verify.run, audit_archiver.storage.s3\n"
        "print(' '.join(m for m in ('aiohttp', 'duckdb', 'google.protobuf', 'wsgiref',"
        " 'audit_archiver.agent', 'audit_archiver.query') if m in sys.modules))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    assert loaded == []
