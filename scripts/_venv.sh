# Shared by scripts/demo, scripts/test and scripts/bench: create .venv if
# missing and install the project with the given extras when pyproject changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3
extras="$1"
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $("$python" --version)" >&2
  "$python" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip >&2
fi
stamp=".venv/.installed-$extras"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "installing audit-archiver[$extras] into .venv" >&2
  log=$(mktemp)
  if ! .venv/bin/python -m pip install -e ".[$extras]" >"$log" 2>&1; then
    cat "$log" >&2
    echo "pip install failed (full log above)" >&2
    exit 2
  fi
  rm -f "$log"
  touch "$stamp"
fi
