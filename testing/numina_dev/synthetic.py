"""Seeded synthetic scenes with known counts, shaped like what a reference pass captures.

Real Wan maps are not available in tests, so the layout readouts are measured on scenes whose
instance count is known.  A scene holds, per latent frame, what `Capture` would hold:

* a cross-attention-like map per noun: a softmax share over 512 context positions, so small
  values (a background floor near 1/512, peaks of a few 1e-2); each instance is a blob with a
  peaked interior made of one or two "part" peaks (real maps favour discriminative parts), some
  instances much weaker than others, a few persistent off-object hot spots, multiplicative and
  spatially correlated additive noise;
* rank-3 self-attention features min-maxed to [0, 1]: instances of the same noun share a feature
  colour (what lets distant instances fall into one mean-shift cluster), with a part gradient
  inside each instance, a background that differs and varies smoothly, a low-frequency
  coordinate-correlated component over the whole frame, and noise.

Instances may touch; the whole scene drifts slowly (a camera pan) and each instance wobbles a
little, so frames are alike but not equal.  The generator was calibrated only against how the
published reference code behaves on such scenes (its count readout squeezes toward about 4: one
instance read as 6 to 9, five and more under-counted), never against this pack's own readout.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from numina_ops.records import Capture, CountTarget, NounMaps, NuminaInputError, Targets, TokenGrid

NOISE_LEVELS = ("clean", "moderate", "heavy")
HALO = 0.15   # diffuse tail of an instance's attention (relative to its peak), reaching ~2 radii
PART_LO, PART_HI = 0.4, 0.6  # spread of features inside one instance (parts attend differently)

# Per noise level: multiplicative log-normal sigma, additive correlated noise (fraction of the
# peak), mean number of off-object hot spots, self-feature noise sigma.
_NOISE = {
    "clean": dict(mult=0.05, add=0.01, hotspots=0.0, feat=0.02),
    "moderate": dict(mult=0.25, add=0.05, hotspots=0.7, feat=0.06),
    "heavy": dict(mult=0.45, add=0.10, hotspots=1.5, feat=0.12),
}


@dataclass(frozen=True)
class SyntheticScene:
    """One noun's synthetic reference-pass reading plus its ground truth."""

    features: torch.Tensor      # [F, H*W, 3] float32 in [0, 1]
    cross: torch.Tensor         # [F, H, W] float32, softmax-share scale
    gt_labels: torch.Tensor     # [F, H, W] int32: 0 background, 1..K instances
    gt_counts: tuple[int, ...]  # instances visible per frame
    count: int
    noise: str
    seed: int

    @property
    def grid(self) -> TokenGrid:
        frames, height, width = self.cross.shape
        return TokenGrid(frames, height, width)


def _place_centres(rng: np.random.Generator, count: int, height: int, width: int,
                   radii: np.ndarray, touching: float) -> np.ndarray:
    """Non-overlapping centres; with probability `touching` an instance is put against another."""
    centres: list[tuple[float, float]] = []
    for i in range(count):
        ry, rx = radii[i]
        for attempt in range(400):
            if centres and rng.random() < touching and attempt < 200:
                j = int(rng.integers(len(centres)))
                angle = rng.uniform(0, 2 * np.pi)
                reach = np.hypot(ry * np.sin(angle), rx * np.cos(angle)) + np.hypot(
                    radii[j][0] * np.sin(angle), radii[j][1] * np.cos(angle))
                gap = rng.uniform(-0.2, 0.8)
                cy = centres[j][0] + (reach + gap) * np.sin(angle)
                cx = centres[j][1] + (reach + gap) * np.cos(angle)
            else:
                cy = rng.uniform(ry, height - 1 - ry)
                cx = rng.uniform(rx, width - 1 - rx)
            if not (ry * 0.7 <= cy <= height - 1 - ry * 0.7 and rx * 0.7 <= cx <= width - 1 - rx * 0.7):
                continue
            ok = True
            for (oy, ox), (ory, orx) in zip(centres, radii[: len(centres)]):
                angle = np.arctan2(cy - oy, cx - ox)
                reach = np.hypot(ry * np.sin(angle), rx * np.cos(angle)) + np.hypot(
                    ory * np.sin(angle), orx * np.cos(angle))
                if np.hypot(cy - oy, cx - ox) < reach - 0.3:
                    ok = False
                    break
            if ok:
                centres.append((cy, cx))
                break
        else:
            # Crowded grid: shrink this instance's footprint rather than fail.
            centres.append((rng.uniform(0, height - 1), rng.uniform(0, width - 1)))
            radii[i] = np.maximum(radii[i] * 0.6, 1.0)
    return np.asarray(centres, dtype=np.float64).reshape(count, 2)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return field / (field.std() + 1e-12)


