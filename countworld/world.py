"""CountWorld: a seeded synthetic video world whose object counts are known exactly.

Representation (why): this CPU cannot train a Wan VAE and a video model in one hour, so the world
is defined directly in the Wan 2.1 model's *normalised* latent space (what `Wan21.process_in`
yields, i.e. what the diffusion model denoises).  Every (colour, noun) pair has a fixed 16-d code:
  code = row-space part (chosen so ComfyUI's Wan21 `latent_rgb_factors` preview decodes it to the
         colour's RGB) + a noun part and a colour part in the null space of that preview matrix
         (invisible in the preview, but they make nouns and colours far apart for the model).
The background is the code that previews as mid grey.  Pictures come from a FIXED decode:
process_out, then the preview matrix, upsampled 8x (`decode_rgb`).

Geometry: latent 16 x 2 frames x 32 x 32 (EmptyHunyuanLatentVideo width=height=256, length=5);
tokens are 16 x 16 per latent frame after the (1, 2, 2) patch.  Objects are anti-aliased circles,
squares and triangles about 5.5 latent pixels (about 3 tokens) across, moving slowly (0.5-1.5
latent px per latent frame).  Why this size: an object must cover several attention tokens for any
method that reads instances from attention maps to resolve it, as objects do in real Wan videos
(a 480p frame is 30 x 52 tokens); a first version with 1.5-token objects could not be read at all.
Objects never overlap: the solid cores (coverage >= 0.5) of two objects are always at least one
latent pixel apart (8-connected), while their soft rims may meet ("touching" in the decoded picture;
a pixel shows the object that covers it most).  Ground
truth is the number of objects per noun per latent frame.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

LATENT_CHANNELS = 16
LATENT_FRAMES = 2
LATENT_HEIGHT = 32
LATENT_WIDTH = 32
VIDEO_WIDTH = LATENT_WIDTH * 8      # EmptyHunyuanLatentVideo inputs that give this latent
VIDEO_HEIGHT = LATENT_HEIGHT * 8
VIDEO_LENGTH = (LATENT_FRAMES - 1) * 4 + 1
MAX_COUNT = 8                       # per noun
MAX_OBJECTS = 10                    # per video (room on a 32 x 32 latent)

NOUNS = ("circles", "squares", "triangles")
SINGULAR = {"circles": "circle", "squares": "square", "triangles": "triangle"}
COLOURS = ("red", "blue", "green", "yellow")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
SUFFIXES = ("", " drifting on a grey background", " floating on a grey background",
            " moving on a plain grey background", " sliding on a grey background")

# preview colours in ComfyUI's latent-preview convention (value v shows as (v + 1) / 2)
_COLOUR_RGB = {"red": (0.85, -0.75, -0.75), "blue": (-0.75, -0.55, 0.85),
               "green": (-0.65, 0.75, -0.65), "yellow": (0.85, 0.8, -0.7)}
_BACKGROUND_RGB = (0.0, 0.0, 0.0)
_NOUN_NULL_NORM = 2.6
_COLOUR_NULL_NORM = 1.4
_CODE_SEED = 20240611
_SUPERSAMPLE = 4
_BASE_SIZE = 2.8                    # circle radius in latent pixels
SPEED_RANGE = (0.5, 1.5)            # latent pixels per latent frame


# ----------------------------------------------------------------------------- codes and decoding
def _wan21_constants() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Wan21 latent statistics and preview matrix (the values of ComfyUI's `latent_formats.Wan21`,
    restated so that the world does not need ComfyUI; a test checks they agree)."""
    factors = np.array([
        [-0.1299, -0.1692, 0.2932], [0.0671, 0.0406, 0.0442], [0.3568, 0.2548, 0.1747],
        [0.0372, 0.2344, 0.1420], [0.0313, 0.0189, -0.0328], [0.0296, -0.0956, -0.0665],
        [-0.3477, -0.4059, -0.2925], [0.0166, 0.1902, 0.1975], [-0.0412, 0.0267, -0.1364],
        [-0.1293, 0.0740, 0.1636], [0.0680, 0.3019, 0.1128], [0.0032, 0.0581, 0.0639],
        [-0.1251, 0.0927, 0.1699], [0.0060, -0.0633, 0.0005], [0.3477, 0.2275, 0.2950],
        [0.1984, 0.0913, 0.1861]], dtype=np.float64)
    bias = np.array([-0.1835, -0.0868, -0.3360])
    mean = np.array([-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
                     0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921])
    std = np.array([2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
                    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160])
    return factors, bias, mean, std


