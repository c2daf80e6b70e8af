"""Layout previews: per latent frame, each noun's instances in distinct colours over its
cross-attention heat map, with noun, count and target written on it; and what the NUMINA nodes
show on themselves in ComfyUI's UI (the preview animated over the latent frames, report text)."""
from __future__ import annotations

import colorsys
import logging
import random
import string
from typing import Optional

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..numina_ops.records import FIRST_ADDED, REMOVED, Layout, NounLayout

log = logging.getLogger("numina")

PANEL_MIN_WIDTH = 256   # a noun's panel is scaled up to about this width, so its title fits
MAX_ROW_WIDTH = 1024    # the nouns side by side stay within this (many nouns: smaller panels)
GAP = 4
TITLE_MARGIN = 3
PREVIEW_FPS = 4.0       # one latent frame = 4 video frames at Wan's 16 fps: the video's own timing
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
    return rgb.repeat(scale, axis=0).repeat(scale, axis=1)


def frame_title(noun: NounLayout, frame: int) -> str:
    """What a noun's panel says in one latent frame: noun, count, target, verdict, frame."""
    count = noun.counts[frame] if frame < len(noun.counts) else 0
    status = "ok" if count == noun.target else "fix"
    return f"{noun.noun}: {count} / target {noun.target} [{status}] frame {frame}"


def _title_lines(title: str, width: int, font) -> list[str]:
    """One line when it fits the panel, else two (split before the verdict)."""
    if font.getlength(title) + 2 * TITLE_MARGIN <= width or " [" not in title:
        return [title]
    head, tail = title.split(" [", 1)
    return [head, "[" + tail]


def _line_height(font) -> int:
    return font.getbbox("Ag[]")[3] + 2


def _panel_scale(grid_width: int, panels: int) -> int:
    """Pixels per token: about PANEL_MIN_WIDTH wide a panel, the whole row within MAX_ROW_WIDTH."""
    wanted = -(-PANEL_MIN_WIDTH // max(1, grid_width))
    fits = (MAX_ROW_WIDTH - GAP * (panels - 1)) // max(1, panels * grid_width)
    return max(1, min(wanted, fits))


def render_frames(layout: Layout, cross_maps: Optional[dict[str, torch.Tensor]] = None) -> list[Image.Image]:
    """One RGB picture per latent frame, nouns side by side, each panel titled with `frame_title`.
    Bounded: a panel is a few pixels per token (the token grid, not the video: no VAE decode)."""
    grid = layout.grid
    nouns = layout.nouns or ()
    scale = _panel_scale(grid.width, len(nouns) or 1)
    font = ImageFont.load_default()
    body_w, body_h = grid.width * scale, grid.height * scale
    titles = [[frame_title(noun, f) for noun in nouns] for f in range(grid.frames)]
    lines = max((len(_title_lines(t, body_w, font)) for row in titles for t in row), default=1)
    line_h = _line_height(font)
    title_h = 2 * TITLE_MARGIN + lines * line_h
    frames = []
    for f in range(grid.frames):
        row = Image.new("RGB", (len(nouns) * (body_w + GAP) - GAP if nouns else body_w, body_h + title_h),
                        (255, 255, 255))
        draw = ImageDraw.Draw(row)
        for i, noun in enumerate(nouns):
            heat = None
            if cross_maps and noun.noun in cross_maps:
                heat = cross_maps[noun.noun][f].float().nan_to_num(0.0).cpu().numpy()
            body = _panel(noun.labels[f].cpu().numpy(), heat, scale)
            x = i * (body_w + GAP)
            draw.rectangle((x, 0, x + body_w - 1, title_h - 1), fill=(0, 0, 0))
            row.paste(Image.fromarray((body * 255).astype(np.uint8)), (x, title_h))
            for k, line in enumerate(_title_lines(titles[f][i], body_w, font)):
                draw.text((x + TITLE_MARGIN, TITLE_MARGIN + k * line_h), line, fill=(255, 255, 255), font=font)
        if not nouns:
            draw.rectangle((0, 0, row.width - 1, row.height - 1), fill=(30, 30, 30))
            draw.text((TITLE_MARGIN, TITLE_MARGIN), "no countable noun: nothing to guide", fill=(255, 255, 255),
                      font=font)
        frames.append(row)
    return frames


def render_layout(layout: Layout, cross_maps: Optional[dict[str, torch.Tensor]] = None) -> torch.Tensor:
    """IMAGE batch [F, H, W, 3] in [0, 1]: one picture per latent frame (see `render_frames`)."""
    return frames_to_image(render_frames(layout, cross_maps))


def frames_to_image(frames: list[Image.Image]) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.asarray(f, dtype=np.float32) for f in frames]) / 255.0)


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


