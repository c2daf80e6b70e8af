"""Capture: the reference pass's reading of one block at one step (NUMINA phase 1, "identify").

Follows the paper's order:

1. self-attention, per latent frame and head: ``A = softmax(Q_f K_f^T / sqrt(d))`` over the tokens
   of that frame; centre the columns; rank-3 factorisation ``P = U S``; min-max each component;
   grey image ``g``; head score; keep the best head per frame  -> :func:`read_self_attention`
2. cross-attention per noun: softmax over all 512 context positions, mean over heads and over the
   noun's sub-tokens, per frame                                  -> :func:`read_cross_attention`
3. both halves into one :class:`~numina_ops.records.Capture`     -> :func:`assemble_capture`

The two halves are separate because the attention patch sees self- and cross-attention in two
separate calls of the block.

Choices the paper leaves open (fixed here, so a capture is reproducible):

* **Factorisation.**  The published code uses an unseeded randomised low-rank SVD (its head pick
  changed between identical runs in 24% of frames).  Here: a seeded randomised subspace iteration
  (fixed Gaussian start from ``torch.Generator`` seed ``SKETCH_SEED``, ``SKETCH_COLUMNS`` columns,
  ``POWER_ITERATIONS`` power iterations with (Cholesky-)QR re-orthonormalisation, Rayleigh-Ritz through the
  eigendecomposition of a small Gram matrix in float64), batched over a chunk of heads.  The
  centring is never materialised: ``A_c X = A X - 1 (m^T X)`` and ``A_c^T Y = A^T Y - m (1^T Y)``
  with ``m`` the column means.  Same input -> same picks, bit for bit, on one machine.
* **Sign.**  Singular vectors are defined up to sign and min-max makes ``g`` depend on it: each
  component is flipped so that its largest-magnitude entry (first one on ties) is positive.
* **Min-max of a constant component** gives zeros.
* **std(g)** is the population standard deviation (numpy's default ``ddof=0``).
* **8 x 8 blocks** split H (and W) the way ``numpy.array_split`` does: the first ``H mod 8`` bands
  are one row taller; when H < 8 the trailing bands are empty and their sum is 0.  The variance of
  the 64 block sums is the population variance.
* **Sobel** follows ``skimage.filters.sobel`` (scikit-image >= 0.19): kernels ``[1, 2, 1] / 4``
  (smoothing) x ``[1, 0, -1]`` (derivative), edge-replicating padding (scipy's "reflect" for a
  3 x 3 kernel), magnitude ``sqrt((gx^2 + gy^2) / 2)``.  Tests check the agreement.
* **Ties between heads** go to the lowest head index.
* **NaN / inf** in q or k raise :class:`NuminaInputError` naming the tensor and frame (a capture
  from a diverged sample is meaningless; better to say so than to pick a head from NaNs).

Memory: never an L x L matrix; self-attention holds a chunk of (frame, head) maps of HW x HW
float32 at a time (chunk chosen from ``memory_budget``), cross-attention a chunk of rows times
heads times the context length.  Everything is computed in float32 on the inputs' device (the
sketch is drawn on the CPU and moved, so CPU and GPU pick the same heads); no step waits on the
device except one finiteness check per tensor.  :func:`assemble_capture` is the one place results
move to the CPU.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

import torch

from .records import Capture, NounMaps, NuminaInputError, ReferencePass, Targets, TokenGrid

DEFAULT_MEMORY_BUDGET = 256 * 2**20   # bytes for the big temporaries of one chunk
SKETCH_SEED = 0
SKETCH_COLUMNS = 16                   # rank 3 + 13 oversampling
POWER_ITERATIONS = 1
RANK = 3
GREY_WEIGHTS = (0.299, 0.587, 0.114)
SCORE_BLOCKS = 8
STD_WEIGHT, BLOCK_VAR_WEIGHT, SOBEL_WEIGHT = 1.0, 1.0, 0.1

# attention maps [h, n, n] (rows sum to 1, not centred) -> components U S [h, n, 3] (any sign)
Factoriser = Callable[[torch.Tensor], torch.Tensor]
# (units done, units in all), called after each unit of a long loop; it may raise to stop the loop
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class SelfAttentionReading:
    """Self-attention half of a capture: the chosen head per frame and its components."""

    grid: TokenGrid
    heads: int
    features: torch.Tensor       # [F, H*W, 3] float32, min-maxed components of the chosen head
    chosen_heads: torch.Tensor   # [F] long
    head_scores: torch.Tensor    # [F, heads] float32


# ----------------------------------------------------------------------------- input checks

def _as_rows(x: torch.Tensor, name: str) -> torch.Tensor:
    """[1, L, C] or [L, C] -> [L, C]: a capture reads one cond row."""
    if not isinstance(x, torch.Tensor):
        raise NuminaInputError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 3:
        if x.shape[0] != 1:
            raise NuminaInputError(
                f"{name} has batch {x.shape[0]}; a capture reads one cond row: pass {name}[i:i+1]")
        x = x[0]
    if x.dim() != 2:
        raise NuminaInputError(f"{name} must be [1, L, heads*d] or [L, heads*d], got {tuple(x.shape)}")
    return x


def _head_dim(channels: int, heads: int, name: str) -> int:
    if not isinstance(heads, int) or heads < 1:
        raise NuminaInputError(f"heads must be a positive int, got {heads!r}")
    if channels % heads:
        raise NuminaInputError(
            f"{name} has {channels} channels, not divisible by heads={heads}; pass the model's head count")
    return channels // heads


def _check_finite(x: torch.Tensor, name: str, rows_per_frame: Optional[int] = None) -> None:
    """One device sync per tensor; on failure the message names the first bad frame (or row).
    The row-wise max |x| is one fused reduction (NaN and inf propagate), so no temporary the size
    of ``x`` is made (``torch.isfinite`` would make several: 1.8 GiB at Wan 14B 720p)."""
    row_max = torch.linalg.vector_norm(x, ord=float("inf"), dim=-1)
    finite = torch.isfinite(row_max)
    if bool(finite.all()):
        return
    first = int((~finite).nonzero()[0, 0])
    where = f"frame {first // rows_per_frame}" if rows_per_frame else f"row {first}"
    raise NuminaInputError(
        f"{name} contains NaN or inf ({where}); the sampled latent diverged: lower CFG or"
        f" check the model dtype before capturing")


def _heads_first(x: torch.Tensor, heads: int) -> torch.Tensor:
    """[n, heads*d] -> [heads, n, d]."""
    n, c = x.shape
    return x.reshape(n, heads, c // heads).transpose(0, 1)


# ----------------------------------------------------------------------------- self-attention

def frame_attention(q_frame: torch.Tensor, k_frame: torch.Tensor) -> torch.Tensor:
    """[h, n, d] x [h, n, d] -> softmax(Q K^T / sqrt(d)) [h, n, n], in place (one buffer)."""
    attn = torch.bmm(q_frame, k_frame.transpose(1, 2))
    attn.mul_(q_frame.shape[-1] ** -0.5)
    attn.sub_(attn.amax(dim=-1, keepdim=True)).exp_()
    attn.div_(attn.sum(dim=-1, keepdim=True))
    return attn


@functools.lru_cache(maxsize=8)
def _sketch(n: int, columns: int, device: torch.device) -> torch.Tensor:
    """Drawn on the CPU from the fixed seed, then moved: the same numbers on every device."""
    gen = torch.Generator(device="cpu").manual_seed(SKETCH_SEED)
    return torch.randn(n, columns, generator=gen, dtype=torch.float32, device="cpu").to(device)


def orthonormal_columns(y: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis of the columns of [h, n, k] (float64 Cholesky-QR, twice).

    Same span as ``torch.linalg.qr(y).Q`` up to signs, but every step is a batched kernel on a GPU
    (cuSOLVER's batched QR loops over the batch).  A tiny relative jitter keeps rank-deficient
    blocks (constant maps) finite; their extra columns come out ~0 and add nothing downstream."""
    basis = y.double()
    for _ in range(2):                  # the second pass restores orthogonality to rounding
        gram = basis.transpose(1, 2) @ basis
        scale = gram.diagonal(dim1=1, dim2=2).mean(dim=1, keepdim=True).clamp_min(1e-300)
        jitter = torch.diag_embed((1e-12 * scale).expand(-1, gram.shape[-1]))
        lower = torch.linalg.cholesky(gram + jitter)
        basis = torch.linalg.solve_triangular(lower, basis.transpose(1, 2), upper=False).transpose(1, 2)
    return basis.to(y.dtype)


