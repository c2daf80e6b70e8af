"""Count CountWorld objects on DECODED FRAMES, as a detector does: the judge of the closed loop.

`counter.py` (the benchmark's metric) counts on the latent: each latent pixel takes its nearest
16-d world code, whose noun part lies in the null space of Wan's latent preview matrix.  The
preview pictures (`world.decode_rgb`, NuminaLatentRGBDecode) therefore show only an object's
COLOUR, and its noun only through its outline.  A judge of those pictures was built and measured
first (colour segmentation, then the outline matched against the world's own circle / square /
triangle renders): exact on the world's own videos, but on the committed models' outputs it agreed
with the latent counter in only about a third of the noun-frames (0.35 / 0.33 on 24 tuning
prompts), because the models draw ragged blobs whose noun lives in the invisible part of the code
(per blob the outline named the latent's noun 38-39% of the time, below the 41-43% of always
naming the commonest noun), and faint objects win their nearest code through that part too.
A judge that sees something else than the metric cannot show what a closed loop is worth.

So the judge's pictures are **code pictures** (:func:`code_pictures`; the testing pack's
NuminaCountWorldVAE decodes to them): every latent pixel painted in the colour of its nearest
world code, the noun shown as a shade of it (circles the colour itself, squares darker, triangles
lighter), upsampled.  :class:`CountWorldFrameCounter` reads a picture the way a detector reads a
scene: each pixel's nearest palette colour names a (colour, noun), each noun's 8-connected regions
of at least ``counter.MIN_AREA`` latent pixels are its objects.  On code pictures it counts what
the latent counter counts (tests/countworld/test_frame_counter.py; benchmarks/
frame_counter_agreement.py on model outputs): a near-perfect judge, as the benchmark labels it.
:class:`ErringCounter` wraps any counter and makes seeded, reproducible mistakes (one box more or
one box fewer in a share of the (frame, noun) pairs): what a real detector's errors cost a closed
loop.
"""
from __future__ import annotations

import hashlib
from typing import Optional, Sequence, Union

import numpy as np
import torch
from skimage.measure import label, regionprops

from countworld import counter, world
from numina_ops.judge import Box, ObjectCounter
from numina_ops.records import NuminaInputError

_PROTOTYPE_LABELS = world.CODEBOOK.prototypes()[1]          # None (background), then (colour, noun)
NOUN_SHADE = {"circles": 0.0, "squares": -0.45, "triangles": 0.5}   # <0: toward black, >0: toward white


def _palette() -> np.ndarray:
    """[13, 3] RGB in [0, 1] of each world code in a code picture, in CODEBOOK.prototypes() order:
    grey for the background; a colour as the preview shows it ((v + 1) / 2 of the world's colour),
    shaded by the noun."""
    colours = []
    for lab in _PROTOTYPE_LABELS:
        if lab is None:
            colours.append((np.array(world._BACKGROUND_RGB) + 1.0) / 2.0)
            continue
        base = (np.array(world._COLOUR_RGB[lab[0]]) + 1.0) / 2.0
        shade = NOUN_SHADE[lab[1]]
        colours.append(base * (1.0 + shade) if shade < 0 else base + (1.0 - base) * shade)
    return np.stack(colours).astype(np.float32)


PALETTE = _palette()
_NOUN_OF_COLOUR = np.array([-1 if lab is None else world.NOUNS.index(lab[1]) for lab in _PROTOTYPE_LABELS])


def code_pictures(normalised: Union[np.ndarray, torch.Tensor], upscale: int = 8) -> np.ndarray:
    """A normalised latent [16, T, H, W] -> float frames [T, H*up, W*up, 3] in [0, 1]: every latent
    pixel painted in the palette colour of its nearest world code (``counter.code_map``)."""
    codes = counter.code_map(normalised)
    return PALETTE[codes].repeat(upscale, axis=1).repeat(upscale, axis=2)


def world_noun(noun: str) -> str:
    """The world's key for a noun as a prompt writes it ("circle", "circles" -> "circles")."""
    key = world.plural_noun(str(noun).strip().lower())
    if key not in world.NOUNS:
        known = ", ".join(f"{world.SINGULAR[n]}/{n}" for n in world.NOUNS)
        raise NuminaInputError(f"the CountWorld frame counter knows only the world's nouns ({known}); "
                               f"got {noun!r} (a colour or number is not part of the noun)")
    return key


def _as_frames(frames: Union[torch.Tensor, np.ndarray]) -> np.ndarray:
    """IMAGE [F, H, W, 3] (float in [0, 1], or uint8) -> float32 numpy."""
    if isinstance(frames, torch.Tensor):
        array = frames.detach().cpu()
        array = array.float().div(255.0) if array.dtype == torch.uint8 else array.float()
        array = array.numpy()
    else:
        array = np.asarray(frames)
        array = array.astype(np.float32) / 255.0 if array.dtype == np.uint8 else array.astype(np.float32)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise NuminaInputError(f"expected frames IMAGE [frames, height, width, 3], got shape {tuple(array.shape)}")
    return array


