"""The tiny fixtures scripts/make_fixtures.py builds, by file name, and a plain graph on them."""
from __future__ import annotations

from typing import Any

TINY_WAN = "numina_tiny_wan21_t2v.safetensors"
TINY_VAE = "numina_tiny_wan21_vae.safetensors"
TINY_TEXT = "numina_tiny_umt5.safetensors"


def plain_graph(prompt: str = "three red circles drifting on a grey background", seed: int = 7, steps: int = 4,
                prefix: str = "numina_test") -> dict[str, Any]:
    """Loader -> text -> empty video latent -> KSampler -> VAE decode -> save, in API format."""
    return {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": TINY_WAN, "weight_dtype": "default"}},
        "2": {"class_type": "NuminaTinyTextEncoderLoader", "inputs": {"text_encoder": TINY_TEXT}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": prompt, "clip": ["2", 0]}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["2", 0]}},
        "5": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 64, "height": 64, "length": 5, "batch_size": 1}},
        "6": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "seed": seed, "steps": steps, "cfg": 2.0,
                                                   "sampler_name": "euler", "scheduler": "simple",
                                                   "positive": ["3", 0], "negative": ["4", 0],
                                                   "latent_image": ["5", 0], "denoise": 1.0}},
        "7": {"class_type": "VAELoader", "inputs": {"vae_name": TINY_VAE}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["7", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": prefix}},
    }
