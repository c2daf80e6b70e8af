"""Capture benchmark: seeded block-Krylov head scoring vs the same scoring with torch.svd_lowrank.

Part 1 (Wan2.1-1.3B, 832x480x81: 21 frames x 30x52 tokens, 12 heads, head dim 128): per frame the
attention maps are computed once and scored twice, side by side: with our factorisation and with
the published-style explicit centring + ``torch.svd_lowrank(q=3)`` per head.  Prints the scoring
time ratio, the end-to-end ratio (softmax included; the softmax is the same work in both), the
agreement of the picks, the published way's own run-to-run flips, and agreement with an exact SVD.
Part 2 (Wan2.1-14B, 1280x720x81: 45x80 tokens per frame, 40 heads): peak extra RSS of
``read_self_attention`` and ``read_cross_attention`` in a fresh subprocess, and time per frame.

    cd /work/main && nice .numina_env/venv/bin/python benchmarks/bench_capture.py [--frames 21]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

from _machine import machine_info, peak, reset_peak, rss  # noqa: E402
from _scenes import object_qk  # noqa: E402

from numina_ops import capture as C  # noqa: E402
from numina_ops.records import TokenGrid  # noqa: E402


def lowrank_components(attn: torch.Tensor) -> torch.Tensor:
    """The published way: centre explicitly, unseeded randomised low-rank SVD per head."""
    centred = attn - attn.mean(dim=1, keepdim=True)
    out = []
    for a in centred:
        u, s, _ = torch.svd_lowrank(a, q=C.RANK)
        out.append(u * s)
    return torch.stack(out)


def scores_with(factorise, attn: torch.Tensor, grid: TokenGrid) -> torch.Tensor:
    normalised = C.minmax_columns(C.fix_signs(factorise(attn)))
    return C.score_heads(C.grey_images(normalised, grid.height, grid.width))


def part1(frames: int, exact_frames: int) -> None:
    grid, heads, d = TokenGrid(21, 30, 52), 12, 128
    q, k = object_qk(grid.frames, grid.height, grid.width, heads, d, objects=3, noise=0.5, seed=0)
    n = grid.tokens_per_frame
    t_soft = t_ours = t_low = 0.0
    picks = {"ours": [], "ours_again": [], "lowrank": [], "lowrank_again": [], "exact": []}
    for f in range(frames):
        qf = C._heads_first(q[0, f * n:(f + 1) * n], heads)
        kf = C._heads_first(k[0, f * n:(f + 1) * n], heads)
        t0 = time.perf_counter()
        attn = C.frame_attention(qf, kf)
        t1 = time.perf_counter()
        ours = scores_with(C.subspace_components, attn, grid)
        t2 = time.perf_counter()
        low = scores_with(lowrank_components, attn, grid)
        t3 = time.perf_counter()
        t_soft, t_ours, t_low = t_soft + t1 - t0, t_ours + t2 - t1, t_low + t3 - t2
        picks["ours"].append(int(ours.argmax()))
        picks["lowrank"].append(int(low.argmax()))
        picks["ours_again"].append(int(scores_with(C.subspace_components, attn, grid).argmax()))
        picks["lowrank_again"].append(int(scores_with(lowrank_components, attn, grid).argmax()))
        if f < exact_frames:
            picks["exact"].append(int(scores_with(C.svd_components, attn, grid).argmax()))
    hf = frames * heads

    def agree(a: str, b: str) -> str:
        pairs = list(zip(picks[a], picks[b]))
        return f"{sum(x == y for x, y in pairs)}/{len(pairs)}"

    print(f"[1.3B] {frames} frames x {heads} heads of {n} tokens (30x52), head dim {d}, fp32")
    print(f"  softmax maps (same in both) : {t_soft / hf * 1e3:7.2f} ms per head-frame")
    print(f"  scoring, ours (seeded)      : {t_ours / hf * 1e3:7.2f} ms per head-frame")
    print(f"  scoring, torch.svd_lowrank  : {t_low / hf * 1e3:7.2f} ms per head-frame")
    print(f"  scoring speed-up            : {t_low / t_ours:5.2f}x")
    print(f"  end-to-end speed-up (maps + scoring): {(t_soft + t_low) / (t_soft + t_ours):5.2f}x")
    print(f"  picks ours vs svd_lowrank   : {agree('ours', 'lowrank')} frames agree")
    print(f"  ours, run twice             : {agree('ours', 'ours_again')} identical")
    print(f"  svd_lowrank, run twice      : {agree('lowrank', 'lowrank_again')} identical (unseeded)")
    print(f"  vs exact SVD (first {exact_frames} frames): ours {agree('ours', 'exact')},"
          f" svd_lowrank {agree('lowrank', 'exact')}")


def part2_child(frames: int) -> None:
    """Runs in a fresh process: peak RSS above the inputs, 14B 720p shapes."""
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    grid, heads, d = TokenGrid(frames, 45, 80), 40, 128
    q, k = object_qk(grid.frames, grid.height, grid.width, heads, d, objects=3, noise=0.5, seed=1,
                     dtype=torch.bfloat16)
    ctx = torch.randn(1, 512, heads * d).to(torch.bfloat16)
    base = rss()
    reset_peak()
    t0 = time.perf_counter()
    reading = C.read_self_attention(q, k, heads, grid)
    t_self = time.perf_counter() - t0
    self_peak = peak() - base
    del reading
    base = rss()
    reset_peak()
    t0 = time.perf_counter()
    C.read_cross_attention(q, ctx, heads, grid, {"cats": (5, 6)})
    t_cross = time.perf_counter() - t0
    print(json.dumps({"self_peak": self_peak, "self_time": t_self, "cross_peak": peak() - base,
                      "cross_time": t_cross, "chunk": C.heads_per_chunk(grid.tokens_per_frame, heads,
                                                                          C.DEFAULT_MEMORY_BUDGET)}))


def part2(frames: int) -> None:
    out = subprocess.run([sys.executable, __file__, "--child", str(frames)], capture_output=True, text=True,
                         check=True, env={**os.environ, "BENCH_THREADS": str(torch.get_num_threads())})
    r = json.loads(out.stdout.strip().splitlines()[-1])
    mib = 2**20
    print(f"[14B] {frames} frames x 3600 tokens (45x80), 40 heads, head dim 128, bf16 inputs"
          f" (only {frames} of 21 frames: a full block would take ~21/{frames} x longer; memory is per frame)")
    print(f"  self-attention: peak extra RSS {r['self_peak'] / mib:7.1f} MiB (budget 256 MiB,"
          f" {r['chunk']} heads per chunk), {r['self_time'] / frames:6.2f} s per frame"
          f" -> ~{r['self_time'] / frames * 21 / 60:.1f} min per 21-frame block")
    print(f"  cross-attention ({frames * 3600} rows): peak extra RSS {r['cross_peak'] / mib:7.1f} MiB,"
          f" {r['cross_time']:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=21, help="1.3B frames to score (of 21)")
    parser.add_argument("--exact-frames", type=int, default=2)
    parser.add_argument("--big-frames", type=int, default=2, help="14B frames for the memory run")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", type=int, default=0)
    args = parser.parse_args()
    if args.child:
        part2_child(args.child)
        return
    torch.set_num_threads(args.threads)
    print(machine_info())
    part1(args.frames, args.exact_frames)
    part2(args.big_frames)


if __name__ == "__main__":
    main()
