#!/usr/bin/env bash
# Prepare .gpu_bundle/ (ignored by git): what a lent GPU machine without ComfyUI and without
# internet needs to run scripts/gpu_check.sh, small enough to travel with the working tree.
#
#   .gpu_bundle/ComfyUI/         a trimmed copy of ComfyUI's source (no models/, tests, output,
#                                custom nodes, nor the tokenizer folders Wan / umT5 never read),
#                                plus models/text_encoders/numina_tiny_umt5.safetensors when the
#                                set-up built it (else gpu_check.py rebuilds it on the device, ~2 s)
#   .gpu_bundle/pylib/           torchsde + trampoline (pure-Python wheels, unpacked)
#   .gpu_bundle/stubs/av/        import-time stand-in for PyAV (used only where `import av` fails)
#   .gpu_bundle/stubs/torchvision/  same for torchvision (only where it is missing)
#
# Source ComfyUI: $COMFYUI_PATH, else the one scripts/setup_env.sh recorded (.numina_env).
# Prints the size; fails above 60 MiB (the transfer limit is 64 MiB with the working tree).
# Then, on the device machine:   bash scripts/gpu_check.sh            (carry: .gpu_bundle)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENV_DIR="${NUMINA_ENV_DIR:-$ROOT/.numina_env}"
BUNDLE="$ROOT/.gpu_bundle"
LIMIT_MIB=60
TRANSFER_MIB=64
TORCHSDE="torchsde==0.2.6"
TRAMPOLINE="trampoline==0.1.2"

die() { echo "gpu_bundle: ERROR: $*" >&2; exit 1; }
say() { echo "gpu_bundle: $*" >&2; }

# ---- source ComfyUI and a Python to run pip / zipfile with --------------------------------
SRC="${COMFYUI_PATH:-}"
if [ -z "$SRC" ] && [ -f "$ENV_DIR/comfyui_path" ]; then SRC="$(cat "$ENV_DIR/comfyui_path")"; fi
[ -n "$SRC" ] || SRC="$ENV_DIR/ComfyUI"
[ -f "$SRC/main.py" ] && [ -d "$SRC/comfy" ] || die "no ComfyUI at '$SRC': set COMFYUI_PATH or run scripts/setup_env.sh"
SRC="$(cd "$SRC" && pwd)"
PY="${NUMINA_BUNDLE_PYTHON:-$ENV_DIR/venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)" || die "no python3"

TMP="$BUNDLE.tmp"
rm -rf "$TMP"
mkdir -p "$TMP/ComfyUI" "$TMP/pylib" "$TMP/stubs"

# ---- 1. ComfyUI, trimmed ----------------------------------------------------------------------
say "copying ComfyUI from $SRC (trimmed)"
# Kept: everything Python that `comfy`, `nodes`, `comfy_extras`, `comfy_api`, the Wan model, the
# umT5 tokenizer code (its vocabulary comes from the checkpoint) and ComfyUI's sampler import.
# Dropped: weights, tests, outputs, other custom nodes and the big tokenizer data folders of
# models we never load (llama / qwen / t5-pile / hydit / ace / byt5).  t5_tokenizer and
# sd1_tokenizer stay (small; T5 / CLIP tokenizers some loaders build by default).
tar -C "$SRC" -cf - \
    --exclude='./models' --exclude='./tests' --exclude='./tests-unit' --exclude='./output' \
    --exclude='./input' --exclude='./temp' --exclude='./user' --exclude='./custom_nodes' \
    --exclude='./script_examples' --exclude='./.git' --exclude='./.github' --exclude='./.numina_ready' \
    --exclude='./web' --exclude='./extra_model_paths.yaml' \
    --exclude='./comfy/text_encoders/llama_tokenizer' --exclude='./comfy/text_encoders/qwen25_tokenizer' \
    --exclude='./comfy/text_encoders/t5_pile_tokenizer' --exclude='./comfy/text_encoders/hydit_clip_tokenizer' \
    --exclude='./comfy/text_encoders/ace_lyrics_tokenizer' --exclude='./comfy/text_encoders/byt5_tokenizer' \
    --exclude='__pycache__' --exclude='*.pyc' \
    . | tar -C "$TMP/ComfyUI" -xf -
mkdir -p "$TMP/ComfyUI/custom_nodes" "$TMP/ComfyUI/models/text_encoders" "$TMP/ComfyUI/output" "$TMP/ComfyUI/input"
FIXTURE="$SRC/models/text_encoders/numina_tiny_umt5.safetensors"
if [ -f "$FIXTURE" ] && [ "${NUMINA_BUNDLE_FIXTURE:-1}" = "1" ]; then
  cp "$FIXTURE" "$TMP/ComfyUI/models/text_encoders/"
  say "fixture: numina_tiny_umt5.safetensors included"
else
  say "fixture: not included (gpu_check.py builds the tiny umT5 on the device, about 2 s)"
fi

# ---- 2. torchsde + trampoline (pure Python) -----------------------------------------------------
WHEELS="$TMP/wheels"
mkdir -p "$WHEELS"
if "$PY" -m pip download --disable-pip-version-check -q --no-deps --only-binary=:all: --python-version 3.12 \
      "$TORCHSDE" "$TRAMPOLINE" -d "$WHEELS" 2>/dev/null; then
  say "wheels: $(cd "$WHEELS" && ls | tr '\n' ' ')"
  "$PY" - "$WHEELS" "$TMP/pylib" <<'EOF' || die "could not unpack the wheels"
import glob, os, sys, zipfile
for whl in sorted(glob.glob(os.path.join(sys.argv[1], "*.whl"))):
    with zipfile.ZipFile(whl) as z:
        z.extractall(sys.argv[2])