def subspace_components(
    attn: torch.Tensor,
    columns: int = SKETCH_COLUMNS,
    power_iterations: int = POWER_ITERATIONS,
    rank: int = RANK,
) -> torch.Tensor:
    """Rank-``rank`` ``U S`` of the column-centred maps [h, n, n] -> [h, n, rank], seeded.

    Sketches the right singular subspace of ``A_c`` (``A_c^T Omega``, then power iterations),
    then ``P = A_c V`` from the eigendecomposition of the small Gram matrix of ``A_c Q``.
    Costs ``2 + 2 * power_iterations`` thin products with ``A``; ``A`` is never centred in memory.
    """
    h, n, _ = attn.shape
    columns = max(rank, min(columns, n))
    omega = _sketch(n, columns, attn.device).to(attn.dtype).expand(h, n, columns)
    ones = torch.full((h, n, 1), 1.0 / n, dtype=attn.dtype, device=attn.device)
    # A^T [Omega, 1/n]: the last column is the column means m
    first = torch.bmm(torch.cat([omega, ones], dim=-1).transpose(1, 2), attn).transpose(1, 2)
    col_mean = first[..., -1:]                                     # [h, n, 1]

    def centred(x: torch.Tensor) -> torch.Tensor:                  # A_c x
        return torch.bmm(attn, x) - (col_mean.transpose(1, 2) @ x)

    def centred_t(y: torch.Tensor) -> torch.Tensor:                # A_c^T y
        return torch.bmm(y.transpose(1, 2), attn).transpose(1, 2) - col_mean * y.sum(dim=1, keepdim=True)

    right = first[..., :-1] - col_mean * omega.sum(dim=1, keepdim=True)
    krylov = [right]
    for _ in range(power_iterations):
        left = orthonormal_columns(centred(orthonormal_columns(right)))
        right = centred_t(left)
        krylov.append(right)
    # block Krylov basis: keeping every iterate costs no extra pass and converges much faster
    basis = orthonormal_columns(torch.cat(krylov, dim=-1))          # ~ top right singular subspace
    image = centred(basis)                                          # A_c Q  [h, n, k]
    gram = (image.transpose(1, 2) @ image).double()
    evals, evecs = torch.linalg.eigh(gram)                          # ascending
    top = evecs[..., -rank:].flip(-1).to(attn.dtype)                # descending order
    return image @ top                                               # = U S


