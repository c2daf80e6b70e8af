"""The one module that touches `transformer_options`: NUMINA's patched Wan attention.

How it hooks ComfyUI's Wan (0.3.75 and newer), so that it holds whatever else the graph patches:
- A diffusion-model wrapper (`WrappersMP.DIFFUSION_MODEL`, key "numina") runs at every forward.
  It puts the session on top of whatever `optimized_attention_override` is present *at that
  forward* (a sage / attention-backend node placed after the guide included) and chains to it,
  and wraps whatever `dit` / `double_block` replace patch is present so every block call carries
  its `block_index` (0.3.75's Wan sets none; newer ones set it and the stamp agrees).  Wrappers
  survive later clones and are not replaced by attention-backend nodes.
- The same wrapper computes once per forward what every attention call needs (a
  :class:`ForwardContext`: step, strength, cond rows, the token counts of video, text and image
  context), so a call is classified from its own shapes and that context, never by counting
  calls: self-attention has as many keys as queries, text cross-attention the text context's
  length, image cross-attention (I2V: 257 tokens, FLF2V: 514) the image context's length.
- An outer-sample wrapper brackets each sampling run: it resets the run's counts and, when the
  run ends, reports how many cross-attention calls were biased (log, and text on the node).
- Our Python runs outside torch.compile's tracing (`torch.compiler.disable`), so a compiled model
  never runs NUMINA with a step or strength frozen at trace time.
Every patch lives on a clone of the MODEL: the MODEL passed in is never changed.
"""
from __future__ import annotations

import logging
import math
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from ..numina_ops import capture as capture_ops
from ..numina_ops import modulation
from ..numina_ops.records import Layout, NuminaInputError, TokenGrid
from .preview import show_on_node
from .progress import comfy_progress

WRAPPER_KEY = "numina"
FORWARD_KEY = "numina_forward"
WAN_FAMILIES = {
    "WAN21_T2V": "wan21", "WAN21_I2V": "wan21_i2v", "WAN21_FunControl2V": "wan21",
    "WAN22_T2V": "wan22_ti2v", "WAN21_Vace": "wan21", "WAN21_Camera": "wan21",
}
OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
log = logging.getLogger("numina")


def _eager(fn: Callable, recursive: bool = True) -> Callable:
    """Run ``fn`` outside torch.compile tracing (each call reads the live step and strength)."""
    disable = getattr(getattr(torch, "compiler", None), "disable", None)
    if disable is None:
        return fn
    try:
        return disable(fn, recursive=recursive)
    except TypeError:          # a torch whose disable() has no `recursive`
        return disable(fn)


@dataclass(frozen=True)
class WanInfo:
    """What NUMINA needs to know of a Wan MODEL."""

    family: str
    blocks: int
    heads: int
    patch_size: tuple[int, int, int]
    latent_channels: int

    def grid_for(self, latent: torch.Tensor) -> TokenGrid:
        """Token grid of a [B, C, T, H, W] latent after Wan's patchify."""
        if latent.ndim != 5:
            raise NuminaInputError(
                f"expected a video latent [batch, channels, frames, height, width], got shape {tuple(latent.shape)};"
                " use EmptyHunyuanLatentVideo / Wan22ImageToVideoLatent for Wan")
        if latent.shape[1] != self.latent_channels:
            raise NuminaInputError(
                f"the latent has {latent.shape[1]} channels but this {self.family} model expects"
                f" {self.latent_channels}; use the empty-latent node that matches the model")
        pt, ph, pw = self.patch_size
        t, h, w = latent.shape[2:]
        return TokenGrid(math.ceil(t / pt), math.ceil(h / ph), math.ceil(w / pw))


