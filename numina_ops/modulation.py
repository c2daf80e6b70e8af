"""Modulation: NUMINA phase 2, guided regeneration by a bias on the cross-attention logits.

In the paper's order:

1. :func:`strength` -- how strong the bias is at a sampling step (the published 50-step schedule,
   stretched to any step count);
2. :func:`build_bias_plan` -- which pixels of which noun get which kind of bias, from a refined
   :class:`~numina_ops.records.Layout` (compact: row indices and kinds, no dense mask);
3. :func:`guided_cross_attention` -- cross-attention of the cond rows with the bias added to the
   pre-softmax logits (``Q K^T / sqrt(d)``), in one of three exactly equal forms (``FORMS``).

The bias is shared by all heads, lives only in the columns of the noun's tokens and only on the
rows (video tokens) the refined layout edited:

* removed pixels: ``REMOVED_BIAS * delta`` (-10 delta)
* empty-frame pixels (added in a frame with no existing instance): ``EMPTY_FRAME_BIAS * delta``
  (+0.8 delta)
* matched pixels (added in a frame with an existing instance): the head-averaged logit is set to
  ``delta * m_ref``, ``m_ref`` being the mean scaled logit over heads, over the pixels of the
  frame's smallest existing instance (ties: the lowest label) and over the noun's tokens; so
  ``bias = delta * m_ref - head_mean(logit)``, computed from q and k at call time.

If two nouns share a token column, their biases on a shared row add up.

Not in the published method: the **calibrated rule** (``rule="calibrated"``, the nodes' default;
:func:`calibrated_bias`), which replaces the three kinds above by one: every edited pixel's bias is
computed at each call from that call's attention shares (added pixels lifted to the odds of the
frame's existing instances' share times ``CALIBRATED_GAIN * delta``, removed pixels lowered to the
background's over it), so one setting fits models whose noun attention differs by orders of
magnitude.  Also not published (the node inputs `bias_modifiers`, on by default, and
`added_boost`, 0 by default): ``modifier_positions`` (the words between a noun's numeral and the noun) are
biased with the noun's own tokens: the published bias on the noun token alone adds a "circle"
whose colour the model picks itself.  ``added_boost`` gives every added pixel a bias of at least
``added_boost * delta``.  The published matched rule targets ``delta * m_ref``,
which is a small change when the noun's logits are small next to the row's log-sum-exp (CountWorld's
tiny model: noun logits 1-3 against a log-sum-exp of 5-7, so the noun holds 1-20 % of the
attention) and a decrease when ``m_ref`` is negative; there the added instances are ignored.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F

from .records import BACKGROUND, FIRST_ADDED, REMOVED, Layout, NuminaInputError, TokenGrid

PUBLISHED_STEPS = 50
REMOVED_BIAS = -10.0
EMPTY_FRAME_BIAS = 0.8
DEFAULT_MEMORY_BUDGET = 256 * 2**20

RULES = ("calibrated", "published")
# The calibrated rule (not published; this pack's default, see `calibrated_bias`): how far past the
# reference's attention odds an added pixel is pushed at strength 1 (and how far below the
# background's a removed one), the share an added pixel aims at when the noun has no instance to
# compare with anywhere, and at most how many reference rows of a group are read per call.
# The gain was chosen on CountWorld's tuning prompts (2, 8, 32, 128, 512, 2048 tried; every value
# and its result in countworld/settings.py; 2048 and 8192 again for issue 21's shapes, and 2048 on
# the held-out prompts: within noise of 512 on both models); it is the same for every model, since
# the rule scales each bias to the model's own attention.
CALIBRATED_GAIN = 512.0
NO_REFERENCE_SHARE = 0.25
MAX_REFERENCE_ROWS = 64

FORMS = ("dense", "sparse", "fast")
# "sparse" everywhere: it is the form that leaves every unbiased row bit-identical to what the
# attention backend returned (it only rewrites the biased rows), on the CPU (sub-quadratic or SDPA
# backends) and on CUDA, where the dense float mask moves every row off the flash kernel.  Speed:
# benchmarks/bench_guided_attention.py (CPU) and benchmarks/gpu_check.py (CUDA); figures in the README.
DEFAULT_FORM = "sparse"


# ----------------------------------------------------------------------------- 1. strength

def published_delta(t: float) -> float:
    """The published strength at (possibly fractional) step ``t`` of a 50-step schedule."""
    return 0.25 * (4.0 - 3.0 * math.tanh(t - 25.0))


# The share of the schedule after which no bias is applied (1.0: the published curve, active to its
# own end, step 44 of 50).  A constant for experiments on CountWorld (issue 21: does a bias that
# stops earlier let the model finish the added instances' shapes?).
BIAS_END = 1.0


def strength(step_index: int, total_steps: int) -> float:
    """Bias strength at 0-based ``step_index`` of ``total_steps``; 0.0 when modulation is off.

    Step ``i`` of ``N`` is mapped to ``t = i * 50 / N`` (same fraction of the schedule done), so
    20-, 30- and 50-step runs follow the published curve.  Active while ``delta(t) > 0.25`` in
    float64, which at 50 steps is exactly the published steps 0..44.
    """
    if total_steps < 1:
        raise NuminaInputError(f"total_steps must be >= 1, got {total_steps}")
    if not 0 <= step_index < total_steps:
        raise NuminaInputError(f"step_index {step_index} outside 0..{total_steps - 1}")
    if step_index >= BIAS_END * total_steps:
        return 0.0
    delta = published_delta(step_index * PUBLISHED_STEPS / total_steps)
    return delta if delta > 0.25 else 0.0


# ----------------------------------------------------------------------------- 2. the plan

@dataclass(frozen=True)
class MatchedGroup:
    """Added pixels of one frame whose logit is set from the frame's reference instance."""

    rows: torch.Tensor             # [n] long, global token rows of the added pixels
    reference_rows: torch.Tensor   # [m] long, rows of the smallest existing instance