# ----------------------------------------------------------------------------- on the node, in the UI
def report_ui(text: str) -> dict:
    """The `ui` of a node that shows `text` on itself: pass it as `io.NodeOutput(..., ui=report_ui(text))`.

    Two channels, as ComfyUI's own nodes do (GetImageSize, GetMeshInfo): the text is sent now as
    the executing node's progress text, which the stock frontend draws under any node, and
    returned as the `text` ui output (ui.PreviewText's format), which the history keeps, API
    clients read and ComfyUI replays when the node's result comes from the cache."""
    show_on_node(text)
    return {"text": [text]}


def layout_ui(preview: torch.Tensor, counts: str) -> dict:
    """The `ui` of NuminaLayoutInfer / NuminaLayoutRefine: `preview` (one picture per latent frame)
    as one lossless animated picture at the video's timing (`animated_ui`), plus `counts` text."""
    return animated_ui(preview, counts, "numina_layout_", PREVIEW_FPS, lossless=True)


def animated_ui(preview: torch.Tensor, text: str, prefix: str, fps: float, lossless: bool) -> dict:
    """`preview` as ONE animated WEBP in ComfyUI's temp folder, shown on the node the way
    SaveAnimatedWEBP shows its result (`animated` set: the frontend puts the file in an <img>,
    which the browser plays; of several files under `animated` it would show only the first),
    plus `text` as `report_ui` text.  Lossless keeps token cells and titles sharp (layouts);
    decoded video frames are written lossy.  Method 0, the fastest.  A Pillow without WebP gets an
    animated PNG; a preview that cannot be written never fails the run."""
    from comfy_api.latest import io, ui

    prefix = prefix + "".join(random.choice(string.ascii_lowercase) for _ in range(5))
    try:
        saved = ui.ImageSaveHelper.save_animated_webp(preview, prefix, io.FolderType.temp, None, fps=fps,
                                                      lossless=lossless, quality=100 if lossless else 85, method=0)
    except Exception as webp_error:
        try:
            saved = ui.ImageSaveHelper.save_animated_png(preview, prefix, io.FolderType.temp, None,
                                                         fps=fps, compress_level=1)
        except Exception as error:
            log.warning("NUMINA: the preview could not be written (%s; %s)", webp_error, error)
            saved = None
    shown = {"images": [saved], "animated": [preview.shape[0] > 1]} if saved is not None else {}
    return {**shown, **report_ui(text)}


def layout_node_output(layout: Layout):
    """What a layout node returns: the layout, its preview IMAGE and counts text, both also shown
    on the node (NuminaLayoutInfer, NuminaLayoutRefine, NuminaMaskToLayout)."""
    from comfy_api.latest import io

    preview, counts = render_layout(layout, layout.meta.get("cross_attention")), counts_text(layout)
    return io.NodeOutput(layout, preview, counts, ui=layout_ui(preview, counts))


def show_on_node(text: str, node_id: Optional[str] = None) -> None:
    """Text under a node in ComfyUI's UI (``node_id``, default the executing node), when a server
    runs; a report never fails the run."""
    try:
        from server import PromptServer

        if node_id is None:
            from comfy_execution.utils import get_executing_context
            context = get_executing_context()
            node_id = None if context is None else context.node_id
        server = getattr(PromptServer, "instance", None)
        if node_id is not None and server is not None and hasattr(server, "send_progress_text"):
            server.send_progress_text(text, node_id)
    except Exception as error:
        log.debug("NUMINA: could not show the text on node %s: %s", node_id, error)
