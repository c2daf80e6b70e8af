"""NuminaCheckedSampler: a run that checks itself.  Each try is the whole NUMINA cycle (reference
pass, layout, refinement, NuminaSampler's run) on the next seed, decoded and counted by the judge;
it stops at the first try whose every count is right, or after `tries`, and keeps the try with the
best score (the earliest of equals).  Every try is reported: seed, counts, score, model evaluations.

Why a node of its own, not more inputs on NuminaSampler: a try needs the VAE and the counter, and a
try after the first runs the capture again, which NuminaSampler never does; NuminaSampler stays the
one-pass node whose layout a user may edit by hand."""
from __future__ import annotations

import gc
from typing import Optional

import torch

import comfy.model_management as mm
from comfy_api.latest import io

from ..numina_ops.judge import CheckedRun, TryResult, best_try
from ..numina_ops.layout import MODES
from ..numina_ops.records import Capture, NuminaInputError
from .attention_capture import recapture
from .check_preview import VIDEO_FPS, render_check
from .counting import run_counter
from .layout_infer import layout_from_capture
from .layout_refine import refined
from .numina_sampler import run_inputs, sample_with_layout
from .preview import animated_ui
from .records_io import CAPTURE, CHECK, COUNTER, TRIES
from .sampling import EVALUATIONS_UI_KEY, EvaluationCount
from .schema import search_aliases

MAX_TRIES = 16


def decode(vae, latent: dict) -> torch.Tensor:
    """IMAGE [frames, H, W, 3] as VAEDecode gives it (a video's batch and time dims flattened)."""
    images = vae.decode(latent["samples"])
    if images.ndim == 5:
        images = images.reshape(-1, *images.shape[-3:])
    return images


def run_tries(model, capture: Capture, vae, counter, tries: int, mode: str, bias_form: str, bias: str,
              added_boost: float, bias_modifiers: bool, low_noise_model=None, switch_step: int = -1,
              node_id: Optional[str] = None) -> tuple[CheckedRun, dict, torch.Tensor]:
    """The tries, in order; returns every try, and the kept try's LATENT and decoded frames."""
    if not isinstance(capture, Capture) or capture.reference is None:
        raise NuminaInputError("connect the 'capture' output of NuminaAttentionCapture to this input")
    if not capture.nouns:
        raise NuminaInputError("the prompt has no counted noun, so there is nothing to check: use NuminaSampler "
                               "(or KSampler) for this prompt")
    if not 1 <= tries <= MAX_TRIES:
        raise NuminaInputError(f"tries must be between 1 and {MAX_TRIES}, got {tries}")
    evaluations = EvaluationCount()
    counted, counted_low = evaluations.counted(model), evaluations.counted(low_noise_model)
    results: list[TryResult] = []
    best_latent, best_frames = None, None
    first_seed = capture.reference.settings.seed
    for i in range(tries):
        mm.throw_exception_if_processing_interrupted()
        before = evaluations.calls
        seed = (first_seed + i) % 0x10000000000000000
        current = capture if i == 0 else recapture(counted, capture, seed)[0]
        reference_cost = capture.reference.evaluations if i == 0 else 0   # try 1's ran in the capture node
        layout = refined(layout_from_capture(current, mode))
        latent, _ = sample_with_layout(counted, current, layout, bias_form, added_boost, bias_modifiers,
                                       counted_low, switch_step, bias, node_id)
        frames = decode(vae, latent)
        check = run_counter(frames, current, counter)
        results.append(TryResult(seed=seed, check=check, evaluations=evaluations.calls - before + reference_cost,
                                 guided=layout.needs_guidance, samples=latent["samples"].detach().to("cpu")))
        if best_try([r.check.score for r in results]) == i:      # the rule CheckedRun.chosen keeps
            best_latent, best_frames = latent, frames
        del latent, frames, layout, current
        gc.collect()
        mm.soft_empty_cache()
        if check.all_right:
            break
    return CheckedRun(tries=tuple(results), max_tries=tries), best_latent, best_frames


class NuminaCheckedSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="NuminaCheckedSampler",
            display_name="NUMINA Checked Sampler (retry until the count is right)",
            category="NUMINA",
            **search_aliases("retry until right", "closed loop", "check and retry", "best of"),
            description="Samples with NUMINA, decodes, counts with the judge and, while a count is wrong and tries "
                        "remain, runs the whole NUMINA cycle again on the next seed (seed + 1, ...). Keeps the "
                        "best-scoring video and reports every try.",
            inputs=[
                io.Model.Input("model", tooltip="The Wan model the capture ran on (Wan2.2 A14B: the high-noise expert)."),
                CAPTURE.Input("capture", tooltip="From NuminaAttentionCapture: the first try (its seed); every setting "
                                                 "comes from it."),
                io.Vae.Input("vae", tooltip="The Wan VAE: each try's video is decoded to be counted."),
                COUNTER.Input("counter", tooltip="From NuminaCounterLoader (the paper's judge, GroundingDINO)."),
                io.Int.Input("tries", default=3, min=1, max=MAX_TRIES,
                             tooltip="At most this many tries (each a full NUMINA run on the next seed); it stops at "
                                     "the first try with every count right."),
                io.Combo.Input("mode", options=list(MODES), default="auto",
                               tooltip="The layout readout of every try (see NuminaLayoutInfer)."),
                *run_inputs(),
            ],
            outputs=[
                io.Image.Output(display_name="images", tooltip="The kept try's decoded video."),
                io.Latent.Output(display_name="latent", tooltip="The kept try's latent."),
                CHECK.Output(display_name="check", tooltip="What the judge counted in the kept try."),
                io.String.Output(display_name="report", tooltip="Every try: seed, counts, score, model evaluations."),
                TRIES.Output(display_name="tries", tooltip="Every try's record (seed, check, evaluations, latent)."),
            ],
            hidden=[io.Hidden.unique_id],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, model, capture, vae, counter, tries, mode, bias_form, bias: str = "calibrated",
                added_boost: float = 0.0, bias_modifiers: bool = True, low_noise_model=None,
                switch_step: int = -1) -> io.NodeOutput:
        node_id = getattr(getattr(cls, "hidden", None), "unique_id", None)
        run, latent, frames = run_tries(model, capture, vae, counter, int(tries), mode, bias_form, bias, added_boost,
                                        bias_modifiers, low_noise_model, switch_step,
                                        None if node_id is None else str(node_id))
        report = run.describe()
        check = run.tries[run.chosen].check
        preview = render_check(frames, check)
        ui = animated_ui(preview, report, "numina_checked_", VIDEO_FPS, lossless=False)
        ui[EVALUATIONS_UI_KEY] = [run.evaluations]     # what an API client (the CountBench runner) reads
        return io.NodeOutput(frames, latent, check, report, run, ui=ui)