def wan_info(model: Any) -> WanInfo:
    """Inspect a ComfyUI MODEL; a clear error for anything that is not a Wan diffusion model."""
    try:
        import comfy.ldm.wan.model as wan_model
        diffusion_model = model.model.diffusion_model
        config_name = type(model.model.model_config).__name__
    except AttributeError:
        raise NuminaInputError("NUMINA works on Wan video models (Wan2.1 / Wan2.2) loaded with UNETLoader / Load Diffusion Model; this MODEL is not one")
    if not isinstance(diffusion_model, wan_model.WanModel):
        raise NuminaInputError(
            f"NUMINA works on Wan video models (Wan2.1 / Wan2.2); this MODEL is {config_name}."
            " Load a Wan2.1 T2V or Wan2.2 model with the diffusion-model loader.")
    family = WAN_FAMILIES.get(config_name, "wan")
    return WanInfo(family=family, blocks=len(diffusion_model.blocks), heads=int(diffusion_model.num_heads),
                   patch_size=tuple(int(p) for p in diffusion_model.patch_size),
                   latent_channels=int(model.model.latent_format.latent_channels))


# ----------------------------------------------------------------------------- per forward

def step_of(transformer_options: dict) -> tuple[int, int]:
    """(0-based step index, number of steps) from the sigmas ComfyUI's sampler passes along."""
    schedule = transformer_options.get("sample_sigmas")
    sigma = transformer_options.get("sigmas")
    if schedule is None or sigma is None:
        return -1, 0
    schedule = schedule.detach().float().cpu()
    sigma = float(sigma.detach().flatten().max())
    hits = torch.isclose(schedule, torch.tensor(sigma, dtype=schedule.dtype, device="cpu"), rtol=1e-4, atol=0.0).nonzero()
    index = int(hits[0]) if len(hits) else int((schedule - sigma).abs().argmin())
    return index, len(schedule) - 1


def step_in_schedule(transformer_options: dict, schedule: tuple[float, ...]) -> tuple[int, int]:
    """Step index in the whole schedule the capture recorded (robust to KSamplerAdvanced, which
    passes only its slice of the sigmas), else in the sampler's own schedule."""
    sigma = transformer_options.get("sigmas")
    if len(schedule) < 2 or sigma is None:
        return step_of(transformer_options)
    sigma = float(sigma.detach().flatten().max())
    index = min(range(len(schedule) - 1), key=lambda i: abs(schedule[i] - sigma))
    if abs(schedule[index] - sigma) > 1e-4 * max(1.0, abs(sigma)):
        return step_of(transformer_options)   # another schedule than the capture's: use the sampler's
    return index, len(schedule) - 1


def cond_slices(cond_or_uncond: Optional[list], batch: int) -> tuple[slice, ...]:
    """Batch rows of the cond chunks (0 marks cond) as contiguous slices.  cond and uncond may run
    in one batch ([1, 0]) or apart ([0] or [1] alone, as MultiGPU's parallel CFG does)."""
    order = list(cond_or_uncond or [0])
    per_chunk = batch // len(order)
    slices: list[slice] = []
    for i, kind in enumerate(order):
        if kind != 0:
            continue
        if slices and slices[-1].stop == i * per_chunk:
            slices[-1] = slice(slices[-1].start, (i + 1) * per_chunk)
        else:
            slices.append(slice(i * per_chunk, (i + 1) * per_chunk))
    return tuple(slices)


@dataclass(frozen=True)
class ForwardContext:
    """What one diffusion-model forward tells each attention call in it."""

    grid: TokenGrid                  # video token grid of this forward's latent
    text_tokens: int                 # keys of the text cross-attention
    image_tokens: int                # keys of the image cross-attention (0: none)
    video_offset: int                # tokens before the video tokens (reference-image tokens)
    cond: tuple[slice, ...]          # batch rows of the cond chunks
    step: int                        # 0-based step (-1: unknown)
    steps: int
    strength: float = 0.0            # the guide's delta at this step

    @property
    def video_rows(self) -> slice:
        return slice(self.video_offset, self.video_offset + self.grid.tokens)


SELF, TEXT, IMAGE, UNKNOWN = "self", "text", "image", "unknown"


