"""Where NUMINA loses instance tracks: in the layout it guides toward, or in the guided video?

For every video NUMINA guides (the nodes' defaults, through ComfyUI's executor), the instance
tracks (`countworld/quality.py`'s measure: instances matched one to one between consecutive latent
frames, IoU >= 0.2) of the layout read at the reference step, of the refined layout (token grid),
of the guided video and of the plain video of the same prompt and seed.  If the layouts follow
their objects as well as plain videos do and the guided video does not, the loss is in how the
bias is drawn frame by frame, not in the layout.

    .numina_env/venv/bin/python benchmarks/countworld_layout_tracks.py --set tuning --seeds 2 --steps 8
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from countworld_benchmark import PRESETS, Runner, numina_graph  # noqa: E402  (puts the repo on sys.path)

from countworld import counter, evaluate, quality  # noqa: E402
from countworld.distill import lora_name  # noqa: E402
from countworld.prompts import heldout_prompts, tuning_prompts  # noqa: E402


def layout_tracks(labels) -> float | None:
    """The tracks measure on one noun's layout labels [F, H, W] (live instances: label > 0)."""
    frames = labels.shape[0]
    objects = [quality.Instance(f, "noun", labels[f].numpy() == i, True, 1.0)
               for f in range(frames) for i in np.unique(labels[f].numpy()) if i > 0]
    return quality.track_continuity(objects, "noun", frames) if objects else None


def mean(values) -> float:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", choices=("tuning", "heldout"), default="tuning")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=evaluate.DEFAULTS["steps"])
    parser.add_argument("--checkpoint", default=evaluate.CHECKPOINT)
    args = parser.parse_args()
    few = args.steps < evaluate.DEFAULTS["steps"]        # few steps: the model's distillation LoRA, shift 5
    runner = Runner(args.steps, 1.0, args.checkpoint, 5.0 if few else evaluate.DEFAULTS["shift"],
                    lora_name(args.checkpoint) if few else "")
    settings = dict(PRESETS["defaults"])
    rows = []
    for prompt in (tuning_prompts() if args.set == "tuning" else heldout_prompts()):
        for seed in range(args.seeds):
            executor, server = runner.comfy_runtime.execute_graph(numina_graph(
                prompt, seed, args.steps, 1.0, f"tracks/{seed}", settings, runner.checkpoint, runner.shift,
                runner.lora))
            if not executor.success:
                raise SystemExit(f"{prompt!r}: {runner.comfy_runtime.execution_error(server)}")
            read = runner.comfy_runtime.cached_outputs(executor, "8")[0][0]
            refined = runner.comfy_runtime.cached_outputs(executor, "9")[0][0]
            if not refined.needs_guidance:
                continue
            saved = executor.history_result["outputs"]["11"]["latents"][0]
            import safetensors.torch
            path = os.path.join(runner.out_dir, saved["subfolder"], saved["filename"])
            guided = safetensors.torch.load_file(path)["latent_tensor"]
            os.remove(path)
            plain = runner.plain(prompt, seed)
            rows.append((mean(layout_tracks(n.labels) for n in read.nouns),
                         mean(layout_tracks(n.labels) for n in refined.nouns),
                         quality.video_quality(counter.to_model_space(guided)[0], prompt).track_continuity,
                         quality.video_quality(counter.to_model_space(plain)[0], prompt).track_continuity))
    table = np.nanmean(np.array(rows), axis=0)
    print(f"{args.checkpoint}, {args.set} prompts x {args.seeds} seeds, {args.steps} steps: {len(rows)} videos "
          "NUMINA guides; instance tracks of")
    print(f"  the layout read {table[0]:.3f} | the refined layout {table[1]:.3f} | the guided video {table[2]:.3f} "
          f"| the plain video {table[3]:.3f}")


if __name__ == "__main__":
    main()
