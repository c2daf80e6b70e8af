#!/usr/bin/env bash
# NUMINA GPU check, one command: real-shape Wan models (random weights) through ComfyUI and the
# pack's nodes on a CUDA GPU; see benchmarks/gpu_check.py --help for what it measures.
#
#   bash scripts/gpu_check.sh                         # all models, default budget (390 s)
#   bash scripts/gpu_check.sh --models 1.3b --steps 8 # any benchmarks/gpu_check.py option
#   bash scripts/gpu_check.sh --tiny --device cpu     # the CPU dry run at tiny shapes
#
# Which ComfyUI:
#   1. $COMFYUI_PATH (your own ComfyUI; its Python environment must have torch with CUDA);
#   2. else .gpu_bundle/ComfyUI (made by scripts/gpu_bundle.sh; the pack is linked into its
#      custom_nodes/ and the bundle's torchsde / trampoline go on PYTHONPATH);
#   3. else the ComfyUI scripts/setup_env.sh recorded (.numina_env; CPU only).
# Stand-ins for `av` / `torchvision` from the bundle are used only when the real module is missing
# (NUMINA_FORCE_STANDINS=1 uses them anyway: how the dry run tests them).
# Python: $PYTHON, else python3.  Output also goes to $OUT/gpu_check.log when $OUT is set, and the
# JSON to $OUT/gpu_check.json (or --json PATH).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUNDLE="$ROOT/.gpu_bundle"
say() { echo "gpu_check: $*" >&2; }
if [ -n "${PYTHON:-}" ]; then
  PY="$PYTHON"
else            # the first of python3 / python that has torch
  PY=""
  for candidate in python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c "import torch" >/dev/null 2>&1; then PY="$candidate"; break; fi
  done
  PY="${PY:-python3}"
fi
command -v "$PY" >/dev/null 2>&1 || { echo "gpu_check: ERROR: no '$PY' (set PYTHON)" >&2; exit 2; }

# A module counts as present when it can be found (torchvision: when it really imports, since a
# torchvision built for another torch fails at import).
has() {
  if [ "$1" = torchvision ]; then "$PY" -c "import torchvision" >/dev/null 2>&1
  else "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$1') is None)" >/dev/null 2>&1; fi
}
prepend() { PYTHONPATH="$1${PYTHONPATH:+:$PYTHONPATH}"; export PYTHONPATH; }

if [ -n "${COMFYUI_PATH:-}" ]; then
  [ -f "$COMFYUI_PATH/comfy/model_management.py" ] || { echo "gpu_check: ERROR: COMFYUI_PATH=$COMFYUI_PATH is not a ComfyUI folder" >&2; exit 2; }
  say "ComfyUI: $COMFYUI_PATH (COMFYUI_PATH)"
elif [ -d "$BUNDLE/ComfyUI" ]; then
  COMFYUI_PATH="$BUNDLE/ComfyUI"
  mkdir -p "$COMFYUI_PATH/custom_nodes"
  LINK="$COMFYUI_PATH/custom_nodes/numina"
  if [ ! -e "$LINK" ] || [ "$(readlink -f "$LINK")" != "$ROOT" ]; then
    rm -rf "$LINK"
    ln -s "$ROOT" "$LINK"
  fi
  trap 'rm -f "$LINK"' EXIT     # keep the bundle link-free (it travels as a copy)
  say "ComfyUI: $COMFYUI_PATH (bundle; pack linked at custom_nodes/numina)"
elif [ -f "$ROOT/.numina_env/comfyui_path" ]; then
  COMFYUI_PATH="$(cat "$ROOT/.numina_env/comfyui_path")"
  say "ComfyUI: $COMFYUI_PATH (.numina_env)"
else
  echo "gpu_check: ERROR: no ComfyUI: set COMFYUI_PATH, or run scripts/gpu_bundle.sh first (then carry .gpu_bundle)" >&2
  exit 2
fi
export COMFYUI_PATH

# Pure-Python requirements from the bundle, only where missing (or when the bundle is in use).
if [ -d "$BUNDLE/pylib" ]; then
  if [ "$COMFYUI_PATH" = "$BUNDLE/ComfyUI" ] || ! has torchsde || ! has trampoline; then
    prepend "$BUNDLE/pylib"
    say "PYTHONPATH += .gpu_bundle/pylib (torchsde, trampoline)"
  fi
  for mod in av torchvision; do
    if [ "${NUMINA_FORCE_STANDINS:-0}" = "1" ] || ! has "$mod"; then
      if [ -d "$BUNDLE/stubs/$mod" ]; then
        prepend "$BUNDLE/stubs/$mod"
        say "'$mod' is missing here (or NUMINA_FORCE_STANDINS=1): using the bundle's import-time stand-in"
      fi
    fi
  done
fi

"$PY" - <<'EOF' >&2 || true
import importlib, sys
try:
    import torch
    cuda = torch.cuda.is_available()
    name = torch.cuda.get_device_name(0) if cuda else "no CUDA device"
    print(f"gpu_check: python {sys.version.split()[0]}, torch {torch.__version__} (CUDA {torch.version.cuda}), {name}")
except Exception as e:
    print(f"gpu_check: torch does not import: {e}")
import importlib.util
missing = []
for m in ("torchsde", "trampoline", "av", "torchvision", "numpy", "scipy", "skimage", "einops", "safetensors",
          "sentencepiece", "transformers", "tokenizers", "yaml", "PIL", "psutil", "aiohttp", "tqdm"):
    spec = importlib.util.find_spec(m)          # found, not imported (fast)
    if spec is None:
        missing.append(m)
    elif "numina-standin" in open(spec.origin).read() if spec.origin and spec.origin.endswith(".py") else False:
        missing.append(m + " (stand-in)")
print("gpu_check: modules missing: " + (", ".join(missing) if missing else "none"))
EOF

set +e
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  "$PY" -u "$ROOT/benchmarks/gpu_check.py" "$@" 2>&1 | tee "$OUT/gpu_check.log"
  rc=${PIPESTATUS[0]}
else
  "$PY" -u "$ROOT/benchmarks/gpu_check.py" "$@"
  rc=$?
fi
exit "$rc"
