"""Layout and count: per noun and latent frame, which tokens belong to which instance.

The readouts share one interface (`segment_frame`, `infer_layout`):

* ``"faithful"``: the published readout.  5-D features (the chosen head's 3 rank-3 components
  plus 0.5 x (row, col) normalised by ``linspace(0, 1, H)`` / ``linspace(0, 1, W)``), mean shift
  with a flat kernel and bin seeding (bandwidth from the 0.2 quantile of k-nearest distances over
  at most 1000 samples, fallback 0.5), a focus mask (cross-attention >= 0.05 x frame max,
  denoised by DBSCAN eps 3, min_samples 5 in (row, col), noise dropped, clusters merged), and a
  mean-shift cluster counts as an instance when >= 20 % of it lies in the focus mask.  As in the
  published code the whole cluster becomes the instance mask.  Written in torch / numpy / scipy
  (no scikit-learn at run time); tests show agreement with scikit-learn's MeanShift(bin_seeding=
  True) and DBSCAN.  Unlike the published code the bandwidth sample is seeded (seed 0), so the
  result is reproducible.
* ``"default"``: this pack's readout (`_segment_default_video`): objects are the tokens whose
  self-attention features stand out from a background plane fitted over (row, col)
  (`_objectness`); the noun's objects are those its smoothed cross-attention reaches; touching
  ones are split by a watershed on a landscape of objectness, cross-attention and depth, and
  regions are merged back along their saddles up to a ratio; a per-noun temporal prior (the
  median count over frames) only ever merges fragments, never splits.  Counts far better than
  the faithful readout on synthetic scenes; on a model whose self-attention does not separate
  objects it finds nothing (see the preview).
* ``"cross"``: the noun's cross-attention alone (see `_segment_cross`), for models whose
  self-attention does not tell objects from background at the reference step (the default
  readout then finds nothing; CountWorld's tiny model is one: benchmarks/countworld_benchmark.py).
* ``"auto"``: a readout that checks itself, per noun: the default readout where self-attention
  finds the noun's objects in every frame where its cross-attention finds some, else the cross
  readout (`choose_readout`).  The choice and why are in the noun's notes.
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterator, Optional

import numpy as np
import torch
from scipy import ndimage

from .capture import Progress
from .records import Capture, Layout, NounLayout, NuminaInputError, Targets

MODES = ("auto", "default", "faithful", "cross")

# Published defaults of the faithful readout.
MS_QUANTILE = 0.2
MS_MAX_SAMPLES = 1000
MS_FALLBACK_BANDWIDTH = 0.5
MS_MAX_ITER = 300
COORD_WEIGHT = 0.5
FOCUS_PEAK_RATIO = 0.05
DBSCAN_EPS = 3.0
DBSCAN_MIN_SAMPLES = 5
OVERLAP_TAU = 0.2
MAX_DETECTED = 99   # labels 1..99 are detected instances; 100+ are reserved for added ones


# ----------------------------------------------------------------------------------------------
# Faithful readout: its pieces
# ----------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch single-threaded: on matrices of a few thousand rows intra-op threads cost more
    than they save, badly so on a busy machine (measured on 2 shared cores: 8.6 s vs 0.16 s for
    one 30x52 frame).  The previous setting is restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def estimate_bandwidth(points: torch.Tensor, quantile: float = MS_QUANTILE,
                       max_samples: int = MS_MAX_SAMPLES, seed: int = 0) -> float:
    """Mean distance to the k-th nearest neighbour (self included), k = quantile x samples.

    Same estimate as scikit-learn's ``estimate_bandwidth`` (with ``random_state=seed``: the
    sample is a numpy ``RandomState(seed)`` permutation prefix when the input is larger).
    """
    x = points.to(torch.float64)
    n = x.shape[0]
    if n == 0:
        return 0.0
    if max_samples is not None and n > max_samples:
        order = np.random.RandomState(seed).permutation(n)[:max_samples]
        x = x[torch.from_numpy(order)]
    k = max(int(x.shape[0] * quantile), 1)
    dist = torch.cdist(x, x)
    kth = torch.topk(dist, k, dim=1, largest=False).values[:, -1]
    return float(kth.mean())


def _bin_seeds(points: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """Occupied bins of a grid of size `bandwidth` (scikit-learn's bin seeding, min_bin_freq 1)."""
    binned = torch.round(points / bandwidth)
    seeds = torch.unique(binned, dim=0) * bandwidth
    if seeds.shape[0] == points.shape[0]:
        return points.clone()   # as scikit-learn: every point its own bin -> seed with the points
    return seeds


def mean_shift(points: torch.Tensor, bandwidth: float, bin_seeding: bool = True,
               max_iter: int = MS_MAX_ITER) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat-kernel mean shift, all seeds at once; returns (labels [N], centres [C, D]).

    Follows scikit-learn's MeanShift (cluster_all=True): a seed moves to the mean of the points
    within `bandwidth` until it moves less than 1e-3 x bandwidth; converged centres are ranked by
    how many points they held (ties: larger coordinates first), near-duplicates within
    `bandwidth` of a stronger centre are dropped, every point takes its nearest centre.
    """
    x = points.to(torch.float64)
    seeds = _bin_seeds(x, bandwidth) if bin_seeding else x.clone()
    stop = 1e-3 * bandwidth
    means = seeds.clone()
    active = torch.ones(means.shape[0], dtype=torch.bool, device=x.device)
    held = torch.zeros(means.shape[0], dtype=torch.long, device=x.device)
    for _ in range(max_iter):
        idx = active.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        within = torch.cdist(means[idx], x) <= bandwidth
        n_within = within.sum(1)
        empty = n_within == 0
        new = (within.to(x.dtype) @ x) / n_within.clamp(min=1).unsqueeze(1).to(x.dtype)
        moved = torch.linalg.vector_norm(new - means[idx], dim=1)
        new = torch.where(empty.unsqueeze(1), means[idx], new)
        means[idx] = new
        held[idx] = n_within
        done = empty | (moved <= stop)
        active[idx[done]] = False
    keep = held > 0
    means, held = means[keep], held[keep]
    if means.shape[0] == 0:
        return torch.zeros(x.shape[0], dtype=torch.long, device=x.device), x.mean(0, keepdim=True)
    # Rank by (points held, centre coordinates), strongest first, like sorted(..., reverse=True).
    order_np = np.lexsort(tuple(means.numpy()[:, ::-1].T) + (held.numpy(),))[::-1].copy()
    order = torch.from_numpy(order_np)
    ranked = means[order]
    close = torch.cdist(ranked, ranked) <= bandwidth
    unique = torch.ones(ranked.shape[0], dtype=torch.bool, device=ranked.device)
    close_np, unique_np = close.numpy(), unique.numpy()
    for i in range(ranked.shape[0]):
        if unique_np[i]:
            unique_np[close_np[i]] = False
            unique_np[i] = True
    centres = ranked[torch.from_numpy(unique_np)]
    labels = torch.cdist(x, centres).argmin(1)
    return labels, centres


def _disk(radius: float) -> np.ndarray:
    r = int(math.floor(radius))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (yy * yy + xx * xx) <= radius * radius


def dbscan_keep(mask: np.ndarray, eps: float = DBSCAN_EPS, min_samples: int = DBSCAN_MIN_SAMPLES) -> np.ndarray:
    """Tokens of `mask` that DBSCAN in (row, col) would put in some cluster (noise dropped).

    A core token has >= min_samples mask tokens (itself included) within distance eps; a token
    survives when it is a core token or lies within eps of one.  The union of all clusters is all
    the published readout uses, so cluster identities are not needed.
    """
    if not mask.any():
        return np.zeros_like(mask, dtype=bool)
    disk = _disk(eps)
    neighbours = ndimage.convolve(mask.astype(np.int32), disk.astype(np.int32), mode="constant")
    core = mask & (neighbours >= min_samples)
    reached = ndimage.binary_dilation(core, structure=disk)
    return mask & reached


def focus_mask(cross: np.ndarray) -> np.ndarray:
    """Published focus mask: >= 0.05 x frame max, DBSCAN-denoised."""
    peak = float(cross.max()) if cross.size else 0.0
    if not peak > 0:
        return np.zeros(cross.shape, dtype=bool)
    return dbscan_keep(cross >= FOCUS_PEAK_RATIO * peak)


def _faithful_features(features: torch.Tensor, height: int, width: int) -> torch.Tensor:
    rows = torch.linspace(0, 1, height, dtype=torch.float64, device=features.device)
    cols = torch.linspace(0, 1, width, dtype=torch.float64, device=features.device)
    grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), -1).reshape(-1, 2)
    return torch.cat([features.to(torch.float64), COORD_WEIGHT * grid], 1)


def _segment_faithful(features: torch.Tensor, cross: np.ndarray) -> np.ndarray:
    height, width = cross.shape
    points = _faithful_features(features, height, width)
    with _one_thread():
        bandwidth = estimate_bandwidth(points)
        if not bandwidth > 0:
            bandwidth = MS_FALLBACK_BANDWIDTH
        clusters, _ = mean_shift(points, bandwidth, bin_seeding=True)
    clusters = clusters.numpy().reshape(height, width)
    focus = focus_mask(cross)
    n = int(clusters.max()) + 1
    size = np.bincount(clusters.ravel(), minlength=n)
    in_focus = np.bincount(clusters.ravel(), weights=focus.ravel().astype(np.float64), minlength=n)
    is_instance = (size > 0) & (in_focus >= OVERLAP_TAU * np.maximum(size, 1))
    ids = np.zeros(n, dtype=np.int32)
    ids[is_instance] = np.arange(1, int(is_instance.sum()) + 1, dtype=np.int32)
    return ids[clusters]


# ----------------------------------------------------------------------------------------------
# Default readout
# ----------------------------------------------------------------------------------------------
# Where the noun's objects are comes from both maps: self-attention features tell objects from
# background (tokens of an object attend alike and differently from the background) and where
# one object meets another; cross-attention tells which objects are this noun's.  Touching
# instances are split by watershed on a landscape that peaks inside each object; regions are
# merged back only where no dip separates them, and per noun the count most frames agree on is
# used to merge leftover fragments in the frames that read more.

DEFAULT_CROSS_SIGMA = 0.5      # spatial smoothing of the cross map (tokens)
DEFAULT_FEATURE_SIGMA = 0.7    # smoothing of the feature objectness (tokens)
OBJECTNESS_Z = 4.0             # objectness threshold, in units of background feature noise
NOUN_MIN_CONTRAST = 0.12       # a feature object belongs to the noun if its cross contrast reaches this
MIN_AREA = 4                   # smaller regions are dropped (tokens)
MERGE_RATIO = 0.97             # merge two regions when their saddle >= this x the lower peak
PRIOR_BAND = (0.6, 1.0)        # merge ratios the temporal prior may use to reach the noun's count


def _smooth_cross(cross: np.ndarray, temporal: bool) -> np.ndarray:
    """[F, H, W] -> smoothed; a [1/4, 1/2, 1/4] filter over frames when `temporal`."""
    x = cross.astype(np.float64)
    if temporal and x.shape[0] > 1:
        pad = np.concatenate([x[:1], x, x[-1:]], 0)
        x = 0.25 * pad[:-2] + 0.5 * pad[1:-1] + 0.25 * pad[2:]
    return np.stack([ndimage.gaussian_filter(f, DEFAULT_CROSS_SIGMA, mode="nearest") for f in x])


def _contrast(smoothed: np.ndarray) -> np.ndarray:
    """Cross map relative to its background level: 0 at the median, 1 at the frame maximum."""
    base, top = float(np.median(smoothed)), float(smoothed.max())
    if not top - base > 0:
        return np.zeros_like(smoothed)
    return (smoothed - base) / (top - base)


def _objectness(features: np.ndarray, height: int, width: int) -> np.ndarray:
    """How far each token's features are from the background, in background-noise units.

    The background is fitted as a plane over (row, col) per component (the low-frequency,
    coordinate-correlated part of the features), refitted on its own inliers three times.
    """
    x = features.reshape(height * width, 3).astype(np.float64)
    rows, cols = np.mgrid[0:height, 0:width]
    design = np.stack([np.ones(height * width), rows.ravel() / height, cols.ravel() / width], 1)
    inlier = np.ones(height * width, dtype=bool)
    dist = np.zeros(height * width)
    centre, scale = 0.0, 1.0
    for _ in range(3):
        if inlier.sum() < 4:
            break
        coef = np.linalg.lstsq(design[inlier], x[inlier], rcond=None)[0]
        dist = np.linalg.norm(x - design @ coef, axis=1)
        centre = float(np.median(dist[inlier]))
        scale = 1.4826 * float(np.median(np.abs(dist[inlier] - centre))) + 1e-9
        inlier = dist < centre + 3 * scale
    return ((dist - centre) / scale).reshape(height, width)


def _pair_saddles(regions: np.ndarray, landscape: np.ndarray) -> dict[tuple[int, int], float]:
    """For each pair of 4-adjacent regions, the highest pass between them."""
    keys, values = [], []
    for a, b, va, vb in ((regions[:, :-1], regions[:, 1:], landscape[:, :-1], landscape[:, 1:]),
                         (regions[:-1], regions[1:], landscape[:-1], landscape[1:])):
        edge = (a != b) & (a > 0) & (b > 0)
        keys.append(np.stack([np.minimum(a[edge], b[edge]), np.maximum(a[edge], b[edge])], 1))
        values.append(np.minimum(va[edge], vb[edge]))
    pairs, vals = np.concatenate(keys), np.concatenate(values)
    if len(pairs) == 0:
        return {}
    uniq, inverse = np.unique(pairs, axis=0, return_inverse=True)
    best = np.full(len(uniq), -np.inf)
    np.maximum.at(best, inverse.ravel(), vals)
    return {(int(p), int(q)): float(v) for (p, q), v in zip(uniq, best)}


def _merge_sequence(peaks: dict[int, float], saddles: dict[tuple[int, int], float]) -> list[tuple[float, int, int]]:
    """Greedy merges, least separated pair first: [(saddle / lower peak, kept, absorbed)]."""
    peaks, saddles, sequence = dict(peaks), dict(saddles), []
    while saddles:
        (a, b), s = max(saddles.items(), key=lambda kv: kv[1] / max(min(peaks[kv[0][0]], peaks[kv[0][1]]), 1e-12))
        sequence.append((s / max(min(peaks[a], peaks[b]), 1e-12), a, b))
        peaks[a] = max(peaks[a], peaks.pop(b))
        merged: dict[tuple[int, int], float] = {}
        for (x, y), v in saddles.items():
            x, y = (a if x == b else x), (a if y == b else y)
            if x != y:
                key = (min(x, y), max(x, y))
                merged[key] = max(merged.get(key, -np.inf), v)
        saddles = merged
    return sequence


def _labels_at(regions: np.ndarray, sequence: list[tuple[float, int, int]], ratio: float) -> np.ndarray:
    """Apply the merges at or above `ratio`; relabel 1..n, dropping regions under MIN_AREA."""
    parent = np.arange(int(regions.max()) + 1)

    def root(i: int) -> int:
        while parent[i] != i:
            i = int(parent[i])
        return i

    for r, a, b in sequence:
        if r >= ratio:
            parent[root(b)] = root(a)
    roots = np.array([root(i) for i in range(len(parent))])
    merged = roots[regions]
    merged[regions == 0] = 0
    return _relabel_large(merged, len(parent), MIN_AREA)


def _relabel_large(regions: np.ndarray, n_labels: int, min_area: int) -> np.ndarray:
    """Regions labelled 1..n_labels-1 -> 1..k in label order, those under min_area dropped (0)."""
    area = np.bincount(regions.ravel(), minlength=n_labels)
    keep = area >= min_area
    keep[0] = False
    ids = np.zeros(len(area), dtype=np.int32)
    kept = np.flatnonzero(keep)[:MAX_DETECTED]
    ids[kept] = np.arange(1, len(kept) + 1, dtype=np.int32)
    return ids[regions]


def _oversegment(contrast: np.ndarray, features: np.ndarray) -> tuple[np.ndarray, list[tuple[float, int, int]]]:
    """Regions of the noun's objects (one per landscape peak) and their merge sequence."""
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    height, width = contrast.shape
    objectness = _objectness(features, height, width)
    objects = ndimage.binary_fill_holes(ndimage.binary_opening(objectness > OBJECTNESS_Z))
    parts, n = ndimage.label(objects)
    if n == 0:
        return np.zeros((height, width), dtype=np.int64), []
    part_peak = ndimage.maximum(contrast, parts, index=np.arange(1, n + 1))
    is_noun = np.concatenate([[False], np.asarray(part_peak) >= NOUN_MIN_CONTRAST])
    mask = is_noun[parts]
    if not mask.any():
        return np.zeros((height, width), dtype=np.int64), []
    smooth_obj = ndimage.gaussian_filter(np.clip(objectness, 0, None), DEFAULT_FEATURE_SIGMA)
    depth = ndimage.distance_transform_edt(mask)
    landscape = (smooth_obj / max(np.percentile(smooth_obj[mask], 95), 1e-9)
                 + contrast / max(float(contrast[mask].max()), 1e-9)
                 + depth / max(np.percentile(depth[mask], 95), 1e-9)) * mask
    peaks = peak_local_max(landscape, min_distance=1, labels=ndimage.label(mask)[0], exclude_border=False)
    markers = np.zeros((height, width), dtype=np.int64)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    regions = watershed(-landscape, markers, mask=mask)
    n = int(regions.max())
    if n == 0:
        return regions, []
    peak_value = ndimage.maximum(landscape, regions, index=np.arange(1, n + 1))
    sequence = _merge_sequence({i + 1: float(v) for i, v in enumerate(peak_value)},
                               _pair_saddles(regions, landscape))
    return regions, sequence


def _segment_default_video(features: np.ndarray, cross: np.ndarray, temporal: bool = True,
                           frame_done: Optional[Callable[[], None]] = None) -> np.ndarray:
    """[F, HW, 3], [F, H, W] -> labels [F, H, W] with the per-noun temporal prior."""
    frames, height, width = cross.shape
    smoothed = _smooth_cross(cross, temporal)
    per_frame = []
    for f in range(frames):
        per_frame.append(_oversegment(_contrast(smoothed[f]), features[f]))
        if frame_done is not None:
            frame_done()
    labels = [_labels_at(r, s, MERGE_RATIO) for r, s in per_frame]
    if temporal and frames > 1:
        prior = int(round(float(np.median([int(l.max()) for l in labels]))))
        for f, (regions, sequence) in enumerate(per_frame):
            if int(labels[f].max()) <= prior:
                continue        # the prior only merges fragments; it never invents a split
            ratios = sorted({r for r, _, _ in sequence if PRIOR_BAND[0] <= r <= PRIOR_BAND[1]},
                            key=lambda r: abs(r - MERGE_RATIO))
            for ratio in ratios:
                candidate = _labels_at(regions, sequence, ratio)
                if int(candidate.max()) == prior:
                    labels[f] = candidate
                    break
    return np.stack(labels).astype(np.int32) if labels else np.zeros((0, height, width), np.int32)


# ----------------------------------------------------------------------------------------------
# Cross-attention readout
# ----------------------------------------------------------------------------------------------
# Where the noun is, straight from its cross-attention: smoothed, a token is the noun's when it is
# above CROSS_LEVEL of the way from the frame's median (background) to its peak; connected
# regions (4-connected) of at least CROSS_MIN_AREA tokens are instances.  Settings chosen on
# CountWorld's tuning prompts, never on its held-out ones: its count equals the plain run's final
# count in 0.40 of noun-frames (step 12 of 25, last block), where the faithful readout reached at
# most 0.34 and the default 0.10 at the steps and blocks tried.  On the mean map over all blocks
# (benchmarks/countworld_readout_study.py, 24 tuning prompts x 4 seeds, step 12 of 25): sigma 0.5
# 0.44, 0.7 0.38, 1.0 0.37 at level 0.35; levels 0.25 / 0.30 / 0.45 / 0.55 reached 0.39 / 0.43 /
# 0.42 / 0.37 at sigma 0.5.

CROSS_SIGMA = 0.5      # 0.7 on one block's map; 0.5 on the mean over blocks, now the capture's default
CROSS_LEVEL = 0.35
CROSS_MIN_AREA = 3


def _segment_cross(cross: np.ndarray) -> np.ndarray:
    """[H, W] -> labels [H, W]: connected regions of the smoothed map above CROSS_LEVEL."""
    smoothed = ndimage.gaussian_filter(cross.astype(np.float64), CROSS_SIGMA, mode="nearest")
    contrast = _contrast(smoothed)
    regions, n = ndimage.label(contrast > CROSS_LEVEL)
    return _relabel_large(regions, n + 1, CROSS_MIN_AREA)


# ----------------------------------------------------------------------------------------------
# Auto readout: the default readout when self-attention separates the noun's objects, else cross
# ----------------------------------------------------------------------------------------------

def choose_readout(default_labels: np.ndarray, cross_labels: np.ndarray) -> tuple[str, str]:
    """("default" or "cross", why) for one noun's [F, H, W] labels from both readouts.

    Self-attention is trusted when it finds objects in every frame where the noun's cross-attention
    finds some: then its shapes and splits are used.  A model whose self-attention does not tell
    objects from background at the reference step finds none there, and its layout comes from
    cross-attention instead of being empty."""
    default_found = np.array([bool((f > 0).any()) for f in default_labels])
    cross_found = np.array([bool((f > 0).any()) for f in cross_labels])
    missed = int((cross_found & ~default_found).sum())
    if not cross_found.any() and not default_found.any():
        return "cross", "neither readout found the noun"
    if missed == 0:
        return "default", "self-attention found objects in every frame where cross-attention sees the noun"
    return "cross", (f"self-attention found no objects in {missed} of {int(cross_found.sum())} frame(s) where "
                     "cross-attention sees the noun")


# ----------------------------------------------------------------------------------------------
# Public interface
# ----------------------------------------------------------------------------------------------

def _clean_map(values: np.ndarray, what: str, notes: list[str]) -> np.ndarray:
    bad = ~np.isfinite(values)
    if bad.any():
        notes.append(f"{what}: {int(bad.sum())} NaN/inf value(s) treated as 0")
        values = np.where(bad, 0.0, values)
    return values


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise NuminaInputError(f"layout mode must be one of {MODES}, got {mode!r}")


def segment_frame(features: torch.Tensor, cross: torch.Tensor, mode: str = "default") -> torch.Tensor:
    """One frame: features [H*W, 3], cross-attention [H, W] -> instance labels [H, W] int32.

    0 is background, 1..n the instances found.  NaN / inf values are read as 0.  Without
    neighbouring frames the default readout has no temporal prior.
    """
    _check_mode(mode)
    if cross.dim() != 2:
        raise NuminaInputError(f"cross-attention of one frame must be [H, W], got shape {tuple(cross.shape)}")
    height, width = cross.shape
    if features.dim() != 2 or features.shape[1] != 3 or features.shape[0] != height * width:
        raise NuminaInputError(
            f"self-attention features must be [H*W, 3] = [{height * width}, 3] for a {height}x{width}"
            f" cross map, got {tuple(features.shape)}; the maps come from different grids")
    notes: list[str] = []
    c = _clean_map(cross.detach().float().cpu().numpy(), "cross-attention", notes)
    x = _clean_map(features.detach().float().cpu().numpy(), "self-attention features", notes)
    if mode == "faithful":
        return torch.from_numpy(_segment_faithful(torch.from_numpy(x), c))
    if mode == "cross":
        return torch.from_numpy(_segment_cross(c))
    by_default = _segment_default_video(x[None], c[None], temporal=False)[0]
    if mode == "auto" and choose_readout(by_default[None], _segment_cross(c)[None])[0] == "cross":
        return torch.from_numpy(_segment_cross(c))
    return torch.from_numpy(by_default)


def _check_capture(capture: Capture) -> None:
    grid = capture.grid
    f, hw = grid.frames, grid.tokens_per_frame
    if tuple(capture.self_features.shape) != (f, hw, 3):
        raise NuminaInputError(
            f"capture self_features has shape {tuple(capture.self_features.shape)}, expected"
            f" [{f}, {hw}, 3] for the grid {f}x{grid.height}x{grid.width}; the capture is inconsistent")
    for noun in capture.nouns:
        if tuple(noun.cross_attention.shape) != (f, grid.height, grid.width):
            raise NuminaInputError(
                f"cross-attention of {noun.noun!r} has shape {tuple(noun.cross_attention.shape)}, expected"
                f" [{f}, {grid.height}, {grid.width}] (the capture's grid)")


def _per_frame(segment: Callable[[int], np.ndarray], frames: int, frame_done: Callable[[], None]) -> np.ndarray:
    out = []
    for f in range(frames):
        out.append(segment(f))
        frame_done()
    return np.stack(out).astype(np.int32)


def infer_layout(capture: Capture, mode: str = "default", targets: Targets | None = None,
                 temporal: bool = True, *, progress: Optional[Progress] = None) -> Layout:
    """Instance labels and counts for every counted noun of the capture, per latent frame.

    `targets` (default: the capture's) give each noun's requested count; a noun of the capture
    that the targets do not name keeps target -1 ("not counted") and a note.  `temporal` lets
    the default readout use neighbouring frames (smoothing and the per-noun count prior).
    `progress(done, total)` is called after each frame of each noun (it may raise to stop).
    """
    _check_mode(mode)
    _check_capture(capture)
    targets = capture.targets if targets is None else targets
    wanted = targets.as_dict()
    features_all = capture.self_features.detach().float().cpu().numpy()
    total, done = len(capture.nouns) * capture.grid.frames, 0

    def frame_done() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    layouts = []
    for noun in capture.nouns:
        notes: list[str] = []
        features = _clean_map(features_all, "self-attention features", notes)
        cross = _clean_map(noun.cross_attention.detach().float().cpu().numpy(), f"cross-attention of {noun.noun!r}", notes)
        if mode == "faithful":
            labels = _per_frame(lambda f: _segment_faithful(torch.from_numpy(features[f]), cross[f]),
                                cross.shape[0], frame_done)
        elif mode == "cross":
            labels = _per_frame(lambda f: _segment_cross(cross[f]), cross.shape[0], frame_done)
        elif mode == "auto":
            by_default = _segment_default_video(features, cross, temporal=temporal, frame_done=frame_done)
            by_cross = np.stack([_segment_cross(c) for c in cross]).astype(np.int32)
            chosen, why = choose_readout(by_default, by_cross)
            labels = by_default if chosen == "default" else by_cross
            notes.append(f"auto readout: {chosen} ({why})")
        else:
            labels = _segment_default_video(features, cross, temporal=temporal, frame_done=frame_done)
        if noun.noun not in wanted:
            notes.append(f"{noun.noun!r} has no count in the targets: laid out but not counted (target -1)")
        layouts.append(NounLayout(
            noun=noun.noun,
            target=int(wanted.get(noun.noun, -1)),
            token_positions=tuple(noun.token_positions),
            labels=torch.from_numpy(labels.astype(np.int32)),
            counts=tuple(int(len(np.unique(l[l > 0]))) for l in labels),
            notes=tuple(notes),
        ))
    missing = [n for n in wanted if all(m.noun != n for m in capture.nouns)]
    meta = {"mode": mode}
    if missing:
        meta["missing_nouns"] = tuple(missing)
    return Layout(grid=capture.grid, targets=targets, nouns=tuple(layouts), refined=False,
                  step_index=capture.step_index, total_steps=capture.total_steps,
                  model_family=capture.model_family, schedule=capture.schedule,
                  modifier_positions=capture.modifier_positions,
                  settings=capture.reference.settings if capture.reference else None, meta=meta)
