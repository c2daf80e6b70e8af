"""NUMINA testing nodes: a ComfyUI custom-node pack for the tests, the CPU demo and the CountWorld
benchmark, not part of the published NUMINA pack.

scripts/setup_env.sh links this folder into ComfyUI's custom_nodes/ beside the pack, so the harness
and the demo get these nodes; a user who installs the pack does not.
"""
from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from .countworld_counter import NuminaCountWorldCounterLoader, NuminaCountWorldVAE
from .latent_rgb_decode import NuminaLatentRGBDecode
from .tiny_text_encoder import NuminaTinyTextEncoderLoader

NODES: list[type[io.ComfyNode]] = [
    NuminaTinyTextEncoderLoader,
    NuminaLatentRGBDecode,
    NuminaCountWorldCounterLoader,
    NuminaCountWorldVAE,
]


class NuminaTestingExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES


async def comfy_entrypoint() -> NuminaTestingExtension:
    return NuminaTestingExtension()
