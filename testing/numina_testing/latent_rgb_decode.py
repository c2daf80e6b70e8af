"""NuminaLatentRGBDecode (NUMINA/testing): pictures of a latent-space world without a VAE.

CountWorld (countworld/world.py) is defined in the Wan latent space so that ComfyUI's own
latent preview matrix (`latent_rgb_factors` and its bias, of the model's latent format) shows its
objects in their colours.  This node applies exactly the world's fixed decode (`world.decode_rgb`:
the normalised latent through process_out -- i.e. the sampler's output as VAEDecode receives it --
then the preview matrix, value v shown as (v + 1) / 2) and upsamples it to the VAE's 8x, so the
demo's frames are real pictures.  (ComfyUI's live sampler preview applies the same matrix to the
model-space x0 instead, i.e. after process_in; on CountWorld that shows washed-out colours, and an
earlier version of this node did the same.)  For real Wan models use VAEDecode.
"""
from __future__ import annotations

import torch
from comfy_api.latest import io


def latent_rgb(model, samples: torch.Tensor, upscale: int) -> torch.Tensor:
    """[B, C, T, H, W] sampler output -> IMAGE [B*(1+4(T-1)), H*up, W*up, 3] in [0, 1] through the
    preview matrix of `model`'s latent format: the sampler's output (process_out of the model's
    normalised latent, as world.decode_rgb does) times the matrix, plus its bias, then (v + 1) / 2;
    like Wan's VAE, the first latent frame gives one video frame and every later one four."""
    latent_format = model.model.latent_format
    if latent_format.latent_rgb_factors is None:
        raise ValueError(f"{type(latent_format).__name__} has no latent preview matrix; use VAEDecode")
    if samples.ndim != 5:
        raise ValueError(f"expected a video latent [B, C, T, H, W], got shape {tuple(samples.shape)}")
    factors = torch.tensor(latent_format.latent_rgb_factors, dtype=torch.float32, device=samples.device)        # [C, 3]
    bias = torch.tensor(latent_format.latent_rgb_factors_bias or [0.0, 0.0, 0.0], dtype=torch.float32,
                        device=samples.device)
    rgb = torch.einsum("bcthw,ck->bthwk", samples.float(), factors) + bias
    rgb = ((rgb + 1.0) / 2.0).clamp(0.0, 1.0)
    rgb = rgb.repeat_interleave(upscale, dim=2).repeat_interleave(upscale, dim=3)
    repeats = torch.tensor([1] + [4] * (rgb.shape[1] - 1), device=rgb.device)
    rgb = rgb.repeat_interleave(repeats, dim=1)
    return rgb.reshape(-1, *rgb.shape[2:])


class NuminaLatentRGBDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="NuminaLatentRGBDecode",
            display_name="NUMINA Latent RGB Decode (testing)",
            category="NUMINA/testing",
            description="Fixed decode of a latent through the model's latent preview matrix, for the "
                        "latent-space CountWorld demo (Wan's frame count: 1 + 4 per later latent frame). "
                        "Not for real Wan videos: use VAEDecode.",
            inputs=[
                io.Model.Input("model", tooltip="The model whose latent format defines the preview matrix."),
                io.Latent.Input("samples", tooltip="Sampler output."),
                io.Int.Input("upscale", default=8, min=1, max=16, tooltip="Pixels per latent pixel (Wan's VAE: 8)."),
            ],
            outputs=[io.Image.Output()],
        )

    @classmethod
    def execute(cls, model, samples, upscale) -> io.NodeOutput:
        return io.NodeOutput(latent_rgb(model, samples["samples"], upscale))
