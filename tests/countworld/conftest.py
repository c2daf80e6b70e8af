"""CountWorld tests: the world and the counter need no ComfyUI; the checkpoint test boots it."""
import pytest


@pytest.fixture(scope="session")
def comfy_booted():
    from numina_dev import comfy_runtime

    return comfy_runtime.bootstrap()
