"""NuminaLatentRGBDecode (NUMINA/testing): pictures of a latent-space world without a VAE.

CountWorld (countworld/world.py) is defined in the Wan latent space so that ComfyUI's own
latent preview matrix (`latent_rgb_factors` of the model's latent format) shows its objects in
their colours.  This node applies exactly that fixed decode -- the same one ComfyUI's live
sampler previews use -- and upsamples it to the VAE's 8x, so the demo's frames are real
pictures.  For real Wan models use VAEDecode.
"""
from __future__ import annotations

import torch
from comfy_api.latest import io


def latent_rgb(model, samples: torch.Tensor, upscale: int) -> torch.Tensor:
    """[B, C, T, H, W] sampler output -> IMAGE [B*(1+4(T-1)), H*up, W*up, 3] in [0, 1]: like Wan's
    VAE, the first latent frame gives one video frame and every later one four."""
    latent_format = model.model.latent_format
    if latent_format.latent_rgb_factors is None:
        raise ValueError(f"{type(latent_format).__name__} has no latent preview matrix; use VAEDecode")
    factors = torch.tensor(latent_format.latent_rgb_factors, dtype=torch.float32, device=samples.device)        # [C, 3]
    bias = torch.tensor(latent_format.latent_rgb_factors_bias or [0.0, 0.0, 0.0], dtype=torch.float32,
                        device=samples.device)
    normalised = latent_format.process_in(samples.float())
    rgb = torch.einsum("bcthw,ck->bthwk", normalised, factors) + bias
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
