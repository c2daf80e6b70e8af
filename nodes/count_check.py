"""NuminaCountCheck: how many of each counted noun the finished video shows, judged the paper's
way (every frame; a frame's score is the share of nouns counted exactly; the video's the mean)."""
from __future__ import annotations

from comfy_api.latest import io

from ..numina_ops.judge import CountCheck
from .check_preview import VIDEO_FPS, render_check
from .counting import run_counter, targets_record
from .preview import animated_ui
from .records_io import CAPTURE, CHECK, COUNTER, LAYOUT
from .schema import search_aliases


def check_output(frames, check: CountCheck, report: str) -> io.NodeOutput:
    preview = render_check(frames, check)
    return io.NodeOutput(check, check.score, check.all_right, preview, report,
                         ui=animated_ui(preview, report, "numina_check_", VIDEO_FPS, lossless=False))


class NuminaCountCheck(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="NuminaCountCheck",
            display_name="NUMINA Count Check",
            category="NUMINA",
            **search_aliases("check count", "verify count", "count judge"),
            description="Counts each counted noun in every decoded frame with the counter (the paper's judge: "
                        "GroundingDINO) and scores the video as the paper does. Shows every frame with its boxes "
                        "and count / target on the node.",
            inputs=[
                io.Image.Input("images", tooltip="The decoded video (VAE Decode of the NUMINA sampler's latent)."),
                io.MultiType.Input(CAPTURE.Input("capture"), types=[CAPTURE, LAYOUT],
                                   tooltip="The capture (or a layout) of the same run: it knows the nouns, the "
                                           "targets and the video's size."),
                COUNTER.Input("counter", tooltip="From NuminaCounterLoader."),
            ],
            outputs=[
                CHECK.Output(display_name="check"),
                io.Float.Output(display_name="score", tooltip="The paper's score: mean over frames of the share of "
                                                              "nouns counted exactly."),
                io.Boolean.Output(display_name="all_right", tooltip="Every noun exact in every frame."),
                io.Image.Output(display_name="preview", tooltip="Every frame with its boxes and count / target."),
                io.String.Output(display_name="report"),
            ],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, images, capture, counter) -> io.NodeOutput:
        record = targets_record(capture)
        check = run_counter(images, record, counter)
        return check_output(images, check, check.describe())
