"""NuminaSampler: the run itself, with every setting taken from the capture.

Counts already right: it finishes the reference pass from the sampler's exact state (when the pass
took the run's own steps, the run costs `steps` model evaluations in all and equals the plain run
bit for bit with euler).  A count to fix: the guided pass from the same noise (the reference pass's
evaluations + steps).  Wan2.2 A14B: the
low-noise expert takes over at `switch_step`, guided with the same layout.
"""
from __future__ import annotations

from typing import Optional

from comfy_api.latest import io

from ..numina_ops import modulation
from ..numina_ops.records import Capture, Layout, NuminaInputError
from . import attention_patch, sampling
from .cross_attn_guide import BIAS_FORM_OPTIONS, guide
from .preview import report_ui
from .records_io import CAPTURE, LAYOUT
from .schema import search_aliases


def _check(capture, layout) -> None:
    if not isinstance(capture, Capture) or capture.reference is None:
        raise NuminaInputError("connect the 'capture' output of NuminaAttentionCapture to this input")
    if not isinstance(layout, Layout):
        raise NuminaInputError("connect the 'layout' output of NuminaLayoutRefine (or NuminaMaskToLayout) here")
    if layout.grid != capture.grid or layout.schedule != capture.schedule or layout.targets != capture.targets:
        g, c = layout.grid, capture.grid
        raise NuminaInputError(
            f"this layout ({g.frames}x{g.height}x{g.width} tokens, {len(layout.schedule) - 1} steps, "
            f"{layout.targets.as_dict()}) was not read from this capture ({c.frames}x{c.height}x{c.width} tokens, "
            f"{len(capture.schedule) - 1} steps, {capture.targets.as_dict()}): connect the layout that comes from "
            "this capture through NuminaLayoutInfer and NuminaLayoutRefine")


def run_inputs() -> list:
    """The inputs of a NUMINA run after the capture and layout (NuminaSampler, and every try of
    NuminaCheckedSampler): the bias settings and the Wan2.2 A14B expert switch."""
    return [
        io.Combo.Input("bias_form", options=BIAS_FORM_OPTIONS, default="auto",
                       tooltip="As on NuminaCrossAttnGuide: auto is sparse, exact and fastest."),
        io.Combo.Input("bias", options=list(modulation.RULES), default="calibrated", optional=True,
                       tooltip="calibrated: biases computed from the model's own attention at every step; "
                               "published: the paper's fixed offsets (see the guide node)."),
        io.Float.Input("added_boost", default=0.0, min=0.0, max=50.0, step=0.5, optional=True,
                       tooltip="0 = none. A manual floor for added instances' bias (see the guide node)."),
        io.Boolean.Input("bias_modifiers", default=True, optional=True,
                         tooltip="Also bias the words between the numeral and the noun (see the guide node)."),
        io.Model.Input("low_noise_model", optional=True,
                       tooltip="Wan2.2 A14B: the low-noise expert, which samples from switch_step on."),
        io.Int.Input("switch_step", default=-1, min=-1, max=10000, optional=True,
                     tooltip="Wan2.2 A14B: the step where the low-noise expert takes over; -1 = one model."),
    ]


class NuminaSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="NuminaSampler",
            display_name="NUMINA Sampler",
            category="NUMINA",
            **search_aliases("count sampler", "ksampler exact count", "guided sampler"),
            description="Samples the final video with the capture's seed, steps, CFG, sampler, scheduler, prompt and "
                        "latent. If every count is already right it only finishes the capture's reference pass (the "
                        "plain run, no second pass); otherwise it runs the guided pass toward the refined layout.",
            inputs=[
                io.Model.Input("model", tooltip="The Wan model the capture ran on (Wan2.2 A14B: the high-noise expert)."),
                CAPTURE.Input("capture", tooltip="From NuminaAttentionCapture: every sampling setting comes from it."),
                LAYOUT.Input("layout", tooltip="From NuminaLayoutRefine (or a hand-edited layout)."),
                *run_inputs(),
            ],
            outputs=[io.Latent.Output(display_name="latent"), io.String.Output(display_name="report")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, model, capture, layout, bias_form, added_boost: float = 0.0, bias_modifiers: bool = True,
                low_noise_model=None, switch_step: int = -1, bias: str = "calibrated") -> io.NodeOutput:
        node_id = getattr(getattr(cls, "hidden", None), "unique_id", None)
        evaluations = sampling.EvaluationCount()
        latent, report = sample_with_layout(evaluations.counted(model), capture, layout, bias_form, added_boost,
                                            bias_modifiers, evaluations.counted(low_noise_model), switch_step, bias,
                                            None if node_id is None else str(node_id))
        ui = report_ui(report)
        reference_cost = capture.reference.evaluations if isinstance(capture, Capture) and capture.reference else 0
        ui[sampling.EVALUATIONS_UI_KEY] = [evaluations.calls + reference_cost]   # read by API clients
        return io.NodeOutput(latent, report, ui=ui)


def sample_with_layout(model, capture: Capture, layout: Layout, bias_form: str, added_boost: float = 0.0,
                       bias_modifiers: bool = True, low_noise_model=None, switch_step: int = -1,
                       bias: str = "calibrated", node_id: Optional[str] = None) -> tuple[dict, str]:
    """The sampler node's run (also each try of NuminaCheckedSampler): the finished reference pass
    when the layout needs no edit, else the guided pass.  Returns the LATENT and the report."""
    _check(capture, layout)
    reference = capture.reference
    steps = reference.settings.steps
    two_experts = low_noise_model is not None
    if two_experts and not 0 < switch_step < steps:
        raise NuminaInputError(f"with a low_noise_model, set switch_step between 1 and {steps - 1} (the step "
                               "where the low-noise expert takes over)")
    stop = switch_step if two_experts else steps
    if two_experts and reference.state is not None and reference.next_step > switch_step:
        # at few steps (Wan2.2 A14B 2+2) the published step fraction lands on or after the switch
        raise NuminaInputError(
            f"the capture's reference step ({reference.next_step - 1}) is not before switch_step ({switch_step}): the "
            f"layout must be read on the high-noise expert. Set the capture's reference_step to {switch_step - 1} "
            "(or lower)")
    guided, session, guide_report = guide(model, layout, bias_form, added_boost, bias_modifiers, node_id, rule=bias)
    if session is None and reference.state is not None:
        samples = sampling.finish(model, reference, stop)
        how = (f"counts already right: finished the capture's reference pass from step {reference.next_step}"
               f" ({steps - reference.next_step} more model evaluations, {reference.evaluations + steps - reference.next_step}"
               " in all): " + ("the plain run." if reference.exact else
                               "the plain run's layout (the pass reached the reference step in larger steps)."))
    elif session is None:
        samples = sampling.sample_segment(model, reference, None, 0, stop)
        how = "nothing to count: the plain run."
    else:
        samples = sampling.sample_segment(guided, reference, None, 0, stop)
        how = ("guided pass from the same noise (" + _biased(session) + f"; {reference.evaluations} + {steps} model"
               " evaluations in all with the capture).")
    if two_experts:
        low, low_session, _ = guide(low_noise_model, layout, bias_form, added_boost, bias_modifiers, node_id,
                                     rule=bias)
        samples = sampling.sample_segment(low, reference, samples, switch_step, steps)
        if low_session is not None:
            how += f" Low-noise expert from step {switch_step}: {_biased(low_session)}."
    out = {k: v for k, v in reference.latent.items() if k not in sampling.LATENT_RATIO_KEYS}
    out["samples"] = samples
    return out, f"NUMINA sampler: {how}\n{guide_report}"


def _biased(session: attention_patch.GuideSession) -> str:
    run = session.last_run
    if run is None:
        return "no sampling run was seen"
    return f"biased {run.biased_calls} of {run.text_calls} text cross-attention calls"
