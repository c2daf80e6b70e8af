"""What differs between ComfyUI versions and how the pack follows the installed one.

These run on whichever ComfyUI the suite runs on (the bundled 0.3.75, or COMFYUI_PATH, e.g. 0.33).
"""
import inspect

import pytest
import torch

from numina_dev import comfy_runtime
from numina_dev.graphs import plain_graph
from scripts import make_fixtures

PROMPT = "three red circles drifting on a grey background"
SEED, STEPS, CFG = 5, 4, 2.0


@pytest.fixture(scope="module")
def tiny_wan22_5b(comfy):
    """A Wan2.2 TI2V 5B-shaped model (48 latent channels, the Wan2.2 VAE's spatial stride 16,
    patch (1, 2, 2)) at a tiny width with seeded random weights; ComfyUI detects it as WAN22_T2V."""
    from comfy import ops as comfy_ops, sd as comfy_sd
    from comfy.ldm.wan import model as wan_model

    model = wan_model.WanModel(
        model_type="t2v", dim=256, ffn_dim=512, num_layers=2, num_heads=2, in_dim=48, out_dim=48,
        text_dim=4096, patch_size=(1, 2, 2), operations=comfy_ops.manual_cast)
    make_fixtures._seeded_init(model, seed=3)
    patcher = comfy_sd.load_diffusion_model_state_dict({k: v.contiguous() for k, v in model.state_dict().items()})
    assert type(patcher.model.model_config).__name__ == "WAN22_T2V"
    assert patcher.model.latent_format.latent_channels == 48
    assert getattr(patcher.model.latent_format, "spacial_downscale_ratio", 16) == 16  # 0.3.75 does not say
    return patcher


def test_capture_prepares_the_latent_as_the_installed_ksampler_does(comfy, tiny_clip, tiny_wan22_5b):
    """EmptyHunyuanLatentVideo makes a 16-channel latent at stride 8.  ComfyUI 0.33 records that
    stride in the latent and its samplers resize the empty latent to the model's (16 for Wan2.2 5B);
    0.3.75 only repeats the channels.  The capture must see the same latent, noise and token grid as
    the final sampler, or the guide refuses the final run and the layout maps the wrong tokens."""
    from comfy import sample as comfy_sample

    positive = comfy["CLIPTextEncode"]().encode(tiny_clip, PROMPT)[0]
    negative = comfy["CLIPTextEncode"]().encode(tiny_clip, "")[0]
    out = comfy["EmptyHunyuanLatentVideo"]().execute(128, 128, 5, 1)
    latent = out.result[0] if hasattr(out, "result") else out[0]
    assert tuple(latent["samples"].shape) == (1, 16, 2, 16, 16)
    resizes = "downscale_ratio_spacial" in inspect.signature(comfy_sample.fix_empty_latent_channels).parameters \
        and latent.get("downscale_ratio_spacial") is not None

    capture, reference, report = comfy["NuminaAttentionCapture"].execute(
        tiny_wan22_5b, tiny_clip, positive, negative, latent, SEED, STEPS, CFG, "euler", "simple", PROMPT, "",
        -1, -1).result
    step = capture.step_index
    # the same partial run through ComfyUI's own sampler node
    partial = comfy["KSamplerAdvanced"]().sample(
        tiny_wan22_5b, "enable", SEED, STEPS, CFG, "euler", "simple", positive, negative, latent,
        0, step + 1, "enable")[0]
    expected_hw = 8 if resizes else 16
    assert tuple(partial["samples"].shape) == (1, 48, 2, expected_hw, expected_hw)
    assert reference["samples"].shape == partial["samples"].shape, report
    assert torch.allclose(reference["samples"], partial["samples"], atol=1e-5, rtol=1e-5)
    assert (capture.grid.frames, capture.grid.height, capture.grid.width) == (2, expected_hw // 2, expected_hw // 2)
    assert f"2x{expected_hw // 2}x{expected_hw // 2} token grid" in report
    # the reference latent is a sampled latent now, like the sampler node's output: no stride left in it
    assert set(reference) == set(partial)

    # and the guided final run accepts the capture's layout (it refuses another token grid)
    layout, _, _ = comfy["NuminaLayoutInfer"].execute(capture, "cross").result
    refined, _, _ = comfy["NuminaLayoutRefine"].execute(layout).result
    guided, _ = comfy["NuminaCrossAttnGuide"].execute(tiny_wan22_5b, refined, "auto").result
    final = comfy["KSampler"]().sample(guided, SEED, STEPS, CFG, "euler", "simple", positive, negative, latent)[0]
    assert final["samples"].shape == partial["samples"].shape
    assert torch.isfinite(final["samples"]).all()


def test_the_in_process_executor_gets_every_cache_setting_main_py_passes(comfy):
    """PromptExecutor's cache_args are read by key (0.33 added "ram_inactive"): the runtime passes
    what this ComfyUI's main.py passes, so a whole graph runs on either version."""
    import os
    import re

    with open(os.path.join(comfy_runtime.comfyui_path(), "main.py")) as f:
        main_py = f.read()
    call = re.search(r"PromptExecutor\([^)]*cache_args\s*=\s*\{([^}]*)\}", main_py)
    assert call, "main.py no longer builds PromptExecutor's cache_args inline: check comfy_runtime.CACHE_ARGS"
    keys = set(re.findall(r"[\"'](\w+)[\"']\s*:", call.group(1)))
    assert keys and keys <= set(comfy_runtime.CACHE_ARGS), keys


def test_cached_outputs_are_read_the_same_on_every_version(comfy):
    """The executor's output cache answers with a coroutine in 0.33 and directly in 0.3.75:
    comfy_runtime.cached_outputs reads both (the CountWorld benchmark reads the layout so)."""
    graph = plain_graph(steps=2, prefix="numina_versions_cache")
    executor, server = comfy_runtime.execute_graph(graph)
    assert executor.success, comfy_runtime.execution_error(server)
    latent = comfy_runtime.cached_outputs(executor, "5")   # EmptyHunyuanLatentVideo
    assert tuple(latent[0][0]["samples"].shape) == (1, 16, 2, 8, 8)
    assert comfy_runtime.cached_outputs(executor, "no-such-node") is None
