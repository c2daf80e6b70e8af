"""The pack on a real ComfyUI: registration, the tiny Wan fixtures.  The plain graph on them runs
once, on a real server (test_server.py: test_server_runs_a_tiny_wan_graph)."""
import inspect
import os
import sys

import torch

from numina_dev import TESTING


def test_pack_registers_its_nodes_through_comfyuis_loader(comfy):
    assert "NuminaTinyTextEncoderLoader" in comfy
    cls = comfy["NuminaTinyTextEncoderLoader"]
    assert cls.GET_SCHEMA().category == "NUMINA/testing"


def test_testing_nodes_come_from_the_testing_pack_not_from_the_pack(comfy, pack):
    """A user who installs the pack does not get the testing nodes: they are registered by
    testing/numina_testing, which only the set-up script links into custom_nodes/."""
    testing_pack = os.path.join(TESTING, "numina_testing")
    for name in ("NuminaTinyTextEncoderLoader", "NuminaLatentRGBDecode"):
        path = os.path.realpath(inspect.getfile(comfy[name]))
        assert os.path.dirname(path) == os.path.realpath(testing_pack), (name, path)
    adapter = sys.modules[pack.module("NuminaAttentionCapture").__package__]   # the pack's nodes/ package
    ours = {cls.GET_SCHEMA().node_id: cls.GET_SCHEMA().category for cls in adapter.NODES}
    assert "NuminaAttentionCapture" in ours and "NuminaCrossAttnGuide" in ours
    assert not {n: c for n, c in ours.items() if "testing" in c.lower() or "Tiny" in n or "RGBDecode" in n}


def test_tiny_text_path_gives_wan_shaped_conditioning(tiny_clip):
    tokens = tiny_clip.tokenize("two red circles and three blue squares")
    cond = tiny_clip.encode_from_tokens_scheduled(tokens)[0][0]
    assert cond.shape == (1, 512, 4096)
    norms = cond[0].abs().sum(-1)
    real = 7 + 1  # seven words, one piece each in the tiny vocabulary, then the end token
    assert bool((norms[:real] > 0).all())
    assert bool((norms[real:] == 0).all()), "umT5 output must be zero after the end token"


def test_tiny_text_path_is_deterministic_and_word_sensitive(tiny_clip):
    def encode(text):
        return tiny_clip.encode_from_tokens_scheduled(tiny_clip.tokenize(text))[0][0]
    a, b, c = encode("three red circles"), encode("three red circles"), encode("four red circles")
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_tiny_wan_is_detected_as_wan21_t2v(tiny_model):
    config = tiny_model.model.model_config
    assert type(config).__name__ == "WAN21_T2V"
    assert config.unet_config["dim"] == 256 and config.unet_config["num_heads"] == 2


def test_tiny_wan_samples_through_ksampler_deterministically(comfy, tiny_model, tiny_clip):
    positive = comfy["CLIPTextEncode"]().encode(tiny_clip, "three red circles")[0]
    negative = comfy["CLIPTextEncode"]().encode(tiny_clip, "")[0]
    latent = comfy["EmptyHunyuanLatentVideo"]().execute(64, 64, 5, 1)
    latent = latent.result[0] if hasattr(latent, "result") else latent[0]
    sample = comfy["KSampler"]().sample
    a = sample(tiny_model, 3, 3, 2.0, "euler", "simple", positive, negative, latent)[0]["samples"]
    b = sample(tiny_model, 3, 3, 2.0, "euler", "simple", positive, negative, latent)[0]["samples"]
    assert a.shape == (1, 16, 2, 8, 8)
    assert torch.isfinite(a).all() and a.abs().sum() > 0
    assert torch.equal(a, b)
