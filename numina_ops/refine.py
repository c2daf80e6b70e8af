"""Refinement ("conservative"): edit each frame's layout until it holds the requested count.

Per noun and latent frame, in frame order:

* too many instances: the smallest live instance (ties: the lower label) is marked removed (-1),
  again until the target is met;
* too few: one instance is added at a time, labelled 100, 101, ... by its rank among the frame's
  added instances, so the same added instance keeps its label from frame to frame.  Its template
  (published) is the bounding-box crop of the smallest live instance's mask (ties: the lower
  label; this pack first tries the noun's typical instance, below), or a disk of radius 5 when
  the frame has none (radius min(5, (min(H, W) - 1) // 4) so that a tiny grid still has room for
  more than one).  Candidate placements put the template's centre on a grid of step 2 with the
  template fully inside the frame; cost = squared distance to the centroid of the frame's live
  foreground + 8 x squared distance to the same added instance's centre in the latest earlier
  frame that had it, both in token units (as published).

What the published code lacks, and this one guarantees: an added instance covers background
tokens only (never a live, removed or earlier-added token) and no token of it is 8-adjacent
to a live instance, so one background token at least (diagonals included) separates it from
every other instance.  The published cost's overlap term is therefore always 0 here.  Where
there is room, a newly placed instance keeps two background tokens from every live instance
(ADDED_GAP): the model draws an added instance about half again as large as its tokens, and one
token of gap let about one added instance in five merge with a neighbour into a single blob on
CountWorld's tuning prompts (issue 21).  When the step-2 grid has no valid place, the step-1
grid is searched, then the next shape (the typical instance, the frame's smallest, the default
disk as a last resort), each first with the wider gap; when nothing fits, the frame keeps fewer
instances and the noun's notes say so ("frame 7: no room for 2 more 'apples'").

Nor does the published code place an added instance where the scene had an object a frame before
or after: an instance read in frame 0 but not in frame 1 is added back in frame 1 by the published
rule near the frame's centre, so the video's object vanishes there and a new one appears elsewhere
(the count right in both frames, the instance not followed: CountWorld's "instance tracks").  And
its placement cost pulls an added instance one token toward the centroid whenever that is more
than about 4.5 tokens away, on a grid of step 2, so the same added instance moves from frame to
frame: half of them shared no token with themselves a frame later on CountWorld's tuning prompts.
Here (TRACK_NEIGHBOURS; issue 21) the instances a neighbouring frame has and this frame lacks (no
token in common with this frame's live instances; the previous refined frame's, added ones
included, then the next frame's as read) are added first, each copied in its own place and shape
when every token of it is free, else its shape at the nearest free place (step 1), else the
template aimed at its centre.  An added instance copied from the previous frame keeps its label.

Nor does the published template keep to the noun's size: the smallest instance read may be a
fragment, and the model draws a copy of it as one (on CountWorld's tuning prompts 55 % of the
guided videos' added instances were well formed against 78 % of the read ones).  Here (TEMPLATE
"typical"; issue 21) an added instance copies the noun's instance of median area over the whole
video, which also replaces a carried instance smaller than it; the frame's smallest instance and
the disk still fill a frame too crowded for it.

Nor does the published code look at the prompt's other nouns: an added apple may land on a
detected pear, and the two biases then fight over the same tokens.  Here an added instance also
keeps clear of the other nouns' live instances (nouns in prompt order, each seeing the others'
latest layout); only when that leaves no room is the other nouns' space allowed, with a note.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np
import torch
from scipy import ndimage
from scipy.signal import correlate2d
from skimage.transform import resize

from .capture import Progress
from .records import FIRST_ADDED, REMOVED, Layout, NounLayout, Targets

# Whether an added instance aims at a neighbouring frame's instance this frame lacks (see above);
# False: the published placement.
TRACK_NEIGHBOURS = True
# How many background tokens an added instance keeps from every live instance where there is room
# (1 where there is not; see above).  1: the guarantee alone.
ADDED_GAP = 2
PLACEMENT_STEP = 2
CENTRE_WEIGHT = 1.0
TEMPORAL_WEIGHT = 8.0
DEFAULT_DISK_RADIUS = 5
_EIGHT = np.ones((3, 3), dtype=bool)


def default_disk(height: int, width: int) -> np.ndarray:
    """Template for a frame with no instance: a disk of radius 5, smaller on tiny grids."""
    radius = max(0, min(DEFAULT_DISK_RADIUS, (min(height, width) - 1) // 4))
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return (yy * yy + xx * xx) <= radius * radius


def live_ids(labels: np.ndarray) -> list[int]:
    return [int(v) for v in np.unique(labels[labels > 0])]


def crop(mask: np.ndarray) -> np.ndarray:
    """A non-empty mask's bounding-box crop (an instance's shape, wherever it sits)."""
    rows, cols = np.nonzero(mask)
    return mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1]


def smallest_live(labels: np.ndarray) -> int | None:
    """Label of the smallest live instance (ties: the lower label), None when there is none."""
    ids = live_ids(labels)
    if not ids:
        return None
    return min(ids, key=lambda i: (int((labels == i).sum()), i))


# Which live instance an added one copies: "typical" (the default: the noun's median-sized instance
# over every frame, which also replaces a carried instance smaller than it; see above), "smallest"
# (published: the frame's) or "median" (the frame's, by area; an experiment of issue 21).
TEMPLATE = "typical"
# Which instance by area is "typical": its quantile among the noun's instances over the video (0.5:
# the median, the lower middle).  A constant for experiments.
TYPICAL_QUANTILE = 0.5
# The typical instance grown to this many times its tokens (its shape kept) before it is copied, for
# readout regions smaller than the objects the model draws.  A constant for experiments (1.0: as
# read); 1.3 drew more misshapen objects on CountWorld's tuning prompts (countworld/settings.py).
TYPICAL_SCALE = 1.0


def median_live(labels: np.ndarray) -> int | None:
    """Label of the live instance of median area (the lower middle; ties: the lower label)."""
    ids = sorted(live_ids(labels), key=lambda i: (int((labels == i).sum()), i))
    return ids[(len(ids) - 1) // 2] if ids else None


def typical_instance(frames: np.ndarray) -> np.ndarray | None:
    """Bounding-box crop of the noun's live instance of median area over every frame [F, H, W] (the
    lower middle; TYPICAL_QUANTILE; ties: the earlier frame, then the lower label); None when no
    frame has one."""
    found = sorted((int((frames[f] == i).sum()), f, i) for f in range(frames.shape[0]) for i in live_ids(frames[f]))
    if not found:
        return None
    _, f, ident = found[int((len(found) - 1) * TYPICAL_QUANTILE)]
    return grown(crop(frames[f] == ident), TYPICAL_SCALE)


def grown(shape: np.ndarray, scale: float) -> np.ndarray:
    """`shape` resized (nearest token) to a bounding box whose mask holds at least `scale` x its
    tokens: of those up to twice its size, the one of least area x aspect-ratio change; `shape`
    when scale <= 1."""
    if scale <= 1.0:
        return shape
    h, w = shape.shape
    want = scale * int(shape.sum())
    best = None
    for rows in range(h, 2 * h + 2):
        for cols in range(w, 2 * w + 2):
            mask = resize(shape, (rows, cols), order=0, anti_aliasing=False, preserve_range=True).astype(bool)
            area = int(mask.sum())
            if area >= want:
                key = area * np.exp(abs(np.log(rows / cols) - np.log(h / w)))   # a box kept near its shape
                if best is None or key < best[0]:
                    best = (key, mask)
    return crop(best[1]) if best is not None else shape


def template_for(labels: np.ndarray) -> np.ndarray:
    """Bounding-box crop of the frame's copied live instance's mask (the smallest, as published;
    TEMPLATE "median": the median-sized), or the default disk when the frame has none."""
    copied = median_live(labels) if TEMPLATE == "median" else smallest_live(labels)
    if copied is None:
        return default_disk(*labels.shape)
    return crop(labels == copied)


def valid_offsets(labels: np.ndarray, template: np.ndarray, others: np.ndarray | None = None,
                  gap: int = 1) -> np.ndarray:
    """[H-th+1, W-tw+1] bool: top-left offsets where the template may be placed.

    The template may cover background tokens only, none of them within `gap` tokens (1: 8-adjacent)
    of a live token (of this noun, or of `others`: the other nouns' live tokens, bool [H, W]).
    """
    height, width = labels.shape
    th, tw = template.shape
    if th > height or tw > width:
        return np.zeros((0, 0), dtype=bool)
    hits = correlate2d(blocked_tokens(labels, others, gap).astype(np.int32), template.astype(np.int32), mode="valid")
    return hits == 0


def blocked_tokens(labels: np.ndarray, others: np.ndarray | None = None, gap: int = 1) -> np.ndarray:
    """[H, W] bool: tokens an added instance may not cover: not background, or within `gap` tokens
    (8-connected steps; 1: adjacent) of a live token of this noun or of `others`."""
    live = labels > 0 if others is None else (labels > 0) | others
    return (labels != 0) | ndimage.binary_dilation(live, structure=_EIGHT, iterations=gap)


def _place(labels: np.ndarray, template: np.ndarray, previous: tuple[float, float] | None,
           step: int, others: np.ndarray | None = None, gap: int = 1) -> tuple[int, int] | None:
    """Best top-left offset of the template on the grid of `step`, or None."""
    ok = valid_offsets(labels, template, others, gap)
    if ok.size == 0:
        return None
    grid = np.zeros_like(ok)
    grid[::step, ::step] = True
    ok = ok & grid
    if not ok.any():
        return None
    th, tw = template.shape
    live = labels > 0
    if live.any():
        rows, cols = np.nonzero(live)
        centroid = (rows.mean(), cols.mean())
    else:
        centroid = ((labels.shape[0] - 1) / 2.0, (labels.shape[1] - 1) / 2.0)
    y0, x0 = np.nonzero(ok)
    cy, cx = y0 + th // 2, x0 + tw // 2
    cost = CENTRE_WEIGHT * ((cy - centroid[0]) ** 2 + (cx - centroid[1]) ** 2)
    if previous is not None:
        cost = cost + TEMPORAL_WEIGHT * ((cy - previous[0]) ** 2 + (cx - previous[1]) ** 2)
    best = int(np.argmin(cost))     # first of equal costs in row-major order: deterministic
    return int(y0[best]), int(x0[best])


def _add_one(labels: np.ndarray, label: int, previous: tuple[float, float] | None,
             others: np.ndarray | None = None, shape_first: np.ndarray | None = None,
             typical: np.ndarray | None = None) -> tuple[float, float] | None:
    """Add one instance in place; returns its centre, or None when nothing fits.  `shape_first`:
    a template tried first, on the step-1 grid (a carried instance's own shape near its place).
    Each shape is tried keeping ADDED_GAP tokens from the live instances, then the 1 guaranteed,
    before the next shape is.  `typical` (TEMPLATE "typical"): tried before the frame's template,
    which still fills a frame too crowded for it."""
    shapes: list[tuple[np.ndarray, tuple[int, ...]]] = []
    for shape, steps in ((shape_first, (1,)), (typical, (PLACEMENT_STEP, 1)),
                         (template_for(labels), (PLACEMENT_STEP, 1)), (default_disk(*labels.shape), (PLACEMENT_STEP, 1))):
        # a shape tried already is not tried again: the step-2 grid's places are among the step-1 grid's
        if shape is not None and not any(np.array_equal(shape, tried) for tried, _ in shapes):
            shapes.append((shape, steps))
    gaps = (ADDED_GAP, 1) if ADDED_GAP > 1 else (1,)
    for shape, steps in shapes:
        for gap in gaps:
            for step in steps:
                spot = _place(labels, shape, previous, step, others, gap)
                if spot is not None:
                    y0, x0 = spot
                    th, tw = shape.shape
                    window = labels[y0:y0 + th, x0:x0 + tw]
                    window[shape] = label
                    return float(y0 + th // 2), float(x0 + tw // 2)
    return None


def missing_here(labels: np.ndarray, neighbour: np.ndarray) -> list[tuple[np.ndarray, int]]:
    """The `neighbour` frame's live instances that share no token with a live instance of `labels`
    (objects a frame before or after that this frame lacks), as (mask, label): added instances
    first (the guided video is drawing them), then the largest."""
    live = labels > 0
    found = []
    for ident in live_ids(neighbour):
        mask = neighbour == ident
        if not (mask & live).any():
            found.append((ident < FIRST_ADDED, -int(mask.sum()), ident, mask))
    return [(mask, ident) for *_, ident, mask in sorted(found, key=lambda item: item[:3])]


def _copy_in_place(labels: np.ndarray, mask: np.ndarray, label: int,
                   others: np.ndarray | None = None) -> tuple[float, float] | None:
    """Add a neighbouring frame's instance in its own place and shape when every token of it is
    free (see `blocked_tokens`); returns its centre, or None (nothing written)."""
    if blocked_tokens(labels, others)[mask].any():
        return None
    labels[mask] = label
    rows, cols = np.nonzero(mask)
    return float(rows.mean()), float(cols.mean())


def refine_frame(labels: np.ndarray, target: int,
                 previous_centres: dict[int, tuple[float, float]] | None = None,
                 others: np.ndarray | None = None,
                 carried: list[tuple[np.ndarray, int]] | None = None,
                 typical: np.ndarray | None = None,
                 ) -> tuple[np.ndarray, dict[int, tuple[float, float]], int]:
    """One frame -> (refined labels, centres of its added instances by label, instances short).

    `others` (bool [H, W]): the other nouns' live tokens, kept clear by added instances.
    `carried`: neighbouring frames' instances this frame lacks (`missing_here`: mask and label),
    added first, in order: each in its own place and shape when that is free, else its shape at
    the nearest free place, else the template aimed at its centre.  An added instance carried from
    a neighbour keeps its label; an instance the neighbour read takes the next free added label.
    `typical` (TEMPLATE "typical"): the template, put near the centre of a carried instance smaller
    than it instead of that instance's copy."""
    labels = labels.astype(np.int32).copy()
    previous_centres = previous_centres or {}
    target = max(int(target), 0)
    while len(live_ids(labels)) > target:
        labels[labels == smallest_live(labels)] = REMOVED
    centres: dict[int, tuple[float, float]] = {}
    for ident in live_ids(labels):
        if ident >= FIRST_ADDED:        # an input that already holds added instances
            rows, cols = np.nonzero(labels == ident)
            centres[ident] = (float(rows.mean()), float(cols.mean()))
    carried = list(carried or [])
    carried_labels = {ident for _, ident in carried if ident >= FIRST_ADDED}
    rank = 0

    def fresh_label() -> int:
        """The lowest added label this frame has not used and no carried instance brings."""
        nonlocal rank
        while FIRST_ADDED + rank in centres or FIRST_ADDED + rank in carried_labels:
            rank += 1
        return FIRST_ADDED + rank

    short = 0
    while len(live_ids(labels)) + short < target:
        if carried:
            mask, source = carried.pop(0)
            label = source if source >= FIRST_ADDED and source not in centres else fresh_label()
            rows, cols = np.nonzero(mask)
            shape = crop(mask)
            if typical is not None and shape.sum() < typical.sum():
                centre = _add_one(labels, label, (float(round(rows.mean())), float(round(cols.mean()))), others,
                                  shape_first=typical, typical=typical) or _copy_in_place(labels, mask, label, others)
            else:
                centre = _copy_in_place(labels, mask, label, others) or _add_one(
                    labels, label, (float(rows.min() + shape.shape[0] // 2), float(cols.min() + shape.shape[1] // 2)),
                    others, shape_first=shape, typical=typical)
        else:
            label = fresh_label()
            centre = _add_one(labels, label, previous_centres.get(label), others, typical=typical)
        if centre is None:
            short = target - len(live_ids(labels))
            break
        centres[label] = centre
    return labels, centres, short


def refine_noun(noun: NounLayout, target: int, others: np.ndarray | None = None, *,
                frame_done: Optional[Callable[[], None]] = None) -> NounLayout:
    """Refine every frame of one noun, frames in order (added centres carried forward).

    `others` (bool [F, H, W]): the other nouns' live tokens; an added instance keeps clear of
    them unless that leaves no room at all (then it may use their space, with a note).
    `frame_done()` is called after each frame."""
    frames = noun.labels.detach().cpu().numpy()
    typical = typical_instance(frames) if TEMPLATE == "typical" else None
    notes = list(noun.notes)
    out = np.empty_like(frames, dtype=np.int32)
    last_centres: dict[int, tuple[float, float]] = {}
    for f in range(frames.shape[0]):
        clear = None if others is None or not others[f].any() else others[f]
        carried = []
        if TRACK_NEIGHBOURS:
            carried = (missing_here(frames[f], out[f - 1]) if f > 0 else []) + \
                      (missing_here(frames[f], frames[f + 1]) if f + 1 < frames.shape[0] else [])
        out[f], centres, short = refine_frame(frames[f], target, last_centres, clear, carried, typical)
        if short and clear is not None:
            retry = refine_frame(frames[f], target, last_centres, None, carried, typical)
            if retry[2] < short:
                out[f], centres, short = retry
                notes.append(f"frame {f}: no free room, added {noun.noun!r} may overlap other nouns' instances")
        last_centres.update(centres)
        if short:
            notes.append(f"frame {f}: no room for {short} more {noun.noun!r}")
        if frame_done is not None:
            frame_done()
    counts = tuple(len(live_ids(out[f])) for f in range(out.shape[0]))
    return dataclasses.replace(noun, target=int(target), labels=torch.from_numpy(out),
                               counts=counts, notes=tuple(notes))


def refine_layout(layout: Layout, targets: Targets | None = None, *,
                  progress: Optional[Progress] = None) -> Layout:
    """Refined copy of `layout` (refined=True) whose frames hold each noun's target count.

    `targets` default to the layout's own.  A noun with no target (not named in the targets,
    or a negative target) is left as detected, with a note saying so.  `progress(done, total)`
    is called after each frame of each noun refined, and once for a noun left as detected (its
    frames counted at once); it may raise to stop.
    """
    wanted = (targets if targets is not None else layout.targets).as_dict()
    nouns = list(layout.nouns)
    total, done = sum(int(n.labels.shape[0]) for n in nouns), 0

    def advance(units: int) -> None:
        nonlocal done
        done += units
        if progress is not None:
            progress(done, total)

    for i, noun in enumerate(nouns):
        target = wanted.get(noun.noun, noun.target if targets is None else -1)
        if target is None or target < 0:
            nouns[i] = dataclasses.replace(noun, notes=noun.notes + (
                f"{noun.noun!r} has no target count: left as detected",))
            advance(int(noun.labels.shape[0]))
            continue
        others = [(other.labels > 0).cpu().numpy() for j, other in enumerate(nouns) if j != i]
        nouns[i] = refine_noun(noun, int(target), np.any(others, axis=0) if others else None,
                               frame_done=lambda: advance(1))
    return dataclasses.replace(layout, nouns=tuple(nouns), refined=True,
                               targets=targets if targets is not None else layout.targets)
