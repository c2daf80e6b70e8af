"""The ComfyUI adapter: one node per file, registered through the V3 extension API."""
from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from .attention_capture import NuminaAttentionCapture
from .checked_sampler import NuminaCheckedSampler
from .count_check import NuminaCountCheck
from .counter_loader import NuminaCounterLoader
from .cross_attn_guide import NuminaCrossAttnGuide
from .layout_infer import NuminaLayoutInfer
from .layout_refine import NuminaLayoutRefine
from .layout_to_mask import NuminaLayoutToMask
from .mask_to_layout import NuminaMaskToLayout
from .numina_sampler import NuminaSampler

NODES: list[type[io.ComfyNode]] = [
    NuminaAttentionCapture,
    NuminaLayoutInfer,
    NuminaLayoutRefine,
    NuminaLayoutToMask,
    NuminaMaskToLayout,
    NuminaCrossAttnGuide,
    NuminaSampler,
    NuminaCounterLoader,
    NuminaCountCheck,
    NuminaCheckedSampler,
]


class NuminaExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES


async def comfy_entrypoint() -> NuminaExtension:
    return NuminaExtension()
