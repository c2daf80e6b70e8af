"""CountWorld tests: the world and the counter need no ComfyUI; the checkpoint test boots it."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for path in (ROOT, os.path.join(ROOT, "scripts")):
    if path not in sys.path:
        sys.path.insert(0, path)


@pytest.fixture(scope="session")
def comfy_booted():
    import comfy_runtime

    return comfy_runtime.bootstrap()
