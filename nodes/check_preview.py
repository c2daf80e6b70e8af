"""The count check's preview: every judged frame with each detection boxed and labelled in its
noun's colour, titled per noun with count / target, as the layout previews title theirs."""
from __future__ import annotations

import torch
from PIL import Image, ImageDraw, ImageFont

from ..numina_ops.judge import CountCheck
from .preview import TITLE_MARGIN, _instance_colour, _line_height, frames_to_image

MAX_PREVIEW_WIDTH = 512      # frames are shown at most this wide (a 480p video at about 0.6x)
VIDEO_FPS = 16.0             # Wan's frame rate: the preview plays at the video's own timing


def check_title(check: CountCheck, frame: int, noun: int) -> str:
    count, target = check.counts[noun][frame], check.targets[noun]
    return f"{check.nouns[noun]}: {count} / {target} [{'ok' if count == target else 'wrong'}]"


def render_check(frames: torch.Tensor, check: CountCheck) -> torch.Tensor:
    """IMAGE [F, H', W', 3]: the frames (scaled to at most MAX_PREVIEW_WIDTH), boxes and titles."""
    count, height, width = int(frames.shape[0]), int(frames.shape[1]), int(frames.shape[2])
    scale = min(1.0, MAX_PREVIEW_WIDTH / max(1, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    font = ImageFont.load_default()
    line_h = _line_height(font)
    rows = max(1, len(check.nouns)) + 1
    title_h = 2 * TITLE_MARGIN + rows * line_h
    colours = [tuple(int(255 * c) for c in _instance_colour(n + 1)) for n in range(len(check.nouns))]
    pictures = (frames.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy())
    out = []
    for f in range(count):
        canvas = Image.new("RGB", (size[0], size[1] + title_h), (0, 0, 0))
        canvas.paste(Image.fromarray(pictures[f]).resize(size, Image.BILINEAR), (0, title_h))
        draw = ImageDraw.Draw(canvas)
        draw.text((TITLE_MARGIN, TITLE_MARGIN), f"frame {f}: score {check.frame_scores[f]:.2f}", fill=(255, 255, 255),
                  font=font)
        for n in range(len(check.nouns)):
            draw.text((TITLE_MARGIN, TITLE_MARGIN + (n + 1) * line_h), check_title(check, f, n), fill=colours[n],
                      font=font)
            for box in check.boxes[f][n]:
                x0, y0 = box.x0 * scale, box.y0 * scale + title_h
                x1, y1 = box.x1 * scale, box.y1 * scale + title_h
                draw.rectangle((x0, y0, x1, y1), outline=colours[n], width=2)
                label = f"{check.nouns[n]} {box.score:.2f}"
                ty = max(title_h, y0 - line_h)
                draw.rectangle((x0, ty, x0 + font.getlength(label) + 2, ty + line_h - 1), fill=colours[n])
                draw.text((x0 + 1, ty), label, fill=(0, 0, 0), font=font)
        out.append(canvas)
    return frames_to_image(out) if out else torch.zeros(1, title_h, size[0], 3, device="cpu")
