"""NuminaLayoutRefine: edit the layout to the target counts (remove the smallest, add copies)."""
from __future__ import annotations

import dataclasses

from comfy_api.latest import io

from ..numina_ops.records import Layout, NuminaInputError
from ..numina_ops.refine import refine_layout
from .preview import layout_node_output
from .progress import comfy_progress
from .records_io import LAYOUT
from .schema import search_aliases


def refined(layout: Layout) -> Layout:
    if not isinstance(layout, Layout):
        raise NuminaInputError("connect the 'layout' output of NuminaLayoutInfer to this input")
    if not layout.nouns:
        return dataclasses.replace(layout, refined=True)
    result = refine_layout(layout, progress=comfy_progress())
    return dataclasses.replace(result, meta={**layout.meta, **result.meta})


class NuminaLayoutRefine(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="NuminaLayoutRefine",
            display_name="NUMINA Layout Refine",
            category="NUMINA",
            **search_aliases("fix count", "edit layout", "add or remove objects"),
            description="Removes the smallest extra instances and adds missing ones (never overlapping another "
                        "instance) so every frame shows the target count. Shows the refined layout on the node, "
                        "animated over the latent frames, and the counts.",
            inputs=[LAYOUT.Input("layout", tooltip="From NuminaLayoutInfer.")],
            outputs=[
                LAYOUT.Output(display_name="layout"),
                io.Image.Output(display_name="preview", tooltip="Removed instances in red, added ones in green."),
                io.String.Output(display_name="counts"),
            ],
            is_output_node=True,    # the preview shows on the node: inspect it before paying for the guided run
        )

    @classmethod
    def execute(cls, layout) -> io.NodeOutput:
        return layout_node_output(refined(layout))
