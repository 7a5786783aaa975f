"""Every test THREAT-MODEL.md names exists, so the threat model cannot point at nothing.

References are ``path/file.py::test_name`` (relative to ``tests/``), or
``::test_name`` for another test of the file named before it on the same line;
a ``[param]`` suffix names a parametrized case of that test.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "THREAT-MODEL.md"
_REFERENCE = re.compile(r"`((?:[\w/]+\.py)?)::(\w+)(?:\[[^\]`]*\])?`")


def _references() -> list[tuple[str, str]]:
    found = []
    for line in DOC.read_text().splitlines():
        current = None
        for match in _REFERENCE.finditer(line):
            path, name = match.groups()
            current = path or current
            assert current is not None, f"::{name} names no file before it: {line[:80]}"
            found.append((current, name))
    return found


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


def test_every_named_test_exists() -> None:
    references = _references()
    assert len(references) > 40
    missing = [
        f"{path}::{name}"
        for path, name in references
        if not (ROOT / "tests" / path).is_file() or name not in _tests_in(ROOT / "tests" / path)
    ]
    assert missing == []