def svd_components(attn: torch.Tensor, rank: int = RANK) -> torch.Tensor:
    """Exact rank-``rank`` ``U S`` by a full SVD of the centred maps (slow; for tests / checks)."""
    centred = attn - attn.mean(dim=1, keepdim=True)
    u, s, _ = torch.linalg.svd(centred.double(), full_matrices=False)
    return (u[..., :rank] * s[..., None, :rank]).to(attn.dtype)


def fix_signs(components: torch.Tensor) -> torch.Tensor:
    """Flip each column [.., n, r] so its largest-|.| entry (first on ties) is positive."""
    idx = components.abs().argmax(dim=-2, keepdim=True)
    sign = torch.sign(components.gather(-2, idx))
    sign[sign == 0] = 1.0
    return components * sign


def minmax_columns(components: torch.Tensor) -> torch.Tensor:
    """Scale each column [.., n, r] to [0, 1]; a constant column becomes zeros."""
    lo = components.amin(dim=-2, keepdim=True)
    span = components.amax(dim=-2, keepdim=True) - lo
    return torch.where(span > 0, (components - lo) / span.clamp_min(torch.finfo(components.dtype).tiny),
                       torch.zeros_like(components))


def grey_images(normalised: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[h, n, 3] min-maxed components -> grey [h, H, W] (ITU-R 601 luma weights)."""
    weights = torch.tensor(GREY_WEIGHTS, dtype=normalised.dtype, device=normalised.device)
    return (normalised @ weights).reshape(-1, height, width)


def sobel_magnitude(grey: torch.Tensor) -> torch.Tensor:
    """Sobel gradient magnitude of [h, H, W], the ``skimage.filters.sobel`` convention."""
    padded = torch.nn.functional.pad(grey[:, None], (1, 1, 1, 1), mode="replicate")
    smooth = torch.tensor([1.0, 2.0, 1.0], dtype=grey.dtype, device=grey.device) / 4
    deriv = torch.tensor([1.0, 0.0, -1.0], dtype=grey.dtype, device=grey.device)
    kernels = torch.stack([torch.outer(deriv, smooth), torch.outer(smooth, deriv)])[:, None]
    grads = torch.nn.functional.conv2d(padded, kernels)            # [h, 2, H, W]
    return torch.sqrt((grads ** 2).sum(dim=1) / 2)


def _band_index(size: int, bands: int, device: torch.device) -> torch.Tensor:
    """numpy.array_split bands: the first ``size % bands`` are one longer."""
    base, extra = divmod(size, bands)
    lengths = [base + 1] * extra + [base] * (bands - extra)
    return torch.tensor([b for b, length in enumerate(lengths) for _ in range(length)],
                        dtype=torch.long, device=device)


def block_sum_variance(grey: torch.Tensor, blocks: int = SCORE_BLOCKS) -> torch.Tensor:
    """Population variance of the sums of [h, H, W] over a ``blocks x blocks`` grid -> [h]."""
    h, height, width = grey.shape
    cell = (_band_index(height, blocks, grey.device)[:, None] * blocks
            + _band_index(width, blocks, grey.device)[None, :]).reshape(-1)
    sums = torch.zeros(h, blocks * blocks, dtype=grey.dtype, device=grey.device).index_add_(1, cell, grey.reshape(h, -1))
    return sums.var(dim=1, unbiased=False)


def score_heads(grey: torch.Tensor) -> torch.Tensor:
    """Head score = 1.0 std(g) + 1.0 var(8x8 block sums) + 0.1 mean Sobel magnitude -> [h]."""
    flat = grey.reshape(grey.shape[0], -1)
    return (STD_WEIGHT * flat.std(dim=1, unbiased=False)
            + BLOCK_VAR_WEIGHT * block_sum_variance(grey)
            + SOBEL_WEIGHT * sobel_magnitude(grey).reshape(grey.shape[0], -1).mean(dim=1))


def heads_per_chunk(tokens_per_frame: int, heads: int, memory_budget: int) -> int:
    """How many HW x HW float32 maps fit the budget (at least one, at most ``heads``)."""
    return int(max(1, min(heads, memory_budget // (4 * tokens_per_frame ** 2))))


def _frame_head_chunks(frames: Sequence[int], heads: int, per_chunk: int):
    """(frame, first head, last head + 1) pieces in frame-major order; a piece never spans frames,
    and consecutive whole frames are grouped when several fit one chunk."""
    pieces = [(f, h0, min(heads, h0 + per_chunk)) for f in frames for h0 in range(0, heads, per_chunk)]
    frames_per_chunk = max(1, per_chunk // heads)
    if frames_per_chunk == 1:
        return [[p] for p in pieces]
    return [pieces[i:i + frames_per_chunk] for i in range(0, len(pieces), frames_per_chunk)]


def read_self_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    heads: int,
    grid: TokenGrid,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    factorise: Optional[Factoriser] = None,
    frames: Optional[Sequence[int]] = None,
    *,
    progress: Optional[Progress] = None,
) -> SelfAttentionReading:
    """Score every head of every frame and keep the best one (paper's phase 1, self-attention).

    ``q``, ``k``: one cond row [1, L, heads*d] or [L, heads*d], RMS-normed and RoPE'd, token order
    frame-major.  ``factorise`` swaps the rank-3 factorisation (default: seeded subspace
    iteration); ``frames`` restricts the work to some frames (benchmarks), the others stay zero;
    ``progress(done, total)`` is called after each chunk (it may raise to stop the read).
    Results stay on the inputs' device; the scores of all heads are kept so the pick is one
    ``argmax`` at the end (first maximum: ties go to the lower head), never a sync per chunk.
    """
    q, k = _as_rows(q, "q"), _as_rows(k, "k")
    if q.shape != k.shape:
        raise NuminaInputError(f"self-attention q {tuple(q.shape)} and k {tuple(k.shape)} differ in shape")
    grid.check_tokens(q.shape[0])
    channels_per_head = _head_dim(q.shape[1], heads, "q")
    n = grid.tokens_per_frame
    _check_finite(q, "q", n)
    _check_finite(k, "k", n)
    factorise = factorise or subspace_components
    device = q.device
    per_chunk = heads_per_chunk(n, heads, memory_budget)
    frame_list = list(range(grid.frames)) if frames is None else [int(f) for f in frames]
    q_heads = q.reshape(grid.frames, n, heads, channels_per_head)
    k_heads = k.reshape(grid.frames, n, heads, channels_per_head)
    all_features = torch.zeros(grid.frames, heads, n, RANK, dtype=torch.float32, device=device)
    scores = torch.zeros(grid.frames, heads, dtype=torch.float32, device=device)
    chunks = _frame_head_chunks(frame_list, heads, per_chunk)
    for done, chunk in enumerate(chunks, 1):
        qf = torch.cat([q_heads[f, :, h0:h1].transpose(0, 1) for f, h0, h1 in chunk]).float()   # [c, n, d]
        kf = torch.cat([k_heads[f, :, h0:h1].transpose(0, 1) for f, h0, h1 in chunk]).float()
        attn = frame_attention(qf, kf)
        del qf, kf
        normalised = minmax_columns(fix_signs(factorise(attn)))
        del attn
        chunk_scores = score_heads(grey_images(normalised, grid.height, grid.width))
        start = 0
        for f, h0, h1 in chunk:
            scores[f, h0:h1] = chunk_scores[start:start + h1 - h0]
            all_features[f, h0:h1] = normalised[start:start + h1 - h0]
            start += h1 - h0
        if progress is not None:
            progress(done, len(chunks))
    chosen = scores.argmax(dim=1)
    features = all_features[torch.arange(grid.frames, device=device), chosen]
    if frames is not None:       # frames not read keep zero features and head 0
        unread = torch.ones(grid.frames, dtype=torch.bool, device=device)
        unread[frame_list] = False
        features[unread] = 0.0
    return SelfAttentionReading(grid=grid, heads=heads, features=features, chosen_heads=chosen,
                                head_scores=scores)


# ----------------------------------------------------------------------------- cross-attention

def _check_positions(noun_positions: Mapping[str, Sequence[int]], context: int) -> dict[str, torch.Tensor]:
    checked: dict[str, torch.Tensor] = {}
    for noun, positions in noun_positions.items():
        positions = tuple(int(p) for p in positions)
        if not positions:
            raise NuminaInputError(
                f"noun {noun!r} has no token positions; it was not found in the tokenised prompt")
        bad = [p for p in positions if p < 0 or p >= context]
        if bad:
            raise NuminaInputError(
                f"noun {noun!r}: token positions {bad} outside the context of length {context};"
                f" the positions come from a different tokenizer or prompt")
        checked[noun] = torch.tensor(positions, dtype=torch.long, device="cpu")   # moved by the caller
    return checked


def read_cross_attention(
    q: torch.Tensor,
    k_context: torch.Tensor,
    heads: int,
    grid: TokenGrid,
    noun_positions: Mapping[str, Sequence[int]],
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    *,
    progress: Optional[Progress] = None,
) -> dict[str, torch.Tensor]:
    """Per noun: softmax over all context positions (padding included), mean over heads and the
    noun's sub-tokens, per frame -> {noun: [F, H, W] float32}.  ``progress(done, total)`` is
    called after each chunk of rows (it may raise to stop the read)."""
    q, k_context = _as_rows(q, "q"), _as_rows(k_context, "k_context")
    grid.check_tokens(q.shape[0])
    _head_dim(q.shape[1], heads, "q")
    if k_context.shape[1] != q.shape[1]:
        raise NuminaInputError(
            f"cross-attention q has {q.shape[1]} channels but k_context {k_context.shape[1]}")
    context = k_context.shape[0]
    positions = {noun: cols.to(q.device) for noun, cols in _check_positions(noun_positions, context).items()}
    _check_finite(k_context, "k_context")
    _check_finite(q, "q", grid.tokens_per_frame)
    keys = _heads_first(k_context.float(), heads)
    scale = keys.shape[-1] ** -0.5
    rows_per_chunk = int(max(1, memory_budget // (2 * 4 * heads * context)))
    maps = {noun: torch.empty(grid.tokens, dtype=torch.float32, device=q.device) for noun in positions}
    starts = range(0, grid.tokens, rows_per_chunk)
    for done, r0 in enumerate(starts, 1):
        r1 = min(grid.tokens, r0 + rows_per_chunk)
        qs = _heads_first(q[r0:r1].float(), heads)
        probs = torch.softmax(torch.bmm(qs, keys.transpose(1, 2)).mul_(scale), dim=-1).mean(dim=0)
        for noun, cols in positions.items():
            maps[noun][r0:r1] = probs[:, cols].mean(dim=1)
        if progress is not None:
            progress(done, len(starts))
    return {noun: m.reshape(grid.frames, grid.height, grid.width) for noun, m in maps.items()}


def mean_maps(readings: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Per noun, the mean of its cross-attention maps read in several blocks at one step.

    Why: on the CountWorld model no single block's noun map predicts the final count as well as
    their mean, at every step tried (benchmarks/countworld_readout_study.py, tuning prompts: at
    step 12 of 25, blocks 0-3 alone 0.24-0.33 of noun-frames, the mean 0.38)."""
    if not readings:
        raise NuminaInputError("no cross-attention reading to average")
    return {noun: torch.stack([r[noun] for r in readings]).mean(dim=0) for noun in readings[0]}


# ----------------------------------------------------------------------------- the record

def assemble_capture(
    reading: SelfAttentionReading,
    noun_maps: Mapping[str, torch.Tensor],
    targets: Targets,
    noun_positions: Mapping[str, Sequence[int]],
    step_index: int = 0,
    total_steps: int = 0,
    block_index: int = 0,
    total_blocks: int = 0,
    model_family: str = "wan21",
    schedule: Sequence[float] = (),
    modifier_positions: Optional[Mapping[str, Sequence[int]]] = None,
    reference: Optional[ReferencePass] = None,
    meta: Optional[dict] = None,
    cross_blocks: Sequence[int] = (),
    memory_budget: int = 0,
) -> Capture:
    """Both halves -> one Capture on the CPU (the one place readings leave the model's device);
    nouns in the order of ``targets``."""
    nouns = []
    for target in targets.items:
        if target.noun not in noun_maps or target.noun not in noun_positions:
            raise NuminaInputError(
                f"no cross-attention map or token positions for the target noun {target.noun!r}")
        cross = noun_maps[target.noun]
        expected = (reading.grid.frames, reading.grid.height, reading.grid.width)
        if tuple(cross.shape) != expected:
            raise NuminaInputError(
                f"cross-attention map of {target.noun!r} is {tuple(cross.shape)}, expected {expected}")
        nouns.append(NounMaps(noun=target.noun, token_positions=tuple(int(p) for p in noun_positions[target.noun]),
                              cross_attention=cross.detach().to("cpu", torch.float32)))
    return Capture(grid=reading.grid, targets=targets, nouns=tuple(nouns),
                   self_features=reading.features.detach().to("cpu", torch.float32),
                   chosen_heads=reading.chosen_heads.detach().to("cpu", torch.long),
                   head_scores=reading.head_scores.detach().to("cpu", torch.float32), step_index=step_index, total_steps=total_steps,
                   block_index=block_index, total_blocks=total_blocks, model_family=model_family,
                   schedule=tuple(float(x) for x in schedule),
                   modifier_positions=tuple((noun, tuple(int(p) for p in positions))
                                            for noun, positions in (modifier_positions or {}).items()),
                   reference=reference, meta=dict(meta or {}), cross_blocks=tuple(int(b) for b in cross_blocks),
                   memory_budget=int(memory_budget))

