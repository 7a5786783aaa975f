"""docs/OPERATIONS.md, "Verifying at scale: shards": every snippet parses, and every
``audit-archiver`` command in it is accepted by the real click command.

YAML blocks are parsed with PyYAML and JSON blocks with ``json``; each
``audit-archiver verify`` / ``report merge`` command line (in a shell block, or inside a
container's ``sh -c`` string) is cut at the first redirection or list operator, its
shell variables replaced by sample values, and parsed with the command's own
``make_context``, so an option the CLI does not have, or a bad ``--shard``, fails here.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import click
import yaml  # type: ignore[import-untyped]

from audit_archiver._cli.report import report
from audit_archiver._cli.verify import verify
from audit_archiver.verify.shard import Shard
from tests.docs.snippets import extract_snippets

DOC = Path(__file__).resolve().parents[2] / "docs" / "OPERATIONS.md"
TITLE = "## Verifying at scale: shards"
_COMMAND = re.compile(r"audit-archiver (verify|report merge)\b((?:\\\n|[^\n;&|>\\])*)")
_SAMPLES = {"$K": "3", '"$K/8"': "3/8", "$K/8": "3/8"}


def section() -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(TITLE + "\n")
    end = text.find("\n## ", start + len(TITLE))
    return text[start : end if end != -1 else len(text)]


def strings(value: Any) -> list[str]:
    """Every string inside a parsed YAML or JSON document."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    return []


def command_texts() -> list[str]:
    texts: list[str] = []
    for snippet in extract_snippets(section()):
        if snippet.lang == "yaml":
            documents = [d for d in yaml.safe_load_all(snippet.text) if d is not None]
            assert documents, f"section line {snippet.line}: an empty YAML block"
            texts += [s for d in documents for s in strings(d)]
        elif snippet.lang == "json":
            texts += strings(json.loads(snippet.text))
        else:
            assert snippet.lang == "sh", f"section line {snippet.line}: {snippet.lang!r}"
            texts.append(snippet.text)
    return texts


def parse(command: str, rest: str) -> dict[str, Any]:
    text = rest.replace("\\\n", " ")
    for variable, sample in _SAMPLES.items():
        text = text.replace(variable, sample)
    args = [a for a in shlex.split(text, comments=True) if not a.startswith("[")]
    args = [a.rstrip("]") for a in args]
    if command == "verify":
        return dict(verify.make_context("verify", args).params)
    group = report.make_context("report", ["merge", *args], resilient_parsing=True)
    sub = report.get_command(group, "merge")
    assert isinstance(sub, click.Command)
    return dict(sub.make_context("merge", args).params)


def test_every_snippet_parses_and_every_command_is_accepted() -> None:
    found = [
        (match.group(1), match.group(2))
        for text in command_texts()
        for match in _COMMAND.finditer(text)
    ]
    kinds = [command for command, _ in found]
    assert kinds.count("verify") >= 3 and kinds.count("report merge") >= 3, kinds
    for command, rest in found:
        params = parse(command, rest)
        if command == "verify":
            assert Shard.parse(params["shard"]) == Shard(3, 8), rest
            assert params["as_json"] is True, rest
        else:
            assert params["reports"], rest
