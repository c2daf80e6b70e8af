"""CountWorld's judge and pictures as ComfyUI nodes (NUMINA/testing): for the demo, tests, benchmark.

NuminaCountWorldCounterLoader  the CountWorld frame counter (countworld/frame_counter.py) as a
                               NUMINA_COUNTER: the ObjectCounter a count check / closed loop judges
                               decoded frames with (on real Wan videos that is a detector such as
                               GroundingDINO); optionally wrapped in ErringCounter (seeded mistakes)
NuminaCountWorldVAE            a VAE-shaped object whose decode gives CountWorld's code pictures (the
                               pictures that judge reads), so any node that takes a VAE (VAEDecode, a
                               closed loop) gets them

Both need the repository's `countworld` package on the path (scripts/setup_env.sh writes a .pth
file naming the repository root; pytest.ini does the same for the tests).
"""
from __future__ import annotations

import torch
from comfy_api.latest import io

from countworld.frame_counter import CountWorldFrameCounter, ErringCounter


def make_counter(error_rate: float = 0.0, error_seed: int = 0):
    """The frame counter, wrapped in ErringCounter when error_rate > 0."""
    counter = CountWorldFrameCounter()
    return ErringCounter(counter, rate=error_rate, seed=error_seed) if error_rate > 0 else counter


class NuminaCountWorldCounterLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="NuminaCountWorldCounterLoader",
            display_name="NUMINA CountWorld Counter (testing)",
            category="NUMINA/testing",
            description="The CountWorld frame counter: counts circles / squares / triangles on decoded CountWorld "
                        "frames by colour segmentation and shape (near-perfect on CountWorld), for the count check "
                        "of the demo, the tests and the benchmark.  error_rate > 0 adds seeded detector mistakes "
                        "(one box more or fewer in that share of frame-noun pairs).  Real Wan videos need a real "
                        "detector (GroundingDINO).",
            inputs=[
                io.Float.Input("error_rate", default=0.0, min=0.0, max=1.0, step=0.05,
                               tooltip="Share of (frame, noun) pairs given one box more or one fewer (0: none)."),
                io.Int.Input("error_seed", default=0, min=0, max=0xFFFFFFFF,
                             tooltip="Seed of the simulated mistakes (with the frame's pixels: same frames, same mistakes)."),
            ],
            outputs=[io.Custom("NUMINA_COUNTER").Output(id="counter", display_name="counter")],
        )

    @classmethod
    def execute(cls, error_rate: float = 0.0, error_seed: int = 0) -> io.NodeOutput:
        return io.NodeOutput(make_counter(float(error_rate), int(error_seed)))


class CountWorldVAE:
    """CountWorld's pictures for a judge, shaped like a ComfyUI VAE's ``decode``: for the demo, the
    tests and the benchmark only; real Wan uses a real VAE.

    ``decode(samples [B, 16, T, H, W])`` (a sampler's output) -> frames [B, 1 + 4(T-1), H*up,
    W*up, 3] in [0, 1]: the code pictures of ``countworld.frame_counter.code_pictures`` (every latent
    pixel in its nearest world code's colour, the noun as a shade), the first latent frame giving
    one video frame and every later one four, as Wan's VAE does."""

    latent_channels = 16

    def __init__(self, upscale: int = 8) -> None:
        self.upscale = int(upscale)

    def decode(self, samples: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        from countworld.counter import to_model_space
        from countworld.frame_counter import code_pictures

        if samples.ndim != 5 or samples.shape[1] != self.latent_channels:
            raise ValueError(f"the CountWorld decode takes a Wan 2.1 latent [B, 16, T, H, W], "
                             f"got shape {tuple(samples.shape)}")
        normalised = to_model_space(samples.detach().cpu())
        videos = []
        for latent in normalised:
            frames = torch.from_numpy(code_pictures(latent, self.upscale))
            repeats = torch.tensor([1] + [4] * (frames.shape[0] - 1))
            videos.append(frames.repeat_interleave(repeats, dim=0))
        return torch.stack(videos).to(samples.device)

    def spacial_compression_decode(self) -> int:
        return self.upscale

    def temporal_compression_decode(self) -> int:
        return 4


class NuminaCountWorldVAE(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="NuminaCountWorldVAE",
            display_name="NUMINA CountWorld VAE (testing)",
            category="NUMINA/testing",
            description="A VAE whose decode paints every latent pixel of a CountWorld latent in its nearest world "
                        "code's colour (the noun as a shade), so nodes that take a VAE get pictures the CountWorld "
                        "judge can count. For the CountWorld demo, tests and benchmark only; real Wan videos need "
                        "the real Wan VAE.",
            inputs=[
                io.Int.Input("upscale", default=8, min=1, max=16, tooltip="Pixels per latent pixel (Wan's VAE: 8)."),
            ],
            outputs=[io.Vae.Output()],
        )

    @classmethod
    def execute(cls, upscale: int = 8) -> io.NodeOutput:
        return io.NodeOutput(CountWorldVAE(upscale))
