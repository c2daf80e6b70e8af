"""The one module that touches `transformer_options`: NUMINA's patched Wan attention.

How it hooks ComfyUI's Wan (0.3.75 and newer):
- `optimized_attention_override` is called for every attention call of every block; ours chains
  to an override that was already installed (SageAttention patches, for instance) instead of
  replacing it.
- The block index comes from `transformer_options["block_index"]` when ComfyUI sets it (0.8+),
  else from a `dit`/`double_block` replace patch that stamps it (0.3.75 sets none); any replace
  patch already installed for that block is chained, not dropped.
- In a Wan block the first call is self-attention; text cross-attention is the cross call whose
  keys are the text context (Wan I2V first attends to 257 image tokens: that call is skipped).
- The step comes from the sigmas (`sample_sigmas`), cond rows from `cond_or_uncond`.
Every patch lives on a clone of the MODEL: the MODEL passed in is never changed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from ..numina_ops import capture as capture_ops
from ..numina_ops import modulation
from ..numina_ops.records import Layout, NuminaInputError, TokenGrid

STATE_KEY = "numina_state"
WAN_FAMILIES = {
    "WAN21_T2V": "wan21", "WAN21_I2V": "wan21_i2v", "WAN21_FunControl2V": "wan21",
    "WAN22_T2V": "wan22_ti2v", "WAN21_Vace": "wan21", "WAN21_Camera": "wan21",
}


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


def step_of(transformer_options: dict) -> tuple[int, int]:
    """(0-based step index, number of steps) from the sigmas ComfyUI's sampler passes along."""
    schedule = transformer_options.get("sample_sigmas")
    sigma = transformer_options.get("sigmas")
    if schedule is None or sigma is None:
        return -1, 0
    sigma = sigma.detach().flatten().max().to(schedule)
    hits = torch.isclose(schedule, sigma, rtol=1e-4, atol=0.0).nonzero()
    index = int(hits[0]) if len(hits) else int((schedule - sigma).abs().argmin())
    return index, len(schedule) - 1


def step_in_schedule(transformer_options: dict, schedule: Optional[torch.Tensor]) -> tuple[int, int]:
    """Step index in the whole schedule the capture recorded (robust to KSamplerAdvanced, which
    passes only its slice of the sigmas), else in the sampler's own schedule."""
    sigma = transformer_options.get("sigmas")
    if schedule is None or sigma is None or len(schedule) < 2:
        return step_of(transformer_options)
    sigma = float(sigma.detach().flatten().max())
    index = int((schedule[:-1] - sigma).abs().argmin())
    if abs(float(schedule[index]) - sigma) > 1e-4 * max(1.0, abs(sigma)):
        return step_of(transformer_options)   # another schedule than the capture's: use the sampler's
    return index, len(schedule) - 1


def cond_rows(transformer_options: dict, batch: int) -> torch.Tensor:
    """Indices of the cond rows of the batch (cond and uncond run together; 0 marks cond)."""
    order = transformer_options.get("cond_or_uncond") or [0]
    per_chunk = batch // len(order)
    rows = [i * per_chunk + r for i, kind in enumerate(order) if kind == 0 for r in range(per_chunk)]
    return torch.tensor(rows, dtype=torch.long)


class _Session:
    """Per-run state carried in transformer_options.  ModelPatcher.clone() deep-copies
    model_options; a session must stay one object, so deep copies return itself."""

    def __init__(self, info: WanInfo) -> None:
        self.info = info
        self.previous_override: Optional[Callable] = None
        self.previous_blocks: dict[int, Callable] = {}
        self._block = -1
        self._calls = 0

    def __deepcopy__(self, memo: dict) -> "_Session":
        return self

    # -- block bookkeeping ---------------------------------------------------------------------
    def block_patch(self, index: int) -> Callable:
        def patch(args: dict, extra: dict) -> dict:
            self._block, self._calls = index, 0
            previous = self.previous_blocks.get(index)
            return previous(args, extra) if previous is not None else extra["original_block"](args)
        return patch

    def _plain(self, func: Callable, args: tuple, kwargs: dict) -> torch.Tensor:
        if self.previous_override is not None:
            return self.previous_override(func, *args, **kwargs)
        return func(*args, **kwargs)

    def __call__(self, func: Callable, *args: Any, **kwargs: Any) -> torch.Tensor:
        """The optimized_attention_override entry point."""
        q, k, v = args[:3]
        options = kwargs.get("transformer_options") or {}
        block = options.get("block_index", self._block)
        call = self._calls
        self._calls += 1
        if not all(isinstance(t, torch.Tensor) for t in (q, k, v)) or q.ndim != 3:
            return self._plain(func, args, kwargs)  # an API we do not know: stay out of the way
        is_self = call == 0 and k.shape[1] == q.shape[1]
        is_text = not is_self and (call == 2 or k.shape[1] != 257)
        heads = kwargs.get("heads", self.info.heads)
        return self.attend(func, args, kwargs, q, k, v, heads, int(block), is_self, is_text, options)

    def attend(self, func, args, kwargs, q, k, v, heads, block, is_self, is_text, options) -> torch.Tensor:
        return self._plain(func, args, kwargs)


