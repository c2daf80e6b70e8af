"""NuminaMaskToLayout: a hand-edited MASK back into the layout (erased instances removed, painted ones added)."""
from __future__ import annotations

import dataclasses

from comfy_api.latest import io

from ..numina_ops.layout_masks import apply_mask_edit, pixels_per_token
from ..numina_ops.records import Layout, NuminaInputError
from .preview import layout_node_output
from .records_io import LAYOUT
from .schema import search_aliases


def edited(layout: Layout, mask, noun: str) -> Layout:
    if not isinstance(layout, Layout):
        raise NuminaInputError("connect the 'layout' output of NuminaLayoutInfer or NuminaLayoutRefine to this input")
    if not layout.nouns:
        return dataclasses.replace(layout, refined=True)
    return apply_mask_edit(layout, noun, mask, pixels_per_token(layout.model_family))


class NuminaMaskToLayout(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="NuminaMaskToLayout",
            display_name="NUMINA Mask To Layout",
            category="NUMINA",
            **search_aliases("mask to layout", "hand-edited layout"),
            is_output_node=True,    # the edited layout's preview shows on the node
            description="Reads a hand-edited MASK back into one noun's layout: an instance erased entirely is "
                        "removed, a separate painted blob becomes an added instance, paint touching an instance "
                        "grows it. The result goes to NuminaSampler (or NuminaCrossAttnGuide).",
            inputs=[
                LAYOUT.Input("layout", tooltip="The layout the mask was made from (NuminaLayoutInfer or "
                                               "NuminaLayoutRefine)."),
                io.Mask.Input("mask", tooltip="From NuminaLayoutToMask, edited: erase an instance to remove it, "
                                              "paint a blob (one token, 16 or 32 px, away from the others) to add "
                                              "one. Video size; 1 frame (applies to every frame), one per video "
                                              "frame or one per latent frame. A token counts as painted when at "
                                              "least half its pixels are."),
                io.String.Input("noun", default="",
                                tooltip="The noun the mask is for, as in NuminaLayoutToMask; empty = the first noun."),
            ],
            outputs=[
                LAYOUT.Output(display_name="layout", tooltip="The edited layout, ready for NuminaCrossAttnGuide."),
                io.Image.Output(display_name="preview", tooltip="Removed instances in red, added ones in green."),
                io.String.Output(display_name="counts"),
            ],
        )

    @classmethod
    def execute(cls, layout, mask, noun) -> io.NodeOutput:
        result = edited(layout, mask, noun)
        return layout_node_output(result)
