"""NuminaCrossAttnGuide: phase 2, a MODEL whose cross-attention is nudged toward the layout."""
from __future__ import annotations

from typing import Any, Optional

from comfy_api.latest import io

from ..numina_ops import modulation
from ..numina_ops.records import Layout, NuminaInputError
from . import attention_patch
from .preview import report_ui
from .records_io import LAYOUT
from .schema import search_aliases

BIAS_FORM_OPTIONS = ["auto", "sparse", "dense", "fast"]   # "auto": modulation.DEFAULT_FORM


class NuminaCrossAttnGuide(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="NuminaCrossAttnGuide",
            display_name="NUMINA Cross-Attention Guide",
            category="NUMINA",
            **search_aliases("count guidance", "attention guidance", "guide model"),
            description="Returns a patched MODEL for an ordinary KSampler / KSamplerAdvanced / SamplerCustom run with "
                        "the SAME seed, size and steps as the capture: it biases the counted nouns' cross-attention "
                        "toward the refined layout. The input MODEL is not changed.",
            inputs=[
                io.Model.Input("model", tooltip="The same Wan model the capture ran on."),
                LAYOUT.Input("layout", tooltip="From NuminaLayoutRefine."),
                io.Combo.Input("bias_form", options=BIAS_FORM_OPTIONS, default="auto",
                               tooltip="auto: sparse, the fastest form that leaves every unbiased row bit-identical "
                                       "to plain attention on CPU and GPU (see README); dense: the published "
                                       "dense-mask form (on CUDA its mask moves every row off the flash kernel); "
                                       "fast: an exact decomposition that touches only biased rows."),
                io.Combo.Input("bias", options=list(modulation.RULES), default="calibrated", optional=True,
                               tooltip="calibrated: each edited pixel's bias is computed from the model's own attention "
                                       "at every step (added pixels get the noun's attention share of the frame's "
                                       "existing instances, removed ones the background's), the same setting for every "
                                       "model; published: the paper's fixed offsets (-10 on removed, +0.8 on empty "
                                       "frames, matched logits), weak on models whose noun attention is small."),
                io.Float.Input("added_boost", default=0.0, min=0.0, max=50.0, step=0.5, optional=True,
                               tooltip="0 = none. A manual floor: every added pixel's logit bias is at least this "
                                       "times the schedule's strength, with either bias rule; for a model where added "
                                       "instances still do not appear."),
                io.Boolean.Input("bias_modifiers", default=True, optional=True,
                                 tooltip="True (default) also biases the words between the numeral and the noun "
                                         "('green' in 'four green circles'), so added instances get the asked "
                                         "attributes, not only the noun; False = published (the noun's tokens only)."),
            ],
            outputs=[io.Model.Output(), io.String.Output(display_name="report")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, model, layout, bias_form, added_boost: float = 0.0, bias_modifiers: bool = True,
                bias: str = "calibrated") -> io.NodeOutput:
        node_id = getattr(getattr(cls, "hidden", None), "unique_id", None)
        guided, session, report = guide(model, layout, bias_form, added_boost, bias_modifiers,
                                        None if node_id is None else str(node_id), rule=bias)
        if session is not None:
            report += " After sampling, the log (and this node, in the UI) says how many cross-attention calls were biased."
        else:
            report += " Sampled with the capture's settings, the result equals the plain run."
        return io.NodeOutput(guided, report, ui=report_ui(report))


def guide(model, layout, bias_form: str, added_boost: float = 0.0, bias_modifiers: bool = True,
          node_id: Optional[str] = None, rule: str = "calibrated") -> tuple[Any, Optional[attention_patch.GuideSession], str]:
    """(MODEL to sample, its guide session or None when nothing needs guidance, report)."""
    info = attention_patch.wan_info(model)
    if not isinstance(layout, Layout):
        raise NuminaInputError("connect the 'layout' output of NuminaLayoutRefine to this input")
    if layout.model_family != info.family:
        raise NuminaInputError(f"this layout was read from a {layout.model_family} model but the MODEL is "
                               f"{info.family}; capture again with this model")
    if not layout.nouns:
        return model, None, "NUMINA guide: no countable noun, no change needed: the model is left unpatched."
    if not layout.refined:
        raise NuminaInputError("this layout is not refined yet: put NuminaLayoutRefine between "
                               "NuminaLayoutInfer and NuminaCrossAttnGuide")
    if not layout.needs_guidance:
        unfixable = [n.noun for n in layout.nouns if n.mismatched_frames]
        why = (f"refinement could not place the missing instances of {', '.join(unfixable)} (see its notes)"
               if unfixable else "every frame already shows the target count")
        return model, None, f"NUMINA guide: {why}, no change needed: the model is left unpatched."
    form = modulation.DEFAULT_FORM if bias_form == "auto" else bias_form
    session = attention_patch.GuideSession(info, layout, form, added_boost, bias_modifiers, node_id=node_id,
                                           rule=rule)
    session.prepared(model.load_device)     # the plan's index tensors, built before sampling starts
    edited = ", ".join(n.noun for n in layout.nouns)
    return (attention_patch.install(model, session), session,
            f"NUMINA guide: biasing {edited} ({rule} bias, {form} form) on "
            f"{layout.grid.frames}x{layout.grid.height}x{layout.grid.width} tokens.")
