"""What the count check costs: the paper's judge (GroundingDINO Swin-T, the architecture and input
size of IDEA-Research/grounding-dino-tiny, random weights built here: no download) on Wan-sized
frames, in seconds per frame and peak memory, through numina_ops.detector as the nodes run it.

    .numina_env/venv/bin/python benchmarks/bench_detector.py --frames 8 --nouns 2 --threads 2
    python benchmarks/bench_detector.py --device cuda --frames 81        # on a GPU: a whole 81-frame video

CPU peak memory is the process's peak RSS above what it held before the detector ran (Linux); on
CUDA, torch's peak allocated memory during detection.  Random weights find other boxes than the
trained model would, which does not change the work done: every query is decoded and post-processed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for p in (ROOT, os.path.join(ROOT, "testing"), HERE):
    if p not in sys.path:
        sys.path.insert(0, p)

from _machine import machine_info, peak, reset_peak, rss  # noqa: E402
from numina_dev.tiny_grounding_dino import build_tiny_grounding_dino  # noqa: E402
from numina_ops.detector import load_grounding_dino  # noqa: E402

NOUNS = ("apples", "dogs", "cats")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--width", type=int, default=832)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--nouns", type=int, default=2, choices=(1, 2, 3))
    parser.add_argument("--frames-per-batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory(prefix="numina_bench_dino_") as folder:
        build_tiny_grounding_dino(folder, real_shapes=True)
        counter = load_grounding_dino(folder, frames_per_batch=args.frames_per_batch)
    counter.model.to(device)
    frames = torch.rand(args.frames, args.height, args.width, 3, generator=torch.Generator().manual_seed(0))
    nouns = NOUNS[:args.nouns]
    counter.detect(frames[:1], nouns[:1], device=device)            # warm-up (allocator, kernels)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        reset_peak()
        before = rss()
    started = time.perf_counter()
    boxes = counter.detect(frames, nouns, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
        extra = torch.cuda.max_memory_allocated() - before
    else:
        extra = peak() - before
    seconds = time.perf_counter() - started
    result = {"machine": machine_info(), "device": str(device), "frames": args.frames,
              "size": f"{args.width}x{args.height}", "nouns": len(nouns), "frames_per_batch": args.frames_per_batch,
              "seconds": round(seconds, 2), "seconds_per_frame": round(seconds / args.frames, 3),
              "seconds_per_frame_and_noun": round(seconds / args.frames / len(nouns), 3),
              "peak_extra_mib": round(extra / 2**20), "estimate_mib": round(
                  counter.estimated_memory_bytes(tuple(frames.shape)) / 2**20),
              "parameters_m": round(sum(p.numel() for p in counter.model.parameters()) / 1e6, 1),
              "boxes_found": sum(len(b) for f in boxes for b in f)}
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
