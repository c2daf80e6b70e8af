#!/usr/bin/env bash
# What the browser tests (tests/browser) need beyond the venv setup_env.sh builds; called by it.
#   1. ComfyUI's web frontend: comfyui-frontend-package at the version COMFY's requirements.txt
#      names (1.32.9 for 0.3.75), into the venv under the torch constraints, so main.py serves
#      the real UI.  ~50 MB, a few seconds.
#   2. The browser driver package named in requirements-dev.txt (selenium; it drives the system
#      chromedriver given by path and never downloads a browser or a driver).
#   3. Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver) when
#      missing, through apt-get as root (about 1-2 minutes the first time).  Not root or no
#      apt-get: a message says how to install them and the browser tests skip (under CI=true
#      they fail instead).
# Usage: setup_browser.sh PYTHON COMFYUI_DIR CONSTRAINTS_FILE
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$1"; COMFY="$2"; CONSTRAINTS="$3"
say() { echo "setup_browser: $*" >&2; }
die() { echo "setup_browser: ERROR: $*" >&2; exit 1; }

# ---- 1 + 2: Python packages: ComfyUI's frontend pin and the driver package ----------------------
# Prints the requirement lines that are not met (nothing when all are), read from the two files.
unmet="$("$PY" - "$COMFY/requirements.txt" "$ROOT/requirements-dev.txt" <<'EOF'
import re, sys
from importlib import metadata
try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement

def lines(path, names):
    try:
        text = open(path).read().splitlines()
    except OSError:
        return
    for raw in text:
        line = raw.split("#")[0].strip()
        if not line or line.startswith("-"):
            continue
        req = Requirement(line)
        if re.sub(r"[-_.]+", "-", req.name).lower() in names:
            yield req

for req in [*lines(sys.argv[1], {"comfyui-frontend-package"}), *lines(sys.argv[2], {"selenium"})]:
    try:
        if req.specifier.contains(metadata.version(req.name), prereleases=True):
            continue
    except metadata.PackageNotFoundError:
        pass
    print(str(req))
EOF
)" || die "could not read $COMFY/requirements.txt or requirements-dev.txt"
if [ -n "$unmet" ]; then
  # shellcheck disable=SC2086  # one requirement per word, none has spaces
  say "installing into the venv: $(echo $unmet)"
  "$PY" -m pip install --disable-pip-version-check -q -c "$CONSTRAINTS" $unmet \
    || die "pip could not install: $(echo $unmet) (is the package registry reachable?)"
fi

# ---- 3: the browser and its driver (Debian's packages) ------------------------------------------
has_browser() {
  { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; } \
    && command -v chromedriver >/dev/null 2>&1
}
if ! has_browser; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    say "installing Debian's chromium and chromium-driver for the browser tests (about 1-2 minutes)"
    if DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null \
       && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null; then
      has_browser || say "warning: chromium / chromedriver still not on PATH after apt-get"
    else
      say "warning: apt-get could not install chromium chromium-driver; the browser tests will skip (fail under CI=true)"
    fi
  else
    say "note: no chromium + chromedriver; the browser tests (tests/browser) will skip. Install them with" \
        "'sudo apt-get install chromium chromium-driver' (Debian/Ubuntu), or set NUMINA_CHROMIUM and" \
        "NUMINA_CHROMEDRIVER to a Chromium and its matching ChromeDriver."
  fi
fi
