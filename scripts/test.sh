#!/usr/bin/env bash
# The README's test command: builds/repairs the environment, then runs every test.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
exec "$ROOT/.numina_env/venv/bin/python" -m pytest tests -q "$@"
