"""What a CountWorld video looks like beyond its counts: object fidelity, clean background,
alignment and temporal consistency, measured against the world's own geometry.

The counter (countworld/counter.py) counts any 8-connected patch of a noun's code of MIN_AREA latent
pixels or more, whatever its shape.  Here every counted instance is also compared with the world's
objects: the best-fitting object the world could draw for that noun (its shape at the world's sizes,
centred near the instance) and their IoU.  An instance with IoU >= WELL_FORMED_IOU is well formed;
the published metric recomputed counting only those says how much of a count is real objects.

All on the normalised latent [16, T, H, W] (`counter.to_model_space` of a KSampler output).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np
import torch
from skimage.measure import label, regionprops

from countworld import counter, world

WELL_FORMED_IOU = 0.5
TRACK_IOU = 0.2          # consecutive frames: one object moves at most 1.5 latent pixels (about a quarter of its width)
# a background pixel is clean when its nearest code is the background and it is closer to it than a
# quarter of the way to the nearest object code (an anti-aliased rim of under 25 % coverage)
CLEAN_FRACTION = 0.25
_SIZES = world._BASE_SIZE * np.linspace(0.9, 1.1, 5)      # the sizes the world draws
_OFFSETS = np.linspace(-0.75, 0.75, 7)                     # sub-pixel centre search around the centroid
_WINDOW = 8                                                # half-width of the window a fit looks at


@dataclass(frozen=True)
class Instance:
    frame: int
    noun: str
    mask: np.ndarray            # [H, W] bool: the counted component
    in_colour: bool             # most of its pixels have the asked colour's code (unasked nouns: False)
    fit_iou: float              # IoU with the best-fitting world object of its noun

    @property
    def well_formed(self) -> bool:
        return self.fit_iou >= WELL_FORMED_IOU


def _latent(latent: Union[np.ndarray, torch.Tensor]) -> np.ndarray:
    return latent.detach().float().cpu().numpy() if isinstance(latent, torch.Tensor) else np.asarray(latent, np.float32)


def best_fit_iou(noun: str, mask: np.ndarray) -> float:
    """IoU of `mask` with the best object the world draws for `noun` (its sizes; centre searched
    around the mask's centroid): 1.0 for the world's own objects, low for blobs and smears."""
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean() + 0.5, xs.mean() + 0.5                  # pixel centres sit at i + 0.5
    y0, x0 = max(0, int(cy) - _WINDOW), max(0, int(cx) - _WINDOW)
    y1, x1 = min(mask.shape[0], int(cy) + _WINDOW + 1), min(mask.shape[1], int(cx) + _WINDOW + 1)
    window = mask[y0:y1, x0:x1]
    outside = int(mask.sum()) - int(window.sum())              # a smear longer than the window counts against it
    best = 0.0
    for size in _SIZES:
        for dy in _OFFSETS:
            for dx in _OFFSETS:
                core = world._amplitude(noun, (cy + dy - y0, cx + dx - x0), float(size), y1 - y0, x1 - x0) >= 0.5
                union = int((core | window).sum()) + outside
                if union:
                    best = max(best, int((core & window).sum()) / union)
    return best


def instances(codes: np.ndarray, colours: dict[str, str], min_area: int = counter.MIN_AREA) -> list[Instance]:
    """Every instance the counter counts, of every noun, in every frame, from the latent's code map
    (`counter.code_map`); `colours` {noun: colour} of the asked nouns."""
    prototypes_nouns = counter._NOUN_OF_PROTOTYPE[codes]
    found = []
    for t in range(codes.shape[0]):
        for i, noun in enumerate(world.NOUNS):
            labels = label(prototypes_nouns[t] == i, connectivity=2)
            for region in regionprops(labels):
                if region.area < min_area:
                    continue
                mask = labels == region.label
                colour_code = counter._LABELS.index((colours[noun], noun)) if noun in colours else -1
                in_colour = noun in colours and (codes[t][mask] == colour_code).mean() > 0.5
                found.append(Instance(t, noun, mask, bool(in_colour), best_fit_iou(noun, mask)))
    return found


def clean_background(latent: Union[np.ndarray, torch.Tensor], codes: np.ndarray, objects: Sequence[Instance]) -> float:
    """Share of background pixels (one pixel or more from every counted instance) that decode to
    the background code (`codes`: the latent's code map) and lie near it."""
    z = _latent(latent)
    bg = world.CODEBOOK.background.astype(np.float32)
    prototypes = counter._PROTOTYPES.astype(np.float32)
    reach = np.sqrt(((prototypes[1:] - bg) ** 2).sum(-1)).min()
    clean, total = 0, 0
    for t in range(z.shape[1]):
        near = np.zeros(z.shape[2:], dtype=bool)
        for obj in objects:
            if obj.frame == t:
                near |= world._dilate8(obj.mask)
        background = ~near
        distance = np.sqrt(((z[:, t] - bg[:, None, None]) ** 2).sum(0))
        ok = (codes[t] == 0) & (distance < CLEAN_FRACTION * reach)
        clean += int((ok & background).sum())
        total += int(background.sum())
    return clean / total if total else 1.0


def match_frames(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> list[tuple[int, int]]:
    """Masks of one frame (`a`) matched one to one with the next frame's (`b`): greedy on IoU,
    pairs with IoU >= TRACK_IOU, as (index in a, index in b)."""
    pairs = sorted(((int((x & y).sum()) / int((x | y).sum()), i, j) for i, x in enumerate(a) for j, y in enumerate(b)),
                   reverse=True)
    used_a, used_b, matched = set(), set(), []
    for iou, i, j in pairs:
        if iou < TRACK_IOU:
            break
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            matched.append((i, j))
    return matched


def track_continuity(objects: Sequence[Instance], noun: str, frames: int) -> float:
    """Per pair of consecutive frames, the share of the noun's instances matched one to one by IoU
    (`match_frames`); births and deaths are the unmatched.  1.0 when nothing appears, vanishes or
    splits; the mean over frame pairs."""
    per_frame = [[o.mask for o in objects if o.frame == t and o.noun == noun] for t in range(frames)]
    shares = [len(match_frames(a, b)) / max(len(a), len(b)) for a, b in zip(per_frame, per_frame[1:]) if a or b]
    return float(np.mean(shares)) if shares else 1.0


@dataclass(frozen=True)
class VideoQuality:
    fit_iou: float                  # mean IoU of the asked nouns' counted instances with their best world fit
    malformed: float                # share of those instances with IoU < WELL_FORMED_IOU
    well_formed_score: float        # the published metric, counting only well-formed instances
    clean_background: float
    unasked_objects: float          # per frame: objects of nouns the prompt does not ask for
    count_constancy: float          # per asked noun: share of frames at its modal count
    track_continuity: float         # per asked noun: instances matched frame to frame without births / deaths


def video_quality(latent: Union[np.ndarray, torch.Tensor], prompt: str) -> VideoQuality:
    targets = world.parse_prompt(prompt)
    colours = {t.noun: t.colour for t in targets}
    z = _latent(latent)
    frames = z.shape[1]
    codes = counter.code_map(z)          # the nearest code of every pixel, once for every measure
    found = instances(codes, colours)
    asked = [o for o in found if o.noun in colours]
    scores = []
    for t in range(frames):
        scores.append(np.mean([sum(1 for o in asked if o.frame == t and o.noun == n.noun and o.well_formed) == n.count
                               for n in targets]))
    constancy, continuity = [], []
    for n in targets:
        series = [sum(1 for o in asked if o.frame == t and o.noun == n.noun) for t in range(frames)]
        constancy.append(Counter(series).most_common(1)[0][1] / frames)
        continuity.append(track_continuity(found, n.noun, frames))
    return VideoQuality(
        fit_iou=float(np.mean([o.fit_iou for o in asked])) if asked else float("nan"),
        malformed=float(np.mean([not o.well_formed for o in asked])) if asked else 0.0,
        well_formed_score=float(np.mean(scores)),
        clean_background=clean_background(z, codes, found),
        unasked_objects=sum(1 for o in found if o.noun not in colours) / frames,
        count_constancy=float(np.mean(constancy)),
        track_continuity=float(np.mean(continuity)))


def summarise(videos: Sequence[VideoQuality], prompts: Sequence[str]) -> dict[str, float]:
    """Means over videos; the well-formed metric averaged per prompt first (as the published one)."""
    by_prompt: dict[str, list[float]] = {}
    for v, p in zip(videos, prompts):
        by_prompt.setdefault(p, []).append(v.well_formed_score)
    fits = [v.fit_iou for v in videos if v.fit_iou == v.fit_iou]
    return {"well_formed_accuracy": float(np.mean([np.mean(s) for s in by_prompt.values()])),
            "fit_iou": float(np.mean(fits)) if fits else float("nan"),
            "malformed": float(np.mean([v.malformed for v in videos])),
            "clean_background": float(np.mean([v.clean_background for v in videos])),
            "unasked_objects": float(np.mean([v.unasked_objects for v in videos])),
            "count_constancy": float(np.mean([v.count_constancy for v in videos])),
            "track_continuity": float(np.mean([v.track_continuity for v in videos]))}