def _preview_affine() -> tuple[np.ndarray, np.ndarray]:
    """rgb = z @ A + c for a normalised latent vector z (process_out then the preview matrix)."""
    factors, bias, mean, std = _wan21_constants()
    return std[:, None] * factors, mean @ factors + bias


@dataclass(frozen=True)
class Codebook:
    background: np.ndarray                      # [16]
    codes: dict[tuple[str, str], np.ndarray]    # (colour, noun) -> [16]

    def prototypes(self) -> tuple[np.ndarray, list[Optional[tuple[str, str]]]]:
        """All codes stacked [n, 16] with their labels (None for the background)."""
        labels: list[Optional[tuple[str, str]]] = [None] + sorted(self.codes)
        return np.stack([self.background] + [self.codes[k] for k in labels[1:]]), labels


def build_codebook() -> Codebook:
    """The fixed latent codes (deterministic; independent of any sampling seed)."""
    a, c = _preview_affine()                      # a: [16, 3]
    pinv = a @ np.linalg.inv(a.T @ a)             # minimum-norm z with z @ a = target
    null_basis = np.linalg.svd(a.T)[2][3:]        # [13, 16] orthonormal null space of a.T
    rng = np.random.default_rng(_CODE_SEED)

    def null_vector(norm: float) -> np.ndarray:
        v = rng.standard_normal(null_basis.shape[0]) @ null_basis
        return v * norm / np.linalg.norm(v)

    background = (np.array(_BACKGROUND_RGB) - c) @ pinv.T
    noun_parts = {noun: null_vector(_NOUN_NULL_NORM) for noun in NOUNS}
    colour_parts = {colour: null_vector(_COLOUR_NULL_NORM) for colour in COLOURS}
    codes = {}
    for colour in COLOURS:
        visible = (np.array(_COLOUR_RGB[colour]) - c) @ pinv.T
        for noun in NOUNS:
            codes[(colour, noun)] = (visible + noun_parts[noun] + colour_parts[colour]).astype(np.float32)
    return Codebook(background.astype(np.float32), codes)


CODEBOOK = build_codebook()


def decode_rgb(latent: np.ndarray, upscale: int = 8) -> np.ndarray:
    """Fixed decode of a normalised latent [16, T, H, W] to uint8 frames [T, H*up, W*up, 3]."""
    latent = np.asarray(latent, dtype=np.float64)
    if latent.ndim != 4 or latent.shape[0] != LATENT_CHANNELS:
        raise ValueError(f"decode_rgb expects a normalised latent [16, T, H, W], got shape {latent.shape}")
    a, c = _preview_affine()
    rgb = np.einsum("cthw,ck->thwk", latent, a) + c
    rgb = np.clip((rgb + 1.0) / 2.0, 0.0, 1.0)
    rgb = rgb.repeat(upscale, axis=1).repeat(upscale, axis=2)
    return (rgb * 255 + 0.5).astype(np.uint8)


# ----------------------------------------------------------------------------- prompts
@dataclass(frozen=True)
class Target:
    count: int
    colour: str
    noun: str                 # plural key ("circles"); the prompt says "circle" for one

    @property
    def phrase(self) -> str:
        word = SINGULAR[self.noun] if self.count == 1 else self.noun
        return f"{NUMBER_WORDS[self.count]} {self.colour} {word}"


def make_prompt(targets: Sequence[Target], suffix: str = "") -> str:
    """'two red circles and three blue squares drifting on a grey background' ('' for no targets)."""
    if not targets:
        return ""
    return " and ".join(t.phrase for t in targets) + suffix


_PHRASE = re.compile(r"\b(" + "|".join(NUMBER_WORDS[1:]) + r")\s+(" + "|".join(COLOURS) + r")\s+("
                     + "|".join(list(NOUNS) + list(SINGULAR.values())) + r")\b")


def plural_noun(noun: str) -> str:
    """The world's key for a noun ("circle" -> "circles"); other words are returned as they are."""
    return next((plural for plural, single in SINGULAR.items() if noun == single), noun)


def parse_prompt(prompt: str) -> tuple[Target, ...]:
    """The targets of a CountWorld prompt (inverse of make_prompt)."""
    return tuple(Target(NUMBER_WORDS.index(n), colour, plural_noun(noun))
                 for n, colour, noun in _PHRASE.findall(prompt))


