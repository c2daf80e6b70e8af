"""Hand-editable layouts: a noun's layout as a pixel mask, and a mask back as a layout edit.

A layout labels the latent token grid; ComfyUI's mask editor and mask nodes work on pixels.
:func:`layout_to_masks` draws one noun's live instances (detected and added) as 1 and
everything else (background, removed) as 0, each token a square of ``pixels_per_token`` pixels
(:func:`pixels_per_token`: 16 for Wan2.1 and Wan2.2 A14B, VAE stride 8; 32 for Wan2.2 TI2V 5B,
stride 16; a token is 2 x 2 latent pixels).  ``frames="video"`` gives one mask frame per
decoded video frame (Wan's VAE: latent frame 0 -> video frame 0, latent frame f > 0 -> video
frames 4f-3..4f; :func:`video_frames`), so the mask lines up with the VAE-decoded video;
``frames="latent"`` one per latent frame.

:func:`apply_mask_edit` reads an edited mask back.  The rules:

1. Size.  The mask is ``[N, height, width]`` (or one ``[height, width]`` frame) with height and
   width the same whole multiple ``k`` of the token grid: normally ``k = pixels_per_token``
   (what :func:`layout_to_masks` made), but a mask at another whole scale (``k = 2``: latent
   pixels) reads the same way.  Anything else is refused with the size to use.
2. Frames.  ``N`` is 1 (the one frame applies to every latent frame), the latent frame count, or
   the video frame count ``4 (F - 1) + 1``.  Anything else is refused.
3. Token on.  A mask pixel is on when its value is at least 0.5.  A token of latent frame f is
   on when at least half of the mask pixels it covers are on; it covers its ``k x k`` pixels in
   each mask frame that maps to f: the one frame of a single-frame or latent mask, or f's 1 (f =
   0) or 4 (f > 0) video frames, so a video mask is a majority over the latent frame's video
   frames and over the token's pixels at once (ties count as on).
4. Erased.  A token of a live instance (detected 1..99 or added 100+) that is off becomes
   REMOVED (-1): the guide suppresses the noun there.  An instance with no token left is gone
   (it stops counting); one with tokens left keeps its label on them (a partial erase shrinks it).
5. Painted.  Tokens that are on but were not live (background 0 or removed -1) are painted.
   Painted tokens 8-connected (through on tokens) to a live instance that kept tokens grow that
   instance, each token joining the nearest such instance of its connected piece (Euclidean
   distance in tokens, ties to the lower label): painting a bridge never merges two instances.
   A connected piece of painted tokens that reaches no live instance is a new ADDED instance,
   one label per piece: the label of the piece this edit added in the previous latent frame
   that it overlaps most (ties: the lower label), so a painted object keeps its label from frame
   to frame, else a fresh label above every label the noun uses.  To add an instance beside
   another, leave one token (16 or 32 pixels) of gap, or it grows the other.
6. Unchanged.  Tokens that were off and stay off keep their value (0 or -1), live tokens that
   stay on keep their label.  So ``apply_mask_edit(layout, noun, layout_to_masks(layout, noun,
   ppt), ppt)`` returns the layout unchanged, apart from ``refined=True``.
7. Result.  Counts are the live labels per frame; the layout is ``refined=True`` (the guide
   accepts it); the noun's notes gain one line saying what the edit did, and name the frames
   where a painted instance lies on another noun's live instance (their biases then share
   tokens).  Growing a detected instance changes the layout but not the guidance: the guide
   biases only removed and added tokens.

Nouns are named as in the layout (case and singular/plural tolerant); an empty name is the
first noun.  No ComfyUI import; masks are read on the CPU and the result is a CPU record.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
from scipy import ndimage

from .prompt import same_noun
from .records import FIRST_ADDED, REMOVED, Layout, NounLayout, NuminaInputError

FRAMES = ("video", "latent")
TEMPORAL_STRIDE = 4                       # Wan's VAE: 4 video frames per latent frame after the first
LATENT_PIXELS_PER_TOKEN = 2               # the (1, 2, 2) patchify
VAE_STRIDE = {"wan22_ti2v": 16}           # model family -> VAE spatial stride; others 8
DEFAULT_VAE_STRIDE = 8
ON_LEVEL = 0.5
_EIGHT = np.ones((3, 3), dtype=bool)


def pixels_per_token(model_family: str) -> int:
    """Video pixels per token side: 2 latent pixels x the VAE stride (32 for Wan2.2 TI2V 5B, else 16)."""
    return LATENT_PIXELS_PER_TOKEN * VAE_STRIDE.get(model_family, DEFAULT_VAE_STRIDE)


def video_frames(latent_frames: int) -> int:
    """Decoded video frames of ``latent_frames`` latent frames: 4 (F - 1) + 1."""
    return TEMPORAL_STRIDE * (latent_frames - 1) + 1


def video_to_latent_frame(video_frame: int) -> int:
    """The latent frame a video frame belongs to (0 -> 0, 4f-3..4f -> f)."""
    return (video_frame + TEMPORAL_STRIDE - 1) // TEMPORAL_STRIDE


def find_noun(layout: Layout, noun: str) -> NounLayout:
    """The noun's layout: exact name, else case and singular/plural tolerant; "" = the first."""
    if not layout.nouns:
        raise NuminaInputError("this layout has no counted noun, so there is nothing to edit: name a count in the "
                               "prompt (\"three apples\") or in the capture's count_override")
    name = (noun or "").strip()
    if not name:
        return layout.nouns[0]
    found = layout.noun(name) or next((n for n in layout.nouns if same_noun(n.noun, name)), None)
    if found is None:
        names = ", ".join(repr(n.noun) for n in layout.nouns)
        raise NuminaInputError(f"the layout has no noun {name!r}; write one of {names} (or leave it empty for the first)")
    return found


