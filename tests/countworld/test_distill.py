"""countworld/distill.py: a step-distillation LoRA made the way users use lightx2v's.

The schedule it distils is ComfyUI's own (ModelSamplingSD3 shift 5, "simple", 4 and 8 steps); the
LoRA it writes loads through LoraLoaderModelOnly onto every Linear of the transformer blocks; a tiny
run trains (the loss moves) and changes the model only where the LoRA says."""
import os

import pytest
import torch

from countworld import distill

CHECKPOINTS = os.path.join(os.path.dirname(distill.HERE), "countworld", "checkpoints")


@pytest.mark.parametrize("steps", distill.STEP_COUNTS)
def test_the_distilled_schedule_is_comfyuis_shift_5_simple_schedule(comfy_booted, steps):
    import comfy.model_sampling
    import comfy.samplers

    class Flow(comfy.model_sampling.ModelSamplingDiscreteFlow, comfy.model_sampling.CONST):
        pass

    sampling = Flow()
    sampling.set_parameters(shift=distill.SHIFT, multiplier=1000)
    ours = distill.schedule(steps)
    theirs = comfy.samplers.calculate_sigmas(sampling, "simple", steps)
    assert torch.allclose(ours, theirs.float(), atol=1e-5)
    assert torch.allclose(distill.schedule(4)[:4] * 1000, torch.tensor([1000.0, 937.5, 833.33, 625.0]), atol=0.01), \
        "Lightning's published training timesteps"
    assert set(distill.schedule(4).tolist()) <= set(distill.schedule(8).tolist()), \
        "the 4-step sigmas are points of the teacher's 8-step grid"


def test_a_segment_batch_asks_for_the_teachers_secant(comfy_booted):
    g = torch.Generator().manual_seed(0)
    trajectories = torch.randn(3, distill.TEACHER_GRID_STEPS + 1, 16, 2, 32, 32)
    idx, x, s, v = distill.segment_batch(trajectories, g, 12)
    sig = distill.schedule(distill.TEACHER_GRID_STEPS)
    for b in range(12):
        i = int((sig - s[b]).abs().argmin())
        matches = [n for n in (1, 2) if i + n <= distill.TEACHER_GRID_STEPS
                   and torch.allclose(trajectories[idx[b], i] + (sig[i + n] - sig[i]) * v[b], trajectories[idx[b], i + n],
                                      atol=1e-4)]
        assert torch.equal(x[b], trajectories[idx[b], i]) and matches, \
            "one Euler step with the target velocity lands on the teacher's state 1 (8 steps) or 2 (4 steps) ahead"


@pytest.fixture(scope="module")
def tiny_lora(comfy_booted, tmp_path_factory):
    out = tmp_path_factory.mktemp("distill") / "tiny_lora.safetensors"
    return distill.distill(["--trajectories", "4", "--substeps", "1", "--steps", "3", "--batch", "4", "--rank", "4",
                            "--threads", "1", "--out", str(out)])


def test_a_tiny_run_trains_and_writes_a_lora_with_its_log_and_curve(tiny_lora):
    import safetensors.torch

    assert len(tiny_lora["losses"]) == 3 and all(0 < loss < 100 for loss in tiny_lora["losses"])
    state = safetensors.torch.load_file(tiny_lora["lora"])
    ups = [v for k, v in state.items() if k.endswith("lora_up.weight")]
    assert len(ups) == 40 and all(v.abs().max() > 0 for v in ups), "every LoRA was trained (its up moved off zero)"
    for key in ("lora", "log", "plot"):
        assert os.path.getsize(tiny_lora[key]) > 0


def test_the_lora_loads_through_lora_loader_model_only_on_every_block_linear(tiny_lora):
    import safetensors.torch

    import folder_paths
    import nodes

    state = safetensors.torch.load_file(tiny_lora["lora"])
    folder_paths.add_model_folder_path("loras", os.path.dirname(tiny_lora["lora"]))
    folder_paths.add_model_folder_path("diffusion_models", CHECKPOINTS)
    base = nodes.UNETLoader().load_unet("countworld_wan21_t2v.safetensors", "default")[0]
    patched = nodes.LoraLoaderModelOnly().load_lora_model_only(base, os.path.basename(tiny_lora["lora"]), 1.0)[0]
    linears = [k for k in base.model.diffusion_model.state_dict() if k.startswith("blocks.") and k.endswith(".weight")
               and base.model.diffusion_model.get_submodule(k[:-len(".weight")]).__class__.__name__ == "Linear"]
    assert len(linears) == 40 and len(state) == 3 * 40
    assert sorted(k[len("diffusion_model."):] for k in patched.patches) == sorted(linears), \
        "ComfyUI maps every LoRA key onto a block Linear, and nothing else"
    key = "diffusion_model.blocks.0.self_attn.q"
    up, down = state[f"{key}.lora_up.weight"].float(), state[f"{key}.lora_down.weight"].float()
    patched.patch_model()
    try:
        got = patched.model.diffusion_model.blocks[0].self_attn.q.weight.float()
    finally:
        patched.unpatch_model()
    want = base.model.diffusion_model.blocks[0].self_attn.q.weight.float() + up @ down
    assert torch.allclose(got, want, atol=2e-3), "alpha = rank: the patch is exactly up @ down"


@pytest.mark.parametrize("checkpoint", sorted(distill.LORA_NAMES))
def test_each_committed_model_has_its_committed_lora(checkpoint):
    import json

    import safetensors

    path = os.path.join(CHECKPOINTS, distill.lora_name(checkpoint))
    assert os.path.exists(path), f"run countworld/distill.py --checkpoint {checkpoint}"
    with safetensors.safe_open(path, "pt") as f:
        meta = json.loads(f.metadata()["countworld_distill"])
        assert meta["base"] == checkpoint and meta["shift"] == distill.SHIFT
        assert len(list(f.keys())) == 3 * 40
    stem = os.path.splitext(path)[0]
    assert os.path.exists(stem + ".train_log.jsonl") and os.path.exists(stem + ".training_curve.png")
