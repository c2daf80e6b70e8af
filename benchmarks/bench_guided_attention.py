"""Guided cross-attention benchmark: dense (published) vs sparse vs fast form, side by side.

Wan2.1-1.3B shapes: L = 32,760 (21 x 30x52), 12 heads, head dim 128, 512 context, one noun
with about 10% of the pixels biased (a removed instance in every frame, an added one next to an
existing instance in odd frames and in an empty region in even frames).  Prints, per form, the
time ratio vs unguided SDPA, the peak extra memory (RSS on the CPU, allocated memory on CUDA; each
form in a fresh subprocess), the maximum difference from the dense form and whether the unbiased
rows are bit-identical to plain SDPA.  The plan is prepared once, as the guide does per run.

    cd /work/main && nice .numina_env/venv/bin/python benchmarks/bench_guided_attention.py
    python benchmarks/bench_guided_attention.py --device cuda --dtype bf16 --repeats 20   # GPU rows
(benchmarks/gpu_check.py measures the same call through the attention patch on real-shape models.)
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

from numina_ops import modulation as M  # noqa: E402
from numina_ops.records import (CountTarget, Layout, NounLayout, Targets,  # noqa: E402
                                TokenGrid)

GRID = TokenGrid(21, 30, 52)
HEADS, HEAD_DIM, CONTEXT = 12, 128, 512
DELTA = 1.75
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DEVICE, DTYPE = torch.device("cpu"), torch.float32     # set by --device / --dtype


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def layout() -> Layout:
    """Per frame: 80 removed pixels and 80 added ones (10.3% of 1560 biased); the added copy sits
    next to an existing instance in odd frames (matched kind) and alone in even frames."""
    labels = torch.zeros(GRID.frames, GRID.height, GRID.width, dtype=torch.int32, device="cpu")
    labels[:, 4:12, 5:15] = -1
    labels[:, 16:24, 10:20] = 100
    labels[1::2, 16:24, 30:38] = 1
    items = (CountTarget("cats", 1, (4, 8)),)
    noun = NounLayout("cats", 1, (7, 8), labels, counts=(1,) * GRID.frames)
    return Layout(GRID, Targets("a cat", items), (noun,), refined=True)


def inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator(device="cpu").manual_seed(seed)
    q = torch.randn(1, GRID.tokens, HEADS * HEAD_DIM, generator=gen, device="cpu")
    k = torch.randn(1, CONTEXT, HEADS * HEAD_DIM, generator=gen, device="cpu")
    v = torch.randn(1, CONTEXT, HEADS * HEAD_DIM, generator=gen, device="cpu")
    k[0, 20:] = k[0, 20]                            # zero-padded text: identical padding keys
    v[0, 20:] = v[0, 20]
    return tuple(t.to(DEVICE, DTYPE) for t in (q, k, v))


def float64_biased_rows(q, k, v, plan) -> torch.Tensor:
    """Reference for the biased rows: the definition in float64 (bias values from row_bias)."""
    bias = M.row_bias(q.float(), k.float(), HEADS, plan, DELTA)
    qh = M._split_heads(q[:, bias.rows].double(), HEADS)
    kh, vh = M._split_heads(k.double(), HEADS), M._split_heads(v.double(), HEADS)
    logits = qh @ kh.transpose(-1, -2) / HEAD_DIM ** 0.5
    logits[..., bias.columns] += bias.values[:, None].double()
    return M._merge_heads(torch.softmax(logits, dim=-1) @ vh)


def run(form: str, q, k, v, plan) -> torch.Tensor:
    if form == "plain":
        out = M.plain_cross_attention(q, k, v, HEADS)
    else:
        out = M.guided_cross_attention(q, k, v, HEADS, plan, DELTA, form=form)
    sync()
    return out


def patch_call(form: str, q2, k2, v2, plan) -> torch.Tensor:
    """What the attention patch does per text cross-attention call on a [cond, uncond] batch
    (nodes/attention_patch.py GuideSession.attend): the backend's plain output for the whole batch,
    then the cond row's biased rows rewritten in place by modulation.rebias_rows."""
    out = M.plain_cross_attention(q2, k2, v2, HEADS)
    if form != "plain":
        M.rebias_rows(q2[:1], k2[:1], v2[:1], HEADS, plan, DELTA, out[:1], form)
    sync()
    return out


def patch_section(plan, repeats: int) -> str:
    """Time per cross-attention call inside the patch, cond + uncond batch; returns the fastest."""
    q, k, v = inputs()
    q2, k2, v2 = (torch.cat([t, t.flip(1)]) for t in (q, k, v))
    forms = ["plain", *M.FORMS]
    best = {f: float("inf") for f in forms}
    outs = {}
    for _ in range(repeats):
        for f in forms:
            t0 = time.perf_counter()
            outs[f] = patch_call(f, q2, k2, v2, plan)
            best[f] = min(best[f], time.perf_counter() - t0)
    print("inside the attention patch (batch = cond + uncond, uncond rows plain):")
    print(f"{'form':8s} {'time s':>8s} {'x unguided':>11s} {'max|diff| vs dense':>19s} {'uncond == plain':>16s}")
    for f in forms:
        diff = (outs[f] - outs["dense"]).abs().max().item()
        same = torch.equal(outs[f][1:], outs["plain"][1:])
        print(f"{f:8s} {best[f]:8.3f} {best[f] / best['plain']:11.3f} {diff:19.2e} {str(same):>16s}")
    fastest = min(M.FORMS, key=lambda f: best[f])
    print(f"fastest inside the patch: {fastest}")
    return fastest


