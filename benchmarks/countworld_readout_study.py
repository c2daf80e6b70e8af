"""CountWorld readout study: which attention read at which step and block predicts the final count?

Samples plain videos (KSampler, the benchmark's settings) with a read-only NUMINA session that
records, at every step and in every block, each counted noun's cross-attention map (the capture's
own `read_cross_attention`) and the self-attention reading (`read_self_attention`), then counts
the final frames with the CountWorld counter.  `--analyse` scores readouts offline against those
final counts: how often a readout's count equals the final count, per target count K.

    .numina_env/venv/bin/python benchmarks/countworld_readout_study.py --set tuning --seeds 2 \
        --out /tmp/readout_tuning.pt
    .numina_env/venv/bin/python benchmarks/countworld_readout_study.py --analyse /tmp/readout_tuning.pt

Nothing here is used at run time: it is how the readout defaults were chosen (tuning prompts of
the committed model only).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for p in (ROOT, os.path.join(ROOT, "testing")):
    if p not in sys.path:
        sys.path.insert(0, p)

from countworld import counter, evaluate, world  # noqa: E402
from countworld.prompts import heldout_prompts, tuning_prompts  # noqa: E402


def record(args: argparse.Namespace) -> None:
    from numina_dev import comfy_runtime

    pipeline = evaluate.ComfyPipeline(checkpoint=args.checkpoint)
    comfy_runtime.load_custom_nodes()
    capture_node = comfy_runtime.pack_module("NuminaAttentionCapture")
    patch = comfy_runtime.pack_module("NuminaCrossAttnGuide").attention_patch
    capture_ops = patch.capture_ops
    prompts = tuning_prompts() if args.set == "tuning" else heldout_prompts()
    if args.limit:
        prompts = prompts[: args.limit]
    info = patch.wan_info(pipeline.model)
    grid = info.grid_for(capture_node.sampling.prepare_latent(pipeline.model, pipeline.empty_latent()))

    class Recorder(patch._Session):
        def __init__(self, positions):
            super().__init__(info, grid)
            self.positions = positions
            self.cross, self.features = {}, {}

        def attend(self, kind, q, k, v, heads, block, forward, plain):
            if forward.cond and kind in (patch.SELF, patch.TEXT):
                row, video = forward.cond[0].start, forward.video_rows
                key = (forward.step, block)
                if kind == patch.SELF:
                    reading = capture_ops.read_self_attention(q[row, video], k[row, video], heads, grid)
                    self.features[key] = reading.features.cpu()
                else:
                    maps = capture_ops.read_cross_attention(q[row, video], k[row], heads, grid, self.positions)
                    self.cross[key] = {n: m.cpu() for n, m in maps.items()}
            return plain()

    videos = []
    started = time.time()
    for i, prompt in enumerate(prompts):
        targets = capture_node.parse_targets(prompt, None)
        pieces = capture_node.token_pieces(pipeline.clip, prompt)
        positions = capture_node.noun_token_positions(targets, pieces)
        for seed in range(args.seeds):
            session = Recorder(positions)
            samples = pipeline.sample(prompt, seed, args.steps, args.cfg, model=patch.install(pipeline.model, session))
            final = counter.count_samples(samples)[0]
            videos.append({"prompt": prompt, "seed": seed, "targets": targets.as_dict(),
                           "final": {n: [int(c) for c in final[world.plural_noun(n)]] for n in positions},
                           "cross": session.cross, "features": session.features})
        print(f"[{i + 1}/{len(prompts)}] {prompt!r} {time.time() - started:.0f} s", flush=True)
    torch.save({"steps": args.steps, "blocks": info.blocks, "grid": tuple(grid.__dict__.values()) if hasattr(grid, "__dict__") else None,
                "checkpoint": args.checkpoint, "videos": videos}, args.out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", choices=("heldout", "tuning"), default="tuning")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--steps", type=int, default=evaluate.DEFAULTS["steps"])
    parser.add_argument("--cfg", type=float, default=1.0)
    parser.add_argument("--checkpoint", default=evaluate.CHECKPOINT)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="/tmp/readout_study.pt")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    record(args)


if __name__ == "__main__":
    main()
