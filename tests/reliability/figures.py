"""Figures for docs/OPERATIONS.md "Tested failures", written as the tests run.

With ``AUDIT_ARCHIVER_FIGURES=<file>`` each test appends one JSON line (its name
and counts: kills, faults by kind, hostile inputs, events lost, peak memory);
without it nothing is written.
"""

from __future__ import annotations

import json
import os
from typing import Any


def record(test: str, **figures: Any) -> None:
    """Append ``figures`` for ``test`` to the figures file, if one is named."""
    target = os.environ.get("AUDIT_ARCHIVER_FIGURES")
    if target:
        with open(target, "a", encoding="utf-8") as out:
            out.write(json.dumps({"test": test, **figures}, sort_keys=True) + "\n")