def make_scene(count: int, *, height: int = 30, width: int = 52, frames: int = 21,
               noise: str = "moderate", seed: int = 0, touching: float = 0.35) -> SyntheticScene:
    """A scene of `count` instances of one noun (count 0 gives a scene with no instance)."""
    if noise not in _NOISE:
        raise NuminaInputError(f"noise must be one of {NOISE_LEVELS}, got {noise!r}")
    if count < 0 or height < 3 or width < 3 or frames < 1:
        raise NuminaInputError(
            f"need count >= 0, height and width >= 3, frames >= 1; got count={count},"
            f" {height}x{width}, frames={frames}")
    level = _NOISE[noise]
    rng = np.random.default_rng([seed, count, height, width, frames, NOISE_LEVELS.index(noise)])
    short = min(height, width)

    # Instance geometry: elliptical footprints; more instances -> smaller ones, as in real videos.
    shrink = 1.0 if count <= 3 else float(np.sqrt(3.0 / count))
    base = rng.uniform(0.10, 0.17, size=count) * short * shrink
    aspect = rng.uniform(0.75, 1.35, size=count)
    radii = np.stack([np.maximum(base / np.sqrt(aspect), 1.2), np.maximum(base * np.sqrt(aspect), 1.2)], 1)
    centres0 = _place_centres(rng, count, height, width, radii, touching)
    strength = rng.uniform(0.35, 1.0, size=count)           # some instances are much weaker
    if count >= 2:
        strength[rng.integers(count)] = 1.0                 # one clear instance sets the scale
    # One or two part peaks per instance, offset inside it.
    n_parts = rng.integers(1, 3, size=count)
    part_offsets = [rng.uniform(-0.45, 0.45, size=(int(n), 2)) for n in n_parts]
    part_weights = [rng.uniform(0.6, 1.0, size=int(n)) for n in n_parts]

    # Motion: slow common drift plus a small wobble per instance.
    drift = rng.normal(0, 0.08, size=2)
    wobble_amp = rng.uniform(0.0, 0.5, size=(count, 2))
    wobble_phase = rng.uniform(0, 2 * np.pi, size=(count, 2))
    wobble_freq = rng.uniform(0.1, 0.3, size=(count, 1))

    # Hot spots: persistent small off-object blobs of the noun's attention.
    n_hot = int(rng.poisson(level["hotspots"]))
    hot_pos = np.stack([rng.uniform(0, height - 1, n_hot), rng.uniform(0, width - 1, n_hot)], 1)
    hot_amp = rng.uniform(0.08, 0.3, size=n_hot)
    hot_rad = rng.uniform(0.8, 1.5, size=n_hot)

    peak_scale = rng.uniform(0.03, 0.1)                      # softmax share at the strongest peak
    floor = rng.uniform(0.0005, 0.0015)                      # a noun's share away from any object
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)

    # Features: centred self-attention puts background tokens (alike, attending broadly) close
    # together, while an instance's tokens depart from them along a direction shared by the
    # noun's instances and spread further by parts (head / body / edge attend differently).
    bg_colour = rng.uniform(0.3, 0.7, size=3)
    fg_offset = rng.normal(0, 1, size=3)
    fg_offset *= rng.uniform(0.8, 1.1) / np.linalg.norm(fg_offset)
    inst_colour = fg_offset + rng.normal(0, 0.06, size=(count, 3))
    part_dirs = np.linalg.qr(rng.normal(0, 1, size=(3, 3)))[0] * rng.uniform(PART_LO, PART_HI, size=3)
    part_axis = rng.uniform(0, 2 * np.pi, size=count)
    bg_field = np.stack([_smooth_noise(rng, (height, width), short / 5) for _ in range(3)], -1) * 0.06
    coord_dir = rng.normal(0, 1, size=(2, 3)) * 0.12        # low-frequency coordinate component
    static_cross_noise = _smooth_noise(rng, (height, width), 1.0)
    static_feat_noise = rng.standard_normal((height, width, 3))

    feats_out = np.empty((frames, height * width, 3), dtype=np.float32)
    cross_out = np.empty((frames, height, width), dtype=np.float32)
    labels_out = np.zeros((frames, height, width), dtype=np.int32)
    counts: list[int] = []
    for f in range(frames):
        centres = centres0 + drift * f + wobble_amp * np.sin(wobble_freq * f + wobble_phase)
        centres[:, 0] = np.clip(centres[:, 0], 0, height - 1)
        centres[:, 1] = np.clip(centres[:, 1], 0, width - 1)

        inside = np.full((height, width), np.inf)           # normalised elliptical distance
        owner = np.zeros((height, width), dtype=np.int32)
        blob = np.zeros((height, width))
        features = np.broadcast_to(bg_colour, (height, width, 3)).copy() + bg_field
        for i in range(count):
            dy = (rows - centres[i, 0]) / radii[i, 0]
            dx = (cols - centres[i, 1]) / radii[i, 1]
            dist = np.hypot(dy, dx)
            closer = dist < inside
            owner[closer & (dist <= 1.0)] = i + 1
            inside = np.minimum(inside, dist)
            for (oy, ox), w in zip(part_offsets[i], part_weights[i]):
                d2 = (dy - oy) ** 2 + (dx - ox) ** 2
                blob += strength[i] * w * np.exp(-d2 / (2 * 0.45 ** 2))
                blob += HALO * strength[i] * w * np.exp(-d2 / (2 * 1.2 ** 2))
            soft = 1.0 / (1.0 + np.exp((dist - 1.0) * 6.0))  # blurry instance edge
            along = dy * np.sin(part_axis[i]) + dx * np.cos(part_axis[i])
            across = -dy * np.cos(part_axis[i]) + dx * np.sin(part_axis[i])
            parts = np.stack([along, across, dist ** 2 - 0.5], -1) @ part_dirs
            features = features + (inst_colour[i] + parts) * soft[..., None]
        labels_out[f] = owner
        counts.append(int(len(np.unique(owner[owner > 0]))))

        for p in range(n_hot):
            pos = hot_pos[p] + drift * f
            d2 = (rows - pos[0]) ** 2 + (cols - pos[1]) ** 2
            blob += hot_amp[p] * np.exp(-d2 / (2 * hot_rad[p] ** 2))
        fresh = _smooth_noise(rng, (height, width), 1.0)
        additive = level["add"] * (0.6 * static_cross_noise + 0.8 * fresh)
        low = 1.0 + 0.3 * bg_field[..., 0] / 0.12
        cross = floor * np.clip(low, 0.4, None) + peak_scale * np.clip(blob + additive, 0, None)
        cross *= np.exp(level["mult"] * rng.standard_normal((height, width)))
        cross_out[f] = np.clip(cross, 1e-6, 1.0)

        coords = np.stack([rows / max(height - 1, 1), cols / max(width - 1, 1)], -1)
        features = features + coords @ coord_dir
        noise_field = 0.5 * static_feat_noise + 0.87 * rng.standard_normal((height, width, 3))
        features = features + level["feat"] * ndimage.gaussian_filter(noise_field, (0.6, 0.6, 0)) * 1.6
        flat = features.reshape(-1, 3)
        lo, hi = flat.min(0), flat.max(0)
        feats_out[f] = ((flat - lo) / np.maximum(hi - lo, 1e-8)).astype(np.float32)

    return SyntheticScene(
        features=torch.from_numpy(feats_out),
        cross=torch.from_numpy(cross_out),
        gt_labels=torch.from_numpy(labels_out),
        gt_counts=tuple(counts),
        count=count,
        noise=noise,
        seed=seed,
    )


def scene_capture(scene: SyntheticScene, noun: str = "apples", target: int | None = None) -> Capture:
    """Wrap a scene into the `Capture` a reference pass would produce for "<target> <noun>"."""
    target = scene.count if target is None else target
    prompt = f"{target} {noun} on a table"
    start = len(str(target)) + 1
    targets = Targets(prompt=prompt, items=(
        CountTarget(noun=noun, count=target, span=(start, start + len(noun)), numeral=str(target)),))
    frames = scene.cross.shape[0]
    return Capture(
        grid=scene.grid,
        targets=targets,
        nouns=(NounMaps(noun=noun, token_positions=(1,), cross_attention=scene.cross.clone()),),
        self_features=scene.features.clone(),
        chosen_heads=torch.zeros(frames, dtype=torch.long, device="cpu"),
        head_scores=torch.zeros(frames, 1, device="cpu"),
        step_index=20,
        total_steps=50,
        block_index=15,
        total_blocks=30,
        meta={"synthetic": True, "count": scene.count, "noise": scene.noise, "seed": scene.seed},
    )
