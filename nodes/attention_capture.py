"""NuminaAttentionCapture: phase 1 of NUMINA, the short reference pass that reads attention."""
from __future__ import annotations

import dataclasses

import torch

import comfy.samplers
from comfy_api.latest import io

from ..numina_ops.prompt import parse_override, parse_targets
from ..numina_ops.records import Capture, NuminaInputError, ReferencePass, SamplingSettings, Targets
from ..numina_ops.tokens import modifier_token_positions, noun_token_positions
from ..numina_ops import capture as capture_ops
from ..numina_ops.schedule import reference_path
from . import attention_patch, sampling
from .preview import report_ui
from .records_io import CAPTURE
from .schema import search_aliases

# The published defaults: maps taken at step 20 of 50, in block 15 of Wan2.1-1.3B's 30.
PUBLISHED_STEP, PUBLISHED_STEPS = 20, 50
PUBLISHED_BLOCK, PUBLISHED_BLOCKS = 15, 30
DEFAULT_MEMORY_MB = capture_ops.DEFAULT_MEMORY_BUDGET // 2**20
# Chosen on CountWorld's tuning prompts (first model, 25 steps: approach 1 / 2 / 3 / 4 / the run's own
# 10 steps gained +13.7 / +17.5 / +17.2 / +21.3 / +18.8 points at 26.1 / 26.9 / 27.9 / 29.1 / 35.1
# evaluations a video; 2026-12-07, countworld/settings.py); held out: README, "What a fix costs".
DEFAULT_APPROACH_STEPS = 2
CROSS_BLOCK_OPTIONS = ["all", "capture block"]


def default_reference_step(steps: int) -> int:
    return min(steps - 1, max(0, round(steps * PUBLISHED_STEP / PUBLISHED_STEPS)))


def default_block(blocks: int) -> int:
    return min(blocks - 1, max(0, round(blocks * PUBLISHED_BLOCK / PUBLISHED_BLOCKS)))


def token_pieces(clip, prompt: str) -> list[str]:
    """The sentencepiece piece at every context position, as the Wan text encoder sees it."""
    tokens = clip.tokenize(prompt)
    if len(tokens) != 1:
        raise NuminaInputError(f"NUMINA needs a Wan (umT5) text encoder; this CLIP has {sorted(tokens)}")
    key, batches = next(iter(tokens.items()))
    inner = getattr(clip.tokenizer, getattr(clip.tokenizer, "clip", key), None)
    processor = getattr(getattr(inner, "tokenizer", None), "tokenizer", None)
    if processor is None or not hasattr(processor, "id_to_piece"):
        raise NuminaInputError("NUMINA needs a Wan (umT5 sentencepiece) text encoder: load umt5_xxl with CLIPLoader type 'wan'")
    return [processor.id_to_piece(int(t[0])) if not hasattr(t[0], "shape") else "<embed>" for t in batches[0]]


def check_prompt_matches(clip, prompt: str, positive) -> None:
    """The counts come from the prompt text, the run from the positive conditioning: they must be
    the same text.  Re-encodes the text (one text-encoder pass) and compares, when the
    conditioning is a single plain encoding (other conditioning nodes cannot be compared)."""
    if not isinstance(positive, list) or len(positive) != 1 or not hasattr(clip, "encode_from_tokens_scheduled"):
        return
    given = positive[0][0]
    encoded = clip.encode_from_tokens_scheduled(clip.tokenize(prompt))
    if len(encoded) != 1 or encoded[0][0].shape != given.shape:
        return
    if not torch.allclose(encoded[0][0].float().cpu(), given.float().cpu(), rtol=1e-3, atol=1e-3):
        shown = prompt if len(prompt) <= 80 else prompt[:77] + "..."
        raise NuminaInputError(
            f"the capture's prompt text ({shown!r}) is not the text of its positive conditioning: the counts "
            "would be read for another prompt than the one sampled. Connect the same text to both (e.g. "
            "one primitive string node feeding CLIPTextEncode and this node's prompt).")