@dataclass(frozen=True)
class CalibratedGroup:
    """Edited pixels of one frame whose bias is calibrated against reference pixels at call time:
    added pixels against the noun's existing instances, removed pixels against the background."""

    rows: torch.Tensor             # [n] long, global token rows of the edited pixels
    reference_rows: torch.Tensor   # [m] long (m <= MAX_REFERENCE_ROWS); empty: aim at NO_REFERENCE_SHARE
    adds: bool                     # True: added pixels (bias >= 0); False: removed pixels (bias <= 0)


@dataclass(frozen=True)
class NounBias:
    """Where one noun's bias goes: its token columns and its biased rows by kind."""

    noun: str
    columns: torch.Tensor          # [T] long, the noun's token positions in the context (and modifiers')
    removed_rows: torch.Tensor     # [n] long: bias REMOVED_BIAS * delta
    empty_frame_rows: torch.Tensor     # [n] long: bias EMPTY_FRAME_BIAS * delta
    matched: tuple[MatchedGroup, ...] = ()
    calibrated: tuple[CalibratedGroup, ...] = ()
    share_columns: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long, device="cpu"))
                                   # the noun's own token positions: whose attention share is calibrated

    @property
    def rows(self) -> torch.Tensor:
        return torch.cat([self.removed_rows, self.empty_frame_rows, *[g.rows for g in self.matched],
                          *[g.rows for g in self.calibrated]])


@dataclass(frozen=True)
class BiasPlan:
    """All nouns' biases on one token grid; empty when the layout needs no guidance."""

    grid: TokenGrid
    nouns: tuple[NounBias, ...] = ()
    added_boost: float = 0.0       # added pixels get at least added_boost * delta (0: published)
    rule: str = "published"        # one of RULES

    @property
    def is_empty(self) -> bool:
        return all(n.rows.numel() == 0 for n in self.nouns)

    @property
    def rows(self) -> torch.Tensor:
        """Sorted unique rows that carry some bias."""
        if not self.nouns:
            return torch.zeros(0, dtype=torch.long, device="cpu")
        return torch.unique(torch.cat([n.rows for n in self.nouns]))

    @property
    def columns(self) -> torch.Tensor:
        """Sorted unique context columns that carry some bias."""
        if not self.nouns:
            return torch.zeros(0, dtype=torch.long, device="cpu")
        return torch.unique(torch.cat([n.columns for n in self.nouns]))


