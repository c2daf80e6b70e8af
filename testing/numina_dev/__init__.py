"""The NUMINA development harness: what the tests, the demo, the fixtures script and the benchmarks
share.  Not part of the published pack.

    comfy_runtime   a real ComfyUI in-process: boot it, register the custom nodes, execute graphs
    comfy_server    a real ComfyUI server (main.py) on 127.0.0.1, started and stopped by its PID
    graphs          the tiny fixtures' file names and a plain API-format graph on them
    synthetic       seeded synthetic captures with known counts (pure numina_ops, no ComfyUI)

Importable without path edits: scripts/setup_env.sh writes a .pth file into the venv naming the
repository root and testing/ (this package's folder), and pytest.ini's `pythonpath` does the same
for the tests.  The command-line tools in scripts/ import it; the tests import it and
`scripts.<tool>`.
"""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TESTING = os.path.join(ROOT, "testing")