# ----------------------------------------------------------------------------- scenes
@dataclass(frozen=True)
class WorldObject:
    colour: str
    noun: str
    size: float
    centres: tuple[tuple[float, float], ...]      # (y, x) per latent frame, latent pixels


@dataclass(frozen=True)
class WorldVideo:
    prompt: str
    targets: tuple[Target, ...]                   # () for an empty (unconditional) prompt
    objects: tuple[WorldObject, ...]
    latent: np.ndarray                            # [16, T, H, W] float32, normalised space
    instances: np.ndarray                         # [T, H, W] int16: 0 background, i+1 = objects[i] core

    def counts(self) -> dict[str, np.ndarray]:
        """Ground truth: objects per noun per latent frame (every noun of the world, 0 if absent)."""
        out = {noun: np.zeros(self.latent.shape[1], dtype=np.int64) for noun in NOUNS}
        for t in range(self.latent.shape[1]):
            present = np.unique(self.instances[t])
            for label in present[present > 0]:
                out[self.objects[label - 1].noun][t] += 1
        return out


def _shape_inside(noun: str, dy: np.ndarray, dx: np.ndarray, size: float) -> np.ndarray:
    if noun == "circles":
        return dy * dy + dx * dx <= size * size
    if noun == "squares":
        half = 0.87 * size
        return np.maximum(np.abs(dy), np.abs(dx)) <= half
    if noun == "triangles":             # equilateral, pointing up (y grows downwards)
        r = 1.55 * size
        dy = dy - 0.25 * r              # centre the bounding box vertically
        return (dy >= -r) & (dy <= 0.5 * r) & (np.abs(dx) * math.sqrt(3.0) <= dy + r)
    raise ValueError(f"unknown noun {noun!r}; CountWorld knows {NOUNS}")


def _amplitude(noun: str, centre: tuple[float, float], size: float, h: int, w: int) -> np.ndarray:
    """Anti-aliased coverage [h, w] in [0, 1] of one object (supersampled)."""
    s = _SUPERSAMPLE
    ys = (np.arange(h * s) + 0.5) / s
    xs = (np.arange(w * s) + 0.5) / s
    inside = _shape_inside(noun, ys[:, None] - centre[0], xs[None, :] - centre[1], size)
    return inside.reshape(h, s, w, s).mean(axis=(1, 3))


def _dilate8(mask: np.ndarray) -> np.ndarray:
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    row = out.copy()
    out[:, 1:] |= row[:, :-1]
    out[:, :-1] |= row[:, 1:]
    return out


def render(targets_or_objects: Sequence[tuple[str, str]], rng: np.random.Generator,
           frames: int = LATENT_FRAMES, height: int = LATENT_HEIGHT, width: int = LATENT_WIDTH,
           max_tries: int = 200) -> tuple[tuple[WorldObject, ...], np.ndarray, np.ndarray]:
    """Place and move one object per (colour, noun) entry; returns objects, latent, instance map.

    Placement is rejection sampling: an object is accepted when its core stays inside the frame
    and at least one latent pixel away (8-connected) from every earlier core in every frame."""
    objects: list[WorldObject] = []
    cores: list[list[np.ndarray]] = []
    amps: list[list[np.ndarray]] = []
    occupied = [np.zeros((height, width), dtype=bool) for _ in range(frames)]
    order = list(targets_or_objects)
    for colour, noun in order:
        for _ in range(max_tries):
            size = _BASE_SIZE * rng.uniform(0.9, 1.1)
            margin = 1.2 * size
            speed = rng.uniform(*SPEED_RANGE)
            angle = rng.uniform(0, 2 * math.pi)
            vy, vx = speed * math.sin(angle), speed * math.cos(angle)
            span_y, span_x = abs(vy) * (frames - 1), abs(vx) * (frames - 1)
            if height - 2 * margin - span_y <= 0 or width - 2 * margin - span_x <= 0:
                continue
            y0 = rng.uniform(margin, height - margin - span_y) + (span_y if vy < 0 else 0.0)
            x0 = rng.uniform(margin, width - margin - span_x) + (span_x if vx < 0 else 0.0)
            centres = tuple((y0 + vy * t, x0 + vx * t) for t in range(frames))
            a = [_amplitude(noun, c, size, height, width) for c in centres]
            core = [ai >= 0.5 for ai in a]
            if any(not c.any() for c in core):
                continue
            if any((_dilate8(core[t]) & occupied[t]).any() for t in range(frames)):
                continue
            break
        else:
            raise RuntimeError(f"could not place {len(order)} objects on a {height}x{width} latent; "
                               f"at most {MAX_OBJECTS} fit")
        for t in range(frames):
            occupied[t] |= core[t]
        objects.append(WorldObject(colour, noun, float(size), centres))
        cores.append(core)
        amps.append(a)

    latent = np.empty((LATENT_CHANNELS, frames, height, width), dtype=np.float32)
    instances = np.zeros((frames, height, width), dtype=np.int16)
    bg = CODEBOOK.background
    codes = np.stack([CODEBOOK.codes[(obj.colour, obj.noun)] - bg for obj in objects]) if objects else None
    for t in range(frames):
        frame = np.broadcast_to(bg[:, None, None], (LATENT_CHANNELS, height, width)).astype(np.float64)
        if objects:
            # each pixel shows the object covering it most: rims of neighbours meet without summing,
            # so a gap pixel between two cores stays below half coverage (background)
            stack = np.stack([amps[i][t] for i in range(len(objects))])
            winner = stack.argmax(0)
            frame = frame + stack.max(0)[None] * codes[winner].transpose(2, 0, 1)
        for i in range(len(objects)):
            instances[t][cores[i][t]] = i + 1
        latent[:, t] = frame
    return tuple(objects), latent, instances


