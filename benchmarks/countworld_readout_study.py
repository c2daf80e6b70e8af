"""CountWorld readout study: which attention read at which step and block predicts the final count?

Samples plain videos (KSampler, the benchmark's settings) with a read-only NUMINA session that
records, at every step and in every block, each counted noun's cross-attention map (the capture's
own `read_cross_attention`) and the self-attention reading (`read_self_attention`), then counts
the final frames with the CountWorld counter.  `--analyse` scores readouts offline against those
final counts: how often a readout's count equals the final count, per target count K.

    .numina_env/venv/bin/python benchmarks/countworld_readout_study.py --set tuning --seeds 4 \
        --out /tmp/readout_tuning.pt                                       # about 5 min
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
    torch.save({"steps": args.steps, "blocks": info.blocks, "checkpoint": args.checkpoint, "videos": videos}, args.out)


# ----------------------------------------------------------------------------- analysis

def _cross_counts(maps: np.ndarray, level: float, sigma: float) -> list[int]:
    from scipy import ndimage

    from numina_ops import layout as L
    out = []
    for m in maps:
        contrast = L._contrast(ndimage.gaussian_filter(m.astype(np.float64), sigma, mode="nearest"))
        regions, n = ndimage.label(contrast > level)
        out.append(int(L._relabel_large(regions, n + 1, L.CROSS_MIN_AREA).max()))
    return out


def analyse(path: str) -> None:
    """Print how often each readout's count equals the final count, by target count K."""
    from numina_ops import layout as L

    data = torch.load(path, weights_only=False)
    videos, blocks = data["videos"], data["blocks"]
    every = range(blocks)

    def maps(v, noun, steps, chosen) -> np.ndarray:
        return np.stack([v["cross"][(s, b)][noun].numpy() for s in steps for b in chosen]).mean(0)

    def score(read, label: str) -> None:
        hits = defaultdict(list)
        for v in videos:
            for noun, k in v["targets"].items():
                for f, c in enumerate(read(v, noun)):
                    hits[k].append(c == v["final"][noun][f])
        total = np.mean([x for h in hits.values() for x in h])
        print(f"{label:46s} all {total:.3f} | K " + " ".join(f"{np.mean(hits[k]):.2f}" for k in sorted(hits)), flush=True)

    print(f"{len(videos)} videos of {data['checkpoint']}; count read == counter's count of the final frame")
    for step in (10, 12, 15, 18, 21, 24):
        for b in every:
            score(lambda v, n: _cross_counts(maps(v, n, [step], [b]), L.CROSS_LEVEL, 0.7), f"step {step}, block {b} (sigma 0.7)")
        score(lambda v, n: _cross_counts(maps(v, n, [step], every), L.CROSS_LEVEL, 0.7), f"step {step}, mean of all blocks (sigma 0.7)")
        score(lambda v, n: _cross_counts(maps(v, n, [step], every), L.CROSS_LEVEL, 0.5), f"step {step}, mean of all blocks (sigma 0.5)")
    for level in (0.25, 0.30, 0.45, 0.55):
        score(lambda v, n: _cross_counts(maps(v, n, [12], every), level, 0.5), f"step 12, mean, level {level}")
    for first, run in ((12, 2), (12, 3), (12, 4), (10, 3)):
        stops = []

        def stable(v, noun, first=first, run=run):
            history = []
            for step in range(first - run + 1, data["steps"]):
                counts = {m: _cross_counts(maps(v, m, [step], every), L.CROSS_LEVEL, 0.5) for m in v["targets"]}
                history.append(counts)
                if step >= first and len(history) >= run and all(h == counts for h in history[-run:]):
                    break
            stops.append(step)
            return counts[noun]
        score(stable, f"stop once stable for {run} steps from step {first}")
        print(f"{'':46s} mean stop step {np.mean(stops):.1f}")
    for step in (12,):
        def voted(v, noun, step=step):
            m = maps(v, noun, [step], every)
            per_level = np.array([_cross_counts(m, level, 0.5) for level in np.linspace(0.2, 0.6, 9)])
            return [int(np.median(per_level[:, f])) for f in range(per_level.shape[1])]
        score(voted, f"step {step}, median count over levels 0.2-0.6")
    for step in (12, 24):
        def by_default(v, noun, step=step):
            labels = L._segment_default_video(v["features"][(step, blocks - 1)].numpy(),
                                              maps(v, noun, [step], every), temporal=True)
            return [int(len(np.unique(f[f > 0]))) for f in labels]
        score(by_default, f"step {step}, self-attention readout (last block)")


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
    parser.add_argument("--analyse", default="", help="score readouts on a recording made with --out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.analyse:
        analyse(args.analyse)
        return
    record(args)


if __name__ == "__main__":
    main()