def classify_call(query_tokens: int, key_tokens: int, forward: ForwardContext,
                  module: Optional[torch.nn.Module] = None) -> str:
    """Self-, text cross- or image cross-attention, from this call's shapes and its forward only.
    When the video happens to have exactly as many tokens as the text context, the shapes cannot
    tell self from text: the Wan attention module making the call decides (``module``, found by
    :func:`calling_attention_module`), and without it the call is left alone (``UNKNOWN``)."""
    if query_tokens < forward.video_offset + forward.grid.tokens:
        return UNKNOWN
    candidates = []
    if key_tokens == query_tokens:
        candidates.append(SELF)
    if key_tokens == forward.text_tokens:
        candidates.append(TEXT)
    if forward.image_tokens and key_tokens == forward.image_tokens:
        candidates.append(IMAGE)
    if len(candidates) == 1:
        return candidates[0]
    if module is not None and IMAGE not in candidates:
        return TEXT if "Cross" in type(module).__name__ else SELF
    return UNKNOWN


def calling_attention_module(max_depth: int = 12) -> Optional[torch.nn.Module]:
    """The Wan attention module (WanSelfAttention or a cross-attention subclass) whose forward
    called the attention function, found on the call stack; None when it cannot be seen."""
    frame = sys._getframe(1)
    for _ in range(max_depth):
        frame = frame.f_back
        if frame is None:
            return None
        owner = frame.f_locals.get("self")
        if isinstance(owner, torch.nn.Module) and all(hasattr(owner, a) for a in ("q", "k", "v", "o")):
            return owner
    return None


@dataclass
class RunCounts:
    """What a session did in one sampling run (read by the report and by tests)."""

    forwards: int = 0
    text_calls: int = 0
    biased_calls: int = 0
    unknown_calls: int = 0
    reads: list = field(default_factory=list)    # (step, block, kind) of every capture read


class _BlockStamp:
    """A `double_block` replace patch that tells the block's calls their block index, then runs
    the patch that was there before (or the original block)."""

    def __init__(self, index: int, previous: Optional[Callable]) -> None:
        self.index, self.previous = index, previous

    def __call__(self, args: dict, extra: dict) -> dict:
        args = dict(args)
        args["transformer_options"] = {**args.get("transformer_options", {}), "block_index": self.index}
        if self.previous is not None:
            return self.previous(args, extra)
        return extra["original_block"](args)


