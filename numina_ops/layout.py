"""Layout and count: per noun and latent frame, which tokens belong to which instance.

Two readouts share one interface (`segment_frame`, `infer_layout`):

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
* ``"default"``: our readout (see `_segment_default`): instances are read from the cross-
  attention itself (where the noun is) rather than from self-attention clusters, split at saddles
  of the smoothed map, with weak fragments merged and a per-noun temporal prior.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from scipy import ndimage

from .records import (BACKGROUND, Capture, Layout, NounLayout, NuminaInputError, Targets)

MODES = ("default", "faithful")

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
    active = torch.ones(means.shape[0], dtype=torch.bool)
    held = torch.zeros(means.shape[0], dtype=torch.long)
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
        return torch.zeros(x.shape[0], dtype=torch.long), x.mean(0, keepdim=True)
    # Rank by (points held, centre coordinates), strongest first, like sorted(..., reverse=True).
    order_np = np.lexsort(tuple(means.numpy()[:, ::-1].T) + (held.numpy(),))[::-1].copy()
    order = torch.from_numpy(order_np)
    ranked = means[order]
    close = torch.cdist(ranked, ranked) <= bandwidth
    unique = torch.ones(ranked.shape[0], dtype=torch.bool)
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
    rows = torch.linspace(0, 1, height, dtype=torch.float64)
    cols = torch.linspace(0, 1, width, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), -1).reshape(-1, 2)
    return torch.cat([features.to(torch.float64), COORD_WEIGHT * grid], 1)


def _segment_faithful(features: torch.Tensor, cross: np.ndarray) -> np.ndarray:
    height, width = cross.shape
    points = _faithful_features(features, height, width)
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