EOF
else
  say "pip download failed: copying torchsde / trampoline from $PY's site-packages instead"
  "$PY" - "$TMP/pylib" <<'EOF' || die "torchsde / trampoline neither downloadable nor installed"
import os, shutil, sys
import torchsde, trampoline
shutil.copytree(os.path.dirname(torchsde.__file__), os.path.join(sys.argv[1], "torchsde"),
                ignore=shutil.ignore_patterns("__pycache__"))
shutil.copy(trampoline.__file__, sys.argv[1]) if not trampoline.__file__.endswith("__init__.py") else \
    shutil.copytree(os.path.dirname(trampoline.__file__), os.path.join(sys.argv[1], "trampoline"),
                    ignore=shutil.ignore_patterns("__pycache__"))
EOF
fi
rm -rf "$WHEELS"
[ -d "$TMP/pylib/torchsde" ] || die "torchsde missing from the bundle"
ls "$TMP/pylib" | grep -q '^trampoline' || die "trampoline missing from the bundle"

# ---- 3. import-time stand-ins (gpu_check.sh adds one only where the real module is missing) ----
mkdir -p "$TMP/stubs/av/av/subtitles" "$TMP/stubs/torchvision/torchvision/transforms"
cat > "$TMP/stubs/_standin.py" <<'EOF'
"""Import-time stand-in for a package this check never uses (NUMINA GPU check bundle).

ComfyUI imports PyAV (video types) and torchvision (cosmos / cascade / ace model code) at
start-up; the Wan path never calls them.  Any attribute is a placeholder class, so imports,
annotations and isinstance() work; calling or instantiating one raises."""


class _Placeholder(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return placeholder(f"{cls.__name__}.{name}", cls._package)

    def __call__(cls, *args, **kwargs):
        raise RuntimeError(f"{cls.__name__}: '{cls._package}' is not installed here (an import-time "
                           "stand-in from the NUMINA GPU check bundle); install it to use this")


def placeholder(name, package):
    return _Placeholder(name, (object,), {"_package": package})


def module_getattr(package, module_name):
    def __getattr__(name):
        if name.startswith("__"):
            raise AttributeError(name)
        return placeholder(f"{module_name}.{name}", package)
    return __getattr__
EOF
for pkg in av torchvision; do cp "$TMP/stubs/_standin.py" "$TMP/stubs/$pkg/_numina_standin.py"; done
rm "$TMP/stubs/_standin.py"
standin_module() {  # file package module_name [extra lines]
  cat > "$1" <<EOF
# Import-time stand-in (NUMINA GPU check bundle): see _numina_standin.py beside this package.
import _numina_standin as _s
NUMINA_STANDIN = True
__getattr__ = _s.module_getattr("$2", "$3")
${4:-}
EOF
}
standin_module "$TMP/stubs/av/av/__init__.py" av av "__version__ = '0.0.0+numina-standin'
time_base = 1000000
def open(*args, **kwargs):
    raise RuntimeError('PyAV is not installed here (NUMINA GPU check stand-in): no video can be read or written')
from . import container, subtitles  # noqa: E402"
standin_module "$TMP/stubs/av/av/container.py" av av.container
standin_module "$TMP/stubs/av/av/subtitles/__init__.py" av av.subtitles "from . import stream  # noqa: E402"
standin_module "$TMP/stubs/av/av/subtitles/stream.py" av av.subtitles.stream
standin_module "$TMP/stubs/torchvision/torchvision/__init__.py" torchvision torchvision "__version__ = '0.0.0+numina-standin'
from . import transforms  # noqa: E402"
standin_module "$TMP/stubs/torchvision/torchvision/transforms/__init__.py" torchvision torchvision.transforms

# ---- 4. swap in, size check -------------------------------------------------------------------
rm -rf "$BUNDLE"
mv "$TMP" "$BUNDLE"
grep -qxF '.gpu_bundle/' "$ROOT/.gitignore" 2>/dev/null || say "WARNING: .gpu_bundle/ is not in .gitignore"
size_b=$(du -sb "$BUNDLE" | cut -f1)
tree_b=$(cd "$ROOT" && git ls-files -co --exclude-standard -z 2>/dev/null | xargs -0 -r du -cb 2>/dev/null | tail -1 | cut -f1)
tree_b=${tree_b:-0}
size_mib=$(awk -v b="$size_b" 'BEGIN { printf "%.1f", b / 1048576 }')
total_mib=$(awk -v b="$size_b" -v t="$tree_b" 'BEGIN { printf "%.1f", (b + t) / 1048576 }')
for part in ComfyUI pylib stubs; do
  say "  $part: $(du -sb "$BUNDLE/$part" | awk '{ printf "%.1f MiB", $1 / 1048576 }')"
done
echo "gpu_bundle: $BUNDLE is ${size_mib} MiB (limit ${LIMIT_MIB} MiB); with the working tree ${total_mib} MiB (transfer limit ${TRANSFER_MIB} MiB)"
awk -v b="$size_b" -v l="$LIMIT_MIB" 'BEGIN { exit !(b > l * 1048576) }' && die "the bundle exceeds ${LIMIT_MIB} MiB"
awk -v b="$size_b" -v t="$tree_b" -v l="$TRANSFER_MIB" 'BEGIN { exit !(b + t > l * 1048576) }' \
  && die "bundle + working tree exceed the ${TRANSFER_MIB} MiB transfer limit (NUMINA_BUNDLE_FIXTURE=0 drops the 17 MB fixture)"
echo "gpu_bundle: ready. On the device machine: bash scripts/gpu_check.sh   (carry: .gpu_bundle)"
