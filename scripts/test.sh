#!/usr/bin/env bash
# The README's test command: builds/repairs the environment, then runs every test.
# NUMINA_ENV_DIR and COMFYUI_PATH are passed on to setup_env.sh (another env / ComfyUI checkout).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
# No path given: pytest.ini's testpaths (tests/); `./scripts/test.sh tests/comfy -x` runs just that.
exec "${NUMINA_ENV_DIR:-$ROOT/.numina_env}/venv/bin/python" -m pytest -q "$@"
