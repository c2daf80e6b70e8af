"""The committed CountWorld checkpoint is a Wan 2.1 T2V model for ComfyUI's own loaders and sampler."""
import os

import pytest
import torch

from countworld import counter, world
from countworld.evaluate import CHECKPOINT, ComfyPipeline

CHECKPOINT_PATH = os.path.join(os.path.dirname(counter.__file__), "checkpoints", CHECKPOINT)
SECOND_CHECKPOINT = "countworld_wan21_t2v_s1.safetensors"     # the held-out model: another seed, chose nothing


@pytest.mark.parametrize("name", [CHECKPOINT, SECOND_CHECKPOINT])
def test_checkpoints_are_committed_and_small(name):
    path = os.path.join(os.path.dirname(counter.__file__), "checkpoints", name)
    assert os.path.exists(path), f"countworld/checkpoints/{name} is missing"
    assert os.path.getsize(path) <= 20 * 1024 * 1024


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


def test_the_second_model_is_another_trained_wan21_that_counts(comfy_booted):
    second = ComfyPipeline(checkpoint=SECOND_CHECKPOINT)
    config = second.model.model.model_config
    assert type(config).__name__ == "WAN21_T2V" and config.unet_config["num_layers"] == 4
    first = ComfyPipeline()
    a = first.model.model.diffusion_model.state_dict()
    b = second.model.model.diffusion_model.state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a), "the held-out model must be another training run"
    counts = counter.count_samples(second.sample("two red circles drifting on a grey background", seed=0, steps=12))[0]
    assert counts["circles"].min() >= 1, "the named noun should appear"