class _ChainedOverride:
    """The session on top of the override present at this forward (None: ComfyUI's own)."""

    def __init__(self, session: "_Session", previous: Optional[Callable]) -> None:
        self.session, self.previous = session, previous

    def __call__(self, func: Callable, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.session.attention(func, self.previous, args, kwargs)


class _Session:
    """Per-run state shared by every clone of the patched MODEL.  ModelPatcher.clone() deep-copies
    model_options; a session must stay one object, so deep copies return itself.  Per-call facts
    travel in the call's transformer_options, so parallel cond / uncond threads (MultiGPU) are safe."""

    def __init__(self, info: WanInfo, grid: Optional[TokenGrid] = None) -> None:
        self.info = info
        self.grid = grid
        self.counts = RunCounts()
        self.last_run: Optional[RunCounts] = None
        self._lock = threading.Lock()
        # stable objects per chained predecessor: torch.compile guards on their identity
        self._overrides: dict[int, _ChainedOverride] = {}
        self._stamps: dict[tuple[int, int], _BlockStamp] = {}

    def __deepcopy__(self, memo: dict) -> "_Session":
        return self

    # -- wrappers ----------------------------------------------------------------------------
    def wrap_sampling(self, executor, *args, **kwargs):
        self.check_run(args, kwargs)
        with self._lock:
            self.counts = RunCounts()
        try:
            return executor(*args, **kwargs)
        finally:
            with self._lock:
                self.last_run = self.counts
            self.finish_run(self.last_run)

    def finish_run(self, counts: RunCounts) -> None:
        """Hook: report at the end of a sampling run."""

    def check_run(self, args: tuple, kwargs: dict) -> None:
        """Hook: refuse a sampling run that does not fit the session, before it starts.
        CFGGuider.outer_sample(noise, latent_image, sampler, sigmas, denoise_mask, callback,
        disable_pbar, seed, ...)."""

    def wrap_forward(self, executor, *args, **kwargs):
        """Wan's forward(x, timestep, context, clip_fea, time_dim_concat, transformer_options, ...)."""
        args = list(args)
        if len(args) > 5:
            options = args[5]
        else:
            options = kwargs.get("transformer_options") or {}
        x, context = args[0], args[2] if len(args) > 2 else kwargs.get("context")
        clip_fea = args[3] if len(args) > 3 else kwargs.get("clip_fea")
        options = dict(options)
        wan = getattr(executor, "class_obj", None)          # the WanModel this forward runs
        with_reference = kwargs.get("reference_latent") is not None and getattr(wan, "ref_conv", None) is not None
        options[FORWARD_KEY] = self.forward_context(x, context, clip_fea, kwargs if with_reference else {}, options)
        options["optimized_attention_override"] = self._chain(options.get("optimized_attention_override"))
        options["patches_replace"] = self._stamped(options.get("patches_replace") or {})
        with self._lock:
            self.counts.forwards += 1
        if len(args) > 5:
            args[5] = options
        else:
            kwargs["transformer_options"] = options
        return executor(*args, **kwargs)

    def forward_context(self, x, context, clip_fea, kwargs: dict, options: dict) -> ForwardContext:
        if options.get("context_window") is not None:
            raise NuminaInputError(
                "NUMINA does not support context windows (a Context Windows node runs the model on "
                "windows of frames; NUMINA's layout covers the whole video): remove the context-window "
                "node from the NUMINA runs, or sample a length that fits one window.")
        grid = TokenGrid(*(math.ceil(s / p) for s, p in zip(x.shape[2:], self.info.patch_size)))
        offset = 0
        reference = kwargs.get("reference_latent")    # passed only when the model prepends its tokens
        if reference is not None:
            offset = math.prod(s // p for s, p in zip(reference.shape[-2:], self.info.patch_size[1:]))
        image_tokens = int(clip_fea.shape[-2]) if clip_fea is not None else 0
        step, steps = self.step_for(options)
        return ForwardContext(grid=grid, text_tokens=int(context.shape[1]), image_tokens=image_tokens,
                              video_offset=offset, cond=cond_slices(options.get("cond_or_uncond"), x.shape[0]),
                              step=step, steps=steps, strength=self.strength_at(step, steps))

    def step_for(self, options: dict) -> tuple[int, int]:
        return step_of(options)

    def strength_at(self, step: int, steps: int) -> float:
        return 0.0

    def _chain(self, present: Optional[Callable]) -> Callable:
        if isinstance(present, _ChainedOverride) and present.session is self:
            return present
        chained = self._overrides.get(id(present))
        if chained is None or chained.previous is not present:
            chained = self._overrides[id(present)] = _ChainedOverride(self, present)
        return chained

    def _stamped(self, patches_replace: dict) -> dict:
        dit = dict(patches_replace.get("dit", {}))
        for index in range(self.info.blocks):
            present = dit.get(("double_block", index))
            if isinstance(present, _BlockStamp):
                continue
            stamp = self._stamps.get((index, id(present)))
            if stamp is None or stamp.previous is not present:
                stamp = self._stamps[(index, id(present))] = _BlockStamp(index, present)
            dit[("double_block", index)] = stamp
        return {**patches_replace, "dit": dit}

    # -- attention -----------------------------------------------------------------------------
    def _attention(self, func: Callable, previous: Optional[Callable], args: tuple, kwargs: dict) -> torch.Tensor:
        def plain() -> torch.Tensor:
            return previous(func, *args, **kwargs) if previous is not None else func(*args, **kwargs)

        q, k, v = args[:3]
        options = kwargs.get("transformer_options") or {}
        forward = options.get(FORWARD_KEY)
        if (forward is None or kwargs.get("mask") is not None
                or not all(isinstance(t, torch.Tensor) for t in (q, k, v)) or q.ndim != 3):
            return plain()     # not a Wan call we know: stay out of the way
        kind = classify_call(q.shape[1], k.shape[1], forward)
        if kind == UNKNOWN and q.shape[1] == k.shape[1] == forward.text_tokens:
            kind = classify_call(q.shape[1], k.shape[1], forward, calling_attention_module())
        if kind == TEXT or kind == UNKNOWN:
            with self._lock:
                if kind == TEXT:
                    self.counts.text_calls += 1
                else:
                    self.counts.unknown_calls += 1
        heads = kwargs.get("heads", args[3] if len(args) > 3 else self.info.heads)
        return self.attend(kind, q, k, v, int(heads), int(options.get("block_index", -1)), forward, plain)

    attention = _eager(_attention)

    def attend(self, kind, q, k, v, heads, block, forward, plain) -> torch.Tensor:
        return plain()


class CaptureSession(_Session):
    """Reads one step of the reference pass (the first cond row); changes nothing: self-attention
    in `block`, the nouns' cross-attention in each of `cross_blocks` (averaged)."""

    def __init__(self, info: WanInfo, grid: TokenGrid, block: int, step: int,
                 noun_positions: dict[str, tuple[int, ...]], memory_budget: int = capture_ops.DEFAULT_MEMORY_BUDGET,
                 cross_blocks: Optional[tuple[int, ...]] = None) -> None:
        super().__init__(info, grid)
        self.block, self.step = block, step
        self.cross_blocks = (block,) if cross_blocks is None else tuple(sorted(set(cross_blocks)))
        self.noun_positions = noun_positions
        self.memory_budget = memory_budget
        self.reading: Optional[capture_ops.SelfAttentionReading] = None
        self.cross_maps: Optional[dict[str, torch.Tensor]] = None
        self._cross_read: dict[int, dict[str, torch.Tensor]] = {}

    @property
    def complete(self) -> bool:
        return self.reading is not None and self.cross_maps is not None

    @property
    def cross_blocks_read(self) -> tuple[int, ...]:
        return tuple(sorted(self._cross_read))

    def settle(self) -> None:
        """After the pass: when some of `cross_blocks` never ran at the step (a node that skips
        blocks, e.g. a block cache), the nouns' maps are the mean over the blocks that did."""
        if self.cross_maps is None and self._cross_read:
            self.cross_maps = capture_ops.mean_maps(list(self._cross_read.values()))

    def attend(self, kind, q, k, v, heads, block, forward, plain):
        if forward.step != self.step or kind not in (SELF, TEXT) or not forward.cond or self.complete:
            return plain()
        wanted_self = kind == SELF and block == self.block and self.reading is None
        wanted_cross = kind == TEXT and block in self.cross_blocks and block not in self._cross_read
        if not (wanted_self or wanted_cross):
            return plain()
        self.grid.check_tokens(forward.grid.tokens)
        row = forward.cond[0].start
        video = forward.video_rows
        if wanted_self:
            self.reading = self._read(lambda budget: capture_ops.read_self_attention(
                q[row, video], k[row, video], heads, self.grid, budget, progress=comfy_progress()),
                "self", block, forward)
        else:
            self._cross_read[block] = self._read(lambda budget: capture_ops.read_cross_attention(
                q[row, video], k[row], heads, self.grid, self.noun_positions, budget, progress=comfy_progress()),
                "cross", block, forward)
            if len(self._cross_read) == len(self.cross_blocks):
                self.cross_maps = capture_ops.mean_maps(list(self._cross_read.values()))
        return plain()

    def _read(self, read: Callable[[int], Any], kind: str, block: int, forward: ForwardContext) -> Any:
        """A read that runs out of device memory retries with a quarter of the budget, then says
        what to lower; the exception leaves the sampler and nothing stays patched (a clone)."""
        budget = self.memory_budget
        while True:
            try:
                result = read(budget)
                break
            except OUT_OF_MEMORY as error:
                if budget <= 16 * 2**20:
                    g = self.grid
                    raise NuminaInputError(
                        f"NUMINA capture ran out of GPU memory reading {kind}-attention of block {block} at"
                        f" step {forward.step} on a {g.frames}x{g.height}x{g.width} token grid"
                        f" ({g.tokens_per_frame} tokens per frame): lower the capture's memory_budget_mb"
                        f" (now {self.memory_budget // 2**20}), the resolution, or free GPU memory"
                        f" (--lowvram).") from error
                budget //= 4
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
        with self._lock:
            self.counts.reads.append((forward.step, block, kind))
        return result


class GuideSession(_Session):
    """Adds the layout's bias to the text cross-attention logits of the cond rows."""

    def __init__(self, info: WanInfo, layout: Layout, form: str, added_boost: float = 0.0,
                 with_modifiers: bool = False, node_id: Optional[str] = None, rule: str = "calibrated") -> None:
        super().__init__(info, layout.grid)
        self.layout = layout
        modifiers = dict(layout.modifier_positions) if with_modifiers else None
        self.plan = modulation.build_bias_plan(layout, added_boost, modifiers, rule)
        self.form = form
        self.node_id = node_id
        self._prepared: dict[torch.device, modulation.PreparedPlan] = {}

    def step_for(self, options: dict) -> tuple[int, int]:
        return step_in_schedule(options, self.layout.schedule)

    def check_run(self, args: tuple, kwargs: dict) -> None:
        """A guided MODEL sampled with other settings than the capture's would be guided toward
        another run's layout: stop, naming both values (seed, steps / scheduler, sampler)."""
        planned = self.layout.settings
        if planned is None:
            return
        named = dict(zip(("noise", "latent_image", "sampler", "sigmas", "denoise_mask", "callback",
                          "disable_pbar", "seed"), args))
        named.update(kwargs)
        sigmas, seed, sampler, noise = (named.get(k) for k in ("sigmas", "seed", "sampler", "noise"))
        if sigmas is not None and len(self.layout.schedule) > 1:
            run = [float(x) for x in sigmas.detach().flatten().cpu()]
            if not _is_part_of(run, self.layout.schedule):
                raise NuminaInputError(
                    f"NUMINA guide: this sampler's sigmas ({len(run) - 1} steps: {_short(run)}) are not part of the "
                    f"capture's schedule ({planned.steps} steps, scheduler {planned.scheduler}: "
                    f"{_short(self.layout.schedule)}); sample with the capture's steps and scheduler, or use "
                    "NuminaSampler, which takes them from the capture.")
        if (seed is not None and int(seed) != planned.seed and isinstance(noise, torch.Tensor)
                and bool(noise.any())):
            raise NuminaInputError(
                f"NUMINA guide: this sampler's seed is {int(seed)} but the capture's is {planned.seed}: the layout "
                "was read from another noise. Use the capture's seed, or NuminaSampler.")
        expected = _sampler_identity(planned.sampler_name)
        running = _sampler_identity(sampler)
        if expected is not None and running is not None and expected != running:
            raise NuminaInputError(
                f"NUMINA guide: this run's sampler ({running}) is not the capture's ({planned.sampler_name}:"
                f" {expected}); use the capture's sampler, or NuminaSampler.")

    def strength_at(self, step: int, steps: int) -> float:
        if self.plan.is_empty or step < 0 or steps < 1:
            return 0.0
        return modulation.strength(step, steps)

    def forward_context(self, x, context, clip_fea, kwargs, options) -> ForwardContext:
        forward = super().forward_context(x, context, clip_fea, kwargs, options)
        if forward.grid != self.grid:
            g, f = self.grid, forward.grid
            raise NuminaInputError(
                f"NUMINA guide: the latent has {f.tokens} video tokens ({f.frames}x{f.height}x{f.width}) but the"
                f" layout was read on a {g.frames}x{g.height}x{g.width} token grid ({g.tokens} tokens). Sample the"
                " guided run with the same width, height and length as the reference pass (or capture again).")
        return forward

    def prepared(self, device: torch.device) -> modulation.PreparedPlan:
        """The plan's index tensors on this device, built on first use (once per run and device)."""
        plan = self._prepared.get(device)
        if plan is None:
            plan = self._prepared[device] = modulation.prepare_plan(self.plan, device)
        return plan

    def attend(self, kind, q, k, v, heads, block, forward, plain):
        out = plain()
        if kind != TEXT or forward.strength <= 0.0 or not forward.cond:
            return out
        plan = self.prepared(q.device)
        video = forward.video_rows
        for rows in forward.cond:
            # `out` is the fresh tensor the attention function just returned: its views are ours
            modulation.rebias_rows(q[rows, video], k[rows], v[rows], heads, plan, forward.strength,
                                   out[rows, video], self.form)
        with self._lock:
            self.counts.biased_calls += 1
        return out

    def finish_run(self, counts: RunCounts) -> None:
        if counts.biased_calls:
            text = (f"NUMINA guide: biased {counts.biased_calls} of {counts.text_calls} text cross-attention calls"
                    f" in {counts.forwards} model evaluations ({self.plan.rule} bias, {self.form} form).")
            log.info(text)
        else:
            text = (f"NUMINA guide: WARNING: sampling finished but no cross-attention call was biased"
                    f" ({counts.forwards} model evaluations, {counts.text_calls} text cross-attention calls seen,"
                    f" {counts.unknown_calls} unclassified). The run equals a plain run. Check that the sampler"
                    " uses this MODEL with the capture's steps and scheduler, and that no node after the guide"
                    " replaces Wan's attention outside ComfyUI's attention override.")
            log.warning(text)
        if counts.unknown_calls:
            log.warning("NUMINA guide: %d attention calls could not be classified (the video has as many tokens"
                        " as a context and the calling module could not be seen); they were left unbiased.",
                        counts.unknown_calls)
        if self.node_id is not None:
            show_on_node(text, self.node_id)


def _is_part_of(run: list[float], schedule: tuple[float, ...], tolerance: float = 1e-4) -> bool:
    """True when ``run`` is a contiguous slice of ``schedule`` (KSamplerAdvanced samples part of
    it; with return_with_leftover_noise off its last sigma becomes 0)."""
    def close(a: float, b: float) -> bool:
        return abs(a - b) <= tolerance * max(1.0, abs(b))
    for start in range(len(schedule)):
        if not close(run[0], schedule[start]) or start + len(run) > len(schedule):
            continue
        body = all(close(a, b) for a, b in zip(run[:-1], schedule[start:start + len(run) - 1]))
        if body and (close(run[-1], schedule[start + len(run) - 1]) or run[-1] == 0.0):
            return True
    return False


def _short(values) -> str:
    shown = [f"{v:.3f}" for v in values]
    return "[" + ", ".join(shown if len(shown) <= 6 else shown[:3] + ["..."] + shown[-2:]) + "]"


def _sampler_identity(sampler: Any) -> Optional[str]:
    """The sampling function's qualified name, for a sampler name or a KSAMPLER object."""
    try:
        if isinstance(sampler, str):
            import comfy.samplers
            sampler = comfy.samplers.sampler_object(sampler)
        function = getattr(sampler, "sampler_function", None)
        return getattr(function, "__qualname__", None)
    except Exception:
        return None


def session_of(model: Any) -> Optional[_Session]:
    """The NUMINA session installed on a MODEL by :func:`install` (None when there is none)."""
    import comfy.patcher_extension as extension
    installed = getattr(model, "wrappers", {}).get(extension.WrappersMP.OUTER_SAMPLE, {}).get(WRAPPER_KEY, [])
    return getattr(installed[0], "__self__", None) if installed else None


def install(model: Any, session: _Session) -> Any:
    """A clone of `model` with the session's wrappers installed (any earlier NUMINA session on
    it is replaced; other nodes' overrides and block patches are chained at every forward)."""
    import comfy.patcher_extension as extension

    patched = model.clone()
    for kind, wrapper in ((extension.WrappersMP.OUTER_SAMPLE, session.wrap_sampling),
                          (extension.WrappersMP.DIFFUSION_MODEL, _eager(session.wrap_forward, recursive=False))):
        patched.remove_wrappers_with_key(kind, WRAPPER_KEY)
        patched.add_wrapper_with_key(kind, WRAPPER_KEY, wrapper)
    return patched