class NuminaAttentionCapture(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="NuminaAttentionCapture",
            display_name="NUMINA Attention Capture",
            category="NUMINA",
            **search_aliases("attention capture", "reference pass", "read attention"),
            description="Runs the short reference pass (same seed as your final run) and reads, at one step and one "
                        "block, where each counted noun's instances are: self-attention for instance shapes, "
                        "cross-attention for the noun.",
            inputs=[
                io.Model.Input("model", tooltip="A Wan2.1 / Wan2.2 model (the plain one; nothing is changed in it)."),
                io.Clip.Input("clip", tooltip="The Wan text encoder (umT5): its tokenizer locates the nouns."),
                io.Conditioning.Input("positive", tooltip="The positive conditioning made from the same prompt text."),
                io.Conditioning.Input("negative", tooltip="The negative conditioning of your run."),
                io.Latent.Input("latent", tooltip="The empty video latent of your final run (same size)."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Use the same seed as the final sampler: the reference pass must see the same noise."),
                io.Int.Input("steps", default=30, min=2, max=10000, tooltip="Steps of your final run."),
                io.Float.Input("cfg", default=5.0, min=0.0, max=100.0, step=0.1, round=0.01, tooltip="CFG of your final run."),
                io.Combo.Input("sampler_name", options=comfy.samplers.KSampler.SAMPLERS, default="euler",
                               tooltip="Sampler of your final run."),
                io.Combo.Input("scheduler", options=comfy.samplers.KSampler.SCHEDULERS, default="simple",
                               tooltip="Scheduler of your final run."),
                io.String.Input("prompt", multiline=True, default="",
                                tooltip="The positive prompt text (the same text as the positive conditioning). "
                                        "Counts are read from it: 'three red apples' asks for 3 apples."),
                io.String.Input("count_override", default="",
                                tooltip="Optional 'noun: count' pairs that win over the prompt, e.g. 'apples: 3, dogs: 2'."),
                io.Int.Input("reference_step", default=-1, min=-1, max=9999,
                             tooltip="0-based step whose attention is read; -1 = the published step 20 of 50 scaled to your steps."),
                io.Int.Input("block", default=-1, min=-1, max=99,
                             tooltip="0-based transformer block whose self-attention is read; -1 = the published block 15 of 30 "
                                     "scaled to the model's depth."),
                io.Combo.Input("cross_attention_blocks", options=CROSS_BLOCK_OPTIONS, default="all", optional=True,
                               tooltip="all: the nouns' cross-attention is the mean over every block at the reference "
                                       "step (reads counts better than any one block on the models measured); "
                                       "capture block: only the block above (published)."),
                io.Int.Input("memory_budget_mb", default=DEFAULT_MEMORY_MB, min=16, max=65536, optional=True,
                             tooltip="Device memory for the capture's attention maps (one chunk of frame x head "
                                     "maps at a time). Lower it if the capture runs out of GPU memory."),
                io.Int.Input("approach_steps", default=DEFAULT_APPROACH_STEPS, min=0, max=9999, optional=True,
                             tooltip="Steps the reference pass takes to reach reference_step's noise level: N = N "
                                     "larger steps on the run's schedule, so the pass costs N + 1 model evaluations "
                                     "instead of reference_step + 1 (default 2: a fix costs about 1.1x the plain run "
                                     "instead of 1.4x at 25 steps, with the same count gain on the models measured); "
                                     "0 = the run's own steps (a run whose counts are right is then the plain run, "
                                     "bit for bit)."),
            ],
            outputs=[
                CAPTURE.Output(display_name="capture"),
                io.Latent.Output(display_name="reference_latent",
                                 tooltip="The latent after the reference step: finish it with KSamplerAdvanced "
                                         "(add_noise disable, start_at_step = reference step + 1) when no count needs fixing."),
                io.String.Output(display_name="report"),
            ],
        )

    @classmethod
    def validate_inputs(cls, prompt=None, count_override=None, steps=None, reference_step=None) -> bool | str:
        """Run by ComfyUI when the prompt is queued, before anything samples: the count override's
        syntax, its nouns against the prompt text, reference_step < steps.  A widget's value arrives
        as itself, an input fed by a link as None (checked when the node runs).  Naming an input here
        turns ComfyUI's own min / max check of it off, so steps' and reference_step's are done here."""
        bounds = {i.id: i for i in cls.define_schema().inputs if i.id in ("steps", "reference_step")}
        for name, value in (("steps", steps), ("reference_step", reference_step)):
            low, high = bounds[name].min, bounds[name].max
            if value is not None and not low <= value <= high:
                return f"{name} {value} is outside {low}..{high}"
        if steps is not None and reference_step is not None and reference_step >= steps:
            return (f"reference_step {reference_step} must be below steps ({steps}); use -1 for the default "
                    f"({default_reference_step(steps)}) or a smaller step")
        try:
            if isinstance(prompt, str):
                parse_targets(prompt, (count_override or "").strip() or None)
            elif isinstance(count_override, str):
                parse_override(count_override)
        except NuminaInputError as error:
            return str(error)
        return True

    @classmethod
    def execute(cls, model, clip, positive, negative, latent, seed, steps, cfg, sampler_name, scheduler,
                prompt, count_override, reference_step, block,
                memory_budget_mb: int = DEFAULT_MEMORY_MB, cross_attention_blocks: str = "all",
                approach_steps: int = DEFAULT_APPROACH_STEPS) -> io.NodeOutput:
        info = attention_patch.wan_info(model)
        grid = info.grid_for(sampling.prepare_latent(model, latent))
        settings = SamplingSettings(seed=int(seed), steps=int(steps), cfg=float(cfg), sampler_name=sampler_name,
                                    scheduler=scheduler)
        step = default_reference_step(steps) if reference_step < 0 else reference_step
        if step >= steps:
            raise NuminaInputError(f"reference_step {step} must be below steps ({steps}); use -1 for the default "
                                   f"({default_reference_step(steps)}) or a smaller step")
        block_index = default_block(info.blocks) if block < 0 else block
        if block_index >= info.blocks:
            raise NuminaInputError(f"block {block_index} does not exist: this model has {info.blocks} blocks (0..{info.blocks - 1})")
        targets = parse_targets(prompt, count_override.strip() or None)
        if not targets.items:
            capture = _empty_capture(grid, targets, step, steps, block_index, info,
                                     ReferencePass(settings, positive, negative, latent, None, 0))
            note = "; ".join(targets.notes) or "no countable noun in the prompt"
            text = f"NUMINA: nothing to count ({note}); guidance will be a no-op."
            return io.NodeOutput(capture, latent, text, ui=report_ui(text))
        pieces = token_pieces(clip, prompt)
        positions = noun_token_positions(targets, pieces)
        check_prompt_matches(clip, prompt, positive)

        if cross_attention_blocks not in CROSS_BLOCK_OPTIONS:
            raise NuminaInputError(f"cross_attention_blocks must be one of {CROSS_BLOCK_OPTIONS}, got {cross_attention_blocks!r}")
        cross_blocks = tuple(range(info.blocks)) if cross_attention_blocks == "all" else (block_index,)
        capture, reference, report = run_capture(
            model, settings, positive, negative, latent, targets, positions, modifier_token_positions(targets, pieces),
            step, block_index, cross_blocks, int(memory_budget_mb) * 2**20, reference_path(step, int(approach_steps)))
        return io.NodeOutput(capture, reference, report, ui=report_ui(report))


def run_capture(model, settings: SamplingSettings, positive, negative, latent: dict, targets: Targets,
                positions, modifier_positions, step: int, block_index: int, cross_blocks: tuple[int, ...],
                memory_budget: int, path: list[int]) -> tuple[Capture, dict, str]:
    """The reference pass and its reading: the capture node's work once its inputs are checked,
    also what NuminaCheckedSampler runs again for every further try (another seed, the same
    prompt, steps, block, blocks and path).  ``path``: the schedule indices the pass visits
    (numina_ops/schedule.py), ending at ``step`` + 1.  Returns the capture, the LATENT at the reference step and
    the report."""
    info = attention_patch.wan_info(model)
    grid = info.grid_for(sampling.prepare_latent(model, latent))
    # the session knows steps by the sampler's own sigmas: the reading is the path's last-but-one
    session = attention_patch.CaptureSession(info, grid, block_index, len(path) - 2, positions,
                                             memory_budget=memory_budget, cross_blocks=cross_blocks)
    patched = attention_patch.install(model, session)
    state, reference = sampling.reference_pass(patched, settings, positive, negative, latent, path)
    session.settle()
    if not session.complete:
        raise NuminaInputError(
            f"the reference pass never reached block {block_index} at step {step} with a cond row; "
            "is the model a Wan text-to-video model and the sampler a standard one?")
    capture = capture_ops.assemble_capture(
        session.reading, session.cross_maps, targets, positions, step_index=step, total_steps=settings.steps,
        block_index=block_index, total_blocks=info.blocks, model_family=info.family,
        schedule=sampling.sigmas_of(patched, settings),
        modifier_positions=modifier_positions, reference=state,
        cross_blocks=session.cross_blocks_read, memory_budget=memory_budget)
    wanted = ", ".join(f"{t.count} x {t.noun}" for t in targets.items)
    read = session.cross_blocks_read
    crossed = ("the same block" if len(cross_blocks) == 1 else "every block" if read == cross_blocks
               else f"{len(read)} of {len(cross_blocks)} blocks (the others did not run at this step: a node "
                    "that skips blocks?)")
    report = f"NUMINA capture: {wanted}; read self-attention in block {block_index}/{info.blocks} and " \
             f"cross-attention in {crossed} at step {step}/{settings.steps} on a " \
             f"{grid.frames}x{grid.height}x{grid.width} token grid, reached in " + \
             (f"the run's own {step} steps" if state.exact else f"{len(path) - 2} larger steps (the run's {step} "
              f"steps would cost {step + 1} model evaluations, this pass took {state.evaluations})")
    if targets.notes:
        report += "\nnotes: " + "; ".join(targets.notes)
    return capture, reference, report


def recapture(model, capture: Capture, seed: int) -> tuple[Capture, dict, str]:
    """The same capture with another seed: the reference pass of a further try."""
    if not capture.nouns or capture.reference is None:
        raise NuminaInputError("this capture has nothing to count: there is no reference pass to repeat")
    settings = dataclasses.replace(capture.reference.settings, seed=int(seed))
    ref = capture.reference
    positions = {n.noun: n.token_positions for n in capture.nouns}
    return run_capture(model, settings, ref.positive, ref.negative, ref.latent, capture.targets, positions,
                       dict(capture.modifier_positions), capture.step_index, capture.block_index,
                       capture.cross_blocks or (capture.block_index,),
                       capture.memory_budget or capture_ops.DEFAULT_MEMORY_BUDGET,
                       list(ref.path) or reference_path(capture.step_index, 0))


def _empty_capture(grid, targets: Targets, step: int, steps: int, block: int, info,
                   reference: ReferencePass) -> Capture:
    return Capture(grid=grid, targets=targets, nouns=(), reference=reference,
                   self_features=torch.zeros(grid.frames, grid.tokens_per_frame, 3, device="cpu"),
                   chosen_heads=torch.zeros(grid.frames, dtype=torch.long, device="cpu"),
                   head_scores=torch.zeros(grid.frames, info.heads, device="cpu"), step_index=step, total_steps=steps,
                   block_index=block, total_blocks=info.blocks, model_family=info.family)
