"""NuminaLayoutInfer: instances and counts per noun and latent frame, from a capture."""
from __future__ import annotations

import dataclasses

from comfy_api.latest import io

from ..numina_ops.layout import MODES, infer_layout
from ..numina_ops.records import Capture, Layout, NuminaInputError
from .preview import layout_node_output
from .progress import comfy_progress
from .records_io import CAPTURE, LAYOUT
from .schema import search_aliases


def layout_from_capture(capture: Capture, mode: str) -> Layout:
    if not isinstance(capture, Capture):
        raise NuminaInputError("connect the 'capture' output of NuminaAttentionCapture to this input")
    layout = infer_layout(capture, mode=mode, progress=comfy_progress())   # carries the capture's run fields
    maps = {n.noun: n.cross_attention for n in capture.nouns}
    return dataclasses.replace(layout, meta={**layout.meta, "cross_attention": maps})


class NuminaLayoutInfer(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="NuminaLayoutInfer",
            display_name="NUMINA Layout Infer",
            category="NUMINA",
            **search_aliases("object layout", "count instances", "detect objects"),
            description="Finds each counted noun's instances in every latent frame and counts them. Shows the "
                        "layout on the node, animated over the latent frames, and the counts.",
            inputs=[
                CAPTURE.Input("capture", tooltip="From NuminaAttentionCapture."),
                io.Combo.Input("mode", options=list(MODES), default="auto",
                               tooltip="auto: per noun, 'default' where self-attention finds the noun's objects in "
                                       "every frame where its cross-attention does, else 'cross' (the counts text "
                                       "says which); default: this pack's self-attention readout (exact on far more "
                                       "scenes); faithful: the published mean-shift readout; cross: the noun's "
                                       "cross-attention alone, for models whose self-attention does not separate "
                                       "objects."),
            ],
            outputs=[
                LAYOUT.Output(display_name="layout"),
                io.Image.Output(display_name="preview",
                                tooltip="Per latent frame: instances in colour over the noun's cross-attention."),
                io.String.Output(display_name="counts"),
            ],
            is_output_node=True,    # the preview shows on the node: capture -> infer runs alone to inspect it
        )

    @classmethod
    def execute(cls, capture, mode) -> io.NodeOutput:
        return layout_node_output(layout_from_capture(capture, mode))