def _check_ppt(ppt: int) -> int:
    if isinstance(ppt, bool) or int(ppt) != ppt or ppt < 1:
        raise NuminaInputError(f"pixels_per_token must be a whole number >= 1, got {ppt!r}")
    return int(ppt)


def layout_to_masks(layout: Layout, noun: str, pixels_per_token: int, frames: str = "video") -> torch.Tensor:
    """One noun's live instances as a float32 {0, 1} mask ``[N, H * ppt, W * ppt]`` on the CPU.

    ``N`` = the video frame count 4 (F - 1) + 1 for ``frames="video"`` (each video frame shows its
    latent frame), F for ``frames="latent"``.
    """
    if frames not in FRAMES:
        raise NuminaInputError(f"frames must be one of {FRAMES}, got {frames!r}")
    ppt = _check_ppt(pixels_per_token)
    live = (find_noun(layout, noun).labels > 0).to(torch.float32)
    if frames == "video":
        index = torch.tensor([video_to_latent_frame(v) for v in range(video_frames(layout.grid.frames))],
                             device=live.device)
        live = live[index]
    return live.repeat_interleave(ppt, dim=1).repeat_interleave(ppt, dim=2).contiguous()


def mask_to_tokens(mask, grid_frames: int, height: int, width: int, pixels_per_token: int = 16) -> np.ndarray:
    """bool ``[F, H, W]``: which tokens the mask turns on (rules 1-3 of the module docstring)."""
    m = torch.as_tensor(mask, device="cpu").detach()     # masks come from the UI's CPU tensors
    if m.ndim == 2:
        m = m[None]
    ppt = _check_ppt(pixels_per_token)
    want = f"{width * ppt} x {height * ppt} pixels (width x height)"
    if m.ndim != 3:
        raise NuminaInputError(f"expected a MASK [frames, height, width], got shape {tuple(m.shape)}; "
                               f"make it {want}, e.g. from NuminaLayoutToMask")
    n, hp, wp = m.shape
    k = hp // height if height else 0
    if k < 1 or hp != k * height or wp != k * width:
        raise NuminaInputError(
            f"the mask is {wp} x {hp} pixels but the layout's token grid is {width} x {height} tokens: resize it "
            f"to {want} (the video size), or to another whole multiple of the grid with the same factor for "
            f"width and height")
    video = video_frames(grid_frames)
    if n not in (1, grid_frames, video):
        raise NuminaInputError(
            f"the mask has {n} frames; use 1 (applied to every frame), {video} (one per video frame) or "
            f"{grid_frames} (one per latent frame), e.g. as NuminaLayoutToMask makes it")
    on = (m >= ON_LEVEL).reshape(n, height, k, width, k).sum(dim=(2, 4))   # [n, H, W] on-pixels per token
    covered = torch.full((n,), k * k, device=on.device)
    if n != grid_frames and n != 1:                                         # video frames -> latent frames
        rest = on[1:].reshape(grid_frames - 1, TEMPORAL_STRIDE, height, width).sum(dim=1)
        on = torch.cat([on[:1], rest])
        covered = torch.tensor([k * k] + [TEMPORAL_STRIDE * k * k] * (grid_frames - 1), device=on.device)
    tokens = (2 * on >= covered[:, None, None]).numpy()
    if tokens.shape[0] == 1 and grid_frames != 1:
        tokens = np.repeat(tokens, grid_frames, axis=0)
    return tokens


