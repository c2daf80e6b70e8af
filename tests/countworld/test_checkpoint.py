"""The committed CountWorld checkpoint is a Wan 2.1 T2V model for ComfyUI's own loaders and sampler."""
import os

import pytest
import torch

from countworld import counter, world
from countworld.evaluate import CHECKPOINT, ComfyPipeline

CHECKPOINT_PATH = os.path.join(os.path.dirname(counter.__file__), "checkpoints", CHECKPOINT)


def test_checkpoint_is_committed_and_small():
    assert os.path.exists(CHECKPOINT_PATH), "countworld/checkpoints/countworld_wan21_t2v.safetensors is missing"
    assert os.path.getsize(CHECKPOINT_PATH) <= 20 * 1024 * 1024


@pytest.fixture(scope="module")
def pipeline(comfy_booted):
    return ComfyPipeline()


def test_noun_token_positions_follow_the_real_tokenizer(pipeline):
    """The pack's own token mapping (what the capture node uses) on CountWorld prompts."""
    from numina_dev import comfy_runtime
    from numina_ops.prompt import parse_targets
    from numina_ops.tokens import noun_token_positions

    prompt = "two red circles and one green triangle drifting on a grey background"
    pieces = comfy_runtime.pack_module("NuminaAttentionCapture").token_pieces(pipeline.clip, prompt)
    found = noun_token_positions(parse_targets(prompt), pieces)
    positions = {world.plural_noun(noun): list(p) for noun, p in found.items()}
    assert positions["circles"] == [2]                       # two, red, circles
    assert positions["triangles"][0] == 6 and len(positions["triangles"]) >= 2   # singular: several pieces
    cond = pipeline.encode(prompt)[0][0][0]
    assert bool((cond[positions["triangles"]].abs().sum(-1) > 0).all())


def test_checkpoint_loads_through_unetloader_as_wan21_and_draws_countable_objects(pipeline):
    config = pipeline.model.model.model_config
    assert type(config).__name__ == "WAN21_T2V"
    assert config.unet_config["dim"] == 256 and config.unet_config["num_layers"] == 4
    samples = pipeline.sample("two red circles drifting on a grey background", seed=0, steps=12)
    assert samples.shape == (1, 16, world.LATENT_FRAMES, world.LATENT_HEIGHT, world.LATENT_WIDTH)
    assert torch.isfinite(samples).all()
    again = pipeline.sample("two red circles drifting on a grey background", seed=0, steps=12)
    assert torch.equal(samples, again)
    nouns = counter.noun_map(counter.to_model_space(samples)[0])
    assert (nouns == -1).mean() > 0.6, "a trained model draws mostly background"
    counts = counter.count_samples(samples)[0]
    assert counts["circles"].min() >= 1, "the named noun should appear"