def video_for(targets: Sequence[Target], rng: np.random.Generator, suffix: str = "",
              prompt: Optional[str] = None) -> WorldVideo:
    """A world video showing exactly the given targets."""
    if sum(t.count for t in targets) > MAX_OBJECTS:
        raise ValueError(f"{sum(t.count for t in targets)} objects do not fit; at most {MAX_OBJECTS}")
    entries = [(t.colour, t.noun) for t in targets for _ in range(t.count)]
    for _ in range(50):                  # a crowded greedy placement can dead-end: start the scene again
        rng.shuffle(entries)
        try:
            objects, latent, instances = render(entries, rng, max_tries=60)
            break
        except RuntimeError:
            continue
    else:
        raise RuntimeError(f"could not place {len(entries)} objects after 50 fresh starts")
    text = make_prompt(targets, suffix) if prompt is None else prompt
    return WorldVideo(text, tuple(targets), objects, latent, instances)


def random_targets(rng: np.random.Generator, nouns: int) -> tuple[Target, ...]:
    """`nouns` distinct nouns with distinct colours, each count uniform in 1..8, at most MAX_OBJECTS."""
    while True:
        chosen = rng.choice(len(NOUNS), size=nouns, replace=False)
        colours = rng.choice(len(COLOURS), size=nouns, replace=False)
        counts = rng.integers(1, MAX_COUNT + 1, size=nouns)
        if counts.sum() <= MAX_OBJECTS:
            return tuple(Target(int(c), COLOURS[k], NOUNS[n]) for c, k, n in zip(counts, colours, chosen))


def sample_video(rng: np.random.Generator, empty_fraction: float = 0.1,
                 noun_weights: Sequence[float] = (0.55, 0.3, 0.15),
                 excluded_prompts: frozenset[str] = frozenset()) -> WorldVideo:
    """One training video: 1-3 nouns (noun_weights); with probability empty_fraction the prompt is ''
    (the picture still shows a random scene, so the unconditional model learns the world).
    Prompts in excluded_prompts (held-out and tuning sets) are never produced."""
    while True:
        nouns = int(rng.choice(len(noun_weights), p=np.asarray(noun_weights) / np.sum(noun_weights))) + 1
        targets = random_targets(rng, nouns)
        suffix = SUFFIXES[int(rng.integers(len(SUFFIXES)))]
        empty = rng.random() < empty_fraction
        prompt = "" if empty else make_prompt(targets, suffix)
        if prompt in excluded_prompts:
            continue
        video = video_for(targets, rng, suffix, prompt=prompt)
        if empty:
            return WorldVideo("", (), video.objects, video.latent, video.instances)
        return video


def training_batch(seed: int, step: int, batch: int,
                   excluded_prompts: frozenset[str] = frozenset()) -> list[WorldVideo]:
    """The deterministic batch of one training step."""
    rng = np.random.default_rng([seed, step])
    return [sample_video(rng, excluded_prompts=excluded_prompts) for _ in range(batch)]
