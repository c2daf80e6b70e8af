"""Layout previews: per latent frame, each noun's instances in distinct colours over its
cross-attention heat map, with noun, count and target written on it."""
from __future__ import annotations

import colorsys
from typing import Optional

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..numina_ops.records import FIRST_ADDED, REMOVED, Layout

PANEL_MIN_WIDTH = 256
TITLE_HEIGHT = 18
REMOVED_COLOUR = np.array([0.9, 0.1, 0.1])
ADDED_COLOUR = np.array([0.1, 1.0, 0.3])


def _instance_colour(label: int) -> np.ndarray:
    hue = (label * 0.618033988749895) % 1.0
    return np.array(colorsys.hsv_to_rgb(hue, 0.75, 1.0))


def _heat(values: np.ndarray) -> np.ndarray:
    """A dark-blue -> yellow heat map of values in [0, 1]."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    low, high = np.array([0.05, 0.05, 0.25]), np.array([1.0, 0.9, 0.3])
    return low * (1 - v) + high * v


def _panel(labels: np.ndarray, heat: Optional[np.ndarray], scale: int) -> np.ndarray:
    h, w = labels.shape
    base = _heat(heat / max(float(heat.max()), 1e-12)) if heat is not None else np.full((h, w, 3), 0.15)
    rgb = base * 0.55
    for label in np.unique(labels):
        if label == 0:
            continue
        mask = labels == label
        colour = REMOVED_COLOUR if label == REMOVED else ADDED_COLOUR if label >= FIRST_ADDED else _instance_colour(int(label))
        rgb[mask] = 0.35 * base[mask] + 0.65 * colour
    return np.kron(rgb, np.ones((scale, scale, 1)))


def render_layout(layout: Layout, cross_maps: Optional[dict[str, torch.Tensor]] = None) -> torch.Tensor:
    """IMAGE batch [F, H, W, 3] in [0, 1]: one picture per latent frame, nouns side by side."""
    grid = layout.grid
    scale = max(4, -(-PANEL_MIN_WIDTH // max(1, grid.width)))
    font = ImageFont.load_default()
    frames = []
    for f in range(grid.frames):
        panels = []
        for noun in layout.nouns or ():
            heat = None
            if cross_maps and noun.noun in cross_maps:
                heat = cross_maps[noun.noun][f].float().nan_to_num(0.0).numpy()
            body = _panel(noun.labels[f].numpy(), heat, scale)
            image = Image.new("RGB", (body.shape[1], body.shape[0] + TITLE_HEIGHT))
            image.paste(Image.fromarray((body * 255).astype(np.uint8)), (0, TITLE_HEIGHT))
            count = noun.counts[f] if f < len(noun.counts) else 0
            status = "ok" if count == noun.target else "fix"
            ImageDraw.Draw(image).text((3, 3), f"{noun.noun}: {count} / target {noun.target} [{status}] f{f}",
                                       fill=(255, 255, 255), font=font)
            panels.append(np.asarray(image, dtype=np.float32) / 255.0)
        if not panels:
            image = Image.new("RGB", (grid.width * scale, grid.height * scale + TITLE_HEIGHT), (30, 30, 30))
            ImageDraw.Draw(image).text((3, 3), "no countable noun: nothing to guide", fill=(255, 255, 255), font=font)
            panels.append(np.asarray(image, dtype=np.float32) / 255.0)
        gap = np.ones((panels[0].shape[0], 4, 3), dtype=np.float32)
        row = panels[0]
        for p in panels[1:]:
            row = np.concatenate([row, gap, p], axis=1)
        frames.append(torch.from_numpy(np.ascontiguousarray(row)))
    return torch.stack(frames)


def counts_text(layout: Layout) -> str:
    if not layout.nouns:
        notes = "; ".join(layout.targets.notes) or "no countable noun in the prompt"
        return f"NUMINA: nothing to count ({notes}); guidance is a no-op."
    lines = []
    for noun in layout.nouns:
        wrong = noun.mismatched_frames
        verdict = "matches the target in every frame" if not wrong else f"differs from the target in frames {list(wrong)}"
        lines.append(f"{noun.noun}: target {noun.target}, per-frame counts {list(noun.counts)} -> {verdict}")
        lines += [f"  note: {n}" for n in noun.notes]
    return "\n".join(lines)
