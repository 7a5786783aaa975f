"""A separate virtual environment for checkov, created on demand.

checkov cannot share the project's environment: it pins ``boto3==1.35.49`` (the project
needs a current boto3 for moto 5), caps ``packaging<24`` and ``networkx<2.7``, and its
``bc-python-hcl2`` dependency installs a top-level ``hcl2`` package that replaces the
``python-hcl2`` the structural tests parse the module with. So checkov lives in its own
venv, ``.venv-checkov/`` at the repository root (or ``$AUDIT_ARCHIVER_CHECKOV_VENV``),
and the tests run it as a subprocess.

Run this file to create or update the venv ahead of the tests (it takes about a minute;
``scripts/test`` runs it in the background while the suite starts, and the checkov test
waits for it, or builds it on first use)::

    python -m tests.terraform.checkov_env
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import venv
from pathlib import Path

__all__ = ["CHECKOV_REQUIREMENT", "checkov_executable", "ensure_checkov", "offline_env"]

# Pinned: a newer checkov may add checks, and the test expects zero failures.
CHECKOV_REQUIREMENT = "checkov==3.3.30"

REPO_ROOT = Path(__file__).resolve().parents[2]
_STAMP = "audit-archiver-requirement.txt"


def venv_dir() -> Path:
    """Return where the checkov venv lives."""
    override = os.environ.get("AUDIT_ARCHIVER_CHECKOV_VENV")
    return Path(override) if override else REPO_ROOT / ".venv-checkov"


def checkov_executable(directory: Path | None = None) -> Path:
    """Return the path of the checkov script inside the venv."""
    directory = directory or venv_dir()
    scripts = "Scripts" if os.name == "nt" else "bin"
    return directory / scripts / "checkov"


def ensure_checkov(directory: Path | None = None) -> Path:
    """Create or update the venv unless it already holds CHECKOV_REQUIREMENT.

    Safe to call from several processes at once (``scripts/test`` builds it in the
    background while the suite runs, and the checkov test calls this too): a lock
    file next to the venv lets one build while the others wait for it.

    Returns the checkov executable. Raises ``subprocess.CalledProcessError`` when pip
    fails (for instance without access to PyPI).
    """
    directory = directory or venv_dir()
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(directory.parent / f"{directory.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _ensure_locked(directory)


def _ensure_locked(directory: Path) -> Path:
    stamp = directory / _STAMP
    executable = checkov_executable(directory)
    if executable.exists() and stamp.exists() and stamp.read_text().strip() == CHECKOV_REQUIREMENT:
        return executable
    if directory.exists() and any(directory.iterdir()) and not (directory / "pyvenv.cfg").exists():
        raise RuntimeError(f"{directory} exists and is not a virtual environment; not replacing it")
    venv.EnvBuilder(with_pip=True, clear=True).create(directory)
    python = directory / ("Scripts" if os.name == "nt" else "bin") / "python"
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, CHECKOV_REQUIREMENT], check=True)
    stamp.write_text(CHECKOV_REQUIREMENT + "\n")
    return executable


def offline_env() -> dict[str, str]:
    """Return an environment in which checkov contacts no server.

    BC_SKIP_MAPPING stops the Bridgecrew guideline download, CKV_SKIP_PACKAGE_UPDATE_CHECK
    the PyPI version check; ``--skip-download`` on the command line does the rest.
    """
    env = dict(os.environ)
    env.update(BC_SKIP_MAPPING="TRUE", CKV_SKIP_PACKAGE_UPDATE_CHECK="true")
    return env


if __name__ == "__main__":
    print(ensure_checkov())
    sys.exit(0)