def _grow(result: np.ndarray, painted: np.ndarray, kept: np.ndarray) -> None:
    """Painted tokens join the nearest instance (ties: lower label) among ``kept``'s labels."""
    ids = [int(i) for i in np.unique(kept[kept > 0])]
    distances = np.stack([ndimage.distance_transform_edt(kept != i) for i in ids])
    result[painted] = np.asarray(ids)[np.argmin(distances[:, painted], axis=0)]


def _edit_frame(old: np.ndarray, on: np.ndarray, previous_new: dict[int, np.ndarray],
                next_label: int) -> tuple[np.ndarray, dict[int, np.ndarray], int]:
    """One latent frame's edit (rules 4-6). Returns the labels, this frame's new pieces and the next fresh label."""
    live = old > 0
    result = old.copy()
    result[live & ~on] = REMOVED
    kept = np.where(live & on, old, 0)
    pieces, n = ndimage.label(on, structure=_EIGHT)
    new: dict[int, np.ndarray] = {}
    for piece in range(1, n + 1):
        region = pieces == piece
        painted = region & ~live
        if not painted.any():
            continue
        if (kept[region] > 0).any():
            _grow(result, painted, np.where(region, kept, 0))
            continue
        overlaps = sorted(((-int((mask & painted).sum()), label) for label, mask in previous_new.items()
                           if label not in new and (mask & painted).any()))
        if overlaps:
            label = overlaps[0][1]
        else:
            label, next_label = next_label, next_label + 1
        result[painted] = label
        new[label] = painted
    return result, new, next_label


def _frames_text(frames: list[int]) -> str:
    """"frame 3", "frames 0-20", "frames 0-2, 5"."""
    runs: list[list[int]] = []
    for f in frames:
        if runs and f == runs[-1][1] + 1:
            runs[-1][1] = f
        else:
            runs.append([f, f])
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
    return ("frame " if len(frames) == 1 else "frames ") + text


def apply_mask_edit(layout: Layout, noun: str, mask, pixels_per_token: int) -> Layout:
    """The layout with one noun's labels edited to the mask (rules in the module docstring), refined."""
    if not isinstance(layout, Layout):
        raise NuminaInputError("expected a NUMINA layout (from NuminaLayoutInfer or NuminaLayoutRefine)")
    target = find_noun(layout, noun)
    grid = layout.grid
    on = mask_to_tokens(mask, grid.frames, grid.height, grid.width, pixels_per_token)
    old = target.labels.numpy().astype(np.int32)
    others = np.zeros(old.shape, dtype=bool)
    for other in layout.nouns:
        if other is not target:
            others |= other.labels.numpy() > 0
    next_label = max(FIRST_ADDED, int(old.max(initial=0)) + 1)
    labels = np.empty_like(old)
    previous: dict[int, np.ndarray] = {}
    removed, added, resized, overlapping = [], [], [], []
    for f in range(grid.frames):
        labels[f], previous, next_label = _edit_frame(old[f], on[f], previous, next_label)
        before, after = set(np.unique(old[f][old[f] > 0]).tolist()), set(np.unique(labels[f][labels[f] > 0]).tolist())
        if before - after:
            removed.append(f)
        if after - before:
            added.append(f)
        if any(((old[f] == i) != (labels[f] == i)).any() for i in before & after):
            resized.append(f)
        if previous and (others[f] & np.isin(labels[f], list(previous))).any():
            overlapping.append(f)
    if np.array_equal(labels, old):
        return dataclasses.replace(layout, refined=True)
    parts = [f"instances removed in {_frames_text(removed)}" if removed else "",
             f"instances added in {_frames_text(added)}" if added else "",
             f"instances grown or shrunk in {_frames_text(resized)}" if resized else ""]
    notes = [f"edited by hand: {'; '.join(p for p in parts if p)}"]
    if overlapping:
        notes.append(f"{_frames_text(overlapping)}: a painted instance lies on another noun's instance; "
                     "their biases share those tokens")
    counts = tuple(len(np.unique(frame[frame > 0])) for frame in labels)
    edited = dataclasses.replace(target, labels=torch.from_numpy(labels), counts=counts,
                                 notes=target.notes + tuple(notes))
    nouns = tuple(edited if n is target else n for n in layout.nouns)
    return dataclasses.replace(layout, nouns=nouns, refined=True)
