#!/usr/bin/env bash
# Runs the whole of Linli embedded on this machine: ./scripts/demo.sh [--port 8000] [--no-sim] ...
# Sets up its own virtualenv in .venv on first use; needs only Python 3.11+.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  echo "linli: creating .venv and installing (first run only) ..."
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import linli, gateway, api, firmware_sim" 2>/dev/null || [ pyproject.toml -nt .venv/.linli-installed ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e .
  touch .venv/.linli-installed
fi
exec .venv/bin/linli demo "$@"
