"""Small immutable records passed between the steps of the method (and between nodes).

They are self-describing (token grid, steps, targets) so a consumer can refuse a record that
does not fit its inputs with a clear message.  Tensors inside are CPU tensors: whatever device
the model ran on, results cross between nodes on the CPU (moved in one place,
``numina_ops.capture.assemble_capture``), and each consumer moves what it needs to its device.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from .schedule import is_exact


class NuminaInputError(ValueError):
    """Bad user input: the message names the problem and how to fix it."""


@dataclass(frozen=True)
class CountTarget:
    """One counted noun of the prompt: "three red apples" -> noun "apples", count 3."""

    noun: str                 # as written in the prompt ("apples")
    count: int                # requested number of instances (>= 0)
    span: tuple[int, int]     # character span of the noun in the prompt
    numeral: str = ""         # the numeral text bound to it ("three", "3", "a pair of"), "" for an override
    source: str = "prompt"    # "prompt" or "override"


@dataclass(frozen=True)
class Targets:
    """All counted nouns of one prompt, plus what the parser was unsure about."""

    prompt: str
    items: tuple[CountTarget, ...]
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, int]:
        return {t.noun: t.count for t in self.items}

    def __bool__(self) -> bool:
        return len(self.items) > 0


@dataclass(frozen=True)
class TokenGrid:
    """Latent token grid of a video (after the (1, 2, 2) patchify): frames x height x width."""

    frames: int
    height: int
    width: int

    @property
    def tokens_per_frame(self) -> int:
        return self.height * self.width

    @property
    def tokens(self) -> int:
        return self.frames * self.height * self.width

    def check_tokens(self, length: int) -> None:
        if length != self.tokens:
            raise NuminaInputError(
                f"token count {length} does not match the grid {self.frames}x{self.height}x{self.width}"
                f" = {self.tokens}; the latent size differs from the one the grid was made for"
            )


@dataclass(frozen=True)
class NounMaps:
    """What the reference pass saw of one noun: its token positions and its cross-attention."""

    noun: str
    token_positions: tuple[int, ...]
    cross_attention: torch.Tensor       # [F, H, W] float32, mean over heads and sub-tokens


@dataclass(frozen=True)
class SamplingSettings:
    """The settings both passes share, entered once (on the capture)."""

    seed: int
    steps: int
    cfg: float
    sampler_name: str
    scheduler: str

    def describe(self) -> str:
        return (f"seed {self.seed}, {self.steps} steps, cfg {self.cfg:g}, sampler {self.sampler_name},"
                f" scheduler {self.scheduler}")


@dataclass(frozen=True)
class ReferencePass:
    """What the capture's reference pass leaves for the NUMINA sampler: the run's settings and
    inputs, and the sampler's exact state after the reference step, so a run whose counts are
    already right is finished instead of sampled again."""

    settings: SamplingSettings
    positive: Any                       # ComfyUI CONDITIONING of the run
    negative: Any
    latent: dict                        # the LATENT the run starts from
    state: Optional[torch.Tensor]       # raw sampler state after the reference step (CPU); None: no pass ran
    next_step: int                      # the first step that state has not taken
    # indices of the run's schedule the pass visited (numina_ops/schedule.py); () = every step before next_step
    path: tuple[int, ...] = ()

    @property
    def evaluations(self) -> int:
        """Model evaluations the pass took (one per step at any CFG, cond and uncond batched)."""
        return len(self.path) - 1 if self.path else self.next_step

    @property
    def exact(self) -> bool:
        """Whether the pass took the run's own steps, so finishing it is the plain run."""
        return not self.path or is_exact(self.path)


@dataclass(frozen=True)
class Capture:
    """The reference pass's reading of one block at one step (cond rows only)."""

    grid: TokenGrid
    targets: Targets
    nouns: tuple[NounMaps, ...]
    self_features: torch.Tensor         # [F, H*W, 3]: rank-3 components of the chosen head, min-maxed
    chosen_heads: torch.Tensor          # [F] long: best-scoring self-attention head per frame
    head_scores: torch.Tensor           # [F, heads] float32
    step_index: int = 0                 # 0-based sampling step the maps were taken at
    total_steps: int = 0
    block_index: int = 0                # the block self-attention was read in
    total_blocks: int = 0
    model_family: str = "wan21"
    schedule: tuple[float, ...] = ()    # the whole sigma schedule of the run: the guide finds its step in it
    modifier_positions: tuple[tuple[str, tuple[int, ...]], ...] = ()   # (noun, context positions of the
                                        # words between its numeral and the noun), for bias_modifiers
    reference: Optional[ReferencePass] = field(default=None, compare=False)
    meta: dict = field(default_factory=dict, compare=False, hash=False)   # display only
    cross_blocks: tuple[int, ...] = ()  # the blocks whose cross-attention maps were averaged (() = block_index)
    memory_budget: int = 0              # bytes the capture's reads were allowed (0 = the default); a retry reuses it


# Layout label convention (as the published code): 0 background, 1..99 detected instances,
# -1 removed, 100+ added.
BACKGROUND = 0
REMOVED = -1
FIRST_ADDED = 100


@dataclass(frozen=True)
class NounLayout:
    """Per-frame instance labels of one noun and the counts read from them."""

    noun: str
    target: int
    token_positions: tuple[int, ...]
    labels: torch.Tensor                # [F, H, W] int32, convention above
    counts: tuple[int, ...]             # live instances per frame (existing + added)
    notes: tuple[str, ...] = ()         # e.g. "frame 3: no room for 1 more instance"

    @property
    def mismatched_frames(self) -> tuple[int, ...]:
        return tuple(f for f, c in enumerate(self.counts) if c != self.target)


@dataclass(frozen=True)
class Layout:
    """Layouts of all counted nouns of one prompt on one token grid."""

    grid: TokenGrid
    targets: Targets
    nouns: tuple[NounLayout, ...]
    refined: bool = False
    step_index: int = 0
    total_steps: int = 0
    model_family: str = "wan21"
    schedule: tuple[float, ...] = ()    # from the capture (see Capture.schedule)
    modifier_positions: tuple[tuple[str, tuple[int, ...]], ...] = ()   # from the capture
    settings: Optional[SamplingSettings] = None   # from the capture: the guide checks the sampler against it
    meta: dict = field(default_factory=dict, compare=False, hash=False)   # display only

    @property
    def needs_guidance(self) -> bool:
        """True when some frame of some noun was edited (removed or added instances)."""
        return any(bool(((n.labels == REMOVED) | (n.labels >= FIRST_ADDED)).any()) for n in self.nouns)

    def noun(self, name: str) -> Optional[NounLayout]:
        return next((n for n in self.nouns if n.noun == name), None)