def pixels_per_latent_pixel(height: int, width: int) -> int:
    """The frame's integer upscale of CountWorld's 32 x 32 latent (8 for the VAE-sized decode)."""
    scale = width // world.LATENT_WIDTH
    if scale < 1 or width != scale * world.LATENT_WIDTH or height != scale * world.LATENT_HEIGHT:
        raise NuminaInputError(
            f"the CountWorld frame counter expects frames of an integer upscale of the "
            f"{world.LATENT_HEIGHT} x {world.LATENT_WIDTH} latent (e.g. 256 x 256); got {height} x {width}")
    return scale


def segment(frame: np.ndarray) -> np.ndarray:
    """[H, W] int: index into PALETTE (CODEBOOK.prototypes() order) of each pixel's nearest colour."""
    d2 = ((frame[:, :, None, :] - PALETTE[None, None]) ** 2).sum(-1)
    return d2.argmin(-1)


class CountWorldFrameCounter:
    """:class:`numina_ops.judge.ObjectCounter` for CountWorld's code pictures (nearest palette colour,
    then each noun's connected regions)."""

    def __init__(self, min_area: int = counter.MIN_AREA) -> None:
        self.min_area = int(min_area)

    def describe(self) -> str:
        return ("CountWorld frame counter (code pictures: nearest palette colour, each noun's 8-connected regions "
                f"of at least {self.min_area} latent px; near-perfect on CountWorld)")

    def objects(self, frame: np.ndarray) -> list[tuple[str, Box]]:
        """Every object of one frame [H, W, 3] as (noun, box in frame pixels)."""
        height, width = frame.shape[:2]
        scale = pixels_per_latent_pixel(height, width)
        nouns = _NOUN_OF_COLOUR[segment(frame)]
        found: list[tuple[str, Box]] = []
        for n, noun in enumerate(world.NOUNS):
            for region in regionprops(label(nouns == n, connectivity=2)):
                if region.area >= self.min_area * scale * scale:
                    y0, x0, y1, x1 = region.bbox
                    found.append((noun, Box(float(x0), float(y0), float(x1), float(y1))))
        return found

    def detect(self, frames: Union[torch.Tensor, np.ndarray], nouns: Sequence[str],
               device: Optional[torch.device] = None) -> list[list[list[Box]]]:
        keys = [world_noun(n) for n in nouns]
        array = _as_frames(frames)
        seen: dict[bytes, list[tuple[str, Box]]] = {}      # identical frames (Wan's 4 per latent frame) once
        result = []
        for frame in array:
            digest = hashlib.blake2b(np.ascontiguousarray(frame).tobytes(), digest_size=16).digest()
            if digest not in seen:
                seen[digest] = self.objects(frame)
            objects = seen[digest]
            result.append([[box for noun, box in objects if noun == key] for key in keys])
        return result


def frame_digest(frame: np.ndarray) -> int:
    """A stable 64-bit hash of one frame's bytes (float32)."""
    data = np.ascontiguousarray(frame, dtype=np.float32).tobytes()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


class ErringCounter:
    """Wraps an ObjectCounter and makes seeded detector mistakes: in each (frame, noun), with
    probability ``rate``, one box more or one box fewer (50/50; when there is none to drop, one
    more).  The mistakes depend only on the seed, the frame's bytes and the noun, never on the order
    of calls, so identical frames get identical mistakes and a retry with other frames gets others."""

    def __init__(self, inner: ObjectCounter, rate: float = 0.2, seed: int = 0) -> None:
        if not 0.0 <= float(rate) <= 1.0:
            raise NuminaInputError(f"error rate must lie in [0, 1], got {rate}")
        self.inner, self.rate, self.seed = inner, float(rate), int(seed)

    def describe(self) -> str:
        return f"{self.inner.describe()}, with simulated mistakes (one box more or fewer) at rate {self.rate:g}, seed {self.seed}"

    def _generator(self, frame_hash: int, noun: str) -> np.random.Generator:
        noun_hash = int.from_bytes(hashlib.blake2b(noun.encode(), digest_size=8).digest(), "little")
        return np.random.default_rng([self.seed & 0xFFFFFFFFFFFFFFFF, frame_hash, noun_hash])

    def detect(self, frames: Union[torch.Tensor, np.ndarray], nouns: Sequence[str],
               device: Optional[torch.device] = None) -> list[list[list[Box]]]:
        boxes = self.inner.detect(frames, nouns, device=device)
        if self.rate == 0.0:
            return boxes
        array = _as_frames(frames)
        height, width = array.shape[1:3]
        out = []
        for frame, per_frame in zip(array, boxes):
            frame_hash = frame_digest(frame)
            changed = []
            for noun, noun_boxes in zip(nouns, per_frame):
                noun_boxes = list(noun_boxes)
                rng = self._generator(frame_hash, world.plural_noun(str(noun).strip().lower()))
                err, drop, pick = rng.random(), rng.random() < 0.5, rng.random()
                if err < self.rate:
                    if drop and noun_boxes:
                        del noun_boxes[int(pick * len(noun_boxes))]
                    else:
                        side = min(height, width) / world.LATENT_WIDTH * 2 * world._BASE_SIZE
                        x0 = float(rng.uniform(0, max(width - side, 1.0)))
                        y0 = float(rng.uniform(0, max(height - side, 1.0)))
                        noun_boxes.append(Box(x0, y0, min(x0 + side, width), min(y0 + side, height), score=0.5))
                changed.append(noun_boxes)
            out.append(changed)
        return out
