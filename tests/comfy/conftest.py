"""Tests on a real ComfyUI (the one scripts/setup_env.sh built, or $COMFYUI_PATH)."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import comfy_runtime  # noqa: E402

TINY_WAN = "numina_tiny_wan21_t2v.safetensors"
TINY_VAE = "numina_tiny_wan21_vae.safetensors"
TINY_TEXT = "numina_tiny_umt5.safetensors"


@pytest.fixture(scope="session")
def comfy():
    """ComfyUI booted in-process with the custom nodes registered; yields NODE_CLASS_MAPPINGS.
    One torch thread: on this 2-core machine the tiny models sample several times faster so."""
    import torch
    torch.set_num_threads(1)
    comfy_runtime.bootstrap()
    return comfy_runtime.load_custom_nodes()


@pytest.fixture(scope="session")
def pack(comfy):
    """The pack's own modules, as ComfyUI's loader imported them."""
    class Pack:
        def module(self, node_name):
            return comfy_runtime.pack_module(node_name)
    return Pack()


@pytest.fixture(scope="session")
def tiny_clip(comfy):
    return comfy["NuminaTinyTextEncoderLoader"].execute(TINY_TEXT).result[0]


@pytest.fixture(scope="session")
def tiny_model(comfy):
    return comfy["UNETLoader"]().load_unet(TINY_WAN, "default")[0]


def plain_graph(prompt="three red circles drifting on a grey background", seed=7, steps=4, prefix="numina_test"):
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