class CaptureSession(_Session):
    """Reads one block at one step of the reference pass (cond rows only); changes nothing."""

    def __init__(self, info: WanInfo, grid: TokenGrid, block: int, step: int,
                 noun_positions: dict[str, tuple[int, ...]]) -> None:
        super().__init__(info)
        self.grid, self.block, self.step = grid, block, step
        self.noun_positions = noun_positions
        self.reading: Optional[capture_ops.SelfAttentionReading] = None
        self.cross_maps: Optional[dict[str, torch.Tensor]] = None
        self.fired: list[tuple[int, int, str]] = []   # (step, block, kind) of every read, for tests

    @property
    def complete(self) -> bool:
        return self.reading is not None and self.cross_maps is not None

    def attend(self, func, args, kwargs, q, k, v, heads, block, is_self, is_text, options):
        if block == self.block and (is_self or is_text) and not self.complete:
            step, _ = step_of(options)
            if step == self.step:
                row = cond_rows(options, q.shape[0])[:1]
                if len(row):
                    self.grid.check_tokens(q.shape[1])
                    if is_self and self.reading is None:
                        self.reading = capture_ops.read_self_attention(q[row], k[row], heads, self.grid)
                        self.fired.append((step, block, "self"))
                    elif is_text and self.cross_maps is None:
                        self.cross_maps = capture_ops.read_cross_attention(
                            q[row], k[row], heads, self.grid, self.noun_positions)
                        self.fired.append((step, block, "cross"))
        return self._plain(func, args, kwargs)


class GuideSession(_Session):
    """Adds the layout's bias to the text cross-attention logits of the cond rows."""

    def __init__(self, info: WanInfo, layout: Layout, form: str, added_floor: float = 0.0,
                 with_modifiers: bool = False) -> None:
        super().__init__(info)
        self.layout = layout
        extra = layout.meta.get("modifier_positions") if with_modifiers else None
        self.plan = modulation.build_bias_plan(layout, added_floor, extra)
        self.form = form
        self.guided_calls = 0

    def attend(self, func, args, kwargs, q, k, v, heads, block, is_self, is_text, options):
        delta = 0.0
        if is_text and not self.plan.is_empty:
            step, steps = step_in_schedule(options, self.layout.meta.get("sigmas"))
            delta = modulation.strength(step, steps) if step >= 0 else 0.0
        rows = cond_rows(options, q.shape[0]) if delta > 0.0 else torch.zeros(0, dtype=torch.long)
        if len(rows) == 0:
            return self._plain(func, args, kwargs)
        if q.shape[1] != self.layout.grid.tokens:
            g = self.layout.grid
            raise NuminaInputError(
                f"NUMINA guide: the latent has {q.shape[1]} video tokens but the layout was read on a"
                f" {g.frames}x{g.height}x{g.width} token grid ({g.tokens} tokens). Sample the guided run with"
                " the same width, height and length as the reference pass (or capture again).")
        if self.form == "dense":
            # the published form: the cond rows' attention redone as one dense-masked SDPA
            others = torch.tensor(sorted(set(range(q.shape[0])) - set(rows.tolist())), dtype=torch.long)
            out = q.new_empty(q.shape[0], q.shape[1], v.shape[-1])
            if len(others):
                out[others] = self._plain(func, (q[others], k[others], v[others]) + tuple(args[3:]), kwargs)
            guided = modulation.guided_cross_attention(q[rows], k[rows], v[rows], heads, self.plan, delta, form="dense")
        else:
            out = self._plain(func, args, kwargs)
            plain_rows = out[rows] if self.form == "sparse" else None
            guided = modulation.guided_cross_attention(q[rows], k[rows], v[rows], heads, self.plan, delta,
                                                       form=self.form, plain_out=plain_rows)
            # `out` is the fresh tensor the attention function just returned: writing into it is safe
        out[rows] = guided.to(out.dtype)
        self.guided_calls += 1
        return out


def install(model: Any, session: _Session) -> Any:
    """A clone of `model` with the session's attention patch installed (chained, never replacing)."""
    patched = model.clone()
    options = patched.model_options.setdefault("transformer_options", {})
    session.previous_override = options.get("optimized_attention_override")
    options["optimized_attention_override"] = session
    options[STATE_KEY] = session
    replaced = options.get("patches_replace", {}).get("dit", {})
    for index in range(session.info.blocks):
        previous = replaced.get(("double_block", index))
        if previous is not None:
            session.previous_blocks[index] = previous
        patched.set_model_patch_replace(session.block_patch(index), "dit", "double_block", index)
    return patched
