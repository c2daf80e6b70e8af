"""NuminaLayoutToMask: one noun's layout as a MASK at the video's pixel size, for editing by hand."""
from __future__ import annotations

import torch
from comfy_api.latest import io

from ..numina_ops.layout_masks import FRAMES, layout_to_masks, pixels_per_token, video_frames
from ..numina_ops.records import Layout, NuminaInputError
from .records_io import LAYOUT
from .schema import search_aliases


def layout_mask(layout: Layout, noun: str, frames: str) -> torch.Tensor:
    if not isinstance(layout, Layout):
        raise NuminaInputError("connect the 'layout' output of NuminaLayoutInfer or NuminaLayoutRefine to this input")
    ppt = pixels_per_token(layout.model_family)
    grid = layout.grid
    if not layout.nouns:   # nothing counted: an empty mask of the right size keeps the graph running
        count = video_frames(grid.frames) if frames == "video" else grid.frames
        return torch.zeros(count, grid.height * ppt, grid.width * ppt, device="cpu")   # a MASK, as the UI holds it
    return layout_to_masks(layout, noun, ppt, frames)


class NuminaLayoutToMask(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="NuminaLayoutToMask",
            display_name="NUMINA Layout To Mask",
            category="NUMINA",
            **search_aliases("layout mask", "instance mask"),
            description="One counted noun's instances as a MASK at the video's pixel size (white = an instance), "
                        "to correct by hand (mask editor, mask nodes) and read back with NuminaMaskToLayout.",
            inputs=[
                LAYOUT.Input("layout", tooltip="From NuminaLayoutInfer or NuminaLayoutRefine."),
                io.String.Input("noun", default="",
                                tooltip="The counted noun to draw, as the counts text names it (e.g. 'apples'); "
                                        "empty = the first noun."),
                io.Combo.Input("frames", options=list(FRAMES), default="video",
                               tooltip="video: one mask frame per decoded video frame (lines up with the "
                                       "VAE-decoded video); latent: one per latent frame (each stands for 4 "
                                       "video frames, the first for 1)."),
            ],
            outputs=[io.Mask.Output(display_name="mask",
                                    tooltip="Detected and added instances white, background and removed black; "
                                            "one token is 16 x 16 pixels (32 x 32 for Wan2.2 TI2V 5B).")],
        )

    @classmethod
    def execute(cls, layout, noun, frames) -> io.NodeOutput:
        return io.NodeOutput(layout_mask(layout, noun, frames))
