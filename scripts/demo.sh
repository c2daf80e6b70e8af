#!/usr/bin/env bash
# The README's demo command: builds/repairs the environment, then runs the CPU demo workflow.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_env.sh"
exec "${NUMINA_ENV_DIR:-$ROOT/.numina_env}/venv/bin/python" "$ROOT/scripts/demo.py" "$@"
