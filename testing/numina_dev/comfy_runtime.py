"""Drive a real ComfyUI in-process: import it, register custom nodes, execute graphs.

Used by the tests, the demo, the fixtures script and the CountWorld benchmark.  The ComfyUI
folder comes from $COMFYUI_PATH, else from the path the set-up script recorded; scripts/setup_env.sh
links two packs into its custom_nodes/: this repository (the NUMINA pack) and the testing pack
(testing/numina_testing: the tiny text encoder and latent decode nodes the tests and demo use).
"""
from __future__ import annotations

import asyncio
import os
import sys
import uuid
from typing import Any

from . import ROOT

ENV_DIR = os.environ.get("NUMINA_ENV_DIR", os.path.join(ROOT, ".numina_env"))
PACK_NAME = "numina"  # folder name of the pack's link under custom_nodes/
TESTING_PACK_NAME = "numina_testing"  # and of the testing pack's link

_booted = False

# The cache_args main.py passes to execution.PromptExecutor with --cache-classic, as a superset
# over ComfyUI versions: 0.3.75 reads "lru" and "ram"; 0.33 also reads cache_args["ram_inactive"]
# in every execute (KeyError without it).  A version ignores the keys it does not read.
CACHE_ARGS = {"lru": 0, "ram": 0, "ram_inactive": 0}


def comfyui_path() -> str:
    path = os.environ.get("COMFYUI_PATH")
    if not path:
        recorded = os.path.join(ENV_DIR, "comfyui_path")
        if os.path.exists(recorded):
            path = open(recorded).read().strip()
    if not path or not os.path.exists(os.path.join(path, "main.py")):
        raise RuntimeError(
            "No ComfyUI found: run scripts/setup_env.sh first, or set COMFYUI_PATH to a ComfyUI checkout."
        )
    return os.path.abspath(path)


def bootstrap() -> str:
    """Import ComfyUI the way main.py does, on the CPU, without parsing our argv."""
    global _booted
    path = comfyui_path()
    if _booted:
        return path
    if path not in sys.path:
        sys.path.insert(0, path)
    import comfy.options

    comfy.options.enable_args_parsing(False)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    comfy.cli_args.args.disable_api_nodes = True
    import utils.extra_config  # noqa: F401  (before nodes: nodes.py reorders sys.path)
    import comfy.model_management  # noqa: F401
    import nodes  # noqa: F401

    _booted = True
    return path


def load_custom_nodes() -> dict[str, Any]:
    """Register custom nodes (both packs among them) with the real loader; returns NODE_CLASS_MAPPINGS."""
    bootstrap()
    import nodes

    if not getattr(load_custom_nodes, "_done", False):
        asyncio.run(nodes.init_extra_nodes(init_custom_nodes=True, init_api_nodes=False))
        load_custom_nodes._done = True
    return nodes.NODE_CLASS_MAPPINGS


class _ServerStub:
    """What PromptExecutor needs of a server when no server runs."""

    def __init__(self) -> None:
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.messages: list[tuple[str, Any]] = []

    def send_sync(self, event: str, data: Any, sid: Any = None) -> None:
        self.messages.append((event, data))

    def queue_updated(self) -> None:
        pass


def execute_graph(graph: dict[str, Any]) -> tuple[Any, _ServerStub]:
    """Validate and run an API-format graph through ComfyUI's own executor.

    Returns (executor, server_stub); executor.history_result holds node outputs and
    executor.success says whether it ran.  Raises with ComfyUI's own message when the graph
    does not validate.
    """
    load_custom_nodes()
    import execution

    prompt_id = str(uuid.uuid4())
    valid = asyncio.run(execution.validate_prompt(prompt_id, graph, None))
    if not valid[0]:
        raise ValueError(f"graph does not validate: {valid[1]} {valid[3]}")
    server = _ServerStub()
    executor = execution.PromptExecutor(server, cache_type=execution.CacheType.CLASSIC, cache_args=dict(CACHE_ARGS))
    executor.execute(graph, prompt_id, {}, valid[2])
    return executor, server


def cached_outputs(executor: Any, node_id: str) -> Any:
    """A node's outputs as the executor's output cache kept them after a run (None if not kept).
    The cache's `get` is a plain call in 0.3.75 and a coroutine in newer ComfyUI (0.33)."""
    import inspect

    entry = executor.caches.outputs.get(node_id)
    if inspect.isawaitable(entry):
        entry = asyncio.run(entry)
    if entry is None:
        return None
    return entry.outputs if hasattr(entry, "outputs") else entry


def execution_error(server: _ServerStub) -> str | None:
    """The exception message ComfyUI reported for a failed run, if any."""
    for event, data in server.messages:
        if event == "execution_error":
            return f"{data.get('node_type')}: {data.get('exception_message')}"
    return None


def pack_module(node_name: str):
    """The module that defines a registered node, in the NUMINA pack or the testing pack (ComfyUI's
    own loader imports them, so their modules live under ComfyUI's name for the folder)."""
    import inspect

    mappings = load_custom_nodes()
    if node_name not in mappings:
        raise RuntimeError(f"{node_name} is not registered: did the NUMINA pack or the testing pack fail to load, "
                           "or is the testing pack not linked (run scripts/setup_env.sh)? (see the log)")
    return inspect.getmodule(mappings[node_name])
