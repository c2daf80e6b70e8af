"""Count CountWorld objects per noun per latent frame (scikit-image connected components).

Works on the model's normalised latent space (`latent_format.process_in(KSampler output)`): each
latent pixel is given the nearest of the world's fixed codes (background or a (colour, noun) code);
the pixels of one noun form connected components (8-connected), and components smaller than
`min_area` latent pixels are specks, not objects.  MIN_AREA is about a third of the smallest
object core the world draws (16 latent pixels; the first, 20 x 20 world used 2 of about 6).
World objects' cores are always one latent pixel apart, so on the world's own videos this is
exact (tests/countworld/test_counter.py).
"""
from __future__ import annotations

from typing import Union

import numpy as np
import torch
from skimage.measure import label

from countworld.world import CODEBOOK, LATENT_CHANNELS, NOUNS

MIN_AREA = 6

_PROTOTYPES, _LABELS = CODEBOOK.prototypes()
_NOUN_OF_PROTOTYPE = np.array([-1 if lab is None else NOUNS.index(lab[1]) for lab in _LABELS])


def _as_latent(latent: Union[np.ndarray, torch.Tensor]) -> np.ndarray:
    array = latent.detach().float().cpu().numpy() if isinstance(latent, torch.Tensor) else np.asarray(latent, np.float32)
    if array.ndim != 4 or array.shape[0] != LATENT_CHANNELS:
        raise ValueError(f"expected one normalised latent [16, T, H, W], got shape {array.shape}; "
                         "for a KSampler batch use count_samples()")
    return array


def code_map(latent: Union[np.ndarray, torch.Tensor]) -> np.ndarray:
    """[T, H, W] int: index into CODEBOOK.prototypes() of each latent pixel's nearest code (0 background)."""
    z = _as_latent(latent)
    flat = z.reshape(LATENT_CHANNELS, -1).T                                   # [N, 16]
    d2 = ((flat[:, None, :] - _PROTOTYPES[None].astype(np.float32)) ** 2).sum(-1)
    return d2.argmin(1).reshape(z.shape[1:])


def noun_map(latent: Union[np.ndarray, torch.Tensor]) -> np.ndarray:
    """[T, H, W] int: -1 background, else the index in NOUNS of the nearest code's noun."""
    return _NOUN_OF_PROTOTYPE[code_map(latent)]


def _objects_per_frame(masks: np.ndarray, min_area: int) -> np.ndarray:
    """[T, H, W] bool -> [T]: 8-connected components of at least min_area pixels per frame."""
    counts = np.zeros(masks.shape[0], dtype=np.int64)
    for t, mask in enumerate(masks):
        areas = np.bincount(label(mask, connectivity=2).ravel())[1:]
        counts[t] = int((areas >= min_area).sum())
    return counts


def count_latent_in_colour(latent: Union[np.ndarray, torch.Tensor], colours: dict[str, str],
                           min_area: int = MIN_AREA) -> dict[str, np.ndarray]:
    """Stricter: objects per noun per frame counting only pixels of the asked colour
    ({noun: colour}), so a blob of the right shape code but another colour, or a speckle of
    mixed codes, does not count."""
    codes = code_map(latent)
    return {noun: _objects_per_frame(codes == _LABELS.index((colour, noun)), min_area)
            for noun, colour in colours.items()}


def count_latent(latent: Union[np.ndarray, torch.Tensor], min_area: int = MIN_AREA) -> dict[str, np.ndarray]:
    """Objects per noun per latent frame: {noun: int array [T]} for every noun of the world."""
    nouns = noun_map(latent)
    return {noun: _objects_per_frame(nouns == i, min_area) for i, noun in enumerate(NOUNS)}


def count_samples(samples: torch.Tensor, min_area: int = MIN_AREA) -> list[dict[str, np.ndarray]]:
    """Counts for a KSampler output batch [B, 16, T, H, W] (raw latent: process_in is applied here)."""
    if samples.ndim != 5 or samples.shape[1] != LATENT_CHANNELS:
        raise ValueError(f"expected a Wan latent batch [B, 16, T, H, W], got shape {tuple(samples.shape)}")
    normalised = to_model_space(samples)
    return [count_latent(normalised[b], min_area) for b in range(normalised.shape[0])]


def to_model_space(samples: torch.Tensor) -> torch.Tensor:
    """Wan21 `process_in` (the model's normalised space), without importing ComfyUI."""
    from countworld.world import _wan21_constants

    _, _, mean, std = _wan21_constants()
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1, 1)
    return (samples.float() - mean_t) / std_t


def to_latent_space(normalised: torch.Tensor) -> torch.Tensor:
    """Wan21 `process_out`: a normalised latent batch back to what KSampler returns."""
    from countworld.world import _wan21_constants

    _, _, mean, std = _wan21_constants()
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1, 1)
    return normalised.float() * std_t + mean_t
