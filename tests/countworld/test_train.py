"""countworld/train.py's device path, dry-run on the CPU in seconds.

The tiny runs go through the code a GPU run uses: the device passed explicitly, bf16 autocast, the
batch-making worker process, a non-default architecture and an output path beside which the log and
curve go; the exported file must load through ComfyUI's UNETLoader as today's checkpoint does.
"""
import json
import os

import pytest
import torch

from countworld import train as cw_train

TINY = ["--device", "cpu", "--steps", "2", "--batch", "2", "--dim", "128", "--layers", "1", "--ffn-dim", "256",
        "--threads", "1"]
TINY_NAME = "countworld_train_test_tiny.safetensors"


def test_defaults_are_the_cpu_run_of_the_committed_checkpoint():
    args = cw_train.parse_args([])
    assert args.device == "cpu" and args.steps == 0 and args.seed == 1234 and args.batch == 16
    assert cw_train.resolve_device(args) == (torch.device("cpu"), "fp32", 0)
    ckpt, log, plot = cw_train.resolve_paths(args)
    assert ckpt == cw_train.COMMITTED_CHECKPOINT
    assert log == os.path.join(cw_train.HERE, "train_log.jsonl")
    assert plot == os.path.join(cw_train.HERE, "training_curve.png")
    assert cw_train.model_config() == cw_train.MODEL_CONFIG


def test_other_checkpoints_keep_their_log_and_curve_beside_them(tmp_path):
    ckpt, log, plot = cw_train.resolve_paths(cw_train.parse_args(["--out", str(tmp_path / "second.safetensors")]))
    assert (ckpt, log, plot) == (str(tmp_path / "second.safetensors"), str(tmp_path / "second.train_log.jsonl"),
                                 str(tmp_path / "second.training_curve.png"))
    ckpt, _, _ = cw_train.resolve_paths(cw_train.parse_args(["--out", str(tmp_path)]))
    assert ckpt == str(tmp_path / cw_train.CHECKPOINT_NAME)


def test_architecture_options_follow_comfyui_head_rule():
    config = cw_train.model_config(dim=384, layers=6)
    assert (config["dim"], config["num_heads"], config["num_layers"], config["ffn_dim"]) == (384, 3, 6, 1536)
    with pytest.raises(ValueError):
        cw_train.model_config(dim=200)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_request_without_cuda_is_refused():
    with pytest.raises(SystemExit):
        cw_train.resolve_device(cw_train.parse_args(["--device", "cuda"]))


@pytest.fixture(scope="module")
def tiny_run(comfy_booted, tmp_path_factory):
    out = tmp_path_factory.mktemp("countworld_train") / TINY_NAME
    return cw_train.train(TINY + ["--precision", "bf16", "--workers", "1", "--out", str(out)])


def test_tiny_bf16_run_with_a_worker_trains_and_exports(tiny_run):
    assert tiny_run["device"] == "cpu" and tiny_run["precision"] == "bf16" and tiny_run["workers"] == 1
    assert tiny_run["steps"] == 2 and all(0.1 < loss < 10 for loss in tiny_run["losses"])
    folder = os.path.dirname(tiny_run["checkpoint"])
    assert sorted(os.listdir(folder)) == sorted([TINY_NAME, TINY_NAME.replace(".safetensors", ".train_log.jsonl"),
                                                 TINY_NAME.replace(".safetensors", ".training_curve.png")])
    lines = open(tiny_run["log"]).read().splitlines()
    assert lines[0].startswith("# seed=1234 batch=2") and "device=cpu precision=bf16 workers=1" in lines[0]
    assert [json.loads(line)["step"] for line in lines[1:]] == [1, 2]

    import safetensors

    with safetensors.safe_open(tiny_run["checkpoint"], "pt") as f:
        config = json.loads(f.metadata()["countworld"])["config"]
        assert config["dim"] == "128" and config["num_layers"] == "1" and config["num_heads"] == "1"
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}


def test_tiny_checkpoint_loads_through_unetloader_and_samples(tiny_run):
    import folder_paths
    import safetensors.torch

    from countworld import world
    from countworld.evaluate import ComfyPipeline

    folder_paths.add_model_folder_path("diffusion_models", os.path.dirname(tiny_run["checkpoint"]))
    pipeline = ComfyPipeline(checkpoint=TINY_NAME)
    config = pipeline.model.model.model_config
    assert type(config).__name__ == "WAN21_T2V"
    assert (config.unet_config["dim"], config.unet_config["num_layers"], config.unet_config["num_heads"]) == (128, 1, 1)
    exported = safetensors.torch.load_file(tiny_run["checkpoint"])
    loaded = pipeline.model.model.diffusion_model.state_dict()
    for key in ("blocks.0.ffn.0.weight", "head.head.weight", "text_embedding.0.weight"):
        assert torch.equal(loaded[key].float(), exported[key].float())
    samples = pipeline.sample("two red circles drifting on a grey background", seed=0, steps=2)
    assert samples.shape == (1, 16, world.LATENT_FRAMES, world.LATENT_HEIGHT, world.LATENT_WIDTH)
    assert torch.isfinite(samples).all()


def test_same_seed_same_run_whether_batches_come_from_a_worker_or_not(comfy_booted, tmp_path):
    runs = [cw_train.train(TINY + ["--precision", "fp32", "--workers", str(workers),
                                   "--out", str(tmp_path / f"w{workers}.safetensors")]) for workers in (0, 1)]
    assert runs[0]["losses"] == runs[1]["losses"]
    assert open(runs[0]["checkpoint"], "rb").read() == open(runs[1]["checkpoint"], "rb").read()
