"""Layout benchmark: count accuracy and time of the default readout vs the published (faithful) one.

Part 1: exact-count rate per K = 1..8 on synthetic scenes (numina_dev.synthetic, 30x52 tokens,
21 frames) at clean / moderate / heavy noise, both readouts side by side on the same scenes
(the faithful readout on every `--stride`-th frame to keep the run short).
Part 2: time for one noun over 21 frames of 30x52: default layout + refinement vs the faithful
layout alone (the published code took about 29 s for its layout on this CPU).

    cd /work/main && nice .numina_env/venv/bin/python benchmarks/bench_layout.py [--seeds 6] [--stride 5]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from _machine import machine_info  # benchmarks/, this script's folder

from numina_dev.synthetic import NOISE_LEVELS, make_scene, scene_capture
from numina_ops.layout import infer_layout, segment_frame
from numina_ops.refine import refine_layout


def accuracy(noise: str, seeds: int, stride: int) -> None:
    print(f"\n[{noise}] exact-count rate per K (frames where count == ground truth), seeds 0..{seeds - 1}")
    print("K   default  faithful")
    tot_d, tot_f = [], []
    for k in range(1, 9):
        hits_d = hits_f = n_d = n_f = 0
        for seed in range(seeds):
            scene = make_scene(k, noise=noise, seed=seed)
            counts = infer_layout(scene_capture(scene)).nouns[0].counts
            hits_d += sum(c == g for c, g in zip(counts, scene.gt_counts))
            n_d += len(counts)
            for f in range(0, scene.grid.frames, stride):
                c = int(segment_frame(scene.features[f], scene.cross[f], mode="faithful").max())
                hits_f += c == scene.gt_counts[f]
                n_f += 1
        tot_d.append(hits_d / n_d)
        tot_f.append(hits_f / n_f)
        print(f"{k}   {tot_d[-1]:.2f}     {tot_f[-1]:.2f}")
    print(f"all {statistics.mean(tot_d):.3f}    {statistics.mean(tot_f):.3f}")


def timing(repeats: int) -> None:
    scene = make_scene(5, noise="moderate", seed=0)
    capture = scene_capture(scene, target=3)
    infer_layout(capture)                                       # warm-up (imports, caches)
    default_times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        refine_layout(infer_layout(capture, mode="default"))
        default_times.append(time.perf_counter() - t0)
    faithful_times = []
    for _ in range(max(1, repeats // 3)):
        t0 = time.perf_counter()
        infer_layout(capture, mode="faithful")
        faithful_times.append(time.perf_counter() - t0)
    d, f = statistics.median(default_times), statistics.median(faithful_times)
    print("\none noun, 21 frames of 30x52 (median of runs)")
    print(f"default layout + refinement : {d:.3f} s  ({repeats} runs)")
    print(f"faithful layout alone       : {f:.3f} s  ({len(faithful_times)} runs)")
    print(f"ratio faithful / default    : {f / d:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--stride", type=int, default=5, help="faithful readout on every n-th frame")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--noise", default=",".join(NOISE_LEVELS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(machine_info())
    timing(args.repeats)
    for noise in args.noise.split(","):
        accuracy(noise, args.seeds, args.stride)


if __name__ == "__main__":
    main()
