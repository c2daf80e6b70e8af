"""What a NUMINA run costs through NuminaSampler, against the plain run, side by side in one process.

On the CPU demo's model and prompt (CountWorld, "four green circles ...", seed 0, 25 steps euler,
CFG 1, every NUMINA setting at the node's default but the capture's approach_steps), five runs
through ComfyUI's own nodes:
  plain           KSampler
  counts right    capture -> the inferred layout accepted as it is -> NuminaSampler (finishes the
                  reference pass), once with approach_steps 0 (the run's own steps) and once with
                  the node's default
  to fix          capture -> infer -> refine -> NuminaSampler (the guided pass), the same two ways
Model evaluations are counted by a diffusion-model wrapper (one per CFG batch and step); times
are wall times, best of --repeats.  Expected: with the run's own steps, counts right = N
evaluations (1.00x) and bit for bit the plain run, to fix = k + 1 + N (k the reference step); with
approach_steps A < k, A + 1 + N - k - 1 and A + 1 + N.

    .numina_env/venv/bin/python benchmarks/sampler_cost.py --repeats 3
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from numina_dev import comfy_runtime

PROMPT = "four green circles moving on a plain grey background"
SEED, STEPS, CFG = 0, 25, 1.0
MODEL = "countworld_wan21_t2v.safetensors"
TEXT = "numina_tiny_umt5.safetensors"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    comfy_runtime.bootstrap()
    nodes = comfy_runtime.load_custom_nodes()
    import comfy.patcher_extension as ext
    capture_module = comfy_runtime.pack_module("NuminaAttentionCapture")

    model = nodes["UNETLoader"]().load_unet(MODEL, "default")[0]
    clip = nodes["NuminaTinyTextEncoderLoader"].execute(TEXT).result[0]
    calls = []

    def count(executor, *a, **kw):
        calls.append(1)
        return executor(*a, **kw)
    model = model.clone()
    model.add_wrapper_with_key(ext.WrappersMP.DIFFUSION_MODEL, "count", count)
    encode = nodes["CLIPTextEncode"]()
    positive, negative = encode.encode(clip, PROMPT)[0], encode.encode(clip, "")[0]
    latent = nodes["EmptyHunyuanLatentVideo"]().execute(256, 256, 5, 1)
    latent = latent.result[0] if hasattr(latent, "result") else latent[0]
    step = capture_module.default_reference_step(STEPS)

    approach = capture_module.DEFAULT_APPROACH_STEPS

    def capture(approach_steps, override=""):
        return nodes["NuminaAttentionCapture"].execute(
            model, clip, positive, negative, latent, SEED, STEPS, CFG, "euler", "simple", PROMPT, override, -1,
            -1, approach_steps=approach_steps).result[0]

    def plain():
        return nodes["KSampler"]().sample(model, SEED, STEPS, CFG, "euler", "simple", positive, negative,
                                          latent)[0]["samples"]

    def counts_right(approach_steps):
        cap = capture(approach_steps)
        layout = nodes["NuminaLayoutInfer"].execute(cap, "auto").result[0]
        return nodes["NuminaSampler"].execute(model, cap, dataclasses.replace(layout, refined=True),
                                             "auto").result[0]["samples"]

    def to_fix(approach_steps):
        cap = capture(approach_steps)
        layout = nodes["NuminaLayoutInfer"].execute(cap, "auto").result[0]
        refined = nodes["NuminaLayoutRefine"].execute(layout).result[0]
        if not refined.needs_guidance:
            raise SystemExit("the demo prompt's layout needs no guidance on this model: nothing to fix here")
        return nodes["NuminaSampler"].execute(model, cap, refined, "auto").result[0]["samples"]

    runs = {"plain": plain, "counts right, own steps": lambda: counts_right(0),
            f"counts right, approach {approach}": lambda: counts_right(approach),
            "to fix, own steps": lambda: to_fix(0), f"to fix, approach {approach}": lambda: to_fix(approach)}
    best, evaluations, outputs = {}, {}, {}
    for _ in range(args.repeats):                       # interleaved: load changes hit every run
        for name, fn in runs.items():
            calls.clear()
            t0 = time.perf_counter()
            outputs[name] = fn()
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - t0)
            evaluations[name] = len(calls)
    print(f"{PROMPT!r}, seed {SEED}, {STEPS} steps euler, CFG {CFG:g}, reference step k = {step};"
          f" {args.threads} threads, best of {args.repeats}")
    print(f"{'run':28s} {'model evaluations':>18s} {'x plain':>8s} {'time s':>8s} {'x plain':>8s}")
    for name in runs:
        print(f"{name:28s} {evaluations[name]:18d} {evaluations[name] / evaluations['plain']:8.2f}"
              f" {best[name]:8.2f} {best[name] / best['plain']:8.2f}")
    a = len(capture_module.reference_path(step, approach)) - 2     # the approach's steps (k on the exact path)
    print(f"expected: own steps: counts right {STEPS} (1.00x), to fix k + 1 + N = {step + 1 + STEPS}"
          f" ({(step + 1 + STEPS) / STEPS:.2f}x); approach {approach}: counts right A + 1 + N - k - 1 = "
          f"{a + STEPS - step}, to fix A + 1 + N = {a + 1 + STEPS} ({(a + 1 + STEPS) / STEPS:.2f}x)")
    print("counts right with the run's own steps equals the plain run bit for bit:",
          torch.equal(outputs["counts right, own steps"], outputs["plain"]))


if __name__ == "__main__":
    main()