def child(form: str) -> None:
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    plan = M.prepare_plan(M.build_bias_plan(layout(), rule=os.environ.get("BENCH_RULE", "published")), DEVICE)
    q, k, v = inputs()
    run(form, q, k, v, plan)                                        # warm-up
    if DEVICE.type == "cuda":
        base = torch.cuda.memory_allocated(DEVICE)
        torch.cuda.reset_peak_memory_stats(DEVICE)
        out = run(form, q, k, v, plan)
        used = torch.cuda.max_memory_allocated(DEVICE) - base
    else:
        base = rss()
        reset_peak()
        out = run(form, q, k, v, plan)
        used = peak() - base
    print(json.dumps({"peak": used, "output": out.numel() * out.element_size()}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", default="")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--rule", default="published", choices=M.RULES,
                        help="bias rule (the nodes' default is calibrated; the float64 check covers published only)")
    args = parser.parse_args()
    os.environ["BENCH_RULE"] = args.rule
    global DEVICE, DTYPE
    DEVICE, DTYPE = torch.device(args.device), DTYPES[args.dtype]
    if args.child:
        child(args.child)
        return
    torch.set_num_threads(args.threads)
    print(machine_info(), f"| device {DEVICE}" + (f" ({torch.cuda.get_device_name(DEVICE)})" if DEVICE.type == "cuda" else ""))
    plan = M.build_bias_plan(layout(), rule=args.rule)
    prepared = M.prepare_plan(plan, DEVICE)
    print(f"L = {GRID.tokens}, {HEADS} heads, head dim {HEAD_DIM}, context {CONTEXT}, {args.dtype}, delta {DELTA};"
          f" {args.rule} bias; biased rows {plan.rows.numel()} ({plan.rows.numel() / GRID.tokens:.1%}),"
          f" removed {plan.nouns[0].removed_rows.numel()}, added-empty {plan.nouns[0].empty_frame_rows.numel()},"
          f" added-matched {sum(g.rows.numel() for g in plan.nouns[0].matched)},"
          f" calibrated {sum(g.rows.numel() for g in plan.nouns[0].calibrated)}"
          f" (+ {sum(g.reference_rows.numel() for g in plan.nouns[0].calibrated)} reference rows read)")
    q, k, v = inputs()
    forms = ["plain", *M.FORMS]
    best = {f: float("inf") for f in forms}
    outs = {}
    for _ in range(args.repeats):                     # interleaved: load changes hit every form
        for f in forms:
            t0 = time.perf_counter()
            outs[f] = run(f, q, k, v, prepared)
            best[f] = min(best[f], time.perf_counter() - t0)
    reference = float64_biased_rows(q, k, v, plan) if args.rule == "published" else None
    untouched = torch.ones(GRID.tokens, dtype=torch.bool, device=DEVICE)
    untouched[plan.rows] = False
    print("peak = memory above the inputs (RSS on the CPU, allocated on CUDA), output included; extra = peak - plain's peak")
    print(f"{'form':8s} {'time s':>8s} {'x plain':>8s} {'peak MiB':>9s} {'extra MiB':>10s} {'max|diff| vs dense':>19s} {'biased rows err vs f64':>23s}"
          f" {'unbiased rows == plain':>23s}")
    peaks, errors = {}, {}
    for f in forms:
        proc = subprocess.run([sys.executable, __file__, "--child", f, "--device", args.device, "--dtype", args.dtype],
                              capture_output=True, text=True, check=True,
                              env={**os.environ, "BENCH_THREADS": str(args.threads)})
        peaks[f] = json.loads(proc.stdout.strip().splitlines()[-1])["peak"] / 2**20
        diff = (outs[f] - outs["dense"]).abs().max().item()
        same = torch.equal(outs[f][:, untouched], outs["plain"][:, untouched])
        errors[f] = (outs[f][:, prepared.rows].double() - reference).abs().max().item() if reference is not None \
            else float("nan")
        print(f"{f:8s} {best[f]:8.3f} {best[f] / best['plain']:8.3f} {peaks[f]:9.1f} {peaks[f] - peaks['plain']:10.1f}"
              f" {diff:19.2e} {errors[f]:23.2e} {str(same):>23s}")
    exact = [f for f in M.FORMS if reference is None or errors[f] <= 2 * errors["dense"] + 1e-12]
    fastest = min(exact, key=lambda f: best[f])
    print(f"exact forms (error vs float64 within 2x the dense form's): {exact}; fastest of them: {fastest}"
          f" ({best[fastest] / best['plain']:.3f}x plain).")
    in_patch = patch_section(prepared, args.repeats)
    print(f"DEFAULT_FORM = {M.DEFAULT_FORM!r} (what users get; the patch's figure is the one that counts)"
          f"; fastest inside the patch on this run: {in_patch!r}")


if __name__ == "__main__":
    main()
