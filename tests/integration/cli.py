"""Run the real ``audit-archiver`` console script in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).with_name("audit-archiver")


def run_cli(
    *args: str | Path,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run the CLI with ``args``; return the finished process (text output)."""
    merged = {**os.environ, **(env or {})}
    return subprocess.run(
        [str(BIN), *map(str, args)],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        env=merged,
        check=False,
        text=stdin is None,
    )
