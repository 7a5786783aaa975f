"""Run the real ``audit-archiver`` console script in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).with_name("audit-archiver")
TIMEOUT_SECONDS = 120


def run_cli(
    *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI with ``args``; return the finished process (text output)."""
    return subprocess.run(
        [str(BIN), *map(str, args)],
        capture_output=True,
        timeout=TIMEOUT_SECONDS,
        env={**os.environ, **(env or {})},
        check=False,
        text=True,
    )
