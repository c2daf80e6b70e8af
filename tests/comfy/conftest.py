"""Tests on a real ComfyUI (the one scripts/setup_env.sh built, or $COMFYUI_PATH).

Fixtures only: test files import shared names from `numina_dev` (e.g. `numina_dev.graphs`), never
from a conftest module (several folders have one; which one `import conftest` finds depends on
what else is collected)."""
import pytest

from numina_dev import comfy_runtime
from numina_dev.graphs import TINY_TEXT, TINY_WAN
from numina_dev.node_runs import NodeRuns


@pytest.fixture(scope="session")
def comfy():
    """ComfyUI booted in-process with the custom nodes registered; yields NODE_CLASS_MAPPINGS.
    One torch thread: on this 2-core machine the tiny models sample several times faster so."""
    import torch
    torch.set_num_threads(1)
    comfy_runtime.bootstrap()
    return comfy_runtime.load_custom_nodes()


@pytest.fixture(scope="session")
def pack(comfy):
    """The pack's own modules, as ComfyUI's loader imported them."""
    class Pack:
        def module(self, node_name):
            return comfy_runtime.pack_module(node_name)
    return Pack()


@pytest.fixture(scope="session")
def tiny_clip(comfy):
    return comfy["NuminaTinyTextEncoderLoader"].execute(TINY_TEXT).result[0]


@pytest.fixture(scope="session")
def tiny_model(comfy):
    return comfy["UNETLoader"]().load_unet(TINY_WAN, "default")[0]


@pytest.fixture(scope="session")
def run(comfy, tiny_model, tiny_clip):
    """The NUMINA nodes run the way a graph would (numina_dev.node_runs), pipelines cached."""
    return NodeRuns(comfy, tiny_model, tiny_clip)


@pytest.fixture(scope="session")
def server():
    """One real `main.py --cpu` server on 127.0.0.1 for every test that needs one (starting one
    costs about 10 s), on one torch thread: the tiny models' small ops run several times faster on
    one thread than on two on a shared 2-core CPU."""
    import os
    from numina_dev.comfy_server import ComfyServer
    before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        with ComfyServer() as s:
            yield s
    finally:
        if before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = before