def _long(values: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(values).long() if values else torch.zeros(0, dtype=torch.long, device="cpu")


def _spread(rows: torch.Tensor, limit: int = MAX_REFERENCE_ROWS) -> torch.Tensor:
    """At most ``limit`` of ``rows``, evenly spaced (a reference's mean share needs no more)."""
    if rows.numel() <= limit:
        return rows
    return rows[torch.linspace(0, rows.numel() - 1, limit, device="cpu").round().long()]


def _calibrated_groups(labels: torch.Tensor, per_frame: int) -> list[CalibratedGroup]:
    """Per frame: the added pixels against the frame's existing instances (else the noun's
    instances in any frame, else none), the removed pixels against the frame's background."""
    existing_anywhere = torch.nonzero(((labels >= 1) & (labels < FIRST_ADDED)).flatten()).flatten()
    groups = []
    for f in range(labels.shape[0]):
        frame, offset = labels[f], f * per_frame
        added = torch.nonzero(frame >= FIRST_ADDED).flatten()
        if added.numel():
            existing = torch.nonzero((frame >= 1) & (frame < FIRST_ADDED)).flatten() + offset
            reference = existing if existing.numel() else existing_anywhere
            groups.append(CalibratedGroup(rows=added + offset, reference_rows=_spread(reference), adds=True))
        removed = torch.nonzero(frame == REMOVED).flatten()
        if removed.numel():
            background = torch.nonzero(frame == BACKGROUND).flatten() + offset
            groups.append(CalibratedGroup(rows=removed + offset, reference_rows=_spread(background), adds=False))
    return groups


def build_bias_plan(layout: Layout, added_boost: float = 0.0,
                    modifier_positions: Optional[dict[str, tuple[int, ...]]] = None,
                    rule: str = "published") -> BiasPlan:
    """Refined layout -> compact bias plan (row indices and kinds per noun).

    `modifier_positions` ({noun: context positions}) are biased with the noun's own tokens, e.g. the
    words between its numeral and the noun ("green" in "four green circles"; not published).
    `rule`: "published" (fixed removed / empty-frame offsets, matched logits) or "calibrated"
    (every edited pixel's bias computed per call from the model's own attention shares)."""
    grid = layout.grid
    if rule not in RULES:
        raise NuminaInputError(f"bias rule must be one of {RULES}, got {rule!r}")
    if not math.isfinite(added_boost) or added_boost < 0:
        raise NuminaInputError(f"added_boost must be a finite number >= 0, got {added_boost}")
    if not layout.needs_guidance:
        return BiasPlan(grid=grid, added_boost=float(added_boost), rule=rule)
    per_frame = grid.tokens_per_frame
    nouns = []
    for noun in layout.nouns:
        labels = noun.labels
        if tuple(labels.shape) != (grid.frames, grid.height, grid.width):
            raise NuminaInputError(
                f"labels of {noun.noun!r} are {tuple(labels.shape)}, the layout grid is"
                f" {grid.frames}x{grid.height}x{grid.width}")
        labels = labels.reshape(grid.frames, per_frame).long()
        edited = (labels == REMOVED) | (labels >= FIRST_ADDED)
        if bool(edited.any()) and not noun.token_positions:
            raise NuminaInputError(f"noun {noun.noun!r} was edited but has no token positions")
        columns = torch.tensor(sorted(set(noun.token_positions) | set((modifier_positions or {}).get(noun.noun, ()))),
                               dtype=torch.long, device="cpu")
        own = torch.tensor(sorted(set(noun.token_positions)), dtype=torch.long, device="cpu")
        nothing = torch.zeros(0, dtype=torch.long, device="cpu")
        if rule == "calibrated":
            nouns.append(NounBias(noun=noun.noun, columns=columns, removed_rows=nothing, empty_frame_rows=nothing,
                                  calibrated=tuple(_calibrated_groups(labels, per_frame)), share_columns=own))
            continue
        removed, empty_frame, matched = [], [], []
        for f in range(grid.frames):
            frame = labels[f]
            offset = f * per_frame
            removed.append(torch.nonzero(frame == REMOVED).flatten() + offset)
            added = torch.nonzero(frame >= FIRST_ADDED).flatten()
            if added.numel() == 0:
                continue
            existing = frame[(frame >= 1) & (frame < FIRST_ADDED)]
            if existing.numel() == 0:
                empty_frame.append(added + offset)
                continue
            ids, sizes = torch.unique(existing, return_counts=True)   # ids ascending
            reference = int(ids[int(torch.argmin(sizes))])             # first minimum: lowest label
            matched.append(MatchedGroup(rows=added + offset,
                                        reference_rows=torch.nonzero(frame == reference).flatten() + offset))
        nouns.append(NounBias(noun=noun.noun, columns=columns, removed_rows=_long(removed),
                              empty_frame_rows=_long(empty_frame), matched=tuple(matched), share_columns=own))
    return BiasPlan(grid=grid, nouns=tuple(nouns), added_boost=float(added_boost), rule=rule)


# ----------------------------------------------------------------------------- 3. attention

@dataclass(frozen=True)
class MatchedBias:
    """One noun's matched rows as flat index tensors: every group of the noun at once."""

    row_slots: torch.Tensor          # [n] long, positions in PreparedPlan.rows of the added pixels
    gathered_rows: torch.Tensor      # [n + m] long: the added pixels' rows, then every reference row
    added_count: int                 # n
    group_of_added: torch.Tensor     # [n] long, each added pixel's group
    reference_average: torch.Tensor  # [G, m] float32: row g averages group g's reference rows
    column_slots: torch.Tensor       # [T] long, positions in PreparedPlan.columns of the noun's columns
    columns: torch.Tensor            # [T] long, the noun's context columns


@dataclass(frozen=True)
class CalibratedBias:
    """One noun's calibrated groups as flat index tensors: every group of the noun at once."""

    row_slots: torch.Tensor          # [n] long, positions in PreparedPlan.rows of the edited pixels
    gathered_rows: torch.Tensor      # [n + m] long: the edited pixels' rows, then every reference row
    edited_count: int                # n
    group_of_edited: torch.Tensor    # [n] long, each edited pixel's group
    direction: torch.Tensor          # [n] float32: +1 added (raise the share), -1 removed (lower it)
    reference_average: torch.Tensor  # [G, m] float32: row g averages group g's reference rows
    has_reference: torch.Tensor      # [G] bool: False -> the group aims at NO_REFERENCE_SHARE
    share_columns: torch.Tensor      # [S] long, the noun's own token columns (whose share is read)
    column_slots: torch.Tensor       # [T] long, positions in PreparedPlan.columns of the biased columns
    columns: torch.Tensor            # [T] long, the columns the bias goes to (noun and modifiers)


@dataclass(frozen=True)
class PreparedPlan:
    """A BiasPlan as index tensors on one device, built once per run (and device), so a guided
    call is a fixed handful of tensor ops that never wait on the device."""

    grid: TokenGrid
    rows: torch.Tensor               # [R] long, sorted unique biased rows
    columns: torch.Tensor            # [T] long, sorted unique biased columns
    unit_bias: torch.Tensor          # [R, T] float32, removed and empty-frame bias per unit of delta
    matched: tuple[MatchedBias, ...]
    added_boost: float
    max_column: int                  # largest column, as a Python int (checked without a sync)
    calibrated: tuple[CalibratedBias, ...] = ()
    # the q-independent part of the sparse form's mask for the latest (delta, dtype, context):
    # every call of one forward shares it (one strength per step)
    _masks: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def row_count(self) -> int:
        return int(self.rows.shape[0])

    def constant_mask(self, delta: float, dtype: torch.dtype, context: int) -> torch.Tensor:
        """[1, 1, R, context] in ``dtype``: removed and empty-frame bias at ``delta``, 0 elsewhere."""
        key = (float(delta), dtype, int(context))
        cached = self._masks.get("latest")
        if cached is not None and cached[0] == key:
            return cached[1]
        mask = torch.zeros(1, 1, self.row_count, context, dtype=dtype, device=self.rows.device)
        mask[..., self.columns] = (self.unit_bias * delta).to(dtype)
        self._masks["latest"] = (key, mask)
        return mask


def prepare_plan(plan: BiasPlan, device: torch.device | str) -> PreparedPlan:
    """Everything a call needs that does not depend on q, k: computed on the CPU, moved once."""
    rows, columns = plan.rows, plan.columns
    unit = torch.zeros(rows.numel(), columns.numel(), dtype=torch.float32, device="cpu")
    matched = []
    for noun in plan.nouns:
        c_idx = torch.searchsorted(columns, noun.columns)
        for kind_rows, value in ((noun.removed_rows, REMOVED_BIAS),
                                 (noun.empty_frame_rows, max(EMPTY_FRAME_BIAS, plan.added_boost))):
            if kind_rows.numel():
                unit[torch.searchsorted(rows, kind_rows)[:, None], c_idx[None, :]] += value
        if not noun.matched:
            continue
        added, references, group_of, average = _flatten_groups(noun.matched)
        matched.append(MatchedBias(
            row_slots=torch.searchsorted(rows, added).to(device),
            gathered_rows=torch.cat([added, references]).to(device),
            added_count=int(added.numel()),
            group_of_added=group_of.to(device),
            reference_average=average.to(device),
            column_slots=c_idx.to(device),
            columns=noun.columns.to(device)))
    calibrated = [_prepare_calibrated(noun, rows, columns, device) for noun in plan.nouns if noun.calibrated]
    return PreparedPlan(grid=plan.grid, rows=rows.to(device), columns=columns.to(device),
                        unit_bias=unit.to(device), matched=tuple(matched), added_boost=plan.added_boost,
                        max_column=int(columns.max()) if columns.numel() else -1, calibrated=tuple(calibrated))


def _flatten_groups(groups) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Groups of (rows, reference_rows) as flat CPU tensors: every group's rows, every group's
    reference rows, each row's group, and the [G, m] matrix whose row g averages group g's
    reference rows (a zero row for a group without any)."""
    edited = torch.cat([g.rows for g in groups])
    references = torch.cat([g.reference_rows for g in groups])
    group_of = torch.cat([torch.full((g.rows.numel(),), i, dtype=torch.long, device="cpu")
                          for i, g in enumerate(groups)])
    average = torch.zeros(len(groups), references.numel(), dtype=torch.float32, device="cpu")
    start = 0
    for g, group in enumerate(groups):
        size = group.reference_rows.numel()
        if size:
            average[g, start:start + size] = 1.0 / size
        start += size
    return edited, references, group_of, average


def _prepare_calibrated(noun: NounBias, rows: torch.Tensor, columns: torch.Tensor,
                        device: torch.device | str) -> CalibratedBias:
    groups = noun.calibrated
    edited, references, group_of, average = _flatten_groups(groups)
    direction = torch.cat([torch.full((g.rows.numel(),), 1.0 if g.adds else -1.0, device="cpu") for g in groups])
    return CalibratedBias(
        row_slots=torch.searchsorted(rows, edited).to(device),
        gathered_rows=torch.cat([edited, references]).to(device),
        edited_count=int(edited.numel()),
        group_of_edited=group_of.to(device),
        direction=direction.to(device),
        reference_average=average.to(device),
        has_reference=torch.tensor([g.reference_rows.numel() > 0 for g in groups], device="cpu").to(device),
        share_columns=noun.share_columns.to(device),
        column_slots=torch.searchsorted(columns, noun.columns).to(device),
        columns=noun.columns.to(device))


@dataclass(frozen=True)
class RowBias:
    """The bias at call time, only where it lives: ``values[b, i, j]`` at (rows[i], columns[j])."""

    rows: torch.Tensor      # [R] long, sorted unique
    columns: torch.Tensor   # [T] long, sorted unique
    values: torch.Tensor    # [B, R, T] float32


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, N, heads*d] -> [B, heads, N, d]."""
    b, n, c = x.shape
    return x.reshape(b, n, heads, c // heads).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[B, heads, N, d] -> [B, N, heads*d]."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def plain_cross_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Unbiased attention, the path rows without bias must match bit for bit."""
    out = F.scaled_dot_product_attention(_split_heads(q, heads), _split_heads(k, heads), _split_heads(v, heads))
    return _merge_heads(out)


def check_call(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, plan: PreparedPlan) -> None:
    """Shapes only (no device sync): q [B, L, C] on the plan's grid, k and v [B, ctx, C]."""
    if q.dim() != 3 or k.dim() != 3 or v.dim() != 3:
        raise NuminaInputError(f"q, k, v must be [B, N, heads*d], got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if not (q.shape[0] == k.shape[0] == v.shape[0]) or k.shape[:2] != v.shape[:2] or q.shape[2] != k.shape[2]:
        raise NuminaInputError(f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} do not fit together")
    if heads < 1 or q.shape[2] % heads or v.shape[2] % heads:
        raise NuminaInputError(f"heads={heads} does not divide the channels {q.shape[2]} / {v.shape[2]}")
    plan.grid.check_tokens(q.shape[1])
    if plan.max_column >= k.shape[1]:
        raise NuminaInputError(
            f"noun token position {plan.max_column} outside the context of length {k.shape[1]}")


def _matched_bias(q: torch.Tensor, k: torch.Tensor, heads: int, m: MatchedBias, delta: float,
                  added_boost: float) -> torch.Tensor:
    """[B, n, T] bias of one noun's added pixels: ``delta * m_ref - head_mean(logit)``.

    The mean over heads of per-head dot products is the full-width dot product divided by the
    head count, and the mean over a reference instance and the noun's tokens is an average of the
    reference rows' logits: one gather and one matmul for every group of the noun."""
    scale = (q.shape[2] // heads) ** -0.5 / heads
    logits = (q[:, m.gathered_rows].float() @ k[:, m.columns].float().transpose(1, 2)) * scale   # [B, n+m, T]
    m_ref = logits[:, m.added_count:].mean(dim=2) @ m.reference_average.T                   # [B, G]
    bias = delta * m_ref[:, m.group_of_added, None] - logits[:, :m.added_count]
    return bias.clamp(min=added_boost * delta) if added_boost > 0 else bias


def noun_shares(q: torch.Tensor, k: torch.Tensor, heads: int, columns: torch.Tensor,
                memory_budget: int = DEFAULT_MEMORY_BUDGET) -> torch.Tensor:
    """[B, r] float32: the share of each q row's attention that goes to ``columns`` (softmax over
    the whole context), averaged over heads; in chunks of rows within the memory budget."""
    keys = _split_heads(k.float(), heads)
    scale = keys.shape[-1] ** -0.5
    shares = torch.empty(q.shape[0], q.shape[1], dtype=torch.float32, device=q.device)
    chunk = rows_per_chunk(q.shape[0], heads, k.shape[1], memory_budget)
    for r0 in range(0, q.shape[1], chunk):
        logits = (_split_heads(q[:, r0:r0 + chunk].float(), heads) @ keys.transpose(-1, -2)) * scale
        share = torch.exp(torch.logsumexp(logits[..., columns], dim=-1) - torch.logsumexp(logits, dim=-1))
        shares[:, r0:r0 + chunk] = share.mean(dim=1)
    return shares


def _logit(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(1e-6, 1.0 - 1e-6)
    return torch.log(p) - torch.log1p(-p)


def calibrated_bias(q: torch.Tensor, k: torch.Tensor, heads: int, c: CalibratedBias, delta: float,
                    added_boost: float, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> torch.Tensor:
    """[B, n] bias of one noun's edited pixels (the same on each of its columns), from this call's
    attention: an added pixel's share of attention on the noun is raised to the odds of the
    reference instances' share times ``CALIBRATED_GAIN * delta``; a removed pixel's lowered to the
    background's odds over that factor.  Adding ``b`` to every noun logit of a row multiplies the
    noun's attention odds by ``e^b`` (exactly, for one head), so ``b`` is a difference of logits of
    shares.  Scale-free: the same rule gives a large bias on a model whose noun holds 1 % of the
    attention and a small one where it holds 40 %, with no per-model constant."""
    shares = noun_shares(q[:, c.gathered_rows], k, heads, c.share_columns, memory_budget)   # [B, n + m]
    n = c.edited_count
    reference = shares[:, n:] @ c.reference_average.T                                      # [B, G]
    reference = torch.where(c.has_reference, reference, torch.full_like(reference, NO_REFERENCE_SHARE))
    gain = math.log(CALIBRATED_GAIN * delta)
    target = _logit(reference)[:, c.group_of_edited] + c.direction * gain
    bias = target - _logit(shares[:, :n])
    floor = added_boost * delta
    return torch.where(c.direction > 0, bias.clamp(min=floor), bias.clamp(max=0.0))


def bias_values(q: torch.Tensor, k: torch.Tensor, heads: int, plan: PreparedPlan, delta: float) -> torch.Tensor:
    """The bias [B, R, T] float32 at strength ``delta`` for these q, k (the matched and calibrated
    kinds need them)."""
    values = (plan.unit_bias * delta).unsqueeze(0).repeat(q.shape[0], 1, 1)
    for m in plan.matched:
        values[:, m.row_slots[:, None], m.column_slots[None, :]] += _matched_bias(q, k, heads, m, delta, plan.added_boost)
    for c in plan.calibrated:
        values[:, c.row_slots[:, None], c.column_slots[None, :]] += \
            calibrated_bias(q, k, heads, c, delta, plan.added_boost)[..., None]
    return values


def sparse_mask(q: torch.Tensor, k: torch.Tensor, heads: int, plan: PreparedPlan, delta: float) -> torch.Tensor:
    """The biased rows' SDPA mask [B or 1, 1, R, ctx] in q's dtype: the forward's cached constant
    part, plus the matched and calibrated rows' q-dependent bias when the plan has any."""
    mask = plan.constant_mask(delta, q.dtype, k.shape[1])
    if not plan.matched and not plan.calibrated:
        return mask
    mask = mask.repeat(q.shape[0], 1, 1, 1)
    for m in plan.matched:
        mask[:, 0, m.row_slots[:, None], m.columns[None, :]] += \
            _matched_bias(q, k, heads, m, delta, plan.added_boost).to(mask.dtype)
    for c in plan.calibrated:
        mask[:, 0, c.row_slots[:, None], c.columns[None, :]] += \
            calibrated_bias(q, k, heads, c, delta, plan.added_boost)[..., None].to(mask.dtype)
    return mask


def row_bias(q: torch.Tensor, k: torch.Tensor, heads: int, plan: BiasPlan, delta: float) -> RowBias:
    """Evaluate the plan at strength ``delta`` for these q, k (on their device)."""
    prepared = prepare_plan(plan, q.device)
    return RowBias(rows=prepared.rows, columns=prepared.columns, values=bias_values(q, k, heads, prepared, delta))


def _dense(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, plan: PreparedPlan,
           values: torch.Tensor) -> torch.Tensor:
    """The published form: a dense [B, 1, L, ctx] float mask passed to SDPA (on CUDA this moves
    every row off the flash kernel, so unbiased rows change by rounding)."""
    mask = torch.zeros(q.shape[0], 1, q.shape[1], k.shape[1], dtype=q.dtype, device=q.device)
    mask[:, 0, plan.rows[:, None], plan.columns[None, :]] = values.to(q.dtype)
    out = F.scaled_dot_product_attention(_split_heads(q, heads), _split_heads(k, heads),
                                         _split_heads(v, heads), attn_mask=mask)
    return _merge_heads(out)


def rows_per_chunk(batch: int, heads: int, context: int, memory_budget: int) -> int:
    """Biased rows recomputed at once: their logits [B, heads, r, ctx] float32 fit the budget."""
    return int(max(1, memory_budget // (3 * 4 * batch * heads * context)))


def _exact_rows(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, rows: torch.Tensor,
                columns: torch.Tensor, values: torch.Tensor, out: torch.Tensor, memory_budget: int) -> None:
    """Recompute ``rows`` exactly with their bias ``values`` [B, r, T], into ``out``: the fused SDPA
    kernel on the gathered rows with a mask of just those rows ([B, 1, r, ctx], not [L, ctx])."""
    mask = torch.zeros(q.shape[0], 1, rows.shape[0], k.shape[1], dtype=q.dtype, device=q.device)
    mask[..., columns] = values[:, None].to(q.dtype)
    _masked_rows(q, k, v, heads, rows, mask, out, memory_budget)


def _masked_rows(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, rows: torch.Tensor,
                 mask: torch.Tensor, out: torch.Tensor, memory_budget: int) -> None:
    """SDPA of the gathered ``rows`` under ``mask`` [B or 1, 1, r, ctx], written into ``out``; in
    chunks of rows when their float logits would pass the budget (the CPU's math kernel makes them)."""
    keys, vals = _split_heads(k, heads), _split_heads(v, heads)
    count = rows.shape[0]
    chunk = rows_per_chunk(q.shape[0], heads, k.shape[1], memory_budget)
    for s0 in range(0, count, chunk):
        part_rows = rows if chunk >= count else rows[s0:s0 + chunk]
        part_mask = mask if chunk >= count else mask[:, :, s0:s0 + chunk]
        part = F.scaled_dot_product_attention(_split_heads(q[:, part_rows], heads), keys, vals, attn_mask=part_mask)
        out[:, part_rows] = _merge_heads(part).to(out.dtype)


def _plain_with_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Plain output and, when the CPU flash kernel exposes it, the row log-sum-exp [B, h, L]."""
    qh, kh, vh = _split_heads(q, heads), _split_heads(k, heads), _split_heads(v, heads)
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is not None and q.device.type == "cpu" and q.dtype == torch.float32:
        try:
            out, lse = op(qh, kh, vh)
            return _merge_heads(out), lse
        except RuntimeError:
            pass
    return _merge_heads(F.scaled_dot_product_attention(qh, kh, vh)), None


def _fast(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, plan: PreparedPlan, values: torch.Tensor,
          out: torch.Tensor, lse: Optional[torch.Tensor], memory_budget: int) -> torch.Tensor:
    """Exact decomposition for rows whose bias is >= 0 everywhere:
    ``O' = (O + sum_j p_j (e^b_j - 1) v_j) / (1 + sum_j p_j (e^b_j - 1))`` from the unbiased output
    ``out`` and the noun columns' probabilities.  Rows with a negative bias go the exact path (there
    the denominator cancels when the noun holds most of the attention).  Which rows are which
    depends on the values, so this form waits on the device once per call."""
    positive = (values >= 0).all(dim=2).all(dim=0)
    negative = torch.nonzero(~positive).flatten()
    _exact_rows(q, k, v, heads, plan.rows[negative], plan.columns, values[:, negative], out, memory_budget)
    select = torch.nonzero(positive).flatten()
    if select.numel() == 0:
        return out
    keys = _split_heads(k[:, plan.columns].float(), heads)        # [B, h, T, d]
    vals = _split_heads(v[:, plan.columns].float(), heads)
    scale = keys.shape[-1] ** -0.5
    full_keys = _split_heads(k.float(), heads)
    chunk = rows_per_chunk(q.shape[0], heads, k.shape[1], memory_budget)
    for s0 in range(0, select.numel(), chunk):
        sel = select[s0:s0 + chunk]
        rows = plan.rows[sel]
        qr = _split_heads(q[:, rows].float(), heads)                # [B, h, r, d]
        if lse is None:
            row_lse = torch.logsumexp((qr @ full_keys.transpose(-1, -2)) * scale, dim=-1)
        else:
            row_lse = lse[:, :, rows].float()
        probs = torch.exp((qr @ keys.transpose(-1, -2)) * scale - row_lse[..., None])   # [B, h, r, T]
        weight = probs * torch.expm1(values[:, None, sel])
        plain = _split_heads(out[:, rows].float(), heads)
        fixed = (plain + weight @ vals) / (1.0 + weight.sum(dim=-1, keepdim=True))
        out[:, rows] = _merge_heads(fixed).to(out.dtype)
    return out


def rebias_rows(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, plan: PreparedPlan, delta: float,
                out: torch.Tensor, form: str = DEFAULT_FORM, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> torch.Tensor:
    """Turn ``out``, the plain attention of these q rows, into the guided one, in place where the
    form allows: "sparse" and "fast" rewrite only the biased rows (every other row keeps the
    bits the attention backend produced), "dense" recomputes every row with the published mask.
    Returns the guided output (``out`` itself for sparse and fast).  What the attention patch calls."""
    check_call(q, k, v, heads, plan)
    return _rebias(q, k, v, heads, plan, delta, out, form, memory_budget)


def _rebias(q, k, v, heads: int, plan: PreparedPlan, delta: float, out: torch.Tensor, form: str,
            memory_budget: int, lse: Optional[torch.Tensor] = None) -> torch.Tensor:
    if form == "sparse":
        _masked_rows(q, k, v, heads, plan.rows, sparse_mask(q, k, heads, plan, delta), out, memory_budget)
        return out
    values = bias_values(q, k, heads, plan, delta)
    if form == "dense":
        out.copy_(_dense(q, k, v, heads, plan, values).to(out.dtype))
        return out
    return _fast(q, k, v, heads, plan, values, out, lse, memory_budget)


def guided_cross_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    heads: int,
    plan: BiasPlan | PreparedPlan,
    delta: float,
    form: str = DEFAULT_FORM,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> torch.Tensor:
    """Cross-attention of the cond rows with the plan's bias at strength ``delta``.

    ``q`` [B, L, heads*d], ``k``, ``v`` [B, ctx, heads*d] -> [B, L, heads*d].  An empty plan or
    ``delta == 0`` returns :func:`plain_cross_attention` (bit-identical).  ``form``: "dense" (the
    published dense-mask SDPA), "sparse" (plain SDPA, then the biased rows recomputed exactly) or
    "fast" (exact decomposition for non-negative rows, exact recompute for the others); all three
    agree to float32 rounding.  NaN / inf in the inputs propagate as in plain attention.
    ``plan`` may be prepared already (:func:`prepare_plan`, once per run and device).
    """
    if form not in FORMS:
        raise NuminaInputError(f"unknown form {form!r}; choose one of {FORMS}")
    prepared = plan if isinstance(plan, PreparedPlan) else prepare_plan(plan, q.device)
    check_call(q, k, v, heads, prepared)
    if prepared.row_count == 0 or delta == 0.0:
        return plain_cross_attention(q, k, v, heads)
    if form == "dense":
        return _dense(q, k, v, heads, prepared, bias_values(q, k, heads, prepared, delta))
    out, lse = _plain_with_lse(q, k, v, heads) if form == "fast" else (plain_cross_attention(q, k, v, heads), None)
    return _rebias(q, k, v, heads, prepared, delta, out, form, memory_budget, lse)
